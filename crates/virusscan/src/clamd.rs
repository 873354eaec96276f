//! A clamd client: TCP or unix socket, `zPING`, `zVERSION`, `zINSTREAM` with chunk framing
//! over a small pool of `zIDSESSION` connections, and `zFILDES` (passing the open file's
//! descriptor, as `clamdscan --fdpass`) pipelined on one session (see `fdpass`).

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{Error, Result};
use crate::fdpass::PipelinedSession;
use crate::fsutil::FileIdentity;
use crate::scanner::{Scanner, Verdict};

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => f.write_str(addr),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Builds a [`ClamdClient`]. Nothing connects until the first call.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClamdClientBuilder {
    endpoint: Endpoint,
    io_timeout: Duration,
    scan_timeout: Duration,
    max_connections: usize,
    pipeline_depth: Option<usize>,
    idle_lifetime: Duration,
    chunk_size: usize,
    stream_max_length: Option<u64>,
    max_file_size: Option<u64>,
    fd_passing: bool,
    database_dir: Option<PathBuf>,
}

impl ClamdClientBuilder {
    fn new(endpoint: Endpoint) -> Self {
        let fd_passing = matches!(endpoint, Endpoint::Unix(_));
        ClamdClientBuilder {
            endpoint,
            io_timeout: Duration::from_secs(10),
            scan_timeout: Duration::from_secs(120),
            max_connections: 4,
            pipeline_depth: None,
            idle_lifetime: Duration::from_secs(10),
            chunk_size: 64 * 1024,
            stream_max_length: None,
            max_file_size: None,
            fd_passing,
            database_dir: None,
        }
    }

    /// Limit for connecting and for each read or write of the request (default 10 s).
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Limit for clamd's answer once the data is sent, i.e. for the scan itself (default 120 s).
    pub fn with_scan_timeout(mut self, timeout: Duration) -> Self {
        self.scan_timeout = timeout;
        self
    }

    /// At most this many calls in flight (default 4, at most 64): streams and pings each use
    /// one pooled session (so at most this many connections); descriptor-passing scans share
    /// one pipelined session with up to
    /// [`with_pipeline_depth`](Self::with_pipeline_depth) requests outstanding on it (by
    /// default this many).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// At most this many descriptor-passing requests outstanding on the pipelined session
    /// (1..=256; default: [`with_max_connections`](Self::with_max_connections)). clamd queues
    /// them for its threads; a deep queue keeps those threads busy while the client waits for a
    /// CPU (`clamdscan --multiscan --fdpass` keeps about 100 queued). clamd holds each queued
    /// descriptor open and takes only so many of a session's requests at a time (100 in this
    /// crate's benchmark); the rest wait in the socket until it does.
    pub fn with_pipeline_depth(mut self, n: usize) -> Self {
        self.pipeline_depth = Some(n);
        self
    }

    /// Idle pooled sessions older than this are closed rather than reused (default 10 s; keep
    /// it below clamd's `IdleTimeout`, 30 s by default).
    pub fn with_idle_lifetime(mut self, lifetime: Duration) -> Self {
        self.idle_lifetime = lifetime;
        self
    }

    /// Size of each `zINSTREAM` chunk (default 64 KiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// clamd's `StreamMaxLength`, when known. clamd answers `INSTREAM size limit exceeded` and
    /// closes the connection once a stream passes it; over TCP the close can reset the
    /// connection before that answer is read. With the limit known, a stream cut off after
    /// sending more than it is reported [`Verdict::TooLarge`] rather than an error.
    pub fn with_stream_max_length(mut self, bytes: u64) -> Self {
        self.stream_max_length = Some(bytes);
        self
    }

    /// clamd's `MaxFileSize` (Debian's clamd.conf: 25 MiB). clamd skips a larger file and, unless
    /// clamd.conf says `AlertExceedsMax yes` (Debian's does not), answers that it is clean. With
    /// the limit known, [`Scanner::scan_file`] reports a larger file [`Verdict::TooLarge`] without
    /// sending it, so an unscanned file is never reported clean.
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = Some(bytes);
        self
    }

    /// Whether [`Scanner::scan_file`] passes the file's descriptor (`zFILDES`) instead of
    /// streaming its content. Only possible on a unix socket (the default there); clamd then
    /// reads the file itself, so its `MaxFileSize` applies instead of `StreamMaxLength`. Set
    /// `AlertExceedsMax yes` in clamd.conf, or such files come back clean unscanned.
    pub fn with_fd_passing(mut self, enabled: bool) -> Self {
        self.fd_passing = enabled;
        self
    }

    /// clamd's `DatabaseDirectory`, when it is on this host. `VERSION` names the official
    /// databases' version but not unofficial ones (`.ndb`, `.hdb`, ...); with this set, the
    /// [`signature_version`](Scanner::signature_version) also covers the names, sizes and
    /// modification times of the files there, so adding a signature file invalidates caches.
    pub fn with_database_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.database_dir = Some(dir.into());
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<ClamdClient> {
        if self.max_connections == 0 || self.max_connections > 64 {
            return Err(Error::InvalidConfig {
                field: "max_connections",
                reason: format!("{} is not within 1..=64", self.max_connections),
            });
        }
        let depth = self.pipeline_depth.unwrap_or(self.max_connections);
        if depth == 0 || depth > 256 {
            return Err(Error::InvalidConfig {
                field: "pipeline_depth",
                reason: format!("{depth} is not within 1..=256"),
            });
        }
        if self.chunk_size == 0 || self.chunk_size > 16 << 20 {
            return Err(Error::InvalidConfig {
                field: "chunk_size",
                reason: format!("{} is not within 1..=16 MiB", self.chunk_size),
            });
        }
        for (field, value) in [
            ("io_timeout", self.io_timeout),
            ("scan_timeout", self.scan_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be more than zero".into(),
                });
            }
        }
        if self.fd_passing && !matches!(self.endpoint, Endpoint::Unix(_)) {
            return Err(Error::InvalidConfig {
                field: "fd_passing",
                reason: "descriptors can only be passed over a unix socket".into(),
            });
        }
        Ok(ClamdClient {
            inner: Arc::new(Inner {
                permits: Semaphore::new(self.max_connections),
                fd_permits: Semaphore::new(depth),
                idle: Mutex::new(Vec::new()),
                fd_session: tokio::sync::Mutex::new(None),
                config: self,
            }),
        })
    }
}

/// A clamd client. Cheap to clone (clones share the pool).
///
/// Every call runs in a `zIDSESSION` session taken from a pool of at most
/// [`with_max_connections`](ClamdClientBuilder::with_max_connections) connections; a session
/// that failed in any way is closed, never reused. A replayable call (ping, version, a passed
/// descriptor) that fails on a reused session is retried once on a new one, since clamd may
/// have closed an idle session.
#[derive(Clone)]
pub struct ClamdClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ClamdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClamdClient")
            .field("endpoint", &self.inner.config.endpoint.to_string())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClamdClientBuilder,
    permits: Semaphore,
    /// Descriptor-passing requests outstanding on the pipelined session.
    fd_permits: Semaphore,
    idle: Mutex<Vec<Session>>,
    /// The session descriptor-passing scans share (pipelined).
    fd_session: tokio::sync::Mutex<Option<Arc<PipelinedSession>>>,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// False if clamd closed the connection (or sent something unasked) while it was idle.
    fn looks_open(&self) -> bool {
        let mut byte = [0u8; 1];
        let peek = match self {
            Stream::Tcp(s) => s.try_read(&mut byte),
            Stream::Unix(s) => s.try_read(&mut byte),
        };
        matches!(peek, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// One `zIDSESSION` connection: clamd numbers its replies `N: ...` in request order.
struct Session {
    stream: Stream,
    next_id: u64,
    idle_since: Instant,
    reused: bool,
}

/// One request.
enum Request<'a> {
    Ping,
    Version,
    Stream(&'a mut (dyn AsyncRead + Unpin + Send)),
}

/// A failure, and whether it happened on a reused session before clamd answered anything.
struct Failed {
    error: Error,
    stale: bool,
}

impl ClamdClient {
    /// A client for clamd listening on TCP at `addr` (`host:port`; use loopback or a trusted
    /// network: clamd's protocol has no authentication or encryption).
    pub fn tcp(addr: impl Into<String>) -> ClamdClientBuilder {
        ClamdClientBuilder::new(Endpoint::Tcp(addr.into()))
    }

    /// A client for clamd listening on the unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> ClamdClientBuilder {
        ClamdClientBuilder::new(Endpoint::Unix(path.into()))
    }

    /// clamd's `VERSION` reply, e.g. `ClamAV 1.4.3/27480/Mon Dec  1 09:00:00 2026`.
    pub async fn version(&self) -> Result<String> {
        self.call(Request::Version).await.map(|r| r.0)
    }

    /// Runs a request, returning clamd's reply (without the session number) and, for a scan,
    /// the verdict. A failure on a reused session before anything was consumed from a stream's
    /// reader is retried once on a new session.
    async fn call(&self, mut request: Request<'_>) -> Result<(String, Option<Verdict>)> {
        let permit = self.permit().await?;
        let mut session = self.session(&permit).await?;
        let outcome = match self.exchange(&mut session, &mut request).await {
            Err(Failed { stale: true, .. }) => {
                tracing::debug!("clamd session closed while idle; retrying on a new one");
                session = self.connect().await?;
                self.exchange(&mut session, &mut request).await
            }
            other => other,
        };
        match outcome {
            Ok(reply) => {
                // clamd ends a session after the stream size limit.
                if !matches!(reply.1, Some(Verdict::TooLarge { .. })) {
                    self.put_back(session);
                }
                Ok(reply)
            }
            Err(failed) => Err(failed.error),
        }
    }

    /// One of the `max_connections` calls in flight.
    async fn permit(&self) -> Result<SemaphorePermit<'_>> {
        acquire(&self.inner.permits).await
    }

    async fn session(&self, _permit: &SemaphorePermit<'_>) -> Result<Session> {
        let cfg = &self.inner.config;
        loop {
            let pooled = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            match pooled {
                Some(s) if s.idle_since.elapsed() < cfg.idle_lifetime && s.stream.looks_open() => {
                    return Ok(Session { reused: true, ..s });
                }
                Some(_) => continue,
                None => return self.connect().await,
            }
        }
    }

    fn put_back(&self, mut session: Session) {
        session.idle_since = Instant::now();
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.inner.config.max_connections {
            idle.push(session);
        }
    }

    fn timeout_error(&self, what: &'static str, limit: Duration) -> Error {
        Error::Timeout {
            endpoint: self.inner.config.endpoint.to_string(),
            what,
            seconds: limit.as_secs_f64(),
        }
    }

    fn transport(&self, what: &'static str, source: std::io::Error) -> Error {
        Error::Transport {
            endpoint: self.inner.config.endpoint.to_string(),
            what,
            source,
        }
    }

    /// A connection to clamd, under the I/O timeout.
    async fn connect_stream(&self) -> Result<Stream> {
        let cfg = &self.inner.config;
        let connect = async {
            match &cfg.endpoint {
                Endpoint::Tcp(addr) => TcpStream::connect(addr.as_str()).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                Endpoint::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
            }
        };
        tokio::time::timeout(cfg.io_timeout, connect)
            .await
            .map_err(|_| self.timeout_error("connecting", cfg.io_timeout))?
            .map_err(|source| Error::Connect {
                endpoint: cfg.endpoint.to_string(),
                source,
            })
    }

    async fn connect(&self) -> Result<Session> {
        let mut stream = self.connect_stream().await?;
        self.io(stream.write_all(b"zIDSESSION\0"), "starting a session")
            .await?;
        Ok(Session {
            stream,
            next_id: 1,
            idle_since: Instant::now(),
            reused: false,
        })
    }

    /// Runs `fut` (an I/O step) under the I/O timeout.
    async fn io<T>(
        &self,
        fut: impl std::future::Future<Output = std::io::Result<T>>,
        what: &'static str,
    ) -> Result<T> {
        let limit = self.inner.config.io_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| self.timeout_error(what, limit))?
            .map_err(|e| self.transport(what, e))
    }

    async fn exchange(
        &self,
        session: &mut Session,
        request: &mut Request<'_>,
    ) -> std::result::Result<(String, Option<Verdict>), Failed> {
        let id = session.next_id;
        session.next_id += 1;
        let reused = session.reused;
        // Whether a failure could be clamd having closed the idle session: only before it sent
        // anything back, on a reused session.
        let stale = |error: Error| Failed {
            stale: reused && matches!(error, Error::Transport { .. }),
            error,
        };
        let fatal = |error: Error| Failed {
            error,
            stale: false,
        };
        let is_scan = matches!(request, Request::Stream(_));
        let is_stream = matches!(request, Request::Stream(_));
        let mut stream_state = None;
        match request {
            Request::Ping => self
                .io(session.stream.write_all(b"zPING\0"), "sending PING")
                .await
                .map_err(stale)?,
            Request::Version => self
                .io(session.stream.write_all(b"zVERSION\0"), "sending VERSION")
                .await
                .map_err(stale)?,
            Request::Stream(reader) => {
                // Nothing is read from the reader before the command is sent, so a failure
                // here can be retried.
                self.io(session.stream.write_all(b"zINSTREAM\0"), "sending INSTREAM")
                    .await
                    .map_err(stale)?;
                stream_state = Some(
                    self.send_stream(&mut session.stream, &mut **reader)
                        .await
                        .map_err(fatal)?,
                );
            }
        }
        let limit = if is_scan {
            self.inner.config.scan_timeout
        } else {
            self.inner.config.io_timeout
        };
        let reply = tokio::time::timeout(limit, read_reply(&mut session.stream))
            .await
            .map_err(|_| fatal(self.timeout_error("waiting for the reply", limit)))
            .and_then(|r| {
                r.map_err(|e| {
                    let error = self.transport("reading the reply", e);
                    if is_stream {
                        fatal(error)
                    } else {
                        stale(error)
                    }
                })
            });
        let reply = match (reply, stream_state) {
            (Ok(reply), _) => reply,
            // The send was cut off past the known limit and the answer lost with the reset.
            (Err(failed), Some(StreamSent::CutOff { sent, error })) => {
                return match self.inner.config.stream_max_length {
                    Some(max) if sent > max => Ok((
                        String::new(),
                        Some(Verdict::TooLarge {
                            reason: format!(
                                "clamd closed the stream after {sent} bytes, past StreamMaxLength {max} ({error})"
                            ),
                        }),
                    )),
                    _ => Err(failed),
                };
            }
            (Err(failed), _) => return Err(failed),
        };
        let text = strip_session_id(&reply, id).map_err(fatal)?;
        let verdict = if is_scan {
            Some(parse_verdict(&text).map_err(fatal)?)
        } else {
            None
        };
        Ok((text, verdict))
    }

    /// Sends the reader's content in chunks (`<u32 BE length><bytes>`, ended by
    /// a zero length). A write failure is not an error yet: clamd closes the connection when the
    /// stream passes `StreamMaxLength`, and its answer may still be readable.
    async fn send_stream(
        &self,
        stream: &mut Stream,
        reader: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<StreamSent> {
        let chunk = self.inner.config.chunk_size;
        let mut buf = vec![0u8; chunk + 4];
        let mut sent: u64 = 0;
        loop {
            let n = read_full(reader, &mut buf[4..])
                .await
                .map_err(Error::Source)?;
            let header = u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
            buf[..4].copy_from_slice(&header);
            let frame = &buf[..4 + n];
            match self.io(stream.write_all(frame), "sending the stream").await {
                Ok(()) => {}
                Err(Error::Transport { source, .. }) => {
                    return Ok(StreamSent::CutOff {
                        sent,
                        error: source.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
            if n == 0 {
                return Ok(StreamSent::Complete);
            }
            sent += n as u64;
        }
    }
}

impl ClamdClient {
    /// The shared pipelined session, started anew if there is none or it died or idled out;
    /// and whether it was reused.
    async fn fd_session(&self) -> Result<(Arc<PipelinedSession>, bool)> {
        let cfg = &self.inner.config;
        let mut slot = self.inner.fd_session.lock().await;
        if let Some(session) = slot.as_ref()
            && session.is_usable(cfg.idle_lifetime)
        {
            return Ok((session.clone(), true));
        }
        let Stream::Unix(stream) = self.connect_stream().await? else {
            return Err(Error::InvalidConfig {
                field: "fd_passing",
                reason: "descriptors can only be passed over a unix socket".into(),
            });
        };
        let session = Arc::new(
            PipelinedSession::start(stream, cfg.io_timeout)
                .await
                .map_err(|e| self.transport("starting a session", e))?,
        );
        *slot = Some(session.clone());
        Ok((session, false))
    }

    /// Scans an open file by passing its descriptor on the pipelined session (at most
    /// `pipeline_depth` requests in flight). A send that fails on a reused session (clamd may
    /// have just closed it) is retried once on a new one.
    async fn scan_fd(&self, file: &File) -> Result<Verdict> {
        let cfg = &self.inner.config;
        let _permit = acquire(&self.inner.fd_permits).await?;
        let (mut session, mut reused) = self.fd_session().await?;
        let answer = loop {
            match session.send(file, cfg.io_timeout).await {
                Ok(answer) => break answer,
                Err(_) if reused => (session, reused) = self.fd_session().await?,
                Err(e) => return Err(self.transport("passing the file descriptor", e)),
            }
        };
        let reply = match tokio::time::timeout(cfg.scan_timeout, answer).await {
            Err(_) => {
                // clamd is stuck: fail everything waiting rather than let it wait as long.
                session.kill(&std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "a scan timed out",
                ));
                return Err(self.timeout_error("waiting for the reply", cfg.scan_timeout));
            }
            Ok(Err(_)) => {
                let closed = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "session closed");
                return Err(self.transport("reading the reply", closed));
            }
            Ok(Ok(Err(e))) => return Err(self.transport("reading the reply", e)),
            Ok(Ok(Ok(reply))) => reply,
        };
        parse_verdict(&reply)
    }
}

async fn acquire(permits: &Semaphore) -> Result<SemaphorePermit<'_>> {
    permits.acquire().await.map_err(|_| Error::Protocol {
        reply: "client closed".into(),
    })
}

/// How sending a stream ended.
enum StreamSent {
    Complete,
    /// clamd stopped accepting data after `sent` bytes.
    CutOff {
        sent: u64,
        error: String,
    },
}

/// Reads until `buf` is full or the reader ends; returns the byte count.
async fn read_full(
    reader: &mut (dyn AsyncRead + Unpin + Send),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Replies longer than this are not clamd's.
const MAX_REPLY: usize = 64 * 1024;

/// Reads one NUL-terminated reply.
async fn read_reply(stream: &mut Stream) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::with_capacity(64);
    let mut byte = [0u8; 256];
    loop {
        // Byte by byte would be slow; clamd sends nothing after the NUL until the next request.
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "clamd closed the connection before a complete reply",
            ));
        }
        if let Some(end) = byte[..n].iter().position(|&b| b == 0) {
            reply.extend_from_slice(&byte[..end]);
            return Ok(reply);
        }
        reply.extend_from_slice(&byte[..n]);
        if reply.len() > MAX_REPLY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "reply longer than 64 KiB",
            ));
        }
    }
}

/// Removes the `N: ` prefix of a session reply, checking that `N` is the request's number.
fn strip_session_id(reply: &[u8], id: u64) -> Result<String> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let Some((number, rest)) = text.split_once(": ") else {
        return Err(Error::Protocol { reply: text });
    };
    if number.parse::<u64>().ok() != Some(id) {
        return Err(Error::Protocol { reply: text });
    }
    Ok(rest.to_owned())
}

/// Signatures clamd uses for "not scanned because too large" with `AlertExceedsMax yes`.
const LIMIT_SIGNATURE_PREFIX: &str = "Heuristics.Limits.Exceeded";

/// Turns a scan reply (`stream: OK`, `fd[12]: NAME FOUND`, `... ERROR`) into a verdict.
pub(crate) fn parse_verdict(reply: &str) -> Result<Verdict> {
    if let Some(message) = reply.strip_suffix(" ERROR") {
        if message.contains("size limit exceeded") {
            return Ok(Verdict::TooLarge {
                reason: message.to_owned(),
            });
        }
        return Err(Error::Clamd {
            reply: reply.to_owned(),
        });
    }
    let body = if let Some(rest) = reply.strip_prefix("stream: ") {
        rest
    } else if let Some(rest) = reply.strip_prefix("fd[") {
        match rest.split_once("]: ") {
            Some((n, body)) if n.bytes().all(|b| b.is_ascii_digit()) => body,
            _ => {
                return Err(Error::Protocol {
                    reply: reply.into(),
                });
            }
        }
    } else {
        return Err(Error::Protocol {
            reply: reply.into(),
        });
    };
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    match body.strip_suffix(" FOUND") {
        Some(sig) if !sig.is_empty() && !sig.contains(char::is_whitespace) => {
            if sig.starts_with(LIMIT_SIGNATURE_PREFIX) {
                Ok(Verdict::TooLarge {
                    reason: format!("clamd: {sig}"),
                })
            } else {
                Ok(Verdict::Infected {
                    signature: sig.to_owned(),
                })
            }
        }
        _ => Err(Error::Protocol {
            reply: reply.into(),
        }),
    }
}

fn scan_result(reply: (String, Option<Verdict>)) -> Result<Verdict> {
    reply.1.ok_or(Error::Protocol { reply: reply.0 })
}

#[async_trait]
impl Scanner for ClamdClient {
    async fn scan_reader(&self, reader: &mut (dyn AsyncRead + Unpin + Send)) -> Result<Verdict> {
        scan_result(self.call(Request::Stream(reader)).await?)
    }

    async fn signature_version(&self) -> Result<String> {
        let version = self.version().await?;
        let Some(dir) = self.inner.config.database_dir.clone() else {
            return Ok(version);
        };
        let digest = tokio::task::spawn_blocking(move || database_digest(&dir))
            .await
            .map_err(|e| Error::Source(std::io::Error::other(e)))??;
        Ok(format!("{version} db:{digest}"))
    }

    async fn ping(&self) -> Result<()> {
        let (reply, _) = self.call(Request::Ping).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(Error::Protocol { reply })
        }
    }

    async fn scan_file(&self, file: &File) -> Result<Verdict> {
        let size = match self.inner.config.max_file_size {
            // One fstat of an open descriptor: no path walk, nothing that can hang.
            Some(_) => Some(file.metadata().map_err(Error::Source)?.len()),
            None => None,
        };
        self.scan_file_of_size(file, size).await
    }

    async fn scan_file_with_identity(
        &self,
        file: &File,
        identity: &FileIdentity,
    ) -> Result<Verdict> {
        // The caller's fstat has the size: no second one per file.
        self.scan_file_of_size(file, Some(identity.size)).await
    }
}

impl ClamdClient {
    /// Scans an open file whose size (when needed for `MaxFileSize`) is `size`.
    async fn scan_file_of_size(&self, file: &File, size: Option<u64>) -> Result<Verdict> {
        if let (Some(limit), Some(size)) = (self.inner.config.max_file_size, size)
            && size > limit
        {
            return Ok(Verdict::TooLarge {
                reason: format!("{size} bytes is over clamd's MaxFileSize of {limit} bytes"),
            });
        }
        if self.inner.config.fd_passing {
            return self.scan_fd(file).await;
        }
        let mut reader = crate::scanner::reader_from_start(file).await?;
        self.scan_reader(&mut reader).await
    }
}

/// SHA-256 over the sorted (name, size, mtime) of the files in clamd's database directory.
fn database_digest(dir: &std::path::Path) -> Result<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, "listing", e))? {
        let entry = entry.map_err(|e| Error::io(dir, "listing", e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(entry.path(), "stat", e))?;
        if meta.is_file() {
            entries.push((
                entry.file_name(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
            ));
        }
    }
    entries.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, size, mtime, nsec) in &entries {
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&size.to_le_bytes());
        ctx.update(&mtime.to_le_bytes());
        ctx.update(&nsec.to_le_bytes());
    }
    Ok(hex::encode(&ctx.finish().as_ref()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_replies() {
        assert_eq!(parse_verdict("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(parse_verdict("fd[12]: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_verdict("stream: Win.Test.EICAR_HDB-1 FOUND").unwrap(),
            Verdict::Infected {
                signature: "Win.Test.EICAR_HDB-1".into()
            }
        );
        assert!(matches!(
            parse_verdict("INSTREAM size limit exceeded. ERROR").unwrap(),
            Verdict::TooLarge { .. }
        ));
        assert!(matches!(
            parse_verdict("fd[7]: Heuristics.Limits.Exceeded.MaxFileSize FOUND").unwrap(),
            Verdict::TooLarge { .. }
        ));
        assert!(matches!(
            parse_verdict("stream: lstat() failed: No such file. ERROR"),
            Err(Error::Clamd { .. })
        ));
        for bad in [
            "",
            "OK",
            "stream:",
            "stream: FOUND",
            "fd[x]: OK",
            "stream: a b FOUND",
            "PONG",
        ] {
            assert!(
                matches!(parse_verdict(bad), Err(Error::Protocol { .. })),
                "{bad:?} must not be a verdict"
            );
        }
    }

    proptest::proptest! {
        /// Whatever clamd (or an impostor) answers, only the two exact OK forms are clean.
        #[test]
        fn only_ok_is_clean(reply in "\\PC{0,80}") {
            let verdict = parse_verdict(&reply);
            if matches!(verdict, Ok(Verdict::Clean)) {
                let ok = reply == "stream: OK"
                    || reply.strip_prefix("fd[").and_then(|r| r.strip_suffix("]: OK"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                proptest::prop_assert!(ok, "{reply:?} parsed as clean");
            }
        }
    }

    #[test]
    fn session_numbers_must_match() {
        assert_eq!(strip_session_id(b"3: PONG", 3).unwrap(), "PONG");
        assert!(strip_session_id(b"2: PONG", 3).is_err());
        assert!(strip_session_id(b"PONG", 1).is_err());
    }
}
