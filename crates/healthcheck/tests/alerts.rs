//! Alert sinks: the webhook against a local server that enforces what a JSON webhook receiver
//! expects, the command sink with a real program, and the conformance suite for each.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use healthcheck::conformance::{alert_sink_suite, hostile_alert};
use healthcheck::{AlertSink, CommandSink, MemorySink, WebhookSink};
use support::provider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Receiver {
    bodies: Vec<serde_json::Value>,
    attempts: Vec<Instant>,
}

/// A webhook receiver: accepts only `POST /hook` with `Content-Type: application/json`, a
/// `Content-Length` and a JSON object body; answers `fail_first` requests with `failure`, then 200.
/// Anything else gets 400 (which the sink must not retry).
async fn receiver(fail_first: usize, failure: &'static str) -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let shared = state.clone();
    tokio::spawn(async move {
        let mut served = 0usize;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        })
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(usize::MAX);
                    while data.len() < end + 4 + length.min(1 << 20) {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..n]);
                    }
                    break (head, data[end + 4..].to_vec());
                }
            };
            let json_type = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("content-type") && v.trim() == "application/json"
                })
            });
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&body)
                .ok()
                .filter(|v: &serde_json::Value| v.is_object());
            let status = match parsed {
                Some(body) if head.starts_with("POST /hook HTTP/1.1") && json_type => {
                    let mut s = shared.lock().unwrap();
                    s.attempts.push(Instant::now());
                    served += 1;
                    if served <= fail_first {
                        failure
                    } else {
                        s.bodies.push(body);
                        "200 OK"
                    }
                }
                _ => "400 Bad Request",
            };
            let _ = stream
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, state)
}

#[tokio::test]
async fn webhook_conformance() {
    let (url, state) = receiver(0, "").await;
    let sink = WebhookSink::builder(url, provider()).build().unwrap();
    alert_sink_suite(&sink, || state.lock().unwrap().bodies.clone()).await;
}

#[tokio::test]
async fn webhook_retries_with_backoff() {
    let (url, state) = receiver(2, "503 Service Unavailable").await;
    let sink = WebhookSink::builder(url, provider())
        .with_attempts(4)
        .with_backoff(Duration::from_millis(100))
        .build()
        .unwrap();
    sink.send(&hostile_alert()).await.unwrap();
    let s = state.lock().unwrap();
    assert_eq!(s.attempts.len(), 3, "two 503s, then delivered");
    assert_eq!(s.bodies.len(), 1);
    let gaps: Vec<Duration> = s.attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(200),
        "backoff doubles: {gaps:?}"
    );
}

#[tokio::test]
async fn webhook_credentials_stay_out_of_debug_and_errors() {
    let (url, _state) = receiver(0, "").await;
    // The receiver refuses this path with 400; a dead port gives a transport error.
    let refused = url.replace("http://", "http://ops:pw-s3cret@") + "/tok-s3cret?key=q-s3cret";
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook/tok-s3cret", listener.local_addr().unwrap())
    };
    for url in [refused, dead] {
        let sink = WebhookSink::builder(url.clone(), provider())
            .with_attempts(1)
            .build()
            .unwrap();
        let debug = format!("{sink:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("127.0.0.1"), "{debug}");
        let err = sink.send(&hostile_alert()).await.expect_err(&url);
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("127.0.0.1"), "{text}");
        }
    }
}

#[tokio::test]
async fn webhook_retries_too_many_requests() {
    let (url, state) = receiver(1, "429 Too Many Requests").await;
    let sink = WebhookSink::builder(url, provider())
        .with_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    sink.send(&hostile_alert()).await.unwrap();
    assert_eq!(state.lock().unwrap().attempts.len(), 2);
}

#[tokio::test]
async fn webhook_gives_up_and_names_the_failure() {
    let (url, state) = receiver(usize::MAX, "503 Service Unavailable").await;
    let sink = WebhookSink::builder(url, provider())
        .with_attempts(3)
        .with_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let e = sink.send(&hostile_alert()).await.unwrap_err().to_string();
    assert!(e.contains("503") && e.contains("after 3 attempts"), "{e}");
    assert_eq!(state.lock().unwrap().attempts.len(), 3);

    // A 4xx is not retried.
    let (url, state) = receiver(0, "").await;
    let sink = WebhookSink::builder(url.replace("/hook", "/wrong"), provider())
        .with_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let e = sink.send(&hostile_alert()).await.unwrap_err().to_string();
    assert!(e.contains("400"), "{e}");
    assert!(state.lock().unwrap().attempts.is_empty());

    // A refused port fails after its attempts, naming the cause.
    let sink = WebhookSink::builder(
        format!("http://{}/hook", support::refused_addr()),
        provider(),
    )
    .with_attempts(2)
    .with_backoff(Duration::from_millis(10))
    .build()
    .unwrap();
    let e = sink.send(&hostile_alert()).await.unwrap_err().to_string();
    assert!(e.contains("after 2 attempts"), "{e}");
    assert!(
        WebhookSink::builder("ftp://x/", provider())
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn command_conformance_and_no_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.jsonl");
    let env_out = dir.path().join("env.txt");
    // The program reads the alert from stdin; the message (with `$(...)`) is never run.
    let sink = CommandSink::new(
        vec![
            "sh".into(),
            "-c".into(),
            r#"cat >> "$0"; echo >> "$0"; printf '%s|%s|%s\n' "$HEALTHCHECK_CHECK" "$HEALTHCHECK_STATUS" "$HEALTHCHECK_MESSAGE" >> "$1""#.into(),
            out.display().to_string(),
            env_out.display().to_string(),
        ],
        Duration::from_secs(5),
    )
    .unwrap();
    let read = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    alert_sink_suite(&sink, read).await;
    let env = std::fs::read_to_string(&env_out).unwrap();
    assert!(
        env.starts_with("site-cert|CRITICAL|expired \"3\" days ago; $(touch /tmp/pwned) `id`"),
        "{env}"
    );

    let failing = CommandSink::new(
        vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
        Duration::from_secs(5),
    )
    .unwrap();
    let e = failing
        .send(&hostile_alert())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
    let slow = CommandSink::new(
        vec!["sleep".into(), "10".into()],
        Duration::from_millis(200),
    )
    .unwrap();
    let e = slow.send(&hostile_alert()).await.unwrap_err().to_string();
    assert!(e.contains("did not finish in time"), "{e}");
    let missing =
        CommandSink::new(vec!["/nonexistent/notify".into()], Duration::from_secs(1)).unwrap();
    assert!(
        missing
            .send(&hostile_alert())
            .await
            .unwrap_err()
            .to_string()
            .contains("cannot run")
    );
    assert!(CommandSink::new(vec![], Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn memory_sink_conformance() {
    let sink = MemorySink::new();
    alert_sink_suite(&sink, || {
        sink.alerts()
            .iter()
            .map(|a| serde_json::to_value(a).unwrap())
            .collect()
    })
    .await;
}

#[test]
fn a_refused_webhook_url_is_not_echoed() {
    // The URL's password and path token are secrets; the error says what is wrong without them.
    for url in [
        "ftp://ops:s3cret@hooks.example/T0KEN",
        "https://ops:s3cret@[bad/T0KEN",
    ] {
        let err = WebhookSink::builder(url, provider())
            .build()
            .expect_err("refused");
        let text = format!("{err} {err:?}");
        assert!(text.contains("webhook.url"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("T0KEN"),
            "{text}"
        );
    }
}
