//! A small WebSocket and HTTP/1.1 server on tokio: exact-path routes, connection limits, graceful
//! shutdown. The same API as `tidings_smol::server`; the body is runtime-neutral
//! ([`tidings_io::Server`]), this module only binds it to tokio's listener and spawner.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_tokio::server::{HttpResponse, Route, Server};
//!
//! # async fn f() -> std::io::Result<()> {
//! let listening = Server::new()
//!     .route("/echo", Route::websocket(|mut ws, _info| async move {
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }))
//!     .route("/", Route::http(|_info| async { HttpResponse::text(200, "hello\n") }))
//!     .max_connections(10_000)
//!     .max_connections_per_ip(64)
//!     .shutdown_timeout(Duration::from_secs(5))
//!     .bind("127.0.0.1:9001")
//!     .await?;
//! println!("listening on {}", listening.local_addr());
//! let report = listening
//!     .serve_with_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!     .await;
//! println!("{} still open at exit", report.still_open);
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! * Routes by the exact path of the request target (no prefixes, patterns or trailing-slash
//!   folding; the query is not matched). Unknown paths get `404` before anything is upgraded.
//! * A [`Route::websocket`] route validates the upgrade (RFC 6455 §4.2.1), applies the
//!   [`Config`](crate::Config)'s origin policy, the connection limits and the route's subprotocol
//!   choice, answers `101`, and runs the handler with the [`WebSocket`](crate::WebSocket) and a
//!   [`RequestInfo`] (path, query, headers, peer address, subprotocol). A [`Route::http`] route
//!   answers plain HTTP requests with an [`HttpResponse`], then closes the connection.
//! * Limits: [`max_connections`](tidings_io::Server::max_connections) and
//!   [`max_connections_per_ip`](tidings_io::Server::max_connections_per_ip) count connections
//!   being served (a WebSocket until its handler ends); above them requests get `503` with
//!   `Retry-After`, before any `101`.
//! * Graceful shutdown, by [`ServerHandle::shutdown`] or the future given to
//!   [`serve_with_shutdown`](Listening::serve_with_shutdown): stop accepting, send close 1001
//!   (going away) to every live WebSocket, wait for the handlers up to the shutdown timeout, and
//!   report how many were still open ([`ShutdownReport`]).
//!
//! The pieces are public for WebSockets served by another HTTP server: a [`ConnectionLimiter`]
//! hands out RAII [`ConnectionPermit`]s, and a [`Registry`] keeps each live connection's
//! [`Closer`](crate::Closer) for a shutdown's close 1001 ([`Registry::close_all`], then
//! [`Registry::idle`] under a timeout).
//!
//! # What it does not do
//!
//! No TLS termination (put a TLS-terminating proxy in front, or accept TLS yourself with the
//! `tls` module, feature `rustls`, and [`accept_with`](crate::accept_with)), no HTTP/2, no
//! keep-alive (one request per connection), no request bodies (a request announcing one gets
//! `413`), no path parameters or middleware. Connections still sending their request head are not
//! counted by the limits: the handshake timeout bounds them. For a full HTTP stack, use hyper or
//! axum and `http::upgrade` (feature `hyper`).

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tidings_io::{Network, Runtime, Transport};

#[cfg(feature = "json")]
pub use tidings_io::Json;
pub use tidings_io::{
    Body, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRY_AFTER, DEFAULT_SHUTDOWN_TIMEOUT, HttpResponse,
    HttpRoute, Idle, IntoResponse, Listening, PeerAddr, RequestInfo, Route, ServerHandle,
    ShutdownReport, WebSocketRoute,
};
// The building blocks, for WebSockets served by another HTTP server (hyper, axum): connection
// limits with RAII permits, and a registry of live connections to close them all at shutdown.
pub use tidings_io::{ConnectionLimiter, ConnectionPermit, LimitExceeded, Registration, Registry};

use crate::io::{RUNTIME, transport};

/// The server builder on tokio; see the [module docs](self) and [`tidings_io::Server`] for its
/// methods.
pub type Server = tidings_io::Server<Tcp>;

/// Plain TCP on tokio: the [`Network`] of [`Server`].
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

impl Network for Tcp {
    fn runtime() -> &'static dyn Runtime {
        &RUNTIME
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<Box<dyn tidings_io::Listener>> {
        Ok(Box::new(Listener(tokio::net::TcpListener::from_std(
            listener,
        )?)))
    }
}

struct Listener(tokio::net::TcpListener);

impl tidings_io::Listener for Listener {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn Transport>, SocketAddr)>> {
        self.0.poll_accept(cx).map(|accepted| {
            let (stream, peer) = accepted?;
            stream.set_nodelay(true)?;
            Ok((transport(stream), peer))
        })
    }
}
