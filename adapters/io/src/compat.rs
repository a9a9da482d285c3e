//! Conversions to and from [tungstenite](https://docs.rs/tungstenite/0.28)'s messages, close
//! frames and close codes (feature `tungstenite`), for code moving over from tokio-tungstenite
//! or async-tungstenite, or bridging the two.
//!
//! Both sides of each conversion belong to other crates (`tidings-core` and `tungstenite`), so
//! Rust's orphan rule rules out `From`/`TryFrom` impls here; the conversions are two traits
//! instead, named for their direction: [`IntoTungstenite`] on our types and [`IntoTidings`] on
//! tungstenite's. Payloads move without copying; text is checked as UTF-8 once more on the way
//! (one pass, no copy), since neither crate can vouch for the other's text type.

use std::fmt;

use bytes::Bytes;
use tidings_core::{CloseCode, CloseFrame, Message, Utf8Bytes};
use tungstenite::protocol::frame::Frame as TFrame;
use tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tungstenite::protocol::{CloseFrame as TCloseFrame, Message as TMessage};

/// Converts one of our types into its tungstenite twin: [`Message`] into
/// `tungstenite::Message`, [`CloseFrame`] into `tungstenite::protocol::CloseFrame`,
/// [`CloseCode`] into `tungstenite::protocol::frame::coding::CloseCode`, [`Utf8Bytes`] into
/// `tungstenite::Utf8Bytes` (feature `tungstenite`).
///
/// ```
/// use tidings_io::{IntoTungstenite, Message};
///
/// let theirs: tungstenite::Message = Message::from("hello").into_tungstenite();
/// assert_eq!(theirs, tungstenite::Message::text("hello"));
/// ```
pub trait IntoTungstenite {
    /// The tungstenite type.
    type Output;

    /// Converts without copying the payload.
    fn into_tungstenite(self) -> Self::Output;
}

/// Converts one of tungstenite's types into ours: `tungstenite::Message` into a [`Message`]
/// (only text and binary have one: see [`FromTungsteniteError`]), a close frame, a close code,
/// `tungstenite::Utf8Bytes` (feature `tungstenite`).
///
/// ```
/// use tidings_io::{FromTungsteniteError, IntoTidings, Message};
///
/// let ours = tungstenite::Message::binary(vec![1, 2, 3]).into_tidings();
/// assert_eq!(ours, Ok(Message::from(vec![1, 2, 3])));
/// // Control messages have no `Message` equivalent: the engine handles pings and the close.
/// let ping = tungstenite::Message::Ping(Default::default()).into_tidings();
/// assert!(matches!(ping, Err(FromTungsteniteError::Ping(_))));
/// ```
pub trait IntoTidings {
    /// Our type (a `Result` where the conversion can fail).
    type Output;

    /// Converts without copying the payload (a close reason, at most 123 bytes, is copied).
    fn into_tidings(self) -> Self::Output;
}

/// A `tungstenite::Message` with no [`Message`] equivalent: our `Message` is a data message
/// (text or binary); control frames are the engine's business or have commands of their own.
/// Each variant gives back what the message carried.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FromTungsteniteError {
    /// A ping. The engine answers pings itself; [`WebSocket::ping`](crate::WebSocket::ping)
    /// sends one and waits for its pong.
    Ping(Bytes),
    /// A pong. Pongs answer our pings (the engine matches them); incoming ones are
    /// [`Event::Pong`](crate::Event::Pong).
    Pong(Bytes),
    /// A close message, with its frame converted. Send one with
    /// [`WebSocket::close`](crate::WebSocket::close); incoming ones are
    /// [`Event::CloseReceived`](crate::Event::CloseReceived).
    Close(Option<CloseFrame>),
    /// A raw frame (tungstenite's escape hatch for hand-made frames), which this crate does not
    /// send.
    Frame(TFrame),
}

impl fmt::Display for FromTungsteniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FromTungsteniteError::Ping(_) => "a ping",
            FromTungsteniteError::Pong(_) => "a pong",
            FromTungsteniteError::Close(_) => "a close message",
            FromTungsteniteError::Frame(_) => "a raw frame",
        };
        write!(
            f,
            "{what} is not a data message: only text and binary convert to a Message"
        )
    }
}

impl std::error::Error for FromTungsteniteError {}

// ---- ours → tungstenite ---------------------------------------------------------------------

impl IntoTungstenite for Message {
    type Output = TMessage;

    fn into_tungstenite(self) -> TMessage {
        match self {
            Message::Text(text) => TMessage::Text(text.into_tungstenite()),
            Message::Binary(data) => TMessage::Binary(data),
        }
    }
}

impl IntoTungstenite for Utf8Bytes {
    type Output = tungstenite::Utf8Bytes;

    /// Re-checks the text as UTF-8 (one pass, no copy): tungstenite offers no safe way to take
    /// text it has not checked itself.
    fn into_tungstenite(self) -> tungstenite::Utf8Bytes {
        let bytes = self.into_bytes();
        match tungstenite::Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => text,
            // Unreachable: `Utf8Bytes` holds valid UTF-8. Kept total rather than panicking.
            Err(_) => tungstenite::Utf8Bytes::from(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
}

impl IntoTungstenite for CloseCode {
    type Output = TCloseCode;

    fn into_tungstenite(self) -> TCloseCode {
        TCloseCode::from(self.as_u16())
    }
}

impl IntoTungstenite for CloseFrame {
    type Output = TCloseFrame;

    fn into_tungstenite(self) -> TCloseFrame {
        TCloseFrame {
            code: self.code.into_tungstenite(),
            reason: tungstenite::Utf8Bytes::from(self.reason),
        }
    }
}

// ---- tungstenite → ours ---------------------------------------------------------------------

impl IntoTidings for TMessage {
    type Output = Result<Message, FromTungsteniteError>;

    fn into_tidings(self) -> Result<Message, FromTungsteniteError> {
        match self {
            TMessage::Text(text) => Ok(Message::Text(text.into_tidings())),
            TMessage::Binary(data) => Ok(Message::Binary(data)),
            TMessage::Ping(data) => Err(FromTungsteniteError::Ping(data)),
            TMessage::Pong(data) => Err(FromTungsteniteError::Pong(data)),
            TMessage::Close(frame) => Err(FromTungsteniteError::Close(
                frame.map(IntoTidings::into_tidings),
            )),
            TMessage::Frame(frame) => Err(FromTungsteniteError::Frame(frame)),
        }
    }
}

impl IntoTidings for tungstenite::Utf8Bytes {
    type Output = Utf8Bytes;

    /// Re-checks the text as UTF-8 (one pass, no copy).
    fn into_tidings(self) -> Utf8Bytes {
        let bytes = Bytes::from(self);
        match Utf8Bytes::try_from_bytes(bytes.clone()) {
            Ok(text) => text,
            // Unreachable: tungstenite's `Utf8Bytes` holds valid UTF-8. Kept total rather than
            // panicking.
            Err(_) => Utf8Bytes::from(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
}

impl IntoTidings for TCloseCode {
    type Output = CloseCode;

    fn into_tidings(self) -> CloseCode {
        CloseCode::new(u16::from(self))
    }
}

impl IntoTidings for TCloseFrame {
    type Output = CloseFrame;

    fn into_tidings(self) -> CloseFrame {
        CloseFrame::new(self.code.into_tidings(), self.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_messages_round_trip_without_copying() {
        let text = String::from("héllo");
        let ptr = text.as_ptr();
        let theirs = Message::from(text).into_tungstenite();
        assert_eq!(theirs, TMessage::text("héllo"));
        let ours = theirs.into_tidings().expect("text");
        assert_eq!(ours, Message::from("héllo"));
        assert_eq!(ours.as_bytes().as_ptr(), ptr, "text was copied");

        let data = Bytes::from(vec![0u8, 0xff, 7]);
        let ptr = data.as_ptr();
        let theirs = Message::from(data.clone()).into_tungstenite();
        assert_eq!(theirs, TMessage::Binary(data.clone()));
        let ours = theirs.into_tidings().expect("binary");
        assert_eq!(ours, Message::Binary(data));
        assert_eq!(ours.as_bytes().as_ptr(), ptr, "binary was copied");
    }

    #[test]
    fn empty_messages_convert() {
        assert_eq!(
            Message::from("").into_tungstenite(),
            TMessage::Text(tungstenite::Utf8Bytes::default())
        );
        assert_eq!(
            TMessage::Binary(Bytes::new()).into_tidings(),
            Ok(Message::from(Bytes::new()))
        );
    }

    #[test]
    fn control_messages_are_refused_with_what_they_carried() {
        let ping = TMessage::Ping(Bytes::from_static(b"p"));
        assert_eq!(
            ping.into_tidings(),
            Err(FromTungsteniteError::Ping(Bytes::from_static(b"p")))
        );
        let pong = TMessage::Pong(Bytes::from_static(b"q"));
        assert_eq!(
            pong.into_tidings(),
            Err(FromTungsteniteError::Pong(Bytes::from_static(b"q")))
        );
        let close = TMessage::Close(Some(TCloseFrame {
            code: TCloseCode::Away,
            reason: "bye".into(),
        }));
        assert_eq!(
            close.into_tidings(),
            Err(FromTungsteniteError::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                "bye"
            ))))
        );
        assert_eq!(
            TMessage::Close(None).into_tidings(),
            Err(FromTungsteniteError::Close(None))
        );
        let frame = TFrame::ping(Bytes::from_static(b"raw"));
        let err = TMessage::Frame(frame.clone())
            .into_tidings()
            .expect_err("a raw frame");
        assert_eq!(err, FromTungsteniteError::Frame(frame));
    }

    #[test]
    fn errors_say_what_did_not_convert() {
        let err = FromTungsteniteError::Ping(Bytes::new());
        assert_eq!(
            err.to_string(),
            "a ping is not a data message: only text and binary convert to a Message"
        );
        assert!(
            FromTungsteniteError::Close(None)
                .to_string()
                .starts_with("a close message")
        );
        let _: &dyn std::error::Error = &err;
    }

    #[test]
    fn close_codes_round_trip_for_every_value() {
        for raw in 0..=u16::MAX {
            let ours = CloseCode::new(raw);
            let theirs = ours.into_tungstenite();
            assert_eq!(u16::from(theirs), raw);
            assert_eq!(theirs.into_tidings(), ours);
        }
        assert_eq!(CloseCode::NORMAL.into_tungstenite(), TCloseCode::Normal);
        assert_eq!(TCloseCode::Size.into_tidings(), CloseCode::MESSAGE_TOO_BIG);
        assert_eq!(TCloseCode::Abnormal.into_tidings(), CloseCode::ABNORMAL);
    }

    #[test]
    fn close_frames_round_trip() {
        let ours = CloseFrame::new(CloseCode::new(4001), "room closed");
        let theirs = ours.clone().into_tungstenite();
        assert_eq!(theirs.code, TCloseCode::from(4001));
        assert_eq!(theirs.reason, "room closed");
        assert_eq!(theirs.into_tidings(), ours);
    }

    #[test]
    fn text_types_convert_both_ways() {
        let ours = Utf8Bytes::from_static("ünïcode");
        let theirs = ours.clone().into_tungstenite();
        assert_eq!(theirs.as_str(), "ünïcode");
        assert_eq!(theirs.into_tidings(), ours);
    }
}
