//! The self-describing stream format: a header, then a STREAM body; sequential and random access.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::chunk::TAG_LEN;
use crate::config::{CipherConfig, resolve_threads};
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, Kind, Opened};
use crate::keyring::Keyring;
use crate::stream::{self, Body, DecryptReader, EncryptWriter};

impl Opened {
    /// The body these keys seal, in chunks of `chunk_size`.
    pub(crate) fn into_body(self, chunk_size: u32) -> Body {
        Body::new(self.key, chunk_size as usize, self.chunk_aad)
    }
}

impl Header {
    /// Reads and opens a stream header from `reader`.
    fn read_stream<R: Read + ?Sized>(
        keyring: &Keyring,
        aad: &[u8],
        reader: &mut R,
    ) -> Result<Body, Error> {
        let mut bytes = [0u8; HEADER_LEN];
        let n = stream::fill(reader, &mut bytes)?;
        Self::open_stream(keyring, aad, &bytes[..n])
    }

    /// Opens a stream header held in `bytes`.
    pub(crate) fn open_stream(keyring: &Keyring, aad: &[u8], bytes: &[u8]) -> Result<Body, Error> {
        let header = Header::parse(Kind::Stream, bytes)?;
        Ok(header.open(keyring, aad)?.into_body(header.chunk_size()))
    }

    /// Creates a stream header under the primary key; returns it and the body's keys.
    pub(crate) fn new_stream(
        keyring: &Keyring,
        config: &CipherConfig,
        aad: &[u8],
    ) -> Result<(Header, Body), Error> {
        let chunk_size = config.chunk_size();
        let (header, opened) =
            Header::create(keyring, Kind::Stream, config.algorithm(), chunk_size, aad)?;
        Ok((header, opened.into_body(chunk_size)))
    }
}

impl Keyring {
    /// Starts an encrypted stream: writes the header to `inner` and returns a writer that seals
    /// what it is given. Call [`EncryptWriter::finish`] at the end.
    ///
    /// `aad` names the object, as for [`Keyring::seal`].
    pub fn encrypt_writer<W: Write>(
        &self,
        config: &CipherConfig,
        aad: &[u8],
        mut inner: W,
    ) -> Result<EncryptWriter<W>, Error> {
        let (header, body) = Header::new_stream(self, config, aad)?;
        inner.write_all(header.bytes())?;
        Ok(EncryptWriter::new(inner, body))
    }

    /// Reads a stream's header from `inner` and returns a reader of its verified plaintext.
    pub fn decrypt_reader<R: Read>(
        &self,
        aad: &[u8],
        mut inner: R,
    ) -> Result<DecryptReader<R>, Error> {
        let body = Header::read_stream(self, aad, &mut inner)?;
        Ok(DecryptReader::new(inner, body))
    }

    /// Encrypts all of `reader` into `writer` as a stream, on `config.threads()` threads with
    /// bounded memory (about 4 MiB per thread). Returns the bytes written.
    pub fn encrypt_stream<R: Read + Send, W: Write + Send>(
        &self,
        config: &CipherConfig,
        aad: &[u8],
        reader: R,
        mut writer: W,
    ) -> Result<u64, Error> {
        let (header, body) = Header::new_stream(self, config, aad)?;
        writer.write_all(header.bytes())?;
        let n = stream::seal_body(&body, reader, writer, config.threads())?;
        Ok(n + HEADER_LEN as u64)
    }

    /// Decrypts the stream `reader` yields into `writer` on `threads` threads (0: every
    /// available core), with bounded memory (about 4 MiB per thread). Returns the
    /// plaintext bytes written; on an error, the plaintext of the chunks before the failing one
    /// has been written (write to a temporary place and discard it on error).
    pub fn decrypt_stream<R: Read + Send, W: Write + Send>(
        &self,
        threads: usize,
        aad: &[u8],
        mut reader: R,
        writer: W,
    ) -> Result<u64, Error> {
        let body = Header::read_stream(self, aad, &mut reader)?;
        stream::open_body(&body, reader, writer, resolve_threads(threads))
    }

    /// Checks a stream's header (its first [`Keyring::HEADER_LEN`] bytes) against this keyring
    /// and `aad` without reading the body: unwraps the data key and checks its commitment, so a
    /// caller can refuse a wrong keyring before it creates any output.
    pub fn check_stream_header(&self, aad: &[u8], header: &[u8]) -> Result<(), Error> {
        let header = Header::parse(Kind::Stream, header)?;
        header.open(self, aad).map(drop)
    }

    /// Opens a stream for random access: checks its header and its last chunk (so truncation
    /// is caught up front), then decrypts byte ranges reading only the chunks that cover them.
    pub fn range_reader<S: RandomAccess>(
        &self,
        aad: &[u8],
        mut source: S,
    ) -> Result<RangeReader<S>, Error> {
        let size = source.size()?;
        let mut bytes = [0u8; HEADER_LEN];
        let have = size.min(HEADER_LEN as u64) as usize;
        source.read_exact_at(0, &mut bytes[..have])?;
        let body = Header::open_stream(self, aad, &bytes[..have])?;
        let sealed = body.sealed_chunk_size() as u64;
        let body_len = size - HEADER_LEN as u64;
        let chunks = body_len.div_ceil(sealed).max(1);
        let last_len = body_len - (chunks - 1) * sealed;
        if last_len < TAG_LEN as u64 || (chunks > 1 && last_len == TAG_LEN as u64) {
            return Err(Error::MalformedPayload(
                "the stream's length does not fit its chunk size",
            ));
        }
        let mut reader = RangeReader {
            source,
            chunk: vec![0; body.sealed_chunk_size()],
            body,
            chunks,
            plaintext_len: body_len - chunks * TAG_LEN as u64,
            opened: None,
        };
        reader.open_chunk(chunks - 1)?;
        Ok(reader)
    }
}

impl Keyring {
    /// Starts a stream sealed chunk by chunk in the caller's own buffers, without copying (for
    /// callers that hold the plaintext in memory or read it into buffers they own).
    pub fn stream_sealer(&self, config: &CipherConfig, aad: &[u8]) -> Result<StreamSealer, Error> {
        let (header, body) = Header::new_stream(self, config, aad)?;
        Ok(StreamSealer {
            header: *header.bytes(),
            body,
            counter: 0,
            finished: false,
        })
    }
}

/// Seals a stream in place, chunk by chunk; made by [`Keyring::stream_sealer`].
///
/// The stream is [`header`](Self::header), then for each chunk its sealed bytes followed by the
/// tag [`seal_chunk`](Self::seal_chunk) returns. The result is byte for byte what
/// [`Keyring::encrypt_writer`] writes.
#[derive(Debug)]
pub struct StreamSealer {
    header: [u8; HEADER_LEN],
    body: Body,
    counter: u64,
    finished: bool,
}

impl StreamSealer {
    /// The header, written before the first chunk.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.body.chunk_size()
    }

    /// Seals `chunk` in place and returns its 16-byte tag. Every chunk but the last holds exactly
    /// [`chunk_size`](Self::chunk_size) bytes; the last (`last == true`) holds 1 to
    /// `chunk_size` bytes, or 0 when it is the only chunk.
    pub fn seal_chunk(&mut self, chunk: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], Error> {
        let cs = self.body.chunk_size();
        let fits = if last {
            chunk.len() <= cs && (!chunk.is_empty() || self.counter == 0)
        } else {
            chunk.len() == cs
        };
        if self.finished || !fits {
            return Err(Error::InvalidConfig(format!(
                "chunk {} of {} bytes (last: {last}) breaks the stream's chunk rules",
                self.counter,
                chunk.len()
            )));
        }
        let tag = self.body.seal_separate(self.counter, last, chunk);
        self.counter += 1;
        self.finished = last;
        Ok(tag)
    }
}

/// A source that can read at any offset: files and cursors (anything `Read + Seek`), or an
/// object store's ranged GETs. Implementations should pass the conformance suite
/// `conformance::random_access` (feature `conformance`).
pub trait RandomAccess {
    /// Total length in bytes.
    fn size(&mut self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes starting at `offset`.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<T: Read + Seek> RandomAccess for T {
    fn size(&mut self) -> io::Result<u64> {
        self.seek(SeekFrom::End(0))
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }
}

/// Decrypts byte ranges of a stream, reading and verifying only the chunks that cover them;
/// made by [`Keyring::range_reader`].
#[derive(Debug)]
pub struct RangeReader<S> {
    source: S,
    body: Body,
    chunks: u64,
    plaintext_len: u64,
    chunk: Vec<u8>,
    /// The chunk whose plaintext `chunk` holds, with its length: sequential small reads open
    /// each chunk once.
    opened: Option<(u64, usize)>,
}

impl<S: RandomAccess> RangeReader<S> {
    /// The stream's plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Reads, verifies and opens chunk `index` into `self.chunk`; returns its plaintext length.
    fn open_chunk(&mut self, index: u64) -> Result<usize, Error> {
        if let Some((opened, len)) = self.opened
            && opened == index
        {
            return Ok(len);
        }
        // Forgotten first: a failed open leaves `chunk` holding nothing usable.
        self.opened = None;
        let sealed = self.body.sealed_chunk_size() as u64;
        let last = index + 1 == self.chunks;
        let len = if last {
            self.plaintext_len - index * self.body.chunk_size() as u64 + TAG_LEN as u64
        } else {
            sealed
        } as usize;
        let buf = &mut self.chunk[..len];
        self.source
            .read_exact_at(HEADER_LEN as u64 + index * sealed, buf)?;
        let plain = self.body.open_at(index, last, buf)?.len();
        self.opened = Some((index, plain));
        Ok(plain)
    }

    /// Decrypts `len` plaintext bytes starting at `offset` (fewer if the stream ends first).
    pub fn read_range(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let end = offset.saturating_add(len as u64).min(self.plaintext_len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let cs = self.body.chunk_size() as u64;
        let mut pos = offset;
        while pos < end {
            let index = pos / cs;
            let n = self.open_chunk(index)? as u64;
            let from = pos - index * cs;
            let to = n.min(end - index * cs);
            out.extend_from_slice(&self.chunk[from as usize..to as usize]);
            pos = index * cs + to;
        }
        Ok(out)
    }

    /// Returns the source.
    pub fn into_inner(self) -> S {
        self.source
    }
}
