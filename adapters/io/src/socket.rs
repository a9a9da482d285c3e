//! The application-facing WebSocket: `recv`/`send`, `split` halves, `Stream` and `Sink`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tidings_core::{CloseCode, CloseOutcome, EncodedFrame, Event, Message};

use crate::engine::{Direction, Engine, Outgoing};
use crate::{Config, Error, Outbox, OutboxLimits};

// ---- the handles ----------------------------------------------------------------------------

/// Closes a connection from outside the task that owns it (a server's graceful shutdown, an admin
/// kick). It does not keep the connection alive: once every handle is dropped it does nothing.
#[derive(Clone)]
pub struct Closer(Weak<Engine>);

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Closer {
    /// Starts the close handshake with `code` and `reason` (after what is already queued). The
    /// owner's `recv` then ends once the peer answers. Returns `false` if the connection was
    /// already closing or gone.
    ///
    /// # Errors
    ///
    /// [`Error::Local`] for a code that may not be sent or a reason longer than 123 bytes.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<bool, Error> {
        match self.0.upgrade() {
            Some(engine) => engine.close(code, reason),
            None => Ok(false),
        }
    }

    /// Whether the connection is over (or all its handles are gone).
    pub fn is_closed(&self) -> bool {
        self.0.upgrade().is_none_or(|engine| engine.is_closed())
    }
}

/// One application handle on the engine; counts towards keeping the connection open.
struct Handle(Arc<Engine>);

impl Handle {
    fn new(engine: Arc<Engine>) -> Self {
        engine.add_handle();
        Handle(engine)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.drop_handle();
    }
}

/// The receiving half of a [`WebSocket`], from [`WebSocket::split`].
///
/// It can be moved to another task than its [`WriteHalf`]; the two never hold a lock across an
/// `.await`.
pub struct ReadHalf {
    handle: Handle,
    registered: bool,
}

/// The sending half of a [`WebSocket`], from [`WebSocket::split`].
pub struct WriteHalf {
    handle: Handle,
    registered: bool,
}

/// A WebSocket connection over one of the runtime adapters.
///
/// The connection is driven by two parties: the application's calls (`recv` reads, `send` writes)
/// and a small driver task spawned with the connection, which takes over whenever the application
/// is not waiting in `recv`/`send`: it answers pings, sends keepalive pings, enforces the pong,
/// idle, write and close timeouts, and flushes queued messages — so all of these progress while
/// the application only sends, or is busy elsewhere. Socket readiness goes to whichever party
/// waits, so while the application keeps up the driver is not woken at all; see the crate docs for
/// what it costs.
///
/// Messages received while the application is not in `recv` wait in a queue bounded by
/// [`Config::read_high_water`](crate::Config::read_high_water); output is bounded by
/// [`Config::write_high_water`](crate::Config::write_high_water), above which `send` waits.
///
/// Dropping every handle without [`close`](Self::close) starts a close handshake with 1001
/// (going away) in the driver, which flushes what is queued first.
pub struct WebSocket {
    read: ReadHalf,
    write: WriteHalf,
}

impl std::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHalf").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHalf")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("subprotocol", &self.subprotocol())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl WebSocket {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        WebSocket {
            read: ReadHalf {
                handle: Handle::new(engine.clone()),
                registered: false,
            },
            write: WriteHalf {
                handle: Handle::new(engine),
                registered: false,
            },
        }
    }

    /// The engine, for its own tests.
    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.read.handle.0
    }

    /// Splits into a reader and a writer that can be used from two tasks at once.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        (self.read, self.write)
    }

    /// Puts the halves of the same connection back together, or returns them if they are not.
    pub fn reunite(read: ReadHalf, write: WriteHalf) -> Result<Self, (ReadHalf, WriteHalf)> {
        if Arc::ptr_eq(&read.handle.0, &write.handle.0) {
            Ok(WebSocket { read, write })
        } else {
            Err((read, write))
        }
    }

    /// The next data message; `None` once the connection has closed cleanly, `Some(Err(_))`
    /// once if it failed (protocol error, timeout, transport error; [`Error::close_code`]).
    /// Then [`close_outcome`](Self::close_outcome) tells how it ended: the peer's close code and
    /// reason, who closed, whether it was clean.
    ///
    /// Cancellation-safe: dropping the future before it completes loses nothing.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.read.recv().await
    }

    /// The next event of any kind (pings, pongs, the peer's close frame, fragments in streaming
    /// mode, the final outcome); `None` after [`Event::Closed`]. Cancellation-safe.
    pub async fn recv_event(&mut self) -> Option<Event> {
        self.read.recv_event().await
    }

    /// Sends a message: waits while the write buffer is above its high-water mark, then queues the
    /// message and writes it (see [`WriteHalf::send`]).
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.write.send(message).await
    }

    /// Sends a frame encoded once for many connections; see [`WriteHalf::send_encoded`].
    pub async fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.write.send_encoded(frame).await
    }

    /// A bounded, non-blocking sender into this connection's output, for broadcasts: see
    /// [`Outbox`].
    pub fn outbox(&self, limits: OutboxLimits) -> Outbox {
        self.write.outbox(limits)
    }

    /// See [`WriteHalf::accepts_deflated`].
    pub fn accepts_deflated(&self, window_bits: u8) -> bool {
        self.write.accepts_deflated(window_bits)
    }

    /// The limits and timers in force; see [`WriteHalf::config`].
    pub fn config(&self) -> Config {
        self.write.config()
    }

    /// Applies `config`'s limits and timers to this live connection; see
    /// [`WriteHalf::set_config`].
    pub fn set_config(&self, config: &Config) {
        self.write.set_config(config);
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.write.send_text(text).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.write.send_binary(data).await
    }

    /// Waits until everything queued is written to the transport.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.write.flush().await
    }

    /// Sends a ping and resolves with the round-trip time when its pong arrives (RFC 6455 §5.5.2).
    pub async fn ping(&mut self) -> Result<Duration, Error> {
        self.write.ping().await
    }

    /// Starts the close handshake with `code` and `reason` and waits until it completes (or the
    /// close timeout ends it); returns the outcome. Messages queued before are sent first.
    /// Messages the peer sends meanwhile stay available to `recv`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseOutcome, Error> {
        self.write.close(code, reason).await
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.read.handle.0.protocol()
    }

    /// The extensions agreed in the handshake (the `Sec-WebSocket-Extensions` response value,
    /// e.g. `permessage-deflate; server_no_context_takeover`), if any.
    pub fn extensions(&self) -> Option<&str> {
        self.read.handle.0.extensions()
    }

    /// A [`Closer`] that can start the close handshake from another task.
    pub fn closer(&self) -> Closer {
        self.write.closer()
    }

    /// Whether the connection is over (the close handshake completed, or it failed).
    pub fn is_closed(&self) -> bool {
        self.write.is_closed()
    }

    /// How the connection ended, once it has: the close code and reason received (RFC 6455
    /// §7.1.5: 1005 for a close frame without a code, 1006 when none arrived), the frame sent,
    /// who started the close, whether it was clean, and the error if it failed.
    pub fn close_outcome(&self) -> Option<CloseOutcome> {
        self.write.close_outcome()
    }

    /// Output bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.write.queued_bytes()
    }

    /// Sends `value` as a JSON text message.
    #[cfg(feature = "json")]
    pub async fn send_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Error> {
        self.write.send_json(value).await
    }

    /// Receives the next message and parses it as JSON; `None` as for [`recv`](Self::recv).
    #[cfg(feature = "json")]
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        self.read.recv_json().await
    }
}

impl ReadHalf {
    /// See [`WebSocket::recv`].
    pub fn recv(&mut self) -> Recv<'_> {
        Recv { half: self }
    }

    /// See [`WebSocket::recv_event`].
    pub fn recv_event(&mut self) -> RecvEvent<'_> {
        RecvEvent { half: self }
    }

    /// See [`WebSocket::recv_json`].
    #[cfg(feature = "json")]
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        let message = match self.recv().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        Some(serde_json::from_slice(message.as_bytes()).map_err(Error::from))
    }

    /// Whether this half and `write` belong to the same connection.
    pub fn is_pair_of(&self, write: &WriteHalf) -> bool {
        Arc::ptr_eq(&self.handle.0, &write.handle.0)
    }

    /// How the connection ended, once it has: after [`recv`](Self::recv) returned `None` (a
    /// clean close, whatever its code) or its one error, the close code and reason received,
    /// the frame sent, who started the close and whether it was clean. The same as
    /// [`WebSocket::close_outcome`], for a reader whose writer lives elsewhere.
    pub fn close_outcome(&self) -> Option<CloseOutcome> {
        self.handle.0.close_outcome()
    }
}

impl Drop for ReadHalf {
    fn drop(&mut self) {
        if self.registered {
            self.handle.0.unregister(Direction::Read);
        }
    }
}

impl WriteHalf {
    /// Sends a message: waits while more than the write high-water mark is queued (a slow
    /// reader blocks the sender instead of growing memory), queues the message, and writes it at
    /// once — unless more received input is already waiting for the application, in which case
    /// the write joins the next batch (flushed before the next `recv` waits, or by the driver).
    ///
    /// Errors: [`Error::Local`] for misuse (closing, too large, invalid close code…),
    /// [`Error::Io`] if the transport failed.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        SendFuture {
            half: self,
            item: Some(Outgoing::Message(message)),
        }
        .await
    }

    /// Sends a frame encoded once for many connections ([`EncodedFrame::new`], or
    /// [`EncodedFrame::with_deflate`] to compress it once): a server connection queues its shared
    /// bytes without copying (the compressed form where this connection's permessage-deflate can
    /// take it), a client connection masks a copy. Waits like [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub async fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        SendFuture {
            half: self,
            item: Some(Outgoing::Encoded(frame)),
        }
        .await
    }

    /// A bounded, non-blocking sender into this connection's output, for broadcasts: see
    /// [`Outbox`].
    pub fn outbox(&self, limits: OutboxLimits) -> Outbox {
        Outbox::new(self.handle.0.clone(), limits)
    }

    /// Whether [`send_encoded`](Self::send_encoded) and [`Outbox::try_send_encoded`] send the
    /// compressed form of a frame compressed once with a `window_bits` window
    /// ([`EncodedFrame::with_deflate`]): this is a server connection whose permessage-deflate
    /// has no context takeover and a window at least that large.
    pub fn accepts_deflated(&self, window_bits: u8) -> bool {
        self.handle.0.accepts_deflated(window_bits)
    }

    /// The limits and timers in force on this connection, as a [`Config`] (the handshake
    /// settings, which no longer apply, are the defaults).
    pub fn config(&self) -> Config {
        self.handle.0.config()
    }

    /// Applies `config`'s limits and timers to this live connection (message and frame size
    /// limits, ping interval, pong, idle, write and close timeouts, high-water marks): for
    /// example a hub's own settings on a connection accepted with a server's. The keepalive and
    /// idle timers restart now.
    pub fn set_config(&self, config: &Config) {
        self.handle.0.set_config(config);
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.send(Message::text(text.into())).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send(Message::binary(data)).await
    }

    /// Sends `value` as a JSON text message.
    #[cfg(feature = "json")]
    pub async fn send_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Error> {
        let text = serde_json::to_string(value)?;
        self.send(Message::text(text)).await
    }

    /// Waits until everything queued is written to the transport.
    pub async fn flush(&mut self) -> Result<(), Error> {
        FlushFuture { half: self }.await
    }

    /// See [`WebSocket::ping`].
    pub async fn ping(&mut self) -> Result<Duration, Error> {
        self.handle.0.ping()?;
        EventWait {
            engine: &self.handle.0,
            poll: Engine::poll_pong,
        }
        .await
    }

    /// See [`WebSocket::close`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseOutcome, Error> {
        if let Some(outcome) = self.handle.0.close_outcome() {
            return Ok(outcome);
        }
        self.handle.0.close(code, reason)?;
        Ok(EventWait {
            engine: &self.handle.0,
            poll: Engine::poll_closed,
        }
        .await)
    }

    /// A [`Closer`] that can start the close handshake from another task.
    pub fn closer(&self) -> Closer {
        Closer(Arc::downgrade(&self.handle.0))
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.handle.0.protocol()
    }

    /// The extensions agreed in the handshake, if any.
    pub fn extensions(&self) -> Option<&str> {
        self.handle.0.extensions()
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.handle.0.is_closed()
    }

    /// How the connection ended, once it has.
    pub fn close_outcome(&self) -> Option<CloseOutcome> {
        self.handle.0.close_outcome()
    }

    /// Output bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.handle.0.queued_bytes()
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        if self.registered {
            self.handle.0.unregister(Direction::Write);
        }
    }
}

// ---- futures ----------------------------------------------------------------------------------

/// The future of [`ReadHalf::recv`]; cancellation-safe.
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a> {
    half: &'a mut ReadHalf,
}

impl Future for Recv<'_> {
    type Output = Option<Result<Message, Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let half = &mut *self.get_mut().half;
        half.handle.0.poll_recv(cx, &mut half.registered)
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        if self.half.registered {
            self.half.registered = false;
            self.half.handle.0.unregister(Direction::Read);
        }
    }
}

/// The future of [`ReadHalf::recv_event`]; cancellation-safe.
#[must_use = "futures do nothing unless polled"]
pub struct RecvEvent<'a> {
    half: &'a mut ReadHalf,
}

impl Future for RecvEvent<'_> {
    type Output = Option<Event>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let half = &mut *self.get_mut().half;
        half.handle.0.poll_event(cx, &mut half.registered)
    }
}

impl Drop for RecvEvent<'_> {
    fn drop(&mut self) {
        if self.half.registered {
            self.half.registered = false;
            self.half.handle.0.unregister(Direction::Read);
        }
    }
}

/// Sends `item` once there is room; dropped before, it sends nothing.
struct SendFuture<'a> {
    half: &'a mut WriteHalf,
    item: Option<Outgoing<'a>>,
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let half = &mut *this.half;
        half.handle
            .0
            .poll_send(cx, &mut half.registered, &mut this.item)
    }
}

impl Drop for SendFuture<'_> {
    fn drop(&mut self) {
        if self.half.registered {
            self.half.registered = false;
            self.half.handle.0.unregister(Direction::Write);
        }
    }
}

struct FlushFuture<'a> {
    half: &'a mut WriteHalf,
}

impl Future for FlushFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let half = &mut *self.get_mut().half;
        half.handle.0.poll_flush(cx, &mut half.registered)
    }
}

impl Drop for FlushFuture<'_> {
    fn drop(&mut self) {
        if self.half.registered {
            self.half.registered = false;
            self.half.handle.0.unregister(Direction::Write);
        }
    }
}

/// Waits in `poll` for an event of the connection (a pong, the close's outcome).
struct EventWait<'a, T> {
    engine: &'a Engine,
    poll: fn(&Engine, &mut Context<'_>) -> Poll<T>,
}

impl<T> Future for EventWait<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        (self.poll)(self.engine, cx)
    }
}

impl<T> Drop for EventWait<'_, T> {
    fn drop(&mut self) {
        self.engine.cancel_wait();
    }
}

// ---- Stream and Sink --------------------------------------------------------------------------

impl futures_core::Stream for ReadHalf {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let half = self.get_mut();
        half.handle.0.poll_recv(cx, &mut half.registered)
    }
}

impl futures_core::Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().read).poll_next(cx)
    }
}

impl futures_sink::Sink<Message> for WriteHalf {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let half = self.get_mut();
        half.handle.0.poll_send(cx, &mut half.registered, &mut None)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.handle.0.send_now(Outgoing::Message(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let half = self.get_mut();
        half.handle.0.poll_flush(cx, &mut half.registered)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let half = self.get_mut();
        // Already closing (or gone) is fine here: the flush below tells the rest.
        let _ = half.handle.0.close(CloseCode::NORMAL, "");
        half.handle.0.poll_flush(cx, &mut half.registered)
    }
}

impl futures_sink::Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().write).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().write).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().write).poll_close(cx)
    }
}
