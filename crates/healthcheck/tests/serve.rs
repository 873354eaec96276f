//! Periodic mode's server: what each path and method gets, and bounded requests.

use std::sync::Arc;
use std::time::Duration;

use healthcheck::checks::TcpCheck;
use healthcheck::{CheckEntry, Monitor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn serves_metrics_page_and_json() {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let monitor = Monitor::builder()
        .with_host("served")
        .with_check(
            CheckEntry::builder(
                "port",
                Arc::new(TcpCheck::new(&target.local_addr().unwrap().to_string()).unwrap()),
            )
            .build()
            .unwrap(),
        )
        .build()
        .unwrap();
    let listener = healthcheck::serve::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(healthcheck::serve::serve(
        Arc::new(monitor),
        listener,
        Duration::from_millis(50),
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let prom = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        prom.starts_with(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        ),
        "{prom}"
    );
    assert!(
        prom.contains("healthcheck_up{host=\"served\",check=\"port\",kind=\"tcp\"} 1\n"),
        "{prom}"
    );
    let om = request(addr, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n").await;
    assert!(
        om.contains("Content-Type: application/openmetrics-text; version=1.0.0")
            && om.ends_with("# EOF\n"),
        "{om}"
    );
    let page = request(addr, b"GET /?refresh=1 HTTP/1.1\r\n\r\n").await;
    assert!(
        page.contains("Content-Type: text/html") && page.contains("<!DOCTYPE html>"),
        "{page}"
    );
    let json = request(addr, b"GET /report.json HTTP/1.1\r\n\r\n").await;
    let body = json.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        v["checks"][0]["history"].as_array().unwrap().len() >= 2,
        "the monitor keeps running: {body}"
    );
    let head = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "HEAD has no body: {head}"
    );
    assert!(
        request(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405")
    );
    assert!(
        request(addr, b"GET /etc/passwd HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404")
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    // Over the 8 KiB limit, but all of it read by the server (unread input would reset the reply).
    huge.resize(8_500, b'a');
    assert!(request(addr, &huge).await.starts_with("HTTP/1.1 431"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let e = healthcheck::serve::bind("not an address")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an address"), "{e}");
}
