//! The extension hook (RFC 6455 §9): per-message transforms that may own RSV bits.
//!
//! An [`Extension`] is one negotiated extension instance on one connection. The connection calls it
//! for every data message whose first frame carries one of the extension's RSV bits (decoding) and
//! for every whole message it sends (encoding). Negotiation happens during the handshake
//! (`Sec-WebSocket-Extensions`); the result is installed with
//! [`crate::Connection::set_extension`]. permessage-deflate (RFC 7692) is built on this hook.
//!
//! Decoding is streamed frame by frame and receives the remaining byte budget of the message, so an
//! extension that expands data (decompression) stops at the message-size limit and the connection
//! fails with 1009 instead of exhausting memory.

use std::fmt;

use bytes::BytesMut;

use crate::message::MessageKind;

/// Why an extension could not decode incoming data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The decoded message would exceed the byte budget it was given (fails the connection with
    /// 1009).
    TooLarge,
    /// The data is invalid for this extension (fails the connection with 1002).
    Invalid(String),
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionError::TooLarge => f.write_str("decoded message exceeds the size limit"),
            ExtensionError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ExtensionError {}

/// A negotiated extension on one connection (RFC 6455 §9).
pub trait Extension: Send {
    /// The RSV bits this extension claims, laid out as [`crate::FrameHeader::rsv`] (RSV1 is
    /// `0b100`). Frames with other RSV bits set fail the connection with 1002 (RFC 6455 §5.2).
    fn rsv_bits(&self) -> u8;

    /// Transforms an outgoing whole message.
    ///
    /// Returns `Ok(Some(rsv))` after writing the transformed payload to `out` (the first frame is
    /// sent with `rsv` set), or `Ok(None)` to send the payload unchanged (e.g. below a compression
    /// threshold).
    fn encode(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError>;

    /// Decodes one frame's payload of an incoming message whose first frame had `rsv` set.
    ///
    /// `fin` marks the last frame of the message. Decoded bytes are appended to `out`, and the
    /// extension must not append more than `budget` bytes in this call: it returns
    /// [`ExtensionError::TooLarge`] instead.
    fn decode(
        &mut self,
        rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        budget: usize,
    ) -> Result<(), ExtensionError>;
}
