//! The engine: one connection's state, shared by its application handles and its driver task,
//! and every operation on it.
//!
//! The handles ([`WebSocket`](crate::WebSocket), its halves, [`Outbox`](crate::Outbox),
//! [`Closer`](crate::Closer)) call the operations of [`Engine`]; none of them touches the core
//! connection or the transport. The state is split by concern, one module each, on the model of
//! h2's `proto/streams/{recv,send,…}`:
//!
//! | module | state | what it does |
//! | --- | --- | --- |
//! | `inbound` | [`Inbound`](inbound::Inbound): events decoded ahead, the held message, the outcome | reads the transport into the core, decodes, hands events to `recv` |
//! | `outbound` | [`Outbound`](outbound::Outbound): the batch being deferred, the outbox's occupancy, the stall clock | queues messages, writes the transport, shuts it down |
//! | `ping` | [`Pings`](ping::Pings): the user ping waiting for its pong | `ping()` |
//! | `readiness` | who is woken by the socket | routes readiness to the waiting task or the driver |
//! | `driver` | the driver task's timer | timers, and I/O while the application is elsewhere |
//! | here | the transport, the close sequence, handles, the config | |
//!
//! Everything lives behind one `std::sync::Mutex`, held only inside `poll` functions and never
//! across an `.await`.
//!
//! # Ordering rules
//!
//! * **Input is acted upon in order.** While the application holds a data message (it received
//!   one and has not come back to `recv`), the driver acts ahead of it at once only on ping and
//!   pong frames (answering pings, timing pongs: [`Connection::lookahead`]). A data frame, the
//!   peer's close frame or a malformed frame is left to the application's next `recv`, so the
//!   application's answer to a message leaves before the engine's reaction to whatever the peer
//!   sent after it (the close reply, or the close frame of a failure) — for up to `HOLD_GRACE`
//!   (25 ms) from when the driver first left it. The bound is needed: an application may go on
//!   to other work holding its last message and never come back, and a close must still be
//!   answered (a server shutting down waits for that); the engine's tests show both sides. The
//!   application is known not to be handling a message, and the driver acts at once, while it
//!   waits in `ping()` or `close()` and after it dropped every handle.
//! * **Output leaves in the order it was queued**, whoever writes it. A message queued while more
//!   received input is already waiting joins a batch whose write is deferred; the batch is written
//!   when the application next waits (in `recv`, `send`, `flush`, `ping`, `close`) or when the
//!   driver next runs — woken from the application's task, that is after the task yields.

mod driver;
mod inbound;
mod outbound;
mod ping;
mod readiness;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tidings_core::{CloseCode, CloseOutcome, Connection};

use crate::config::Config;
use crate::runtime::{Runtime, Transport};
use crate::trace::{self, ConnSpan};

pub(crate) use driver::spawn;
use inbound::Inbound;
use outbound::Outbound;
pub(crate) use outbound::Outgoing;
use ping::Pings;
use readiness::{DriverSignal, Readiness};

/// Which direction a registration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// The shared part of a connection.
pub(crate) struct Engine {
    state: Mutex<State>,
    /// Live application handles (`WebSocket`, or the two halves). At zero the driver closes.
    handles: AtomicUsize,
    driver: Arc<DriverSignal>,
    rt: &'static dyn Runtime,
    protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value agreed in the handshake.
    extensions: Option<String>,
}

/// The transport and what is known of it.
struct Io {
    /// `None` once it is shut down or failed.
    transport: Option<Box<dyn Transport>>,
    /// Polls for reading with this: readiness goes through the read [`Readiness`].
    read_waker: Waker,
    /// Polls for writing with this.
    write_waker: Waker,
    /// The transport reached end of stream.
    eof: bool,
    /// The last read returned `Pending`: readiness will be routed to someone.
    read_armed: bool,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
    /// The first transport error, reported once to the reader.
    error: Option<io::Error>,
}

/// Tasks waiting on the connection.
struct Wakers {
    read: Arc<Readiness>,
    write: Arc<Readiness>,
    driver: Arc<DriverSignal>,
    /// A `ping()` or `close()` waiting for an event.
    event: Option<Waker>,
}

/// Connection state; see the module docs.
pub(crate) struct State {
    conn: Connection,
    io: Io,
    inbound: Inbound,
    outbound: Outbound,
    pings: Pings,
    wakers: Wakers,
    /// The deadline the driver's timer is armed for.
    armed: Option<Instant>,
    /// All handles were dropped and the driver has started the close.
    abandoned: bool,
    rt: &'static dyn Runtime,
    /// The connection's span (feature `tracing`; empty without it): its end is recorded there.
    span: ConnSpan,
}

impl Engine {
    pub(crate) fn new(
        conn: Connection,
        transport: Box<dyn Transport>,
        config: &Config,
        rt: &'static dyn Runtime,
        protocol: Option<String>,
        extensions: Option<String>,
        span: ConnSpan,
    ) -> Arc<Self> {
        let driver = Arc::new(DriverSignal::default());
        let read = Readiness::new(driver.clone());
        let write = Readiness::new(driver.clone());
        let state = State {
            conn,
            io: Io {
                transport: Some(transport),
                read_waker: Waker::from(read.clone()),
                write_waker: Waker::from(write.clone()),
                eof: false,
                read_armed: false,
                unflushed: false,
                error: None,
            },
            inbound: Inbound::new(config.read_high_water),
            outbound: Outbound::new(config),
            pings: Pings::default(),
            wakers: Wakers {
                read,
                write,
                driver: driver.clone(),
                event: None,
            },
            armed: None,
            abandoned: false,
            rt,
            span,
        };
        Arc::new(Engine {
            state: Mutex::new(state),
            handles: AtomicUsize::new(0),
            driver,
            rt,
            protocol,
            extensions,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub(crate) fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }

    // ---- handles ------------------------------------------------------------------------------

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.driver.wake();
        }
    }

    fn abandoned(&self) -> bool {
        self.handles.load(Ordering::Acquire) == 0
    }

    /// Undoes a registration left by a future dropped while pending: readiness goes to the
    /// driver from now on, and if a wake was already routed to the dropped future, the driver
    /// gets one.
    pub(crate) fn unregister(&self, direction: Direction) {
        let readiness = {
            let st = self.lock();
            match direction {
                Direction::Read => st.wakers.read.clone(),
                Direction::Write => st.wakers.write.clone(),
            }
        };
        if !readiness.clear_app() {
            self.driver.wake();
        }
    }

    // ---- closing ------------------------------------------------------------------------------

    /// Starts the close handshake with `code` and `reason`, after what is already queued
    /// (RFC 6455 §7.1.2); `false` if it was already closing or gone.
    ///
    /// # Errors
    ///
    /// [`Error::Local`](crate::Error::Local) for a code that may not be sent or a reason longer
    /// than 123 bytes.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<bool, crate::Error> {
        self.lock().start_close(code, reason)
    }

    /// The close's wait: ready with the outcome once the handshake completed (or the close
    /// timeout, a failure or the transport ended it).
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseOutcome> {
        self.poll_wait(cx, |st| {
            st.progress_output();
            if st.inbound.outcome().is_none() && st.transport_gone() {
                // No driver reads any more: decode the rest here.
                st.settle();
            }
            st.inbound.outcome().cloned()
        })
    }

    /// Waits until `check` returns a value; the event waker is woken by pongs and the close.
    fn poll_wait<T>(
        &self,
        cx: &mut Context<'_>,
        check: impl FnOnce(&mut State) -> Option<T>,
    ) -> Poll<T> {
        let mut st = self.lock();
        if let Some(value) = check(&mut st) {
            st.wakers.event = None;
            return Poll::Ready(value);
        }
        st.set_event_waker(cx.waker());
        Poll::Pending
    }

    /// A `ping()` or `close()` future was dropped.
    pub(crate) fn cancel_wait(&self) {
        self.lock().wakers.event = None;
    }

    /// Whether the connection is over (or its transport is gone).
    pub(crate) fn is_closed(&self) -> bool {
        let st = self.lock();
        st.inbound.outcome().is_some() || st.transport_gone()
    }

    /// How the connection ended, once it has.
    pub(crate) fn close_outcome(&self) -> Option<CloseOutcome> {
        self.lock().inbound.outcome().cloned()
    }

    // ---- settings -----------------------------------------------------------------------------

    /// The I/O settings a [`Config`] set on this connection (the handshake ones are not kept).
    pub(crate) fn config(&self) -> Config {
        let st = self.lock();
        Config::default()
            .core(st.conn.config().clone())
            .write_timeout(st.outbound.write_timeout)
            .write_high_water(st.outbound.high_water)
            .read_high_water(st.inbound.high_water)
    }

    /// Applies `config`'s limits and timers to the live connection.
    pub(crate) fn set_config(&self, config: &Config) {
        let mut st = self.lock();
        let now = st.rt.now();
        st.conn.set_config(config.core.clone(), now);
        st.outbound.set_config(config);
        st.inbound.high_water = config.read_high_water;
        // The driver's timer follows the new deadlines (an earlier one wakes it now; a later one
        // lets it fire early once and be set again).
        st.armed = None;
        st.note_deadline();
    }

    /// Whether [`EncodedFrame::with_deflate`](tidings_core::EncodedFrame::with_deflate) frames
    /// with a `window_bits` window go out compressed here.
    pub(crate) fn accepts_deflated(&self, window_bits: u8) -> bool {
        self.lock().conn.accepts_deflated(window_bits)
    }
}

impl State {
    /// Whether the transport is gone (shut down after the close handshake, or failed).
    fn transport_gone(&self) -> bool {
        self.io.transport.is_none()
    }

    /// Whether we sent a close frame (the handshake is under way or done).
    fn closing(&self) -> bool {
        !self.conn.is_open()
    }

    /// The close sequence, the one place a close starts: the application's `close()`, a
    /// [`Closer`](crate::Closer), an [`Outbox`](crate::Outbox), the `Sink`'s `poll_close` and
    /// the driver when every handle was dropped. The close frame follows what is queued; it is
    /// written now if the socket takes it, and the close timeout starts.
    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<bool, crate::Error> {
        if self.closing() || self.transport_gone() {
            return Ok(false);
        }
        let now = self.rt.now();
        self.conn.close(now, code, reason)?;
        self.progress_output();
        self.note_deadline();
        Ok(true)
    }

    /// With the transport gone, decodes what is left into the queue until the outcome is known
    /// (no driver reads any more; the input is already bounded).
    fn settle(&mut self) {
        while self.inbound.outcome().is_none() {
            let Some(event) = self.decode_one() else {
                break;
            };
            self.inbound.push(event);
        }
        if self.inbound.outcome().is_some() {
            self.wakers.read.wake_app();
        }
    }

    /// The error for a command on a connection whose transport is gone.
    fn closed_error(&self) -> crate::Error {
        match self.io_error_copy() {
            Some(e) => crate::Error::Io(e),
            None => crate::Error::Local(tidings_core::Error::Closed),
        }
    }

    /// The error to report for a connection that ended with `outcome`: a transport error first,
    /// then the core's.
    fn terminal_error(&mut self, outcome: &CloseOutcome) -> Option<crate::Error> {
        if let Some(e) = self.io.error.take() {
            return Some(crate::Error::Io(e));
        }
        outcome.error.clone().map(crate::Error::Connection)
    }

    /// A copy of the transport error, for the writer side.
    fn io_error_copy(&self) -> Option<io::Error> {
        self.io
            .error
            .as_ref()
            .map(|e| io::Error::new(e.kind(), e.to_string()))
    }

    /// Records a transport error and ends the connection: queued output is dropped and the core
    /// sees end of stream (its outcome is 1006).
    fn fail_io(&mut self, e: io::Error) {
        if self.io.error.is_none() && !is_disconnect(&e) {
            self.io.error = Some(e);
        }
        self.discard_output();
        let now = self.rt.now();
        self.conn.receive_eof(now);
        self.release_transport();
    }

    fn release_transport(&mut self) {
        self.io.transport = None;
        self.io.eof = true;
        self.wake_everyone();
        // The driver sees that it is done.
        self.wakers.driver.wake();
    }

    /// When the connection goes idle (a read is armed and all output is written), frees the
    /// buffers that hold nothing: an idle connection keeps no buffer, and the next read or send
    /// allocates again.
    fn release_if_idle(&mut self) {
        if self.io.read_armed && self.conn.queued_bytes() == 0 {
            self.conn.release_idle_buffers();
            self.inbound.release();
            self.outbound.release();
        }
    }

    // ---- wakers and timers ---------------------------------------------------------------

    fn set_event_waker(&mut self, waker: &Waker) {
        match &self.wakers.event {
            Some(w) if w.will_wake(waker) => {}
            _ => {
                if self.wakers.event.is_none() && self.inbound.held() {
                    // The driver may be leaving input to the application: no longer.
                    self.wakers.driver.wake();
                }
                self.wakers.event = Some(waker.clone());
            }
        }
    }

    fn wake_event_waiter(&mut self) {
        if let Some(w) = self.wakers.event.take() {
            w.wake();
        }
    }

    fn wake_everyone(&mut self) {
        self.wake_event_waiter();
        self.wakers.read.wake_app();
        self.wakers.write.wake_app();
    }

    /// Whether the application is handling a data message it received, within the hold's
    /// grace at `now`: the driver leaves it the input that could change its answer (see the
    /// module docs). Not while it waits in `ping()` or `close()`, nor once every handle is gone.
    fn app_holds_message(&self, now: Instant) -> bool {
        self.inbound.hold_in_grace(now) && !self.abandoned && self.wakers.event.is_none()
    }

    /// The next deadline: the core's timers, the write stall timeout and the hold's grace.
    fn deadline(&self) -> Option<Instant> {
        [
            self.conn.poll_timeout(),
            self.outbound.stall_deadline(),
            self.inbound.hold_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Wakes the driver if the next deadline is earlier than the one its timer is armed for.
    fn note_deadline(&mut self) {
        if let Some(d) = self.deadline()
            && self.armed.is_none_or(|armed| d < armed)
        {
            self.armed = Some(d);
            self.wakers.driver.wake();
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A connection whose end nobody decoded (its handles were dropped after the driver had
        // stopped) still records how it ended. Without the feature this is empty.
        if trace::ENABLED {
            while self.inbound.outcome().is_none() && self.decode_one().is_some() {}
        }
    }
}

/// Errors that mean the peer is gone rather than that something broke locally.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}
