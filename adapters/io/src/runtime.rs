//! What an adapter provides: its runtime's transport, timer, clock and spawner.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;

/// A byte stream the engine reads and writes (a TCP or TLS stream of the adapter's runtime).
///
/// The methods follow the `poll_*` contract of `AsyncRead`/`AsyncWrite`: `Pending` means the waker
/// in `cx` is registered and will be woken when the operation can make progress.
pub trait Transport: Send + 'static {
    /// Reads into the spare capacity of `buf` (appending). `Ok(0)` is end of stream.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;

    /// Writes from `bufs` in order; returns how many bytes were written.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Flushes buffered writes (a TLS record layer, a `BufWriter`).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts down the write side (TCP FIN; TLS `close_notify` then FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A resettable one-shot timer of the adapter's runtime.
pub trait Timer: Send + 'static {
    /// Moves the deadline.
    fn reset(&mut self, deadline: Instant);
    /// `Ready` once the deadline has passed; otherwise registers `cx`'s waker.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A boxed task for [`Runtime::spawn`].
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The adapter's runtime: clock, timers and a spawner for the per-connection driver task.
pub trait Runtime: Send + Sync + 'static {
    /// The current time on the runtime's clock (a paused or mocked clock in tests).
    fn now(&self) -> Instant;
    /// A timer that fires at `deadline`.
    fn timer(&self, deadline: Instant) -> Box<dyn Timer>;
    /// Runs `task` in the background.
    fn spawn(&self, task: Task);
}
