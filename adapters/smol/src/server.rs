//! A WebSocket and HTTP/1.1 server on smol (hyper's HTTP): exact-path routes, Server-Sent
//! Events, connection limits, optional TLS, graceful shutdown. The same API as `tidings_tokio::server`; the body is runtime-neutral
//! ([`tidings_io::Server`]), this module only binds it to smol's listener and spawner.
//!
//! WebSocket and plain HTTP share one port: a [`Route::http`] route answers ordinary requests
//! (a page, a health check) and a [`Route::websocket`] route upgrades.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_smol::server::{HttpResponse, Route, Server};
//!
//! # fn main() -> std::io::Result<()> { smol::block_on(async {
//! let listening = Server::new()
//!     .route("/echo", Route::websocket(|mut ws, _info| async move {
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }))
//!     .route("/", Route::http(|_req| async { HttpResponse::text(200, "hello\n") }))
//!     .max_connections(10_000)
//!     .max_connections_per_ip(64)
//!     .shutdown_timeout(Duration::from_secs(5))
//!     .bind("127.0.0.1:9001")
//!     .await?;
//! println!("listening on {}", listening.local_addr());
//! let handle = listening.handle(); // handle.shutdown() from anywhere ends `serve`
//! let report = listening.serve().await;
//! println!("{} still open at exit", report.still_open);
//! # Ok(()) }) }
//! ```
//!
//! # What it does
//!
//! * HTTP/1.1 is hyper's: keep-alive, request bodies, `Expect: 100-continue`, chunked and
//!   streaming responses, HEAD. The helper adds routing by the exact path of the request target
//!   (no prefixes, patterns or trailing-slash folding; the query is not matched); unknown paths
//!   get `404`.
//! * A [`Route::http`] route receives an `http::Request<Bytes>` (the body read up to
//!   [`max_body_size`](tidings_io::Server::max_body_size), 1 MiB by default, `413` above it;
//!   the client's address as a [`PeerAddr`] extension) and answers anything [`IntoResponse`]:
//!   an `http::Response` with a whole or streaming [`Body`] — Server-Sent Events with
//!   [`SseBody`](crate::sse::SseBody) or a hub's `SseStream` —, an [`HttpResponse`], a status,
//!   a string, or `Json(value)`.
//! * A [`Route::websocket`] route validates the upgrade (RFC 6455 §4.2.1, with the core's
//!   `ServerHandshake` on hyper's parsed head — no bytes re-parsed), applies the
//!   [`Config`](crate::Config)'s origin policy, the connection limits and the route's decision
//!   (a subprotocol list, a `choose` callback, an `init` step, or an asynchronous one with
//!   [`Route::websocket_async`] that may refuse after a lookup), answers `101`, and runs the
//!   handler with the [`WebSocket`](crate::WebSocket) and a [`RequestInfo`] (method, URI,
//!   headers, peer address, subprotocol). After the `101` the WebSocket runs on the socket
//!   itself, not through hyper.
//! * Limits: [`max_connections`](tidings_io::Server::max_connections) and
//!   [`max_connections_per_ip`](tidings_io::Server::max_connections_per_ip) count requests
//!   being served (a WebSocket until its handler ends, an HTTP response until it is sent);
//!   above them requests get `503` with `Retry-After`, before any `101`. The handshake timeout
//!   bounds every request head (and the wait for the next one on a keep-alive connection).
//! * TLS on the helper's port with [`tls`](tidings_io::Server::tls) (feature `rustls`): HTTPS
//!   and `wss://`, the TLS handshake in each connection's task.
//! * Graceful shutdown, by [`ServerHandle::shutdown`] or the future given to
//!   [`serve_with_shutdown`](Listening::serve_with_shutdown): stop accepting, close idle
//!   connections, end streaming responses, send close 1001 (going away) to every live
//!   WebSocket, wait for the handlers up to the shutdown timeout, and report how many were still
//!   open ([`ShutdownReport`]).
//!
//! The pieces are public for WebSockets served by another HTTP server: a [`ConnectionLimiter`]
//! hands out RAII [`ConnectionPermit`]s, and a [`Registry`] keeps each live connection's
//! [`Closer`](crate::Closer) for a shutdown's close 1001 ([`Registry::close_all`], then
//! [`Registry::idle`] under a timeout).
//!
//! # What it does not do
//!
//! No HTTP/2 (and so no RFC 8441 WebSockets), no path parameters, no middleware: for those, use
//! an HTTP framework (axum, with the `axum` feature's extractor on tokio) and the engine's
//! upgrade. Connections still sending their request head are not counted by the limits: the
//! handshake timeout bounds them.

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

/// The server builder on smol; see the [module docs](self) and [`tidings_io::Server`] for its
/// methods.
pub type Server = tidings_io::Server<Tcp>;

/// Plain TCP on smol: the [`Network`] of [`Server`].
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

impl Network for Tcp {
    fn runtime() -> &'static dyn Runtime {
        &RUNTIME
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<Box<dyn tidings_io::Listener>> {
        Ok(Box::new(Listener {
            tcp: async_io::Async::new(listener)?,
            #[cfg(feature = "rustls")]
            tls: None,
        }))
    }

    #[cfg(feature = "rustls")]
    fn listener_tls(
        listener: std::net::TcpListener,
        config: std::sync::Arc<crate::tls::rustls::ServerConfig>,
    ) -> io::Result<Box<dyn tidings_io::Listener>> {
        Ok(Box::new(Listener {
            tcp: async_io::Async::new(listener)?,
            tls: Some(crate::tls::TlsAcceptor::from(config)),
        }))
    }
}

struct Listener {
    tcp: async_io::Async<std::net::TcpListener>,
    /// Accepts TLS on every connection, in the connection's task.
    #[cfg(feature = "rustls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

impl tidings_io::Listener for Listener {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn Transport>, SocketAddr)>> {
        loop {
            match self.tcp.get_ref().accept() {
                Ok((stream, peer)) => {
                    stream.set_nodelay(true)?;
                    let stream = async_net::TcpStream::try_from(stream)?;
                    #[cfg(feature = "rustls")]
                    if let Some(acceptor) = &self.tls {
                        let accept = acceptor.accept(stream);
                        let setup = Box::pin(async move { Ok(transport(accept.await?)) });
                        let io: Box<dyn Transport> =
                            Box::new(tidings_io::LazyTransport::new(setup));
                        return Poll::Ready(Ok((io, peer)));
                    }
                    return Poll::Ready(Ok((transport(stream), peer)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Registers the waker; `Ready` means readiness arrived meanwhile: retry.
                    match self.tcp.poll_readable(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
