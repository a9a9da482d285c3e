//! Server-Sent Events encoder: the `text/event-stream` format of the WHATWG
//! HTML Standard, §9.2 "Server-sent events" (§9.2.5 "Parsing an event
//! stream", §9.2.6 "Interpreting an event stream").
//!
//! Pure formatting: an [`SseEvent`] becomes the bytes of one event, ending
//! with the blank line that makes a browser's `EventSource` dispatch it. The
//! result is a [`Bytes`], so an event sent to many subscribers is encoded
//! once and its buffer shared (see [`SseEvent::to_bytes`]).
//!
//! ```text
//! : optional comment          <- ignored by clients; also used for keep-alive
//! event: update               <- event type (default "message")
//! id: 42                      <- becomes the stream's last event ID
//! retry: 3000                 <- reconnection time in milliseconds
//! data: first line            <- one `data:` line per line of the data
//! data: second line
//!                             <- blank line: dispatch
//! ```
//!
//! This module does not do I/O, does not parse event streams, does not
//! track last-event IDs or reconnection, and does not write HTTP responses:
//! it gives the [`SSE_CONTENT_TYPE`] (and [`SSE_RESPONSE_HEADERS`]) for the
//! layer that does.
//!
//! Field values that the format cannot carry are refused when they are
//! given: an event type or ID containing CR or LF would end the field early
//! and inject other fields, and an ID containing NUL is ignored by clients
//! (§9.2.6), so [`SseEvent::event`] and [`SseEvent::id`] return
//! `Result`. Data and comments may contain any line breaks: they are split
//! into several lines, which a client joins back with LF.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// The media type of an event stream (HTML §9.2.5): the `Content-Type` of
/// the response that carries it.
pub const SSE_CONTENT_TYPE: &str = "text/event-stream";

/// Headers for the HTTP response that opens an event stream: the content
/// type, and `Cache-Control: no-cache` so that caches and proxies pass
/// events through instead of storing the (never-ending) body.
pub const SSE_RESPONSE_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", SSE_CONTENT_TYPE),
    ("Cache-Control", "no-cache"),
];

/// A keep-alive: an empty comment line and a blank line (`":\n\n"`), which
/// clients ignore (HTML §9.2.6: lines starting with a colon) but which keeps
/// proxies and load balancers from closing an idle stream. The blank line
/// dispatches nothing, since no data was given.
#[must_use]
pub fn keepalive() -> Bytes {
    Bytes::from_static(b":\n\n")
}

/// A field value that the event-stream format cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// The event type contains CR or LF, which would end the `event:` line
    /// early (HTML §9.2.5).
    LineBreakInEvent,
    /// The ID contains CR or LF, which would end the `id:` line early.
    LineBreakInId,
    /// The ID contains NUL, which makes clients ignore the `id:` field
    /// (HTML §9.2.6).
    NulInId,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LineBreakInEvent => "SSE event type contains a line break",
            Self::LineBreakInId => "SSE event ID contains a line break",
            Self::NulInId => "SSE event ID contains NUL",
        })
    }
}

impl std::error::Error for SseError {}

/// One event of a `text/event-stream` (HTML §9.2), built field by field and
/// encoded with [`encode`](Self::encode) or [`to_bytes`](Self::to_bytes).
///
/// Fields are written in a fixed order: comment, `event`, `id`, `retry`,
/// `data`, then the blank line that dispatches the event. An event without
/// data ([`SseEvent::new`] plus only `id`, `retry` or a comment) updates the
/// client's state but is not dispatched to listeners (§9.2.6).
///
/// ```
/// # use tidings_core::sse::SseEvent;
/// use std::time::Duration;
///
/// let event = SseEvent::data("line one\nline two")
///     .event("update")?
///     .id("42")?
///     .retry(Duration::from_secs(3));
/// assert_eq!(
///     &event.to_bytes()[..],
///     b"event: update\nid: 42\nretry: 3000\ndata: line one\ndata: line two\n\n"
/// );
/// # Ok::<(), tidings_core::sse::SseError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: Option<String>,
}

impl SseEvent {
    /// An event with no fields; it encodes to just the blank line. Add data
    /// with [`with_data`](Self::with_data) for it to be dispatched.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An event carrying `data`. Line breaks (`\r\n`, `\n` or `\r`) split it
    /// into several `data:` lines; the client receives the lines joined with
    /// `\n`. Empty data is still an event (one empty `data:` line).
    #[must_use]
    pub fn data(data: impl Into<String>) -> Self {
        Self::new().with_data(data)
    }

    /// Sets or replaces the data, as in [`data`](Self::data).
    #[must_use]
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the event type, the name of the listener a browser calls
    /// (`"message"` when not set, or when set to the empty string).
    ///
    /// # Errors
    ///
    /// [`SseError::LineBreakInEvent`] if `name` contains CR or LF.
    pub fn event(mut self, name: impl Into<String>) -> Result<Self, SseError> {
        let name = name.into();
        if has_line_break(&name) {
            return Err(SseError::LineBreakInEvent);
        }
        self.event = Some(name);
        Ok(self)
    }

    /// Sets the event ID, which the client remembers and sends back as
    /// `Last-Event-ID` when it reconnects. An empty ID resets it.
    ///
    /// # Errors
    ///
    /// [`SseError::LineBreakInId`] if `id` contains CR or LF,
    /// [`SseError::NulInId`] if it contains NUL (HTML §9.2.6: clients ignore
    /// such an ID).
    pub fn id(mut self, id: impl Into<String>) -> Result<Self, SseError> {
        let id = id.into();
        if has_line_break(&id) {
            return Err(SseError::LineBreakInId);
        }
        if id.contains('\0') {
            return Err(SseError::NulInId);
        }
        self.id = Some(id);
        Ok(self)
    }

    /// Sets the client's reconnection time. Sub-millisecond precision is
    /// dropped; durations beyond `u64::MAX` milliseconds are clamped.
    #[must_use]
    pub fn retry(self, after: Duration) -> Self {
        self.retry_ms(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
    }

    /// Sets the client's reconnection time in milliseconds (`retry:` field).
    #[must_use]
    pub fn retry_ms(mut self, millis: u64) -> Self {
        self.retry = Some(millis);
        self
    }

    /// Sets a comment, written as `:` lines before the fields and ignored by
    /// clients. Line breaks split it into several comment lines.
    #[must_use]
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// The exact number of bytes [`encode`](Self::encode) appends.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let mut len = 1; // the blank line
        if let Some(comment) = &self.comment {
            len += lines(comment).map(|l| field_len(0, l)).sum::<usize>();
        }
        if let Some(event) = &self.event {
            len += field_len(b"event".len(), event);
        }
        if let Some(id) = &self.id {
            len += field_len(b"id".len(), id);
        }
        if let Some(retry) = self.retry {
            len += b"retry: \n".len() + decimal_len(retry);
        }
        if let Some(data) = &self.data {
            len += lines(data)
                .map(|l| field_len(b"data".len(), l))
                .sum::<usize>();
        }
        len
    }

    /// Appends the encoded event to `out`, ending with the blank line that
    /// dispatches it.
    ///
    /// Lines end with LF. Each field is written as `name: value` (a value
    /// that itself starts with a space keeps it: the client strips exactly
    /// one); an empty value is written as `name:`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        if let Some(comment) = &self.comment {
            for line in lines(comment) {
                put_field(out, b"", line);
            }
        }
        if let Some(event) = &self.event {
            put_field(out, b"event", event);
        }
        if let Some(id) = &self.id {
            put_field(out, b"id", id);
        }
        if let Some(retry) = self.retry {
            out.put_slice(b"retry: ");
            let mut digits = [0u8; 20];
            let at = format_decimal(retry, &mut digits);
            out.put_slice(&digits[at..]);
            out.put_u8(b'\n');
        }
        if let Some(data) = &self.data {
            for line in lines(data) {
                put_field(out, b"data", line);
            }
        }
        out.put_u8(b'\n');
    }

    /// The encoded event as shareable bytes: encode once, then clone the
    /// [`Bytes`] (a reference-count increment) for every subscriber.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Splits on `\r\n`, `\n` and `\r`, the three line endings of HTML §9.2.5.
/// A trailing line break yields a final empty line, so that the client's
/// join gives the text back exactly (`"a\n"` is `data: a` + `data:`).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}

/// Length of `name: value\n` (or `name:\n` for an empty value); the comment
/// field has an empty name.
fn field_len(name: usize, value: &str) -> usize {
    if value.is_empty() {
        name + 2
    } else {
        name + 3 + value.len()
    }
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &str) {
    out.put_slice(name);
    if value.is_empty() {
        out.put_slice(b":\n");
    } else {
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_u8(b'\n');
    }
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Writes `n` in decimal at the end of `buf`; returns where it starts.
fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(event: &SseEvent) -> String {
        let bytes = event.to_bytes();
        assert_eq!(bytes.len(), event.encoded_len(), "encoded_len is exact");
        String::from_utf8(bytes.to_vec()).expect("the encoder writes UTF-8")
    }

    /// A dispatched event, as an `EventSource` sees it.
    #[derive(Debug, PartialEq, Eq)]
    struct Dispatched {
        event_type: String,
        data: String,
        last_event_id: String,
    }

    /// What a spec-conformant client ends up with after reading a stream.
    #[derive(Debug, Default)]
    struct Client {
        events: Vec<Dispatched>,
        retry: Option<u64>,
        last_event_id: String,
        comments: usize,
    }

    /// HTML §9.2.5-§9.2.6, "Parsing an event stream" and "Interpreting an
    /// event stream", written from the spec text for these tests.
    fn parse_stream(stream: &str) -> Client {
        let mut client = Client::default();
        let mut data = String::new();
        let mut event_type = String::new();
        let mut id_buffer = String::new();
        let stream = stream.strip_prefix('\u{feff}').unwrap_or(stream);

        // Split into lines on CRLF, LF or CR; a final unterminated line is
        // not processed (the stream would still be open).
        let mut lines = Vec::new();
        let mut rest = stream;
        while let Some(at) = rest.find(['\r', '\n']) {
            lines.push(&rest[..at]);
            let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
            rest = &rest[at + skip..];
        }

        for line in lines {
            if line.is_empty() {
                // Dispatch.
                client.last_event_id = id_buffer.clone();
                if data.is_empty() {
                    event_type.clear();
                    continue;
                }
                if data.ends_with('\n') {
                    data.pop();
                }
                client.events.push(Dispatched {
                    event_type: if event_type.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut event_type)
                    },
                    data: std::mem::take(&mut data),
                    last_event_id: client.last_event_id.clone(),
                });
                event_type.clear();
                continue;
            }
            if line.starts_with(':') {
                client.comments += 1;
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(at) => {
                    let value = &line[at + 1..];
                    (&line[..at], value.strip_prefix(' ').unwrap_or(value))
                }
                None => (line, ""),
            };
            match field {
                "event" => event_type = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => id_buffer = value.to_owned(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    client.retry = value.parse().ok();
                }
                _ => {}
            }
        }
        client
    }

    #[test]
    fn single_line_data() {
        assert_eq!(encoded(&SseEvent::data("hello")), "data: hello\n\n");
    }

    #[test]
    fn multi_line_data_splits_on_every_line_ending() {
        // HTML §9.2.6 example: two data lines joined with LF on the client.
        let event = SseEvent::data("YHOO\n+2\r\n10\rend");
        let text = encoded(&event);
        assert_eq!(text, "data: YHOO\ndata: +2\ndata: 10\ndata: end\n\n");
        assert_eq!(parse_stream(&text).events[0].data, "YHOO\n+2\n10\nend");
    }

    #[test]
    fn crlf_in_data_is_one_line_break_not_two() {
        assert_eq!(encoded(&SseEvent::data("a\r\nb")), "data: a\ndata: b\n\n");
        assert_eq!(
            encoded(&SseEvent::data("a\r\rb")),
            "data: a\ndata:\ndata: b\n\n"
        );
    }

    #[test]
    fn empty_data_is_still_dispatched() {
        let text = encoded(&SseEvent::data(""));
        assert_eq!(text, "data:\n\n");
        let client = parse_stream(&text);
        assert_eq!(client.events.len(), 1);
        assert_eq!(client.events[0].data, "");
    }

    #[test]
    fn trailing_newline_in_data_survives() {
        let text = encoded(&SseEvent::data("a\n"));
        assert_eq!(text, "data: a\ndata:\n\n");
        assert_eq!(parse_stream(&text).events[0].data, "a\n");
    }

    #[test]
    fn leading_space_in_value_is_kept() {
        // The client strips exactly one space after the colon.
        let text = encoded(
            &SseEvent::data(" indented")
                .event(" spaced")
                .expect("no CR/LF"),
        );
        assert_eq!(text, "event:  spaced\ndata:  indented\n\n");
        let client = parse_stream(&text);
        assert_eq!(client.events[0].data, " indented");
        assert_eq!(client.events[0].event_type, " spaced");
    }

    #[test]
    fn fields_come_in_fixed_order() -> Result<(), SseError> {
        let event = SseEvent::data("x")
            .retry_ms(10)
            .id("7")?
            .event("tick")?
            .comment("hi");
        assert_eq!(
            encoded(&event),
            ": hi\nevent: tick\nid: 7\nretry: 10\ndata: x\n\n"
        );
        Ok(())
    }

    #[test]
    fn retry_from_duration_in_milliseconds() {
        let text = encoded(&SseEvent::new().retry(Duration::from_micros(2_500_900)));
        assert_eq!(text, "retry: 2500\n\n");
        assert_eq!(parse_stream(&text).retry, Some(2500));
        assert_eq!(
            encoded(&SseEvent::new().retry(Duration::MAX)),
            format!("retry: {}\n\n", u64::MAX)
        );
        assert_eq!(encoded(&SseEvent::new().retry_ms(0)), "retry: 0\n\n");
    }

    #[test]
    fn event_without_data_is_not_dispatched_but_sets_the_id() -> Result<(), SseError> {
        let text = encoded(&SseEvent::new().id("5")?);
        assert_eq!(text, "id: 5\n\n");
        let client = parse_stream(&text);
        assert!(client.events.is_empty());
        assert_eq!(client.last_event_id, "5");
        Ok(())
    }

    #[test]
    fn empty_id_resets_the_last_event_id() -> Result<(), SseError> {
        let stream = [SseEvent::data("a").id("1")?, SseEvent::data("b").id("")?]
            .iter()
            .map(encoded)
            .collect::<String>();
        assert!(stream.ends_with("id:\ndata: b\n\n"));
        assert_eq!(parse_stream(&stream).last_event_id, "");
        Ok(())
    }

    #[test]
    fn multi_line_comment_becomes_several_comment_lines() {
        let text = encoded(&SseEvent::data("x").comment("one\r\ntwo"));
        assert_eq!(text, ": one\n: two\ndata: x\n\n");
        assert_eq!(parse_stream(&text).comments, 2);
    }

    #[test]
    fn line_break_or_nul_in_event_or_id_is_refused() {
        assert_eq!(
            SseEvent::data("x").event("a\nb"),
            Err(SseError::LineBreakInEvent)
        );
        assert_eq!(
            SseEvent::data("x").event("a\rb"),
            Err(SseError::LineBreakInEvent)
        );
        assert_eq!(
            SseEvent::data("x").id("1\r\n"),
            Err(SseError::LineBreakInId)
        );
        assert_eq!(SseEvent::data("x").id("1\0"), Err(SseError::NulInId));
        assert_eq!(SseError::NulInId.to_string(), "SSE event ID contains NUL");
    }

    #[test]
    fn keepalive_is_an_ignored_comment() {
        assert_eq!(&keepalive()[..], b":\n\n");
        let client = parse_stream(":\n\n");
        assert!(client.events.is_empty());
        assert_eq!(client.comments, 1);
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = BytesMut::from(&b"data: a\n\n"[..]);
        SseEvent::data("b").encode(&mut out);
        assert_eq!(&out[..], b"data: a\n\ndata: b\n\n");
    }

    fn field_value() -> impl Strategy<Value = String> {
        // Any text without CR, LF or NUL, including leading spaces and colons.
        "[^\r\n\0]{0,20}"
    }

    proptest! {
        #[test]
        fn client_parses_back_what_was_encoded(
            events in proptest::collection::vec(
                (
                    "(?s).{0,40}",
                    proptest::option::of(field_value()),
                    proptest::option::of(field_value()),
                    proptest::option::of(any::<u64>()),
                    proptest::option::of("(?s).{0,20}"),
                ),
                1..6,
            ),
        ) {
            let mut stream = BytesMut::new();
            let mut expected = Vec::new();
            let mut last_id = String::new();
            let mut last_retry = None;
            for (data, event_type, id, retry, comment) in events {
                let mut event = SseEvent::data(data.clone());
                if let Some(name) = &event_type {
                    event = event.event(name.clone()).expect("no CR/LF");
                }
                if let Some(id) = &id {
                    event = event.id(id.clone()).expect("no CR/LF/NUL");
                    last_id = id.clone();
                }
                if let Some(ms) = retry {
                    event = event.retry_ms(ms);
                    last_retry = Some(ms);
                }
                if let Some(text) = comment {
                    event = event.comment(text);
                }
                let before = stream.len();
                event.encode(&mut stream);
                prop_assert_eq!(stream.len() - before, event.encoded_len());
                expected.push(Dispatched {
                    event_type: match event_type {
                        Some(name) if !name.is_empty() => name,
                        _ => "message".to_owned(),
                    },
                    // The client sees every line ending as LF.
                    data: data.replace("\r\n", "\n").replace('\r', "\n"),
                    last_event_id: last_id.clone(),
                });
            }
            let stream = std::str::from_utf8(&stream).expect("UTF-8 in, UTF-8 out");
            let client = parse_stream(stream);
            prop_assert_eq!(client.events, expected);
            prop_assert_eq!(client.retry, last_retry);
        }
    }
}
