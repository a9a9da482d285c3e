//! The seam between one process's hub and the others: what a [`Backend`] carries.
//!
//! A hub keeps its own clients and, for each room, which of *its* clients are members: only the
//! process that holds a socket can write to it. What crosses process boundaries goes through the
//! backend, and only that:
//!
//! ```text
//!   Hub (this node)                                   Backend                 other nodes
//!   broadcast(target, except, payload) ── publish ──► in-process: deliver ──┐
//!        ▲                                            here at once          │  (a Redis backend:
//!        └──────────── Node::deliver ◄───────────────────────────────────── ┘   PUBLISH, and
//!   room got its first / lost its last local member ─► subscribe / unsubscribe  deliver what
//!   client connected / left, joined / left a room ───► presence                 arrives)
//!   client_count, room_size, rooms (with the local figure) ◄─► the figure across nodes
//! ```
//!
//! * **Broadcasts**: every broadcast the application makes (to all, a room, a set of rooms, with
//!   or without an excepted client) is handed to [`Backend::publish`] as a [`Broadcast`] (the
//!   target, the excepted client, the payload as bytes, the node it came from). The backend must
//!   get it delivered on this node, by calling [`Node::deliver`] (the in-process backend does
//!   that and nothing else), and on the other nodes. Delivery encodes the payload once per node.
//! * **Room subscriptions**: [`Backend::subscribe`] when a room gets its first member on this
//!   node, [`Backend::unsubscribe`] when it loses its last one, so that a node only hears about
//!   rooms it has members in.
//! * **Presence**: [`Backend::presence`] for every client that connects or leaves and every room
//!   join or leave on this node, so that counts across nodes can be kept.
//! * **Counts**: [`Backend::client_count`], [`Backend::room_size`] and [`Backend::rooms`] get this
//!   node's figure and answer with the figure across all nodes (the in-process backend returns
//!   the local figure).
//!
//! * **History** (optional): [`Backend::history`] answers a Server-Sent Events client's
//!   `Last-Event-ID` from the backend's store, for a backend that numbers the broadcasts itself
//!   ([`Broadcast::event_id`]); the default leaves history to the hub's memory.
//!
//! `tidings-hub-redis` implements all of it on Redis.
//!
//! Every method is synchronous and must not block: a backend that talks to a remote engine
//! queues the work for its own task and answers counts from what it last heard (presence kept
//! with heartbeats is eventually consistent anyway).

use std::fmt;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tidings_core::{Message, MessageKind};

use crate::HubError;
use crate::id::ClientId;

/// Who a broadcast is for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Every client of the hub.
    All,
    /// The members of one room.
    Room(String),
    /// The members of any of these rooms, each client once.
    Rooms(Vec<String>),
}

/// What a broadcast carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// A WebSocket message, sent as it is.
    Message(Message),
    /// A named event with JSON data: sent to WebSocket clients as the text
    /// `{"type":"<name>","data":<data>}`.
    #[cfg(feature = "json")]
    Event {
        /// The event name.
        name: String,
        /// The event data, as JSON text.
        data: String,
    },
}

impl Payload {
    /// The WebSocket message this payload is sent as.
    pub fn to_message(&self) -> Message {
        match self {
            Payload::Message(message) => message.clone(),
            #[cfg(feature = "json")]
            Payload::Event { name, data } => Message::text(crate::json::event_text(name, data)),
        }
    }

    /// The kind of WebSocket message it is sent as (an event is text).
    pub fn kind(&self) -> MessageKind {
        match self {
            Payload::Message(message) => message.kind(),
            #[cfg(feature = "json")]
            Payload::Event { .. } => MessageKind::Text,
        }
    }
}

/// One broadcast, as it crosses the [`Backend`] seam.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broadcast {
    /// Who it is for.
    pub target: Target,
    /// A client that must not receive it (typically its sender), on whatever node it is.
    pub except: Option<ClientId>,
    /// What it carries.
    pub payload: Payload,
    /// The node it was made on ([`Node::id`]).
    pub origin: Arc<str>,
    /// Its Server-Sent Events id, when a backend numbers events across nodes (with
    /// [`Backend::history`]); `None`: the hub numbers it.
    pub event_id: Option<u64>,
}

impl Broadcast {
    /// A broadcast of `payload` to `target` made on `origin`.
    pub fn new(target: Target, payload: Payload, origin: Arc<str>) -> Self {
        Broadcast {
            target,
            except: None,
            payload,
            origin,
            event_id: None,
        }
    }

    /// The same broadcast numbered `id` for Server-Sent Events.
    pub fn with_event_id(mut self, id: u64) -> Self {
        self.event_id = Some(id);
        self
    }

    /// The same broadcast without `except`'s copy.
    pub fn except(mut self, except: Option<ClientId>) -> Self {
        self.except = except;
        self
    }

    /// The payload's size in bytes, as a [`Message`].
    pub fn payload_len(&self) -> usize {
        match &self.payload {
            Payload::Message(m) => m.len(),
            #[cfg(feature = "json")]
            Payload::Event { name, data } => name.len() + data.len(),
        }
    }
}

/// A change of this node's presence, for [`Backend::presence`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presence {
    /// A client was registered.
    Connected(ClientId),
    /// A client left the hub (after leaving its rooms).
    Disconnected(ClientId),
    /// A client joined a room.
    Joined {
        /// The room.
        room: String,
        /// The client.
        client: ClientId,
    },
    /// A client left a room (by itself, by a disconnect, or because the room was deleted).
    Left {
        /// The room.
        room: String,
        /// The client.
        client: ClientId,
    },
}

/// This node, as a backend sees it: its identity, and the way in for broadcasts.
///
/// It does not keep the hub alive: once the hub is dropped, [`deliver`](Self::deliver) does
/// nothing.
#[derive(Clone)]
pub struct Node {
    id: Arc<str>,
    hub: Weak<crate::hub::HubInner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

impl Node {
    pub(crate) fn new(id: Arc<str>, hub: Weak<crate::hub::HubInner>) -> Self {
        Node { id, hub }
    }

    /// This node's identifier (random, fixed for the hub's life).
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The hub's history length per room ([`HubConfig::history`](crate::HubConfig::history));
    /// 0 when it keeps none or is gone.
    pub fn history(&self) -> usize {
        self.hub
            .upgrade()
            .map_or(0, |hub| hub.config().get_history())
    }

    /// Delivers `broadcast` to this node's clients it is for (encoded once); returns how many
    /// it was queued to. A client whose outbox is full is disconnected (see
    /// [`HubConfig::outbox`](crate::HubConfig::outbox)).
    pub fn deliver(&self, broadcast: &Broadcast) -> usize {
        match self.hub.upgrade() {
            Some(hub) => hub.deliver(broadcast),
            None => 0,
        }
    }
}

/// What a hub sends across processes; see the [module docs](self) for what crosses the seam.
///
/// The default, [`InProcess`], has no other nodes. Implementations must not block in any method
/// (queue remote work for a task of their own).
pub trait Backend: Send + Sync + 'static {
    /// Called once, when the hub is built, with this node's handle: keep it to deliver the
    /// broadcasts that arrive from other nodes.
    fn attach(&self, node: Node) {
        let _ = node;
    }

    /// A broadcast made on this node. Deliver it here (with `local.deliver`, now or after a round
    /// trip that keeps each publisher's order) and on every other node. Returns how many clients
    /// of this node it was queued to, when known now (0 otherwise).
    ///
    /// # Errors
    ///
    /// [`HubError::Backend`] when it cannot be published.
    fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError>;

    /// `room` got its first member on this node.
    fn subscribe(&self, room: &str) {
        let _ = room;
    }

    /// `room` lost its last member on this node (or was deleted here).
    fn unsubscribe(&self, room: &str) {
        let _ = room;
    }

    /// A presence change on this node.
    fn presence(&self, change: Presence) {
        let _ = change;
    }

    /// The number of clients across nodes, given this node's.
    fn client_count(&self, local: usize) -> usize {
        local
    }

    /// The members of `room` across nodes, given this node's.
    fn room_size(&self, room: &str, local: usize) -> usize {
        let _ = room;
        local
    }

    /// The rooms across nodes, given this node's (a room exists from its creation or first join
    /// until its last member leaves, unless pinned).
    fn rooms(&self, local: Vec<String>) -> Vec<String> {
        local
    }

    /// The events of `rooms` numbered after `after`, for a Server-Sent Events client that
    /// reconnects with `Last-Event-ID: after`, when the backend keeps the rooms' histories
    /// itself (across nodes). `None` (the default): the hub keeps them in memory
    /// ([`HubConfig::history`](crate::HubConfig::history)).
    ///
    /// A backend that answers `Some` numbers every broadcast it delivers
    /// ([`Broadcast::event_id`]), in the order it delivers them, so that a client holding
    /// back its live events while the history is fetched can tell which of them the history
    /// already had.
    fn history(&self, rooms: &[String], after: u64) -> Option<HistoryFuture> {
        let _ = (rooms, after);
        None
    }

    /// The hub was closed: stop, release remote resources.
    fn close(&self) {}
}

/// The answer of [`Backend::history`]: the events by id, oldest first.
pub type HistoryFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<(u64, Payload)>, HubError>> + Send>,
>;

/// The default backend: one process, nothing crosses. A broadcast is delivered at once, in the
/// caller's task.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Backend for InProcess {
    fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError> {
        Ok(local.deliver(&broadcast))
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::Message(Message::binary(bytes))
    }
}

impl From<Message> for Payload {
    fn from(message: Message) -> Self {
        Payload::Message(message)
    }
}
