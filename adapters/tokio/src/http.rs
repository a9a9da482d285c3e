//! Upgrading a hyper 1 request (and so an axum route) to a WebSocket (feature `hyper`).
//!
//! [`upgrade`] runs the same checks as [`accept_with`](crate::accept_with) — the core's request
//! validation (RFC 6455 §4.2.1), the [`Config`]'s origin policy, then your `choose` callback —
//! on the request hyper already parsed, and returns the response to send: the `101` with an
//! [`UpgradeFut`] that resolves to the [`WebSocket`] once hyper hands over the connection, or the
//! refusal (`400`, `403`, `405`, `426`, `431`, or your [`Rejection`]'s status).
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Incoming, service::service_fn};
//! use hyper_util::rt::TokioIo;
//! use tidings_tokio::{AcceptOptions, Config, Rejection};
//!
//! async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     if !tidings_tokio::http::is_upgrade_request(&req) {
//!         return Ok(Response::new(Full::new(Bytes::from("not a WebSocket request\n"))));
//!     }
//!     let choose = |r: &tidings_tokio::UpgradeRequest<'_>| match r.path() {
//!         "/ws" => Ok(AcceptOptions::new()),
//!         _ => Err(Rejection::new(404)),
//!     };
//!     match tidings_tokio::http::upgrade(&mut req, &Config::default(), choose) {
//!         Ok((response, upgrade)) => {
//!             tokio::spawn(async move {
//!                 let Ok(mut ws) = upgrade.await else { return };
//!                 while let Some(Ok(message)) = ws.recv().await {
//!                     if ws.send(message).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!             Ok(response)
//!         }
//!         Err(refused) => Ok(refused.response),
//!     }
//! }
//!
//! # async fn f() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let _ = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), service_fn(handle))
//!             .with_upgrades() // without it the upgrade never completes
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! With axum, the `tidings_tokio::axum::WebSocketUpgrade` extractor (feature `axum`) does this
//! from a handler's arguments (`examples/axum_echo.rs` shows it); or take the whole request
//! (`axum::extract::Request`, the last extractor) and call [`upgrade`].
//!
//! What it does not do: HTTP/2 WebSockets (RFC 8441 extended `CONNECT`) — an HTTP/2 request is
//! refused with `400`; hyper's HTTP/1 server must be built with `.with_upgrades()`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tidings_io::Negotiation;

use crate::{AcceptOptions, Config, Error, Rejection, UpgradeRequest, WebSocket};

/// Whether `req` asks for a WebSocket upgrade (`Upgrade: websocket` and `Connection: upgrade`);
/// for a handler that serves plain HTTP and WebSocket on one path.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    wants_upgrade(req.headers())
}

/// [`is_upgrade_request`] on the headers alone (an axum extractor's `Parts`).
pub(crate) fn wants_upgrade(headers: &http::HeaderMap) -> bool {
    let lists = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    lists(http::header::UPGRADE, "websocket") && lists(http::header::CONNECTION, "upgrade")
}

/// Upgrades `req` to a WebSocket: validates it (RFC 6455 §4.2.1), applies `config`'s origin
/// policy, lets `choose` accept (with a subprotocol, extra headers) or refuse, and returns the
/// `101` response to send with an [`UpgradeFut`]. Await the future (in a spawned task) after the
/// response is returned to hyper: it resolves once hyper hands over the connection, and the
/// WebSocket then runs with `config`.
///
/// The response body type `R` is any body made from [`Bytes`] (`http_body_util::Full<Bytes>`,
/// `axum::body::Body`).
///
/// The request head is checked as the engine would read it from the socket, with `config`'s
/// handshake limits (64 headers, 8 KiB by default): a bigger head is refused with `431`.
///
/// # Errors
///
/// [`Refused`] with the response to send and why: [`Error::Handshake`] for an invalid request or
/// a refused origin, [`Error::Refused`] when `choose` refused.
#[expect(
    clippy::result_large_err,
    reason = "the Ok side is as large: both are responses built once per request, moved to hyper"
)]
pub fn upgrade<B, R, F>(
    req: &mut Request<B>,
    config: &Config,
    choose: F,
) -> Result<(Response<R>, UpgradeFut), Refused<R>>
where
    R: From<Bytes>,
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    match tidings_io::negotiate(req, config, choose) {
        Negotiation::Accept { response, agreed } => {
            let upgrade = UpgradeFut::new(hyper::upgrade::on(req), config.clone(), agreed);
            Ok((response.into_http(), upgrade))
        }
        Negotiation::Refuse { response, error } => Err(Refused {
            response: response.into_http(),
            error,
        }),
    }
}

/// Runs `req` as a client of `hub`: `factory`'s `init` decides about the request (and may refuse
/// it with its status) after the engine's checks, the `101` (or the refusal) is returned to send,
/// and once hyper hands over the connection the client runs with the admitted handler in a
/// spawned task ([`Hub::serve`](tidings_hub::Hub::serve)). A closed hub answers `503`. From an
/// axum handler that takes the whole request (`axum::extract::Request`), this is the one line:
///
/// ```ignore
/// async fn ws(State(app): State<App>, mut req: Request) -> Response {
///     tidings_tokio::http::serve_hub(&mut req, &app.config, &app.hub, &app.factory)
/// }
/// ```
#[cfg(feature = "hub")]
pub fn serve_hub<B, R, F>(
    req: &mut Request<B>,
    config: &Config,
    hub: &tidings_hub::Hub,
    factory: &F,
) -> Response<R>
where
    R: From<Bytes>,
    F: tidings_hub::HandlerFactory,
{
    if hub.is_closed() {
        return hub_closed();
    }
    let mut admitted = None;
    match upgrade(req, config, admit(factory, None, &mut admitted)) {
        Ok((response, upgrade)) => {
            if let Some(admission) = admitted {
                spawn_hub_client(hub, upgrade, admission, |_| {});
            }
            response
        }
        Err(refused) => refused.response,
    }
}

/// The answer of a hub route once the hub is closed: `503`.
#[cfg(feature = "hub")]
pub(crate) fn hub_closed<R: From<Bytes>>() -> Response<R> {
    Rejection::new(503)
        .body("hub closed")
        .to_http_response()
        .into_http()
}

/// The `choose` step of a hub route: `factory` decides, and its admission is kept in `admitted`.
/// An admission that names no subprotocol gets `protocol` (one the client offered), if any.
#[cfg(feature = "hub")]
pub(crate) fn admit<'a, F: tidings_hub::HandlerFactory>(
    factory: &'a F,
    protocol: Option<String>,
    admitted: &'a mut Option<tidings_hub::Admission<F::Handler>>,
) -> impl FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection> + 'a {
    move |r| {
        let admission = factory.init(r)?;
        let mut accept = admission.get_accept_options().clone();
        if accept.protocol.is_none() {
            accept.protocol = protocol;
        }
        *admitted = Some(admission);
        Ok(accept)
    }
}

/// Runs the client of an accepted hub route in a spawned task once hyper hands over the
/// connection ([`Hub::serve`](tidings_hub::Hub::serve)); `on_failed` gets the error if the
/// upgrade fails.
#[cfg(feature = "hub")]
pub(crate) fn spawn_hub_client<H: tidings_hub::Handler>(
    hub: &tidings_hub::Hub,
    upgrade: UpgradeFut,
    admission: tidings_hub::Admission<H>,
    on_failed: impl FnOnce(Error) + Send + 'static,
) {
    let hub = hub.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(ws) => {
                let _ = hub.serve(ws, admission).await;
            }
            Err(e) => on_failed(e),
        }
    });
}

/// A refused upgrade: the response to send and why.
pub struct Refused<R> {
    /// The refusal to send (status, headers, a short body).
    pub response: Response<R>,
    /// Why the request was refused.
    pub error: Error,
}

impl<R> fmt::Debug for Refused<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("status", &self.response.status())
            .field("error", &self.error)
            .finish()
    }
}

impl<R> fmt::Display for Refused<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upgrade refused ({}): {}",
            self.response.status(),
            self.error
        )
    }
}

impl<R> std::error::Error for Refused<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Resolves to the [`WebSocket`] once hyper hands over the upgraded connection; from
/// [`upgrade`].
///
/// # Errors
///
/// [`Error::Io`] if hyper could not upgrade (the connection closed first, or the server was not
/// built with `.with_upgrades()`).
#[must_use = "futures do nothing unless polled"]
pub struct UpgradeFut {
    on: OnUpgrade,
    config: Config,
    /// Taken when the upgrade completes.
    agreed: Option<tidings_io::Agreed>,
}

impl fmt::Debug for UpgradeFut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeFut")
            .field("agreed", &self.agreed)
            .finish_non_exhaustive()
    }
}

impl UpgradeFut {
    /// The WebSocket agreed as `agreed`, with `config`, once `on` resolves.
    pub(crate) fn new(on: OnUpgrade, config: Config, agreed: tidings_io::Agreed) -> Self {
        UpgradeFut {
            on,
            config,
            agreed: Some(agreed),
        }
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.agreed.as_ref()?.protocol()
    }

    /// The extensions agreed in the handshake (`Sec-WebSocket-Extensions`), if any.
    pub fn extensions(&self) -> Option<&str> {
        self.agreed.as_ref()?.extensions()
    }
}

impl Future for UpgradeFut {
    type Output = Result<WebSocket, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let upgraded = ready!(Pin::new(&mut this.on).poll(cx)).map_err(io::Error::other)?;
        let Some(mut agreed) = this.agreed.take() else {
            return Poll::Ready(Err(Error::Io(io::Error::other(
                "upgrade polled after completion",
            ))));
        };
        // A connection hyper served over a tokio TCP stream (hyper-util's `TokioIo`) is taken
        // back whole: the WebSocket then runs on the socket itself, with the bytes hyper read
        // past the head fed first. Any other I/O is driven through hyper's upgraded stream.
        let ws = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => {
                agreed.feed(&parts.read_buf);
                crate::from_upgraded(parts.io.into_inner(), &this.config, agreed)
            }
            Err(upgraded) => crate::from_upgraded(TokioIo::new(upgraded), &this.config, agreed),
        };
        Poll::Ready(Ok(ws))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::{HeaderValue, StatusCode, Version};

    fn request(version: Version) -> Request<()> {
        Request::builder()
            .uri("/chat?room=1")
            .version(version)
            .header("Host", "example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Protocol", "chat")
            .body(())
            .unwrap()
    }

    #[test]
    fn accepts_with_101_and_the_accept_key() {
        let mut req = request(Version::HTTP_11);
        assert!(is_upgrade_request(&req));
        let (response, upgrade) = upgrade::<_, Bytes, _>(&mut req, &Config::default(), |r| {
            assert_eq!((r.path(), r.query()), ("/chat", Some("room=1")));
            Ok(AcceptOptions::new().protocol("chat"))
        })
        .unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(upgrade.protocol(), Some("chat"));
    }

    #[test]
    fn refusals_carry_the_status_of_the_error_or_the_rejection() {
        let mut req = request(Version::HTTP_11);
        let refused =
            upgrade::<_, Bytes, _>(&mut req, &Config::default(), |_| Err(Rejection::new(404)))
                .unwrap_err();
        assert_eq!(refused.response.status(), StatusCode::NOT_FOUND);
        assert!(matches!(refused.error, Error::Refused(404)));

        for version in [Version::HTTP_10, Version::HTTP_2] {
            let mut req = request(version);
            let refused = upgrade::<_, Bytes, _>(&mut req, &Config::default(), |_| unreachable!())
                .unwrap_err();
            assert_eq!(
                refused.response.status(),
                StatusCode::BAD_REQUEST,
                "{version:?}"
            );
        }

        let mut req = request(Version::HTTP_11);
        req.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        let refused =
            upgrade::<_, Bytes, _>(&mut req, &Config::default(), |_| unreachable!()).unwrap_err();
        assert_eq!(refused.response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(refused.response.headers()["sec-websocket-version"], "13");
        assert!(!is_upgrade_request(&Request::new(())));
    }
}
