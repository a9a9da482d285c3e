//! `tidings-io`: the runtime-neutral async engine behind `tidings-tokio` and `tidings-smol`.
//!
//! Applications use one of the adapters, which re-export everything here; this crate is for
//! adapter authors (a new runtime implements [`Runtime`] and wraps its streams in [`Transport`]).
//!
//! ```text
//!  application ── recv() ───────► reads the socket, decodes ─┐  the engine: one connection's
//!              ── send() ───────► encodes, writes ───────────┤  state behind one Mutex (never
//!  driver task ── timers, pongs, ► reads/writes when the     │  held across .await): the core
//!                 flushes          application is elsewhere ─┘  Connection + the transport
//! ```
//!
//! # How it is driven, and what that costs
//!
//! Whoever is polled does the I/O. `recv` reads and decodes one frame at a time, so an echo's
//! answer leaves before the next frame is acted upon; `send` writes at once unless more received
//! input is already waiting, in which case the answers to a whole batch of requests leave in one
//! write. Socket readiness is routed by a waker that wakes the application task waiting in
//! `recv`/`send` if there is one, and otherwise the connection's **driver task**, spawned with the
//! connection. The driver answers pings, sends keepalive pings, enforces the pong, idle, write
//! and close timeouts, and flushes queued output while the application is busy or only sends.
//!
//! Two ordering rules hold whoever does the work:
//!
//! * **Input is acted upon in order.** While the application holds a message it received (it
//!   has not come back to `recv`), the driver acts ahead of it at once only on ping and pong
//!   frames: a ping right behind the message is answered immediately. A data frame, the peer's
//!   close frame or a malformed frame is left to the application for up to 25 ms, so its answer
//!   to the message leaves before the close reply or the failure that followed — the
//!   echo-before-close order RFC 6455 conformance suites check — while an application that went
//!   on to other work holding its last message still has a close answered for it.
//! * **Output leaves in the order it was queued.** A batch of answers deferred while more
//!   requests were waiting is written when the application next waits, or when the driver next
//!   runs (after the application's task yields).
//!
//! Cost: one spawned task per connection (a few hundred bytes), one uncontended mutex lock per
//! operation, and in pipelined traffic at most one driver wake per batch of answers; while the
//! application waits in `recv` the driver is never woken. Events that arrive while the
//! application is elsewhere and holds no message are decoded by the driver into a queue bounded
//! by [`Config::read_high_water`]; above it the driver stops reading and TCP flow control slows
//! the peer.
//!
//! # What it does not do
//!
//! No HTTP of its own: the [`Server`] helper (feature `server`) is hyper's HTTP/1.1 with exact-path
//! routing on top, and [`negotiate`] runs the upgrade checks on a request any HTTP server parsed.
//! No HTTP/2 WebSockets (RFC 8441). TLS is rustls's: the adapters wrap rustls streams for clients,
//! and [`Server::tls`] (feature `rustls`) takes a rustls config for the helper's port.
//!
//! # Compression
//!
//! With the `deflate` feature (default), [`Config::deflate`] turns on permessage-deflate
//! (RFC 7692): a client offers it, a server accepts a client's offer (also through the
//! [`Server`] helper and [`negotiate`]), and [`WebSocket::extensions`] tells what was agreed. It is
//! off until configured; see [`DeflateConfig`] and the core's
//! [`ext::deflate`](tidings_core::ext::deflate) module for the modes, their memory cost and the
//! decompression-bomb limit.
//!
//! # Observability
//!
//! With the `tracing` feature (off by default; the adapters forward it as their own `tracing`
//! feature) the engine records connection-level moments with [`tracing`](https://docs.rs/tracing)
//! — nothing per message, and without the feature nothing at all is compiled in.
//!
//! | what | name | level | fields |
//! | --- | --- | --- | --- |
//! | span: one WebSocket, from its handshake to its close | `websocket` | `INFO` | `peer`, `path`, `subprotocol`, `runtime`, `role` |
//! | span: one HTTP connection of the [`Server`] helper | `http` | `INFO` | `peer` |
//! | event: an upgrade refused with an HTTP status | `websocket upgrade refused` | `DEBUG` (`INFO` for 5xx) | `status`, `reason` |
//! | event: a request refused before any route upgraded it (404, an HTTP route's 503) | `request refused` | `DEBUG` (`INFO` for 5xx) | `status`, `reason`, `path` |
//! | event: a handshake that failed otherwise (timeout, I/O, a client refused by its server) | `websocket handshake failed` | `DEBUG` | `error` |
//! | event: the peer violated the protocol; the connection was failed with `code` | `websocket protocol error` | `WARN` | `code`, `error` |
//! | event: how the connection ended | `websocket closed` | `DEBUG` | `code`, `reason`, `initiator` (`local`/`remote`), `clean`, `sent`, `error`, `io_error` |
//!
//! `peer` is the client's address on the server side when it is known (the [`Server`] helper;
//! [`accept_with`] only sees a transport, so it records the path alone), the URL's host and port
//! on the client side; `path` leaves the query out. `runtime` is [`Runtime::name`]; connections
//! made with [`from_transport`] know only their role and subprotocol. The connection's driver
//! task runs inside its span, and so does the handler of a [`Server`] route; events go to the
//! subscriber of the span they belong to, and the engine's tasks carry the subscriber that was
//! current when they were spawned.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "server")]
mod body;
#[cfg(feature = "tungstenite")]
mod compat;
mod config;
mod engine;
mod error;
mod handshake;
#[cfg(feature = "server")]
mod hyper_rt;
mod outbox;
mod runtime;
#[cfg(feature = "server")]
mod server;
mod socket;
pub mod sse;
mod trace;

#[cfg(all(feature = "server", feature = "json"))]
pub use body::Json;
#[cfg(feature = "server")]
pub use body::{Body, BoxError, IntoResponse};
#[cfg(feature = "tungstenite")]
pub use compat::{FromTungsteniteError, IntoTidings, IntoTungstenite};
pub use config::{
    Config, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_READ_HIGH_WATER, DEFAULT_WRITE_HIGH_WATER,
};
pub use error::Error;
pub use handshake::{
    ConnectOptions, Negotiation, Rejection, accept_with, client, from_transport, negotiate,
    negotiate_parts, tls_unavailable, with_handshake_timeout,
};
pub use outbox::{
    DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_MESSAGES, Outbox, OutboxError, OutboxLimits,
};
pub use runtime::{LazyTransport, Runtime, Sleep, Task, Transport, TransportSetup};
#[cfg(feature = "server")]
pub use server::{
    ConnectionLimiter, ConnectionPermit, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRY_AFTER,
    DEFAULT_SHUTDOWN_TIMEOUT, HttpRoute, Idle, LimitExceeded, Listener, Listening, Network,
    PeerAddr, Registration, Registry, RequestInfo, Route, Server, ServerHandle, ShutdownReport,
    WebSocketRoute,
};
pub use socket::{Closer, ReadHalf, Recv, RecvEvent, WebSocket, WriteHalf};
pub use sse::{SseBody, SseConfig, SseSendError, SseSender};

pub use http;
pub use tidings_core as core;
#[cfg(feature = "deflate")]
pub use tidings_core::ext::deflate::CompressorPool;
#[cfg(feature = "deflate")]
pub use tidings_core::ext::deflate::DeflateConfig;
pub use tidings_core::handshake::{
    AcceptOptions, Agreed, ClientRequest, HandshakeConfig, HttpResponse, OriginPolicy,
    ServerResponse, UpgradeRequest,
};
pub use tidings_core::{
    CloseCode, CloseFrame, CloseOutcome, EncodedFrame, Event, Message, MessageKind, Role,
};
