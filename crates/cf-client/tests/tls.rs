//! The client speaks TLS to an https API root (rustls, provider passed explicitly): a listener
//! on loopback sees a TLS ClientHello, and a peer that is not a TLS server is a transport error
//! naming the request, never a panic or a hang.

use std::time::Duration;

use cf_client::{Client, Error};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn https_roots_get_a_tls_client_hello() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut first = Vec::new();
        // Every connection attempt (the client retries) starts with a ClientHello.
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut header = [0u8; 6];
            stream.read_exact(&mut header).await.expect("read");
            first.push(header);
            // Closing without a ServerHello fails the handshake.
        }
        first
    });
    let client = Client::builder()
        .with_token("secret-token-for-tls-test")
        .with_base_url(format!("https://localhost:{port}/client/v4"))
        .with_max_retries(1)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let err = client.verify_token().await.expect_err("no TLS server");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        err.report().contains("GET /user/tokens/verify"),
        "{}",
        err.report()
    );
    assert!(!err.report().contains("secret-token-for-tls-test"));
    for header in server.await.expect("server") {
        // TLS record: handshake (22), version 3.x, then a ClientHello (1).
        assert_eq!(header[0], 22, "{header:?}");
        assert_eq!(header[1], 3, "{header:?}");
        assert_eq!(header[5], 1, "{header:?}");
    }
}
