//! Messages as the application sees them: text (validated UTF-8) or binary, with owned `Bytes`.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// The kind of a data message (RFC 6455 §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

/// Bytes that are known to be valid UTF-8: a text message payload, cheap to clone and share.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Validates `bytes` as UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, crate::Utf8Error> {
        crate::frame::utf8::validate(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// A static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        crate::raw::str_from_validated(&self.0)
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Converts into the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Utf8Bytes::from(s.as_str())
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = crate::Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        Utf8Bytes::try_from_bytes(bytes)
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = crate::Utf8Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Utf8Bytes::try_from_bytes(Bytes::from(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }

    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload as `Bytes` (cheap: reference counted).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// The payload as text: a text message's own (no check, no copy), or a binary message's
    /// bytes once validated as UTF-8 (no copy either). The conversion tungstenite's and axum's
    /// `Message::into_text` make.
    ///
    /// # Errors
    ///
    /// A binary payload that is not valid UTF-8.
    pub fn into_text(self) -> Result<Utf8Bytes, crate::Utf8Error> {
        match self {
            Message::Text(t) => Ok(t),
            Message::Binary(b) => Utf8Bytes::try_from_bytes(b),
        }
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

/// A text message, copying the string.
impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(Utf8Bytes::from(text))
    }
}

/// A text message, copying the string.
impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Message::Text(Utf8Bytes::from(text))
    }
}

/// A text message, taking the string's buffer without copying.
impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(Utf8Bytes::from(text))
    }
}

/// A text message, without copying.
impl From<Utf8Bytes> for Message {
    fn from(text: Utf8Bytes) -> Self {
        Message::Text(text)
    }
}

/// A binary message, copying the bytes.
impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(data))
    }
}

/// A binary message, taking the vector's buffer without copying.
impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(Bytes::from(data))
    }
}

/// A binary message, without copying.
impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

/// The payload of either kind, without copying ([`Message::into_bytes`]).
impl From<Message> for Bytes {
    fn from(message: Message) -> Self {
        message.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_convert_to_text_messages() {
        let owned = String::from("héllo");
        for message in [
            Message::from("héllo"),
            Message::from(&owned),
            Message::from(owned.clone()),
            Message::from(Utf8Bytes::from_static("héllo")),
        ] {
            assert!(message.is_text() && !message.is_binary(), "{message:?}");
            assert_eq!(message.kind(), MessageKind::Text);
            assert_eq!(message.as_text(), Some("héllo"));
            assert_eq!(message, Message::text("héllo"));
        }
    }

    #[test]
    fn bytes_convert_to_binary_messages() {
        let data = [0xff, 0x00, 0x7f];
        for message in [
            Message::from(&data[..]),
            Message::from(data.to_vec()),
            Message::from(Bytes::copy_from_slice(&data)),
        ] {
            assert!(message.is_binary() && !message.is_text(), "{message:?}");
            assert_eq!(message.kind(), MessageKind::Binary);
            assert_eq!(message.as_text(), None);
            assert_eq!(message.as_bytes(), &data);
            assert_eq!(message, Message::binary(data.to_vec()));
        }
    }

    #[test]
    fn utf8_bytes_are_binary_when_given_as_bytes() {
        // Valid UTF-8 given as bytes stays binary: the kind follows the type, not the content.
        let message = Message::from(b"text".to_vec());
        assert!(message.is_binary());
    }

    #[test]
    fn conversions_from_owned_buffers_do_not_copy() {
        let bytes = Bytes::from(vec![1u8, 2, 3]);
        let ptr = bytes.as_ptr();
        let message = Message::from(bytes);
        assert_eq!(message.as_bytes().as_ptr(), ptr);
        assert_eq!(Bytes::from(message).as_ptr(), ptr);

        let text = String::from("no copy");
        let ptr = text.as_ptr();
        let message = Message::from(text);
        assert_eq!(message.as_bytes().as_ptr(), ptr);
        let text = message.into_text().expect("text");
        assert_eq!(text.as_bytes().as_ptr(), ptr);
    }

    #[test]
    fn into_text_validates_binary_payloads() {
        assert_eq!(
            Message::from("a").into_text().map(|t| t.to_string()),
            Ok("a".to_owned())
        );
        let binary = Message::from(&b"caf\xc3\xa9"[..]);
        assert_eq!(
            binary.into_text().map(|t| t.to_string()),
            Ok("café".to_owned())
        );
        let invalid = Message::from(&b"ab\xff"[..]);
        let err = invalid.into_text().expect_err("not UTF-8");
        assert_eq!(err.valid_up_to(), 2);
    }

    #[test]
    fn len_and_is_empty_count_payload_bytes() {
        assert_eq!(Message::from("é").len(), 2);
        assert!(Message::from("").is_empty());
        assert!(Message::from(Vec::<u8>::new()).is_empty());
        assert!(!Message::from(&[0u8][..]).is_empty());
    }
}
