//! Streaming Server-Sent Events response bodies, on any runtime.
//!
//! An [`SseBody`] is an [`http_body::Body`] that an HTTP server (hyper, axum, any server taking
//! `http-body` bodies) writes out as a `text/event-stream` (WHATWG HTML §9.2). Its events come
//! from an [`SseSender`] handle ([`SseBody::channel`]) or from a stream
//! ([`SseBody::from_stream`]); they are encoded by the core's [`SseEvent`] encoder.
//!
//! ```text
//!  application ── SseSender::send(&event) ───┐  bounded queue            HTTP server
//!  broadcast   ── SseSender::send_bytes(b) ──┴► (events, bytes) ─► SseBody ──► client
//!                                               heartbeat timer ─► ":\n\n" when idle
//! ```
//!
//! * **Bounded.** The sender's queue holds at most [`SseConfig::queue_events`] events and
//!   [`SseConfig::queue_bytes`] encoded bytes; beyond that [`SseSender::send`] refuses with
//!   [`SseSendError::Full`] at once (it never waits). What to do with a client that does not
//!   keep up (drop the event, [`close`](SseSender::close) the stream) is the caller's policy.
//! * **Shared broadcasts.** [`SseSender::send_bytes`] queues an event encoded once
//!   ([`SseEvent::to_bytes`]) whose buffer is shared by every body it is sent to.
//! * **Heartbeat, no task.** When nothing was sent for [`SseConfig::heartbeat`] (15 s by default),
//!   the body yields a keep-alive comment ([`keepalive`], `":\n\n"`), which clients ignore but
//!   which keeps proxies from closing an idle stream. It is driven by one [`Sleep`] of the
//!   runtime, polled by the body itself: no task is spawned per body.
//! * **Disconnects.** The HTTP server drops the body when a write to the client fails, so a
//!   client that went away is noticed at the latest by the next heartbeat's write; the senders
//!   then see it in [`SseSender::is_closed`], [`SseSender::closed`] and [`SseSendError::Closed`].
//!
//! ```
//! # fn demo(rt: &'static dyn tidings_io::Runtime) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tidings_io::sse::{SseBody, SseConfig, SseEvent};
//!
//! let config = SseConfig::default()
//!     .heartbeat(Some(Duration::from_secs(20)))
//!     .retry(Some(Duration::from_secs(3)));
//! let (events, body) = SseBody::channel(rt, config);
//! events.send(&SseEvent::data("hello").event("greeting")?)?;
//! let response = body.into_response(); // 200, text/event-stream: hand it to the HTTP server
//! # drop(response);
//! # Ok(())
//! # }
//! ```
//!
//! # What it does not do
//!
//! It does not read requests: `Last-Event-ID` (sent by a reconnecting browser) is the
//! application's to read from the request headers, and there is no replay buffer of past events.
//! It writes no HTTP itself (no HTTP server, no compression, no chunking: that is the server's)
//! and does not check the bytes given to [`SseSender::send_bytes`] (they must be whole encoded
//! events). A body never fails: its error type is [`Infallible`]; a dead client is seen only
//! through the HTTP server dropping the body.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tidings_core::sse::{SSE_CONTENT_TYPE, keepalive};

use crate::runtime::{Runtime, Sleep};

pub use tidings_core::sse::{SseError, SseEvent};

/// Queued events are sent joined into frames of at most this many bytes (16 KiB).
const BATCH_BYTES: usize = 16 * 1024;

/// Default [`SseConfig::heartbeat`]: a keep-alive comment after 15 seconds without output.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Default [`SseConfig::queue_events`]: 256 events waiting in an [`SseSender`]'s queue.
pub const DEFAULT_QUEUE_EVENTS: usize = 256;
/// Default [`SseConfig::queue_bytes`]: 1 MiB of encoded events waiting in an [`SseSender`]'s
/// queue.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;

/// The shortest heartbeat interval; shorter ones are raised to it.
const MIN_HEARTBEAT: Duration = Duration::from_millis(1);

/// The `X-Accel-Buffering: no` header name, which tells nginx not to buffer the response.
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// The headers of a response that opens an event stream: `Content-Type: text/event-stream`,
/// `Cache-Control: no-cache` (caches and proxies pass events through instead of storing a
/// never-ending body) and `X-Accel-Buffering: no` (nginx forwards each event at once instead of
/// buffering the response).
///
/// ```
/// let headers = tidings_io::sse::response_headers();
/// assert_eq!(headers["content-type"], "text/event-stream");
/// assert_eq!(headers.len(), 3);
/// ```
#[must_use]
pub fn response_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(SSE_CONTENT_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers
}

/// Configuration of an [`SseBody`]: heartbeat, the sender's queue bounds, the initial `retry:`.
///
/// ```
/// # use std::time::Duration;
/// # use tidings_io::sse::SseConfig;
/// let config = SseConfig::default()
///     .heartbeat(Some(Duration::from_secs(30)))
///     .queue_events(64)
///     .queue_bytes(256 * 1024)
///     .retry(Some(Duration::from_secs(5)));
/// assert_eq!(config.get_queue_events(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseConfig {
    heartbeat: Option<Duration>,
    queue_events: usize,
    queue_bytes: usize,
    retry: Option<Duration>,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            heartbeat: Some(DEFAULT_HEARTBEAT),
            queue_events: DEFAULT_QUEUE_EVENTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            retry: None,
        }
    }
}

impl SseConfig {
    /// Sends a keep-alive comment (`":\n\n"`) whenever nothing was sent for this long, on the
    /// runtime's clock. It keeps proxies and load balancers from closing an idle stream, and
    /// makes a client that went away noticed within one interval (the write fails and the HTTP
    /// server drops the body). Intervals under 1 ms are raised to 1 ms. Default
    /// [`DEFAULT_HEARTBEAT`] (15 s); `None` turns it off.
    #[must_use]
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every.map(|every| every.max(MIN_HEARTBEAT));
        self
    }

    /// At most this many events wait in an [`SseSender`]'s queue (at least 1); one more is
    /// refused with [`SseSendError::Full`]. Default [`DEFAULT_QUEUE_EVENTS`] (256).
    #[must_use]
    pub fn queue_events(mut self, events: usize) -> Self {
        self.queue_events = events.max(1);
        self
    }

    /// An event is refused with [`SseSendError::Full`] when the encoded events waiting in an
    /// [`SseSender`]'s queue would exceed this many bytes with it. An event is always accepted
    /// into an empty queue, so one event larger than the bound still goes out. Default
    /// [`DEFAULT_QUEUE_BYTES`] (1 MiB).
    #[must_use]
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes.max(1);
        self
    }

    /// Sends `retry: N` (the client's reconnection time in milliseconds, HTML §9.2.6) as the
    /// first bytes of the stream. Sub-millisecond precision is dropped. Default `None`: the
    /// browser's own default (a few seconds) applies.
    #[must_use]
    pub fn retry(mut self, after: Option<Duration>) -> Self {
        self.retry = after;
        self
    }

    /// The heartbeat interval, if on.
    pub fn get_heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// The queue's event bound.
    pub fn get_queue_events(&self) -> usize {
        self.queue_events
    }

    /// The queue's byte bound.
    pub fn get_queue_bytes(&self) -> usize {
        self.queue_bytes
    }

    /// The reconnection time sent first, if any.
    pub fn get_retry(&self) -> Option<Duration> {
        self.retry
    }
}

/// Why an [`SseSender`] refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseSendError {
    /// The queue is at one of its bounds ([`SseConfig::queue_events`],
    /// [`SseConfig::queue_bytes`]): the client is not reading fast enough. Nothing was queued.
    Full,
    /// The stream is over: the body was dropped (the client went away or the response was
    /// abandoned) or [`SseSender::close`] was called. Nothing can be sent any more.
    Closed,
}

impl SseSendError {
    /// Whether the queue was full (the event may be retried later or dropped).
    pub fn is_full(&self) -> bool {
        matches!(self, SseSendError::Full)
    }

    /// Whether the stream is over.
    pub fn is_closed(&self) -> bool {
        matches!(self, SseSendError::Closed)
    }
}

impl fmt::Display for SseSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SseSendError::Full => "SSE queue full: the client is not reading",
            SseSendError::Closed => "SSE stream closed",
        })
    }
}

impl std::error::Error for SseSendError {}

/// What a channel body and its senders share.
struct Shared {
    state: Mutex<State>,
    max_events: usize,
    max_bytes: usize,
}

struct State {
    /// Encoded events not yet taken by the body; at most `max_events` of them.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    bytes: usize,
    /// Live [`SseSender`]s; the body ends after the queue when it reaches zero.
    senders: usize,
    /// [`SseSender::close`] was called: the body ends after the queue.
    closing: bool,
    /// The body was dropped; the queue was freed.
    body_gone: bool,
    /// The body's task, waiting for an event.
    body_waker: Option<Waker>,
    /// [`Closed`] futures waiting, one entry per pending future (removed when it is dropped).
    closed_waiters: Vec<(u64, Waker)>,
    next_waiter: u64,
}

impl State {
    fn is_closed(&self) -> bool {
        self.closing || self.body_gone
    }

    /// Nothing more will come out of the queue.
    fn finished(&self) -> bool {
        self.queue.is_empty() && (self.closing || self.senders == 0)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn wake(body: Option<Waker>, waiters: Vec<(u64, Waker)>) {
    if let Some(waker) = body {
        waker.wake();
    }
    for (_, waker) in waiters {
        waker.wake();
    }
}

/// A handle that queues events into one [`SseBody`], from [`SseBody::channel`].
///
/// Every method returns at once: [`send`](Self::send) never waits for the client, it refuses
/// with [`SseSendError::Full`] when the bounded queue is full. Clones share the queue; the body
/// ends (after the queued events) when every sender is dropped or [`close`](Self::close) is
/// called. Cloning and dropping take the queue's lock once.
pub struct SseSender {
    shared: Arc<Shared>,
}

impl fmt::Debug for SseSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("SseSender")
            .field("queued", &st.queue.len())
            .field("queued_bytes", &st.bytes)
            .field("closed", &st.is_closed())
            .finish_non_exhaustive()
    }
}

impl Clone for SseSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        SseSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for SseSender {
    fn drop(&mut self) {
        let body = {
            let mut st = self.shared.lock();
            st.senders = st.senders.saturating_sub(1);
            if st.senders == 0 {
                st.body_waker.take()
            } else {
                None
            }
        };
        wake(body, Vec::new());
    }
}

impl SseSender {
    /// Encodes `event` and queues it for the body.
    ///
    /// # Errors
    ///
    /// [`SseSendError::Full`] at a queue bound, [`SseSendError::Closed`] once the body is gone or
    /// the stream closed; the event is not queued.
    pub fn send(&self, event: &SseEvent) -> Result<(), SseSendError> {
        self.push(event.encoded_len(), || event.to_bytes())
    }

    /// Queues an already encoded event (or several, or a comment) without copying it: encode a
    /// broadcast once with [`SseEvent::to_bytes`] and give every subscriber's sender a clone of
    /// the [`Bytes`]. The bytes are not checked; they must end with the blank line that
    /// dispatches the event. Empty bytes queue nothing.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_bytes(&self, encoded: Bytes) -> Result<(), SseSendError> {
        if encoded.is_empty() {
            // An empty chunk would end a chunked HTTP/1.1 body early: never yield one.
            return if self.is_closed() {
                Err(SseSendError::Closed)
            } else {
                Ok(())
            };
        }
        self.push(encoded.len(), || encoded)
    }

    /// Queues what `encode` makes (`len` bytes) unless the queue is full or closed.
    fn push(&self, len: usize, encode: impl FnOnce() -> Bytes) -> Result<(), SseSendError> {
        let body = {
            let mut st = self.shared.lock();
            if st.is_closed() {
                return Err(SseSendError::Closed);
            }
            if st.queue.len() >= self.shared.max_events
                || (st.bytes > 0 && st.bytes.saturating_add(len) > self.shared.max_bytes)
            {
                return Err(SseSendError::Full);
            }
            let bytes = encode();
            st.bytes += bytes.len();
            st.queue.push_back(bytes);
            st.body_waker.take()
        };
        wake(body, Vec::new());
        Ok(())
    }

    /// Ends the stream after the events already queued: later sends are refused with
    /// [`SseSendError::Closed`], and [`closed`](Self::closed) resolves at once (it does not wait
    /// for the queued events to be written). Closing again does nothing.
    pub fn close(&self) {
        let (body, waiters) = {
            let mut st = self.shared.lock();
            if st.closing {
                return;
            }
            st.closing = true;
            (st.body_waker.take(), mem::take(&mut st.closed_waiters))
        };
        wake(body, waiters);
    }

    /// Whether the stream is over: the body was dropped (the client went away) or
    /// [`close`](Self::close) was called. Sends are refused from then on.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().is_closed()
    }

    /// A future that resolves when the stream is over (see [`is_closed`](Self::is_closed)): use
    /// it to stop producing events for a client that went away. It holds no sender, so it does
    /// not keep the stream open.
    pub fn closed(&self) -> Closed {
        Closed {
            shared: Arc::clone(&self.shared),
            id: None,
        }
    }

    /// Events queued and not yet taken by the body.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Encoded bytes queued and not yet taken by the body.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Encodes `value` as JSON (compact: one `data:` line) into an event of type `event_name`
    /// (none if empty, which the client sees as `"message"`) and queues it; see [`json_event`].
    ///
    /// # Errors
    ///
    /// [`SseJsonError::Json`] if `value` cannot be serialized, [`SseJsonError::Event`] if
    /// `event_name` contains a line break, [`SseJsonError::Send`] as for [`send`](Self::send).
    #[cfg(feature = "json")]
    pub fn send_json<T: serde::Serialize + ?Sized>(
        &self,
        event_name: &str,
        value: &T,
    ) -> Result<(), SseJsonError> {
        if self.is_closed() {
            return Err(SseJsonError::Send(SseSendError::Closed));
        }
        Ok(self.send(&json_event(event_name, value)?)?)
    }
}

/// The future of [`SseSender::closed`]: resolves when the body is dropped (the client went
/// away) or the stream is closed.
#[must_use = "futures do nothing unless polled"]
pub struct Closed {
    shared: Arc<Shared>,
    /// This future's entry in `closed_waiters`, once it has waited.
    id: Option<u64>,
}

impl fmt::Debug for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed").finish_non_exhaustive()
    }
}

impl Future for Closed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if st.is_closed() {
            if let Some(id) = this.id.take() {
                st.closed_waiters.retain(|(waiter, _)| *waiter != id);
            }
            return Poll::Ready(());
        }
        let entry = this
            .id
            .and_then(|id| st.closed_waiters.iter_mut().find(|(w, _)| *w == id));
        match entry {
            Some((_, waker)) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let id = st.next_waiter;
                st.next_waiter = st.next_waiter.wrapping_add(1);
                st.closed_waiters.push((id, cx.waker().clone()));
                this.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared
                .lock()
                .closed_waiters
                .retain(|(waiter, _)| *waiter != id);
        }
    }
}

/// The body's end of a channel; dropping it closes the stream for the senders.
struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next bytes to send: one queued event as it is (not copied), or several queued
    /// events joined into one frame of at most [`BATCH_BYTES`] — one chunk for the HTTP server
    /// to frame and write, one heartbeat reset, instead of one per event.
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut st = self.0.lock();
        if let Some(first) = st.queue.pop_front() {
            st.bytes -= first.len();
            let more = st
                .queue
                .front()
                .is_some_and(|next| first.len() + next.len() <= BATCH_BYTES);
            if !more {
                return Poll::Ready(Some(first));
            }
            let mut batch = BytesMut::with_capacity(BATCH_BYTES.min(first.len() + st.bytes));
            batch.extend_from_slice(&first);
            while let Some(next) = st.queue.front() {
                if batch.len() + next.len() > BATCH_BYTES {
                    break;
                }
                batch.extend_from_slice(next);
                st.bytes -= next.len();
                st.queue.pop_front();
            }
            return Poll::Ready(Some(batch.freeze()));
        }
        if st.finished() {
            return Poll::Ready(None);
        }
        match &mut st.body_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether the queue is finished, and the bytes still queued.
    fn remaining(&self) -> (bool, usize) {
        let st = self.0.lock();
        (st.finished(), st.bytes)
    }

    /// Whether nothing more can be queued (closed, or no sender left).
    fn sealed(&self) -> bool {
        let st = self.0.lock();
        st.closing || st.senders == 0
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let (queue, waiters) = {
            let mut st = self.0.lock();
            st.body_gone = true;
            st.bytes = 0;
            st.body_waker = None;
            (mem::take(&mut st.queue), mem::take(&mut st.closed_waiters))
        };
        drop(queue);
        wake(None, waiters);
    }
}

/// A boxed event stream for [`SseBody::from_stream`].
type EventStream = Pin<Box<dyn Stream<Item = SseEvent> + Send + 'static>>;

enum Source {
    Channel(Receiver),
    /// Behind a mutex that is never locked (reached through `Mutex::get_mut`) only to make the
    /// body `Sync` although the stream need only be `Send`.
    Stream(Mutex<EventStream>),
    /// The body has ended; its source and timer are freed.
    Ended,
}

/// The heartbeat: a deadline moved by every frame sent, and the runtime timer behind it.
///
/// The timer is not reset per frame (a reset is a timer-wheel operation on most runtimes): when
/// it fires before the moved deadline, it is re-armed for it. So it is reset at most about once
/// per interval, however fast events go out.
struct Heartbeat {
    every: Duration,
    deadline: Instant,
    /// Never locked (reached through `Mutex::get_mut`): the mutex only makes the body `Sync`
    /// although a [`Sleep`] need only be `Send`.
    timer: Mutex<Box<dyn Sleep>>,
}

impl Heartbeat {
    /// `None` if the first deadline is beyond the clock's range (no heartbeat, then).
    fn new(rt: &'static dyn Runtime, every: Duration) -> Option<Heartbeat> {
        let deadline = rt.now().checked_add(every)?;
        Some(Heartbeat {
            every,
            deadline,
            timer: Mutex::new(rt.sleep_until(deadline)),
        })
    }

    /// A frame went out at `now`: the next keep-alive is due one interval later. `false` if that
    /// is beyond the clock's range.
    fn sent(&mut self, now: Instant) -> bool {
        match now.checked_add(self.every) {
            Some(deadline) => {
                self.deadline = deadline;
                true
            }
            None => false,
        }
    }

    /// `Ready` when a keep-alive is due; otherwise the timer has registered `cx`'s waker.
    fn poll_due(&mut self, rt: &dyn Runtime, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self.timer.get_mut().unwrap_or_else(PoisonError::into_inner);
        if timer.poll_expired(cx).is_pending() {
            return Poll::Pending;
        }
        if rt.now() < self.deadline {
            // Frames went out since the timer was armed: wait for the moved deadline.
            timer.reset(self.deadline);
            // A timer that still says expired is believed (an early keep-alive) rather than
            // polled in a loop.
            return timer.poll_expired(cx);
        }
        Poll::Ready(())
    }
}

/// A streaming `text/event-stream` response body ([`http_body::Body`] of [`Bytes`] that never
/// fails), from [`SseBody::channel`] or [`SseBody::from_stream`].
///
/// Each poll yields one frame, in this order: the `retry:` of [`SseConfig::retry`] if set, then
/// each event as it comes (one frame per event, its encoded bytes not copied), and when none
/// has come for [`SseConfig::heartbeat`] a keep-alive comment. The body ends when its source
/// does: the stream ends, or every [`SseSender`] is dropped or one called
/// [`close`](SseSender::close) — in both cases after the queued events.
///
/// The body is `Send + Sync + 'static` and spawns nothing; its heartbeat timer is polled only
/// when the body is. Dropping it tells the senders the client is gone.
pub struct SseBody {
    rt: &'static dyn Runtime,
    /// The `retry:` frame, not yet sent.
    first: Option<Bytes>,
    source: Source,
    heartbeat: Option<Heartbeat>,
}

impl fmt::Debug for SseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Channel(_) => "channel",
            Source::Stream(_) => "stream",
            Source::Ended => "ended",
        };
        f.debug_struct("SseBody")
            .field("source", &source)
            .field("heartbeat", &self.heartbeat.as_ref().map(|h| h.every))
            .finish_non_exhaustive()
    }
}

impl SseBody {
    /// A body fed by the returned [`SseSender`] (clone it for more producers), with a queue
    /// bounded by `config`. The heartbeat runs on `rt`'s clock and timers.
    pub fn channel(rt: &'static dyn Runtime, config: SseConfig) -> (SseSender, SseBody) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                senders: 1,
                closing: false,
                body_gone: false,
                body_waker: None,
                closed_waiters: Vec::new(),
                next_waiter: 0,
            }),
            max_events: config.queue_events,
            max_bytes: config.queue_bytes,
        });
        let sender = SseSender {
            shared: Arc::clone(&shared),
        };
        let body = SseBody::new(rt, Source::Channel(Receiver(shared)), config);
        (sender, body)
    }

    /// A body that sends each event of `stream`, encoded, as it comes, and ends when the stream
    /// ends. The stream is polled only when the body is (it is its own backpressure: the queue
    /// bounds of `config` do not apply). The heartbeat runs on `rt`'s clock and timers.
    pub fn from_stream<S>(rt: &'static dyn Runtime, stream: S, config: SseConfig) -> SseBody
    where
        S: Stream<Item = SseEvent> + Send + 'static,
    {
        SseBody::new(rt, Source::Stream(Mutex::new(Box::pin(stream))), config)
    }

    fn new(rt: &'static dyn Runtime, source: Source, config: SseConfig) -> SseBody {
        SseBody {
            rt,
            first: config
                .retry
                .map(|after| SseEvent::new().retry(after).to_bytes()),
            source,
            heartbeat: config.heartbeat.and_then(|every| Heartbeat::new(rt, every)),
        }
    }

    /// A `200 OK` response carrying this body, with the [`response_headers`].
    pub fn into_response(self) -> http::Response<SseBody> {
        let mut response = http::Response::new(self);
        *response.headers_mut() = response_headers();
        response
    }

    /// Yields `bytes` as the next frame and moves the heartbeat deadline.
    fn emit(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(heartbeat) = &mut self.heartbeat
            && !heartbeat.sent(self.rt.now())
        {
            self.heartbeat = None;
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return this.emit(first);
        }
        let next = match &mut this.source {
            Source::Channel(rx) => rx.poll_next(cx),
            Source::Stream(stream) => stream
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .poll_next(cx)
                .map(|event| event.map(|event| event.to_bytes())),
            Source::Ended => return Poll::Ready(None),
        };
        match next {
            Poll::Ready(Some(bytes)) => this.emit(bytes),
            Poll::Ready(None) => {
                // Free the source (a channel's end tells the senders) and the timer now.
                this.source = Source::Ended;
                this.heartbeat = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let due = match &mut this.heartbeat {
                    Some(heartbeat) => heartbeat.poll_due(this.rt, cx).is_ready(),
                    None => false,
                };
                if due {
                    this.emit(keepalive())
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Ended => true,
            Source::Channel(rx) => self.first.is_none() && rx.remaining().0,
            Source::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, Bytes::len);
        let (sealed, queued) = match &self.source {
            Source::Ended => return SizeHint::with_exact(0),
            // Once nothing more can be queued, what remains is exactly the queue: the body
            // yields it without pausing, so no keep-alive can come in between.
            Source::Channel(rx) => (rx.sealed(), rx.remaining().1),
            Source::Stream(_) => (false, 0),
        };
        let known = u64::try_from(first.saturating_add(queued)).unwrap_or(u64::MAX);
        if sealed {
            SizeHint::with_exact(known)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(known);
            hint
        }
    }
}

/// Why a JSON event could not be built or sent.
#[cfg(feature = "json")]
#[derive(Debug)]
#[non_exhaustive]
pub enum SseJsonError {
    /// The value could not be serialized.
    Json(serde_json::Error),
    /// The event name cannot be carried by an `event:` field (it contains a line break).
    Event(SseError),
    /// The sender refused the event.
    Send(SseSendError),
}

#[cfg(feature = "json")]
impl fmt::Display for SseJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseJsonError::Json(e) => write!(f, "SSE event data is not serializable to JSON: {e}"),
            SseJsonError::Event(e) => write!(f, "invalid SSE event name: {e}"),
            SseJsonError::Send(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "json")]
impl std::error::Error for SseJsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SseJsonError::Json(e) => Some(e),
            SseJsonError::Event(e) => Some(e),
            SseJsonError::Send(e) => Some(e),
        }
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for SseJsonError {
    fn from(e: serde_json::Error) -> Self {
        SseJsonError::Json(e)
    }
}

#[cfg(feature = "json")]
impl From<SseError> for SseJsonError {
    fn from(e: SseError) -> Self {
        SseJsonError::Event(e)
    }
}

#[cfg(feature = "json")]
impl From<SseSendError> for SseJsonError {
    fn from(e: SseSendError) -> Self {
        SseJsonError::Send(e)
    }
}

/// An event of type `event_name` (none if empty: the client sees `"message"`) whose data is
/// `value` as compact JSON, which has no line breaks and so takes one `data:` line. Encode it
/// once with [`SseEvent::to_bytes`] to broadcast it.
///
/// ```
/// # use tidings_io::sse::json_event;
/// let event = json_event("price", &serde_json::json!({ "symbol": "T", "last": 12.5 }))?;
/// assert_eq!(
///     &event.to_bytes()[..],
///     b"event: price\ndata: {\"last\":12.5,\"symbol\":\"T\"}\n\n"
/// );
/// # Ok::<(), tidings_io::sse::SseJsonError>(())
/// ```
///
/// # Errors
///
/// [`SseJsonError::Json`] if `value` cannot be serialized, [`SseJsonError::Event`] if
/// `event_name` contains a line break.
#[cfg(feature = "json")]
pub fn json_event<T: serde::Serialize + ?Sized>(
    event_name: &str,
    value: &T,
) -> Result<SseEvent, SseJsonError> {
    let event = SseEvent::data(serde_json::to_string(value)?);
    if event_name.is_empty() {
        Ok(event)
    } else {
        Ok(event.event(event_name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A runtime whose clock moves only when the test says so.
    struct ManualClock(Arc<ClockState>);

    struct ClockState {
        start: Instant,
        elapsed: Mutex<Duration>,
        /// Timers waiting: their deadline and waker.
        sleepers: Mutex<Vec<(Instant, Waker)>>,
        timers: AtomicUsize,
        resets: AtomicUsize,
        spawned: AtomicUsize,
    }

    impl std::ops::Deref for ManualClock {
        type Target = ClockState;

        fn deref(&self) -> &ClockState {
            &self.0
        }
    }

    impl ClockState {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().expect("clock lock")
        }
    }

    impl ManualClock {
        fn leak() -> &'static ManualClock {
            Box::leak(Box::new(ManualClock(Arc::new(ClockState {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
                sleepers: Mutex::new(Vec::new()),
                timers: AtomicUsize::new(0),
                resets: AtomicUsize::new(0),
                spawned: AtomicUsize::new(0),
            }))))
        }

        /// Moves the clock and wakes the timers whose deadline passed.
        fn advance(&self, by: Duration) {
            let now = {
                let mut elapsed = self.elapsed.lock().expect("clock lock");
                *elapsed += by;
                self.start + *elapsed
            };
            let due: Vec<Waker> = {
                let mut sleepers = self.sleepers.lock().expect("sleepers lock");
                let (due, waiting): (Vec<_>, Vec<_>) = mem::take(&mut *sleepers)
                    .into_iter()
                    .partition(|(deadline, _)| *deadline <= now);
                *sleepers = waiting;
                due.into_iter().map(|(_, waker)| waker).collect()
            };
            for waker in due {
                waker.wake();
            }
        }
    }

    struct ManualSleep {
        clock: Arc<ClockState>,
        deadline: Instant,
    }

    impl Sleep for ManualSleep {
        fn reset(&mut self, deadline: Instant) {
            self.clock.resets.fetch_add(1, Ordering::SeqCst);
            self.deadline = deadline;
        }

        fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            if self.clock.now() >= self.deadline {
                return Poll::Ready(());
            }
            self.clock
                .sleepers
                .lock()
                .expect("sleepers lock")
                .push((self.deadline, cx.waker().clone()));
            Poll::Pending
        }
    }

    impl Runtime for ManualClock {
        fn now(&self) -> Instant {
            self.0.now()
        }

        fn sleep_until(&self, deadline: Instant) -> Box<dyn Sleep> {
            self.timers.fetch_add(1, Ordering::SeqCst);
            Box::new(ManualSleep {
                clock: Arc::clone(&self.0),
                deadline,
            })
        }

        fn spawn(&self, _task: crate::runtime::Task) {
            self.spawned.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Counts its wakes.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(Arc::clone(&count)))
    }

    impl CountingWaker {
        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Polls the body once: `Ready(Some(bytes))` for a data frame, `Ready(None)` at the end.
    fn poll_body(body: &mut SseBody, waker: &Waker) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(waker);
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                Poll::Ready(Some(frame.into_data().expect("only data frames")))
            }
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    thread_local! {
        /// Bytes of a frame (queued events are sent joined) not yet handed out by [`next`].
        static CARRY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The next whole event (up to its empty line) of the body, whatever the frames it came in.
    fn next(body: &mut SseBody) -> Bytes {
        loop {
            let event = CARRY.with_borrow_mut(|carry| {
                let end = carry.windows(2).position(|w| w == b"\n\n")? + 2;
                Some(Bytes::from(carry.drain(..end).collect::<Vec<u8>>()))
            });
            if let Some(event) = event {
                return event;
            }
            match poll_body(body, Waker::noop()) {
                Poll::Ready(Some(bytes)) => CARRY.with_borrow_mut(|c| c.extend_from_slice(&bytes)),
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    #[test]
    fn queued_events_go_out_joined_in_one_frame() {
        let (_, tx, mut body) = channel(quiet());
        tx.send(&SseEvent::data("a")).expect("room");
        tx.send(&SseEvent::data("b")).expect("room");
        assert_eq!(
            poll_body(&mut body, Waker::noop()),
            Poll::Ready(Some(Bytes::from_static(b"data: a\n\ndata: b\n\n")))
        );
        // One queued event is handed over as it is, without a copy.
        let shared = SseEvent::data("c").to_bytes();
        tx.send_bytes(shared.clone()).expect("room");
        match poll_body(&mut body, Waker::noop()) {
            Poll::Ready(Some(bytes)) => assert_eq!(bytes.as_ptr(), shared.as_ptr()),
            other => panic!("{other:?}"),
        }
        assert_eq!(tx.queued(), 0);
    }

    fn quiet() -> SseConfig {
        SseConfig::default().heartbeat(None)
    }

    /// The clock, a channel body with `config` on it.
    fn channel(config: SseConfig) -> (&'static ManualClock, SseSender, SseBody) {
        let clock = ManualClock::leak();
        let (tx, body) = SseBody::channel(clock, config);
        (clock, tx, body)
    }

    /// A stream the test feeds: pending while empty and not ended.
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<(VecDeque<SseEvent>, bool)>>);

    impl Script {
        fn push(&self, event: SseEvent) {
            self.0.lock().expect("script lock").0.push_back(event);
        }

        fn end(&self) {
            self.0.lock().expect("script lock").1 = true;
        }
    }

    impl Stream for Script {
        type Item = SseEvent;

        fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<SseEvent>> {
            let mut script = self.0.lock().expect("script lock");
            match script.0.pop_front() {
                Some(event) => Poll::Ready(Some(event)),
                None if script.1 => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    #[test]
    fn events_come_out_in_order_byte_exact_to_the_core_encoder() -> Result<(), SseError> {
        let (_, tx, mut body) = channel(quiet());
        let events = [
            SseEvent::data("first"),
            SseEvent::data("second").event("update")?.id("2")?,
            SseEvent::data(""),
            SseEvent::new().comment("just a note"),
        ];
        for event in &events {
            tx.send(event).expect("room in the queue");
        }
        for event in &events {
            assert_eq!(next(&mut body), event.to_bytes());
        }
        assert!(poll_body(&mut body, Waker::noop()).is_pending());
        Ok(())
    }

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        let (_, tx, mut body) = channel(quiet());
        tx.send(&SseEvent::data("one\ntwo\r\nthree"))
            .expect("room in the queue");
        assert_eq!(
            &next(&mut body)[..],
            b"data: one\ndata: two\ndata: three\n\n"
        );
    }

    #[test]
    fn comments_go_out_as_colon_lines() {
        let (_, tx, mut body) = channel(quiet());
        let comment = SseEvent::new().comment("a\nb");
        tx.send(&comment).expect("room in the queue");
        tx.send_bytes(keepalive()).expect("room in the queue");
        assert_eq!(&next(&mut body)[..], b": a\n: b\n\n");
        assert_eq!(&next(&mut body)[..], b":\n\n");
    }

    #[test]
    fn id_and_retry_fields_and_the_configured_retry_comes_first() -> Result<(), SseError> {
        let (_, tx, mut body) = channel(quiet().retry(Some(Duration::from_millis(2500))));
        assert_eq!(body.size_hint().lower(), b"retry: 2500\n\n".len() as u64);
        tx.send(&SseEvent::data("x").id("7")?.retry_ms(100))
            .expect("room in the queue");
        assert_eq!(&next(&mut body)[..], b"retry: 2500\n\n");
        assert_eq!(&next(&mut body)[..], b"id: 7\nretry: 100\ndata: x\n\n");
        Ok(())
    }

    #[test]
    fn send_bytes_shares_the_buffer_and_ignores_empty_bytes() {
        let (_, tx, mut body) = channel(quiet());
        let shared = SseEvent::data("broadcast").to_bytes();
        tx.send_bytes(Bytes::new())
            .expect("empty bytes are ignored");
        tx.send_bytes(shared.clone()).expect("room in the queue");
        assert_eq!(tx.queued(), 1);
        match poll_body(&mut body, Waker::noop()) {
            Poll::Ready(Some(out)) => assert_eq!(out.as_ptr(), shared.as_ptr(), "not copied"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn a_queued_event_wakes_the_waiting_body() {
        let (_, tx, mut body) = channel(quiet());
        let (count, waker) = counting_waker();
        assert!(poll_body(&mut body, &waker).is_pending());
        assert_eq!(count.wakes(), 0);
        tx.send(&SseEvent::data("x")).expect("room in the queue");
        assert_eq!(count.wakes(), 1);
        assert!(matches!(poll_body(&mut body, &waker), Poll::Ready(Some(_))));
    }

    #[test]
    fn heartbeat_only_after_the_idle_time_and_no_task() {
        let every = Duration::from_secs(15);
        let (clock, _tx, mut body) = channel(SseConfig::default().heartbeat(Some(every)));
        let (count, waker) = counting_waker();
        assert!(poll_body(&mut body, &waker).is_pending());
        clock.advance(every - Duration::from_millis(1));
        assert_eq!(count.wakes(), 0, "not yet");
        assert!(poll_body(&mut body, &waker).is_pending());
        clock.advance(Duration::from_millis(1));
        assert!(count.wakes() >= 1, "the timer wakes the body");
        assert_eq!(&next(&mut body)[..], b":\n\n");
        // Re-armed: the next one is one full interval later.
        assert!(poll_body(&mut body, &waker).is_pending());
        clock.advance(every - Duration::from_millis(1));
        assert!(poll_body(&mut body, &waker).is_pending());
        clock.advance(Duration::from_millis(1));
        assert_eq!(&next(&mut body)[..], b":\n\n");
        assert_eq!(clock.timers.load(Ordering::SeqCst), 1, "one timer per body");
        assert_eq!(clock.spawned.load(Ordering::SeqCst), 0, "no task per body");
    }

    #[test]
    fn heartbeat_is_rearmed_after_data() {
        let every = Duration::from_secs(15);
        let (clock, tx, mut body) = channel(SseConfig::default().heartbeat(Some(every)));
        let (count, waker) = counting_waker();
        assert!(poll_body(&mut body, &waker).is_pending());
        clock.advance(Duration::from_secs(10));
        tx.send(&SseEvent::data("x")).expect("room in the queue");
        assert_eq!(&next(&mut body)[..], b"data: x\n\n");
        assert!(poll_body(&mut body, &waker).is_pending());
        // The timer armed at the start fires at 15 s, but data went out at 10 s.
        let before = count.wakes();
        clock.advance(Duration::from_secs(5));
        assert!(count.wakes() > before);
        assert!(
            poll_body(&mut body, &waker).is_pending(),
            "no keep-alive at 15 s"
        );
        clock.advance(Duration::from_secs(10) - Duration::from_millis(1));
        assert!(
            poll_body(&mut body, &waker).is_pending(),
            "none before 25 s"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(&next(&mut body)[..], b":\n\n");
    }

    #[test]
    fn timer_is_not_reset_per_event() {
        let (clock, tx, mut body) = channel(SseConfig::default());
        for _ in 0..100 {
            tx.send(&SseEvent::data("x")).expect("room in the queue");
            next(&mut body);
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(clock.resets.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn no_heartbeat_when_turned_off() {
        let (clock, _tx, mut body) = channel(quiet());
        assert!(poll_body(&mut body, Waker::noop()).is_pending());
        clock.advance(Duration::from_secs(3600));
        assert!(poll_body(&mut body, Waker::noop()).is_pending());
        assert_eq!(clock.timers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn full_at_the_event_bound_and_no_growth() {
        let (_, tx, mut body) = channel(quiet().queue_events(3));
        for i in 0..3 {
            tx.send(&SseEvent::data(i.to_string()))
                .expect("room in the queue");
        }
        for _ in 0..10 {
            assert_eq!(tx.send(&SseEvent::data("more")), Err(SseSendError::Full));
            assert_eq!(
                tx.send_bytes(SseEvent::data("more").to_bytes()),
                Err(SseSendError::Full)
            );
        }
        assert_eq!(tx.queued(), 3);
        assert_eq!(tx.queued_bytes(), 3 * b"data: 0\n\n".len());
        assert_eq!(&next(&mut body)[..], b"data: 0\n\n");
        tx.send(&SseEvent::data("3")).expect("room again");
        for i in 1..4 {
            assert_eq!(next(&mut body), SseEvent::data(i.to_string()).to_bytes());
        }
        assert_eq!((tx.queued(), tx.queued_bytes()), (0, 0));
    }

    #[test]
    fn full_at_the_byte_bound_but_one_big_event_fits_an_empty_queue() {
        let (_, tx, mut body) = channel(quiet().queue_bytes(20));
        let big = SseEvent::data("x".repeat(100));
        tx.send(&big)
            .expect("an empty queue takes one event of any size");
        assert_eq!(tx.send(&SseEvent::data("y")), Err(SseSendError::Full));
        assert_eq!(next(&mut body), big.to_bytes());
        let small = SseEvent::data("y"); // 9 bytes
        tx.send(&small).expect("room");
        tx.send(&small).expect("room: 18 bytes");
        assert_eq!(tx.send(&small), Err(SseSendError::Full), "27 > 20");
        assert_eq!(tx.queued_bytes(), 18);
    }

    #[test]
    fn dropping_the_body_closes_the_stream_for_the_senders() {
        let (_, tx, body) = channel(quiet());
        tx.send(&SseEvent::data("never read")).expect("room");
        let mut closed = tx.closed();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut closed).poll(&mut cx).is_pending());
        assert!(!tx.is_closed());
        drop(body);
        assert_eq!(count.wakes(), 1, "the closed() future is woken");
        assert!(Pin::new(&mut closed).poll(&mut cx).is_ready());
        assert!(tx.is_closed());
        assert_eq!(tx.send(&SseEvent::data("x")), Err(SseSendError::Closed));
        assert_eq!(tx.send_bytes(Bytes::new()), Err(SseSendError::Closed));
        assert_eq!((tx.queued(), tx.queued_bytes()), (0, 0), "queue freed");
        // A closed() made afterwards is ready at once.
        assert!(Pin::new(&mut tx.closed()).poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_closed_futures_leave_no_waiter_behind() {
        let (_, tx, _body) = channel(quiet());
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut closed = tx.closed();
            assert!(Pin::new(&mut closed).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut closed).poll(&mut cx).is_pending());
        }
        assert!(tx.shared.lock().closed_waiters.is_empty());
    }

    #[test]
    fn close_ends_the_stream_after_the_queued_events() {
        let (_, tx, mut body) = channel(quiet());
        let other = tx.clone();
        let mut closed = other.closed();
        tx.send(&SseEvent::data("a")).expect("room");
        tx.send(&SseEvent::data("b")).expect("room");
        assert!(!body.is_end_stream());
        tx.close();
        assert!(
            Pin::new(&mut closed)
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
        assert!(other.is_closed());
        assert_eq!(other.send(&SseEvent::data("c")), Err(SseSendError::Closed));
        assert_eq!(body.size_hint().exact(), Some(18));
        assert_eq!(&next(&mut body)[..], b"data: a\n\n");
        assert_eq!(&next(&mut body)[..], b"data: b\n\n");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(poll_body(&mut body, Waker::noop()), Poll::Ready(None));
        assert_eq!(poll_body(&mut body, Waker::noop()), Poll::Ready(None));
    }

    #[test]
    fn dropping_every_sender_ends_the_body_after_draining() {
        let (_, tx, mut body) = channel(quiet());
        let tx2 = tx.clone();
        tx.send(&SseEvent::data("a")).expect("room");
        tx2.send(&SseEvent::data("b")).expect("room");
        let (count, waker) = counting_waker();
        assert_eq!(&next(&mut body)[..], b"data: a\n\n");
        assert_eq!(&next(&mut body)[..], b"data: b\n\n");
        assert!(poll_body(&mut body, &waker).is_pending());
        tx2.send(&SseEvent::data("c")).expect("room");
        assert_eq!(count.wakes(), 1);
        drop(tx);
        assert!(!body.is_end_stream(), "one sender left, one event queued");
        drop(tx2);
        assert!(!body.is_end_stream(), "one event queued");
        assert_eq!(body.size_hint().exact(), Some(9));
        assert_eq!(&next(&mut body)[..], b"data: c\n\n");
        assert!(body.is_end_stream());
        assert_eq!(poll_body(&mut body, &waker), Poll::Ready(None));
    }

    #[test]
    fn dropping_the_last_sender_wakes_the_waiting_body() {
        let (_, tx, mut body) = channel(quiet());
        let (count, waker) = counting_waker();
        assert!(poll_body(&mut body, &waker).is_pending());
        drop(tx);
        assert_eq!(count.wakes(), 1);
        assert_eq!(poll_body(&mut body, &waker), Poll::Ready(None));
    }

    #[test]
    fn from_stream_sends_each_event_and_ends_with_the_stream() {
        let clock = ManualClock::leak();
        let script = Script::default();
        let config = SseConfig::default()
            .heartbeat(Some(Duration::from_secs(5)))
            .retry(Some(Duration::from_secs(1)));
        let mut body = SseBody::from_stream(clock, script.clone(), config);
        script.push(SseEvent::data("one"));
        assert_eq!(&next(&mut body)[..], b"retry: 1000\n\n");
        assert_eq!(&next(&mut body)[..], b"data: one\n\n");
        assert!(poll_body(&mut body, Waker::noop()).is_pending());
        clock.advance(Duration::from_secs(5));
        assert_eq!(
            &next(&mut body)[..],
            b":\n\n",
            "heartbeat while the stream pends"
        );
        script.push(SseEvent::data("two\nlines"));
        script.end();
        assert!(!body.is_end_stream());
        assert_eq!(&next(&mut body)[..], b"data: two\ndata: lines\n\n");
        assert_eq!(poll_body(&mut body, Waker::noop()), Poll::Ready(None));
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn size_hint_is_a_lower_bound_while_senders_may_send() {
        let (_, tx, body) = channel(quiet());
        tx.send(&SseEvent::data("a")).expect("room");
        let hint = body.size_hint();
        assert_eq!((hint.lower(), hint.upper()), (9, None));
    }

    #[test]
    fn response_has_status_200_and_the_three_headers() {
        let (_, _tx, body) = channel(quiet());
        let response = body.into_response();
        assert_eq!(response.status(), http::StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[CONTENT_TYPE], "text/event-stream");
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_eq!(&response_headers(), headers);
    }

    #[test]
    fn config_defaults_and_clamps() {
        let config = SseConfig::default();
        assert_eq!(config.get_heartbeat(), Some(Duration::from_secs(15)));
        assert_eq!(config.get_queue_events(), 256);
        assert_eq!(config.get_queue_bytes(), 1 << 20);
        assert_eq!(config.get_retry(), None);
        let clamped = config
            .heartbeat(Some(Duration::ZERO))
            .queue_events(0)
            .queue_bytes(0);
        assert_eq!(clamped.get_heartbeat(), Some(MIN_HEARTBEAT));
        assert_eq!(
            (clamped.get_queue_events(), clamped.get_queue_bytes()),
            (1, 1)
        );
    }

    #[test]
    fn a_heartbeat_beyond_the_clock_range_is_off_not_a_panic() {
        let (clock, _tx, mut body) = channel(SseConfig::default().heartbeat(Some(Duration::MAX)));
        assert!(poll_body(&mut body, Waker::noop()).is_pending());
        assert_eq!(clock.timers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn errors_display() {
        assert_eq!(SseSendError::Closed.to_string(), "SSE stream closed");
        assert!(SseSendError::Full.is_full() && SseSendError::Closed.is_closed());
    }

    #[test]
    fn body_and_sender_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SseBody>();
        check::<SseSender>();
        check::<Closed>();
        check::<SseSendError>();
    }

    #[cfg(feature = "json")]
    #[test]
    fn send_json_encodes_one_data_line() {
        let (_, tx, mut body) = channel(quiet());
        tx.send_json("user", &serde_json::json!({ "name": "a\nb" }))
            .expect("serializable");
        tx.send_json("", &[1, 2]).expect("serializable");
        assert_eq!(
            &next(&mut body)[..],
            b"event: user\ndata: {\"name\":\"a\\nb\"}\n\n"
        );
        assert_eq!(&next(&mut body)[..], b"data: [1,2]\n\n");
        assert!(matches!(
            tx.send_json("bad\nname", &1),
            Err(SseJsonError::Event(SseError::LineBreakInEvent))
        ));
        tx.close();
        assert!(matches!(
            tx.send_json("x", &1),
            Err(SseJsonError::Send(SseSendError::Closed))
        ));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_event_refuses_values_serde_cannot_encode() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1); // JSON object keys must be strings
        assert!(matches!(json_event("x", &map), Err(SseJsonError::Json(_))));
    }
}
