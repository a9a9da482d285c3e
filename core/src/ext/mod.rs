//! The extension hook (RFC 6455 §9): per-message transforms that may own RSV bits.
//!
//! An [`Extension`] is one negotiated extension instance on one connection. The connection calls it
//! for every data message whose first frame carries one of the extension's RSV bits (decoding) and
//! for every whole message it sends (encoding). Negotiation happens during the handshake
//! (`Sec-WebSocket-Extensions`); the result is installed with
//! [`crate::Connection::set_extension`]. permessage-deflate (RFC 7692) is built on this hook.
//!
//! Negotiation is the job of an [`ExtensionConfig`]: the client lists its offers, the server picks
//! one from the client's offers (declining malformed ones and falling back to a later offer), and
//! the client checks the server's answer. [`negotiate_server`] and [`negotiate_client`] run a list
//! of configs over the parsed `Sec-WebSocket-Extensions` headers.
//!
//! Decoding is streamed frame by frame and receives the remaining byte budget of the message, so an
//! extension that expands data (decompression) stops at the message-size limit and the connection
//! fails with 1009 instead of exhausting memory.

use std::fmt;

#[cfg(feature = "deflate")]
pub mod deflate;

use bytes::BytesMut;

use crate::handshake::ExtensionOffer;
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

    /// Whether a message compressed once from a fresh permessage-deflate state with a window of
    /// `window_bits` may be sent on this connection as it is (encode-once broadcast, see
    /// [`crate::EncodedFrame::with_deflate`]). Only a permessage-deflate instance whose own
    /// compression has no context takeover and a window of at least `window_bits` says yes.
    fn accepts_deflated(&self, window_bits: u8) -> bool {
        let _ = window_bits;
        false
    }
}

/// Negotiates one extension during the handshake (RFC 6455 §9.1) and creates its per-connection
/// instance.
pub trait ExtensionConfig: Send + Sync {
    /// The extension token, e.g. `permessage-deflate`.
    fn name(&self) -> &str;

    /// Client role: the offers to send, most preferred first (RFC 6455 §9.1: several offers of the
    /// same extension with different parameters are allowed).
    fn offers(&self) -> Vec<ExtensionOffer>;

    /// Server role: answers one offer of this extension. `None` declines the offer (e.g. malformed
    /// or unacceptable parameters), and the next offer is tried; otherwise returns the response
    /// parameters for `Sec-WebSocket-Extensions` and the connection's instance.
    fn accept(&self, offer: &ExtensionOffer) -> Option<(ExtensionOffer, Box<dyn Extension>)>;

    /// Client role: checks the server's response to our offers; an error fails the handshake
    /// (RFC 6455 §4.1: the client must fail if the server's response is not one it offered).
    fn confirm(&self, response: &ExtensionOffer) -> Result<Box<dyn Extension>, ExtensionError>;
}

/// Server role: the first config (in the server's order of preference) that accepts one of the
/// client's `offers` (tried in the client's order). Returns the `Sec-WebSocket-Extensions`
/// response value and the instance to install with [`crate::Connection::set_extension`]; `None`
/// when nothing was accepted (the connection runs without extensions). A connection runs at most
/// one extension.
pub fn negotiate_server(
    configs: &[&dyn ExtensionConfig],
    offers: &[ExtensionOffer],
) -> Option<(String, Box<dyn Extension>)> {
    configs.iter().find_map(|config| {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(config.name()))
            .find_map(|o| config.accept(o))
            .map(|(response, instance)| (response.to_header_value(), instance))
    })
}

/// Client role: matches the server's `Sec-WebSocket-Extensions` response against the configs we
/// offered. No response means no extension; more than one accepted extension, or one we did not
/// offer, is an error (the client must then fail the connection, RFC 6455 §4.1).
pub fn negotiate_client(
    configs: &[&dyn ExtensionConfig],
    responses: &[ExtensionOffer],
) -> Result<Option<Box<dyn Extension>>, ExtensionError> {
    let [response] = responses else {
        return match responses {
            [] => Ok(None),
            _ => Err(ExtensionError::Invalid(
                "server accepted more than one extension".into(),
            )),
        };
    };
    let config = configs
        .iter()
        .find(|c| c.name().eq_ignore_ascii_case(&response.name))
        .ok_or_else(|| {
            ExtensionError::Invalid(format!(
                "server accepted extension {} that was not offered",
                response.name
            ))
        })?;
    config.confirm(response).map(Some)
}
