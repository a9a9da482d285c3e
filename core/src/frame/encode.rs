//! Pre-encoded frames for encode-once broadcast.

use bytes::{Bytes, BytesMut};

use crate::frame::header::{FrameHeader, OpCode};
use crate::message::{Message, MessageKind};

/// A complete unmasked frame (header and payload in one buffer), encoded once and sent to many
/// connections with [`crate::Connection::send_encoded`]: each server connection queues a reference
/// to the same bytes. Client connections must mask, so they copy the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    wire: Bytes,
    header_len: usize,
    kind: MessageKind,
}

impl EncodedFrame {
    /// Encodes `message` as a single final frame (RFC 6455 §5.2).
    pub fn new(message: &Message) -> Self {
        let kind = message.kind();
        let payload = message.as_bytes();
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        let (header, header_len) = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len: payload.len() as u64,
        }
        .encode();
        let mut wire = BytesMut::with_capacity(header_len + payload.len());
        wire.extend_from_slice(&header[..header_len]);
        wire.extend_from_slice(payload);
        EncodedFrame {
            wire: wire.freeze(),
            header_len,
            kind,
        }
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

impl From<Message> for EncodedFrame {
    fn from(message: Message) -> Self {
        EncodedFrame::new(&message)
    }
}
