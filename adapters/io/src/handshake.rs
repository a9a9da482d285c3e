//! The opening handshake over a [`Transport`], both roles, with a timeout.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tidings_core::handshake::{
    self, AcceptOptions, Agreed, ClientHandshake, ClientRequest, HttpResponse, ServerHandshake,
    ServerResponse, Status, UpgradeRequest, UrlInfo,
};

use crate::engine::{self, Engine};
use crate::runtime::{Runtime, Transport};
use crate::trace::ConnSpan;
use crate::{Config, Error, WebSocket};

/// Bytes read per handshake read.
const HEAD_READ: usize = 4096;

/// The application's refusal of an upgrade request: an HTTP status with optional headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Rejection {
    /// Refuses with `status` (e.g. 401, 403, 404, 503).
    pub fn new(status: u16) -> Self {
        Rejection {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (e.g. `WWW-Authenticate`, `Retry-After`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body as text, formatted only when displayed (for traces).
    #[cfg(feature = "server")]
    pub(crate) fn reason(&self) -> impl std::fmt::Display + '_ {
        String::from_utf8_lossy(&self.body)
    }

    /// The complete HTTP response for a raw transport (with `Connection: close`).
    pub fn to_response(&self) -> Vec<u8> {
        self.to_http_response().encode()
    }

    /// The response, typed.
    pub fn to_http_response(&self) -> HttpResponse {
        let mut response = HttpResponse::new(self.status).body(self.body.clone());
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response
    }
}

impl From<Rejection> for HttpResponse {
    fn from(rejection: Rejection) -> Self {
        rejection.to_http_response()
    }
}

/// How a client connects: subprotocols to offer, extra headers, and the connection config.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    config: Config,
}

impl ConnectOptions {
    /// No subprotocols, no extra headers, the default config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a header to the request (`Authorization`, `Origin`, `Cookie`…).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the connection config.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The connection config.
    pub fn get_config(&self) -> &Config {
        &self.config
    }

    /// Builds the request for `url` with a fresh key, and where to connect. The config's
    /// extensions (permessage-deflate) are offered by [`client`], which wraps the request in a
    /// [`ClientHandshake`].
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] for an unusable URL, protocol or header.
    pub fn request(&self, url: &str) -> Result<(ClientRequest, UrlInfo), Error> {
        let (mut request, info) = ClientRequest::from_url(url, handshake::generate_key())?;
        for p in &self.protocols {
            request = request.protocol(p)?;
        }
        for (name, value) in &self.headers {
            request = request.header(name, value)?;
        }
        Ok((request, info))
    }
}

/// Runs `fut` (e.g. DNS, TCP and TLS before the handshake) bounded by `config`'s handshake
/// timeout on `rt`'s clock; [`Error::HandshakeTimeout`] when it expires.
pub async fn with_handshake_timeout<T>(
    rt: &'static dyn Runtime,
    config: &Config,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    with_timeout(rt, config.handshake_timeout, fut).await
}

/// Runs `fut` with an optional timeout on `rt`'s clock.
async fn with_timeout<T>(
    rt: &'static dyn Runtime,
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let Some(timeout) = timeout else {
        return fut.await;
    };
    let mut timer = rt.sleep_until(rt.now() + timeout);
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(value) = fut.as_mut().poll(cx) {
            return Poll::Ready(value);
        }
        if timer.poll_expired(cx).is_ready() {
            return Poll::Ready(Err(Error::HandshakeTimeout));
        }
        Poll::Pending
    })
    .await
}

/// Reads more of a request or response head; EOF is an error here.
pub(crate) async fn read_some(io: &mut dyn Transport, buf: &mut BytesMut) -> io::Result<()> {
    buf.reserve(HEAD_READ);
    let n = poll_fn(|cx| io.poll_read_into(cx, buf)).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed during the handshake",
        ));
    }
    Ok(())
}

pub(crate) async fn write_all(io: &mut dyn Transport, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| io.poll_write_vectored(cx, &[IoSlice::new(data)])).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    poll_fn(|cx| io.poll_flush(cx)).await
}

/// Writes a refusal and shuts the transport down; errors are moot at this point.
pub(crate) async fn refuse(io: &mut dyn Transport, response: &[u8]) {
    if write_all(io, response).await.is_ok() {
        let _ = poll_fn(|cx| io.poll_shutdown(cx)).await;
    }
}

/// Server side: reads the upgrade request, applies the origin policy, lets `callback` accept
/// (with [`AcceptOptions`]) or refuse (with a [`Rejection`]), answers, and returns the
/// WebSocket. Bytes the client sent after its request reach the connection.
///
/// # Errors
///
/// [`Error::Handshake`] for an invalid request (answered with its status: 400, 403, 405, 426,
/// 431), [`Error::Refused`] when the callback refused, [`Error::HandshakeTimeout`], [`Error::Io`].
pub async fn accept_with<F>(
    mut io: Box<dyn Transport>,
    rt: &'static dyn Runtime,
    config: &Config,
    callback: F,
) -> Result<WebSocket, Error>
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    let span = ConnSpan::server(rt, None);
    let handshake = async {
        let mut buf = BytesMut::with_capacity(1024);
        let decision = loop {
            read_some(&mut *io, &mut buf).await?;
            match ServerHandshake::parse(&buf, &config.handshake) {
                Ok(Status::Partial) => continue,
                Ok(Status::Complete(hs)) => {
                    span.record_path(hs.request().path());
                    break decide(&hs, callback);
                }
                Err(e) => {
                    match e.http_response() {
                        Some(response) => {
                            span.refused(response.status(), &e);
                            refuse(&mut *io, &response.encode()).await;
                        }
                        None => span.handshake_failed(&e),
                    }
                    return Err(Error::Handshake(e));
                }
            }
        };
        match decision {
            Negotiation::Refuse { response, error } => {
                span.refused(response.status(), &error);
                refuse(&mut *io, &response.encode()).await;
                Err(error)
            }
            Negotiation::Accept { response, agreed } => {
                write_all(&mut *io, &response.encode()).await?;
                Ok(agreed)
            }
        }
    };
    // Boxed: the handshake's state (its buffers and parsed head) lives only while it runs, not
    // for the whole life of the task that awaits this function's future.
    let agreed = match with_timeout(rt, config.handshake_timeout, Box::pin(handshake)).await {
        Ok(agreed) => agreed,
        Err(e) => {
            if matches!(e, Error::Io(_) | Error::HandshakeTimeout) {
                span.handshake_failed(&e);
            }
            return Err(e);
        }
    };
    Ok(start(io, rt, config, agreed, span))
}

/// Lets `callback` accept or refuse a validated request, and accepts with its options.
pub(crate) fn decide<F>(hs: &ServerHandshake<'_>, callback: F) -> Negotiation
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    match callback(hs.request()) {
        Ok(options) => accept_options(hs, options),
        Err(rejection) => Negotiation::Refuse {
            error: Error::Refused(rejection.status),
            response: rejection.into(),
        },
    }
}

/// Accepts a validated request with the application's options.
pub(crate) fn accept_options(hs: &ServerHandshake<'_>, options: AcceptOptions) -> Negotiation {
    match hs.accept(options) {
        Ok((response, agreed)) => Negotiation::Accept { response, agreed },
        // The application chose something the request does not allow.
        Err(e) => Negotiation::Refuse {
            response: HttpResponse::text(500, "invalid upgrade options"),
            error: Error::Handshake(e),
        },
    }
}

/// Client side: sends `request` over `io`, validates the `101` answer and returns the WebSocket
/// and the response (chosen subprotocol, headers). Frames the server sent right after its answer
/// reach the connection.
///
/// # Errors
///
/// [`Error::Handshake`] — [`HandshakeError::Rejected`](tidings_core::handshake::HandshakeError::Rejected) with the status and headers for a non-101
/// answer — [`Error::HandshakeTimeout`], [`Error::Io`].
pub async fn client(
    mut io: Box<dyn Transport>,
    rt: &'static dyn Runtime,
    request: &ClientRequest,
    config: &Config,
) -> Result<(WebSocket, ServerResponse), Error> {
    let span = ConnSpan::client(rt, request);
    let handshake = async {
        let hs = ClientHandshake::new(request.clone(), &config.handshake)?;
        write_all(&mut *io, &hs.encode()).await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            read_some(&mut *io, &mut buf).await?;
            if let Status::Complete(done) = hs.parse_response(&buf)? {
                return Ok::<_, Error>(done);
            }
        }
    };
    // Boxed, as on the server side: the state is freed once the handshake is done.
    let (response, agreed) =
        match with_timeout(rt, config.handshake_timeout, Box::pin(handshake)).await {
            Ok(done) => done,
            Err(e) => {
                span.handshake_failed(&e);
                return Err(e);
            }
        };
    let ws = start(io, rt, config, agreed, span);
    Ok((ws, response))
}

/// A WebSocket over a transport whose handshake is done (by this crate, or upgraded by an HTTP
/// server), with what the handshake [`Agreed`] (role, subprotocol, extension, and the bytes that
/// followed the head). Spawns the driver task.
pub fn from_transport(
    io: Box<dyn Transport>,
    rt: &'static dyn Runtime,
    config: &Config,
    agreed: Agreed,
) -> WebSocket {
    let span = ConnSpan::upgraded(rt, agreed.role());
    start(io, rt, config, agreed, span)
}

/// [`from_transport`] with the connection's span (what is known of the peer and the path).
pub(crate) fn start(
    io: Box<dyn Transport>,
    rt: &'static dyn Runtime,
    config: &Config,
    agreed: Agreed,
    span: ConnSpan,
) -> WebSocket {
    let now = rt.now();
    let protocol = agreed.protocol().map(str::to_owned);
    let extensions = agreed.extensions().map(str::to_owned);
    span.record_subprotocol(protocol.as_deref());
    let conn = agreed.into_connection(config.core.clone(), now);
    let engine = Engine::new(conn, io, config, rt, protocol, extensions, span.clone());
    let ws = WebSocket::new(engine.clone());
    engine::spawn(engine, &span);
    ws
}

/// Why a `wss://` URL cannot be served by a build without TLS.
pub fn tls_unavailable(info: &UrlInfo) -> Option<Error> {
    info.secure
        .then(|| Error::Url("wss:// needs TLS: enable the `rustls` feature of the adapter".into()))
}

/// The engine's answer to an upgrade request read by another HTTP server; see [`negotiate`].
#[derive(Debug)]
pub enum Negotiation {
    /// Answer with `response` (`101 Switching Protocols` with `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, the chosen subprotocol and the extra headers), then run the
    /// WebSocket over the upgraded connection with what was `agreed` (feed it the bytes the
    /// server read past the head, if it hands them over).
    Accept {
        /// The `101` response.
        response: HttpResponse,
        /// Role, subprotocol and extension agreed.
        agreed: Agreed,
    },
    /// Answer with `response` (the status of the error or of the application's [`Rejection`])
    /// and do not upgrade.
    Refuse {
        /// The refusal.
        response: HttpResponse,
        /// Why: [`Error::Handshake`] for an invalid request or origin, [`Error::Refused`] when
        /// `choose` refused.
        error: Error,
    },
}

/// Runs the engine's server-side handshake on an upgrade request whose head another HTTP server
/// already parsed (hyper, axum), without turning it back into bytes: the core's validation
/// (RFC 6455 §4.2.1, bounded by `config`'s handshake limits), `config`'s origin policy, then
/// `choose`, which accepts with [`AcceptOptions`] or refuses with a [`Rejection`]; the
/// extensions `config` turns on are negotiated.
pub fn negotiate<B, F>(request: &http::Request<B>, config: &Config, choose: F) -> Negotiation
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    conclude(
        ServerHandshake::from_request(request, &config.handshake),
        choose,
    )
}

/// [`negotiate`] on a request head taken apart (an axum extractor's `Parts`).
pub fn negotiate_parts<F>(parts: &http::request::Parts, config: &Config, choose: F) -> Negotiation
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    conclude(
        ServerHandshake::from_parts(parts, &config.handshake),
        choose,
    )
}

fn conclude<F>(
    hs: Result<ServerHandshake<'_>, tidings_core::handshake::HandshakeError>,
    choose: F,
) -> Negotiation
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    match hs {
        Err(e) => Negotiation::Refuse {
            response: error_response(&e),
            error: Error::Handshake(e),
        },
        Ok(hs) => decide(&hs, choose),
    }
}

/// The answer to an invalid upgrade request.
pub(crate) fn error_response(e: &tidings_core::handshake::HandshakeError) -> HttpResponse {
    e.http_response()
        .unwrap_or_else(|| HttpResponse::text(500, e.to_string()))
}
