//! A connection whose request must arrive in time: reading from it fails once its time is
//! up, writing is untouched (an answer may take as long as its connection may).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `S`, with a deadline for everything read from it.
pub struct Timed<S> {
    stream: S,
    deadline: Pin<Box<Sleep>>,
    within: Duration,
}

impl<S> Timed<S> {
    /// `stream`, read from within `within` of now.
    pub fn new(stream: S, within: Duration) -> Timed<S> {
        Timed {
            stream,
            deadline: Box::pin(tokio::time::sleep(within)),
            within,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream without its deadline: for a connection whose request has arrived and
    /// that stays open on purpose (a `watch`).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            let within = self.within.as_secs_f64();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no request within {within}s"),
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
