//! The control protocol between `logban` clients and the daemon (like fail2ban-client): one
//! JSON request line over a Unix socket, one JSON response line back.
//!
//! The socket is created mode 0600: whoever can use it can ban and unban.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::{Engine, JailStatus};
use crate::jail::{Ban, BanTime};
use crate::{Error, Result};

/// Longest request accepted, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;

/// A client's request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Every jail's counters and bans.
    Status,
    /// Ban `addr` in `jail`, for `bantime` seconds if given (-1: permanent).
    Ban {
        /// The jail.
        jail: String,
        /// The address.
        addr: IpAddr,
        /// Overrides the jail's ban time.
        bantime: Option<i64>,
    },
    /// Lift the ban of `addr` in `jail`.
    Unban {
        /// The jail.
        jail: String,
        /// The address.
        addr: IpAddr,
    },
}

/// The daemon's answer.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong, if not.
    pub error: Option<String>,
    /// For `status`: the jails.
    #[serde(default)]
    pub jails: Vec<JailStatus>,
    /// For `ban`/`unban`: the ban started or lifted (`None`: nothing to do).
    pub ban: Option<Ban>,
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Answers one request.
pub async fn handle(engine: &Engine, request: Request) -> Response {
    let result = match request {
        Request::Status => {
            return Response {
                ok: true,
                jails: engine.status(),
                ..Response::default()
            };
        }
        Request::Ban {
            jail,
            addr,
            bantime,
        } => {
            engine
                .ban(
                    &jail,
                    crate::canonical_addr(addr),
                    bantime.map(BanTime::from_secs),
                )
                .await
        }
        Request::Unban { jail, addr } => engine.unban(&jail, crate::canonical_addr(addr)).await,
    };
    match result {
        Ok(ban) => Response {
            ok: true,
            ban,
            ..Response::default()
        },
        Err(e) => Response {
            error: Some(error_chain(&e)),
            ..Response::default()
        },
    }
}

/// An error with its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Binds the control socket at `path` (replacing a stale one, refusing if a daemon answers).
pub async fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io_error(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another logban daemon is listening",
                ),
            ));
        }
        std::fs::remove_file(path).map_err(|e| io_error(path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io_error(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_error(path, e))?;
    Ok(listener)
}

/// Serves requests on `listener` forever (each connection in its own task).
pub async fn serve(engine: Engine, listener: UnixListener, path: PathBuf) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| io_error(&path, e))?;
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(&engine, stream).await {
                tracing::warn!("control connection: {e}");
            }
        });
    }
}

async fn serve_one(engine: &Engine, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(engine, request).await,
        Err(e) => Response {
            error: Some(format!("bad request: {e}")),
            ..Response::default()
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// Sends `request` to the daemon at `path` and returns its response.
pub async fn request(path: &Path, request: &Request) -> Result<Response> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| io_error(path, e))?;
    let (read, mut write) = stream.into_split();
    let mut out =
        serde_json::to_vec(request).map_err(|e| io_error(path, std::io::Error::other(e)))?;
    out.push(b'\n');
    write.write_all(&out).await.map_err(|e| io_error(path, e))?;
    let mut line = String::new();
    BufReader::new(read)
        .take(64 * 1024 * 1024)
        .read_line(&mut line)
        .await
        .map_err(|e| io_error(path, e))?;
    serde_json::from_str(&line).map_err(|e| {
        io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad response: {e}"),
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{JailConfig, MemorySink};

    #[tokio::test]
    async fn clients_ban_unban_and_read_status_over_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let sink = Arc::new(MemorySink::new());
        let engine = Engine::builder(sink.clone())
            .with_jail(JailConfig::builder("sshd").build().expect("jail"))
            .build()
            .await
            .expect("engine");
        let listener = bind(&path).await.expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            bind(&path).await.is_err(),
            "a second daemon must not steal the socket"
        );
        let server = tokio::spawn(serve(engine, listener, path.clone()));

        let addr: IpAddr = "2001:db8::7".parse().expect("ip");
        let ban = Request::Ban {
            jail: "sshd".into(),
            addr,
            bantime: Some(-1),
        };
        let r = request(&path, &ban).await.expect("ban");
        assert!(r.ok, "{r:?}");
        assert_eq!(r.ban.as_ref().map(|b| b.until), Some(None));
        assert!(sink.is_banned("sshd", addr));
        let r = request(&path, &Request::Status).await.expect("status");
        assert_eq!(r.jails[0].bans.len(), 1);
        assert_eq!(r.jails[0].counters.current_bans, 1);
        let r = request(
            &path,
            &Request::Unban {
                jail: "sshd".into(),
                addr,
            },
        )
        .await
        .expect("unban");
        assert!(r.ok && r.ban.is_some());
        assert!(!sink.is_banned("sshd", addr));
        let r = request(
            &path,
            &Request::Unban {
                jail: "nope".into(),
                addr,
            },
        )
        .await
        .expect("unban");
        assert!(!r.ok);
        assert!(r.error.expect("error").contains("nope"));
        server.abort();
    }
}
