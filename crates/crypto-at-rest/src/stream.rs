//! The STREAM body engine: a sequence of [`ChunkKey`]-sealed chunks, in bounded memory.
//!
//! A body is the plaintext cut into chunks of `chunk_size` bytes, each sealed with the chunk
//! counter and a last-chunk flag in its nonce (see [`crate::chunk`]). The rules, which are age's:
//!
//! * every chunk but the last holds exactly `chunk_size` plaintext bytes;
//! * the last chunk holds 1 to `chunk_size` bytes (a full last chunk is fine), and is empty only
//!   when the whole plaintext is empty;
//! * a body without a last chunk is truncated, and bytes after the last chunk are an error.
//!
//! Readers release verified plaintext up to the first chunk that fails and then report the
//! error. Like age's reference implementation, a full-size chunk whose flag disagrees with its
//! position is still released before the error: a last chunk followed by more data
//! (`"data follows the last chunk"`) and a non-last chunk at the end of the input
//! (`"stream ends before its last chunk"`).
//!
//! # API inside the crate (used by the stream format and by the age payload)
//!
//! * [`Body::new(key, chunk_size, aad)`](Body::new): a key, a chunk size and the associated data
//!   every chunk is sealed with (age: ChaCha20-Poly1305, 64 KiB, empty AAD).
//! * [`seal_body`] / [`open_body`]: read a whole input, write the whole output, on `threads`
//!   cores in batches of up to 1 MiB per thread. `threads == 1` runs on the calling thread.
//!   Both return the number of bytes written; `open_body` writes the released plaintext before
//!   returning an error.
//! * [`EncryptWriter::new(inner, body)`](EncryptWriter::new) (std `Write`, end with
//!   [`EncryptWriter::finish`]) and [`DecryptReader::new(inner, body)`](DecryptReader::new)
//!   (std `Read`): one chunk of memory each, on the calling thread.
//! * [`SealState`] / [`OpenState`]: the I/O-free cores of those adapters, which the tokio
//!   adapters in `async_io` drive as well.

use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::chunk::{ChunkKey, TAG_LEN};
use crate::error::{Error, Stage};

/// Sealed bytes per batch on one thread: small enough that a batch stays in a core's L2 cache
/// between reading it and sealing or opening it.
const BATCH_BYTES_ONE_THREAD: usize = 256 << 10;
/// Sealed bytes per batch on several threads: larger, so taking turns costs little.
const BATCH_BYTES: usize = 1 << 20;

/// What a STREAM body is sealed with: a chunk key, a chunk size and per-chunk associated data.
#[derive(Debug)]
pub(crate) struct Body {
    key: ChunkKey,
    chunk_size: usize,
    aad: Vec<u8>,
}

/// How a successfully opened chunk relates to the rest of the body.
enum Outcome {
    /// More chunks follow.
    More,
    /// This was the last chunk.
    Last,
    /// The chunk's plaintext is genuine and is released, then this error ends the body.
    ReleaseThen(Error),
}

impl Body {
    /// A body sealed under `key` in chunks of `chunk_size` (at least 1) plaintext bytes.
    pub(crate) fn new(key: ChunkKey, chunk_size: usize, aad: Vec<u8>) -> Self {
        assert!(chunk_size > 0, "chunk size must be positive");
        Self {
            key,
            chunk_size,
            aad,
        }
    }

    /// Plaintext bytes per full chunk.
    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes per full sealed chunk.
    pub(crate) fn sealed_chunk_size(&self) -> usize {
        self.chunk_size + TAG_LEN
    }

    /// Seals `data` in place as chunk `counter`, returning the tag.
    pub(crate) fn seal_separate(&self, counter: u64, last: bool, data: &mut [u8]) -> [u8; TAG_LEN] {
        self.key.seal_separate(counter, last, &self.aad, data)
    }

    /// Seals `slot[..len]` in place as chunk `counter`, writing the tag after it.
    pub(crate) fn seal_chunk(&self, counter: u64, last: bool, slot: &mut [u8], len: usize) {
        self.key.seal_slot(counter, last, &self.aad, slot, len);
    }

    /// Opens chunk `counter` in place, its position (last or not) known from the body's length.
    pub(crate) fn open_at<'a>(
        &self,
        counter: u64,
        last: bool,
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        self.key.open(counter, last, &self.aad, buf)
    }

    /// Opens sealed chunk `ct` (number `counter`) into `out[..plaintext len]`.
    ///
    /// `data_follows` says whether the input holds more bytes after `ct`; `out` must hold at
    /// least `ct.len()` bytes (it is used as the in-place buffer, so `ct` survives a failed try).
    fn open_chunk(
        &self,
        counter: u64,
        ct: &[u8],
        data_follows: bool,
        out: &mut [u8],
    ) -> Result<(usize, Outcome), Error> {
        if ct.is_empty() {
            return Err(Error::MalformedPayload("the payload has no chunks"));
        }
        if ct.len() < TAG_LEN {
            return Err(Error::Authentication(Stage::PayloadChunk));
        }
        let full = ct.len() == self.sealed_chunk_size();
        if !full && counter > 0 && ct.len() == TAG_LEN {
            return Err(Error::MalformedPayload(
                "an empty last chunk follows other chunks",
            ));
        }
        // A short chunk can only be the last one; a full one is last exactly when nothing follows.
        let expect_last = !full || !data_follows;
        let len = ct.len() - TAG_LEN;
        let buf = &mut out[..ct.len()];
        let mut try_open = |last: bool| {
            buf.copy_from_slice(ct);
            self.key.open(counter, last, &self.aad, buf).is_ok()
        };
        if try_open(expect_last) {
            let outcome = if expect_last {
                Outcome::Last
            } else {
                Outcome::More
            };
            return Ok((len, outcome));
        }
        // A full chunk whose flag disagrees with its position is genuine but ends the body.
        if full && try_open(!expect_last) {
            let reason = if expect_last {
                "the stream ends before its last chunk"
            } else {
                "data follows the last chunk"
            };
            return Ok((len, Outcome::ReleaseThen(Error::MalformedPayload(reason))));
        }
        Err(Error::Authentication(Stage::PayloadChunk))
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
pub(crate) fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Whole-input engine, on several threads.

/// The shared input side of the pipeline: the reader plus one byte of lookahead.
struct Input<R> {
    reader: R,
    lookahead: Option<u8>,
    ended: bool,
    next_batch: u64,
}

impl<R: Read> Input<R> {
    /// Fills `buf` (lookahead byte first); fewer bytes than asked means the input ended.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        if let (Some(b), Some(first)) = (self.lookahead, buf.first_mut()) {
            *first = b;
            self.lookahead = None;
            n = 1;
        }
        Ok(n + fill(&mut self.reader, &mut buf[n..])?)
    }

    /// Whether more input follows (keeping the byte it peeked).
    fn more(&mut self) -> io::Result<bool> {
        if self.lookahead.is_none() {
            let mut b = [0u8];
            if fill(&mut self.reader, &mut b)? == 1 {
                self.lookahead = Some(b[0]);
            }
        }
        Ok(self.lookahead.is_some())
    }
}

/// The shared output side: the writer and whose turn it is to write.
struct Output<W> {
    writer: W,
    next_batch: u64,
    written: u64,
    error: Option<Error>,
}

/// One direction of the engine, working on batches of `chunks_per_batch` chunks.
trait BatchJob: Sync {
    /// Per-thread buffers, allocated once.
    type Scratch: Send;
    fn scratch(&self) -> Self::Scratch;
    /// Reads batch `index` into `scratch`; returns whether the input ends with this batch.
    fn read<R: Read>(&self, input: &mut Input<R>, scratch: &mut Self::Scratch) -> io::Result<bool>;
    /// Processes the batch whose first chunk is number `first`: the bytes to write, and an
    /// error to report after writing them.
    fn process<'s>(&self, scratch: &'s mut Self::Scratch, first: u64) -> (&'s [u8], Option<Error>);
    fn batches(&self) -> &Batches<'_>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `job` over the whole input with `threads` workers taking turns.
///
/// Each worker reads a batch (one at a time, in order), processes it while the others read,
/// process or write, then waits for its turn to write. Memory is `threads` batches.
fn run<J: BatchJob, R: Read + Send, W: Write + Send>(
    job: &J,
    reader: R,
    writer: W,
    threads: usize,
) -> Result<u64, Error> {
    let input = Mutex::new(Input {
        reader,
        lookahead: None,
        ended: false,
        next_batch: 0,
    });
    let output = Mutex::new(Output {
        writer,
        next_batch: 0,
        written: 0,
        error: None,
    });
    let turn = Condvar::new();
    let worker = || {
        let mut scratch = job.scratch();
        loop {
            let (index, read) = {
                let mut input = lock(&input);
                if input.ended {
                    break;
                }
                let index = input.next_batch;
                input.next_batch += 1;
                let read = job.read(&mut input, &mut scratch);
                input.ended = !matches!(read, Ok(false));
                (index, read)
            };
            let (bytes, mut error) = match read {
                Ok(_) => job.process(&mut scratch, index * job.batches().chunks as u64),
                Err(e) => (&[][..], Some(Error::Io(e))),
            };
            let mut out = lock(&output);
            while out.next_batch != index && out.error.is_none() {
                out = turn.wait(out).unwrap_or_else(PoisonError::into_inner);
            }
            if out.error.is_some() {
                break;
            }
            match out.writer.write_all(bytes) {
                Ok(()) => out.written += bytes.len() as u64,
                Err(e) => error = Some(Error::Io(e)),
            }
            out.next_batch += 1;
            let failed = error.is_some();
            out.error = error;
            drop(out);
            turn.notify_all();
            if failed {
                lock(&input).ended = true;
                break;
            }
        }
    };
    if threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(worker);
            }
            worker();
        });
    }
    let mut out = output.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = out.error {
        return Err(e);
    }
    out.writer.flush()?;
    Ok(out.written)
}

/// A body and how many chunks one batch holds, shared by both directions of the engine.
struct Batches<'a> {
    body: &'a Body,
    chunks: usize,
}

impl<'a> Batches<'a> {
    fn new(body: &'a Body, threads: usize) -> Self {
        let bytes = if threads <= 1 {
            BATCH_BYTES_ONE_THREAD
        } else {
            BATCH_BYTES
        };
        Self {
            body,
            chunks: (bytes / body.sealed_chunk_size()).max(1),
        }
    }
}

struct SealJob<'a>(Batches<'a>);

struct SealScratch {
    buf: Vec<u8>,
    chunks: usize,
    last_len: usize,
    ends: bool,
}

impl BatchJob for SealJob<'_> {
    type Scratch = SealScratch;

    fn scratch(&self) -> SealScratch {
        SealScratch {
            // Buffers grow with the input, so a small input costs little.
            buf: Vec::new(),
            chunks: 0,
            last_len: 0,
            ends: false,
        }
    }

    fn read<R: Read>(&self, input: &mut Input<R>, s: &mut SealScratch) -> io::Result<bool> {
        let (cs, sealed) = (self.0.body.chunk_size, self.0.body.sealed_chunk_size());
        // Plaintext goes straight into its chunk's slot, leaving room for the tag.
        for i in 0..self.0.chunks {
            grow(&mut s.buf, (i + 1) * sealed);
            let n = input.fill(&mut s.buf[i * sealed..i * sealed + cs])?;
            if n < cs {
                // The input ended: an empty slot after a full one adds no chunk, except that an
                // empty input is one empty chunk.
                (s.chunks, s.last_len) = if n == 0 && i > 0 { (i, cs) } else { (i + 1, n) };
                s.ends = true;
                return Ok(true);
            }
        }
        s.chunks = self.0.chunks;
        s.last_len = cs;
        s.ends = !input.more()?;
        Ok(s.ends)
    }

    fn process<'s>(&self, s: &'s mut SealScratch, first: u64) -> (&'s [u8], Option<Error>) {
        let (cs, sealed) = (self.0.body.chunk_size, self.0.body.sealed_chunk_size());
        for (j, slot) in s.buf.chunks_mut(sealed).take(s.chunks).enumerate() {
            let final_in_batch = j + 1 == s.chunks;
            let len = if final_in_batch { s.last_len } else { cs };
            self.0
                .body
                .seal_chunk(first + j as u64, final_in_batch && s.ends, slot, len);
        }
        let end = (s.chunks - 1) * sealed + s.last_len + TAG_LEN;
        (&s.buf[..end], None)
    }

    fn batches(&self) -> &Batches<'_> {
        &self.0
    }
}

struct OpenJob<'a>(Batches<'a>);

struct OpenScratch {
    sealed: Vec<u8>,
    plain: Vec<u8>,
    filled: usize,
    more: bool,
}

impl BatchJob for OpenJob<'_> {
    type Scratch = OpenScratch;

    fn scratch(&self) -> OpenScratch {
        OpenScratch {
            sealed: Vec::new(),
            plain: Vec::new(),
            filled: 0,
            more: false,
        }
    }

    fn read<R: Read>(&self, input: &mut Input<R>, s: &mut OpenScratch) -> io::Result<bool> {
        let sealed = self.0.body.sealed_chunk_size();
        s.filled = 0;
        for i in 0..self.0.chunks {
            grow(&mut s.sealed, (i + 1) * sealed);
            let n = input.fill(&mut s.sealed[i * sealed..(i + 1) * sealed])?;
            s.filled += n;
            if n < sealed {
                s.more = false;
                return Ok(true);
            }
        }
        s.more = input.more()?;
        Ok(!s.more)
    }

    fn process<'s>(&self, s: &'s mut OpenScratch, first: u64) -> (&'s [u8], Option<Error>) {
        let (cs, sealed) = (self.0.body.chunk_size, self.0.body.sealed_chunk_size());
        let input = &s.sealed[..s.filled];
        let count = input.len().div_ceil(sealed).max(1);
        // Chunk j opens in place at j * chunk_size; the last one needs room for its tag.
        grow(&mut s.plain, count * cs + TAG_LEN);
        let mut released = 0;
        for j in 0..count {
            let ct = &input[(j * sealed).min(input.len())..((j + 1) * sealed).min(input.len())];
            let data_follows = j + 1 < count || s.more;
            match self
                .0
                .body
                .open_chunk(first + j as u64, ct, data_follows, &mut s.plain[j * cs..])
            {
                Ok((n, Outcome::More | Outcome::Last)) => released = j * cs + n,
                Ok((n, Outcome::ReleaseThen(e))) => return (&s.plain[..j * cs + n], Some(e)),
                Err(e) => return (&s.plain[..j * cs], Some(e)),
            }
        }
        (&s.plain[..released], None)
    }

    fn batches(&self) -> &Batches<'_> {
        &self.0
    }
}

/// Makes `buf` at least `len` bytes long (it never shrinks, so batches after the first reuse it).
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Seals everything `reader` yields as a body written to `writer`, on `threads` threads.
///
/// Returns the number of sealed bytes written.
pub(crate) fn seal_body<R: Read + Send, W: Write + Send>(
    body: &Body,
    reader: R,
    writer: W,
    threads: usize,
) -> Result<u64, Error> {
    let job = SealJob(Batches::new(body, threads));
    run(&job, reader, writer, threads)
}

/// Opens the body `reader` yields, writing its plaintext to `writer`, on `threads` threads.
///
/// Returns the number of plaintext bytes written. On an error, the plaintext of every chunk
/// before the failing one has been written.
pub(crate) fn open_body<R: Read + Send, W: Write + Send>(
    body: &Body,
    reader: R,
    writer: W,
    threads: usize,
) -> Result<u64, Error> {
    let job = OpenJob(Batches::new(body, threads));
    run(&job, reader, writer, threads)
}

// ---------------------------------------------------------------------------------------------
// One chunk at a time: I/O-free cores and std adapters.

/// The I/O-free core of an encrypting writer: one chunk buffer.
pub(crate) struct SealState {
    body: Body,
    counter: u64,
    buf: Box<[u8]>,
    /// Plaintext bytes gathered for the next chunk.
    filled: usize,
    /// Sealed bytes `buf[pending.0..pending.1]` not yet written out.
    pending: (usize, usize),
    finished: bool,
}

// Debug shows progress, never buffered plaintext.
impl std::fmt::Debug for SealState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealState")
            .field("chunk_size", &self.body.chunk_size)
            .field("chunks_sealed", &self.counter)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OpenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenState")
            .field("chunk_size", &self.body.chunk_size)
            .field("chunks_opened", &self.counter)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl SealState {
    pub(crate) fn new(body: Body) -> Self {
        let buf = vec![0; body.sealed_chunk_size()].into_boxed_slice();
        Self {
            body,
            counter: 0,
            buf,
            filled: 0,
            pending: (0, 0),
            finished: false,
        }
    }

    /// Sealed bytes waiting to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.pending.0..self.pending.1]
    }

    /// Marks `n` pending bytes as written.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pending.0 += n;
        if self.pending.0 == self.pending.1 {
            self.pending = (0, 0);
            self.filled = 0;
        }
    }

    /// Takes plaintext from `data` (call only with nothing pending). Returns how much it took;
    /// 0 with non-empty `data` means a chunk was sealed and is now pending.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        debug_assert!(self.pending().is_empty() && !self.finished);
        let cs = self.body.chunk_size;
        if data.is_empty() {
            return 0;
        }
        // A full chunk is sealed only once more data shows it is not the last.
        if self.filled == cs {
            self.seal(false);
            return 0;
        }
        let n = data.len().min(cs - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        n
    }

    /// Whether the last chunk has been sealed (no more data may be pushed).
    #[cfg(feature = "tokio")]
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Seals the last chunk (once), leaving it pending.
    pub(crate) fn finish(&mut self) {
        if !self.finished {
            debug_assert!(self.pending().is_empty());
            self.seal(true);
            self.finished = true;
        }
    }

    fn seal(&mut self, last: bool) {
        self.body
            .seal_chunk(self.counter, last, &mut self.buf, self.filled);
        self.counter += 1;
        self.pending = (0, self.filled + TAG_LEN);
    }
}

/// A `Write` adapter that seals everything written to it as a STREAM body.
///
/// Call [`finish`](Self::finish) at the end: it seals the last chunk. A writer dropped without
/// it leaves a truncated body that fails to open.
#[derive(Debug)]
pub struct EncryptWriter<W: Write> {
    inner: W,
    state: SealState,
}

impl<W: Write> EncryptWriter<W> {
    pub(crate) fn new(inner: W, body: Body) -> Self {
        Self {
            inner,
            state: SealState::new(body),
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        let pending = self.state.pending();
        if !pending.is_empty() {
            let n = pending.len();
            self.inner.write_all(pending)?;
            self.state.consume(n);
        }
        Ok(())
    }

    /// Seals and writes the last chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, Error> {
        self.drain()?;
        self.state.finish();
        self.drain()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            self.drain()?;
            let n = self.state.push(data);
            if n > 0 || data.is_empty() {
                return Ok(n);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole chunks can be written; the open chunk stays buffered until more data or
        // `finish` decides whether it is the last.
        self.drain()?;
        self.inner.flush()
    }
}

/// Where an [`OpenState`] stands.
#[derive(Debug)]
enum Phase {
    Reading,
    Done,
    /// Release the current plaintext, then report this error.
    FailAfter(Error),
    Failed,
}

/// The I/O-free core of a decrypting reader: one sealed chunk (plus one byte of lookahead)
/// and one plaintext chunk.
pub(crate) struct OpenState {
    body: Body,
    counter: u64,
    sealed: Box<[u8]>,
    filled: usize,
    plain: Box<[u8]>,
    pos: usize,
    end: usize,
    phase: Phase,
}

impl OpenState {
    pub(crate) fn new(body: Body) -> Self {
        let size = body.sealed_chunk_size();
        Self {
            body,
            counter: 0,
            sealed: vec![0; size + 1].into_boxed_slice(),
            filled: 0,
            plain: vec![0; size].into_boxed_slice(),
            pos: 0,
            end: 0,
            phase: Phase::Reading,
        }
    }

    /// Copies released plaintext into `out`. `Ok(0)` with a non-empty `out` means either the
    /// body is done ([`needs_input`](Self::needs_input) is false) or more input is needed.
    pub(crate) fn read_plaintext(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        if self.pos < self.end {
            let n = out.len().min(self.end - self.pos);
            out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::FailAfter(e) => Err(e),
            Phase::Failed => Err(Error::MalformedPayload("reading on after the body failed")),
            other => {
                self.phase = other;
                Ok(0)
            }
        }
    }

    /// Whether the next chunk needs more input (all released plaintext has been read).
    pub(crate) fn needs_input(&self) -> bool {
        self.pos == self.end && matches!(self.phase, Phase::Reading)
    }

    /// Room for sealed input; empty once a chunk and its lookahead byte are buffered.
    pub(crate) fn input_space(&mut self) -> &mut [u8] {
        &mut self.sealed[self.filled..]
    }

    /// Records `n` bytes read into [`input_space`](Self::input_space), opening the chunk once it
    /// is complete. `n == 0` means the input ended.
    pub(crate) fn input_read(&mut self, n: usize) -> Result<(), Error> {
        self.filled += n;
        if n == 0 || self.filled == self.sealed.len() {
            self.open_next()
        } else {
            Ok(())
        }
    }

    fn open_next(&mut self) -> Result<(), Error> {
        let size = self.body.sealed_chunk_size();
        let data_follows = self.filled > size;
        let ct = &self.sealed[..self.filled.min(size)];
        match self
            .body
            .open_chunk(self.counter, ct, data_follows, &mut self.plain)
        {
            Ok((n, outcome)) => {
                self.counter += 1;
                self.pos = 0;
                self.end = n;
                match outcome {
                    Outcome::More => {
                        self.sealed[0] = self.sealed[size];
                        self.filled = 1;
                    }
                    Outcome::Last => self.phase = Phase::Done,
                    Outcome::ReleaseThen(e) => self.phase = Phase::FailAfter(e),
                }
                Ok(())
            }
            Err(e) => {
                self.phase = Phase::Failed;
                Err(e)
            }
        }
    }
}

/// A `Read` adapter that opens a STREAM body and yields its verified plaintext.
///
/// It releases each chunk only after its tag verified, and reports an error (as an
/// [`io::Error`] wrapping [`Error`], see [`Error::from_io`]) at the first chunk that fails.
#[derive(Debug)]
pub struct DecryptReader<R: Read> {
    inner: R,
    state: OpenState,
}

impl<R: Read> DecryptReader<R> {
    pub(crate) fn new(inner: R, body: Body) -> Self {
        Self {
            inner,
            state: OpenState::new(body),
        }
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.state.read_plaintext(out).map_err(Error::into_io)?;
            if n > 0 || out.is_empty() || !self.state.needs_input() {
                return Ok(n);
            }
            let got = match self.inner.read(self.state.input_space()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.state.input_read(got).map_err(Error::into_io)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Algorithm;
    use zeroize::Zeroizing;

    fn body(chunk_size: usize) -> Body {
        let key = ChunkKey::new(Algorithm::ChaCha20Poly1305, &Zeroizing::new([7u8; 32]));
        Body::new(key, chunk_size, b"aad".to_vec())
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Seals with the writer; the engine must produce the same bytes on 1 and 3 threads.
    fn seal_all(cs: usize, pt: &[u8]) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), body(cs));
        for piece in pt.chunks(7) {
            w.write_all(piece).unwrap();
        }
        let sealed = w.finish().unwrap();
        for threads in [1, 3] {
            let mut out = Vec::new();
            let n = seal_body(&body(cs), pt, &mut out, threads).unwrap();
            assert_eq!(n as usize, out.len());
            assert_eq!(
                out, sealed,
                "engine on {threads} threads differs from the writer"
            );
        }
        sealed
    }

    /// Opens with the reader and the engine; all must agree on released bytes and the outcome.
    fn open_all(cs: usize, sealed: &[u8]) -> (Vec<u8>, Option<String>) {
        let mut r = DecryptReader::new(sealed, body(cs));
        let mut got = Vec::new();
        let mut buf = [0u8; 5];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(Error::from_io(e).to_string()),
            }
        };
        for threads in [1, 2] {
            let mut out = Vec::new();
            let res = open_body(&body(cs), sealed, &mut out, threads);
            assert_eq!(out, got, "engine on {threads} threads released other bytes");
            assert_eq!(res.err().map(|e| e.to_string()), err);
        }
        (got, err)
    }

    #[test]
    fn round_trips_at_chunk_edges() {
        for cs in [1, 16, 64] {
            for len in [0, 1, cs - 1, cs, cs + 1, 2 * cs, 3 * cs + 5, 70 * cs] {
                let pt = data(len);
                let sealed = seal_all(cs, &pt);
                let chunks = len.div_ceil(cs).max(1);
                assert_eq!(sealed.len(), len + chunks * TAG_LEN);
                assert_eq!(open_all(cs, &sealed), (pt, None), "cs {cs} len {len}");
            }
        }
    }

    #[test]
    fn batches_span_many_chunks() {
        // 1 MiB batches of 4 KiB chunks: several batches, with the end inside and at an edge.
        let cs = 4096;
        for len in [BATCH_BYTES * 2, BATCH_BYTES * 2 + 1, BATCH_BYTES + 3 * cs] {
            let pt = data(len);
            let sealed = seal_all(cs, &pt);
            assert_eq!(open_all(cs, &sealed), (pt, None));
        }
    }

    #[test]
    fn truncation_releases_whole_chunks_then_fails() {
        let cs = 16;
        let pt = data(5 * cs);
        let sealed = seal_all(cs, &pt);
        let s = cs + TAG_LEN;
        for cut in 0..sealed.len() {
            let (got, err) = open_all(cs, &sealed[..cut]);
            assert!(err.is_some(), "cut at {cut} opened");
            // Whole non-last chunks before the cut are released; a cut at a chunk boundary
            // releases that chunk too (it verifies as non-last, then the body is truncated).
            assert_eq!(got, pt[..(cut / s) * cs], "cut at {cut}");
        }
    }

    #[test]
    fn appended_reordered_and_duplicated_chunks_fail() {
        let cs = 16;
        let s = cs + TAG_LEN;
        let pt = data(3 * cs);
        let sealed = seal_all(cs, &pt);
        let mut appended = sealed.clone();
        appended.push(0);
        assert_eq!(
            open_all(cs, &appended),
            (
                pt.clone(),
                Some("malformed payload: data follows the last chunk".into())
            )
        );
        let mut swapped = sealed.clone();
        swapped[..s].copy_from_slice(&sealed[s..2 * s]);
        swapped[s..2 * s].copy_from_slice(&sealed[..s]);
        assert_eq!(
            open_all(cs, &swapped),
            (vec![], Some("authentication failed: payload chunk".into()))
        );
        let mut duplicated = sealed[..s].to_vec();
        duplicated.extend_from_slice(&sealed);
        assert_eq!(
            open_all(cs, &duplicated),
            (
                pt[..cs].to_vec(),
                Some("authentication failed: payload chunk".into())
            )
        );
    }
}
