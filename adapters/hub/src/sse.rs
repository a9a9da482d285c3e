//! Server-Sent Events subscribers of a hub: rooms shared with WebSocket clients, broadcasts
//! encoded once per format, and per-room history for `Last-Event-ID` replay.
//!
//! ```text
//!  hub.to_room("feed").event("tick", &data)
//!      ├─► WebSocket members: one EncodedFrame {"type":"tick","data":…}, shared
//!      └─► SSE members:       one "event: tick\ndata: …\nid: 42\n\n", shared ─┐
//!                             history of "feed" (bounded) ◄──────────────────┘
//!  GET /events (Last-Event-ID: 40) ─► hub.subscribe_sse(rt, subscription)
//!      ─► joins "feed", replays 41, 42 from the history, then live events
//! ```
//!
//! Event ids come from one counter per hub, so they increase within every room (and across a
//! room's recreation), and one broadcast to several rooms has one id. A broadcast to all clients
//! (not to rooms) reaches SSE clients with an id but is not kept in any history. Binary messages
//! do not go over SSE. In memory, the history is this process's: ids start again at 1 in a new
//! process. A backend that keeps the history itself ([`Backend::history`](crate::Backend::history),
//! the Redis backend of `tidings-hub-redis`) numbers the events across processes instead; the
//! subscriber's live events are then held back while its history is fetched, and those the
//! history already had are dropped. Nothing is replayed to a client without a `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tidings_io::sse::{SseBody, SseConfig, SseEvent};

use crate::backend::Payload;
use crate::client::Client;
use crate::id::ClientId;

/// Rooms' event histories and the id counter; one lock, taken after the hub's table lock.
#[derive(Debug, Default)]
pub(crate) struct SseState {
    /// The id of the last event numbered.
    last_id: u64,
    histories: HashMap<Arc<str>, VecDeque<(u64, Bytes)>>,
    /// Rooms with a history, oldest first: the first to go when there are too many.
    order: VecDeque<Arc<str>>,
}

impl SseState {
    /// The next event id.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Keeps `event` (numbered `id`) in `room`'s history of at most `length` events; at most
    /// `rooms` rooms keep a history (the oldest history goes).
    pub(crate) fn record(
        &mut self,
        room: &str,
        id: u64,
        event: &Bytes,
        length: usize,
        rooms: usize,
    ) {
        if length == 0 || rooms == 0 {
            return;
        }
        let history = match self.histories.get_mut(room) {
            Some(history) => history,
            None => {
                while self.order.len() >= rooms {
                    if let Some(old) = self.order.pop_front() {
                        self.histories.remove(&old);
                    }
                }
                let name: Arc<str> = room.into();
                self.order.push_back(name.clone());
                self.histories.entry(name).or_default()
            }
        };
        while history.len() >= length {
            history.pop_front();
        }
        history.push_back((id, event.clone()));
    }

    /// The events of `rooms`' histories numbered after `after`, in id order, each once.
    pub(crate) fn since(&self, rooms: &[String], after: u64) -> Vec<(u64, Bytes)> {
        let mut events: Vec<(u64, Bytes)> = rooms
            .iter()
            .filter_map(|room| self.histories.get(room.as_str()))
            .flat_map(|history| history.iter().filter(|(id, _)| *id > after).cloned())
            .collect();
        events.sort_by_key(|(id, _)| *id);
        events.dedup_by_key(|(id, _)| *id);
        events
    }
}

/// The SSE encoding of a broadcast: a text message as `data:` (event type `message`), a JSON
/// event as `event: <name>` with its data; with `id:`. `None` for binary messages.
pub(crate) fn encode(payload: &Payload, id: u64) -> Option<Bytes> {
    let event = match payload {
        Payload::Message(message) => SseEvent::data(message.as_text()?),
        #[cfg(feature = "json")]
        Payload::Event { name, data } => SseEvent::data(data.as_str()).event(name.as_str()).ok()?,
    };
    Some(event.id(id.to_string()).ok()?.to_bytes())
}

/// What an SSE subscriber asks for: the rooms it joins, the last event it saw, its ID and data,
/// and the stream's settings. See [`Hub::subscribe_sse`](crate::Hub::subscribe_sse).
///
/// ```
/// # use tidings_hub::SseSubscription;
/// let subscription = SseSubscription::new()
///     .room("feed")
///     .last_event_id(Some("41"))
///     .id("dashboard-1");
/// ```
#[derive(Default, Clone)]
pub struct SseSubscription {
    pub(crate) rooms: Vec<String>,
    pub(crate) last_event_id: Option<u64>,
    pub(crate) id: Option<ClientId>,
    pub(crate) data: Option<Arc<dyn std::any::Any + Send + Sync>>,
    pub(crate) config: SseConfig,
}

impl fmt::Debug for SseSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseSubscription")
            .field("rooms", &self.rooms)
            .field("last_event_id", &self.last_event_id)
            .field("id", &self.id)
            .field("data", &self.data.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl SseSubscription {
    /// No rooms, no last event, a generated ID, the default stream settings (heartbeat every
    /// 15 s, 256 queued events).
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins `room` (with the others given).
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Joins these rooms (with the others given).
    pub fn rooms<I, S>(mut self, rooms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// The `Last-Event-ID` the client sent when it reconnected (the header's value): the events
    /// of its rooms' histories numbered after it are sent first. A value that is not an id of
    /// this hub is ignored.
    pub fn last_event_id(mut self, value: Option<&str>) -> Self {
        self.last_event_id = value.and_then(|v| v.trim().parse().ok());
        self
    }

    /// [`last_event_id`](Self::last_event_id) from a request's headers.
    pub fn last_event_id_from(self, headers: &http::HeaderMap) -> Self {
        let value = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        self.last_event_id(value)
    }

    /// The client's ID (a duplicate of a connected client's is refused).
    pub fn id(mut self, id: impl Into<ClientId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Request data kept with the client ([`Client::data`]).
    pub fn data<T: std::any::Any + Send + Sync>(mut self, data: T) -> Self {
        self.data = Some(Arc::new(data));
        self
    }

    /// The stream's settings: heartbeat interval, queue bound, `retry`.
    pub fn config(mut self, config: SseConfig) -> Self {
        self.config = config;
        self
    }
}

/// The response body of an SSE subscriber of a hub (an `http_body::Body`): its events, then
/// heartbeats while idle. When the HTTP server drops it (the client went away), the client
/// leaves the hub and its rooms, and the disconnect hooks run. Return it from a route with
/// [`into_response`](Self::into_response).
pub struct SseStream {
    body: SseBody,
    client: Client,
}

impl fmt::Debug for SseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseStream")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl SseStream {
    pub(crate) fn new(body: SseBody, client: Client) -> Self {
        SseStream { body, client }
    }

    /// The hub's client for this stream (to send to it alone, or join more rooms).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A `200` with `Content-Type: text/event-stream`, `Cache-Control: no-cache` and
    /// `X-Accel-Buffering: no`, and this stream as the body.
    pub fn into_response(self) -> http::Response<SseStream> {
        let mut response = http::Response::new(self);
        *response.headers_mut() = tidings_io::sse::response_headers();
        response
    }
}

impl http_body::Body for SseStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.client.mark_gone(None);
        if let Ok(hub) = self.client.hub_inner() {
            hub.unregister(&self.client);
        }
    }
}
