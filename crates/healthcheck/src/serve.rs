//! Periodic mode: runs the checks every interval and serves the last report on a local port
//! (`/metrics` for Prometheus, `/` for the HTML page, `/report.json`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::error::{Error, Result};
use crate::monitor::{Monitor, Report};
use crate::report;

/// At most this many connections are served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (a loopback address is the intended use).
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| crate::error::invalid("listen", format!("`{addr}`: {e}")))?;
    TcpListener::bind(parsed)
        .await
        .map_err(|source| Error::Serve {
            addr: addr.to_owned(),
            source,
        })
}

/// Runs the monitor every `interval` and serves its last report on `listener` until `shutdown`
/// completes. The first run happens before the first request is answered.
pub async fn serve(
    monitor: Arc<Monitor>,
    listener: TcpListener,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let first = monitor.run().await;
    let (tx, rx) = watch::channel(Arc::new(first));
    let runner = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let report = monitor.run().await;
            if tx.send(Arc::new(report)).is_err() {
                break;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tokio::pin!(shutdown);
    let result = loop {
        let permit = tokio::select! {
            () = &mut shutdown => break Ok(()),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break Ok(()),
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let report = rx.borrow().clone();
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &report)).await;
                });
            }
            // Out of descriptors and the like: wait and go on rather than stop monitoring.
            Err(e) if is_transient(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(source) => break Err(Error::Serve { addr, source }),
        }
    };
    runner.abort();
    result
}

fn is_transient(e: &std::io::Error) -> bool {
    !matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::PermissionDenied
    )
}

/// Reads one request head and answers it; the connection is then closed.
async fn answer(mut stream: TcpStream, report: &Report) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                false,
            )
            .await;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let wants_openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            head_only,
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" if wants_openmetrics => {
            let body = report::openmetrics(report);
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/metrics" => {
            let body = report::prometheus(report);
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/" | "/index.html" => {
            let body = report::html(report);
            respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/report.json" => {
            let body = report::json(report);
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
