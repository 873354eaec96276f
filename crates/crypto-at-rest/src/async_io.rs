//! tokio `AsyncRead` / `AsyncWrite` adapters for the stream format (feature `tokio`, on by
//! default).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::config::CipherConfig;
use crate::error::Error;
use crate::header::{HEADER_LEN, Header};
use crate::keyring::Keyring;
use crate::stream::{OpenState, SealState};

impl Keyring {
    /// Async twin of [`Keyring::encrypt_writer`]: writes the header to `inner` and returns an
    /// `AsyncWrite` that seals what it is given. `shutdown()` seals the last chunk.
    pub async fn encrypt_async_writer<W: AsyncWrite + Unpin>(
        &self,
        config: &CipherConfig,
        aad: &[u8],
        mut inner: W,
    ) -> Result<AsyncEncryptWriter<W>, Error> {
        let (header, body) = Header::new_stream(self, config, aad)?;
        inner.write_all(header.bytes()).await?;
        Ok(AsyncEncryptWriter {
            inner,
            state: SealState::new(body),
        })
    }

    /// Async twin of [`Keyring::decrypt_reader`]: reads the header from `inner` and returns an
    /// `AsyncRead` of the verified plaintext.
    pub async fn decrypt_async_reader<R: AsyncRead + Unpin>(
        &self,
        aad: &[u8],
        mut inner: R,
    ) -> Result<AsyncDecryptReader<R>, Error> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut n = 0;
        while n < HEADER_LEN {
            let got = inner.read(&mut bytes[n..]).await?;
            if got == 0 {
                break;
            }
            n += got;
        }
        let body = Header::open_stream(self, aad, &bytes[..n])?;
        Ok(AsyncDecryptReader {
            inner,
            state: OpenState::new(body),
        })
    }
}

/// An `AsyncWrite` that seals a stream body; made by [`Keyring::encrypt_async_writer`].
///
/// `poll_shutdown` (`shutdown().await`) seals the last chunk and shuts the inner writer down;
/// without it the stream is truncated and fails to open. Errors are [`io::Error`]s; see
/// [`Error::from_io`].
#[derive(Debug)]
pub struct AsyncEncryptWriter<W> {
    inner: W,
    state: SealState,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.state.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, self.state.pending()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.state.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Returns the inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.is_finished() {
            return Poll::Ready(Err(io::Error::other("write after shutdown")));
        }
        loop {
            ready!(this.poll_drain(cx))?;
            let n = this.state.push(data);
            if n > 0 || data.is_empty() {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.state.finish();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// An `AsyncRead` of a stream's verified plaintext; made by [`Keyring::decrypt_async_reader`].
///
/// Like [`DecryptReader`](crate::DecryptReader) it releases plaintext chunk by chunk and fails
/// at the first chunk that does not verify.
#[derive(Debug)]
pub struct AsyncDecryptReader<R> {
    inner: R,
    state: OpenState,
}

impl<R> AsyncDecryptReader<R> {
    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let n = this
                .state
                .read_plaintext(out.initialize_unfilled())
                .map_err(Error::into_io)?;
            if n > 0 || out.remaining() == 0 || !this.state.needs_input() {
                out.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut space = ReadBuf::new(this.state.input_space());
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut space))?;
            let got = space.filled().len();
            this.state.input_read(got).map_err(Error::into_io)?;
        }
    }
}
