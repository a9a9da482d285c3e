//! Server role: parse and validate the client's opening handshake (RFC 6455 §4.2.1) and build the
//! answer (§4.2.2).

use base64::Engine as _;

use super::headers::{
    find_header, is_token, is_valid_header_value, list_contains, parse_extensions, parse_protocols,
    push_header, trim_ows,
};
use super::origin::split_host_port;
use super::{ExtensionOffer, HandshakeError, Limits, Status, WEBSOCKET_VERSION};

/// A validated WebSocket upgrade request, borrowing from the buffer it was parsed from.
///
/// Made by [`parse_request`]. Inspect it, then answer with [`accept`](Self::accept) or
/// [`reject`](Self::reject).
#[derive(Debug, Clone)]
pub struct UpgradeRequest<'b> {
    method: &'b str,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    headers: Vec<httparse::Header<'b>>,
    host: &'b str,
    key: &'b str,
    origin: Option<&'b str>,
}

/// Parses and validates a client's opening handshake (RFC 6455 §4.2.1) from the start of `buf`.
///
/// Returns [`Status::Partial`] while the head is incomplete: call again once more bytes have been
/// appended to the same buffer. On success returns the request and the number of bytes its head
/// took; `buf[consumed..]` (for example a frame sent right behind the request) belongs to the
/// connection.
///
/// The head is bounded by `limits`: more than `max_headers` fields, or `max_bytes` bytes without a
/// complete head, fail with `431`. Only the first `max_bytes` bytes are ever looked at, so the result
/// does not depend on how the input was split into reads. Parsing allocates one vector of at most
/// `max_headers` (and at most `max_bytes / 3 + 1`) header slots.
///
/// Checks, in order (each error names its status, see [`HandshakeError::status`]):
///
/// 1. The head is valid HTTP/1.x (`400`), the method is `GET` (§4.2.1 item 1; `405`) and the version
///    is 1.1 (`400`). The request target is in origin-form (`/path?query`) or absolute-form, without
///    a fragment (RFC 6455 §3).
/// 2. Exactly one non-empty `Host` (§4.2.1 item 2, RFC 9112 §3.2; `400`).
/// 3. `Upgrade` lists `websocket` and `Connection` lists `Upgrade`, case-insensitively
///    (§4.2.1 items 3 and 4; `400`).
/// 4. Exactly one `Sec-WebSocket-Version`, equal to `13` (§4.2.1 item 6; `426` if missing or other).
/// 5. Exactly one `Sec-WebSocket-Key` that base64-decodes to 16 bytes (§4.2.1 item 5; `400`).
/// 6. At most one `Origin`, in ASCII (RFC 6454 §7.3; `400`).
/// 7. No body: no `Transfer-Encoding` and no non-zero `Content-Length` (`400`), since every byte after
///    the head is read as WebSocket frames.
///
/// # Errors
///
/// A [`HandshakeError`] whose [`status`](HandshakeError::status) and
/// [`response`](HandshakeError::response) give the answer to send before closing.
pub fn parse_request<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Status<(UpgradeRequest<'b>, usize)>, HandshakeError> {
    let window = buf.get(..limits.max_bytes).unwrap_or(buf);
    // A header line takes at least 3 bytes ("a:\n"), so more slots than that could never be used.
    let slots = limits.max_headers.min(limits.max_bytes / 3 + 1);
    let mut headers = vec![httparse::EMPTY_HEADER; slots];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
            return Err(HandshakeError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(e) => return Err(map_httparse_error(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed("request line"));
    };
    let count = req.headers.len();
    headers.truncate(count);
    let req = validate_request(method, target, version, headers)?;
    Ok(Status::Complete((req, consumed)))
}

/// The checks of [`parse_request`] on a head that is already split into its parts (by httparse
/// here, or by another HTTP server: see `ServerHandshake::from_parts`). `version` is the minor
/// version of HTTP/1.x.
pub(crate) fn validate_request<'b>(
    method: &'b str,
    target: &'b str,
    version: u8,
    headers: Vec<httparse::Header<'b>>,
) -> Result<UpgradeRequest<'b>, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let (path, query) = split_target(target)?;

    let pairs = || headers.iter().map(|h| (h.name, h.value));
    let host = match single(&headers, "Host")? {
        None => return Err(HandshakeError::MissingHost),
        Some(v) => {
            let v = trim_ows(v);
            if v.is_empty() {
                return Err(HandshakeError::MissingHost);
            }
            // RFC 9112 §3.2: a Host that is not `host[:port]` is answered with 400.
            ascii_str(v)
                .filter(|h| split_host_port(h).is_some())
                .ok_or(HandshakeError::Malformed("Host header"))?
        }
    };
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("Upgrade") && list_contains(h.value, "websocket"))
    {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("Connection") && list_contains(h.value, "upgrade"))
    {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match single(&headers, "Sec-WebSocket-Version")? {
        Some(v) if trim_ows(v) == WEBSOCKET_VERSION.as_bytes() => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = match single(&headers, "Sec-WebSocket-Key")? {
        None => return Err(HandshakeError::MissingKey),
        Some(v) => {
            let v = trim_ows(v);
            if !is_valid_key(v) {
                return Err(HandshakeError::InvalidKey);
            }
            ascii_str(v).ok_or(HandshakeError::InvalidKey)?
        }
    };
    let origin = match single(&headers, "Origin")? {
        None => None,
        Some(v) => Some(ascii_str(trim_ows(v)).ok_or(HandshakeError::Malformed("Origin header"))?),
    };
    if find_header(pairs(), "Transfer-Encoding").is_some()
        || headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("Content-Length") && trim_ows(h.value) != b"0")
    {
        return Err(HandshakeError::Malformed(
            "an upgrade request must not have a body",
        ));
    }

    Ok(UpgradeRequest {
        method,
        target,
        path,
        query,
        headers,
        host,
        key,
        origin,
    })
}

impl<'b> UpgradeRequest<'b> {
    /// The request method (always `GET` once validated).
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request target as sent: `/chat?room=1`, or an absolute URI.
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The path part of the target, without the query: `/chat`. Never empty: an absolute-form target
    /// without a path gives `/`.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The query part of the target, without the `?`, if there is one: `room=1`.
    pub fn query(&self) -> Option<&'b str> {
        self.query
    }

    /// Every header field as `(name, value)`, in the order received. Values are raw bytes, without
    /// surrounding whitespace.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers(), name)
    }

    /// The `Host` header (the server's authority as the client sees it, §4.2.1 item 2).
    pub fn host(&self) -> &'b str {
        self.host
    }

    /// The `Sec-WebSocket-Key` header, validated to be 16 base64-encoded bytes.
    pub fn key(&self) -> &'b str {
        self.key
    }

    /// The `Origin` header, if sent (browsers always send it, RFC 6455 §4.1 item 8 and §10.2; other
    /// clients usually do not). See [`OriginPolicy`](super::OriginPolicy).
    pub fn origin(&self) -> Option<&'b str> {
        self.origin
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in its order of preference
    /// (§4.1 item 10). Several header lines are concatenated; elements that are not tokens are
    /// skipped.
    pub fn protocols(&self) -> Vec<&'b str> {
        parse_protocols(self.headers_named("Sec-WebSocket-Protocol"))
    }

    /// The extensions the client offered in `Sec-WebSocket-Extensions` (§9.1), in order. A malformed
    /// header is ignored as a whole (empty list): the connection then simply runs without extensions.
    pub fn extensions(&self) -> Vec<ExtensionOffer> {
        parse_extensions(self.headers_named("Sec-WebSocket-Extensions")).unwrap_or_default()
    }

    /// Builds the `101 Switching Protocols` response that accepts this request (RFC 6455 §4.2.2
    /// item 5): `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Accept`, then the chosen
    /// subprotocol and extensions and the extra headers of `opts`.
    ///
    /// # Errors
    ///
    /// * [`HandshakeError::InvalidProtocol`] if `opts.protocol` is not one the client offered
    ///   (§4.2.2 item 5.5: the server must pick one of the client's values).
    /// * [`HandshakeError::InvalidExtension`] if `opts.extensions` does not follow the §9.1 grammar,
    ///   or names an extension the client did not offer.
    /// * [`HandshakeError::InvalidHeader`] if an extra header has an invalid name or value, or is one
    ///   this function writes itself (`Upgrade`, `Connection`, `Sec-WebSocket-*`), or would give the
    ///   `101` a body (`Content-Length`, `Transfer-Encoding`).
    pub fn accept(&self, opts: &AcceptOptions) -> Result<Vec<u8>, HandshakeError> {
        self.accept_response(opts).map(|r| r.encode())
    }

    /// Builds a response that refuses this request; the same as [`reject_response`].
    pub fn reject(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        reject_response(status, headers, body)
    }

    fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// What [`UpgradeRequest::accept`] adds to the `101` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptOptions {
    /// The subprotocol chosen among [`UpgradeRequest::protocols`], sent as `Sec-WebSocket-Protocol`.
    pub protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` response value (the extension layer's negotiation result),
    /// e.g. `permessage-deflate; server_no_context_takeover`.
    pub extensions: Option<String>,
    /// Extra header fields, e.g. `Set-Cookie`.
    pub headers: Vec<(String, String)>,
}

impl AcceptOptions {
    /// No subprotocol, no extensions, no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses a subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Sets the `Sec-WebSocket-Extensions` response value.
    pub fn extensions(mut self, value: impl Into<String>) -> Self {
        self.extensions = Some(value.into());
        self
    }

    /// Adds an extra header field (validated by [`UpgradeRequest::accept`]).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Builds a complete HTTP/1.1 response that refuses an upgrade: status line, `Connection: close`,
/// `Content-Length`, the given headers, and `body`.
///
/// `status` should be a final status (`200..=599`, typically 4xx); anything else is replaced by
/// `500`. Headers with an invalid name or value (see
/// [`is_valid_header_value`](super::is_valid_header_value)), and `Connection`, `Content-Length` and
/// `Transfer-Encoding` (which this function writes itself), are left out.
pub fn reject_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let status = if (200..=599).contains(&status) {
        status
    } else {
        500
    };
    build_rejection(status, headers, body)
}

/// The reason phrase for a status code (RFC 9110 §15), or `""` for one this crate does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Shared by [`reject_response`] and [`HandshakeError::response`].
pub(crate) fn build_rejection(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    // RFC 9110 §7.8: a sender of Upgrade also sends the "upgrade" connection option.
    let upgrade = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("Upgrade"));
    push_header(
        &mut out,
        "Connection",
        if upgrade { "Upgrade, close" } else { "close" },
    );
    push_header(&mut out, "Content-Length", &body.len().to_string());
    for (name, value) in headers {
        if check_extra_header(name, value, RESERVED_IN_REJECTION).is_ok() {
            push_header(&mut out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

pub(crate) const RESERVED_IN_101: &[&str] = &[
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Version",
    "Content-Length",
    "Transfer-Encoding",
];

const RESERVED_IN_REJECTION: &[&str] = &["Connection", "Content-Length", "Transfer-Encoding"];

/// Checks an application-supplied header: a token name, a safe value, and not a reserved name.
pub(crate) fn check_extra_header(
    name: &str,
    value: &str,
    reserved: &[&str],
) -> Result<(), HandshakeError> {
    if !is_token(name)
        || !is_valid_header_value(value)
        || reserved.iter().any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(HandshakeError::InvalidHeader(name.to_owned()));
    }
    Ok(())
}

/// The value of the only header named `name`; `DuplicateHeader` if there are several.
fn single<'b>(
    headers: &[httparse::Header<'b>],
    name: &'static str,
) -> Result<Option<&'b [u8]>, HandshakeError> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        if found.is_some() {
            return Err(HandshakeError::DuplicateHeader(name));
        }
        found = Some(h.value);
    }
    Ok(found)
}

/// `v` as `&str` if it is visible ASCII and spaces only.
fn ascii_str(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// A `Sec-WebSocket-Key` is the base64 of 16 bytes: 24 characters, ending in `==` (§4.1 item 7).
fn is_valid_key(v: &[u8]) -> bool {
    let mut out = [0u8; 18];
    v.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(v, &mut out),
            Ok(16)
        )
}

/// Splits an origin-form or absolute-form target into path and query (RFC 9112 §3.2.1, §3.2.2).
fn split_target(target: &str) -> Result<(&str, Option<&str>), HandshakeError> {
    if target.contains('#') {
        // RFC 6455 §3: fragments are meaningless in WebSocket URIs and must not be used.
        return Err(HandshakeError::Malformed("request target has a fragment"));
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        // absolute-form: scheme "://" authority [path-abempty] ["?" query]
        let Some((scheme, rest)) = target.split_once("://") else {
            return Err(HandshakeError::Malformed("request target"));
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(HandshakeError::Malformed("request target"));
        }
        let start = rest.find(['/', '?']).unwrap_or(rest.len());
        if start == 0 {
            return Err(HandshakeError::Malformed("request target"));
        }
        rest.get(start..).unwrap_or("")
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    Ok((if path.is_empty() { "/" } else { path }, query))
}

fn map_httparse_error(e: httparse::Error) -> HandshakeError {
    use httparse::Error as H;
    match e {
        H::TooManyHeaders => HandshakeError::TooManyHeaders,
        H::HeaderName => HandshakeError::Malformed("header name"),
        H::HeaderValue => HandshakeError::Malformed("header value"),
        H::NewLine => HandshakeError::Malformed("line ending"),
        H::Token => HandshakeError::Malformed("method"),
        H::Version => HandshakeError::Malformed("HTTP version"),
        H::Status => HandshakeError::Malformed("status"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example request of RFC 6455 §1.3 (with the resource of §1.2).
    const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(buf: &[u8]) -> Result<Status<(UpgradeRequest<'_>, usize)>, HandshakeError> {
        parse_request(buf, &Limits::default())
    }

    fn complete(buf: &[u8]) -> (UpgradeRequest<'_>, usize) {
        match parse(buf) {
            Ok(Status::Complete(c)) => c,
            other => panic!("expected complete, got {other:?}"),
        }
    }

    fn err(buf: &str) -> HandshakeError {
        match parse(buf.as_bytes()) {
            Err(e) => e,
            other => panic!("expected error for {buf:?}, got {other:?}"),
        }
    }

    /// RFC_REQUEST with the header line starting with `old` replaced by `new` (removed if empty).
    fn with_header(old: &str, new: &str) -> String {
        let mut out = String::new();
        for line in RFC_REQUEST.split_inclusive("\r\n") {
            if line.starts_with(old) {
                if !new.is_empty() {
                    out.push_str(new);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(line);
            }
        }
        out
    }

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn rfc_example_request_parses() {
        let (req, n) = complete(RFC_REQUEST.as_bytes());
        assert_eq!(n, RFC_REQUEST.len());
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), None);
        assert_eq!(req.host(), "server.example.com");
        assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.protocols(), ["chat", "superchat"]);
        assert!(req.extensions().is_empty());
        assert_eq!(req.headers().len(), 7);
        assert_eq!(req.header("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(req.header("X-Nope"), None);
    }

    #[test]
    fn rfc_example_accept_response() {
        let (req, _) = complete(RFC_REQUEST.as_bytes());
        let resp = text(req.accept(&AcceptOptions::new().protocol("chat")).unwrap());
        assert_eq!(
            resp,
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn accept_with_extensions_and_extra_headers() {
        let raw = with_header(
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-other",
        );
        let (req, _) = complete(raw.as_bytes());
        assert_eq!(req.extensions().len(), 2);
        let opts = AcceptOptions::new()
            .extensions("permessage-deflate; server_no_context_takeover")
            .header("Set-Cookie", "a=b");
        let resp = text(req.accept(&opts).unwrap());
        assert!(resp.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        ));
        assert!(resp.ends_with("\r\nSet-Cookie: a=b\r\n\r\n"));
        assert!(!resp.contains("Sec-WebSocket-Protocol"));
        // An empty extension value means "none": no header.
        let resp = text(req.accept(&AcceptOptions::new().extensions("")).unwrap());
        assert!(!resp.contains("Extensions"));
    }

    #[test]
    fn accept_refuses_local_misuse() {
        let (req, _) = complete(RFC_REQUEST.as_bytes());
        assert_eq!(
            req.accept(&AcceptOptions::new().protocol("graphql")),
            Err(HandshakeError::InvalidProtocol("graphql".into()))
        );
        assert_eq!(
            req.accept(&AcceptOptions::new().extensions("permessage-deflate")),
            Err(HandshakeError::InvalidExtension(
                "permessage-deflate".into()
            ))
        );
        assert!(matches!(
            req.accept(&AcceptOptions::new().extensions("bad;")),
            Err(HandshakeError::InvalidExtension(_))
        ));
        for (n, v) in [
            ("X-Ok", "a\r\nX-Injected: 1"),
            ("Bad Name", "v"),
            ("", "v"),
            ("sec-websocket-accept", "forged"),
            ("Connection", "close"),
            ("Content-Length", "5"),
        ] {
            assert_eq!(
                req.accept(&AcceptOptions::new().header(n, v)),
                Err(HandshakeError::InvalidHeader(n.into())),
                "{n}: {v}"
            );
        }
    }

    #[test]
    fn query_and_absolute_form_targets() {
        let raw = RFC_REQUEST.replace("GET /chat ", "GET /chat?room=1&x=%20 ");
        let (req, _) = complete(raw.as_bytes());
        assert_eq!((req.path(), req.query()), ("/chat", Some("room=1&x=%20")));
        let raw = RFC_REQUEST.replace("GET /chat ", "GET ws://server.example.com/a/b?q ");
        let (req, _) = complete(raw.as_bytes());
        assert_eq!((req.path(), req.query()), ("/a/b", Some("q")));
        let raw = RFC_REQUEST.replace("GET /chat ", "GET http://server.example.com ");
        let (req, _) = complete(raw.as_bytes());
        assert_eq!((req.path(), req.query()), ("/", None));
        let raw = RFC_REQUEST.replace("GET /chat ", "GET /? ");
        let (req, _) = complete(raw.as_bytes());
        assert_eq!((req.path(), req.query()), ("/", Some("")));
    }

    #[test]
    fn header_lists_are_case_insensitive_and_span_lines() {
        let raw = with_header("Connection", "connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "UPGRADE: WebSocket")
            .replace(
                "Sec-WebSocket-Protocol: chat, superchat",
                "Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: superchat",
            );
        let (req, _) = complete(raw.as_bytes());
        assert_eq!(req.protocols(), ["chat", "superchat"]);
        // A second Connection line carrying the token also counts.
        let raw = with_header(
            "Connection",
            "Connection: keep-alive\r\nConnection: Upgrade",
        );
        complete(raw.as_bytes());
    }

    #[test]
    fn malformed_extension_offer_is_ignored_not_fatal() {
        let raw = with_header("Origin", "Sec-WebSocket-Extensions: permessage-deflate;;");
        let (req, _) = complete(raw.as_bytes());
        assert!(req.extensions().is_empty());
        assert!(matches!(
            req.accept(&AcceptOptions::new().extensions("permessage-deflate")),
            Err(HandshakeError::InvalidExtension(_))
        ));
    }

    #[test]
    fn every_validation_failure_with_its_status() {
        use HandshakeError as E;
        let cases: Vec<(String, E, u16)> = vec![
            (RFC_REQUEST.replace("GET", "POST"), E::MethodNotAllowed, 405),
            (RFC_REQUEST.replace("GET", "get"), E::MethodNotAllowed, 405),
            (
                RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0"),
                E::HttpVersion,
                400,
            ),
            (
                RFC_REQUEST.replace("HTTP/1.1", "HTTP/2.0"),
                E::Malformed("HTTP version"),
                400,
            ),
            (
                RFC_REQUEST.replace("GET /chat", "GET chat"),
                E::Malformed("request target"),
                400,
            ),
            (
                RFC_REQUEST.replace("GET /chat", "GET *"),
                E::Malformed("request target"),
                400,
            ),
            (
                RFC_REQUEST.replace("GET /chat", "GET /chat#x"),
                E::Malformed("request target has a fragment"),
                400,
            ),
            (with_header("Host", ""), E::MissingHost, 400),
            (with_header("Host", "Host:"), E::MissingHost, 400),
            (
                with_header("Host", "Host: a\r\nhost: b"),
                E::DuplicateHeader("Host"),
                400,
            ),
            (with_header("Upgrade", ""), E::MissingUpgrade, 400),
            (
                with_header("Upgrade", "Upgrade: h2c"),
                E::MissingUpgrade,
                400,
            ),
            (
                with_header("Connection", ""),
                E::MissingConnectionUpgrade,
                400,
            ),
            (
                with_header("Connection", "Connection: keep-alive"),
                E::MissingConnectionUpgrade,
                400,
            ),
            (with_header("Sec-WebSocket-Key", ""), E::MissingKey, 400),
            (
                with_header("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ="),
                E::InvalidKey,
                400,
            ),
            (
                with_header(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: not base64 at all!!!!!!",
                ),
                E::InvalidKey,
                400,
            ),
            (
                // 17 bytes
                with_header(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
                ),
                E::InvalidKey,
                400,
            ),
            (
                with_header(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                ),
                E::DuplicateHeader("Sec-WebSocket-Key"),
                400,
            ),
            (
                with_header("Sec-WebSocket-Version", ""),
                E::UnsupportedVersion,
                426,
            ),
            (
                with_header("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
                E::UnsupportedVersion,
                426,
            ),
            (
                with_header(
                    "Sec-WebSocket-Version",
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13",
                ),
                E::DuplicateHeader("Sec-WebSocket-Version"),
                400,
            ),
            (
                with_header("Origin", "Origin: a\r\nOrigin: b"),
                E::DuplicateHeader("Origin"),
                400,
            ),
            (
                with_header("Origin", "Content-Length: 5"),
                E::Malformed("an upgrade request must not have a body"),
                400,
            ),
            (
                with_header("Origin", "Transfer-Encoding: chunked"),
                E::Malformed("an upgrade request must not have a body"),
                400,
            ),
            (
                with_header("Origin", "Bad Header: x"),
                E::Malformed("header name"),
                400,
            ),
            ("G@T / HTTP/1.1\r\n\r\n".into(), E::Malformed("method"), 400),
        ];
        for (raw, want, status) in cases {
            let got = err(&raw);
            assert_eq!(got, want, "{raw:?}");
            assert_eq!(got.status(), Some(status), "{raw:?}");
        }
        // Content-Length: 0 is harmless.
        complete(with_header("Origin", "Content-Length: 0").as_bytes());
    }

    #[test]
    fn malformed_host_or_non_ascii_origin_is_400() {
        let raw = with_header("Origin", "Origin: http://\u{e9}.example").into_bytes();
        assert_eq!(
            parse(&raw).err(),
            Some(HandshakeError::Malformed("Origin header"))
        );
        for host in ["\u{e9}.example", "a b", "a/b", "a:b", "[::1", "user@a"] {
            let raw = with_header("Host", &format!("Host: {host}")).into_bytes();
            assert_eq!(
                parse(&raw).err(),
                Some(HandshakeError::Malformed("Host header")),
                "{host}"
            );
        }
        for host in [
            "a.example:8080",
            "[::1]:9001",
            "127.0.0.1",
            "my_host.local.",
        ] {
            let raw = with_header("Host", &format!("Host: {host}")).into_bytes();
            assert_eq!(complete(&raw).0.host(), host);
        }
    }

    #[test]
    fn partial_at_every_split_point_then_complete_leaves_trailing_bytes() {
        // A masked frame that arrived in the same read as the head.
        let frame = [
            0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut buf = RFC_REQUEST.as_bytes().to_vec();
        buf.extend_from_slice(&frame);
        let head = RFC_REQUEST.len();
        for k in 0..head {
            assert_eq!(
                parse(&buf[..k]).map(|s| s.is_partial()),
                Ok(true),
                "prefix of {k} bytes"
            );
        }
        for k in head..=buf.len() {
            let (req, n) = complete(&buf[..k]);
            assert_eq!(n, head);
            assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        }
        let (_, n) = complete(&buf);
        assert_eq!(&buf[n..], &frame);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits {
            max_headers: 8,
            ..Limits::default()
        };
        // The RFC request has 7 headers.
        assert!(parse_request(RFC_REQUEST.as_bytes(), &limits).is_ok());
        let raw = with_header("Origin", "Origin: http://example.com\r\nX-A: 1\r\nX-B: 2");
        let e = parse_request(raw.as_bytes(), &limits).unwrap_err();
        assert_eq!(e, HandshakeError::TooManyHeaders);
        assert_eq!(e.status(), Some(431));
    }

    #[test]
    fn too_large_is_431_and_exact_fit_is_fine() {
        let limits = Limits {
            max_bytes: RFC_REQUEST.len(),
            ..Limits::default()
        };
        // Exactly at the limit, with trailing frame bytes beyond it.
        let mut buf = RFC_REQUEST.as_bytes().to_vec();
        buf.extend_from_slice(&[0x81, 0x80, 0, 0, 0, 0]);
        assert!(matches!(
            parse_request(&buf, &limits),
            Ok(Status::Complete((_, n))) if n == RFC_REQUEST.len()
        ));
        // One byte longer head: partial up to the limit, then 431.
        let raw = RFC_REQUEST.replace("/chat", "/chat2");
        let raw = raw.as_bytes();
        assert!(
            parse_request(&raw[..limits.max_bytes], &limits)
                .unwrap()
                .is_partial()
        );
        let e = parse_request(raw, &limits).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::TooLarge {
                limit: RFC_REQUEST.len()
            }
        );
        assert_eq!(e.status(), Some(431));
        // A peer that never ends its head.
        let endless = vec![b'a'; 9000];
        let mut junk = b"GET / HTTP/1.1\r\nX: ".to_vec();
        junk.extend_from_slice(&endless);
        assert_eq!(
            parse(&junk).unwrap_err(),
            HandshakeError::TooLarge { limit: 8192 }
        );
    }

    #[test]
    fn reject_response_contents() {
        let (req, _) = complete(RFC_REQUEST.as_bytes());
        let resp = text(req.reject(
            404,
            &[
                ("Content-Type", "text/plain"),
                ("X-Bad", "a\nb"),
                ("Content-Length", "1"),
            ],
            b"nope",
        ));
        assert_eq!(
            resp,
            "HTTP/1.1 404 Not Found\r\n\
             Connection: close\r\n\
             Content-Length: 4\r\n\
             Content-Type: text/plain\r\n\r\nnope"
        );
        assert!(text(reject_response(101, &[], b"")).starts_with("HTTP/1.1 500 "));
        assert!(text(reject_response(499, &[], b"")).starts_with("HTTP/1.1 499 \r\n"));
    }

    /// A comparable summary of a parse result.
    fn summary(r: Result<Status<(UpgradeRequest<'_>, usize)>, HandshakeError>) -> String {
        match r {
            Ok(Status::Partial) => "partial".into(),
            Ok(Status::Complete((req, n))) => format!("{n} {req:?}"),
            Err(e) => format!("{e:?}"),
        }
    }

    /// Feeds `buf` as a growing buffer split at `cuts`, as an adapter reading in chunks would, and
    /// returns the first non-partial result (or partial if the input ran out).
    fn fed_in_chunks(buf: &[u8], cuts: &[usize], limits: &Limits) -> String {
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (buf.len() + 1)).collect();
        ends.push(buf.len());
        ends.sort_unstable();
        for end in ends {
            let r = parse_request(&buf[..end], limits);
            if !matches!(r, Ok(Status::Partial)) {
                return summary(r);
            }
        }
        "partial".into()
    }

    fn request_like() -> impl Strategy<Value = Vec<u8>> {
        let valid = RFC_REQUEST.as_bytes().to_vec();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            // Mutations of a valid request: flip, insert and delete bytes, append junk.
            (
                proptest::collection::vec((0usize..400, any::<u8>(), 0u8..3), 0..6),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(move |(edits, tail)| {
                    let mut v = valid.clone();
                    for (at, byte, op) in edits {
                        let at = at % (v.len() + 1);
                        match op {
                            0 if at < v.len() => v[at] = byte,
                            1 => v.insert(at, byte),
                            _ if at < v.len() => {
                                v.remove(at);
                            }
                            _ => {}
                        }
                    }
                    v.extend(tail);
                    v
                }),
        ]
    }

    proptest! {
        #[test]
        fn parse_request_never_panics_and_chunking_does_not_matter(
            buf in request_like(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_headers in 0usize..12,
            max_bytes in prop_oneof![Just(8192usize), 0usize..300],
        ) {
            let limits = Limits { max_headers, max_bytes };
            let whole = summary(parse_request(&buf, &limits));
            let chunked = fed_in_chunks(&buf, &cuts, &limits);
            prop_assert_eq!(whole, chunked);
        }
    }
}
