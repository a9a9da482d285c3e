//! What an adapter provides: its runtime's transport, timer, clock and spawner.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
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

/// A resettable one-shot sleep on the adapter's runtime (the role of tokio's and hyper's `Sleep`):
/// made by [`Runtime::sleep_until`], moved with [`reset`](Self::reset).
pub trait Sleep: Send + 'static {
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
    /// A [`Sleep`] that expires at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Box<dyn Sleep>;
    /// Runs `task` in the background.
    fn spawn(&self, task: Task);
    /// The runtime's name, for diagnostics: the `runtime` field of a connection's span (feature
    /// `tracing`). `"tokio"` and `"smol"` in the adapters.
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A [`Transport`] whose stream is still being set up — a TLS handshake accepted on a listener
/// — by a future that the first read or write drives to completion. The server helper's TLS
/// listeners use it, so that the handshake runs in the connection's task (bounded by its head
/// read timeout), never in the accept loop.
pub struct LazyTransport {
    state: LazyState,
    /// The wakers of the reads and of the writes (and flushes) that got `Pending` from the
    /// setup: each was registered only through the setup future, so when the setup ends in
    /// another operation's poll — a flush that finds the TLS handshake done and takes the bytes
    /// that came with its last message — nothing else would wake it: [`Self::poll_ready`] does.
    waiting: [Option<Waker>; 2],
}

/// An index of [`LazyTransport::waiting`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Read = 0,
    Write = 1,
}

/// The setup of a [`LazyTransport`]: resolves to the ready transport.
pub type TransportSetup = Pin<Box<dyn Future<Output = io::Result<Box<dyn Transport>>> + Send>>;

enum LazyState {
    Setup(TransportSetup),
    Ready(Box<dyn Transport>),
    Failed,
}

impl std::fmt::Debug for LazyTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            LazyState::Setup(_) => "setup",
            LazyState::Ready(_) => "ready",
            LazyState::Failed => "failed",
        };
        f.debug_struct("LazyTransport")
            .field("state", &state)
            .finish()
    }
}

impl LazyTransport {
    /// A transport that becomes the one `setup` resolves to.
    pub fn new(setup: TransportSetup) -> Self {
        LazyTransport {
            state: LazyState::Setup(setup),
            waiting: [None, None],
        }
    }

    /// Drives the setup for an operation on `side`. When the setup ends, the other side's
    /// waiting operation is woken to poll again: its `Pending` came from the setup future,
    /// whose wakeups die with it, and the setup may have consumed the very I/O readiness it was
    /// waiting for (the request that followed the client's TLS `Finished`, now decrypted in the
    /// TLS session's buffer: the socket has nothing more to signal).
    fn poll_ready(
        &mut self,
        side: Side,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&mut Box<dyn Transport>>> {
        if let LazyState::Setup(setup) = &mut self.state {
            let result = match setup.as_mut().poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    let slot = &mut self.waiting[side as usize];
                    match slot {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => *slot = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            };
            // This operation goes on with the ready transport (or the error); the other side's
            // must poll again.
            let [read, write] = std::mem::take(&mut self.waiting);
            let other = if side == Side::Read { write } else { read };
            if let Some(waker) = other {
                waker.wake();
            }
            match result {
                Ok(io) => self.state = LazyState::Ready(io),
                Err(e) => {
                    self.state = LazyState::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.state {
            LazyState::Ready(io) => Poll::Ready(Ok(io)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the transport's setup failed",
            ))),
        }
    }
}

impl Transport for LazyTransport {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self.poll_ready(Side::Read, cx) {
            Poll::Ready(Ok(io)) => io.poll_read_into(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.poll_ready(Side::Write, cx) {
            Poll::Ready(Ok(io)) => io.poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_ready(Side::Write, cx) {
            Poll::Ready(Ok(io)) => io.poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            LazyState::Ready(io) => io.poll_shutdown(cx),
            // Nothing was set up: nothing to shut down.
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wakeups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    /// A ready transport with `GET` buffered, as the TLS session holds the request decrypted
    /// with the client's `Finished`: its reads are ready at once and register no waker.
    struct Buffered;

    impl Transport for Buffered {
        fn poll_read_into(
            &mut self,
            _: &mut Context<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            buf.extend_from_slice(b"GET");
            Poll::Ready(Ok(3))
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A setup that is done once `done` is set, and never wakes anyone: the readiness it waited
    /// for is taken by whichever poll finds it done (as a TLS handshake that reads the client's
    /// last message together with the request behind it).
    fn setup(done: &Arc<AtomicBool>, ok: bool) -> LazyTransport {
        let done = done.clone();
        LazyTransport::new(Box::pin(std::future::poll_fn(move |_| {
            if !done.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
            Poll::Ready(if ok {
                Ok(Box::new(Buffered) as Box<dyn Transport>)
            } else {
                Err(io::Error::other("handshake failed"))
            })
        })))
    }

    /// hyper's order: a read (`Pending` on the setup), then a flush in the same poll that finds
    /// the setup done. The read must be woken, or the request waits for the header timeout.
    #[test]
    fn setup_done_in_a_flush_wakes_the_pending_read() {
        let done = Arc::new(AtomicBool::new(false));
        let mut io = setup(&done, true);
        let (reads, read_waker) = waker();
        let (flushes, flush_waker) = waker();
        let mut buf = BytesMut::with_capacity(64);
        assert!(
            io.poll_read_into(&mut Context::from_waker(&read_waker), &mut buf)
                .is_pending()
        );
        done.store(true, Ordering::SeqCst);
        let flushed = io.poll_flush(&mut Context::from_waker(&flush_waker));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!(
            reads.0.load(Ordering::SeqCst),
            1,
            "the pending read is woken"
        );
        assert_eq!(flushes.0.load(Ordering::SeqCst), 0);
        let read = io.poll_read_into(&mut Context::from_waker(&read_waker), &mut buf);
        assert!(matches!(read, Poll::Ready(Ok(3))));
        assert_eq!(&buf[..], b"GET");
    }

    /// The other way round: a write waits on the setup and a read completes it.
    #[test]
    fn setup_done_in_a_read_wakes_the_pending_write() {
        let done = Arc::new(AtomicBool::new(false));
        let mut io = setup(&done, true);
        let (writes, write_waker) = waker();
        let (reads, read_waker) = waker();
        let bufs = [IoSlice::new(b"HTTP/1.1 101")];
        assert!(
            io.poll_write_vectored(&mut Context::from_waker(&write_waker), &bufs)
                .is_pending()
        );
        done.store(true, Ordering::SeqCst);
        let mut buf = BytesMut::with_capacity(64);
        let read = io.poll_read_into(&mut Context::from_waker(&read_waker), &mut buf);
        assert!(matches!(read, Poll::Ready(Ok(3))));
        assert_eq!(
            writes.0.load(Ordering::SeqCst),
            1,
            "the pending write is woken"
        );
        assert_eq!(reads.0.load(Ordering::SeqCst), 0);
    }

    /// A failed setup wakes the other side too, which then sees the failure.
    #[test]
    fn failed_setup_wakes_the_pending_read_which_sees_the_failure() {
        let done = Arc::new(AtomicBool::new(false));
        let mut io = setup(&done, false);
        let (reads, read_waker) = waker();
        let mut buf = BytesMut::with_capacity(64);
        assert!(
            io.poll_read_into(&mut Context::from_waker(&read_waker), &mut buf)
                .is_pending()
        );
        done.store(true, Ordering::SeqCst);
        let (_, flush_waker) = waker();
        let flushed = io.poll_flush(&mut Context::from_waker(&flush_waker));
        assert!(matches!(flushed, Poll::Ready(Err(_))));
        assert_eq!(reads.0.load(Ordering::SeqCst), 1);
        let read = io.poll_read_into(&mut Context::from_waker(&read_waker), &mut buf);
        assert!(matches!(read, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected));
    }
}
