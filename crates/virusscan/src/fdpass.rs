//! Pipelined descriptor passing: one `zIDSESSION` connection on which many `zFILDES` requests
//! are in flight at once, answered by number (as `clamdscan --multiscan --fdpass` does), so
//! clamd's threads always have queued work while the client reads answers.
//!
//! A thread of the session's own reads the answers and hands each to its waiting request. The
//! socket is not registered with the async runtime: a registered socket wakes the runtime for
//! every answer that arrives, and in a tree scan those wake-ups (two context switches per file)
//! cost the client more CPU than anything else it does; the thread reads the answers in
//! batches while many requests are in flight. Sends never block the runtime (`MSG_DONTWAIT`).
//! Any failure of the connection (closed, reset, unnumbered or unknown reply) fails every
//! waiting request with an error and retires the session; a request never gets another's
//! answer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::SendFlags;
use tokio::sync::oneshot;

/// Requests waiting for their answer by number; `None` once the session is dead.
type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<io::Result<String>>>>>>;

/// Answers longer than this are not clamd's.
const MAX_REPLY: usize = 64 * 1024;

/// From this many requests in flight on, the answers are read in batches, ...
const BATCH_READS_FROM: usize = 16;
/// ... at most once per this pause (clamd's threads still have queued work meanwhile).
const BATCH_PAUSE: Duration = Duration::from_millis(1);

/// A full socket (clamd not reading) is retried this often until the I/O timeout.
const SEND_RETRY: Duration = Duration::from_millis(1);

/// `zFILDES` and the dummy byte that carries the descriptor, sent by one `sendmsg`. clamd gets
/// the same bytes and descriptor as from clamdscan's two writes: a receive stops after the
/// segment that carries a descriptor, so it takes command and descriptor together either way.
const FILDES: &[u8] = b"zFILDES\0\0";

pub(crate) struct PipelinedSession {
    /// Held while a request is written; the next request's number.
    next_id: tokio::sync::Mutex<u64>,
    socket: UnixStream,
    waiters: Waiters,
    last_used: Mutex<Instant>,
    reader: std::thread::JoinHandle<()>,
}

impl Drop for PipelinedSession {
    fn drop(&mut self) {
        // Ends the reader thread (its read returns).
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PipelinedSession {
    /// Starts a session on a connected socket.
    pub(crate) async fn start(
        stream: tokio::net::UnixStream,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        let socket = stream.into_std()?;
        // The reader thread blocks in `read`; sends pass MSG_DONTWAIT.
        socket.set_nonblocking(false)?;
        send_all(&socket, b"zIDSESSION\0", None, io_timeout).await?;
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = {
            let socket = socket.try_clone()?;
            let waiters = waiters.clone();
            std::thread::Builder::new()
                .name("clamd-answers".into())
                .spawn(move || read_replies(socket, &waiters))?
        };
        Ok(PipelinedSession {
            next_id: tokio::sync::Mutex::new(1),
            socket,
            waiters,
            last_used: Mutex::new(Instant::now()),
            reader,
        })
    }

    /// Alive, and not idle so long that clamd may be closing it (its `IdleTimeout`).
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
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Sends `zFILDES` with `file`'s descriptor; the receiver gets clamd's answer (without its
    /// number). A failure to send kills the session (the stream may hold half a request).
    pub(crate) async fn send(
        &self,
        file: &File,
        io_timeout: Duration,
    ) -> io::Result<oneshot::Receiver<io::Result<String>>> {
        let mut next_id = self.next_id.lock().await;
        let id = *next_id;
        *next_id += 1;
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiters).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "session closed")),
        };
        *lock(&self.last_used) = Instant::now();
        if let Err(e) = send_all(&self.socket, FILDES, Some(file), io_timeout).await {
            self.kill(&e);
            return Err(e);
        }
        Ok(rx)
    }
}

/// Sends `bytes`, with `file`'s descriptor (`SCM_RIGHTS`) on the first of them if given,
/// without ever blocking the thread: a full socket is retried every millisecond until
/// `io_timeout` has passed (no timer otherwise: this runs once per file).
async fn send_all(
    socket: &UnixStream,
    mut bytes: &[u8],
    mut file: Option<&File>,
    io_timeout: Duration,
) -> io::Result<()> {
    let mut deadline = None;
    while !bytes.is_empty() {
        match send_once(socket, bytes, file) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "nothing sent")),
            // The descriptor went with the first byte; the rest are plain bytes.
            Ok(n) => {
                bytes = &bytes[n..];
                file = None;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let until = *deadline.get_or_insert_with(|| Instant::now() + io_timeout);
                if Instant::now() >= until {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "clamd took no more requests",
                    ));
                }
                tokio::time::sleep(SEND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_once(socket: &UnixStream, bytes: &[u8], file: Option<&File>) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    use std::mem::MaybeUninit;
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let Some(file) = file else {
        return rustix::net::send(socket, bytes, flags).map_err(io::Error::from);
    };
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [file.as_fd()];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    rustix::net::sendmsg(socket, &[IoSlice::new(bytes)], &mut control, flags)
        .map_err(io::Error::from)
}

fn fail_all(waiters: &Waiters, why: &io::Error) {
    if let Some(waiting) = lock(waiters).take() {
        for (_, tx) in waiting {
            let _ = tx.send(Err(io::Error::new(why.kind(), why.to_string())));
        }
    }
}

/// Routes each NUL-terminated `N: answer` to request N until the connection fails (on the
/// session's own thread).
fn read_replies(mut socket: UnixStream, waiters: &Waiters) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let why = 'read: loop {
        let mut used = 0;
        while let Some(len) = buf[used..].iter().position(|&b| b == 0) {
            let text = String::from_utf8_lossy(&buf[used..used + len]);
            used += len + 1;
            let numbered = text
                .split_once(": ")
                .and_then(|(n, rest)| Some((n.parse::<u64>().ok()?, rest)));
            let Some((id, answer)) = numbered else {
                break 'read io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unnumbered reply from clamd: {text:?}"),
                );
            };
            let waiter = lock(waiters).as_mut().and_then(|w| w.remove(&id));
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
        buf.drain(..used);
        if buf.len() > MAX_REPLY {
            break io::Error::new(io::ErrorKind::InvalidData, "reply longer than 64 KiB");
        }
        let in_flight = lock(waiters).as_ref().map_or(0, HashMap::len);
        if in_flight >= BATCH_READS_FROM {
            std::thread::sleep(BATCH_PAUSE);
        }
        match socket.read(&mut chunk) {
            Ok(0) => {
                break io::Error::new(io::ErrorKind::UnexpectedEof, "clamd closed the session");
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    fail_all(waiters, &why);
}
