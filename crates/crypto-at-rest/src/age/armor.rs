//! ASCII armor: strict PEM with type `AGE ENCRYPTED FILE`, as the age specification defines it.
//!
//! The writer emits padded base64 in lines of exactly 64 columns, the last one possibly shorter,
//! with LF endings. The reader accepts exactly that (LF or CRLF line endings, whitespace only
//! before the first and after the last line) and rejects everything else: headers, empty or
//! short lines in the middle, trailing spaces, non-canonical base64, text after the end line.

use std::io::{self, BufRead, Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::format::COLUMNS;

const BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";
/// Decoded bytes per full 64-column line.
const BYTES_PER_LINE: usize = COLUMNS / 4 * 3;
/// Lines written per flush of the writer's buffer.
const LINES_PER_WRITE: usize = 1024;

/// Why an armored file was rejected; carried inside the [`io::Error`] the reader returns and
/// turned into [`crate::Error::Armor`] by the age decryptor.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ArmorError(&'static str);

fn armor_error(reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ArmorError(reason))
}

/// True if `input` (after optional leading whitespace) starts like an armored age file.
pub(crate) fn looks_armored(input: &[u8]) -> bool {
    let start = input.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|s| {
        let rest = &input[s..];
        let n = rest.len().min(BEGIN.len());
        n > 0 && rest[..n] == BEGIN[..n]
    })
}

/// Encodes everything written to it as an armored age file; call [`ArmoredWriter::finish`].
#[derive(Debug)]
pub struct ArmoredWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
    encoded: Vec<u8>,
}

impl<W: Write> ArmoredWriter<W> {
    /// Starts an armored file on `inner`.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(BEGIN)?;
        inner.write_all(b"\n")?;
        Ok(Self {
            inner,
            pending: Vec::with_capacity(BYTES_PER_LINE * LINES_PER_WRITE),
            encoded: Vec::new(),
        })
    }

    /// Encodes whole lines of `data` into the output.
    fn write_lines(&mut self, data_len: usize) -> io::Result<()> {
        self.encoded.clear();
        for line in self.pending[..data_len].chunks(BYTES_PER_LINE) {
            let start = self.encoded.len();
            self.encoded.resize(start + line.len().div_ceil(3) * 4, 0);
            STANDARD
                .encode_slice(line, &mut self.encoded[start..])
                .expect("output sized for the line");
            self.encoded.push(b'\n');
        }
        self.pending.drain(..data_len);
        self.inner.write_all(&self.encoded)
    }

    /// Writes the last line and the end line, returning the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let len = self.pending.len();
        self.write_lines(len)?;
        self.inner.write_all(END)?;
        self.inner.write_all(b"\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ArmoredWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let full = self.pending.len() / BYTES_PER_LINE * BYTES_PER_LINE;
        if full >= BYTES_PER_LINE * LINES_PER_WRITE {
            self.write_lines(full)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let full = self.pending.len() / BYTES_PER_LINE * BYTES_PER_LINE;
        self.write_lines(full)?;
        self.inner.flush()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeBegin,
    Lines,
    /// A short line was read; the next line must be the end line.
    ExpectEnd,
    Done,
    /// An error was returned; every later read fails too.
    Failed,
}

/// Decodes an armored age file, streaming; errors are [`io::ErrorKind::InvalidData`].
#[derive(Debug)]
pub struct ArmoredReader<R: BufRead> {
    inner: R,
    state: State,
    line: Vec<u8>,
    decoded: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> ArmoredReader<R> {
    /// Reads an armored file from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::BeforeBegin,
            line: Vec::with_capacity(COLUMNS + 3),
            decoded: Vec::with_capacity(BYTES_PER_LINE),
            pos: 0,
        }
    }

    /// Skips ASCII whitespace; returns whether any non-whitespace byte follows.
    fn skip_whitespace(&mut self) -> io::Result<bool> {
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(n) => {
                    self.inner.consume(n);
                    return Ok(true);
                }
                None => {
                    let n = buf.len();
                    self.inner.consume(n);
                }
            }
        }
    }

    /// Reads one line without its LF or CRLF ending; `Ok(false)` if it ended at EOF without one.
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        // One byte over the longest legal line (64 columns + CRLF) is enough to reject it.
        let limit = (COLUMNS + 3) as u64;
        self.inner
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut self.line)?;
        if self.line.last() != Some(&b'\n') {
            if self.line.len() as u64 >= limit {
                return Err(armor_error("line longer than 64 columns"));
            }
            return Ok(false);
        }
        self.line.pop();
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    /// Decodes the next line into `self.decoded`, or finishes at the end line.
    fn next_line(&mut self) -> io::Result<()> {
        if self.state == State::BeforeBegin {
            if !self.skip_whitespace()? {
                return Err(armor_error("no armor begin line"));
            }
            if !self.read_line()? || self.line != BEGIN {
                return Err(armor_error("invalid armor begin line"));
            }
            self.state = State::Lines;
        }
        let terminated = self.read_line()?;
        if self.line == END {
            if terminated && self.skip_whitespace()? {
                return Err(armor_error("data after the armor end line"));
            }
            self.state = State::Done;
            return Ok(());
        }
        if self.state == State::ExpectEnd {
            return Err(armor_error("short line before the end of the armor"));
        }
        if !terminated {
            return Err(armor_error("armor ends without an end line"));
        }
        if self.line.is_empty() {
            return Err(armor_error("empty line in armor"));
        }
        if self.line.len() > COLUMNS {
            return Err(armor_error("line longer than 64 columns"));
        }
        self.decoded.clear();
        STANDARD
            .decode_vec(&self.line, &mut self.decoded)
            .map_err(|_| armor_error("invalid or non-canonical base64 in armor"))?;
        if self.decoded.len() < BYTES_PER_LINE {
            self.state = State::ExpectEnd;
        }
        self.pos = 0;
        Ok(())
    }
}

impl<R: BufRead> Read for ArmoredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.decoded.len() {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(armor_error("reading on after an armor error")),
                _ => {}
            }
            self.decoded.clear();
            self.pos = 0;
            if let Err(e) = self.next_line() {
                self.state = State::Failed;
                return Err(e);
            }
        }
        let n = buf.len().min(self.decoded.len() - self.pos);
        buf[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(data: &[u8]) -> Vec<u8> {
        let mut w = ArmoredWriter::new(Vec::new()).expect("vec");
        // Odd write sizes exercise the buffering.
        for piece in data.chunks(7) {
            w.write_all(piece).expect("vec");
        }
        w.finish().expect("vec")
    }

    fn dearmor(text: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ArmoredReader::new(text).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_line_boundaries() {
        for len in [0, 1, 47, 48, 49, 96, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let text = armor(&data);
            assert!(text.split(|&b| b == b'\n').all(|l| l.len() <= COLUMNS + 1));
            assert_eq!(dearmor(&text).expect("valid armor"), data, "len {len}");
        }
    }

    #[test]
    fn rejects_a_missing_end_line() {
        let text = armor(b"hello");
        let cut = &text[..text.len() - END.len() - 1];
        assert!(dearmor(cut).is_err());
    }
}
