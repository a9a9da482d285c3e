//! The hub's error type and the close-error helpers.

use std::fmt;

use tidings_core::{CloseCode, CloseOutcome};

/// What a handler may fail with: any error (`?` on anything that implements
/// [`std::error::Error`]), or a message (`Err("no such game".into())`). Its `Display` text is
/// what the client is told (see [`Router`](crate::Router)).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Why a hub operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// The client's connection is closing or closed: nothing more can be sent to it. `outcome`
    /// is how it ended, once the hub has seen the end.
    ConnectionClosed {
        /// How the connection ended, when known.
        outcome: Option<CloseOutcome>,
    },
    /// The hub was closed ([`Hub::close`](crate::Hub::close)): it takes no new clients, rooms or
    /// broadcasts.
    HubClosed,
    /// No room has this name.
    RoomNotFound(String),
    /// A client with this ID is already connected.
    DuplicateClient(crate::ClientId),
    /// A binary message arrived where text was expected (a JSON router).
    ExpectedText,
    /// A text message arrived where binary was expected.
    ExpectedBinary,
    /// The client did not read fast enough: its outbox was full, so the hub disconnected it
    /// (close code [`HubConfig::slow_client_code`](crate::HubConfig::slow_client_code), 1008 by
    /// default).
    SlowClient,
    /// The client sent messages faster than its [`RateLimit`](crate::RateLimit) allows: the
    /// message was dropped (and answered with an error, or the connection closed, as the
    /// limit's [`RateLimitAction`](crate::RateLimitAction) says).
    RateLimited,
    /// The client cannot take this: a binary message or a WebSocket frame for a Server-Sent
    /// Events subscriber. The text says what.
    NotSupported(&'static str),
    /// A message was not the JSON the router expects (or a payload not the type a handler asked
    /// for).
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// A handler failed; its message goes to the client as an error envelope by default.
    Handler(HandlerError),
    /// The WebSocket failed (protocol error, transport error, timeout).
    WebSocket(tidings_io::Error),
    /// The backend failed (for example a remote engine unreachable).
    Backend(String),
}

impl HubError {
    /// Whether this is the end of the client's connection (closed by either side, cleanly or
    /// not) rather than a fault in the application.
    pub fn is_close_error(&self) -> bool {
        match self {
            HubError::ConnectionClosed { .. } | HubError::SlowClient => true,
            HubError::WebSocket(e) => {
                e.is_closed() || matches!(e, tidings_io::Error::Connection(_))
            }
            _ => false,
        }
    }

    /// Whether the connection ended with a normal close: code 1000 (normal) or 1001 (going
    /// away), the close handshake completed.
    pub fn is_normal_close(&self) -> bool {
        match self {
            HubError::ConnectionClosed {
                outcome: Some(outcome),
            } => is_normal(outcome),
            _ => false,
        }
    }

    /// The close code the connection ended with, when this error is about its end and the code
    /// is known (RFC 6455 §7.1.5: 1005 for a close frame without a code, 1006 for none at all).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            HubError::ConnectionClosed {
                outcome: Some(outcome),
            } => Some(outcome.code),
            HubError::WebSocket(tidings_io::Error::Connection(e)) => e.close_code(),
            _ => None,
        }
    }
}

fn is_normal(outcome: &CloseOutcome) -> bool {
    outcome.clean && (outcome.code == CloseCode::NORMAL || outcome.code == CloseCode::GOING_AWAY)
}

/// Whether `error` is the end of a connection with one of `codes` (any code when `codes` is
/// empty): the question gorilla/websocket's `IsCloseError` answers.
pub fn is_close_error(error: &HubError, codes: &[CloseCode]) -> bool {
    if !error.is_close_error() {
        return false;
    }
    codes.is_empty() || error.close_code().is_some_and(|c| codes.contains(&c))
}

/// Whether `error` is a normal end of a connection (1000 or 1001 with a completed close
/// handshake); see [`HubError::is_normal_close`].
pub fn is_normal_close(error: &HubError) -> bool {
    error.is_normal_close()
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::ConnectionClosed { outcome: None } => f.write_str("connection closed"),
            HubError::ConnectionClosed {
                outcome: Some(outcome),
            } => write!(f, "connection closed ({})", outcome.code.as_u16()),
            HubError::HubClosed => f.write_str("hub closed"),
            HubError::RoomNotFound(room) => write!(f, "room not found: {room}"),
            HubError::DuplicateClient(id) => {
                write!(f, "a client with ID {id} is already connected")
            }
            HubError::ExpectedText => f.write_str("expected a text message, got binary"),
            HubError::ExpectedBinary => f.write_str("expected a binary message, got text"),
            HubError::SlowClient => {
                f.write_str("client disconnected: it did not read fast enough (outbox full)")
            }
            HubError::RateLimited => f.write_str("rate limit exceeded"),
            HubError::NotSupported(what) => write!(f, "not supported: {what}"),
            #[cfg(feature = "json")]
            HubError::Json(e) => write!(f, "invalid JSON: {e}"),
            HubError::Handler(e) => write!(f, "{e}"),
            HubError::WebSocket(e) => write!(f, "{e}"),
            HubError::Backend(why) => write!(f, "backend: {why}"),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "json")]
            HubError::Json(e) => Some(e),
            HubError::Handler(e) => Some(&**e),
            HubError::WebSocket(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tidings_io::Error> for HubError {
    fn from(e: tidings_io::Error) -> Self {
        HubError::WebSocket(e)
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for HubError {
    fn from(e: serde_json::Error) -> Self {
        HubError::Json(e)
    }
}
