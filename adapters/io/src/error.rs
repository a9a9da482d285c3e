//! The adapters' error type.

use std::{fmt, io};

use tidings_core::handshake::HandshakeError;
use tidings_core::{CloseCode, ConnectionError};

/// Why a WebSocket operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connection reset, write timeout, TLS error…).
    Io(io::Error),
    /// The opening handshake failed. A client whose request the server refused gets
    /// [`HandshakeError::Rejected`] with the status and headers; see [`Error::rejected_status`].
    Handshake(HandshakeError),
    /// The application's accept callback refused the request with this HTTP status (server side).
    Refused(u16),
    /// The opening handshake did not complete within the handshake timeout.
    HandshakeTimeout,
    /// The connection ended in error: the peer violated the protocol (the close code sent is in
    /// [`ConnectionError::close_code`]), a keepalive pong or the close handshake timed out, or the
    /// transport ended without a close handshake.
    Connection(ConnectionError),
    /// Local misuse: the command is not allowed now (the connection is closing or closed, a
    /// message is too large, a close code may not be sent…).
    Local(tidings_core::Error),
    /// The URL is not a `ws://` or `wss://` URL this build can connect to.
    Url(String),
    /// A JSON message could not be encoded or decoded.
    #[cfg(feature = "json")]
    Json(serde_json::Error),
}

impl Error {
    /// Whether this is the expected end of a send loop: the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Local(e) if e.is_closed())
    }

    /// The close code of the connection this error ended: [`Error::Connection`], which `recv`
    /// returns once when the connection fails, has one.
    ///
    /// * the peer violated the protocol: the code this endpoint failed the connection with
    ///   (1002, 1007 or 1009; [`ConnectionError::close_code`]);
    /// * the connection ended without a close handshake (no pong within the pong timeout, no
    ///   answer to our close frame, the transport ended): 1006, RFC 6455 §7.1.5's code for a
    ///   connection closed without a close frame ([`CloseCode::ABNORMAL`]).
    ///
    /// `None` for the other variants: a transport error ([`Error::Io`]) carries no code of its
    /// own, and a failed handshake, local misuse (including sending after the close,
    /// [`Error::is_closed`]), a URL or JSON error is not the end of a connection. A clean close
    /// is no error at all: `recv` returns `None`.
    ///
    /// Once `recv` has returned `None` or an error, the handle
    /// ([`WebSocket::close_outcome`](crate::WebSocket::close_outcome),
    /// [`ReadHalf::close_outcome`](crate::ReadHalf::close_outcome),
    /// [`WriteHalf::close_outcome`](crate::WriteHalf::close_outcome)) tells the whole story in a
    /// [`CloseOutcome`](crate::CloseOutcome): the code and reason received (1006 after a
    /// transport error), the frame sent, who started the close, and whether it was clean.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Connection(e) => Some(e.close_code().unwrap_or(CloseCode::ABNORMAL)),
            _ => None,
        }
    }

    /// The HTTP status of a refused handshake: the server's answer on the client side, or the
    /// status the application chose on the server side.
    pub fn rejected_status(&self) -> Option<u16> {
        match self {
            Error::Handshake(HandshakeError::Rejected { status, .. }) => Some(*status),
            Error::Handshake(e) => e.status(),
            Error::Refused(status) => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Refused(status) => write!(f, "upgrade refused with HTTP {status}"),
            Error::HandshakeTimeout => f.write_str("handshake timed out"),
            Error::Connection(e) => write!(f, "connection failed: {e}"),
            Error::Local(e) => write!(f, "{e}"),
            Error::Url(why) => write!(f, "unusable URL: {why}"),
            #[cfg(feature = "json")]
            Error::Json(e) => write!(f, "JSON: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Connection(e) => Some(e),
            Error::Local(e) => Some(e),
            #[cfg(feature = "json")]
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Error::Connection(e)
    }
}

impl From<tidings_core::Error> for Error {
    fn from(e: tidings_core::Error) -> Self {
        Error::Local(e)
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_core::ProtocolError;

    #[test]
    fn close_code_of_a_protocol_failure_is_the_code_sent() {
        let e = Error::Connection(ConnectionError::Protocol(ProtocolError::InvalidUtf8));
        assert_eq!(e.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        let e = Error::Connection(ConnectionError::Protocol(ProtocolError::MessageTooLarge {
            size: 2,
            limit: 1,
        }));
        assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    }

    #[test]
    fn close_code_without_a_close_handshake_is_1006() {
        for e in [
            ConnectionError::PongTimeout,
            ConnectionError::CloseTimeout,
            ConnectionError::UnexpectedEof,
        ] {
            assert_eq!(Error::Connection(e).close_code(), Some(CloseCode::ABNORMAL));
        }
    }

    #[test]
    fn close_code_is_none_for_errors_that_do_not_end_a_connection() {
        for e in [
            Error::Io(io::Error::other("tls")),
            Error::Refused(403),
            Error::HandshakeTimeout,
            Error::Local(tidings_core::Error::Closed),
            Error::Url("ftp://".into()),
        ] {
            assert_eq!(e.close_code(), None, "{e:?}");
        }
    }
}
