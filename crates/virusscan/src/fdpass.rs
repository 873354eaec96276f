//! Pipelined descriptor passing: one `zIDSESSION` connection on which many `zFILDES` requests
//! are in flight at once, answered by number (as `clamdscan --multiscan --fdpass` does), so
//! clamd's threads always have queued work while the client reads answers.
//!
//! A task reads the answers and hands each to its waiting request. Any failure of the
//! connection (closed, reset, unnumbered or unknown reply) fails every waiting request with an
//! error and retires the session; a request never gets another's answer.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Requests waiting for their answer by number; `None` once the session is dead.
type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<io::Result<String>>>>>>;

/// Answers longer than this are not clamd's.
const MAX_REPLY: usize = 64 * 1024;

pub(crate) struct PipelinedSession {
    writer: tokio::sync::Mutex<(OwnedWriteHalf, u64)>,
    waiters: Waiters,
    last_used: Mutex<Instant>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for PipelinedSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PipelinedSession {
    /// Starts a session on a connected socket.
    pub(crate) async fn start(mut stream: UnixStream) -> io::Result<Self> {
        stream.write_all(b"zIDSESSION\0").await?;
        let (read, write) = stream.into_split();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_replies(read, waiters.clone()));
        Ok(PipelinedSession {
            writer: tokio::sync::Mutex::new((write, 1)),
            waiters,
            last_used: Mutex::new(Instant::now()),
            reader,
        })
    }

    /// Alive, and not idle so long that clamd may be closing it (its `IdleTimeout`). Its
    /// reader must be running too: it ends with the runtime that started it.
    pub(crate) fn is_usable(&self, idle_lifetime: Duration) -> bool {
        if self.reader.is_finished() {
            return false;
        }
        match lock(&self.waiters).as_ref() {
            None => false,
            Some(waiting) => !waiting.is_empty() || lock(&self.last_used).elapsed() < idle_lifetime,
        }
    }

    /// Fails every waiting request and retires the session.
    pub(crate) fn kill(&self, why: &io::Error) {
        fail_all(&self.waiters, why);
    }

    /// Sends `zFILDES` with `file`'s descriptor; the receiver gets clamd's answer (without its
    /// number). A failure to send kills the session (the stream may hold half a request).
    pub(crate) async fn send(
        &self,
        file: &File,
        io_timeout: Duration,
    ) -> io::Result<oneshot::Receiver<io::Result<String>>> {
        let mut writer = self.writer.lock().await;
        let id = writer.1;
        writer.1 += 1;
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiters).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "session closed")),
        };
        *lock(&self.last_used) = Instant::now();
        let (half, _) = &mut *writer;
        let sent = tokio::time::timeout(io_timeout, async {
            half.write_all(b"zFILDES\0").await?;
            crate::clamd::send_fd(half.as_ref(), file).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "sending FILDES timed out",
            ))
        });
        if let Err(e) = sent {
            fail_all(&self.waiters, &e);
            return Err(e);
        }
        Ok(rx)
    }
}

fn fail_all(waiters: &Waiters, why: &io::Error) {
    if let Some(waiting) = lock(waiters).take() {
        for (_, tx) in waiting {
            let _ = tx.send(Err(io::Error::new(why.kind(), why.to_string())));
        }
    }
}

/// Routes each NUL-terminated `N: answer` to request N until the connection fails.
async fn read_replies(mut read: OwnedReadHalf, waiters: Waiters) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let why = 'read: loop {
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let reply: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&reply[..end]);
            let numbered = text
                .split_once(": ")
                .and_then(|(n, rest)| Some((n.parse::<u64>().ok()?, rest)));
            let Some((id, answer)) = numbered else {
                break 'read io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unnumbered reply from clamd: {text:?}"),
                );
            };
            let waiter = lock(&waiters).as_mut().and_then(|w| w.remove(&id));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(Ok(answer.to_owned()));
                }
                None => {
                    break 'read io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("reply for no request: {text:?}"),
                    );
                }
            }
        }
        if buf.len() > MAX_REPLY {
            break io::Error::new(io::ErrorKind::InvalidData, "reply longer than 64 KiB");
        }
        match read.read(&mut chunk).await {
            Ok(0) => {
                break io::Error::new(io::ErrorKind::UnexpectedEof, "clamd closed the session");
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    fail_all(&waiters, &why);
}
