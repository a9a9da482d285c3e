//! The HTTP/1.1 upgrade handshake that opens a WebSocket connection (RFC 6455 §4), in both roles.
//!
//! ```text
//!  client                                                server
//!  ClientRequest::encode() ── GET / HTTP/1.1, Upgrade ──► parse_request(buf) -> UpgradeRequest
//!                                                         OriginPolicy::check(&req)?   (optional)
//!  parse_response(buf, &req) ◄── 101 / 4xx ───────────── req.accept(&opts) | req.reject(..)
//!        │                                                     │
//!        └── bytes after the head belong to the connection ────┘
//! ```
//!
//! What it does:
//!
//! * Server role ([`parse_request`]): parses a request head with `httparse` into a borrowed
//!   [`UpgradeRequest`] and checks every requirement of §4.2.1 — `GET`, HTTP/1.1, `Host`,
//!   `Upgrade: websocket`, `Connection: Upgrade`, a `Sec-WebSocket-Key` of 16 base64 bytes and
//!   `Sec-WebSocket-Version: 13`. The application inspects path, query, headers, origin, offered
//!   subprotocols and extensions, then answers with [`UpgradeRequest::accept`] (the `101` of §4.2.2)
//!   or [`UpgradeRequest::reject`]. Every [`HandshakeError`] a request can cause knows the status to
//!   answer with ([`HandshakeError::status`]) and can build that response
//!   ([`HandshakeError::response`]).
//! * Client role ([`ClientRequest`], [`parse_response`]): builds the request of §4.1 (from a
//!   `ws://`/`wss://` URL if wanted) and validates the server's answer (§4.1, the numbered list after
//!   "the client MUST validate the server's response"): status `101`, `Upgrade`, `Connection`,
//!   `Sec-WebSocket-Accept`, and that the chosen subprotocol and extensions were offered.
//! * [`OriginPolicy`] checks the `Origin` header (§4.2.1 item 7, §10.2) against the `Host` header or an
//!   allow-list.
//!
//! What it does not do: any I/O, TLS, DNS, redirects (a `3xx` answer is reported as
//! [`HandshakeError::Rejected`]; following it is the caller's choice, §4.1), HTTP authentication,
//! cookies, proxies (`CONNECT`), HTTP/2 or HTTP/3 WebSockets (RFC 8441, RFC 9220), or the meaning of
//! extension parameters (the extension layer negotiates those; this module only parses and checks names).
//! Request and response bodies are not read: a request announcing one is refused, and the body of a
//! rejection is left in the caller's buffer.
//!
//! "Need more bytes" is not an error: the parsers return [`Status::Partial`] until a whole head has
//! arrived, and [`Status::Complete`] with the number of bytes the head used. Bytes after that (a frame
//! that arrived with the head) belong to the connection and are never touched. The head is bounded by
//! [`Limits`]; beyond it the parsers fail with `431`.

mod client;
mod flow;
mod headers;
mod origin;
mod server;

use std::fmt;

use base64::Engine as _;
use sha1::{Digest, Sha1};

#[cfg(feature = "getrandom")]
pub use client::generate_key;
pub use client::{ClientRequest, ServerResponse, UrlInfo, parse_response};
pub use flow::{Agreed, ClientHandshake, HandshakeConfig, HttpResponse, ServerHandshake};
pub use headers::{
    ExtensionOffer, find_header, is_token, is_valid_header_value, list_contains, parse_extensions,
    parse_protocols, render_extensions,
};
pub use origin::OriginPolicy;
pub use server::{AcceptOptions, UpgradeRequest, parse_request, reason_phrase, reject_response};

/// The GUID appended to `Sec-WebSocket-Key` before hashing (RFC 6455 §1.3, §4.2.2 item 5.4).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this crate speaks (RFC 6455 §4.1 item 9, §11.6).
pub const WEBSOCKET_VERSION: &str = "13";

/// The outcome of feeding bytes to a parser: either more bytes are needed, or a value is ready.
///
/// Running out of input is not an error (the same convention as `httparse::Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The head is not complete yet: call again with more bytes (the same buffer, extended).
    Partial,
    /// The head is complete.
    Complete(T),
}

impl<T> Status<T> {
    /// Whether more bytes are needed.
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }

    /// Whether a value is ready.
    pub fn is_complete(&self) -> bool {
        matches!(self, Status::Complete(_))
    }

    /// The value, if complete.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Partial => None,
            Status::Complete(t) => Some(t),
        }
    }
}

/// Bounds on a handshake head, applied by [`parse_request`] and [`parse_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most header fields a head may have (default 64). More fail with `431`.
    pub max_headers: usize,
    /// The most bytes a head may take, request line and final empty line included (default 8 KiB).
    /// A buffer this long without a complete head fails with `431`.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 64,
            max_bytes: 8 * 1024,
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2 item 5.4): the
/// base64 of the SHA-1 of the key followed by [`WEBSOCKET_GUID`].
///
/// ```
/// # use tidings_core::handshake::accept_key;
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Why a handshake failed.
///
/// Three families share this type:
///
/// * the client's request was not a valid opening handshake (server role): these have a
///   [`status`](Self::status) and a ready [`response`](Self::response);
/// * the server's response was not a valid answer (client role): the client fails the connection
///   (RFC 6455 §4.1) and there is nothing to answer;
/// * local misuse: the application asked for something the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    // ---- the peer's head, either role ----
    /// The head is not valid HTTP/1.x, or a field in it is unusable; the text says which part.
    /// `400` when it is a request.
    Malformed(&'static str),
    /// The head has more header fields than [`Limits::max_headers`]. `431` (RFC 6585 §5).
    TooManyHeaders,
    /// The head is longer than [`Limits::max_bytes`]. `431` (RFC 6585 §5).
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },

    // ---- the client's request (server role) ----
    /// The method is not `GET` (RFC 6455 §4.2.1 item 1). `405`, with `Allow: GET`.
    MethodNotAllowed,
    /// The request is HTTP/1.0 (RFC 6455 §4.2.1 item 1 requires HTTP/1.1 or higher). `400`: `505`
    /// is for an unsupported *major* version (RFC 9110 §15.6.6), and 1.0 shares ours.
    HttpVersion,
    /// There is no `Host` header, or it is empty (RFC 6455 §4.2.1 item 2, RFC 9112 §3.2). `400`.
    MissingHost,
    /// A header that must appear at most once appeared more often (RFC 9112 §3.2 for `Host`,
    /// RFC 6455 §11.3.1 and §11.3.5 for the key and version, RFC 6454 §7.3 for `Origin`). `400`.
    DuplicateHeader(&'static str),
    /// `Upgrade` is missing or does not list `websocket` (RFC 6455 §4.2.1 item 3; §4.1 item 2 of
    /// the client's checks). `400` when it is a request.
    MissingUpgrade,
    /// `Connection` is missing or does not list `Upgrade` (RFC 6455 §4.2.1 item 4; §4.1 item 3 of the
    /// client's checks). `400` when it is a request.
    MissingConnectionUpgrade,
    /// There is no `Sec-WebSocket-Key` (RFC 6455 §4.2.1 item 5). `400`.
    MissingKey,
    /// `Sec-WebSocket-Key` does not base64-decode to exactly 16 bytes (RFC 6455 §4.1 item 7). `400`.
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not `13` (RFC 6455 §4.2.1 item 6, §4.4). `426`, with
    /// `Sec-WebSocket-Version: 13` so that the client can retry with a version we speak.
    UnsupportedVersion,
    /// The `Origin` was refused by an [`OriginPolicy`] (RFC 6455 §4.2.2 item 4, §10.2). `403`.
    OriginRefused,

    // ---- the server's response (client role) ----
    /// The server answered with a status other than `101` (RFC 6455 §4.1: the handshake fails; a
    /// `3xx` may be followed by the caller, `401` may be retried with credentials).
    Rejected {
        /// The status code.
        status: u16,
        /// The reason phrase (may be empty).
        reason: String,
        /// Every header of the response, in order. The body, if any, is not read.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// The `101` response has no `Sec-WebSocket-Accept` (RFC 6455 §4.1, client check 4).
    MissingAccept,
    /// `Sec-WebSocket-Accept` is not the hash of the key we sent (RFC 6455 §4.1, client check 4).
    AcceptMismatch,
    /// The server chose a subprotocol the client did not offer (RFC 6455 §4.1, client check 6).
    ProtocolNotOffered(String),
    /// The server answered with an extension the client did not offer (RFC 6455 §4.1, client check 5).
    ExtensionNotOffered(String),
    /// The server accepted an offered extension with parameters the client cannot accept, e.g. a
    /// permessage-deflate window larger than asked for (RFC 7692 §7.1; RFC 6455 §9.1).
    ExtensionRefused(String),
    /// A `Sec-WebSocket-Extensions` value does not follow the grammar of RFC 6455 §9.1. The client
    /// fails the handshake on it; a server ignores a malformed offer instead.
    MalformedExtensions,

    // ---- local misuse ----
    /// A header name is not a token, or a value contains CR, LF, NUL or another control character,
    /// or it is one the handshake sets itself. The field is named.
    InvalidHeader(String),
    /// The subprotocol passed to [`UpgradeRequest::accept`] was not offered by the client
    /// (RFC 6455 §4.2.2 item 5.5), or one passed to [`ClientRequest::protocol`] is not a token or
    /// is offered twice (§4.1 item 10).
    InvalidProtocol(String),
    /// An extension named in [`AcceptOptions::extensions`] was not offered by the client
    /// (RFC 6455 §9.1), or the value does not follow the §9.1 grammar.
    InvalidExtension(String),
    /// The URL or the host/resource given to [`ClientRequest`] is not usable (RFC 6455 §3); the text
    /// says why.
    InvalidUrl(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with, or `None` for errors that do not come from a
    /// client's request (client-side and local-misuse errors).
    pub fn status(&self) -> Option<u16> {
        use HandshakeError as E;
        match self {
            E::Malformed(_)
            | E::HttpVersion
            | E::MissingHost
            | E::DuplicateHeader(_)
            | E::MissingUpgrade
            | E::MissingConnectionUpgrade
            | E::MissingKey
            | E::InvalidKey => Some(400),
            E::OriginRefused => Some(403),
            E::MethodNotAllowed => Some(405),
            E::UnsupportedVersion => Some(426),
            E::TooManyHeaders | E::TooLarge { .. } => Some(431),
            E::Rejected { .. }
            | E::MissingAccept
            | E::AcceptMismatch
            | E::ProtocolNotOffered(_)
            | E::ExtensionNotOffered(_)
            | E::ExtensionRefused(_)
            | E::MalformedExtensions
            | E::InvalidHeader(_)
            | E::InvalidProtocol(_)
            | E::InvalidExtension(_)
            | E::InvalidUrl(_) => None,
        }
    }

    /// The complete HTTP response a server sends for this error (status line, headers including
    /// `Connection: close` and `Content-Length`, and a short plain-text body), or `None` where
    /// [`status`](Self::status) is `None`.
    ///
    /// A `426` carries `Sec-WebSocket-Version: 13` (RFC 6455 §4.4) and `Upgrade: websocket`
    /// (RFC 9110 §15.5.22); a `405` carries `Allow: GET` (RFC 9110 §15.5.6).
    pub fn response(&self) -> Option<Vec<u8>> {
        self.http_response().map(|r| r.encode())
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HandshakeError as E;
        match self {
            E::Malformed(what) => write!(f, "malformed handshake: {what}"),
            E::TooManyHeaders => f.write_str("too many header fields"),
            E::TooLarge { limit } => write!(f, "handshake head larger than {limit} bytes"),
            E::MethodNotAllowed => f.write_str("a WebSocket upgrade must use GET"),
            E::HttpVersion => f.write_str("a WebSocket upgrade needs HTTP/1.1 or higher"),
            E::MissingHost => f.write_str("missing or empty Host header"),
            E::DuplicateHeader(name) => write!(f, "duplicate {name} header"),
            E::MissingUpgrade => f.write_str("Upgrade header missing or not \"websocket\""),
            E::MissingConnectionUpgrade => {
                f.write_str("Connection header missing or without \"Upgrade\"")
            }
            E::MissingKey => f.write_str("missing Sec-WebSocket-Key header"),
            E::InvalidKey => f.write_str("Sec-WebSocket-Key is not 16 base64-encoded bytes"),
            E::UnsupportedVersion => f.write_str("unsupported WebSocket version (need 13)"),
            E::OriginRefused => f.write_str("origin not allowed"),
            E::Rejected { status, reason, .. } => {
                write!(f, "server rejected the upgrade: {status} {reason}")
            }
            E::MissingAccept => f.write_str("response has no Sec-WebSocket-Accept header"),
            E::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key sent"),
            E::ProtocolNotOffered(p) => write!(f, "server chose subprotocol {p:?}, not offered"),
            E::ExtensionNotOffered(e) => write!(f, "server chose extension {e:?}, not offered"),
            E::ExtensionRefused(why) => write!(f, "unacceptable extension response: {why}"),
            E::MalformedExtensions => f.write_str("malformed Sec-WebSocket-Extensions header"),
            E::InvalidHeader(name) => write!(f, "invalid or reserved header {name:?}"),
            E::InvalidProtocol(p) => write!(f, "invalid subprotocol {p:?}"),
            E::InvalidExtension(e) => write!(f, "invalid extension {e:?}"),
            E::InvalidUrl(why) => write!(f, "invalid WebSocket URL: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_section_1_3_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn limits_default() {
        let l = Limits::default();
        assert_eq!((l.max_headers, l.max_bytes), (64, 8192));
    }

    #[test]
    fn status_helpers() {
        assert!(Status::<u8>::Partial.is_partial());
        assert!(Status::Complete(1).is_complete());
        assert_eq!(Status::Complete(1).complete(), Some(1));
        assert_eq!(Status::<u8>::Partial.complete(), None);
    }

    #[test]
    fn version_rejection_carries_supported_version() {
        let resp = HandshakeError::UnsupportedVersion.response().unwrap();
        let text = String::from_utf8(resp).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
        assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
    }

    #[test]
    fn every_request_error_has_a_response_and_others_do_not() {
        let with = [
            (HandshakeError::Malformed("x"), 400),
            (HandshakeError::TooManyHeaders, 431),
            (HandshakeError::TooLarge { limit: 1 }, 431),
            (HandshakeError::MethodNotAllowed, 405),
            (HandshakeError::HttpVersion, 400),
            (HandshakeError::MissingHost, 400),
            (HandshakeError::DuplicateHeader("Host"), 400),
            (HandshakeError::MissingUpgrade, 400),
            (HandshakeError::MissingConnectionUpgrade, 400),
            (HandshakeError::MissingKey, 400),
            (HandshakeError::InvalidKey, 400),
            (HandshakeError::UnsupportedVersion, 426),
            (HandshakeError::OriginRefused, 403),
        ];
        for (e, status) in with {
            assert_eq!(e.status(), Some(status), "{e}");
            let resp = String::from_utf8(e.response().unwrap()).unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
            assert!(resp.contains("\r\nConnection: "), "{resp}");
            let body = e.to_string();
            assert!(resp.ends_with(&format!("\r\n\r\n{body}")), "{resp}");
            assert!(
                resp.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
                "{resp}"
            );
        }
        let resp = String::from_utf8(HandshakeError::MethodNotAllowed.response().unwrap()).unwrap();
        assert!(resp.contains("\r\nAllow: GET\r\n"));
        for e in [
            HandshakeError::MissingAccept,
            HandshakeError::AcceptMismatch,
            HandshakeError::MalformedExtensions,
            HandshakeError::InvalidUrl("x"),
            HandshakeError::InvalidHeader("x".into()),
            HandshakeError::Rejected {
                status: 404,
                reason: "Not Found".into(),
                headers: vec![],
            },
        ] {
            assert_eq!(e.status(), None);
            assert_eq!(e.response(), None);
        }
    }
}
