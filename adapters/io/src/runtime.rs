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
    dbg_t0: Instant,
    dbg_log: Vec<String>,
    dbg_dumped: bool,
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
            dbg_t0: Instant::now(),
            dbg_log: Vec::new(),
            dbg_dumped: false,
        }
    }

    fn dbg(&mut self, what: String) {
        let el = self.dbg_t0.elapsed();
        self.dbg_log.push(format!("{:>10.3?} {}", el, what));
        if el > std::time::Duration::from_secs(2) && !self.dbg_dumped {
            self.dbg_dumped = true;
            eprintln!("=== STALLED LazyTransport ===\n{}", self.dbg_log.join("\n"));
        }
    }

    fn dbg_state(&self) -> &'static str {
        match self.state {
            LazyState::Setup(_) => "setup",
            LazyState::Ready(_) => "ready",
            LazyState::Failed => "failed",
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut Box<dyn Transport>>> {
        if let LazyState::Setup(setup) = &mut self.state {
            match setup.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(io)) => self.state = LazyState::Ready(io),
                Poll::Ready(Err(e)) => {
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
        let before = self.dbg_state();
        let r = match self.poll_ready(cx) {
            Poll::Ready(Ok(io)) => io.poll_read_into(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        let after = self.dbg_state();
        self.dbg(format!("read {before}->{after} cap {} => {:?}", buf.capacity() - buf.len(), &r));
        r
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let before = self.dbg_state();
        let r = match self.poll_ready(cx) {
            Poll::Ready(Ok(io)) => io.poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        let after = self.dbg_state();
        self.dbg(format!("write {before}->{after} => {:?}", &r));
        r
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let before = self.dbg_state();
        let r = match self.poll_ready(cx) {
            Poll::Ready(Ok(io)) => io.poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        let after = self.dbg_state();
        self.dbg(format!("flush {before}->{after} => {:?}", &r));
        r
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            LazyState::Ready(io) => io.poll_shutdown(cx),
            // Nothing was set up: nothing to shut down.
            _ => Poll::Ready(Ok(())),
        }
    }
}
