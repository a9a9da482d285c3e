//! tokio's streams, clock, timers and spawner, as the engine's [`Transport`] and [`Runtime`].

use std::any::Any;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::BytesMut;
use tidings_io::{Runtime, Sleep, Task, Transport};
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

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
        // (A type test the compiler resolves per stream type: no cost at run time.)
        if let Some(tcp) = (&self.0 as &dyn Any).downcast_ref::<TcpStream>() {
            return poll_read_tcp(tcp, cx, buf);
        }
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

/// A read from a TCP socket that saves the read which would only say "would block": a read that
/// returns fewer bytes than it had room for emptied the socket's receive queue, so its readiness
/// is cleared at once (nginx's habit with edge-triggered epoll), and the engine's next read
/// waits for the next readiness event without a system call. The readiness is cleared with the
/// event seen before the read: data that arrived meanwhile sets it again.
fn poll_read_tcp(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        let room = buf.capacity() - buf.len();
        let mut drained = None;
        let result = tcp.try_io(Interest::READABLE, || {
            let n = tcp.try_read_buf(buf)?;
            if n > 0 && n < room {
                // Report "would block" to clear the readiness; the bytes are returned below.
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (result, drained) {
            (_, Some(n)) => return Poll::Ready(Ok(n)),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (result, None) => return Poll::Ready(result),
        }
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

struct TokioSleep(Pin<Box<tokio::time::Sleep>>);

impl Sleep for TokioSleep {
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

    fn sleep_until(&self, deadline: Instant) -> Box<dyn Sleep> {
        Box::new(TokioSleep(Box::pin(tokio::time::sleep_until(
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
