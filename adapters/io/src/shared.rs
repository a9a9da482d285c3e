//! The state shared by a connection's handles and its driver task, and the I/O steps on it.
//!
//! Everything lives behind one `std::sync::Mutex` that is only held inside `poll` functions, never
//! across an `.await`. Whoever is polled does the I/O: `recv` reads, `send` writes, and the
//! driver task does both when the application is elsewhere. Socket readiness is routed by a
//! [`Route`] waker: to the application task waiting in `recv`/`send` if there is one, otherwise to
//! the driver — so the driver costs nothing while the application keeps up.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use tidings_core::{CloseCode, CloseOutcome, Connection, Event};

use crate::config::Config;
use crate::runtime::{Runtime, Transport};
use crate::trace::{self, ConnSpan};

/// Spare capacity reserved in the input buffer before a read.
const READ_CHUNK: usize = 64 * 1024;
/// The most room reserved ahead for a frame whose header announced more (a peer could announce a
/// frame and send nothing: room beyond this is reserved as the bytes arrive).
const MAX_AHEAD: usize = 2 << 20;
/// Below this much spare capacity the input buffer is grown before a read.
const MIN_READ: usize = 4 * 1024;
/// A reader keeps reading until the socket would block (so that its readiness is routed again),
/// unless this much undecoded input is already buffered.
const FILL_CAP: usize = 256 * 1024;
/// Slices per vectored write.
const MAX_SLICES: usize = 64;
/// Bookkeeping bytes charged per queued event on top of its payload.
const EVENT_OVERHEAD: usize = 64;
/// How long the driver leaves input to an application that is handling a message before it
/// decodes on its own (answering pings, noticing a close) and flushes a deferred batch.
pub(crate) const HOLD_GRACE: Duration = Duration::from_millis(25);

/// Wakes the driver task.
#[derive(Default)]
pub(crate) struct DriverSignal {
    waker: AtomicWaker,
}

impl DriverSignal {
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    pub(crate) fn wake(&self) {
        self.waker.wake();
    }
}

/// Routes one direction's socket readiness to the waiting application task, or to the driver when
/// no application task waits.
pub(crate) struct Route {
    app: Mutex<Option<Waker>>,
    driver: Arc<DriverSignal>,
}

impl Route {
    fn new(driver: Arc<DriverSignal>) -> Arc<Self> {
        Arc::new(Route {
            app: Mutex::new(None),
            driver,
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Waker>> {
        self.app.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the application task that waits for this direction.
    pub(crate) fn set_app(&self, waker: &Waker) {
        let mut slot = self.slot();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Unregisters the application task. Returns whether it was still registered (`false`: a wake
    /// was routed to it and it has not consumed it).
    pub(crate) fn clear_app(&self) -> bool {
        self.slot().take().is_some()
    }

    /// Wakes the waiting application task, if any.
    pub(crate) fn wake_app(&self) {
        let waker = self.slot().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Wake for Route {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let app = self.slot().take();
        match app {
            Some(w) => w.wake(),
            None => self.driver.wake(),
        }
    }
}

/// A user ping waiting for its pong.
struct PendingPing {
    payload: [u8; 8],
    sent: Instant,
    rtt: Option<Duration>,
}

/// The shared part of a connection.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Live application handles (`WebSocket`, or the two halves). At zero the driver closes.
    handles: AtomicUsize,
    pub(crate) driver: Arc<DriverSignal>,
    pub(crate) rt: &'static dyn Runtime,
    protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value agreed in the handshake.
    extensions: Option<String>,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        io: Box<dyn Transport>,
        config: &Config,
        rt: &'static dyn Runtime,
        protocol: Option<String>,
        extensions: Option<String>,
        span: ConnSpan,
    ) -> Arc<Self> {
        let driver = Arc::new(DriverSignal::default());
        let read_route = Route::new(driver.clone());
        let write_route = Route::new(driver.clone());
        let state = State {
            conn,
            io: Some(io),
            read_waker: Waker::from(read_route.clone()),
            write_waker: Waker::from(write_route.clone()),
            read_route,
            write_route,
            driver: driver.clone(),
            rt,
            queue: VecDeque::new(),
            queued_in: 0,
            data_in_queue: 0,
            hold: false,
            hold_seen: None,
            read_eof: false,
            read_armed: false,
            io_error: None,
            outcome: None,
            finished: false,
            deferred: false,
            unflushed: false,
            stalled_since: None,
            armed: None,
            ping: None,
            ping_seq: 0,
            event_waker: None,
            abandoned: false,
            write_high_water: config.write_high_water,
            read_high_water: config.read_high_water,
            write_timeout: config.write_timeout,
            written_total: 0,
            outbox_ends: VecDeque::new(),
            outbox_flush: false,
            span,
        };
        Arc::new(Shared {
            state: Mutex::new(state),
            handles: AtomicUsize::new(1),
            driver,
            rt,
            protocol,
            extensions,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub(crate) fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.driver.wake();
        }
    }

    pub(crate) fn abandoned(&self) -> bool {
        self.handles.load(Ordering::Acquire) == 0
    }

    /// Starts the close handshake from outside the tasks that use the connection (a [`Closer`],
    /// an [`Outbox`]); `false` if it was already closing or gone.
    ///
    /// [`Closer`]: crate::Closer
    /// [`Outbox`]: crate::Outbox
    pub(crate) fn close_from_outside(
        &self,
        code: CloseCode,
        reason: &str,
    ) -> Result<bool, crate::Error> {
        let mut st = self.lock();
        if !st.conn.is_open() || st.transport_gone() {
            return Ok(false);
        }
        let now = st.now();
        st.conn.close(now, code, reason)?;
        st.progress_output();
        st.note_deadline();
        Ok(true)
    }
}

/// Connection state; see the module docs.
pub(crate) struct State {
    pub(crate) conn: Connection,
    /// The transport; `None` once it is shut down or failed.
    io: Option<Box<dyn Transport>>,
    read_waker: Waker,
    write_waker: Waker,
    pub(crate) read_route: Arc<Route>,
    pub(crate) write_route: Arc<Route>,
    driver: Arc<DriverSignal>,
    rt: &'static dyn Runtime,
    /// Events decoded by the driver, waiting for the application.
    queue: VecDeque<Event>,
    /// Bytes charged for `queue`.
    queued_in: usize,
    /// Data events (messages, fragments) in `queue`.
    data_in_queue: usize,
    /// A data message is in the application's hands (queued, or returned by `recv` and `recv` not
    /// called again): the driver leaves the input alone, so that the application's answer goes out
    /// before whatever the peer sent next is acted upon (a protocol error's close frame, say).
    hold: bool,
    /// When the driver first saw the current hold; after [`HOLD_GRACE`] it decodes anyway.
    hold_seen: Option<Instant>,
    read_eof: bool,
    /// The last read returned `Pending`: socket readiness will be routed to someone.
    read_armed: bool,
    /// The first transport error, reported once to the reader.
    io_error: Option<io::Error>,
    /// How the connection ended, once the core has said so.
    pub(crate) outcome: Option<CloseOutcome>,
    /// The reader has seen `Event::Closed`: nothing more will be returned.
    pub(crate) finished: bool,
    /// Output was queued without writing because more input was ready (a write batch in progress).
    deferred: bool,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
    /// When queued output last stopped making progress.
    stalled_since: Option<Instant>,
    /// The deadline the driver's timer is armed for.
    armed: Option<Instant>,
    ping: Option<PendingPing>,
    ping_seq: u64,
    /// A `ping()` or `close()` waiting for an event.
    event_waker: Option<Waker>,
    /// All handles were dropped and the driver has started the close.
    abandoned: bool,
    write_high_water: usize,
    read_high_water: usize,
    write_timeout: Option<Duration>,
    /// Output bytes written (or discarded with the transport) since the connection started.
    written_total: u64,
    /// Where each message queued through an [`Outbox`](crate::Outbox) ends, counted like
    /// `written_total`: the ones not yet written are the outbox's occupancy.
    outbox_ends: VecDeque<u64>,
    /// Outbox messages were queued and the driver was woken to write them: until the output is
    /// all written, further ones need no wake.
    outbox_flush: bool,
    /// The connection's span (feature `tracing`; empty without it): its end is recorded there.
    span: ConnSpan,
}

impl State {
    pub(crate) fn now(&self) -> Instant {
        self.rt.now()
    }

    /// Whether the transport is gone (shut down after the close handshake, or failed).
    pub(crate) fn transport_gone(&self) -> bool {
        self.io.is_none()
    }

    /// Whether queued output is a batch of answers whose write was deferred.
    pub(crate) fn deferred(&self) -> bool {
        self.deferred
    }

    pub(crate) fn queued_out(&self) -> usize {
        self.conn.queued_bytes()
    }

    pub(crate) fn over_high_water(&self) -> bool {
        self.conn.queued_bytes() >= self.write_high_water
    }

    // ---- input ----------------------------------------------------------------------------

    /// Decodes one event from the core, handling what the engine itself waits for.
    fn decode_one(&mut self) -> Option<Event> {
        let event = self.conn.poll_event()?;
        match &event {
            Event::Pong(payload) => {
                if let Some(ping) = &mut self.ping
                    && ping.rtt.is_none()
                    && payload[..] == ping.payload
                {
                    ping.rtt = Some(self.rt.now().saturating_duration_since(ping.sent));
                    self.wake_event_waiter();
                }
            }
            Event::Closed(outcome) => {
                self.span.closed(outcome, self.io_error.as_ref());
                self.outcome = Some(outcome.clone());
                self.wake_event_waiter();
            }
            _ => {}
        }
        Some(event)
    }

    /// The application is back for the next event: the message it held is handled.
    pub(crate) fn release_hold(&mut self) {
        if self.data_in_queue == 0 {
            self.hold = false;
            self.hold_seen = None;
        }
    }

    fn push_event(&mut self, event: Event) {
        if is_data(&event) {
            self.data_in_queue += 1;
            self.hold = true;
        }
        self.queued_in += event_cost(&event);
        self.queue.push_back(event);
    }

    /// Whether the driver must leave input and deferred output to the application now: it holds
    /// a message, for less than [`HOLD_GRACE`] as far as the driver has seen.
    fn held(&mut self, now: Instant) -> bool {
        // A `ping()` or `close()` waiting for the peer means the application is not handling a
        // message.
        if !self.hold || self.abandoned || self.event_waker.is_some() {
            return false;
        }
        match self.hold_seen {
            None => {
                self.hold_seen = Some(now);
                true
            }
            Some(seen) => now < seen + HOLD_GRACE,
        }
    }

    /// The next event for the application: queued ones first, then one decoded from the core.
    pub(crate) fn next_buffered_event(&mut self) -> Option<Event> {
        let event = match self.queue.pop_front() {
            Some(event) => {
                self.queued_in -= event_cost(&event);
                if is_data(&event) {
                    self.data_in_queue -= 1;
                }
                event
            }
            None => self.decode_one()?,
        };
        match event {
            Event::Closed(_) => self.finished = true,
            Event::Message(_) | Event::Fragment(_) => self.hold = true,
            _ => {}
        }
        Some(event)
    }

    /// One read from the transport into the core. `Ready(true)`: bytes, EOF or an error were
    /// handed to the core; `Ready(false)`: nothing more will ever be read; `Pending`: the read
    /// route is registered with the socket.
    fn poll_read_once(&mut self) -> Poll<bool> {
        if self.read_eof {
            return Poll::Ready(false);
        }
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(false);
        };
        // Room for the rest of a large frame at once (up to `MAX_AHEAD`), else one read chunk.
        let ahead = self.conn.input_needed().min(MAX_AHEAD);
        let buf = self.conn.input_buffer();
        let spare = buf.capacity() - buf.len();
        if spare < MIN_READ || spare < ahead {
            buf.reserve(ahead.max(READ_CHUNK));
        }
        let mut cx = Context::from_waker(&self.read_waker);
        let result = io.poll_read_into(&mut cx, buf);
        self.read_armed = result.is_pending();
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                let now = self.rt.now();
                self.conn.receive_eof(now);
                Poll::Ready(true)
            }
            Poll::Ready(Ok(_)) => {
                let now = self.rt.now();
                self.conn.received(now);
                Poll::Ready(true)
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Poll::Ready(true),
            Poll::Ready(Err(e)) => {
                self.fail_io(e);
                Poll::Ready(true)
            }
        }
    }

    /// Reads until the socket would block (so its readiness stays routed), or until `FILL_CAP`
    /// bytes are buffered. `Ready(true)` if anything was read.
    pub(crate) fn poll_fill(&mut self) -> Poll<bool> {
        let mut progressed = false;
        loop {
            if progressed && (self.read_eof || self.conn.buffered_input() >= FILL_CAP) {
                return Poll::Ready(true);
            }
            match self.poll_read_once() {
                Poll::Pending if progressed => return Poll::Ready(true),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(true) => progressed = true,
                Poll::Ready(false) => return Poll::Ready(progressed),
            }
        }
    }

    /// Driver side: decodes input into the queue and reads more, until the socket would block,
    /// the queue reaches the read high-water mark, or a data message is queued (the application
    /// then holds it; see `hold`). Wakes a waiting reader if events were queued.
    fn pump(&mut self, now: Instant) {
        let mut queued = false;
        loop {
            loop {
                let room = self.queued_in < self.read_high_water;
                if !(self.abandoned || self.closing() || room) || self.held(now) {
                    break;
                }
                let Some(event) = self.decode_one() else {
                    break;
                };
                if self.abandoned || (!room && is_data(&event)) {
                    // No one will read it (all handles dropped), or we are closing and the
                    // application has not kept up: data after our close frame may be discarded
                    // (RFC 6455 §1.4).
                    continue;
                }
                self.push_event(event);
                queued = true;
            }
            // (Undecoded input needs no bound here: the core holds at most one frame, bounded by
            // the frame size limit, plus one read.)
            let full = self.queued_in >= self.read_high_water;
            if (full && !self.abandoned && !self.closing()) || self.held(now) {
                break;
            }
            match self.poll_read_once() {
                Poll::Ready(true) => continue,
                Poll::Ready(false) | Poll::Pending => break,
            }
        }
        if queued || !self.read_armed {
            // Events for the reader, or the driver stopped reading before the socket would
            // block: a waiting reader continues itself.
            self.read_route.wake_app();
        }
    }

    /// After the application took a message: if no read is armed on the socket, nobody would
    /// hear of new input (a ping) while the application is busy, so the driver takes over.
    pub(crate) fn ensure_read_armed(&mut self) {
        if !self.read_armed && !self.read_eof {
            self.driver.wake();
        }
    }

    /// Whether we sent a close frame (the handshake is under way or done).
    fn closing(&self) -> bool {
        !self.conn.is_open()
    }

    // ---- output ---------------------------------------------------------------------------

    /// Writes queued output until it is all written (then flushes the transport) or the socket
    /// would block (the write route is registered). Transport errors end the connection.
    pub(crate) fn poll_flush_out(&mut self) -> Poll<()> {
        loop {
            let State { conn, io, .. } = self;
            let Some(io) = io.as_mut() else {
                let queued = conn.queued_bytes();
                conn.advance_transmit(queued);
                self.written_total += queued as u64;
                return Poll::Ready(());
            };
            let mut cx = Context::from_waker(&self.write_waker);
            if conn.queued_bytes() == 0 {
                if !self.unflushed {
                    return Poll::Ready(());
                }
                return match io.poll_flush(&mut cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(())) => {
                        self.unflushed = false;
                        Poll::Ready(())
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail_io(e);
                        Poll::Ready(())
                    }
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = conn.transmit_slices(&mut slices);
            match io.poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    self.fail_io(io::ErrorKind::WriteZero.into());
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(written)) => {
                    conn.advance_transmit(written);
                    self.written_total += written as u64;
                    self.unflushed = true;
                    self.stalled_since = None;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.fail_io(e);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if self.write_timeout.is_some() && self.stalled_since.is_none() {
                        self.stalled_since = Some(self.rt.now());
                        self.note_deadline();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// After a message was queued: write it now, unless more input is already waiting for the
    /// application — then the write is deferred so that the answers to a batch of messages go out
    /// in one write (the next `recv` that would wait flushes first, and the driver is woken in case
    /// the application does not come back).
    pub(crate) fn after_send(&mut self) {
        if !self.queue.is_empty() || self.conn.buffered_input() > 0 {
            if !self.deferred {
                self.deferred = true;
                self.driver.wake();
            }
        } else {
            let _ = self.poll_flush_out();
        }
    }

    /// Shuts the transport down once the core says so and the output is written.
    fn poll_close_transport(&mut self) -> Poll<()> {
        if self.io.is_none() || !self.conn.should_close_transport() {
            return Poll::Ready(());
        }
        if self.poll_flush_out().is_pending() {
            return Poll::Pending;
        }
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(());
        };
        let mut cx = Context::from_waker(&self.write_waker);
        if io.poll_shutdown(&mut cx).is_pending() {
            return Poll::Pending;
        }
        self.release_transport();
        Poll::Ready(())
    }

    /// Flushes what can be flushed and closes the transport when due; the common tail of every
    /// application-side wait.
    pub(crate) fn progress_output(&mut self) {
        if self.poll_flush_out().is_ready() {
            self.deferred = false;
            self.outbox_flush = false;
        }
        let _ = self.poll_close_transport();
    }

    fn release_transport(&mut self) {
        self.io = None;
        self.read_eof = true;
        self.wake_everyone();
        // The driver sees that it is done.
        self.driver.wake();
    }

    /// With the transport gone, decodes what is left into the queue until the outcome is known
    /// (no driver reads any more; the input is already bounded).
    pub(crate) fn settle(&mut self) {
        while self.outcome.is_none() {
            let Some(event) = self.decode_one() else {
                break;
            };
            self.push_event(event);
        }
        if self.outcome.is_some() {
            self.read_route.wake_app();
        }
    }

    /// Records a transport error and ends the connection: queued output is dropped and the core
    /// sees end of stream (its outcome is 1006).
    fn fail_io(&mut self, e: io::Error) {
        if self.io_error.is_none() && !is_disconnect(&e) {
            self.io_error = Some(e);
        }
        let queued = self.conn.queued_bytes();
        self.conn.advance_transmit(queued);
        self.written_total += queued as u64;
        let now = self.rt.now();
        self.conn.receive_eof(now);
        self.release_transport();
    }

    /// The error to report for a connection that ended with `outcome`: a transport error first,
    /// then the core's.
    pub(crate) fn terminal_error(&mut self, outcome: &CloseOutcome) -> Option<crate::Error> {
        if let Some(e) = self.io_error.take() {
            return Some(crate::Error::Io(e));
        }
        outcome.error.clone().map(crate::Error::Connection)
    }

    /// A copy of the transport error, for the writer side.
    pub(crate) fn io_error_copy(&self) -> Option<io::Error> {
        self.io_error
            .as_ref()
            .map(|e| io::Error::new(e.kind(), e.to_string()))
    }

    // ---- wakers and timers ---------------------------------------------------------------

    pub(crate) fn set_event_waker(&mut self, waker: &Waker) {
        match &self.event_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => {
                if self.event_waker.is_none() && self.hold {
                    // The driver may be leaving input alone for the application: no longer.
                    self.driver.wake();
                }
                self.event_waker = Some(waker.clone());
            }
        }
    }

    pub(crate) fn clear_event_waker(&mut self) {
        self.event_waker = None;
    }

    fn wake_event_waiter(&mut self) {
        if let Some(w) = self.event_waker.take() {
            w.wake();
        }
    }

    fn wake_everyone(&mut self) {
        self.wake_event_waiter();
        self.read_route.wake_app();
        self.write_route.wake_app();
    }

    /// The next deadline: the core's timers and the write stall timeout.
    fn deadline(&self) -> Option<Instant> {
        let stall = self
            .stalled_since
            .zip(self.write_timeout)
            .map(|(since, t)| since + t);
        let hold = self.hold_seen.filter(|_| self.hold).map(|t| t + HOLD_GRACE);
        [self.conn.poll_timeout(), stall, hold]
            .into_iter()
            .flatten()
            .min()
    }

    /// Wakes the driver if the next deadline is earlier than the one its timer is armed for.
    pub(crate) fn note_deadline(&mut self) {
        if let Some(d) = self.deadline()
            && self.armed.is_none_or(|armed| d < armed)
        {
            self.armed = Some(d);
            self.driver.wake();
        }
    }

    // ---- the outbox --------------------------------------------------------------------------

    /// Messages queued through an outbox that are not completely written yet.
    pub(crate) fn outbox_len(&mut self) -> usize {
        while self
            .outbox_ends
            .front()
            .is_some_and(|&end| end <= self.written_total)
        {
            self.outbox_ends.pop_front();
        }
        self.outbox_ends.len()
    }

    /// Records that a message just queued through an outbox ends at the current end of the
    /// output.
    pub(crate) fn note_outbox_message(&mut self) {
        let end = self.written_total + self.conn.queued_bytes() as u64;
        self.outbox_ends.push_back(end);
    }

    /// Gets queued outbox messages written: by the driver (woken once per batch: messages queued
    /// before it runs leave in one write), or right here with `inline`.
    pub(crate) fn flush_outbox(&mut self, inline: bool) {
        if inline {
            self.progress_output();
        } else if !self.outbox_flush {
            self.outbox_flush = true;
            self.driver.wake();
        }
    }

    /// The I/O settings a [`Config`] set on this connection (the handshake ones are not kept).
    pub(crate) fn config(&self) -> Config {
        Config::default()
            .core(self.conn.config().clone())
            .write_timeout(self.write_timeout)
            .write_high_water(self.write_high_water)
            .read_high_water(self.read_high_water)
    }

    /// Applies `config`'s limits and timers to the live connection.
    pub(crate) fn set_config(&mut self, config: &Config) {
        let now = self.rt.now();
        self.conn.set_config(config.core.clone(), now);
        self.write_timeout = config.write_timeout;
        self.write_high_water = config.write_high_water;
        self.read_high_water = config.read_high_water;
        if self.write_timeout.is_none() {
            self.stalled_since = None;
        }
        // The driver's timer follows the new deadlines (an earlier one wakes it now; a later one
        // lets it fire early once and be set again).
        self.armed = None;
        self.note_deadline();
    }

    // ---- pings ------------------------------------------------------------------------------

    /// Queues a ping with a fresh payload and remembers it.
    pub(crate) fn start_ping(&mut self) -> Result<(), tidings_core::Error> {
        self.ping_seq = self.ping_seq.wrapping_add(1);
        // Distinct from the core's keepalive payloads (a plain counter) by the high byte.
        let payload = (self.ping_seq | 0xA5 << 56).to_be_bytes();
        let now = self.rt.now();
        self.conn.send_ping(now, &payload)?;
        self.ping = Some(PendingPing {
            payload,
            sent: now,
            rtt: None,
        });
        self.after_send();
        Ok(())
    }

    /// The round-trip time of the pending ping, once its pong arrived.
    pub(crate) fn take_pong(&mut self) -> Option<Duration> {
        let rtt = self.ping.as_ref()?.rtt?;
        self.ping = None;
        Some(rtt)
    }

    // ---- the driver -----------------------------------------------------------------------

    /// One driver pass: timers, abandonment, reading, writing, shutdown. `timer_at` is when the
    /// driver's timer is set to fire, if it is set. Returns the deadline to set the timer to —
    /// `timer_at` itself when that is earlier than needed but still ahead (it will fire early and
    /// be set again) — or `Err(())` once the transport is gone and the driver can stop.
    pub(crate) fn drive(
        &mut self,
        abandoned: bool,
        timer_at: Option<Instant>,
    ) -> Result<Option<Instant>, ()> {
        let now = self.rt.now();
        if self.deadline().is_some_and(|d| d <= now) {
            self.conn.handle_timeout(now);
            if let (Some(since), Some(t)) = (self.stalled_since, self.write_timeout)
                && since + t <= now
                && self.conn.queued_bytes() > 0
            {
                self.fail_io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "write timed out: the peer is not reading",
                ));
            }
        }
        if abandoned && !self.abandoned {
            self.abandoned = true;
            self.queue.clear();
            self.queued_in = 0;
            self.data_in_queue = 0;
            if self.conn.is_open() {
                // Every handle was dropped without a close: close politely (RFC 6455 §7.1.2).
                let _ = self.conn.close(now, CloseCode::GOING_AWAY, "");
            }
        }
        if self.held(now) {
            // The application is handling a message: leave input and the batch it is writing
            // to it; write only what the driver's own timers and the outbox queued.
            if !self.deferred || self.outbox_flush {
                self.progress_output();
            }
        } else {
            self.pump(now);
            self.progress_output();
        }
        if self.io.is_none() {
            return Err(());
        }
        let deadline = match (self.deadline(), timer_at) {
            (Some(wanted), Some(set)) if set > now && set < wanted => Some(set),
            (wanted, _) => wanted,
        };
        self.armed = deadline;
        Ok(deadline)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A connection whose end nobody decoded (its handles were dropped after the driver had
        // stopped) still records how it ended. Without the feature this is empty.
        if trace::ENABLED {
            while self.outcome.is_none() && self.decode_one().is_some() {}
        }
    }
}

fn is_data(event: &Event) -> bool {
    matches!(event, Event::Message(_) | Event::Fragment(_))
}

/// Memory charged for a queued event.
fn event_cost(event: &Event) -> usize {
    EVENT_OVERHEAD
        + match event {
            Event::Message(m) => m.len(),
            Event::Fragment(f) => f.data.len(),
            Event::Ping(p) | Event::Pong(p) => p.len(),
            _ => 0,
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
