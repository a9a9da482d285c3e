//! Error types, in two families (as h11 splits them): faults of the **peer**
//! ([`ProtocolError`], which fail the connection with a close code) and **local** misuse of the API
//! ([`Error`], returned from commands as a `Result`).

use std::fmt;

use crate::close::CloseCode;

/// A protocol violation by the peer. The connection fails itself when it meets one: it queues a
/// close frame with [`ProtocolError::close_code`] and reports [`crate::Event::Closed`] carrying the
/// error (RFC 6455 §7.1.7 "Fail the WebSocket Connection").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode reserved for future use (0x3–0x7, 0xB–0xF) (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// An RSV bit set that no negotiated extension claims (RFC 6455 §5.2).
    ReservedBits(u8),
    /// A client frame without the mask bit (RFC 6455 §5.1).
    UnmaskedFrame,
    /// A server frame with the mask bit (RFC 6455 §5.1).
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2).
    InvalidLength,
    /// A control frame with FIN clear (RFC 6455 §5.5).
    FragmentedControlFrame,
    /// A control frame whose payload exceeds 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong(u64),
    /// A continuation frame with no message in progress (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (RFC 6455 §5.4).
    ExpectedContinuation,
    /// A frame larger than the configured frame size limit.
    FrameTooLarge {
        /// The frame's payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than the configured message size limit (also raised by extensions whose
    /// output — e.g. inflated data — would exceed it).
    MessageTooLarge {
        /// The size the message reached or announced.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Text (or a close reason) that is not valid UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A close frame with a 1-byte payload (RFC 6455 §5.5.1).
    InvalidClosePayload,
    /// A close frame carrying a code that may not be sent (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A negotiated extension rejected the data (e.g. corrupt compressed data).
    Extension(String),
}

impl ProtocolError {
    /// The close code the connection is failed with: 1009 for size limits, 1007 for bad UTF-8,
    /// 1002 for everything else (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ReservedBits(bits) => {
                write!(f, "reserved RSV bits {bits:#05b} set without an extension")
            }
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::InvalidLength => f.write_str("64-bit payload length has its MSB set"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::ControlFrameTooLong(n) => {
                write!(f, "control frame payload of {n} bytes exceeds 125")
            }
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::FrameTooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the limit of {limit}")
            }
            ProtocolError::MessageTooLarge { size, limit } => {
                write!(f, "message of {size} bytes exceeds the limit of {limit}")
            }
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::Extension(msg) => write!(f, "extension error: {msg}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a connection ended without a clean close handshake (carried by [`crate::CloseOutcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer violated the protocol; the connection was failed with its close code.
    Protocol(ProtocolError),
    /// No pong arrived within the pong timeout after a keepalive ping: the peer is presumed dead.
    PongTimeout,
    /// The peer did not answer our close frame within the close-handshake timeout.
    CloseTimeout,
    /// The transport ended (EOF) before the close handshake completed.
    UnexpectedEof,
}

impl ConnectionError {
    /// The protocol error, if the peer violated the protocol.
    pub fn protocol(&self) -> Option<&ProtocolError> {
        match self {
            ConnectionError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl ConnectionError {
    /// The close code this endpoint sent when it failed the connection for a protocol error;
    /// `None` for timeouts and EOF, which send no close frame.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.protocol().map(ProtocolError::close_code)
    }

    /// Whether the peer is unreachable or gone (pong timeout, close timeout, EOF) rather than
    /// misbehaving.
    pub fn is_peer_gone(&self) -> bool {
        !matches!(self, ConnectionError::Protocol(_))
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Protocol(e) => write!(f, "protocol error: {e}"),
            ConnectionError::PongTimeout => f.write_str("no pong within the pong timeout"),
            ConnectionError::CloseTimeout => {
                f.write_str("peer did not complete the close handshake in time")
            }
            ConnectionError::UnexpectedEof => {
                f.write_str("connection closed without a close handshake")
            }
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectionError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProtocolError> for ConnectionError {
    fn from(e: ProtocolError) -> Self {
        ConnectionError::Protocol(e)
    }
}

/// Local misuse of the API: returned by commands, never caused by the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closed: no more frames may be sent.
    Closed,
    /// A close frame was already sent: data frames may no longer be sent (RFC 6455 §5.5.1).
    Closing,
    /// A control frame payload (ping, pong) longer than 125 bytes (RFC 6455 §5.5).
    ControlPayloadTooLong(usize),
    /// A close reason longer than 123 bytes (RFC 6455 §5.5.1).
    CloseReasonTooLong(usize),
    /// A close code that may not be sent (1005, 1006, 1015, reserved ranges; RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A whole message or a fragment of another kind while a streamed message is in progress.
    MessageInProgress,
    /// Text fragments that do not form valid UTF-8.
    InvalidUtf8,
    /// A message larger than the configured limit was given to send.
    MessageTooLarge(usize),
    /// The negotiated extension failed to encode a message.
    Extension(String),
}

impl Error {
    /// Whether the command failed because the connection is closing or closed — the expected
    /// end of a send loop rather than a bug.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed | Error::Closing)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("connection is closed"),
            Error::Closing => f.write_str("close frame already sent"),
            Error::ControlPayloadTooLong(n) => {
                write!(f, "control frame payload of {n} bytes exceeds 125")
            }
            Error::CloseReasonTooLong(n) => write!(f, "close reason of {n} bytes exceeds 123"),
            Error::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            Error::MessageInProgress => f.write_str("a streamed message is in progress"),
            Error::InvalidUtf8 => f.write_str("text fragments are not valid UTF-8"),
            Error::MessageTooLarge(n) => write!(f, "message of {n} bytes exceeds the limit"),
            Error::Extension(msg) => write!(f, "extension error: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_kind_of_fault() {
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        let too_big = ProtocolError::FrameTooLarge { size: 2, limit: 1 };
        assert_eq!(too_big.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert_eq!(
            ProtocolError::UnmaskedFrame.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        let e = ConnectionError::Protocol(ProtocolError::InvalidUtf8);
        assert_eq!(e.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        assert!(!e.is_peer_gone());
        assert_eq!(ConnectionError::PongTimeout.close_code(), None);
        assert!(ConnectionError::UnexpectedEof.is_peer_gone());
        assert!(Error::Closed.is_closed() && Error::Closing.is_closed());
        assert!(!Error::InvalidUtf8.is_closed());
    }
}
