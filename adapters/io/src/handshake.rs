//! The opening handshake over a [`Transport`], both roles, with a timeout.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tidings_core::ext::{Extension, ExtensionConfig, negotiate_client, negotiate_server};
use tidings_core::handshake::{
    self, AcceptOptions, ClientRequest, ServerResponse, Status, UpgradeRequest, UrlInfo,
};
use tidings_core::{Connection, Role};

use crate::runtime::{Runtime, Transport};
use crate::shared::Shared;
use crate::{Config, Error, WebSocket, driver};

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

    /// The complete HTTP response.
    pub fn to_response(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        handshake::reject_response(self.status, &headers, &self.body)
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
    /// extensions (permessage-deflate) are offered.
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
        let offers: Vec<_> = extension_configs(&self.config)
            .iter()
            .flat_map(|c| c.offers())
            .collect();
        if !offers.is_empty() {
            request = request.extension_offer(&handshake::render_extensions(&offers))?;
        }
        Ok((request, info))
    }
}

/// What an opening handshake agreed on: the subprotocol, and the extension (permessage-deflate)
/// the connection runs. Built by the handshakes of this crate; from an `Option<String>` (just a
/// subprotocol) for a stream upgraded elsewhere.
#[derive(Default)]
pub struct Agreed {
    /// The subprotocol.
    pub protocol: Option<String>,
    extension: Option<Box<dyn Extension>>,
    extensions: Option<String>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value agreed on, if any.
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }
}

impl From<Option<String>> for Agreed {
    fn from(protocol: Option<String>) -> Self {
        Agreed {
            protocol,
            ..Agreed::default()
        }
    }
}

impl fmt::Debug for Agreed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agreed")
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// The extension configs `config` turns on, in order of preference.
fn extension_configs(config: &Config) -> Vec<&dyn ExtensionConfig> {
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut configs: Vec<&dyn ExtensionConfig> = Vec::new();
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &config.deflate {
        configs.push(deflate);
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    configs
}

/// Server side: accepts `req` with `options`, after negotiating the extensions `config` turns on,
/// and returns the `101` response and what was agreed.
///
/// `options.extensions` may only decline them (`Some("")`): an extension named there would be
/// announced without running, so it is refused as [`HandshakeError::InvalidExtension`](
/// handshake::HandshakeError::InvalidExtension).
pub(crate) fn accept_request(
    req: &UpgradeRequest<'_>,
    config: &Config,
    mut options: AcceptOptions,
) -> Result<(Vec<u8>, Agreed), handshake::HandshakeError> {
    if let Some(named) = options
        .extensions
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        return Err(handshake::HandshakeError::InvalidExtension(format!(
            "{named} (extensions are negotiated from Config::deflate; the accept callback may \
             only decline them, with an empty value)"
        )));
    }
    let mut extension = None;
    if options.extensions.is_none()
        && let Some((value, instance)) =
            negotiate_server(&extension_configs(config), &req.extensions())
    {
        options.extensions = Some(value);
        extension = Some(instance);
    }
    let response = req.accept(&options)?;
    let agreed = Agreed {
        protocol: options.protocol,
        extension,
        extensions: options.extensions.filter(|e| !e.is_empty()),
    };
    Ok((response, agreed))
}

/// Client side: the extension the server's `response` agreed to, checked against our offers.
fn confirm_response(
    response: &ServerResponse,
    config: &Config,
) -> Result<Agreed, handshake::HandshakeError> {
    let extension = negotiate_client(&extension_configs(config), &response.extensions)
        .map_err(|e| handshake::HandshakeError::ExtensionRefused(e.to_string()))?;
    Ok(Agreed {
        protocol: response.protocol.clone(),
        extensions: (!response.extensions.is_empty())
            .then(|| handshake::render_extensions(&response.extensions)),
        extension,
    })
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
    let mut timer = rt.timer(rt.now() + timeout);
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
async fn refuse(io: &mut dyn Transport, response: &[u8]) {
    if write_all(io, response).await.is_ok() {
        let _ = poll_fn(|cx| io.poll_shutdown(cx)).await;
    }
}

/// What the server decided about a request.
enum Decision {
    Accept { response: Vec<u8>, agreed: Agreed },
    Refuse { response: Vec<u8>, error: Error },
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
    let handshake = async {
        let mut buf = BytesMut::with_capacity(1024);
        let (decision, consumed) = loop {
            read_some(&mut *io, &mut buf).await?;
            match handshake::parse_request(&buf, &config.limits) {
                Ok(Status::Partial) => continue,
                Ok(Status::Complete((req, consumed))) => {
                    break (decide(&req, config, callback), consumed);
                }
                Err(e) => {
                    if let Some(response) = e.response() {
                        refuse(&mut *io, &response).await;
                    }
                    return Err(Error::Handshake(e));
                }
            }
        };
        match decision {
            Decision::Refuse { response, error } => {
                refuse(&mut *io, &response).await;
                Err(error)
            }
            Decision::Accept { response, agreed } => {
                write_all(&mut *io, &response).await?;
                let leftover = buf.split_off(consumed);
                Ok((agreed, leftover))
            }
        }
    };
    let (agreed, leftover) = with_timeout(rt, config.handshake_timeout, handshake).await?;
    Ok(from_transport(
        io,
        rt,
        Role::Server,
        config,
        agreed,
        &leftover,
    ))
}

fn decide<F>(req: &UpgradeRequest<'_>, config: &Config, callback: F) -> Decision
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    if let Err(e) = config.origin.check(req) {
        return Decision::Refuse {
            response: e.response().unwrap_or_default(),
            error: Error::Handshake(e),
        };
    }
    match callback(req) {
        Ok(options) => match accept_request(req, config, options) {
            Ok((response, agreed)) => Decision::Accept { response, agreed },
            // The application chose something the request does not allow.
            Err(e) => Decision::Refuse {
                response: handshake::reject_response(500, &[], b"invalid upgrade options"),
                error: Error::Handshake(e),
            },
        },
        Err(rejection) => Decision::Refuse {
            response: rejection.to_response(),
            error: Error::Refused(rejection.status),
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
    let handshake = async {
        write_all(&mut *io, &request.encode()).await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            read_some(&mut *io, &mut buf).await?;
            match handshake::parse_response(&buf, request, &config.limits)? {
                Status::Partial => continue,
                Status::Complete((response, consumed)) => {
                    let leftover = buf.split_off(consumed);
                    return Ok::<_, Error>((response, leftover));
                }
            }
        }
    };
    let (response, leftover) = with_timeout(rt, config.handshake_timeout, handshake).await?;
    let agreed = confirm_response(&response, config)?;
    let ws = from_transport(io, rt, Role::Client, config, agreed, &leftover);
    Ok((ws, response))
}

/// A WebSocket over a transport whose handshake is already done (e.g. upgraded by an HTTP
/// server), with what the handshake agreed and the bytes that followed it. Spawns the driver
/// task.
pub fn from_transport(
    io: Box<dyn Transport>,
    rt: &'static dyn Runtime,
    role: Role,
    config: &Config,
    agreed: Agreed,
    leftover: &[u8],
) -> WebSocket {
    let now = rt.now();
    let mut conn = match role {
        Role::Server => Connection::server(config.core.clone(), now),
        Role::Client => Connection::client(config.core.clone(), now),
    };
    if let Some(extension) = agreed.extension {
        conn.set_extension(extension);
    }
    conn.receive(now, leftover);
    let shared = Shared::new(conn, io, config, rt, agreed.protocol, agreed.extensions);
    let ws = WebSocket::new(shared.clone());
    driver::spawn(shared);
    ws
}

/// Why a `wss://` URL cannot be served by a build without TLS.
pub fn tls_unavailable(info: &UrlInfo) -> Option<Error> {
    info.secure
        .then(|| Error::Url("wss:// needs TLS: enable the `rustls` feature of the adapter".into()))
}
