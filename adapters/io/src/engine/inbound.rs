//! Input: reading the transport into the core, decoding, and handing events to `recv`.

use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tidings_core::{CloseOutcome, Event, Lookahead, Message};

use super::{Engine, State};
use crate::Error;

/// Spare capacity reserved in the input buffer before a read.
const READ_CHUNK: usize = 64 * 1024;
/// The first reservation of an input buffer that was released while idle: a request/response
/// exchange then allocates little, and a read that fills it grows it to [`READ_CHUNK`].
const FIRST_READ: usize = 8 * 1024;
/// The most room reserved ahead for a frame whose header announced more (a peer could announce a
/// frame and send nothing: room beyond this is reserved as the bytes arrive).
const MAX_AHEAD: usize = 2 << 20;
/// Below this much spare capacity the input buffer is grown before a read.
const MIN_READ: usize = 4 * 1024;
/// A reader keeps reading until the socket would block (so that its readiness is routed again),
/// unless this much undecoded input is already buffered: then it decodes what it has and lets
/// the application answer before reading on. One read chunk: small messages still come in
/// batches of a read's worth, and a large message is answered while the peer is still sending
/// the next (reading several 64 KiB messages ahead held every answer back until the last was
/// in, and the peer waited).
const FILL_CAP: usize = READ_CHUNK;
/// Bookkeeping bytes charged per queued event on top of its payload.
const EVENT_OVERHEAD: usize = 64;
/// How long the driver leaves a data frame, a close frame or a malformed frame to an
/// application that holds a message before it acts on it anyway (see the ordering rules in the
/// module docs of `engine`).
pub(super) const HOLD_GRACE: Duration = Duration::from_millis(25);

/// Events decoded ahead of the application, and where it stands.
pub(super) struct Inbound {
    /// Events decoded by the driver, waiting for the application.
    queue: VecDeque<Event>,
    /// Bytes charged for `queue`.
    queued_bytes: usize,
    /// Data events (messages, fragments) in `queue`.
    data_queued: usize,
    /// A data message is in the application's hands: queued, or returned by `recv` with `recv`
    /// not called again.
    held: bool,
    /// When the driver first left input to the application holding a message; after
    /// [`HOLD_GRACE`] it acts on it.
    hold_since: Option<Instant>,
    /// How the connection ended, once the core has said so.
    outcome: Option<CloseOutcome>,
    /// The reader has seen `Event::Closed`: nothing more will be returned.
    finished: bool,
    /// Above this many queued bytes the driver stops decoding ahead.
    pub(super) high_water: usize,
}

impl Inbound {
    pub(super) fn new(high_water: usize) -> Self {
        Inbound {
            queue: VecDeque::new(),
            queued_bytes: 0,
            data_queued: 0,
            held: false,
            hold_since: None,
            outcome: None,
            finished: false,
            high_water,
        }
    }

    pub(super) fn held(&self) -> bool {
        self.held
    }

    /// Whether the hold is within its grace at `now`.
    pub(super) fn hold_in_grace(&self, now: Instant) -> bool {
        self.held && self.hold_since.is_none_or(|since| now < since + HOLD_GRACE)
    }

    /// When the grace of the current hold ends, if the driver is waiting on it.
    pub(super) fn hold_deadline(&self) -> Option<Instant> {
        self.hold_since
            .filter(|_| self.held)
            .map(|since| since + HOLD_GRACE)
    }

    pub(super) fn outcome(&self) -> Option<&CloseOutcome> {
        self.outcome.as_ref()
    }

    /// Whether events wait in the queue.
    pub(super) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    fn has_room(&self) -> bool {
        self.queued_bytes < self.high_water
    }

    pub(super) fn push(&mut self, event: Event) {
        if is_data(&event) {
            self.data_queued += 1;
            self.held = true;
        }
        self.queued_bytes += event_cost(&event);
        self.queue.push_back(event);
    }

    fn pop(&mut self) -> Option<Event> {
        let event = self.queue.pop_front()?;
        self.queued_bytes -= event_cost(&event);
        if is_data(&event) {
            self.data_queued -= 1;
        }
        Some(event)
    }

    /// Frees the queue's memory if it is empty.
    pub(super) fn release(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Nobody will read what is queued (every handle was dropped).
    pub(super) fn discard(&mut self) {
        self.queue.clear();
        self.queued_bytes = 0;
        self.data_queued = 0;
    }

    /// The application is back for the next event: the message it held is handled.
    fn end_hold(&mut self) {
        if self.data_queued == 0 {
            self.held = false;
            self.hold_since = None;
        }
    }
}

impl Engine {
    /// The reader's step: the next event, reading (and flushing) as needed. `registered` tracks
    /// whether the read readiness holds this caller's waker.
    pub(crate) fn poll_event(
        &self,
        cx: &mut Context<'_>,
        registered: &mut bool,
    ) -> Poll<Option<Event>> {
        let mut st = self.lock();
        if *registered {
            st.wakers.read.clear_app();
            *registered = false;
        }
        st.inbound.end_hold();
        loop {
            if let Some(event) = st.next_event() {
                // Output the core queued while decoding (a pong, the close reply or the close
                // frame of a failure) leaves now, unless it joins a batch of answers being
                // deferred: the application may not call `recv` again for a while.
                let ending = matches!(event, Event::CloseReceived(_) | Event::Closed(_));
                if ending || (!st.outbound.deferred() && st.conn.queued_bytes() > 0) {
                    st.progress_output();
                }
                st.note_deadline();
                st.hand_input_to_driver();
                return Poll::Ready(Some(event));
            }
            if st.inbound.finished {
                return Poll::Ready(None);
            }
            // Nothing decoded: write what is queued (answers, pongs) before waiting for input.
            st.progress_output();
            st.wakers.read.set_app(cx.waker());
            *registered = true;
            match st.poll_fill() {
                Poll::Ready(progress) => {
                    st.wakers.read.clear_app();
                    *registered = false;
                    st.note_deadline();
                    if !progress {
                        // Nothing more will arrive and nothing is left to decode.
                        st.inbound.finished = true;
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending => {
                    st.note_deadline();
                    st.release_if_idle();
                    return Poll::Pending;
                }
            }
        }
    }

    /// The reader's step at message level: control events are skipped, the end of the
    /// connection is `None` (clean) or one error.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        registered: &mut bool,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match self.poll_event(cx, registered) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Event::Message(message))) => {
                    return Poll::Ready(Some(Ok(message)));
                }
                Poll::Ready(Some(Event::Closed(outcome))) => {
                    let error = self.lock().terminal_error(&outcome);
                    return Poll::Ready(error.map(Err));
                }
                Poll::Ready(Some(_)) => {}
            }
        }
    }
}

impl State {
    /// Decodes one event from the core, handling what the engine itself waits for.
    pub(super) fn decode_one(&mut self) -> Option<Event> {
        let event = self.conn.poll_event()?;
        match &event {
            Event::Pong(payload) if self.pings.pong_arrived(payload, self.rt.now()) => {
                self.wake_event_waiter();
            }
            Event::Closed(outcome) => {
                self.span.closed(outcome, self.io.error.as_ref());
                self.inbound.outcome = Some(outcome.clone());
                self.wake_event_waiter();
            }
            _ => {}
        }
        Some(event)
    }

    /// The next event for the application: queued ones first, then one decoded from the core.
    fn next_event(&mut self) -> Option<Event> {
        let event = match self.inbound.pop() {
            Some(event) => event,
            None => self.decode_one()?,
        };
        match event {
            Event::Closed(_) => self.inbound.finished = true,
            Event::Message(_) | Event::Fragment(_) => self.inbound.held = true,
            _ => {}
        }
        Some(event)
    }

    /// One read from the transport into the core. `Ready(true)`: bytes, EOF or an error were
    /// handed to the core; `Ready(false)`: nothing more will ever be read; `Pending`: the read
    /// readiness is registered with the socket.
    fn poll_read_once(&mut self) -> Poll<bool> {
        if self.io.eof {
            return Poll::Ready(false);
        }
        let Some(transport) = self.io.transport.as_mut() else {
            return Poll::Ready(false);
        };
        // Room for the rest of a large frame at once (up to `MAX_AHEAD`), else one read chunk.
        let ahead = self.conn.input_needed().min(MAX_AHEAD);
        let buf = self.conn.input_buffer();
        let spare = buf.capacity() - buf.len();
        if spare < MIN_READ || spare < ahead {
            let chunk = if buf.capacity() == 0 {
                FIRST_READ
            } else {
                READ_CHUNK
            };
            buf.reserve(ahead.max(chunk));
        }
        let mut cx = Context::from_waker(&self.io.read_waker);
        let result = transport.poll_read_into(&mut cx, buf);
        self.io.read_armed = result.is_pending();
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                self.io.eof = true;
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
    fn poll_fill(&mut self) -> Poll<bool> {
        let mut progressed = false;
        loop {
            if progressed && (self.io.eof || self.conn.buffered_input() >= FILL_CAP) {
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

    /// Driver side: decodes input into the queue and reads more while the ordering rule and the
    /// bounds allow (see the module docs of `engine`): freely while the application holds no
    /// message (up to the read high-water mark), only pings and pongs while it holds one. Wakes
    /// a waiting reader if events were queued.
    pub(super) fn read_ahead(&mut self, now: Instant) {
        let mut queued = false;
        loop {
            while self.may_decode_ahead(now) {
                let Some(event) = self.decode_one() else {
                    break;
                };
                if self.abandoned || (!self.inbound.has_room() && is_data(&event)) {
                    // No one will read it (all handles dropped), or we are closing and the
                    // application has not kept up: data after our close frame may be discarded
                    // (RFC 6455 §1.4).
                    continue;
                }
                self.inbound.push(event);
                queued = true;
            }
            // (Undecoded input needs no bound here: the core holds at most one frame, bounded by
            // the frame size limit, plus one read.)
            if !self.may_read_ahead(now) {
                break;
            }
            match self.poll_read_once() {
                Poll::Ready(true) => continue,
                Poll::Ready(false) | Poll::Pending => break,
            }
        }
        if queued || !self.io.read_armed {
            // Events for the reader, or the driver stopped reading before the socket would
            // block: a waiting reader continues itself.
            self.wakers.read.wake_app();
        }
    }

    /// Whether the driver may decode the next event now.
    fn may_decode_ahead(&mut self, now: Instant) -> bool {
        if self.abandoned {
            return true;
        }
        if self.app_holds_message(now) {
            // Pings and pongs only, and only while their answers and events have room.
            let next = self.conn.lookahead();
            if next == Lookahead::Other
                && self.conn.buffered_input() > 0
                && self.inbound.hold_since.is_none()
            {
                // Left to the application, for the grace at most.
                self.inbound.hold_since = Some(now);
                self.note_deadline();
            }
            return next == Lookahead::Control
                && self.inbound.has_room()
                && !self.outbound.over_high_water(&self.conn);
        }
        // Once we are closing, data that finds no room is dropped rather than left: the peer's
        // close frame must be found.
        self.closing() || self.inbound.has_room()
    }

    /// Whether the driver may read more input now.
    fn may_read_ahead(&self, now: Instant) -> bool {
        if self.abandoned {
            return true;
        }
        if self.app_holds_message(now) {
            // Only what may complete a ping or a pong at the front of the input.
            return self.conn.lookahead() == Lookahead::Incomplete && self.inbound.has_room();
        }
        self.closing() || self.inbound.has_room()
    }

    /// After the application took an event: the driver takes over the input while the
    /// application is busy if a ping or pong is next in the buffered input (it answers it now),
    /// or if no read is armed on the socket (nobody would hear of new input).
    fn hand_input_to_driver(&mut self) {
        if (!self.io.read_armed && !self.io.eof) || self.conn.lookahead() == Lookahead::Control {
            self.wakers.driver.wake();
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
