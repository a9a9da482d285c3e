//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use std::fmt;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// A newtype over `u16` rather than a closed enum: the registry grows (IANA "WebSocket Close Code
/// Number Registry") and applications use 3000–4999 freely. Named constants cover RFC 6455 §7.4.1 and
/// the later IANA registrations; predicates tell which codes may appear on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: an endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a data type it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Never sent on the wire (RFC 6455 §7.4.1).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire (RFC 6455 §7.4.1).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. non-UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Never sent on the wire (RFC 6455 §7.4.1).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Wraps a raw code. Any value is representable; use [`CloseCode::is_sendable`] to check it.
    pub const fn new(code: u16) -> Self {
        CloseCode(code)
    }

    /// The raw numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame on the wire (RFC 6455 §7.4.1, §7.4.2):
    /// 1000–1003, 1007–1014 and the 3000–4999 ranges (registered libraries/frameworks and private use).
    /// 0–999 are unused, 1004 is reserved, 1005/1006/1015 are local-only, 1016–2999 are reserved for
    /// future protocol revisions, 5000+ are undefined.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether this code only ever describes a close locally and must never be sent
    /// (1005, 1006, 1015 — RFC 6455 §7.4.1).
    pub const fn is_local_only(self) -> bool {
        matches!(self.0, 1005 | 1006 | 1015)
    }

    /// Whether this code lies in a range reserved by RFC 6455 §7.4.2 (below 1000, 1004, 1016–2999).
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 0..=999 | 1004 | 1016..=2999)
    }

    /// Whether this code lies in 3000–3999, registered with IANA for libraries, frameworks and
    /// applications (RFC 6455 §7.4.2).
    pub const fn is_registered_range(self) -> bool {
        matches!(self.0, 3000..=3999)
    }

    /// Whether this code lies in 4000–4999, reserved for private use (RFC 6455 §7.4.2).
    pub const fn is_private_range(self) -> bool {
        matches!(self.0, 4000..=4999)
    }

    /// Whether this code means a normal end of the conversation (1000 normal, 1001 going away).
    pub const fn is_normal(self) -> bool {
        matches!(self.0, 1000 | 1001)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1000 => "normal",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status",
            1006 => "abnormal closure",
            1007 => "invalid payload",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake failure",
            _ => return write!(f, "{}", self.0),
        };
        write!(f, "{} ({})", self.0, name)
    }
}

/// The payload of a close frame: a code and a UTF-8 reason (RFC 6455 §5.5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8 on the wire.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}

/// Maximum length of a close reason: 125 bytes of control payload minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_follow_rfc_ranges() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::new(code).is_sendable(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode::new(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn local_only_codes_are_not_sendable() {
        for code in [1005, 1006, 1015] {
            let c = CloseCode::new(code);
            assert!(c.is_local_only());
            assert!(!c.is_sendable());
        }
        assert!(!CloseCode::NORMAL.is_local_only());
    }

    #[test]
    fn display_names_known_codes() {
        assert_eq!(CloseCode::NORMAL.to_string(), "1000 (normal)");
        assert_eq!(CloseCode::new(4001).to_string(), "4001");
        assert!(CloseCode::GOING_AWAY.is_normal());
        assert!(!CloseCode::PROTOCOL_ERROR.is_normal());
        assert!(CloseCode::new(1004).is_reserved());
        assert!(
            CloseCode::new(3000).is_registered_range()
                && !CloseCode::new(4000).is_registered_range()
        );
        assert!(
            CloseCode::new(4999).is_private_range() && !CloseCode::new(5000).is_private_range()
        );
    }
}
