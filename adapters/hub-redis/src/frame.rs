//! The messages on the backend's Redis channels and in its history streams.
//!
//! A channel message is `tdg1 <event id> <body>`: the ASCII tag `tdg1`, a space, the event id in
//! decimal (`0` when the broadcast is not numbered), a space, and the binary body. A history
//! stream entry keeps the body alone (its stream ID is `<event id>-0`). The body, integers
//! big-endian:
//!
//! ```text
//!   u8   payload kind    0 text message, 1 binary message, 2 JSON event
//!   u8   target          0 all clients, 1 one room, 2 several rooms
//!   u64  sequence        the origin node's publish counter (1, 2, 3, …)
//!   u16  + bytes         origin node id (UTF-8)
//!   u16  + bytes         excepted client id (UTF-8; empty: none)
//!   u32  rooms, each u32 + bytes (UTF-8)   (0 for all, 1 for one room)
//!   event:   u32 + bytes event name (UTF-8), then the data (UTF-8 JSON) to the end
//!   message: the payload to the end (UTF-8 for text)
//! ```
//!
//! [`decode`] checks every length against what is left and every text for UTF-8 before it
//! allocates, so a foreign or truncated message is a [`FrameError`], never a panic or a large
//! allocation.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tidings_hub::{Broadcast, ClientId, Message, Payload, Target};

/// The tag every channel message starts with.
pub const TAG: &[u8] = b"tdg1 ";

const KIND_TEXT: u8 = 0;
const KIND_BINARY: u8 = 1;
const KIND_EVENT: u8 = 2;
const TARGET_ALL: u8 = 0;
const TARGET_ROOM: u8 = 1;
const TARGET_ROOMS: u8 = 2;

/// A decoded message: the broadcast, its event id (if numbered) and its origin's sequence
/// number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The broadcast (with [`Broadcast::event_id`] set when numbered).
    pub broadcast: Broadcast,
    /// The origin node's publish counter.
    pub seq: u64,
}

/// Why a message on our channels or streams could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// It does not start with [`TAG`].
    NotOurs,
    /// The event id is not a decimal number followed by a space.
    BadEventId,
    /// It ends before a field it announces.
    Truncated,
    /// An unknown payload kind or target.
    UnknownKind(u8),
    /// A text field is not UTF-8.
    NotUtf8,
    /// A field is inconsistent (a one-room target with several rooms, a room count larger
    /// than the message could hold).
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotOurs => f.write_str("not a tidings message (no `tdg1 ` tag)"),
            FrameError::BadEventId => f.write_str("bad event id"),
            FrameError::Truncated => f.write_str("truncated message"),
            FrameError::UnknownKind(k) => write!(f, "unknown payload kind or target {k}"),
            FrameError::NotUtf8 => f.write_str("text field is not UTF-8"),
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The body of `broadcast`, published as the origin's `seq`-th message.
pub fn encode_body(broadcast: &Broadcast, seq: u64) -> Bytes {
    let rooms: &[String] = match &broadcast.target {
        Target::Room(room) => std::slice::from_ref(room),
        Target::Rooms(rooms) => rooms,
        _ => &[],
    };
    let target = match &broadcast.target {
        Target::Room(_) => TARGET_ROOM,
        Target::Rooms(_) => TARGET_ROOMS,
        _ => TARGET_ALL,
    };
    let (kind, head, rest): (u8, Option<&str>, &[u8]) = match &broadcast.payload {
        Payload::Message(Message::Text(text)) => (KIND_TEXT, None, text.as_bytes()),
        Payload::Message(Message::Binary(data)) => (KIND_BINARY, None, data),
        Payload::Event { name, data } => (KIND_EVENT, Some(name.as_str()), data.as_bytes()),
        _ => (KIND_BINARY, None, &[]),
    };
    let except = broadcast.except.as_ref().map_or("", ClientId::as_str);
    let mut out = BytesMut::with_capacity(
        32 + broadcast.origin.len()
            + except.len()
            + rooms.iter().map(|r| r.len() + 4).sum::<usize>()
            + head.map_or(0, |h| h.len() + 4)
            + rest.len(),
    );
    out.put_u8(kind);
    out.put_u8(target);
    out.put_u64(seq);
    put_short(&mut out, &broadcast.origin);
    put_short(&mut out, except);
    out.put_u32(len32(rooms.len()));
    for room in rooms {
        put_long(&mut out, room.as_bytes());
    }
    if let Some(name) = head {
        put_long(&mut out, name.as_bytes());
    }
    out.put_slice(rest);
    out.freeze()
}

/// A whole channel message: the tag, `event_id` (0: not numbered) and `body`.
pub fn encode(event_id: u64, body: &[u8]) -> Vec<u8> {
    let id = event_id.to_string();
    let mut out = Vec::with_capacity(TAG.len() + id.len() + 1 + body.len());
    out.extend_from_slice(TAG);
    out.extend_from_slice(id.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Decodes a channel message.
///
/// # Errors
///
/// [`FrameError`] for anything that is not a well-formed message of ours.
pub fn decode(message: &[u8]) -> Result<Frame, FrameError> {
    let rest = message.strip_prefix(TAG).ok_or(FrameError::NotOurs)?;
    let space = rest
        .iter()
        .take(21)
        .position(|&b| b == b' ')
        .ok_or(FrameError::BadEventId)?;
    let id = std::str::from_utf8(&rest[..space])
        .ok()
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or(FrameError::BadEventId)?;
    decode_body(&rest[space + 1..], id)
}

/// Decodes a body (a history entry's, or a channel message's after the id), numbered
/// `event_id` (0: not numbered).
///
/// # Errors
///
/// [`FrameError`] for anything that is not a well-formed body.
pub fn decode_body(body: &[u8], event_id: u64) -> Result<Frame, FrameError> {
    let mut r = Reader(body);
    let kind = r.u8()?;
    let target = r.u8()?;
    let seq = r.u64()?;
    let origin = r.text(2)?;
    let except = r.text(2)?;
    let count = r.u32()? as usize;
    // Each room takes at least its 4-byte length: a count beyond that is a lie.
    if count > r.0.len() / 4 {
        return Err(FrameError::Malformed("room count larger than the message"));
    }
    let mut rooms = Vec::with_capacity(count);
    for _ in 0..count {
        rooms.push(r.text(4)?.to_owned());
    }
    let target = match (target, rooms.len()) {
        (TARGET_ALL, 0) => Target::All,
        (TARGET_ROOM, 1) => Target::Room(rooms.pop().unwrap_or_default()),
        (TARGET_ROOMS, _) => Target::Rooms(rooms),
        (TARGET_ALL | TARGET_ROOM, _) => {
            return Err(FrameError::Malformed(
                "room count does not match the target",
            ));
        }
        (other, _) => return Err(FrameError::UnknownKind(other)),
    };
    let payload = match kind {
        KIND_TEXT => Payload::Message(Message::text(utf8(r.0)?.to_owned())),
        KIND_BINARY => Payload::Message(Message::binary(Bytes::copy_from_slice(r.0))),
        KIND_EVENT => {
            let name = r.text(4)?.to_owned();
            Payload::Event {
                name,
                data: utf8(r.0)?.to_owned(),
            }
        }
        other => return Err(FrameError::UnknownKind(other)),
    };
    let except = (!except.is_empty()).then(|| ClientId::new(except));
    let mut broadcast = Broadcast::new(target, payload, Arc::from(origin)).except(except);
    if event_id != 0 {
        broadcast = broadcast.with_event_id(event_id);
    }
    Ok(Frame { broadcast, seq })
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_short(out: &mut BytesMut, text: &str) {
    // Node and client ids are short (generated ones are 32 hex digits); a longer one is cut at
    // the last character boundary that fits.
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &text.as_bytes()[..end];
    out.put_u16(end as u16);
    out.put_slice(bytes);
}

fn put_long(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(len32(bytes.len()));
    out.put_slice(bytes);
}

fn utf8(bytes: &[u8]) -> Result<&str, FrameError> {
    std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)
}

/// A cursor over a body that never reads past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.0.len() {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    /// A text field with a `width`-byte (2 or 4) length.
    fn text(&mut self, width: usize) -> Result<&'a str, FrameError> {
        let len = if width == 2 {
            let b = self.take(2)?;
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        } else {
            self.u32()? as usize
        };
        utf8(self.take(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(broadcast: Broadcast, id: u64) {
        let body = encode_body(&broadcast, 7);
        let wire = encode(id, &body);
        let frame = decode(&wire).expect("decodes");
        let expected = if id == 0 {
            broadcast
        } else {
            broadcast.with_event_id(id)
        };
        assert_eq!(
            frame,
            Frame {
                broadcast: expected,
                seq: 7
            }
        );
    }

    #[test]
    fn every_target_and_payload_round_trips() {
        let origin: Arc<str> = Arc::from("node-a");
        let payloads = [
            Payload::Message(Message::text("héllo")),
            Payload::Message(Message::binary(Bytes::from_static(&[0, 255, 1]))),
            Payload::Event {
                name: "chat".into(),
                data: r#"{"x":1}"#.into(),
            },
            Payload::Message(Message::text("")),
        ];
        let targets = [
            Target::All,
            Target::Room("lobby".into()),
            Target::Rooms(vec!["a".into(), "b:c".into(), String::new()]),
            Target::Rooms(Vec::new()),
        ];
        for payload in &payloads {
            for target in &targets {
                for except in [None, Some(ClientId::new("c1"))] {
                    let b = Broadcast::new(target.clone(), payload.clone(), origin.clone())
                        .except(except);
                    round_trip(b.clone(), 0);
                    round_trip(b, 1_733_440_000_123_456);
                }
            }
        }
    }

    #[test]
    fn foreign_and_broken_messages_are_errors() {
        assert_eq!(decode(b"hello"), Err(FrameError::NotOurs));
        assert_eq!(decode(b"tdg1 12x 1"), Err(FrameError::BadEventId));
        assert_eq!(decode(b"tdg1  "), Err(FrameError::BadEventId));
        assert_eq!(
            decode(b"tdg1 99999999999999999999 "),
            Err(FrameError::BadEventId)
        );
        assert_eq!(decode(b"tdg1 0 "), Err(FrameError::Truncated));
        let body = encode_body(
            &Broadcast::new(
                Target::Room("r".into()),
                Message::text("hi").into(),
                "n".into(),
            ),
            1,
        );
        for cut in 0..body.len() - 2 {
            assert!(decode_body(&body[..cut], 0).is_err(), "cut at {cut}");
        }
        let mut bad_kind = body.to_vec();
        bad_kind[0] = 9;
        assert_eq!(decode_body(&bad_kind, 0), Err(FrameError::UnknownKind(9)));
        let mut huge_count = body.to_vec();
        let at = 2 + 8 + 2 + 1 + 2;
        huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_body(&huge_count, 0),
            Err(FrameError::Malformed(_))
        ));
        let mut not_utf8 = body.to_vec();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert_eq!(decode_body(&not_utf8, 0), Err(FrameError::NotUtf8));
    }
}
