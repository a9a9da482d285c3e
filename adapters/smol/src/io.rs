//! smol's streams, clock, timers and spawner, as the engine's [`Transport`] and [`Runtime`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use tidings_io::{Runtime, Task, Timer, Transport};

/// Spare room from which reads go straight into the core's buffer (zeroed first) instead of
/// through the scratch buffer: the engine reserves this much only for the rest of a large frame.
const DIRECT_READ: usize = 128 * 1024;
/// First size of the scratch buffer.
const SCRATCH_MIN: usize = 16 * 1024;
/// Largest size of the scratch buffer: it doubles up to this while reads fill it.
const SCRATCH_MAX: usize = 1 << 20;

/// Any `futures-io` stream as a [`Transport`]. `futures-io` reads need an initialised buffer, so
/// reads land in a scratch buffer (allocated on first use, grown while reads fill it) and are
/// appended to the core's.
pub(crate) struct FuturesIo<S> {
    stream: S,
    scratch: Vec<u8>,
}

impl<S> Transport for FuturesIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let spare = buf.capacity() - buf.len();
        if spare >= DIRECT_READ {
            // The engine reserved room for a large frame: read straight into it (zeroing costs
            // less than the copy out of the scratch buffer).
            let len = buf.len();
            buf.resize(len + spare, 0);
            let result = Pin::new(&mut self.stream).poll_read(cx, &mut buf[len..]);
            let n = match &result {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(len + n);
            return result;
        }
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH_MIN];
        }
        let room = (buf.capacity() - buf.len()).clamp(1, self.scratch.len());
        let n = match Pin::new(&mut self.stream).poll_read(cx, &mut self.scratch[..room]) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        buf.extend_from_slice(&self.scratch[..n]);
        if n == self.scratch.len() && n < SCRATCH_MAX {
            self.scratch = vec![0; n * 2];
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Boxes a `futures-io` stream for the engine.
pub(crate) fn transport<S>(stream: S) -> Box<dyn Transport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::new(FuturesIo {
        stream,
        scratch: Vec::new(),
    })
}

/// The smol runtime: `std::time::Instant`, `async_io::Timer`, and `smol::spawn` (the global
/// executor).
pub(crate) struct Smol;

/// The runtime instance handed to the engine.
pub(crate) static RUNTIME: Smol = Smol;

struct SmolTimer(smol::Timer);

impl Timer for SmolTimer {
    fn reset(&mut self, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Smol {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn timer(&self, deadline: Instant) -> Box<dyn Timer> {
        Box::new(SmolTimer(smol::Timer::at(deadline)))
    }

    fn spawn(&self, task: Task) {
        smol::spawn(task).detach();
    }

    fn name(&self) -> &'static str {
        "smol"
    }
}
