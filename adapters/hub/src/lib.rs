//! `tidings-hub`: clients, named rooms, a JSON message router and encode-once broadcast, on top
//! of the runtime-neutral `tidings-io` engine — so the same hub runs under `tidings-tokio` and
//! `tidings-smol`, which both re-export it as `hub`.
//!
//! ```text
//!  WebSocket ─► Hub::serve / route ─► Client (id, subprotocol, data, key/value store)
//!                  │                     │   on_connect · on_message (Handler, Router) · on_disconnect
//!                  │                     ▼
//!  broadcast ─► Backend::publish ─► deliver: encode once (EncodedFrame, shared Bytes; compressed
//!  (all, except, room, rooms)        once for deflate clients) ─► each recipient's Outbox: queued
//!                                    straight into its connection's output, bounded, never waits
//! ```
//!
//! # What it does
//!
//! * **Clients**: [`Hub::serve`] registers a WebSocket as a [`Client`] and runs it with a
//!   [`Handler`] until it disconnects; [`Hub::run`] does the same with a closure, and
//!   [`Hub::attach`] hands the messages to the application as a stream ([`Incoming`]). The hub's
//!   hooks ([`HubBuilder::on_connect`], [`HubBuilder::on_disconnect`], [`HubBuilder::on_error`])
//!   see every client; [`Hub::client`], [`Hub::clients`] and [`Hub::client_count`] look them up.
//!   A client has an ID (given or generated), the negotiated subprotocol, the request data the
//!   application kept ([`ClientOptions::data`]) and a typed key/value store ([`Client::set`],
//!   [`Client::get`]).
//! * **Handler factories**: a [`HandlerFactory`] builds one [`Handler`] per connection; its
//!   `init` sees the upgrade request and may refuse it with an HTTP status before the upgrade.
//!   [`Hub::route`] turns one into a route of the adapters' server helper.
//! * **Rooms**: [`Client::join`], [`Client::leave`], [`Client::rooms`], [`Hub::room`] (get or
//!   create), [`Hub::get_room`], [`Hub::rooms`], [`Room::size`], [`Room::clients`],
//!   [`Room::delete`]. A room goes away when its last member leaves, unless
//!   [pinned](Room::pin) (one made empty by [`Hub::room`] stays until then); a disconnect leaves
//!   every room.
//! * **Broadcast** to all, to all but one, to a room, to a set of rooms ([`Hub::to_all`],
//!   [`Hub::to_room`], [`Hub::to_rooms`], [`Broadcaster::except`]) as text, binary, JSON or an
//!   event. **Each broadcast is encoded once**: one [`EncodedFrame`]
//!   whose bytes every recipient's output queue shares (and, with [`HubConfig::deflate`], one
//!   compression for the clients that negotiated permessage-deflate without context takeover).
//! * **Bounded outboxes, no task per client**: a broadcast is queued straight into each
//!   recipient's connection output through its [`Outbox`](tidings_io::Outbox) — no channel and no
//!   task per client — and never waits. A client whose outbox is full (256 messages or 1 MiB
//!   queued, by default) is disconnected with close code 1008 (policy violation) and the reason
//!   `outbox full: client too slow`; the rest of the hub is unaffected, and a client's memory is
//!   bounded by its outbox. The connection's driver task writes what was queued, once per batch.
//! * **JSON** (feature `json`, default): the [`Envelope`] `{"type","payload","id"}`, events
//!   `{"type","data"}` ([`Event`], [`Broadcaster::event`], [`Client::send_event`]), and the
//!   [`Router`] from `type` to async handlers, with typed payloads, a fallback, request/response
//!   correlation by `id` ([`Client::reply`]) and error replies instead of disconnects.
//! * **Per-client settings** (ping interval, pong timeout, read and write timeouts, message size
//!   limit) come from the adapter's `Config`; [`HubConfig`] overrides them for a hub.
//! * **Abuse limits**: a per-connection message [`RateLimit`] ([`HubConfig::rate_limit`], a
//!   [`TokenBucket`] per client) answers excess messages with an error or closes with 1008; a
//!   [`RateLimiter`] keyed by IP address (or anything) answers `429` for logins. Time is passed
//!   in; nothing runs per entry in the background.
//! * **Admission** (feature `auth`, default): [`auth::TicketStore`] issues one-time tickets for
//!   the WebSocket after a login, [`auth::BearerAuth`] checks bearer tokens with an async hook
//!   ([`Hub::route_async`]); both refuse with `401` before the upgrade. Origins are checked per
//!   route with `WebSocketRoute::origin` (same-origin by default).
//! * **A seam for several processes**: every broadcast, room subscription, presence change and
//!   count goes through a [`Backend`]; the default, [`InProcess`], has no other nodes. See
//!   [`backend`] for what crosses the seam; `tidings-hub-redis` is the backend on Redis.
//!
//! # Hosting
//!
//! In the server helper (either runtime):
//!
//! ```ignore
//! let hub = Hub::new();
//! let router = Router::new().on("chat", chat);
//! Server::new()
//!     .route("/ws", hub.route(move |_req: &UpgradeRequest<'_>| Ok(Admission::new(router.clone()))))
//!     .bind(addr).await?.serve().await;
//! ```
//!
//! From a hyper or axum handler (tidings-tokio, feature `hyper`), one line with
//! `tidings_tokio::http::serve_hub`, which runs the factory's `init` on the request hyper parsed,
//! returns the `101` (or the refusal) and serves the client once hyper hands the connection over:
//!
//! ```ignore
//! async fn ws(State(app): State<App>, mut req: axum::extract::Request) -> axum::response::Response {
//!     tidings_tokio::http::serve_hub(&mut req, &app.config, &app.hub, &app.factory)
//! }
//! ```
//!
//! # What it does not do
//!
//! No delivery guarantees beyond the connection: a message queued to a client that disconnects
//! is lost, and a slow client is cut off rather than buffered without bound. No persistence and
//! no presence across processes without a backend that provides them. Broadcasts to clients
//! whose permessage-deflate keeps its context (context takeover) go uncompressed: a frame
//! compressed once cannot depend on one connection's history.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "auth")]
pub mod auth;
pub mod backend;
mod client;
mod error;
mod handler;
mod hub;
mod id;
#[cfg(feature = "json")]
mod json;
mod limit;
mod sse;

pub use backend::{Backend, Broadcast, InProcess, Node, Payload, Presence, Target};
pub use client::{Client, ClientOptions};
pub use error::{HandlerError, HubError, is_close_error, is_normal_close};
pub use handler::{Admission, FnHandler, Handler, HandlerFactory, Incoming, handler_fn};
pub use hub::{Broadcaster, DEFAULT_HISTORY_ROOMS, Hub, HubBuilder, HubConfig, Idle, Room};
pub use id::ClientId;
#[cfg(feature = "json")]
pub use json::{Envelope, Event, Router};
pub use limit::{DEFAULT_MAX_KEYS, Limited, RateLimit, RateLimitAction, RateLimiter, TokenBucket};
pub use sse::{SseStream, SseSubscription};
pub use tidings_io::sse::SseConfig;

pub use tidings_core::{CloseCode, CloseOutcome, EncodedFrame, Message, MessageKind, Utf8Bytes};
pub use tidings_io::{OutboxLimits, Rejection, UpgradeRequest};

/// The type of a request's `id` in error replies.
#[cfg(feature = "json")]
pub(crate) type IdValue = serde_json::value::RawValue;
#[cfg(not(feature = "json"))]
pub(crate) type IdValue = ();
