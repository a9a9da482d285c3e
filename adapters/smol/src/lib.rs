//! `tidings-smol`: WebSocket client and server on smol.
//!
//! ```no_run
//! # fn main() -> Result<(), tidings_smol::Error> { smol::block_on(async {
//! // An echo server.
//! let listener = smol::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     stream.set_nodelay(true)?;
//!     smol::spawn(async move {
//!         let Ok(mut ws) = tidings_smol::accept(stream).await else { return };
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//!     .detach();
//! }
//! # }) }
//! ```
//!
//! The protocol lives in the sans-IO [`tidings_core`](core); the async engine, shared with
//! `tidings-tokio` (same API, file for file), lives in [`tidings_io`]. This crate adds smol's
//! streams (any `futures-io` stream), clock and spawner, DNS + TCP connect, TLS (`rustls`
//! feature) and a small [`server`] helper that also answers plain HTTP routes on the same port.
//!
//! Each connection spawns one small driver task (see [`WebSocket`] and the [`tidings_io`] docs for
//! what it does and costs): on smol's global executor by default (feature `global-executor`), or
//! on the application's own executor given to [`set_spawner`]. The crate is built on smol's
//! parts — `async-io` (reactor, timers) and `async-net` (TCP) — not on the `smol` facade, so an
//! application chooses its executor.
//!
//! Features: `json` (default: `send_json`/`recv_json`, the hub's JSON router), `deflate`
//! (default: permessage-deflate, turned on per connection with `Config::deflate`), `hub`
//! (default: the [`hub`] module — clients, rooms, router, encode-once broadcast), `rustls` (`wss://`, TLS accept).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod accept;
mod connect;
mod io;
#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "rustls")]
pub mod tls;

pub use accept::{accept, accept_with, from_upgraded};
pub use connect::{client, connect, connect_with};
pub use io::{SpawnerSet, set_spawner};
/// A spawned task, as [`set_spawner`]'s spawner receives it.
pub use tidings_io::Task;
/// Server-Sent Events response bodies (`SseBody`, `SseSender`), for the server helper, hyper
/// or axum.
pub use tidings_io::sse;
pub use tidings_io::{
    AcceptOptions, ClientRequest, CloseCode, CloseFrame, CloseOutcome, Closer, Config,
    ConnectOptions, EncodedFrame, Error, Event, Message, MessageKind, OriginPolicy, Outbox,
    OutboxError, OutboxLimits, ReadHalf, Rejection, Role, ServerResponse, UpgradeRequest,
    WebSocket, WriteHalf, core,
};
#[cfg(feature = "deflate")]
pub use tidings_io::{CompressorPool, DeflateConfig};
#[cfg(feature = "tungstenite")]
pub use tidings_io::{FromTungsteniteError, IntoTidings, IntoTungstenite};

/// The smol runtime as the engine sees it ([`tidings_io::Runtime`]: clock, timers, spawner), for
/// what takes one: [`SseBody::channel`](tidings_io::sse::SseBody::channel) and
/// [`SseBody::from_stream`](tidings_io::sse::SseBody::from_stream) run their heartbeat on it.
pub fn runtime() -> &'static dyn tidings_io::Runtime {
    &io::RUNTIME
}

/// The hub (feature `hub`, default): clients, rooms, a JSON router and encode-once broadcast,
/// rate limits, and with feature `auth` (default) one-time tickets and bearer tokens
/// (`hub::auth`) — the runtime-neutral [`tidings_hub`] crate, run on this runtime.
#[cfg(feature = "hub")]
pub use tidings_hub as hub;

/// The hub's Redis backend (feature `redis`): one hub across processes, with its Redis
/// connections on smol — the [`tidings_hub_redis`] crate.
#[cfg(feature = "redis")]
pub use tidings_hub_redis as hub_redis;
