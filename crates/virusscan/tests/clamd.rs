//! The clamd client against a real clamd (scripts/services/virusscan.sh): the conformance
//! suite over TCP, a unix socket with descriptor passing and one streaming, the size limit,
//! and dead or broken servers.

mod common;

use std::time::Duration;

use common::{eicar, stream_max};
use virusscan::conformance::{Samples, run_all};
use virusscan::{ClamdClient, Error, FileIdentity, Scanner, Verdict};

fn samples() -> Samples {
    Samples::new(b"<?php echo 'hello'; ?>\n".repeat(200), eicar())
        .with_signature_suffix(".UNOFFICIAL")
        .with_too_large(vec![b'a'; (stream_max() * 2) as usize])
}

#[tokio::test]
async fn conformance_unix_socket_with_descriptor_passing() {
    let Some(client) = common::unix_client() else {
        return;
    };
    run_all(&client, &samples()).await;
}

#[tokio::test]
async fn conformance_unix_socket_streaming() {
    let Some(socket) = common::socket() else {
        return;
    };
    let client = ClamdClient::unix(socket)
        .with_fd_passing(false)
        .with_stream_max_length(stream_max())
        .build()
        .unwrap();
    run_all(&client, &samples()).await;
}

#[tokio::test]
async fn conformance_tcp() {
    let Some(addr) = common::tcp() else { return };
    let client = ClamdClient::tcp(addr)
        .with_stream_max_length(stream_max())
        .with_chunk_size(4096)
        .build()
        .unwrap();
    run_all(&client, &samples()).await;
}

#[tokio::test]
async fn eicar_is_named_as_the_test_database_says() {
    let Some(client) = common::unix_client() else {
        return;
    };
    let verdict = client.scan_bytes(&eicar()).await.unwrap();
    assert_eq!(
        verdict,
        Verdict::Infected {
            signature: "Hostguard.Test.EICAR.UNOFFICIAL".into()
        }
    );
    // Embedded in other data too (an `.ndb` body signature matches anywhere).
    let mut wrapped = b"<?php /* upload */ ".to_vec();
    wrapped.extend(eicar());
    wrapped.extend(b" ?>");
    assert!(
        client
            .scan_bytes(&wrapped)
            .await
            .unwrap()
            .signature()
            .unwrap()
            .ends_with(".UNOFFICIAL")
    );
    assert!(client.version().await.unwrap().starts_with("ClamAV "));
}

/// Far past StreamMaxLength clamd closes the connection while the client still sends; over TCP
/// its answer may be lost to the reset. Never clean: too large (limit known) or an error.
#[tokio::test]
async fn stream_limit_is_never_clean() {
    let Some(addr) = common::tcp() else { return };
    let big = vec![0u8; 16 << 20];
    let knowing = ClamdClient::tcp(addr.clone())
        .with_stream_max_length(stream_max())
        .build()
        .unwrap();
    let unknowing = ClamdClient::tcp(addr).build().unwrap();
    for _ in 0..3 {
        let v = knowing
            .scan_bytes(&big)
            .await
            .expect("with the limit known, a verdict");
        assert!(matches!(v, Verdict::TooLarge { .. }), "{v:?}");
        match unknowing.scan_bytes(&big).await {
            Ok(Verdict::TooLarge { .. }) | Err(Error::Transport { .. }) => {}
            other => panic!("oversized stream gave {other:?}"),
        }
    }
    // Exactly at the limit is still scanned.
    let at_limit = vec![b'x'; stream_max() as usize];
    assert_eq!(knowing.scan_bytes(&at_limit).await.unwrap(), Verdict::Clean);
}

#[tokio::test]
async fn dead_clamd_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = ClamdClient::unix(dir.path().join("no-such.sock"))
        .build()
        .unwrap();
    assert!(matches!(
        client.scan_bytes(b"hello").await,
        Err(Error::Connect { .. })
    ));
    assert!(client.ping().await.is_err());
    assert!(client.signature_version().await.is_err());
    let file = tempfile::tempfile().unwrap();
    assert!(client.scan_file(&file).await.is_err());

    // A port where nothing listens any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ClamdClient::tcp(addr.to_string()).build().unwrap();
    assert!(matches!(
        client.scan_bytes(b"hello").await,
        Err(Error::Connect { .. })
    ));
}

/// A clamd that died mid-request: accepts, reads the request, closes without answering.
#[tokio::test]
async fn server_closing_without_answer_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
        }
    });
    let client = ClamdClient::tcp(addr.to_string()).build().unwrap();
    let result = client.scan_bytes(b"hello").await;
    assert!(result.is_err(), "{result:?}");
}

/// A clamd that hangs: every call ends with a timeout error.
#[tokio::test]
async fn hung_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let client = ClamdClient::tcp(addr.to_string())
        .with_io_timeout(Duration::from_millis(300))
        .with_scan_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        client.scan_bytes(b"hello").await,
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(client.ping().await, Err(Error::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A reply that is not clamd's protocol is an error, never clean.
#[tokio::test]
async fn garbage_reply_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                // "OK" without the session number clamd puts on every reply in a session.
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, b"stream: OK\0").await;
            });
        }
    });
    let client = ClamdClient::tcp(addr.to_string()).build().unwrap();
    assert!(matches!(
        client.scan_bytes(b"hello").await,
        Err(Error::Protocol { .. })
    ));
}

/// Many concurrent scans through a pool of two sessions all get the right verdicts.
#[tokio::test]
async fn pooled_sessions_under_concurrency() {
    let Some(socket) = common::socket() else {
        return;
    };
    let client = ClamdClient::unix(socket)
        .with_max_connections(2)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let data = if i % 5 == 0 {
                eicar()
            } else {
                format!("clean {i}").into_bytes()
            };
            (i, client.scan_bytes(&data).await.unwrap())
        }));
    }
    for task in tasks {
        let (i, verdict) = task.await.unwrap();
        assert_eq!(
            verdict.signature().is_some(),
            i % 5 == 0,
            "{i}: {verdict:?}"
        );
    }
}

#[test]
fn builder_rejects_bad_settings() {
    assert!(
        ClamdClient::tcp("127.0.0.1:3310")
            .with_max_connections(0)
            .build()
            .is_err()
    );
    assert!(
        ClamdClient::tcp("127.0.0.1:3310")
            .with_fd_passing(true)
            .build()
            .is_err()
    );
    assert!(
        ClamdClient::tcp("127.0.0.1:3310")
            .with_chunk_size(0)
            .build()
            .is_err()
    );
    assert!(
        ClamdClient::unix("/x")
            .with_io_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
    for depth in [0, 257] {
        assert!(
            matches!(
                ClamdClient::unix("/x").with_pipeline_depth(depth).build(),
                Err(Error::InvalidConfig {
                    field: "pipeline_depth",
                    ..
                })
            ),
            "pipeline depth {depth}"
        );
    }
    assert!(
        ClamdClient::unix("/x")
            .with_pipeline_depth(256)
            .build()
            .is_ok()
    );
}

/// `n` scans of empty files by descriptor, each its own task.
fn scans_of_empty_files(
    client: &ClamdClient,
    n: usize,
) -> Vec<tokio::task::JoinHandle<virusscan::Result<Verdict>>> {
    (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let file = tempfile::tempfile().unwrap();
                client.scan_file(&file).await
            })
        })
        .collect()
}

/// The pipeline depth, not `max_connections`, bounds the descriptors outstanding on the one
/// session: a server that answers nothing until requests stop coming sees exactly that many.
#[tokio::test]
async fn pipeline_depth_bounds_the_requests_in_flight() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clamd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A thread with plain blocking reads: each read stops after a request that carries a
    // descriptor, and tokio would wait for a new wake-up after such a short read.
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut windows = Vec::new();
        let mut data = Vec::new();
        let mut answered = 0;
        while answered < 10 {
            // Collects requests until none has come for 500 ms, then answers them all, in order.
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = sock.read(&mut buf) {
                data.extend_from_slice(&buf[..n]);
            }
            let requests = data.windows(8).filter(|w| w == b"zFILDES\0").count();
            windows.push(requests - answered);
            if requests == answered {
                break;
            }
            for id in answered + 1..=requests {
                sock.write_all(format!("{id}: fd[9]: OK\0").as_bytes())
                    .unwrap();
            }
            answered = requests;
        }
        assert!(data.starts_with(b"zIDSESSION\0"), "no session started");
        windows
    });
    let client = ClamdClient::unix(&path)
        .with_max_connections(2)
        .with_pipeline_depth(6)
        .build()
        .unwrap();
    for scan in scans_of_empty_files(&client, 10) {
        assert_eq!(scan.await.unwrap().unwrap(), Verdict::Clean);
    }
    assert_eq!(server.join().unwrap(), [6, 4]);
}

/// Many descriptor-passing scans in flight on the one pipelined session: each gets its own
/// answer.
#[tokio::test]
async fn pipelined_descriptor_passing_routes_each_answer() {
    let Some(socket) = common::socket() else {
        return;
    };
    let client = ClamdClient::unix(socket)
        .with_max_connections(16)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for i in 0..80 {
        let path = dir.path().join(format!("f{i}"));
        let data = if i % 4 == 1 {
            [b"x".repeat(i), eicar()].concat()
        } else {
            b"y".repeat(i * 100)
        };
        std::fs::write(&path, data).unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let file = std::fs::File::open(&path).unwrap();
            (i, client.scan_file(&file).await.unwrap())
        }));
    }
    for task in tasks {
        let (i, verdict) = task.await.unwrap();
        assert_eq!(
            verdict.signature().is_some(),
            i % 4 == 1,
            "{i}: {verdict:?}"
        );
    }
}

/// A clamd that dies with descriptor-passing requests in flight fails each of them.
#[tokio::test]
async fn pipelined_session_dying_fails_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clamd.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                // Takes the session and a request, answers one with the wrong number, dies.
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, b"99: fd[5]: OK\0").await;
            });
        }
    });
    let client = ClamdClient::unix(&path)
        .with_max_connections(4)
        .build()
        .unwrap();
    for task in scans_of_empty_files(&client, 4) {
        let result = task.await.unwrap();
        assert!(matches!(result, Err(Error::Transport { .. })), "{result:?}");
    }
}

/// A client outliving the runtime that started its pipelined session starts a new one.
#[test]
fn client_survives_its_first_runtime() {
    let Some(client) = common::unix_client() else {
        return;
    };
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &eicar()).unwrap();
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let scan =
            async { tokio::time::timeout(Duration::from_secs(10), client.scan_file(&file)).await };
        let verdict = runtime.block_on(scan);
        assert!(verdict.expect("no hang").unwrap().signature().is_some());
    }
}

/// clamd skips a file over its MaxFileSize and, without `AlertExceedsMax yes`, calls it clean:
/// with the limit known, the client says too large instead, by descriptor and by stream alike.
#[tokio::test]
async fn a_file_over_max_file_size_is_too_large_not_clean() {
    let Some(socket) = common::socket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut content = eicar();
    content.resize(1024, b'\n');
    let at_limit = dir.path().join("at-limit");
    std::fs::write(&at_limit, &content).unwrap();
    content.push(b'\n');
    let over = dir.path().join("over");
    std::fs::write(&over, &content).unwrap();
    for fd_passing in [true, false] {
        let client = ClamdClient::unix(socket.clone())
            .with_fd_passing(fd_passing)
            .with_max_file_size(1024)
            .build()
            .unwrap();
        let file = std::fs::File::open(&over).unwrap();
        let verdict = client.scan_file(&file).await.unwrap();
        assert!(
            matches!(&verdict, Verdict::TooLarge { reason } if reason.contains("1025 bytes")),
            "fd passing {fd_passing}: {verdict:?}"
        );
        // The tree scan's way: the size comes from the identity it took, not another fstat.
        let identity = FileIdentity::of(&file).unwrap();
        let verdict = client
            .scan_file_with_identity(&file, &identity)
            .await
            .unwrap();
        assert!(
            matches!(&verdict, Verdict::TooLarge { reason } if reason.contains("1025 bytes")),
            "fd passing {fd_passing}, with identity: {verdict:?}"
        );
        let file = std::fs::File::open(&at_limit).unwrap();
        assert!(
            matches!(
                client.scan_file(&file).await.unwrap(),
                Verdict::Infected { .. }
            ),
            "a file at the limit is still scanned"
        );
    }
}
