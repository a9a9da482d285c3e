//! tokio's streams, clock, timers and spawner, as the engine's [`Transport`] and [`Runtime`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use tidings_io::{Runtime, Task, Timer, Transport};
use tokio::io::{AsyncRead, AsyncWrite};

/// Any tokio stream as a [`Transport`]; reads go straight into the core's input buffer.
pub(crate) struct TokioIo<S>(pub(crate) S);

impl<S> Transport for TokioIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Boxes a tokio stream for the engine.
pub(crate) fn transport<S>(stream: S) -> Box<dyn Transport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::new(TokioIo(stream))
}

/// The tokio runtime: its clock (paused in tests with `start_paused`), `sleep_until`, `spawn`.
pub(crate) struct Tokio;

/// The runtime instance handed to the engine.
pub(crate) static RUNTIME: Tokio = Tokio;

struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl Timer for TokioTimer {
    fn reset(&mut self, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.0.deadline() != deadline {
            self.0.as_mut().reset(deadline);
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Runtime for Tokio {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn timer(&self, deadline: Instant) -> Box<dyn Timer> {
        Box::new(TokioTimer(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(deadline),
        ))))
    }

    fn spawn(&self, task: Task) {
        tokio::spawn(task);
    }

    fn name(&self) -> &'static str {
        "tokio"
    }
}
