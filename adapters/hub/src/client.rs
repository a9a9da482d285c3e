//! A client of a hub: its identity, its state, and sending to it.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tidings_core::{CloseCode, CloseOutcome, EncodedFrame, Message, Utf8Bytes};
use tidings_io::sse::{SseEvent, SseSendError, SseSender};
use tidings_io::{Outbox, OutboxError, WebSocket};

use crate::hub::HubInner;
use crate::id::ClientId;
use crate::{HubConfig, HubError};

/// The most live events an SSE client holds back while its history is replayed from a backend.
pub(crate) const MAX_HELD: usize = 4096;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a WebSocket becomes a client: its ID (generated when not given) and the request data
/// the application keeps with it.
///
/// ```
/// # use tidings_hub::ClientOptions;
/// struct User(String);
/// let options = ClientOptions::new().id("alice-1").data(User("alice".into()));
/// ```
#[derive(Default, Clone)]
pub struct ClientOptions {
    pub(crate) id: Option<ClientId>,
    pub(crate) data: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("id", &self.id)
            .field("data", &self.data.is_some())
            .finish()
    }
}

impl ClientOptions {
    /// Options with a generated ID and no data.
    pub fn new() -> Self {
        ClientOptions::default()
    }

    /// The client's ID. Registering a second client with the ID of a connected one fails with
    /// [`HubError::DuplicateClient`].
    pub fn id(mut self, id: impl Into<ClientId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// What the application keeps from the upgrade request (the user a token named, the
    /// query's parameters…), read back with [`Client::data`].
    pub fn data<T: Any + Send + Sync>(mut self, data: T) -> Self {
        self.data = Some(Arc::new(data));
        self
    }
}

pub(crate) struct ClientInner {
    pub(crate) id: ClientId,
    protocol: Option<String>,
    extensions: Option<String>,
    data: Option<Arc<dyn Any + Send + Sync>>,
    store: Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>,
    pub(crate) sink: Sink,
    pub(crate) hub: Weak<HubInner>,
    /// Broadcasts compressed once are sent compressed to it.
    pub(crate) takes_deflated: bool,
    slow_code: CloseCode,
    /// Set when the hub has removed it.
    gone: AtomicBool,
    outcome: Mutex<Option<CloseOutcome>>,
    /// An SSE client's live events held back while its history is fetched from a backend
    /// ([`Backend::history`](crate::backend::Backend::history)); `None` when not replaying.
    held: Mutex<Option<Vec<(u64, Bytes)>>>,
}

/// Where a client's messages go: a WebSocket's outbox, or a Server-Sent Events stream.
pub(crate) enum Sink {
    WebSocket(Outbox),
    Sse(SseSender),
}

/// A connected client of a [`Hub`](crate::Hub): a cheap handle (clone it freely) on one
/// WebSocket that the hub runs, or one Server-Sent Events subscriber
/// ([`Hub::subscribe_sse`](crate::Hub::subscribe_sse)).
///
/// An SSE client receives text messages as `data:` events, JSON events as named events
/// (`event: <name>`), and room broadcasts with an `id:` for `Last-Event-ID` replay; binary
/// messages cannot go over SSE ([`HubError::NotSupported`]) and binary broadcasts skip it.
///
/// Sending ([`send`](Self::send) and the typed variants) never waits: the message is queued
/// into the connection's bounded outbox (see [`HubConfig::outbox`](crate::HubConfig::outbox)),
/// in order with the hub's broadcasts. A client that does not read fast enough to keep its
/// outbox below the bound is disconnected, with close code
/// [`HubConfig::slow_client_code`](crate::HubConfig::slow_client_code).
#[derive(Clone)]
pub struct Client(pub(crate) Arc<ClientInner>);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.0.id)
            .field("subprotocol", &self.0.protocol)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Client {}

impl Client {
    /// A client on `ws`, of the hub `hub` with its `config`.
    pub(crate) fn new(
        id: ClientId,
        ws: &WebSocket,
        data: Option<Arc<dyn Any + Send + Sync>>,
        hub: Weak<HubInner>,
        config: &HubConfig,
        takes_deflated: bool,
    ) -> Self {
        Client(Arc::new(ClientInner {
            id,
            protocol: ws.subprotocol().map(str::to_owned),
            extensions: ws.extensions().map(str::to_owned),
            data,
            store: Mutex::new(HashMap::new()),
            sink: Sink::WebSocket(ws.outbox(config.get_outbox())),
            hub,
            takes_deflated,
            slow_code: config.get_slow_client_code(),
            gone: AtomicBool::new(false),
            outcome: Mutex::new(None),
            held: Mutex::new(None),
        }))
    }

    /// A Server-Sent Events client sending through `sender`.
    pub(crate) fn new_sse(
        id: ClientId,
        sender: SseSender,
        data: Option<Arc<dyn Any + Send + Sync>>,
        hub: Weak<HubInner>,
        config: &HubConfig,
    ) -> Self {
        Client(Arc::new(ClientInner {
            id,
            protocol: None,
            extensions: None,
            data,
            store: Mutex::new(HashMap::new()),
            sink: Sink::Sse(sender),
            hub,
            takes_deflated: false,
            slow_code: config.get_slow_client_code(),
            gone: AtomicBool::new(false),
            outcome: Mutex::new(None),
            held: Mutex::new(None),
        }))
    }

    /// Whether this client is a Server-Sent Events subscriber (not a WebSocket).
    pub fn is_sse(&self) -> bool {
        matches!(self.0.sink, Sink::Sse(_))
    }

    // ---- identity and state -------------------------------------------------------------

    /// The client's ID.
    pub fn id(&self) -> &ClientId {
        &self.0.id
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.0.protocol.as_deref()
    }

    /// The extensions agreed in the handshake (e.g. `permessage-deflate; …`), if any.
    pub fn extensions(&self) -> Option<&str> {
        self.0.extensions.as_deref()
    }

    /// The request data given with [`ClientOptions::data`], if it is a `T`.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.0.data.as_deref()?.downcast_ref()
    }

    /// Stores `value` under `key` in the client's own key/value store (replacing what was
    /// there). Values of any type may be stored; [`get`](Self::get) asks for a type.
    pub fn set<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        lock(&self.0.store).insert(key.into(), Box::new(value));
    }

    /// A copy of the value under `key`, if there is one and it is a `T`.
    pub fn get<T: Any + Clone>(&self, key: &str) -> Option<T> {
        lock(&self.0.store).get(key)?.downcast_ref::<T>().cloned()
    }

    /// Runs `f` on the value under `key` (if it is a `T`) without copying it, e.g. to update
    /// it in place.
    pub fn with<T: Any, R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut store = lock(&self.0.store);
        store.get_mut(key)?.downcast_mut::<T>().map(f)
    }

    /// Removes the value under `key`; returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        lock(&self.0.store).remove(key).is_some()
    }

    /// Whether the client is still registered with its hub and its connection open.
    pub fn is_connected(&self) -> bool {
        !self.0.gone.load(Ordering::Acquire)
            && match &self.0.sink {
                Sink::WebSocket(outbox) => !outbox.is_closed(),
                Sink::Sse(sender) => !sender.is_closed(),
            }
    }

    /// How the connection ended, once the hub has seen it end.
    pub fn close_outcome(&self) -> Option<CloseOutcome> {
        lock(&self.0.outcome).clone()
    }

    /// Messages (events, for an SSE client) queued to the client and not yet written to its
    /// socket.
    pub fn queued_messages(&self) -> usize {
        match &self.0.sink {
            Sink::WebSocket(outbox) => outbox.queued_messages(),
            Sink::Sse(sender) => sender.queued(),
        }
    }

    pub(crate) fn mark_gone(&self, outcome: Option<CloseOutcome>) {
        *lock(&self.0.outcome) = outcome;
        self.0.gone.store(true, Ordering::Release);
    }

    pub(crate) fn hub_inner(&self) -> Result<Arc<HubInner>, HubError> {
        self.0.hub.upgrade().ok_or(HubError::HubClosed)
    }

    /// The hub the client belongs to (for a handler that broadcasts), while the hub exists.
    pub fn hub(&self) -> Option<crate::Hub> {
        self.0.hub.upgrade().map(|inner| crate::Hub { inner })
    }

    // ---- sending --------------------------------------------------------------------------

    /// Queues `message` to this client (never waits).
    ///
    /// # Errors
    ///
    /// [`HubError::ConnectionClosed`] once the connection is closing;
    /// [`HubError::SlowClient`] if the outbox was full, in which case the client is being
    /// disconnected.
    ///
    /// An SSE client receives a text message as one `data:` event (type `message`); a binary
    /// message is refused with [`HubError::NotSupported`].
    pub fn send(&self, message: Message) -> Result<(), HubError> {
        match &self.0.sink {
            Sink::WebSocket(outbox) => self.sent(outbox.try_send(message)),
            Sink::Sse(sender) => match message.as_text() {
                Some(text) => self.sse_sent(sender.send(&SseEvent::data(text))),
                None => Err(HubError::NotSupported(
                    "binary messages cannot be sent over Server-Sent Events",
                )),
            },
        }
    }

    /// Queues a text message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), HubError> {
        self.send(Message::text(text))
    }

    /// Queues a binary message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), HubError> {
        self.send(Message::binary(data))
    }

    /// Queues a frame encoded once for many clients (its shared bytes, without copying).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    /// An SSE client refuses it with [`HubError::NotSupported`].
    pub fn send_encoded(&self, frame: &EncodedFrame) -> Result<(), HubError> {
        match &self.0.sink {
            Sink::WebSocket(outbox) => self.sent(outbox.try_send_encoded(frame)),
            Sink::Sse(_) => Err(HubError::NotSupported(
                "WebSocket frames cannot be sent over Server-Sent Events",
            )),
        }
    }

    /// Queues broadcast event `id`, already encoded, to an SSE client; held back (at most
    /// [`MAX_HELD`] events, beyond which the client is too slow) while its history is replayed.
    pub(crate) fn send_sse_event(&self, id: u64, encoded: Bytes) -> Result<(), HubError> {
        let mut held = lock(&self.0.held);
        match held.as_mut() {
            Some(events) if events.len() >= MAX_HELD => {
                drop(held);
                self.disconnect_slow();
                Err(HubError::SlowClient)
            }
            Some(events) => {
                events.push((id, encoded));
                Ok(())
            }
            None => self.send_sse_encoded(encoded),
        }
    }

    /// Holds back this SSE client's live events until [`release_sse`](Self::release_sse).
    pub(crate) fn hold_sse(&self) {
        *lock(&self.0.held) = Some(Vec::new());
    }

    /// Sends `replayed` (ordered by id), then the live events held back meanwhile that are
    /// newer than the last of them (older ones were in the history), and stops holding.
    pub(crate) fn release_sse(&self, replayed: Vec<(u64, Bytes)>) {
        let mut held = lock(&self.0.held);
        let mut last = 0;
        let live = held.take().unwrap_or_default();
        for (id, event) in replayed.into_iter().chain(live) {
            if id > last {
                last = id;
                if self.send_sse_encoded(event).is_err() {
                    break;
                }
            }
        }
    }

    /// Queues an already encoded Server-Sent Event (shared bytes, not copied) to an SSE client.
    pub(crate) fn send_sse_encoded(&self, encoded: Bytes) -> Result<(), HubError> {
        match &self.0.sink {
            Sink::Sse(sender) => self.sse_sent(sender.send_bytes(encoded)),
            Sink::WebSocket(_) => Err(HubError::NotSupported("not a Server-Sent Events client")),
        }
    }

    /// Queues `value` as a JSON text message.
    ///
    /// # Errors
    ///
    /// [`HubError::Json`] if it cannot be serialised, else as for [`send`](Self::send).
    #[cfg(feature = "json")]
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), HubError> {
        self.send(Message::text(serde_json::to_string(value)?))
    }

    /// Queues the event `{"type":"<name>","data":<data>}`.
    ///
    /// # Errors
    ///
    /// As for [`send_json`](Self::send_json).
    #[cfg(feature = "json")]
    pub fn send_event<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> Result<(), HubError> {
        let data = serde_json::to_string(data)?;
        match &self.0.sink {
            Sink::WebSocket(_) => self.send(Message::text(crate::json::event_text(name, &data))),
            Sink::Sse(sender) => {
                let event = SseEvent::data(data)
                    .event(name)
                    .map_err(|_| HubError::NotSupported("an SSE event name without line breaks"))?;
                self.sse_sent(sender.send(&event))
            }
        }
    }

    /// Answers `request`: queues `{"type":"<kind>","payload":<payload>,"id":<request's id>}`
    /// (the `id` only if the request had one), so that the client can match the answer to its
    /// request.
    ///
    /// # Errors
    ///
    /// As for [`send_json`](Self::send_json).
    #[cfg(feature = "json")]
    pub fn reply<T: serde::Serialize + ?Sized>(
        &self,
        request: &crate::Envelope,
        kind: &str,
        payload: &T,
    ) -> Result<(), HubError> {
        let answer =
            crate::Envelope::new(kind, payload)?.with_id(request.id().map(ToOwned::to_owned));
        self.send_json(&answer)
    }

    /// Queues the error envelope `{"type":"error","payload":{"message":"<message>"}}` (with
    /// `"id"` when `id` is given): how the [`Router`](crate::Router) reports invalid input and
    /// handler errors.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    #[cfg(feature = "json")]
    pub fn send_error(
        &self,
        message: &str,
        id: Option<&serde_json::value::RawValue>,
    ) -> Result<(), HubError> {
        let envelope = crate::Envelope::error(message).with_id(id.map(ToOwned::to_owned));
        self.send_json(&envelope)
    }

    fn sent(&self, result: Result<(), OutboxError>) -> Result<(), HubError> {
        match result {
            Ok(()) => Ok(()),
            Err(OutboxError::Full { .. }) => {
                self.disconnect_slow();
                Err(HubError::SlowClient)
            }
            Err(OutboxError::Closed) => Err(HubError::ConnectionClosed {
                outcome: self.close_outcome(),
            }),
            Err(e) => Err(HubError::WebSocket(e.into())),
        }
    }

    fn sse_sent(&self, result: Result<(), SseSendError>) -> Result<(), HubError> {
        match result {
            Ok(()) => Ok(()),
            Err(SseSendError::Full) => {
                self.disconnect_slow();
                Err(HubError::SlowClient)
            }
            Err(_) => Err(HubError::ConnectionClosed {
                outcome: self.close_outcome(),
            }),
        }
    }

    /// Disconnects a client whose outbox is full: the close frame follows what is queued; if
    /// the peer does not read that within the close timeout, the transport is dropped. An SSE
    /// stream ends after what is queued.
    pub(crate) fn disconnect_slow(&self) {
        match &self.0.sink {
            Sink::WebSocket(outbox) => {
                let _ = outbox.close(self.0.slow_code, "outbox full: client too slow");
            }
            Sink::Sse(sender) => sender.close(),
        }
    }

    // ---- closing and rooms ------------------------------------------------------------------

    /// Starts the close handshake with `code` and `reason` after what is queued; the client
    /// leaves the hub (and its rooms) once the connection has ended. Returns `false` if it was
    /// already closing.
    ///
    /// # Errors
    ///
    /// [`HubError::WebSocket`] for a code that may not be sent or a reason over 123 bytes.
    ///
    /// An SSE client's stream ends after what is queued (`code` and `reason` have no meaning
    /// there).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<bool, HubError> {
        match &self.0.sink {
            Sink::WebSocket(outbox) => Ok(outbox.close(code, reason)?),
            Sink::Sse(sender) => {
                let open = !sender.is_closed();
                sender.close();
                Ok(open)
            }
        }
    }

    /// Joins `room` (creating it if needed); returns whether the client was not in it yet.
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`], or [`HubError::ConnectionClosed`] once the client has left the
    /// hub.
    pub fn join(&self, room: &str) -> Result<bool, HubError> {
        self.hub_inner()?.join(room, self)
    }

    /// Leaves `room`; returns whether the client was in it. A room left empty is deleted unless
    /// pinned.
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`] if the hub is gone.
    pub fn leave(&self, room: &str) -> Result<bool, HubError> {
        Ok(self.hub_inner()?.leave(room, &self.0.id))
    }

    /// Whether the client is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.hub_inner()
            .is_ok_and(|hub| hub.in_room(room, &self.0.id))
    }

    /// The rooms the client is in, sorted by name.
    pub fn rooms(&self) -> Vec<String> {
        self.hub_inner()
            .map(|hub| hub.client_rooms(&self.0.id))
            .unwrap_or_default()
    }
}
