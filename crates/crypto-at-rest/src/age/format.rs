//! The age v1 header: parsing and serializing stanzas, the version line and the MAC line.
//!
//! Parsing is strict so that a header has exactly one encoding: canonical unpadded base64,
//! stanza bodies wrapped at 64 columns and ended by one short (possibly empty) line, LF line
//! endings only. The MAC covers the header bytes as read, up to and including `---`.

use std::io::{BufRead, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::hmac;

use super::FileKey;
pub(crate) use crate::chunk::hkdf_sha256;
use crate::error::{Error, Stage};

/// The first line of every age v1 file.
pub(crate) const INTRO: &[u8] = b"age-encryption.org/v1\n";
const STANZA_PREFIX: &str = "->";
const MAC_PREFIX: &[u8] = b"---";
/// Base64 columns per stanza body line.
pub(crate) const COLUMNS: usize = 64;
/// Longest header line accepted: generous for any argument list, small enough to bound memory.
const MAX_LINE: u64 = 16 * 1024;
/// Largest header accepted, so a hostile header cannot grow memory without bound (real headers
/// are a few hundred bytes per recipient).
const MAX_HEADER: usize = 4 << 20;

/// One recipient stanza: a type tag, arguments, and a binary body.
#[derive(Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The stanza type, such as `X25519` or `scrypt`.
    pub tag: String,
    /// The arguments after the type.
    pub args: Vec<String>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Stanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body is a wrapped key; print only its length.
        f.debug_struct("Stanza")
            .field("tag", &self.tag)
            .field("args", &self.args)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A parsed header: its stanzas, its MAC, and the exact bytes the MAC covers.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) stanzas: Vec<Stanza>,
    mac: [u8; 32],
    mac_input: Vec<u8>,
}

fn header_error(reason: impl Into<String>) -> Error {
    Error::AgeHeader(reason.into())
}

/// True for an argument made of one or more printable ASCII characters (VCHAR).
fn is_valid_arg(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b))
}

/// Strict unpadded canonical base64, as every header field uses.
pub(crate) fn decode_b64(s: &str) -> Option<Vec<u8>> {
    // The engine rejects padding and non-zero trailing bits; reject whitespace explicitly.
    if s.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    STANDARD_NO_PAD.decode(s).ok()
}

/// Unpadded base64.
pub(crate) fn encode_b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// Reads one LF-terminated line (the LF is kept), failing on EOF or an over-long line.
fn read_line<R: BufRead>(input: &mut R, line: &mut Vec<u8>) -> Result<(), Error> {
    line.clear();
    Read::take(&mut *input, MAX_LINE).read_until(b'\n', line)?;
    match line.last() {
        Some(b'\n') => Ok(()),
        _ if line.len() as u64 >= MAX_LINE => Err(header_error("header line too long")),
        _ => Err(header_error("truncated header")),
    }
}

fn split_args(line: &[u8]) -> Result<Vec<&str>, Error> {
    let text = std::str::from_utf8(&line[..line.len() - 1])
        .map_err(|_| header_error("header line is not ASCII"))?;
    Ok(text.split(' ').collect())
}

impl Header {
    /// Parses a header from `input`, leaving `input` at the first byte after the MAC line.
    pub(crate) fn parse<R: BufRead>(input: &mut R) -> Result<Self, Error> {
        let mut mac_input = Vec::new();
        let mut line = Vec::new();
        read_line(input, &mut line)?;
        if line != INTRO {
            return Err(header_error("unknown version line"));
        }
        mac_input.extend_from_slice(&line);
        let mut stanzas = Vec::new();
        loop {
            read_line(input, &mut line)?;
            if line.starts_with(MAC_PREFIX) {
                let parts = split_args(&line)?;
                let [prefix, mac] = parts.as_slice() else {
                    return Err(header_error("malformed MAC line"));
                };
                if prefix.as_bytes() != MAC_PREFIX {
                    return Err(header_error("malformed MAC line"));
                }
                let mac = decode_b64(mac)
                    .and_then(|m| <[u8; 32]>::try_from(m).ok())
                    .ok_or_else(|| header_error("malformed MAC"))?;
                mac_input.extend_from_slice(MAC_PREFIX);
                return Ok(Header {
                    stanzas,
                    mac,
                    mac_input,
                });
            }
            let parts = split_args(&line)?;
            match parts.split_first() {
                Some((&STANZA_PREFIX, [tag, args @ ..])) => {
                    if !parts[1..].iter().all(|a| is_valid_arg(a)) {
                        return Err(header_error("malformed stanza arguments"));
                    }
                    let mut stanza = Stanza {
                        tag: (*tag).to_owned(),
                        args: args.iter().map(|a| (*a).to_owned()).collect(),
                        body: Vec::new(),
                    };
                    mac_input.extend_from_slice(&line);
                    Self::read_body(input, &mut line, &mut stanza.body, &mut mac_input)?;
                    stanzas.push(stanza);
                }
                _ => return Err(header_error("unexpected header line")),
            }
        }
    }

    /// Reads body lines until the first line shorter than 64 columns (possibly empty).
    fn read_body<R: BufRead>(
        input: &mut R,
        line: &mut Vec<u8>,
        body: &mut Vec<u8>,
        mac_input: &mut Vec<u8>,
    ) -> Result<(), Error> {
        loop {
            read_line(input, line)?;
            if mac_input.len() + line.len() > MAX_HEADER {
                return Err(header_error("header larger than 4 MiB"));
            }
            let text = &line[..line.len() - 1];
            if text.len() > COLUMNS {
                return Err(header_error("stanza body line longer than 64 columns"));
            }
            let decoded = std::str::from_utf8(text)
                .ok()
                .and_then(decode_b64)
                .ok_or_else(|| header_error("stanza body is not canonical base64"))?;
            body.extend_from_slice(&decoded);
            mac_input.extend_from_slice(line);
            if text.len() < COLUMNS {
                return Ok(());
            }
        }
    }

    /// Checks the header MAC under `file_key`.
    pub(crate) fn verify_mac(&self, file_key: &FileKey) -> Result<(), Error> {
        hmac::verify(&mac_key(file_key), &self.mac_input, &self.mac)
            .map_err(|_| Error::Authentication(Stage::HeaderMac))
    }
}

/// Serializes `stanzas` into a complete header with its MAC under `file_key`.
pub(crate) fn write_header(stanzas: &[Stanza], file_key: &FileKey) -> Vec<u8> {
    let mut out = INTRO.to_vec();
    for stanza in stanzas {
        out.extend_from_slice(STANZA_PREFIX.as_bytes());
        for arg in std::iter::once(&stanza.tag).chain(&stanza.args) {
            out.push(b' ');
            out.extend_from_slice(arg.as_bytes());
        }
        out.push(b'\n');
        let body = encode_b64(&stanza.body);
        // Full lines of 64 columns, then one short line, which is empty when the body fills
        // the last line exactly.
        let mut rest = body.as_bytes();
        while rest.len() >= COLUMNS {
            out.extend_from_slice(&rest[..COLUMNS]);
            out.push(b'\n');
            rest = &rest[COLUMNS..];
        }
        out.extend_from_slice(rest);
        out.push(b'\n');
    }
    out.extend_from_slice(MAC_PREFIX);
    let tag = hmac::sign(&mac_key(file_key), &out);
    out.push(b' ');
    out.extend_from_slice(encode_b64(tag.as_ref()).as_bytes());
    out.push(b'\n');
    out
}

fn mac_key(file_key: &FileKey) -> hmac::Key {
    let key = hkdf_sha256(&[], file_key.as_bytes(), b"header");
    hmac::Key::new(hmac::HMAC_SHA256, &key[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_stanza_body_is_rejected() {
        let mut bytes = INTRO.to_vec();
        bytes.extend_from_slice(b"-> X\n");
        let line = [b'A'; COLUMNS];
        for _ in 0..(MAX_HEADER / COLUMNS + 1) {
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
        }
        let err = Header::parse(&mut &bytes[..]).expect_err("too large");
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn header_round_trips_with_long_and_empty_bodies() {
        let file_key = FileKey::from_bytes([7; 16]);
        let stanzas: Vec<Stanza> = [0usize, 1, 47, 48, 49, 96, 200]
            .iter()
            .map(|&n| Stanza {
                tag: "test".into(),
                args: vec!["a".into(), "b!~".into()],
                body: vec![0xa5; n],
            })
            .collect();
        let bytes = write_header(&stanzas, &file_key);
        let mut input = &bytes[..];
        let header = Header::parse(&mut input).expect("parses");
        assert!(input.is_empty());
        assert_eq!(header.stanzas, stanzas);
        header.verify_mac(&file_key).expect("MAC verifies");
        assert!(matches!(
            header.verify_mac(&FileKey::from_bytes([8; 16])),
            Err(Error::Authentication(Stage::HeaderMac))
        ));
    }
}
