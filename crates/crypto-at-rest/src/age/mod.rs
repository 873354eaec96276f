//! The age v1 file format (<https://age-encryption.org/v1>): X25519 and passphrase recipients,
//! ASCII armor, streaming encryption and decryption.
//!
//! An age file is a text header (one stanza per recipient, each wrapping the same random 16-byte
//! file key, then an HMAC over the header) followed by a 16-byte nonce and a STREAM payload of
//! ChaCha20-Poly1305 chunks of 64 KiB, sealed under a key derived from the file key and nonce.
//! The payload uses this crate's STREAM engine, so large files use every core.
//!
//! ```
//! use std::io::{Read, Write};
//! use crypto_at_rest::age::{self, X25519Identity};
//!
//! let identity = X25519Identity::generate()?;
//! let recipient = identity.to_public();
//!
//! let mut encrypted = Vec::new();
//! let mut writer = age::Encryptor::new(&[&recipient])?.armored(true).wrap_output(&mut encrypted)?;
//! writer.write_all(b"hello")?;
//! writer.finish()?;
//! assert!(encrypted.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
//!
//! let mut plaintext = Vec::new();
//! age::Decryptor::new(&[&identity]).decrypt(&encrypted[..])?.read_to_end(&mut plaintext)?;
//! assert_eq!(plaintext, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why not the `age` crate
//!
//! This module implements the format itself rather than wrapping the `age` crate (rage):
//!
//! * **The parallel engine.** The payload is this crate's STREAM engine, so
//!   [`Encryptor::encrypt_all`] and [`Opened::decrypt_all`] seal and open chunks on every core
//!   (1.57x the Go `age` 1.1.1 CLI encrypting and 2.67x decrypting a 1 GiB file on 2 cores,
//!   see `benches/results/age.md`); the `age` crate's reader and writer work one chunk at a
//!   time on the caller's thread.
//! * **One AEAD backend.** Every AEAD, HKDF, HMAC and hash here is ring, the workspace's one
//!   audited crypto provider (rustls uses it too); the `age` crate would add the RustCrypto
//!   `chacha20poly1305`, `hkdf`, `hmac` and `sha2` stacks beside it, plus its localisation
//!   (fluent / i18n-embed) dependencies.
//! * **Errors by stage** in this crate's one [`Error`] type, and readers that
//!   release only authenticated plaintext.
//!
//! Being a second implementation is what the tests guard against: the C2SP CCTV vectors
//! (`tests/age_vectors.rs`, every one that age v1 covers) and interop both ways with the real
//! `age` CLI and pyrage (`tests/age_interop.rs`).

mod armor;
mod format;
mod scrypt;
mod x25519;

use std::io::{self, BufRead, BufReader, Read, Write};

use zeroize::Zeroizing;

pub use armor::{ArmoredReader, ArmoredWriter};
pub use format::Stanza;
pub use scrypt::{DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR, ScryptIdentity, ScryptRecipient};
pub use x25519::{X25519Identity, X25519Recipient};

use crate::chunk::{Algorithm, ChunkKey};
use crate::config::resolve_threads;
use crate::error::Error;
use crate::stream::{Body, DecryptReader, EncryptWriter, open_body, seal_body};
use format::Header;

/// Length of a wrapped file key in a stanza body: 16 bytes of key and a 16-byte tag.
pub(crate) const WRAPPED_LEN: usize = 32;
/// Length of the payload nonce that follows the header.
const NONCE_LEN: usize = 16;
/// Plaintext bytes per payload chunk.
const CHUNK_SIZE: usize = 64 * 1024;

/// The random 16-byte key that each recipient stanza wraps; zeroized on drop, never printed.
pub struct FileKey(Zeroizing<[u8; 16]>);

impl FileKey {
    /// Wraps raw key bytes (for custom [`Recipient`] or [`Identity`] implementations).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    fn generate() -> Result<Self, Error> {
        Ok(Self(random_bytes::<16>()?))
    }
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

/// Something a file can be encrypted to: wraps the file key into stanzas.
pub trait Recipient {
    /// Wraps `file_key` into one or more stanzas.
    fn wrap(&self, file_key: &FileKey) -> Result<Vec<Stanza>, Error>;

    /// True for passphrase recipients, which must be a file's only recipient.
    fn is_passphrase(&self) -> bool {
        false
    }
}

/// Something that can decrypt files: unwraps the file key from a stanza addressed to it.
pub trait Identity {
    /// `None` if `stanza` is not for this identity (another type, or its key does not open it);
    /// `Some(Err)` if the stanza is of this identity's type but malformed, which makes the whole
    /// header invalid.
    fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, Error>>;
}

pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, Error> {
    let mut bytes = Zeroizing::new([0u8; N]);
    crate::random(&mut bytes[..])?;
    Ok(bytes)
}

/// Seals the file key under a recipient's wrapping key: ChaCha20-Poly1305 with a zero nonce
/// (each wrapping key wraps once), which is the crate's chunk key at counter 0, not last.
pub(crate) fn wrap_file_key(key: &Zeroizing<[u8; 32]>, file_key: &FileKey) -> Vec<u8> {
    let mut body = vec![0u8; WRAPPED_LEN];
    body[..16].copy_from_slice(file_key.as_bytes());
    ChunkKey::new(Algorithm::ChaCha20Poly1305, key).seal_slot(0, false, &[], &mut body, 16);
    body
}

/// Opens a stanza body; `None` if the tag does not verify (the stanza is not for this key).
pub(crate) fn unwrap_file_key(key: &Zeroizing<[u8; 32]>, body: &[u8]) -> Option<FileKey> {
    let mut buf = Zeroizing::new(<[u8; WRAPPED_LEN]>::try_from(body).ok()?);
    let plain = ChunkKey::new(Algorithm::ChaCha20Poly1305, key)
        .open(0, false, &[], &mut buf[..])
        .ok()?;
    Some(FileKey::from_bytes(<[u8; 16]>::try_from(&*plain).ok()?))
}

/// Turns an I/O error from the armor layer back into [`Error::Armor`]; other I/O errors stay.
fn classify_io(e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<armor::ArmorError>())
    {
        Some(armor) => Error::Armor(armor.to_string()),
        None => Error::Io(e),
    }
}

/// Re-labels an [`Error::Io`] that carries an armor failure as [`Error::Armor`].
fn classify(e: Error) -> Error {
    match e {
        Error::Io(io) => classify_io(io),
        other => other,
    }
}

/// Encrypts to a set of recipients: builds the header, then wraps an output stream.
#[derive(Debug)]
pub struct Encryptor {
    header: Vec<u8>,
    file_key: FileKey,
    armored: bool,
}

impl Encryptor {
    /// Wraps a fresh file key to each recipient. A passphrase recipient must be the only one.
    pub fn new(recipients: &[&dyn Recipient]) -> Result<Self, Error> {
        if recipients.is_empty() {
            return Err(Error::InvalidKey("no recipients given".into()));
        }
        if recipients.len() > 1 && recipients.iter().any(|r| r.is_passphrase()) {
            return Err(Error::InvalidKey(
                "a passphrase must be the file's only recipient".into(),
            ));
        }
        let file_key = FileKey::generate()?;
        let mut stanzas = Vec::new();
        for recipient in recipients {
            stanzas.extend(recipient.wrap(&file_key)?);
        }
        Ok(Self {
            header: format::write_header(&stanzas, &file_key),
            file_key,
            armored: false,
        })
    }

    /// Encrypts to a passphrase with the default scrypt work factor.
    pub fn with_passphrase(passphrase: &[u8]) -> Result<Self, Error> {
        Self::new(&[&ScryptRecipient::new(passphrase)])
    }

    /// Writes ASCII armor (PEM) instead of binary (default: binary).
    pub fn armored(mut self, armored: bool) -> Self {
        self.armored = armored;
        self
    }

    /// Writes the header and nonce to `output` and returns the writer for the plaintext, which
    /// seals on the calling thread; call [`AgeWriter::finish`] at the end or the file is
    /// truncated.
    pub fn wrap_output<W: Write>(self, output: W) -> Result<AgeWriter<W>, Error> {
        let (sink, body) = self.start(output)?;
        Ok(AgeWriter {
            inner: EncryptWriter::new(sink, body),
        })
    }

    /// Encrypts everything `input` yields to `output`, on `threads` threads (0: every available
    /// core; chunks are independent, so throughput grows with cores). Returns `output`.
    pub fn encrypt_all<R: Read + Send, W: Write + Send>(
        self,
        input: R,
        output: W,
        threads: usize,
    ) -> Result<W, Error> {
        let (mut sink, body) = self.start(output)?;
        seal_body(&body, input, &mut sink, resolve_threads(threads))?;
        Ok(sink.finish()?)
    }

    /// Writes the header and a fresh nonce, returning the output and the payload's body.
    fn start<W: Write>(self, output: W) -> Result<(Sink<W>, Body), Error> {
        let mut sink = if self.armored {
            Sink::Armored(ArmoredWriter::new(output)?)
        } else {
            Sink::Plain(output)
        };
        let nonce = random_bytes::<NONCE_LEN>()?;
        sink.write_all(&self.header)?;
        sink.write_all(&nonce[..])?;
        Ok((sink, payload_body(&self.file_key, &nonce)))
    }
}

/// The payload's STREAM body: ChaCha20-Poly1305 chunks of 64 KiB under
/// HKDF-SHA256(salt = nonce, ikm = file key, info = "payload"), no associated data.
fn payload_body(file_key: &FileKey, nonce: &[u8; NONCE_LEN]) -> Body {
    let key = format::hkdf_sha256(nonce, file_key.as_bytes(), b"payload");
    Body::new(
        ChunkKey::new(Algorithm::ChaCha20Poly1305, &key),
        CHUNK_SIZE,
        Vec::new(),
    )
}

/// Encrypts the plaintext written to it into an age file; end with [`AgeWriter::finish`].
#[derive(Debug)]
pub struct AgeWriter<W: Write> {
    inner: EncryptWriter<Sink<W>>,
}

impl<W: Write> AgeWriter<W> {
    /// Seals the last chunk, closes the armor if any, and returns the output.
    pub fn finish(self) -> Result<W, Error> {
        Ok(self.inner.finish()?.finish()?)
    }
}

impl<W: Write> Write for AgeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The output of an age writer: binary, or through armor.
#[derive(Debug)]
pub(crate) enum Sink<W: Write> {
    Plain(W),
    Armored(ArmoredWriter<W>),
}

impl<W: Write> Sink<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Sink::Armored(a) => a.finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Armored(a) => a.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Armored(a) => a.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Armored(a) => a.flush(),
        }
    }
}

/// Decrypts age files with a set of identities.
pub struct Decryptor<'i> {
    identities: &'i [&'i dyn Identity],
    armor: ArmorMode,
}

impl std::fmt::Debug for Decryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("identities", &self.identities.len())
            .field("armor", &self.armor)
            .finish()
    }
}

/// Whether the input of a [`Decryptor`] is armored.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArmorMode {
    /// Armored if the input starts (after whitespace) with the PEM begin line, as the `age` CLI.
    #[default]
    Detect,
    /// Always armored.
    Armored,
    /// Always binary.
    Binary,
}

impl<'i> Decryptor<'i> {
    /// A decryptor trying each identity against each stanza.
    pub fn new(identities: &'i [&'i dyn Identity]) -> Self {
        Self {
            identities,
            armor: ArmorMode::Detect,
        }
    }

    /// Sets how armor is recognized (default: detected).
    pub fn with_armor(mut self, armor: ArmorMode) -> Self {
        self.armor = armor;
        self
    }

    /// Reads and checks the header of `input` and returns a reader of the plaintext, which
    /// opens chunks on the calling thread.
    ///
    /// Errors name the stage: [`Error::Armor`], [`Error::AgeHeader`],
    /// [`Error::NoMatchingIdentity`], [`Error::Authentication`] with [`Stage::HeaderMac`].
    /// Reading the plaintext then fails (an [`io::Error`] wrapping this crate's [`Error`], see
    /// [`Error::from_io`]) with [`Stage::PayloadChunk`] or [`Error::MalformedPayload`] if the
    /// payload is damaged, after releasing only authenticated plaintext.
    ///
    /// [`Stage::HeaderMac`]: crate::Stage::HeaderMac
    /// [`Stage::PayloadChunk`]: crate::Stage::PayloadChunk
    pub fn decrypt<R: Read>(&self, input: R) -> Result<AgeReader<R>, Error> {
        Ok(self.open(input)?.into_reader())
    }

    /// Decrypts all of `input` into `output` on `threads` threads; returns the plaintext length.
    ///
    /// Errors are those of [`decrypt`](Self::decrypt). On a payload error, the plaintext of the
    /// chunks before the damaged one has been written to `output`.
    pub fn decrypt_all<R: Read + Send, W: Write + Send>(
        &self,
        input: R,
        output: W,
        threads: usize,
    ) -> Result<u64, Error> {
        self.open(input)?.decrypt_all(output, threads)
    }

    /// Reads and checks the header (finding the file key, checking the MAC, reading the nonce),
    /// leaving the payload for [`Opened::into_reader`] or [`Opened::decrypt_all`]. Useful to
    /// create an output file only once the key is known to be right.
    pub fn open<R: Read>(&self, input: R) -> Result<Opened<R>, Error> {
        let mut input = BufReader::with_capacity(CHUNK_SIZE, input);
        let armored = match self.armor {
            ArmorMode::Armored => true,
            ArmorMode::Binary => false,
            ArmorMode::Detect => armor::looks_armored(input.fill_buf()?),
        };
        let mut source = if armored {
            Source::Armored(BufReader::with_capacity(
                CHUNK_SIZE,
                ArmoredReader::new(input),
            ))
        } else {
            Source::Plain(input)
        };
        let header = Header::parse(&mut source).map_err(classify)?;
        let file_key = self.unwrap(&header)?;
        header.verify_mac(&file_key)?;
        let mut nonce = [0u8; NONCE_LEN];
        source.read_exact(&mut nonce).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                Error::AgeHeader("payload nonce missing or short".into())
            }
            _ => classify_io(e),
        })?;
        Ok(Opened {
            source,
            body: payload_body(&file_key, &nonce),
        })
    }

    fn unwrap(&self, header: &Header) -> Result<FileKey, Error> {
        if header.stanzas.len() > 1 && header.stanzas.iter().any(|s| s.tag == "scrypt") {
            return Err(Error::AgeHeader(
                "an scrypt stanza must be the only one in the header".into(),
            ));
        }
        for identity in self.identities {
            for stanza in &header.stanzas {
                if let Some(result) = identity.unwrap(stanza) {
                    return result;
                }
            }
        }
        Err(Error::NoMatchingIdentity)
    }
}

/// Parses an identity file as `age-keygen` writes it: one `AGE-SECRET-KEY-1...` per line, with
/// blank lines and `#` comments ignored.
pub fn parse_identities(text: &str) -> Result<Vec<X25519Identity>, Error> {
    parse_key_lines(text, "identity")
}

/// Parses a recipients file as `age -R` reads it: one `age1...` per line, with blank lines and
/// `#` comments ignored.
pub fn parse_recipients(text: &str) -> Result<Vec<X25519Recipient>, Error> {
    parse_key_lines(text, "recipient")
}

fn parse_key_lines<K: std::str::FromStr<Err = Error>>(
    text: &str,
    what: &str,
) -> Result<Vec<K>, Error> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The message names the line but never echoes it: it may hold a secret key.
        keys.push(line.parse().map_err(|_| {
            Error::InvalidKey(format!("line {} is not a valid age {what}", number + 1))
        })?);
    }
    if keys.is_empty() {
        return Err(Error::InvalidKey(format!("no age {what} found")));
    }
    Ok(keys)
}

/// The input of a decryptor after armor detection.
#[derive(Debug)]
enum Source<R: Read> {
    Plain(BufReader<R>),
    Armored(BufReader<ArmoredReader<BufReader<R>>>),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Armored(r) => r.read(buf),
        }
    }
}

impl<R: Read> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Source::Plain(r) => r.fill_buf(),
            Source::Armored(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Source::Plain(r) => r.consume(n),
            Source::Armored(r) => r.consume(n),
        }
    }
}

/// An age file whose header opened: its payload is ready to decrypt.
#[derive(Debug)]
pub struct Opened<R: Read> {
    source: Source<R>,
    body: Body,
}

impl<R: Read> Opened<R> {
    /// A reader of the plaintext, opening one chunk at a time on the calling thread.
    pub fn into_reader(self) -> AgeReader<R> {
        AgeReader {
            inner: DecryptReader::new(self.source, self.body),
        }
    }

    /// Decrypts the payload into `output` on `threads` threads (0: every available core);
    /// returns the plaintext length.
    /// On an error, the plaintext before the damaged chunk has been written.
    pub fn decrypt_all<W: Write + Send>(self, output: W, threads: usize) -> Result<u64, Error>
    where
        R: Send,
    {
        open_body(&self.body, self.source, output, resolve_threads(threads)).map_err(classify)
    }
}

/// Reads the verified plaintext of an age file (see [`Decryptor::decrypt`]).
#[derive(Debug)]
pub struct AgeReader<R: Read> {
    inner: DecryptReader<Source<R>>,
}

impl<R: Read> Read for AgeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| classify(Error::from_io(e)).into_io())
    }
}
