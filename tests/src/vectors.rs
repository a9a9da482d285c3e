//! The frame vector file format (`tests/vectors/frames.txt`).
//!
//! One case per line; blank lines and lines starting with `#` are ignored:
//!
//! ```text
//! name | receiver | hex bytes | expected events [| options]
//! ```
//!
//! * `receiver`: `server` (the bytes come from a client, so they must be masked) or `client`.
//! * `hex bytes`: the raw wire stream as the receiver reads it. Whitespace is ignored; `xx*N`
//!   stands for the byte `xx` repeated `N` times (so a 64 KiB frame fits on a line). Expanded,
//!   the field is exactly the bytes on the wire, usable as a fuzz seed.
//! * `expected events`, space-separated, in order; the list is exhaustive:
//!   `text:<utf8 without spaces>`, `texthex:<hex>`, `binary:<hex>`, `ping:<hex>`, `pong:<hex>`
//!   (hex may be empty and may use `xx*N`), `close:<code>` / `close:none` (`CloseReceived`),
//!   `closed:<code>` (`Closed` without error), `fail:<code>` (`Closed` with a protocol error and that
//!   code, and the receiver's output ends with a close frame carrying that code), or `none`.
//! * `options`, comma-separated: `max_frame=<n>`, `max_message=<n>`.

use tidings_core::{CloseOutcome, Config, Event, Message, Role};

use crate::decode_frames;

/// One expected event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A text message.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// `CloseReceived` with this code (`None`: no status code).
    CloseReceived(Option<u16>),
    /// `Closed` without an error, with this code.
    Closed(u16),
    /// `Closed` with a protocol error; a close frame with this code was sent.
    Fail(u16),
}

/// One vector.
#[derive(Clone, Debug)]
pub struct Vector {
    /// The case name.
    pub name: String,
    /// The side that reads the bytes.
    pub receiver: Role,
    /// The raw wire stream.
    pub wire: Vec<u8>,
    /// The expected events, in order.
    pub expect: Vec<Expect>,
    /// Frame size limit, if set.
    pub max_frame: Option<usize>,
    /// Message size limit, if set.
    pub max_message: Option<usize>,
}

impl Vector {
    /// The receiver's configuration.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        if let Some(n) = self.max_frame {
            c = c.max_frame_size(Some(n));
        }
        if let Some(n) = self.max_message {
            c = c.max_message_size(Some(n));
        }
        c
    }
}

/// Parses hex with whitespace and `xx*N` repeats.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for token in s.split_whitespace() {
        let (hex, repeat) = match token.split_once('*') {
            Some((h, n)) => (
                h,
                Some(
                    n.parse::<usize>()
                        .map_err(|e| format!("bad repeat {n:?}: {e}"))?,
                ),
            ),
            None => (token, None),
        };
        if hex.len() % 2 != 0 {
            return Err(format!("odd number of hex digits in {token:?}"));
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for i in (0..hex.len()).step_by(2) {
            let pair = hex
                .get(i..i + 2)
                .ok_or_else(|| format!("bad hex {token:?}"))?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|e| format!("bad hex {pair:?}: {e}"))?);
        }
        match repeat {
            Some(n) => {
                let [b] = bytes[..] else {
                    return Err(format!("repeat needs exactly one byte: {token:?}"));
                };
                out.extend(std::iter::repeat_n(b, n));
            }
            None => out.extend_from_slice(&bytes),
        }
    }
    Ok(out)
}

fn parse_expect(token: &str) -> Result<Expect, String> {
    let (kind, arg) = token
        .split_once(':')
        .ok_or_else(|| format!("bad expectation {token:?}"))?;
    let code = |s: &str| s.parse::<u16>().map_err(|e| format!("bad code {s:?}: {e}"));
    // Inside an expectation, `xx*N` repeats are written without spaces: `binary:00*256`.
    let hex = |s: &str| parse_hex(&s.replace(',', " "));
    Ok(match kind {
        "text" => Expect::Text(arg.as_bytes().to_vec()),
        "texthex" => Expect::Text(hex(arg)?),
        "binary" => Expect::Binary(hex(arg)?),
        "ping" => Expect::Ping(hex(arg)?),
        "pong" => Expect::Pong(hex(arg)?),
        "close" if arg == "none" => Expect::CloseReceived(None),
        "close" => Expect::CloseReceived(Some(code(arg)?)),
        "closed" => Expect::Closed(code(arg)?),
        "fail" => Expect::Fail(code(arg)?),
        _ => return Err(format!("unknown expectation {token:?}")),
    })
}

/// Parses the vector file.
pub fn parse_vectors(text: &str) -> Result<Vec<Vector>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("line {}: {m}", i + 1);
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [name, receiver, hex, expect, ref rest @ ..] = fields[..] else {
            return Err(err("expected at least 4 fields".into()));
        };
        let receiver = match receiver {
            "server" => Role::Server,
            "client" => Role::Client,
            other => return Err(err(format!("bad receiver {other:?}"))),
        };
        let wire = parse_hex(hex).map_err(err)?;
        let expect = if expect == "none" {
            Vec::new()
        } else {
            expect
                .split_whitespace()
                .map(parse_expect)
                .collect::<Result<_, _>>()
                .map_err(err)?
        };
        let mut v = Vector {
            name: name.to_owned(),
            receiver,
            wire,
            expect,
            max_frame: None,
            max_message: None,
        };
        for opt in rest.iter().flat_map(|o| o.split(',')).map(str::trim) {
            if opt.is_empty() {
                continue;
            }
            let (k, val) = opt
                .split_once('=')
                .ok_or_else(|| err(format!("bad option {opt:?}")))?;
            let n = val
                .parse::<usize>()
                .map_err(|e| err(format!("bad option value {val:?}: {e}")))?;
            match k {
                "max_frame" => v.max_frame = Some(n),
                "max_message" => v.max_message = Some(n),
                _ => return Err(err(format!("unknown option {k:?}"))),
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// Checks the receiver's `events` and its `output` against the vector's expectations.
pub fn check(v: &Vector, events: &[Event], output: &[u8]) -> Result<(), String> {
    let mismatch = || format!("expected {:?}\n     got {events:?}", v.expect);
    if events.len() != v.expect.len() {
        return Err(mismatch());
    }
    for (e, x) in events.iter().zip(&v.expect) {
        let ok = match (x, e) {
            (Expect::Text(t), Event::Message(Message::Text(m))) => m.as_bytes()[..] == t[..],
            (Expect::Binary(b), Event::Message(Message::Binary(m))) => m[..] == b[..],
            (Expect::Ping(p), Event::Ping(m)) => m[..] == p[..],
            (Expect::Pong(p), Event::Pong(m)) => m[..] == p[..],
            (Expect::CloseReceived(c), Event::CloseReceived(f)) => {
                f.as_ref().map(|f| f.code.as_u16()) == *c
            }
            (Expect::Closed(c), Event::Closed(o)) => o.error.is_none() && o.code.as_u16() == *c,
            (Expect::Fail(c), Event::Closed(o)) => is_protocol_failure(o, *c),
            _ => false,
        };
        if !ok {
            return Err(mismatch());
        }
    }
    if let Some(Expect::Fail(code)) = v.expect.last() {
        let frames = decode_frames(output).map_err(|e| format!("output undecodable: {e:?}"))?;
        let last = frames.last().and_then(|f| f.close_code());
        if last != Some(*code) {
            return Err(format!(
                "expected a close frame with {code} last on the wire, got {frames:?}"
            ));
        }
    }
    Ok(())
}

/// A failed connection: the close frame it sent carries `code`, and as no close frame was
/// received its connection close code is 1006 (RFC 6455 §7.1.5).
fn is_protocol_failure(o: &CloseOutcome, code: u16) -> bool {
    o.sent.as_ref().map(|f| f.code.as_u16()) == Some(code)
        && o.code.as_u16() == 1006
        && o.error.as_ref().and_then(|e| e.protocol()).is_some()
}
