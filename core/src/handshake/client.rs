//! Client role: build the opening handshake (RFC 6455 §4.1) and validate the server's answer
//! (§4.1, "the client MUST validate the server's response as follows").

use base64::Engine as _;

use super::headers::{
    ExtensionOffer, is_token, is_valid_header_value, list_contains, parse_extensions, push_header,
    trim_ows,
};
use super::origin::split_host_port;
use super::server::check_extra_header;
use super::{HandshakeError, Limits, Status, WEBSOCKET_VERSION, accept_key};

/// A client's opening handshake (RFC 6455 §4.1), ready to [`encode`](Self::encode).
///
/// ```
/// # use tidings_core::handshake::{ClientRequest, HandshakeError};
/// # fn main() -> Result<(), HandshakeError> {
/// let (req, url) = ClientRequest::from_url("wss://example.com/chat?room=1", [7; 16])?;
/// let req = req.protocol("chat")?.header("Origin", "https://example.com")?;
/// assert_eq!((url.host.as_str(), url.port, url.secure), ("example.com", 443, true));
/// assert!(req.encode().starts_with(b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    resource: String,
    key: String,
    protocols: Vec<String>,
    extensions: Vec<String>,
    headers: Vec<(String, String)>,
}

/// Where to connect for a `ws://` or `wss://` URL (RFC 6455 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlInfo {
    /// `true` for `wss://`: the connection must be made over TLS.
    pub secure: bool,
    /// The host to connect to (and to name in TLS SNI), without the brackets of an IPv6 literal.
    pub host: String,
    /// The port, defaulted to 80 for `ws://` and 443 for `wss://`.
    pub port: u16,
}

/// Header names the handshake writes itself, which [`ClientRequest::header`] refuses.
const RESERVED_IN_REQUEST: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

impl ClientRequest {
    /// A request for `resource` (path and query, starting with `/`) on `host` (the `Host` header
    /// value: `host` or `host:port`, with IPv6 literals in brackets), with the nonce `key`, which
    /// must be freshly random for each connection (§4.1 item 7; `generate_key`, behind the `getrandom` feature, makes one).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidUrl`] if `host` is not a host with an optional port, or `resource`
    /// does not start with `/`, contains a fragment, or has characters that cannot appear in a
    /// request line.
    pub fn new(host: &str, resource: &str, key: [u8; 16]) -> Result<Self, HandshakeError> {
        if split_host_port(host).is_none() {
            return Err(HandshakeError::InvalidUrl("host"));
        }
        check_resource(resource)?;
        Ok(ClientRequest {
            host: host.to_owned(),
            resource: resource.to_owned(),
            key: base64::engine::general_purpose::STANDARD.encode(key),
            protocols: Vec::new(),
            extensions: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// A request for a `ws://` or `wss://` URL (RFC 6455 §3), and where to connect for it.
    ///
    /// The scheme is case-insensitive; the port defaults to 80 (`ws`) or 443 (`wss`) and the `Host`
    /// header omits it when it is the default; an empty path becomes `/`. IPv6 literals are written
    /// in brackets (`ws://[::1]:9001/`). Internationalised host names must already be in their ASCII
    /// (punycode) form.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidUrl`] for another scheme, a fragment (forbidden by §3), userinfo,
    /// an empty or malformed host, a port outside 1..=65535, or whitespace, control or non-ASCII
    /// characters.
    pub fn from_url(url: &str, key: [u8; 16]) -> Result<(Self, UrlInfo), HandshakeError> {
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HandshakeError::InvalidUrl(
                "whitespace, control or non-ASCII character",
            ));
        }
        if url.contains('#') {
            return Err(HandshakeError::InvalidUrl("fragment (RFC 6455 §3)"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(HandshakeError::InvalidUrl("missing ws:// or wss://"));
        };
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(HandshakeError::InvalidUrl("scheme is not ws or wss"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(split);
        if authority.contains('@') {
            return Err(HandshakeError::InvalidUrl("userinfo is not supported"));
        }
        let Some((host, port)) = split_host_port(authority) else {
            return Err(HandshakeError::InvalidUrl("host or port"));
        };
        let default = if secure { 443 } else { 80 };
        let port = port.unwrap_or(default);
        if port == 0 {
            return Err(HandshakeError::InvalidUrl("host or port"));
        }
        let host_header = if port == default {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let resource = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            format!("/{path_and_query}")
        };
        let req = ClientRequest::new(&host_header, &resource, key)?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let info = UrlInfo {
            secure,
            host: bare.to_owned(),
            port,
        };
        Ok((req, info))
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`, §4.1 item 10), after those already offered;
    /// order is preference.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidProtocol`] if `protocol` is not a token or is already offered.
    pub fn protocol(mut self, protocol: &str) -> Result<Self, HandshakeError> {
        if !is_token(protocol) || self.protocols.iter().any(|p| p == protocol) {
            return Err(HandshakeError::InvalidProtocol(protocol.to_owned()));
        }
        self.protocols.push(protocol.to_owned());
        Ok(self)
    }

    /// Offers one or more extensions (a `Sec-WebSocket-Extensions` value, §4.1 item 11, §9.1), e.g.
    /// `permessage-deflate; client_max_window_bits`. Several calls add to the list.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidExtension`] if `value` is empty or does not follow the §9.1 grammar.
    pub fn extension_offer(mut self, value: &str) -> Result<Self, HandshakeError> {
        let ok = is_valid_header_value(value)
            && parse_extensions([value.as_bytes()]).is_ok_and(|offers| !offers.is_empty());
        if !ok {
            return Err(HandshakeError::InvalidExtension(value.to_owned()));
        }
        self.extensions.push(value.to_owned());
        Ok(self)
    }

    /// Adds a header field, such as `Origin`, `Authorization`, `Cookie` or `User-Agent`.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidHeader`] if the name is not a token, the value contains CR, LF, NUL
    /// or another control character, or the name is one the handshake sets itself (`Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HandshakeError> {
        check_extra_header(name, value, RESERVED_IN_REQUEST)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The `Sec-WebSocket-Key` value (the base64 of the 16-byte nonce).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Host` header value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The request target (path and query).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The subprotocols offered, in order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extension offers, as given to [`extension_offer`](Self::extension_offer).
    pub fn extension_offers(&self) -> &[String] {
        &self.extensions
    }

    /// The request head: request line, `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version: 13`, the offered subprotocols and extensions, the extra headers, and
    /// the empty line.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.resource.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(&mut out, "Host", &self.host);
        push_header(&mut out, "Upgrade", "websocket");
        push_header(&mut out, "Connection", "Upgrade");
        push_header(&mut out, "Sec-WebSocket-Key", &self.key);
        push_header(&mut out, "Sec-WebSocket-Version", WEBSOCKET_VERSION);
        if !self.protocols.is_empty() {
            push_header(
                &mut out,
                "Sec-WebSocket-Protocol",
                &self.protocols.join(", "),
            );
        }
        if !self.extensions.is_empty() {
            push_header(
                &mut out,
                "Sec-WebSocket-Extensions",
                &self.extensions.join(", "),
            );
        }
        for (name, value) in &self.headers {
            push_header(&mut out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Sixteen random bytes from the operating system, for [`ClientRequest::new`] (§4.1 item 7).
#[cfg(feature = "getrandom")]
pub fn generate_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    crate::connection::fill_random(&mut key);
    key
}

/// A validated `101 Switching Protocols` answer to a [`ClientRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerResponse {
    /// The subprotocol the server chose, if any (one of those offered).
    pub protocol: Option<String>,
    /// The extensions the server accepted, with their response parameters, in order (each one of
    /// those offered). The extension layer checks the parameters.
    pub extensions: Vec<ExtensionOffer>,
    /// Every header of the response, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Parses and validates the server's answer to `req` from the start of `buf` (RFC 6455 §4.1).
///
/// Returns [`Status::Partial`] while the head is incomplete. On success returns the response and the
/// number of bytes its head took; `buf[consumed..]` (frames the server sent right after the `101`)
/// belongs to the connection. Bounded by `limits` as [`parse_request`](super::parse_request) is.
///
/// # Errors
///
/// * [`HandshakeError::Rejected`] for a status other than `101` (§4.1 check 1), with its headers;
/// * [`HandshakeError::MissingUpgrade`], [`HandshakeError::MissingConnectionUpgrade`] (checks 2, 3);
/// * [`HandshakeError::MissingAccept`], [`HandshakeError::AcceptMismatch`] (check 4);
/// * [`HandshakeError::MalformedExtensions`], [`HandshakeError::ExtensionNotOffered`] (check 5);
/// * [`HandshakeError::ProtocolNotOffered`] (check 6);
/// * [`HandshakeError::Malformed`], [`HandshakeError::DuplicateHeader`],
///   [`HandshakeError::TooManyHeaders`], [`HandshakeError::TooLarge`] for an unusable head.
pub fn parse_response(
    buf: &[u8],
    req: &ClientRequest,
    limits: &Limits,
) -> Result<Status<(ServerResponse, usize)>, HandshakeError> {
    let window = buf.get(..limits.max_bytes).unwrap_or(buf);
    let slots = limits.max_headers.min(limits.max_bytes / 3 + 1);
    let mut headers = vec![httparse::EMPTY_HEADER; slots];
    let mut resp = httparse::Response::new(&mut headers);
    let consumed = match resp.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
            return Err(HandshakeError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::Malformed("HTTP response head")),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(HandshakeError::Malformed("status line"));
    };
    let reason = resp.reason.unwrap_or("");
    let count = resp.headers.len();
    headers.truncate(count);
    let resp = validate_response(version, code, reason, &headers, req)?;
    Ok(Status::Complete((resp, consumed)))
}

/// The checks of [`parse_response`] on a head that is already split into its parts (by httparse
/// here, or by an HTTP client: see `ClientHandshake::from_response`). `version` is the minor
/// version of HTTP/1.x.
pub(crate) fn validate_response(
    version: u8,
    code: u16,
    reason: &str,
    headers: &[httparse::Header<'_>],
    req: &ClientRequest,
) -> Result<ServerResponse, HandshakeError> {
    let reason = reason.to_owned();
    let owned = || {
        headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect::<Vec<_>>()
    };

    if code != 101 {
        return Err(HandshakeError::Rejected {
            status: code,
            reason,
            headers: owned(),
        });
    }
    if version < 1 {
        return Err(HandshakeError::Malformed("101 response over HTTP/1.0"));
    }
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !named("Upgrade").any(|v| list_contains(v, "websocket")) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !named("Connection").any(|v| list_contains(v, "upgrade")) {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut accepts = named("Sec-WebSocket-Accept");
    match (accepts.next(), accepts.next()) {
        (None, _) => return Err(HandshakeError::MissingAccept),
        (Some(_), Some(_)) => return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Accept")),
        (Some(v), None) => {
            if trim_ows(v) != accept_key(&req.key).as_bytes() {
                return Err(HandshakeError::AcceptMismatch);
            }
        }
    }
    let mut protocols = named("Sec-WebSocket-Protocol");
    let protocol = match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Protocol"));
        }
        (Some(v), None) => {
            let v = String::from_utf8_lossy(trim_ows(v));
            if !req.protocols.iter().any(|p| *p == v) {
                return Err(HandshakeError::ProtocolNotOffered(v.into_owned()));
            }
            Some(v.into_owned())
        }
    };
    let extensions = parse_extensions(named("Sec-WebSocket-Extensions"))?;
    if !extensions.is_empty() {
        let offered = parse_extensions(req.extensions.iter().map(|e| e.as_bytes()))?;
        if let Some(e) = extensions
            .iter()
            .find(|e| !offered.iter().any(|o| o.name.eq_ignore_ascii_case(&e.name)))
        {
            return Err(HandshakeError::ExtensionNotOffered(e.name.clone()));
        }
    }
    Ok(ServerResponse {
        protocol,
        extensions,
        headers: owned(),
    })
}

/// A request target in origin-form: `/`, then visible ASCII, no fragment.
fn check_resource(resource: &str) -> Result<(), HandshakeError> {
    if !resource.starts_with('/') {
        return Err(HandshakeError::InvalidUrl("resource must start with /"));
    }
    if !resource.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeError::InvalidUrl(
            "whitespace, control or non-ASCII character",
        ));
    }
    if resource.contains('#') {
        return Err(HandshakeError::InvalidUrl("fragment (RFC 6455 §3)"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::handshake::{AcceptOptions, parse_request};

    const RFC_KEY: [u8; 16] = *b"the sample nonce";

    fn rfc_request() -> ClientRequest {
        ClientRequest::new("server.example.com", "/chat", RFC_KEY)
            .unwrap()
            .protocol("chat")
            .unwrap()
            .protocol("superchat")
            .unwrap()
            .header("Origin", "http://example.com")
            .unwrap()
    }

    const RFC_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    fn parse(
        buf: &str,
        req: &ClientRequest,
    ) -> Result<Status<(ServerResponse, usize)>, HandshakeError> {
        parse_response(buf.as_bytes(), req, &Limits::default())
    }

    #[test]
    fn encodes_the_rfc_example_request() {
        let req = rfc_request();
        assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            String::from_utf8(req.encode()).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Origin: http://example.com\r\n\r\n"
        );
    }

    #[test]
    fn request_round_trips_through_the_server_parser() {
        let req = rfc_request()
            .extension_offer("permessage-deflate; client_max_window_bits")
            .unwrap()
            .header("Authorization", "Bearer t0k3n")
            .unwrap();
        let bytes = req.encode();
        let Ok(Status::Complete((parsed, n))) = parse_request(&bytes, &Limits::default()) else {
            panic!("server parser refused the client's request");
        };
        assert_eq!(n, bytes.len());
        assert_eq!(parsed.key(), req.key());
        assert_eq!(parsed.protocols(), ["chat", "superchat"]);
        assert_eq!(parsed.extensions()[0].name, "permessage-deflate");
        assert_eq!(parsed.header("authorization"), Some(&b"Bearer t0k3n"[..]));
        let answer = parsed
            .accept(
                &AcceptOptions::new()
                    .protocol("superchat")
                    .extensions("permessage-deflate; server_no_context_takeover"),
            )
            .unwrap();
        let Ok(Status::Complete((resp, n))) = parse_response(&answer, &req, &Limits::default())
        else {
            panic!("client refused the server's answer");
        };
        assert_eq!(n, answer.len());
        assert_eq!(resp.protocol.as_deref(), Some("superchat"));
        assert_eq!(
            resp.extensions,
            vec![
                ExtensionOffer::new("permessage-deflate")
                    .with_param("server_no_context_takeover", None)
            ]
        );
    }

    #[test]
    fn validates_the_rfc_example_response() {
        let req = rfc_request();
        // A text frame "hi" that the server sent right behind the 101.
        let frame = [0x81u8, 0x02, b'h', b'i'];
        let mut buf = RFC_RESPONSE.as_bytes().to_vec();
        buf.extend_from_slice(&frame);
        let Ok(Status::Complete((resp, n))) = parse_response(&buf, &req, &Limits::default()) else {
            panic!()
        };
        assert_eq!(n, RFC_RESPONSE.len());
        assert_eq!(&buf[n..], &frame);
        assert_eq!(resp.protocol.as_deref(), Some("chat"));
        assert!(resp.extensions.is_empty());
        assert_eq!(resp.headers.len(), 4);
        assert_eq!(
            resp.headers[0],
            ("Upgrade".to_owned(), b"websocket".to_vec())
        );
    }

    #[test]
    fn partial_response_at_every_split_point() {
        let req = rfc_request();
        for k in 0..RFC_RESPONSE.len() {
            assert_eq!(parse(&RFC_RESPONSE[..k], &req), Ok(Status::Partial), "{k}");
        }
        assert!(parse(RFC_RESPONSE, &req).unwrap().is_complete());
    }

    #[test]
    fn response_validation_failures() {
        let req = rfc_request();
        let cases: Vec<(String, HandshakeError)> = vec![
            (
                RFC_RESPONSE.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                HandshakeError::AcceptMismatch,
            ),
            (
                RFC_RESPONSE.replace("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
                HandshakeError::MissingAccept,
            ),
            (
                RFC_RESPONSE.replace(
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: x\r\n",
                ),
                HandshakeError::DuplicateHeader("Sec-WebSocket-Accept"),
            ),
            (
                RFC_RESPONSE.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::MissingUpgrade,
            ),
            (
                RFC_RESPONSE.replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::MissingUpgrade,
            ),
            (
                RFC_RESPONSE.replace("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                RFC_RESPONSE.replace("Protocol: chat", "Protocol: graphql"),
                HandshakeError::ProtocolNotOffered("graphql".into()),
            ),
            (
                RFC_RESPONSE.replace("Protocol: chat", "Protocol: chat, superchat"),
                HandshakeError::ProtocolNotOffered("chat, superchat".into()),
            ),
            (
                RFC_RESPONSE.replace("Protocol: chat", "Protocol: CHAT"),
                HandshakeError::ProtocolNotOffered("CHAT".into()),
            ),
            (
                RFC_RESPONSE.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                HandshakeError::ExtensionNotOffered("permessage-deflate".into()),
            ),
            (
                RFC_RESPONSE.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: ;;\r\n\r\n"),
                HandshakeError::MalformedExtensions,
            ),
            (
                RFC_RESPONSE.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::Malformed("101 response over HTTP/1.0"),
            ),
            ("HTTP/1.1 10x Oops\r\n\r\n".into(), HandshakeError::Malformed("HTTP response head")),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(&raw, &req), Err(want), "{raw}");
        }
        // Case-insensitive tokens and names are fine; no protocol chosen is fine.
        let ok = RFC_RESPONSE
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "CONNECTION: keep-alive, upgrade")
            .replace("Sec-WebSocket-Protocol: chat\r\n", "");
        let (resp, _) = parse(&ok, &req).unwrap().complete().unwrap();
        assert_eq!(resp.protocol, None);
        // A protocol when none was offered is refused.
        let plain = ClientRequest::new("server.example.com", "/chat", RFC_KEY).unwrap();
        assert_eq!(
            parse(RFC_RESPONSE, &plain),
            Err(HandshakeError::ProtocolNotOffered("chat".into()))
        );
    }

    #[test]
    fn non_101_is_rejected_with_headers() {
        let req = rfc_request();
        let raw =
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 3\r\n\r\nno!";
        let err = parse(raw, &req).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::Rejected {
                status: 401,
                reason: "Unauthorized".into(),
                headers: vec![
                    ("WWW-Authenticate".into(), b"Bearer".to_vec()),
                    ("Content-Length".into(), b"3".to_vec()),
                ],
            }
        );
        assert_eq!(err.status(), None);
        // A server's own 426 rejection is understood too.
        let resp = HandshakeError::UnsupportedVersion.response().unwrap();
        let Err(HandshakeError::Rejected {
            status, headers, ..
        }) = parse_response(&resp, &req, &Limits::default())
        else {
            panic!()
        };
        assert_eq!(status, 426);
        assert!(headers.contains(&("Sec-WebSocket-Version".into(), b"13".to_vec())));
    }

    #[test]
    fn response_limits() {
        let req = rfc_request();
        let limits = Limits {
            max_headers: 3,
            max_bytes: 8192,
        };
        assert_eq!(
            parse_response(RFC_RESPONSE.as_bytes(), &req, &limits),
            Err(HandshakeError::TooManyHeaders)
        );
        let limits = Limits {
            max_headers: 64,
            max_bytes: 20,
        };
        assert_eq!(
            parse_response(RFC_RESPONSE.as_bytes(), &req, &limits),
            Err(HandshakeError::TooLarge { limit: 20 })
        );
    }

    #[test]
    fn url_table() {
        let key = [0u8; 16];
        let ok: &[(&str, &str, &str, bool, &str, u16)] = &[
            // url, Host header, resource, secure, connect host, port
            (
                "ws://example.com",
                "example.com",
                "/",
                false,
                "example.com",
                80,
            ),
            (
                "wss://example.com",
                "example.com",
                "/",
                true,
                "example.com",
                443,
            ),
            (
                "WSS://Example.com/",
                "Example.com",
                "/",
                true,
                "Example.com",
                443,
            ),
            (
                "ws://example.com:80/a",
                "example.com",
                "/a",
                false,
                "example.com",
                80,
            ),
            (
                "wss://example.com:443/a",
                "example.com",
                "/a",
                true,
                "example.com",
                443,
            ),
            (
                "ws://example.com:443/a",
                "example.com:443",
                "/a",
                false,
                "example.com",
                443,
            ),
            (
                "wss://example.com:8443/a/b?c=d&e",
                "example.com:8443",
                "/a/b?c=d&e",
                true,
                "example.com",
                8443,
            ),
            (
                "ws://example.com?x=1",
                "example.com",
                "/?x=1",
                false,
                "example.com",
                80,
            ),
            (
                "ws://127.0.0.1:9001",
                "127.0.0.1:9001",
                "/",
                false,
                "127.0.0.1",
                9001,
            ),
            (
                "ws://[::1]:9001/echo",
                "[::1]:9001",
                "/echo",
                false,
                "::1",
                9001,
            ),
            (
                "wss://[2001:db8::1]/",
                "[2001:db8::1]",
                "/",
                true,
                "2001:db8::1",
                443,
            ),
        ];
        for &(url, host_header, resource, secure, host, port) in ok {
            let (req, info) = ClientRequest::from_url(url, key).unwrap();
            assert_eq!(req.host(), host_header, "{url}");
            assert_eq!(req.resource(), resource, "{url}");
            assert_eq!(
                info,
                UrlInfo {
                    secure,
                    host: host.into(),
                    port
                },
                "{url}"
            );
        }
        let bad = [
            "http://example.com/",
            "example.com",
            "ws:/example.com",
            "ws://",
            "ws:///path",
            "ws://example.com/#frag",
            "ws://user:pw@example.com/",
            "ws://example.com:0/",
            "ws://example.com:65536/",
            "ws://example.com:/",
            "ws://example.com:http/",
            "ws://exa mple.com/",
            "ws://example.com/a b",
            "ws://ex\u{e4}mple.com/",
            "ws://[::1/",
            "ws://[not-v6]/",
            "ws://[::1]x/",
            "ws://example.com\r\nX: y/",
        ];
        for url in bad {
            assert!(
                matches!(
                    ClientRequest::from_url(url, key),
                    Err(HandshakeError::InvalidUrl(_))
                ),
                "{url:?}"
            );
        }
    }

    #[test]
    fn builder_refuses_misuse() {
        let req = || ClientRequest::new("h", "/", RFC_KEY).unwrap();
        for (n, v) in [
            ("Sec-WebSocket-Key", "x"),
            ("sec-websocket-version", "8"),
            ("Upgrade", "h2c"),
            ("Connection", "close"),
            ("Host", "evil"),
            ("X-A", "a\r\nX-B: b"),
            ("X-A", "a\0"),
            ("Bad:Name", "v"),
        ] {
            assert_eq!(
                req().header(n, v),
                Err(HandshakeError::InvalidHeader(n.into()))
            );
        }
        assert!(req().header("Origin", "https://a.example").is_ok());
        assert!(req().header("Authorization", "Basic Zm9vOmJhcg==").is_ok());
        assert!(matches!(
            req().protocol("a b"),
            Err(HandshakeError::InvalidProtocol(_))
        ));
        assert!(matches!(
            req().protocol(""),
            Err(HandshakeError::InvalidProtocol(_))
        ));
        assert!(matches!(
            req().protocol("a").unwrap().protocol("a"),
            Err(HandshakeError::InvalidProtocol(_))
        ));
        for bad in ["", "x;", "x\r\ny"] {
            assert!(matches!(
                req().extension_offer(bad),
                Err(HandshakeError::InvalidExtension(_))
            ));
        }
        for (host, resource) in [
            ("", "/"),
            ("a b", "/"),
            ("h\r\n", "/"),
            ("h", ""),
            ("h", "x"),
            ("h", "/a b"),
            ("h", "/#f"),
        ] {
            assert!(
                matches!(
                    ClientRequest::new(host, resource, RFC_KEY),
                    Err(HandshakeError::InvalidUrl(_))
                ),
                "{host:?} {resource:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_response_never_panics_and_chunking_does_not_matter(
            buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            prefix_101 in proptest::prelude::any::<bool>(),
            cut in 0usize..500,
        ) {
            let req = rfc_request();
            let mut input = if prefix_101 { RFC_RESPONSE.as_bytes()[..40].to_vec() } else { Vec::new() };
            input.extend_from_slice(&buf);
            let limits = Limits { max_headers: 8, max_bytes: 256 };
            let whole = parse_response(&input, &req, &limits);
            let first = parse_response(&input[..cut % (input.len() + 1)], &req, &limits);
            if first != Ok(Status::Partial) {
                proptest::prop_assert_eq!(first, whole);
            }
        }
    }

    #[cfg(feature = "getrandom")]
    #[test]
    fn generated_keys_differ() {
        assert_ne!(generate_key(), generate_key());
    }
}
