//! The handshake objects every driver uses, in wsproto's manner: a [`ServerHandshake`] or a
//! [`ClientHandshake`] is built from raw bytes or from an `http` head, answers with a typed
//! [`HttpResponse`], and ends in an [`Agreed`] that turns into a ready [`Connection`] with the
//! bytes that followed the head already fed. The parse → origin → accept → extension → leftover
//! wiring exists here once; the blocking example, `tidings-io` and the hyper/axum paths call it.
//!
//! ```text
//!  raw bytes ──► ServerHandshake::parse ──┐                 ┌─► HttpResponse::encode() ─► socket
//!  http Parts ─► ServerHandshake::from_parts ─► accept(opts) ┤
//!                                                            └─► Agreed ─(+ leftover)─► Connection
//! ```

use std::fmt;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::client::{ClientRequest, ServerResponse, parse_response};
use super::server::{
    AcceptOptions, RESERVED_IN_101, UpgradeRequest, build_rejection, check_extra_header,
    parse_request,
};
use super::{HandshakeError, Limits, OriginPolicy, Status, render_extensions};
#[cfg(feature = "getrandom")]
use crate::connection::OsMasks;
use crate::ext::{Extension, ExtensionConfig, negotiate_client, negotiate_server};
use crate::{Config, Connection, MaskSource, Role};

/// What a handshake is checked against, in either role: the head limits, the server's origin
/// policy, and the extensions to negotiate (permessage-deflate with the `deflate` feature).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// Bounds on the head (header count and bytes): `431` above them.
    pub limits: Limits,
    /// Server role: which `Origin` headers are accepted (RFC 6455 §10.2). Default same-origin.
    pub origin: OriginPolicy,
    /// permessage-deflate (RFC 7692), offered by a client and accepted by a server. Off by default.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::ext::deflate::DeflateConfig>,
}

impl HandshakeConfig {
    /// The default limits, same-origin, no extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the head limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the origin policy (server role).
    pub fn origin(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// Turns permessage-deflate on (`Some`) or off (`None`).
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, config: Option<crate::ext::deflate::DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// The extension configs this config turns on, in order of preference.
    pub fn extension_configs(&self) -> Vec<&dyn ExtensionConfig> {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut configs: Vec<&dyn ExtensionConfig> = Vec::new();
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.deflate {
            configs.push(deflate);
        }
        configs
    }
}

/// An HTTP response of the handshake, typed: the `101` that accepts an upgrade, or a refusal.
/// [`encode`](Self::encode) gives the bytes for a raw transport; with the `http` feature,
/// [`into_http`](Self::into_http) gives an `http::Response` for an HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl HttpResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.into())
    }

    /// Adds a header. [`encode`](Self::encode) leaves out headers with an invalid name or value,
    /// and, in a refusal, `Connection`, `Content-Length` and `Transfer-Encoding` (which it writes
    /// itself).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body.
    pub fn get_body(&self) -> &Bytes {
        &self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, Bytes) {
        (self.status, self.headers, self.body)
    }

    /// The complete HTTP/1.1 response for a raw transport. A `101` is the head alone (the
    /// connection goes on as a WebSocket); any other status is a refusal with `Connection: close`
    /// and `Content-Length` (a status outside `200..=599` is sent as `500`).
    pub fn encode(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self.headers().collect();
        if self.status == 101 {
            let mut out = Vec::with_capacity(160 + 40 * headers.len());
            out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
            for (name, value) in headers {
                super::headers::push_header(&mut out, name, value);
            }
            out.extend_from_slice(b"\r\n");
            return out;
        }
        let status = if (200..=599).contains(&self.status) {
            self.status
        } else {
            500
        };
        build_rejection(status, &headers, &self.body)
    }
}

/// What an opening handshake agreed on — role, subprotocol, the extension the connection runs —
/// and the bytes that followed the head. [`into_connection`](Self::into_connection) makes the
/// [`Connection`] with those bytes already fed.
pub struct Agreed {
    role: Role,
    protocol: Option<String>,
    extensions: Option<String>,
    extension: Option<Box<dyn Extension>>,
    leftover: BytesMut,
}

impl fmt::Debug for Agreed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agreed")
            .field("role", &self.role)
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .field("leftover", &self.leftover.len())
            .finish()
    }
}

impl Agreed {
    /// A handshake done elsewhere that agreed on `protocol` and no extension.
    pub fn new(role: Role, protocol: Option<String>) -> Self {
        Agreed {
            role,
            protocol,
            extensions: None,
            extension: None,
            leftover: BytesMut::new(),
        }
    }

    /// The role of the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The subprotocol agreed on, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The `Sec-WebSocket-Extensions` value agreed on, if any.
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }

    /// The bytes that followed the head so far (frames the peer sent right behind it).
    pub fn leftover(&self) -> &[u8] {
        &self.leftover
    }

    /// Appends bytes that followed the head and were read by someone else (an HTTP server's read
    /// buffer), so that the connection sees them first.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.leftover.extend_from_slice(bytes);
    }

    /// The connection, starting at `now`, with the agreed extension installed and the leftover
    /// bytes received. A client connection masks with OS randomness.
    #[cfg(feature = "getrandom")]
    pub fn into_connection(self, config: Config, now: Instant) -> Connection {
        self.into_connection_with_masks(config, OsMasks::new(), now)
    }

    /// [`into_connection`](Self::into_connection) with an injected source of masking keys (used
    /// by the client role only).
    pub fn into_connection_with_masks(
        self,
        config: Config,
        masks: impl MaskSource + 'static,
        now: Instant,
    ) -> Connection {
        let mut conn = match self.role {
            Role::Server => Connection::server(config, now),
            Role::Client => Connection::client_with_masks(config, masks, now),
        };
        if let Some(extension) = self.extension {
            conn.set_extension(extension);
        }
        if !self.leftover.is_empty() {
            conn.receive(now, &self.leftover);
        }
        conn
    }
}

/// The server side of an opening handshake (RFC 6455 §4.2): a validated request whose origin the
/// config allows, ready to be accepted or refused.
///
/// ```
/// # use tidings_core::handshake::{AcceptOptions, HandshakeConfig, ServerHandshake, Status};
/// # use tidings_core::Message;
/// # use std::time::Instant;
/// let bytes = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
///     \x81\x82\x00\x00\x00\x00hi";
/// let config = HandshakeConfig::default();
/// let Ok(Status::Complete(handshake)) = ServerHandshake::parse(bytes, &config) else { panic!() };
/// assert_eq!(handshake.request().path(), "/chat");
/// let (response, agreed) = handshake.accept(AcceptOptions::new()).unwrap();
/// assert!(response.encode().starts_with(b"HTTP/1.1 101 "));
/// # #[cfg(feature = "getrandom")] {
/// let mut conn = agreed.into_connection(Default::default(), Instant::now());
/// // The frame that came with the head is already there.
/// assert!(matches!(conn.poll_event(), Some(tidings_core::Event::Message(m)) if m.as_text() == Some("hi")));
/// # }
/// ```
#[derive(Debug)]
pub struct ServerHandshake<'a> {
    request: UpgradeRequest<'a>,
    config: &'a HandshakeConfig,
    head_len: usize,
    leftover: &'a [u8],
}

impl<'a> ServerHandshake<'a> {
    /// Parses the request at the start of `buf` ([`parse_request`](super::parse_request): every
    /// check of RFC 6455 §4.2.1, bounded by the config's limits), then applies the origin policy.
    /// [`Status::Partial`] until the head is complete.
    ///
    /// # Errors
    ///
    /// A [`HandshakeError`] with the status to answer ([`HandshakeError::http_response`]).
    pub fn parse(
        buf: &'a [u8],
        config: &'a HandshakeConfig,
    ) -> Result<Status<Self>, HandshakeError> {
        let Status::Complete((request, head_len)) = parse_request(buf, &config.limits)? else {
            return Ok(Status::Partial);
        };
        config.origin.check(&request)?;
        Ok(Status::Complete(ServerHandshake {
            request,
            config,
            head_len,
            leftover: &buf[head_len..],
        }))
    }

    /// The same checks on a request head another HTTP server parsed (hyper, axum), without
    /// turning it back into bytes. The head is bounded by the config's limits as if it had been
    /// read from the socket (header count, and bytes counted as HTTP/1.1 would send them).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse); an HTTP/2 or HTTP/3 request is `400` (RFC 8441 and RFC 9220
    /// WebSockets are not supported).
    #[cfg(feature = "http")]
    pub fn from_parts(
        parts: &'a http::request::Parts,
        config: &'a HandshakeConfig,
    ) -> Result<Self, HandshakeError> {
        Self::from_head(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            config,
        )
    }

    /// [`from_parts`](Self::from_parts) for a whole `http::Request` (its body is not looked at).
    ///
    /// # Errors
    ///
    /// As [`from_parts`](Self::from_parts).
    #[cfg(feature = "http")]
    pub fn from_request<B>(
        request: &'a http::Request<B>,
        config: &'a HandshakeConfig,
    ) -> Result<Self, HandshakeError> {
        Self::from_head(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
            config,
        )
    }

    #[cfg(feature = "http")]
    fn from_head(
        method: &'a http::Method,
        uri: &'a http::Uri,
        version: http::Version,
        header_map: &'a http::HeaderMap,
        config: &'a HandshakeConfig,
    ) -> Result<Self, HandshakeError> {
        let version = match version {
            http::Version::HTTP_11 => 1,
            http::Version::HTTP_10 | http::Version::HTTP_09 => 0,
            _ => {
                return Err(HandshakeError::Malformed(
                    "WebSockets over HTTP/2 or HTTP/3 are not supported",
                ));
            }
        };
        let limits = &config.limits;
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        // An absolute-form target does not stand in for `Host` (RFC 9112 §3.2: HTTP/1.1 requests
        // carry one), exactly as when the head is parsed from bytes.
        let mut headers = Vec::with_capacity(header_map.len());
        headers.extend(header_map.iter().map(|(n, v)| httparse::Header {
            name: n.as_str(),
            value: v.as_bytes(),
        }));
        if headers.len() > limits.max_headers {
            return Err(HandshakeError::TooManyHeaders);
        }
        // "GET " target " HTTP/1.1\r\n", "name: value\r\n" each, "\r\n".
        // The whole target as sent: `scheme://authority` too for an absolute-form one.
        let absolute = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len(),
            _ => 0,
        };
        let size = method.as_str().len()
            + absolute
            + target.len()
            + 12
            + headers
                .iter()
                .map(|h| h.name.len() + h.value.len() + 4)
                .sum::<usize>()
            + 2;
        if size > limits.max_bytes {
            return Err(HandshakeError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let request = super::server::validate_request(method.as_str(), target, version, headers)?;
        config.origin.check(&request)?;
        Ok(ServerHandshake {
            request,
            config,
            head_len: 0,
            leftover: &[],
        })
    }

    /// The validated request: path, query, headers, offered subprotocols and extensions.
    pub fn request(&self) -> &UpgradeRequest<'a> {
        &self.request
    }

    /// How many bytes of the buffer the head took (0 when built from parts).
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The bytes after the head in the buffer given to [`parse`](Self::parse).
    pub fn leftover(&self) -> &'a [u8] {
        self.leftover
    }

    /// Accepts the request (RFC 6455 §4.2.2): negotiates the config's extensions with the
    /// client's offers (RFC 6455 §9.1, RFC 7692 §5), and returns the `101` with the subprotocol,
    /// extensions and extra headers of `options`, and what was agreed (with the leftover bytes).
    ///
    /// `options.extensions` may only decline the extensions (`Some("")`): one named there would be
    /// announced without running.
    ///
    /// # Errors
    ///
    /// As [`UpgradeRequest::accept`]: a subprotocol the client did not offer, an invalid or
    /// reserved extra header, an extension named in `options`.
    pub fn accept(
        &self,
        mut options: AcceptOptions,
    ) -> Result<(HttpResponse, Agreed), HandshakeError> {
        if let Some(named) = options
            .extensions
            .as_deref()
            .filter(|v| !v.trim().is_empty())
        {
            return Err(HandshakeError::InvalidExtension(format!(
                "{named} (extensions are negotiated from the handshake config; the options may \
                 only decline them, with an empty value)"
            )));
        }
        let mut extension = None;
        if options.extensions.is_none()
            && let Some((value, instance)) =
                negotiate_server(&self.config.extension_configs(), &self.request.extensions())
        {
            options.extensions = Some(value);
            extension = Some(instance);
        }
        let response = self.request.accept_response(&options)?;
        let agreed = Agreed {
            role: Role::Server,
            protocol: options.protocol,
            extensions: options.extensions.filter(|e| !e.is_empty()),
            extension,
            leftover: BytesMut::from(self.leftover),
        };
        Ok((response, agreed))
    }
}

/// The client side of an opening handshake (RFC 6455 §4.1): the request to send (with the
/// config's extension offers), and the validation of the server's answer.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    request: ClientRequest,
    config: HandshakeConfig,
}

impl ClientHandshake {
    /// The handshake for `request`, offering the extensions `config` turns on (added to the
    /// request's own offers).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidExtension`] if the offers cannot be added to the request.
    pub fn new(request: ClientRequest, config: &HandshakeConfig) -> Result<Self, HandshakeError> {
        let offers: Vec<_> = config
            .extension_configs()
            .iter()
            .flat_map(|c| c.offers())
            .collect();
        let request = if offers.is_empty() {
            request
        } else {
            request.extension_offer(&render_extensions(&offers))?
        };
        Ok(ClientHandshake {
            request,
            config: config.clone(),
        })
    }

    /// The request.
    pub fn request(&self) -> &ClientRequest {
        &self.request
    }

    /// The request head to write on a raw transport.
    pub fn encode(&self) -> Vec<u8> {
        self.request.encode()
    }

    /// Parses and validates the answer at the start of `buf` ([`parse_response`]), then confirms
    /// the extension the server chose. On success returns the response and what was agreed, with
    /// the bytes after the head (frames the server sent right after its `101`).
    ///
    /// # Errors
    ///
    /// As [`parse_response`]; [`HandshakeError::ExtensionRefused`] for extension parameters we
    /// cannot accept.
    pub fn parse_response(
        &self,
        buf: &[u8],
    ) -> Result<Status<(ServerResponse, Agreed)>, HandshakeError> {
        let Status::Complete((response, head_len)) =
            parse_response(buf, &self.request, &self.config.limits)?
        else {
            return Ok(Status::Partial);
        };
        let mut agreed = self.confirm(&response)?;
        agreed.feed(&buf[head_len..]);
        Ok(Status::Complete((response, agreed)))
    }

    /// The same checks on a response head an HTTP client parsed.
    ///
    /// # Errors
    ///
    /// As [`parse_response`](Self::parse_response).
    #[cfg(feature = "http")]
    pub fn from_response(
        &self,
        parts: &http::response::Parts,
    ) -> Result<(ServerResponse, Agreed), HandshakeError> {
        let version = match parts.version {
            http::Version::HTTP_11 => 1,
            http::Version::HTTP_10 | http::Version::HTTP_09 => 0,
            _ => {
                return Err(HandshakeError::Malformed(
                    "WebSockets over HTTP/2 or HTTP/3 are not supported",
                ));
            }
        };
        let headers: Vec<_> = parts
            .headers
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n.as_str(),
                value: v.as_bytes(),
            })
            .collect();
        let reason = parts.status.canonical_reason().unwrap_or("");
        let response = super::client::validate_response(
            version,
            parts.status.as_u16(),
            reason,
            &headers,
            &self.request,
        )?;
        let agreed = self.confirm(&response)?;
        Ok((response, agreed))
    }

    fn confirm(&self, response: &ServerResponse) -> Result<Agreed, HandshakeError> {
        let extension = negotiate_client(&self.config.extension_configs(), &response.extensions)
            .map_err(|e| HandshakeError::ExtensionRefused(e.to_string()))?;
        Ok(Agreed {
            role: Role::Client,
            protocol: response.protocol.clone(),
            extensions: (!response.extensions.is_empty())
                .then(|| render_extensions(&response.extensions)),
            extension,
            leftover: BytesMut::new(),
        })
    }
}

impl<'b> UpgradeRequest<'b> {
    /// [`accept`](Self::accept) as a typed response.
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    pub fn accept_response(&self, opts: &AcceptOptions) -> Result<HttpResponse, HandshakeError> {
        let mut response = HttpResponse::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", super::accept_key(self.key()));
        if let Some(p) = &opts.protocol {
            if !self.protocols().contains(&p.as_str()) {
                return Err(HandshakeError::InvalidProtocol(p.clone()));
            }
            response = response.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(e) = &opts.extensions {
            if !super::is_valid_header_value(e) {
                return Err(HandshakeError::InvalidExtension(e.clone()));
            }
            let chosen = super::parse_extensions([e.as_bytes()])
                .map_err(|_| HandshakeError::InvalidExtension(e.clone()))?;
            let offered = self.extensions();
            if let Some(c) = chosen
                .iter()
                .find(|c| !offered.iter().any(|o| o.name.eq_ignore_ascii_case(&c.name)))
            {
                return Err(HandshakeError::InvalidExtension(c.name.clone()));
            }
            if !chosen.is_empty() {
                response = response.header("Sec-WebSocket-Extensions", e);
            }
        }
        for (name, value) in &opts.headers {
            check_extra_header(name, value, RESERVED_IN_101)?;
            response = response.header(name, value);
        }
        Ok(response)
    }
}

#[cfg(feature = "http")]
impl HttpResponse {
    /// The response as an `http::Response` with a body made from the bytes (`Full<Bytes>`, an
    /// axum `Body`…), for an HTTP server that writes it. The framing headers (`Content-Length`,
    /// `Connection: close`) are the server's to add.
    pub fn into_http<B: From<Bytes>>(self) -> http::Response<B> {
        let mut out = http::Response::new(B::from(self.body));
        *out.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            // Invalid names and values are left out, as `encode` does.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                out.headers_mut().append(name, value);
            }
        }
        out
    }
}

impl HandshakeError {
    /// The response a server answers this error with, typed: the [`status`](Self::status), the
    /// headers the status calls for, and a short plain-text body. `None` where
    /// [`status`](Self::status) is `None`.
    pub fn http_response(&self) -> Option<HttpResponse> {
        let status = self.status()?;
        let mut response = HttpResponse::new(status);
        match status {
            405 => response = response.header("Allow", "GET"),
            426 => {
                response = response
                    .header("Sec-WebSocket-Version", super::WEBSOCKET_VERSION)
                    .header("Upgrade", "websocket");
            }
            _ => {}
        }
        Some(
            response
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(self.to_string()),
        )
    }
}
