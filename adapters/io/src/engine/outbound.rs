//! Output: queuing messages into the core, writing the transport, shutting it down.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tidings_core::{Connection, EncodedFrame, Message};

use super::{Engine, State};
use crate::Error;
use crate::config::Config;
use crate::outbox::{OutboxError, OutboxLimits};

/// Outbox bookkeeping kept when the output goes idle (entries), so that a subscriber receiving a
/// message at a time does not allocate it again per message.
const KEEP_OUTBOX_ENDS: usize = 16;
/// Slices per vectored write (small frames share one slice: only payloads queued by reference
/// take their own).
const MAX_SLICES: usize = 16;

/// What a send queues: a message encoded for this connection, or a frame encoded once for many.
pub(crate) enum Outgoing<'a> {
    Message(Message),
    Encoded(&'a EncodedFrame),
}

impl Outgoing<'_> {
    fn queue(self, conn: &mut Connection) -> Result<(), tidings_core::Error> {
        match self {
            Outgoing::Message(message) => conn.send(message),
            Outgoing::Encoded(frame) => conn.send_encoded(frame),
        }
    }
}

/// The output's bookkeeping (the bytes themselves are queued in the core connection).
pub(super) struct Outbound {
    /// Output was queued without writing because more input was ready (a batch in progress).
    deferred: bool,
    /// Outbox messages were queued and the driver was woken to write them: until the output is
    /// all written, further ones need no wake.
    outbox_flush: bool,
    /// Output bytes written (or discarded with the transport) since the connection started.
    written_total: u64,
    /// Where each message queued through an [`Outbox`](crate::Outbox) ends, counted like
    /// `written_total`: the ones not yet written are the outbox's occupancy.
    outbox_ends: VecDeque<u64>,
    /// When queued output last stopped making progress.
    stalled_since: Option<Instant>,
    /// `send` waits while this much or more is queued.
    pub(super) high_water: usize,
    pub(super) write_timeout: Option<Duration>,
}

impl Outbound {
    pub(super) fn new(config: &Config) -> Self {
        Outbound {
            deferred: false,
            outbox_flush: false,
            written_total: 0,
            outbox_ends: VecDeque::new(),
            stalled_since: None,
            high_water: config.write_high_water,
            write_timeout: config.write_timeout,
        }
    }

    pub(super) fn set_config(&mut self, config: &Config) {
        self.high_water = config.write_high_water;
        self.write_timeout = config.write_timeout;
        if self.write_timeout.is_none() {
            self.stalled_since = None;
        }
    }

    /// Whether queued output is a batch of answers whose write was deferred.
    pub(super) fn deferred(&self) -> bool {
        self.deferred
    }

    pub(super) fn over_high_water(&self, conn: &Connection) -> bool {
        conn.queued_bytes() >= self.high_water
    }

    /// When a stalled write times out.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        Some(self.stalled_since? + self.write_timeout?)
    }

    /// Frees the outbox bookkeeping's memory if no outbox message is pending.
    pub(super) fn release(&mut self) {
        if self.outbox_len() == 0 && self.outbox_ends.capacity() > KEEP_OUTBOX_ENDS {
            self.outbox_ends = VecDeque::new();
        }
    }

    /// Messages queued through an outbox that are not completely written yet.
    fn outbox_len(&mut self) -> usize {
        while self
            .outbox_ends
            .front()
            .is_some_and(|&end| end <= self.written_total)
        {
            self.outbox_ends.pop_front();
        }
        self.outbox_ends.len()
    }
}

impl Engine {
    /// The writer's step: waits below the write high-water mark, then queues `item` (if any).
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        registered: &mut bool,
        item: &mut Option<Outgoing<'_>>,
    ) -> Poll<Result<(), Error>> {
        let mut st = self.lock();
        if *registered {
            st.wakers.write.clear_app();
            *registered = false;
        }
        if st.transport_gone() {
            return Poll::Ready(Err(st.closed_error()));
        }
        if st.outbound.over_high_water(&st.conn) {
            st.wakers.write.set_app(cx.waker());
            *registered = true;
            st.progress_output();
            if st.outbound.over_high_water(&st.conn) && !st.transport_gone() {
                st.note_deadline();
                return Poll::Pending;
            }
            st.wakers.write.clear_app();
            *registered = false;
            if st.transport_gone() {
                return Poll::Ready(Err(st.closed_error()));
            }
        }
        match item.take() {
            Some(item) => Poll::Ready(st.send(item)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Queues `item` without waiting for room (the `Sink`'s `start_send`, after `poll_ready`).
    pub(crate) fn send_now(&self, item: Outgoing<'_>) -> Result<(), Error> {
        self.lock().send(item)
    }

    /// The writer's flush: waits until all queued output is written.
    pub(crate) fn poll_flush(
        &self,
        cx: &mut Context<'_>,
        registered: &mut bool,
    ) -> Poll<Result<(), Error>> {
        let mut st = self.lock();
        if *registered {
            st.wakers.write.clear_app();
            *registered = false;
        }
        st.wakers.write.set_app(cx.waker());
        *registered = true;
        st.progress_output();
        if st.conn.queued_bytes() > 0 && !st.transport_gone() {
            st.note_deadline();
            return Poll::Pending;
        }
        st.wakers.write.clear_app();
        *registered = false;
        match st.io_error_copy() {
            Some(e) => Poll::Ready(Err(Error::Io(e))),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Output bytes queued and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().conn.queued_bytes()
    }

    // ---- the outbox ---------------------------------------------------------------------------

    /// Queues `item`, at most `len` bytes on the wire, unless the outbox is at one of `limits` or
    /// the connection is closing; then gets it written: by the driver, woken once per batch (the
    /// messages queued before it runs leave in one write), or here with
    /// [`OutboxLimits::write_inline`].
    pub(crate) fn outbox_send(
        &self,
        limits: &OutboxLimits,
        len: usize,
        item: Outgoing<'_>,
    ) -> Result<(), OutboxError> {
        let mut st = self.lock();
        if st.transport_gone() || st.closing() {
            return Err(OutboxError::Closed);
        }
        let messages = st.outbound.outbox_len();
        let bytes = st.conn.queued_bytes();
        if messages >= limits.get_messages() || (bytes > 0 && bytes + len > limits.get_bytes()) {
            return Err(OutboxError::Full { messages, bytes });
        }
        item.queue(&mut st.conn).map_err(|e| {
            if e.is_closed() {
                OutboxError::Closed
            } else {
                OutboxError::Refused(e)
            }
        })?;
        let end = st.outbound.written_total + st.conn.queued_bytes() as u64;
        st.outbound.outbox_ends.push_back(end);
        if limits.get_write_inline() {
            st.progress_output();
        } else if !st.outbound.outbox_flush {
            st.outbound.outbox_flush = true;
            st.wakers.driver.wake();
        }
        Ok(())
    }

    /// Messages sent through this connection's outboxes that are not completely written yet.
    pub(crate) fn outbox_len(&self) -> usize {
        self.lock().outbound.outbox_len()
    }

    /// Whether the connection is closing or over: an outbox refuses everything.
    pub(crate) fn is_closing(&self) -> bool {
        let st = self.lock();
        st.transport_gone() || st.closing()
    }
}

impl State {
    /// Queues `item`: written now, unless more input is already waiting for the application —
    /// then the write is deferred so that the answers to a batch of messages go out in one write
    /// (the next wait of the application flushes, and the driver is woken in case it does not
    /// come back).
    pub(super) fn send(&mut self, item: Outgoing<'_>) -> Result<(), Error> {
        item.queue(&mut self.conn)?;
        self.after_send();
        Ok(())
    }

    /// After something was queued: write it now or join the deferred batch.
    pub(super) fn after_send(&mut self) {
        if self.inbound.has_queued() || self.conn.buffered_input() > 0 {
            if !self.outbound.deferred {
                self.outbound.deferred = true;
                self.wakers.driver.wake();
            }
        } else {
            let _ = self.poll_write();
        }
    }

    /// Writes queued output until it is all written (then flushes the transport) or the socket
    /// would block (the write readiness is registered). Transport errors end the connection.
    fn poll_write(&mut self) -> Poll<()> {
        loop {
            let Some(transport) = self.io.transport.as_mut() else {
                self.discard_output();
                return Poll::Ready(());
            };
            let mut cx = Context::from_waker(&self.io.write_waker);
            if self.conn.queued_bytes() == 0 {
                if !self.io.unflushed {
                    return Poll::Ready(());
                }
                return match transport.poll_flush(&mut cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(())) => {
                        self.io.unflushed = false;
                        Poll::Ready(())
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail_io(e);
                        Poll::Ready(())
                    }
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.conn.transmit_slices(&mut slices);
            match transport.poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    self.fail_io(io::ErrorKind::WriteZero.into());
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(written)) => {
                    self.conn.advance_transmit(written);
                    self.outbound.written_total += written as u64;
                    self.io.unflushed = true;
                    self.outbound.stalled_since = None;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.fail_io(e);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if self.outbound.write_timeout.is_some()
                        && self.outbound.stalled_since.is_none()
                    {
                        self.outbound.stalled_since = Some(self.rt.now());
                        self.note_deadline();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Drops queued output that will never be written (the transport is gone).
    pub(super) fn discard_output(&mut self) {
        let queued = self.conn.queued_bytes();
        self.conn.advance_transmit(queued);
        self.outbound.written_total += queued as u64;
    }

    /// Shuts the transport down once the core says so and the output is written.
    fn poll_close_transport(&mut self) -> Poll<()> {
        if self.transport_gone() || !self.conn.should_close_transport() {
            return Poll::Ready(());
        }
        if self.poll_write().is_pending() {
            return Poll::Pending;
        }
        let Some(transport) = self.io.transport.as_mut() else {
            return Poll::Ready(());
        };
        let mut cx = Context::from_waker(&self.io.write_waker);
        if transport.poll_shutdown(&mut cx).is_pending() {
            return Poll::Pending;
        }
        self.release_transport();
        Poll::Ready(())
    }

    /// Writes what can be written and closes the transport when due; the common tail of every
    /// wait and of the driver's pass.
    pub(super) fn progress_output(&mut self) {
        if self.poll_write().is_ready() {
            self.outbound.deferred = false;
            self.outbound.outbox_flush = false;
        }
        let _ = self.poll_close_transport();
    }

    /// The write timeout: fails the connection if queued output made no progress for that long.
    pub(super) fn check_stall(&mut self, now: Instant) {
        if self.outbound.stall_deadline().is_some_and(|at| at <= now)
            && self.conn.queued_bytes() > 0
        {
            self.fail_io(io::Error::new(
                io::ErrorKind::TimedOut,
                "write timed out: the peer is not reading",
            ));
        }
    }
}
