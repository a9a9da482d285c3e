//! Pre-encoded frames for encode-once broadcast.

use bytes::{Bytes, BytesMut};

use crate::frame::header::{FrameHeader, OpCode};
use crate::message::{Message, MessageKind};

/// A complete unmasked frame (header and payload in one buffer), encoded once and sent to many
/// connections with [`crate::Connection::send_encoded`]: each server connection queues a reference
/// to the same bytes. Client connections must mask, so they copy the payload.
///
/// With the `deflate` feature, [`with_deflate`](Self::with_deflate) also compresses the message
/// once, for the connections that can take a shared compressed frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    wire: Bytes,
    header_len: usize,
    kind: MessageKind,
    /// The compressed frame (RSV1 set) and the window it was compressed with.
    deflated: Option<(Bytes, u8)>,
}

impl EncodedFrame {
    /// Encodes `message` as a single final frame (RFC 6455 §5.2).
    pub fn new(message: &Message) -> Self {
        let kind = message.kind();
        EncodedFrame {
            wire: frame_bytes(kind, 0, message.as_bytes()),
            header_len: header_len(message.as_bytes().len()),
            kind,
            deflated: None,
        }
    }

    /// Encodes `message` like [`new`](Self::new) and, when it reaches the config's threshold and
    /// shrinks, also compresses it once from a fresh state with the config's level and
    /// `server_max_window_bits` (RFC 7692 §7.2.1). The compressor is borrowed from the config's
    /// [`CompressorPool`](crate::ext::deflate::CompressorPool) when it has one
    /// ([`DeflateConfig::compressor_pool`](crate::ext::deflate::DeflateConfig::compressor_pool)),
    /// else made for this call and dropped: give the config a pool when broadcasting often. [`crate::Connection::send_encoded`] sends the
    /// compressed frame on server connections that negotiated permessage-deflate with
    /// `server_no_context_takeover` and a window at least as large, and the plain frame
    /// elsewhere; see [`crate::ext::deflate`] for why context takeover rules it out.
    #[cfg(feature = "deflate")]
    pub fn with_deflate(message: &Message, config: &crate::ext::deflate::DeflateConfig) -> Self {
        let mut frame = Self::new(message);
        let payload = message.as_bytes();
        if payload.len() >= config.get_threshold()
            && let Some(compressed) = crate::ext::deflate::deflate_once(config, payload)
        {
            let wire = frame_bytes(frame.kind, crate::RSV1, &compressed);
            frame.deflated = Some((wire, config.get_server_max_window_bits()));
        }
        frame
    }

    /// The compressed frame as it goes on the wire from a server, and the window size it was
    /// compressed with, when [`with_deflate`](Self::with_deflate) made one.
    pub fn deflated(&self) -> Option<(&Bytes, u8)> {
        self.deflated.as_ref().map(|(wire, bits)| (wire, *bits))
    }

    /// The whole frame as it goes on the wire from a server.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.wire[self.header_len..]
    }

    /// The message kind.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }
}

fn header_len(len: usize) -> usize {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: None,
        len: len as u64,
    }
    .encode()
    .1
}

/// One unmasked final frame: header and payload in one buffer.
fn frame_bytes(kind: MessageKind, rsv: u8, payload: &[u8]) -> Bytes {
    let opcode = match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    };
    let (header, header_len) = FrameHeader {
        fin: true,
        rsv,
        opcode,
        mask: None,
        len: payload.len() as u64,
    }
    .encode();
    let mut wire = BytesMut::with_capacity(header_len + payload.len());
    wire.extend_from_slice(&header[..header_len]);
    wire.extend_from_slice(payload);
    wire.freeze()
}

impl From<Message> for EncodedFrame {
    fn from(message: Message) -> Self {
        EncodedFrame::new(&message)
    }
}
