//! Fuzz target bodies (habit 9: fuzz targets are also tests).
//!
//! Each `pub fn` here is the whole body of one cargo-fuzz target in `fuzz/fuzz_targets/`, and
//! `tests/tests/fuzz_seeds.rs` runs it over the committed seed corpus `fuzz/corpus/<target>/`, so
//! CI exercises every target even where libFuzzer does not run.
//!
//! The bodies check properties, not only the absence of panics; a broken property panics with a
//! message that names it:
//!
//! * [`frame_server`], [`frame_client`]: raw wire bytes into one connection of that role, chunked,
//!   with an echoing application; the output is decoded and compared with a model of what the
//!   connection must have written (echoes, pongs, close replies, the failure close code).
//! * [`handshake_request`], [`handshake_response`]: the two handshake parsers; prefix consistency,
//!   the `101` that `accept` builds, the status and response of every error.
//! * [`stateful`]: a script of commands, deliveries, corruption, clock steps and EOFs on an
//!   in-memory client/server pair; local errors are predicted exactly, and messages sent over an
//!   uncorrupted direction arrive intact and in order.
//! * [`utf8_incremental`]: [`Utf8Validator`] fed in chunks agrees with `std::str::from_utf8`.
//! * [`hub_envelope`]: the hub's JSON envelope and event text from a peer's message agree with
//!   serde_json's reading and round-trip.
//! * [`deflate_inflate`]: permessage-deflate on a client connection under a small message limit
//!   (the same messages whatever the reads, a tighter limit only refuses, and only what is over
//!   it, with 1009), and compress/decompress round trips between negotiated instances.
//!
//! Input layouts are documented on each function; bytes past the end of the input read as `0`.

use std::time::{Duration, Instant};

use tidings_core::ext::deflate::{DEFAULT_THRESHOLD, DeflateConfig};
use tidings_core::ext::{self, Extension, ExtensionConfig, ExtensionError};
use tidings_core::handshake::{
    self, AcceptOptions, ClientRequest, HandshakeConfig, HandshakeError, Limits, OriginPolicy,
    ServerHandshake, Status,
};
use tidings_core::mask::apply_mask;
use tidings_core::{
    CloseCode, CloseOutcome, Config, Connection, ConnectionError, EncodedFrame, Error, Event,
    FrameHeader, Initiator, Lookahead, MAX_CLOSE_REASON, Message, MessageKind, OpCode,
    ProtocolError, RSV1, Role, Utf8Validator,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Reads fuzz input front to back; past the end every byte is `0`.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }
}

/// A small deterministic generator (xorshift32) for chunk sizes and masking keys.
#[derive(Clone, Debug)]
struct Rng(u32);

impl Rng {
    fn new(seed: u32) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9) | 1)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=max` (`max >= 1`).
    fn range1(&mut self, max: usize) -> usize {
        1 + (self.next() as usize) % max.max(1)
    }
}

/// A deterministic mask source for client connections.
fn masks(seed: u32) -> impl FnMut() -> [u8; 4] + Send + 'static {
    let mut rng = Rng::new(seed);
    move || rng.next().to_le_bytes()
}

fn new_connection(role: Role, config: Config, now: Instant, seed: u32) -> Connection {
    match role {
        Role::Server => Connection::server(config, now),
        Role::Client => Connection::client_with_masks(config, masks(seed), now),
    }
}

/// One frame a connection wrote, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OutFrame {
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

impl OutFrame {
    fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload.as_slice()) {
            (OpCode::Close, [hi, lo, ..]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// Decodes everything a connection of `role` wrote. Panics unless the bytes are a sequence of
/// complete, valid frames, masked exactly when the writer is a client (RFC 6455 §5.1, §5.3), with
/// no RSV bits (no extension is negotiated here).
fn decode_output(role: Role, wire: &[u8]) -> Vec<OutFrame> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let (header, hlen) = match FrameHeader::decode(&wire[pos..]) {
            Ok(Some(h)) => h,
            Ok(None) => panic!("{role:?} output ends inside a frame header at byte {pos}"),
            Err(e) => panic!("{role:?} output has an invalid frame header at byte {pos}: {e}"),
        };
        match role {
            Role::Client => assert!(header.mask.is_some(), "client wrote an unmasked frame"),
            Role::Server => assert!(header.mask.is_none(), "server wrote a masked frame"),
        }
        assert_eq!(
            header.rsv, 0,
            "{role:?} wrote RSV bits without an extension"
        );
        let start = pos + hlen;
        let end = usize::try_from(header.len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|end| *end <= wire.len())
            .unwrap_or_else(|| panic!("{role:?} output ends inside a frame payload at {pos}"));
        let mut payload = wire[start..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key);
        }
        frames.push(OutFrame {
            fin: header.fin,
            opcode: header.opcode,
            payload,
        });
        pos = end;
    }
    frames
}

/// Rules every output stream follows whatever happened: well-formed fragmentation (RFC 6455
/// §5.4), at most one close frame and no data frame after it (§5.5.1; control frames may follow),
/// a valid close payload (§5.5.1, §7.4). Returns the close frame's code (`Some(None)` for a close
/// frame without one).
fn check_output_rules(role: Role, frames: &[OutFrame]) -> Option<Option<u16>> {
    let mut in_message = false;
    let mut close: Option<Option<u16>> = None;
    for (i, f) in frames.iter().enumerate() {
        let after_close = close.is_some();
        match f.opcode {
            OpCode::Text | OpCode::Binary => {
                assert!(
                    !after_close,
                    "{role:?} wrote data frame {i} after its close frame"
                );
                assert!(!in_message, "{role:?} started a message inside another");
                in_message = !f.fin;
            }
            OpCode::Continuation => {
                assert!(
                    !after_close,
                    "{role:?} wrote data frame {i} after its close frame"
                );
                assert!(
                    in_message,
                    "{role:?} wrote a continuation outside a message"
                );
                in_message = !f.fin;
            }
            OpCode::Ping | OpCode::Pong => {
                assert!(
                    f.payload.len() <= 125,
                    "{role:?} wrote a long control frame"
                );
            }
            OpCode::Close => {
                assert!(!after_close, "{role:?} wrote a second close frame");
                match f.payload.as_slice() {
                    [] => {}
                    [_] => panic!("{role:?} wrote a close frame with a 1-byte payload"),
                    [_, _, reason @ ..] => {
                        let code = f.close_code().unwrap_or_default();
                        assert!(
                            CloseCode::new(code).is_sendable(),
                            "{role:?} wrote close code {code}, which may not be sent"
                        );
                        assert!(reason.len() <= MAX_CLOSE_REASON, "close reason too long");
                        assert!(
                            std::str::from_utf8(reason).is_ok(),
                            "{role:?} wrote a close reason that is not UTF-8"
                        );
                    }
                }
                close = Some(f.close_code());
            }
        }
    }
    close
}

/// Whether `bytes` could still become valid UTF-8 with more bytes appended.
fn utf8_prefix_ok(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn check_message(m: &Message, limit: Option<usize>, who: &str) {
    if let Message::Text(t) = m {
        assert!(
            std::str::from_utf8(t.as_bytes()).is_ok(),
            "{who}: text message is not UTF-8"
        );
        assert!(m.as_text().is_some(), "{who}: text message without text");
    }
    if let Some(limit) = limit {
        assert!(
            m.len() <= limit,
            "{who}: message of {} bytes over the limit {limit}",
            m.len()
        );
    }
}

fn check_close_frame(cf: &Option<tidings_core::CloseFrame>, who: &str) {
    if let Some(cf) = cf {
        assert!(
            cf.code.is_sendable(),
            "{who}: CloseReceived with code {}",
            cf.code.as_u16()
        );
        assert!(cf.reason.len() <= MAX_CLOSE_REASON, "{who}: long reason");
    }
}

// ---------------------------------------------------------------------------------------------
// Frame targets
// ---------------------------------------------------------------------------------------------

const FRAME_LIMITS: [Option<usize>; 16] = [
    Some(0),
    Some(1),
    Some(7),
    Some(8),
    Some(64),
    Some(125),
    Some(126),
    Some(200),
    Some(256),
    Some(1000),
    Some(4096),
    Some(4097),
    Some(16384),
    Some(65535),
    Some(65536),
    None,
];

const MESSAGE_LIMITS: [Option<usize>; 16] = [
    Some(0),
    Some(1),
    Some(8),
    Some(16),
    Some(100),
    Some(128),
    Some(256),
    Some(1000),
    Some(4096),
    Some(5000),
    Some(16384),
    Some(65536),
    Some(100_000),
    Some(1 << 20),
    Some(tidings_core::DEFAULT_MAX_MESSAGE_SIZE),
    None,
];

/// How the input is cut into reads.
struct Chunker {
    mode: u8,
    param: usize,
    rng: Rng,
}

impl Chunker {
    fn next(&mut self) -> usize {
        match self.mode {
            0 => usize::MAX,
            1 | 6 => self.param + 1,
            2 => 1,
            3 | 7 => self.rng.range1(self.param + 1),
            4 => self.rng.range1(16),
            _ => (self.param % 16) + 1,
        }
    }

    /// Reads go through `input_buffer()` + `received()` (the zero-copy adapter path).
    fn via_input_buffer(&self) -> bool {
        matches!(self.mode, 6 | 7)
    }

    /// Hands `piece` to `conn` the way this chunker's mode reads.
    fn feed(&self, conn: &mut Connection, now: Instant, piece: &[u8]) {
        if self.via_input_buffer() {
            conn.input_buffer().extend_from_slice(piece);
            conn.received(now);
        } else {
            conn.receive(now, piece);
        }
    }
}

/// What the connection must have written, in order.
#[derive(Debug)]
enum Expect {
    Frame(OutFrame),
    /// The close frame of a failed connection: the code is checked, the reason is free text.
    FailClose(u16),
}

/// The application side of a frame target: checks every event and echoes data back.
struct FrameApp {
    role: Role,
    auto_pong: bool,
    stream: bool,
    echo_mode: u8,
    message_limit: Option<usize>,
    close_after: Option<usize>,
    eof_given: bool,
    events: usize,
    /// We wrote a close frame (our close, a reply, or the failure's).
    close_written: bool,
    /// Our own `close` call succeeded, with this code.
    local_close: Option<u16>,
    /// The code of the close frame we wrote (what `CloseOutcome::sent` must carry).
    sent_code: Option<u16>,
    closed: Option<CloseOutcome>,
    /// The previous event was `CloseReceived` with this frame.
    after_close_received: Option<Option<tidings_core::CloseFrame>>,
    /// The incoming streamed message: kind and bytes so far.
    incoming: Option<(MessageKind, Vec<u8>)>,
    /// Our echo of a streamed message is in progress.
    echoing_fragments: bool,
    expected: Vec<Expect>,
    /// Every event, in order.
    log: Vec<Event>,
}

impl FrameApp {
    fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        self.expected.push(Expect::Frame(OutFrame {
            fin,
            opcode,
            payload: payload.to_vec(),
        }));
    }

    /// The result a data or control command must have now (before any length check).
    fn send_state(&self) -> Result<(), Error> {
        // After `CloseReceived` the connection is already closed; `Closed` is the next event.
        if self.closed.is_some() || self.after_close_received.is_some() {
            Err(Error::Closed)
        } else if self.close_written {
            Err(Error::Closing)
        } else {
            Ok(())
        }
    }

    /// The result a ping or pong command must have now: control frames may follow our close
    /// frame, but nothing may be sent once the connection is closed.
    fn control_state(&self) -> Result<(), Error> {
        if self.closed.is_some() || self.after_close_received.is_some() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn poll_all(&mut self, conn: &mut Connection, now: Instant) {
        while let Some(event) = conn.poll_event() {
            self.on_event(conn, event, now);
        }
    }

    fn on_event(&mut self, conn: &mut Connection, event: Event, now: Instant) {
        let who = format!("{:?}", self.role);
        assert!(self.closed.is_none(), "{who}: event {event:?} after Closed");
        if let Some(cf) = self.after_close_received.take() {
            let Event::Closed(outcome) = &event else {
                panic!("{who}: CloseReceived not followed by Closed but by {event:?}");
            };
            assert!(outcome.clean, "{who}: close handshake done but not clean");
            assert!(outcome.error.is_none(), "{who}: clean close with an error");
            let initiator = match self.local_close {
                Some(_) => Initiator::Local,
                None => Initiator::Remote,
            };
            assert_eq!(outcome.initiator, initiator, "{who}: initiator");
            // RFC 6455 §7.1.5: the connection close code is the one received.
            let want = cf.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code);
            assert_eq!(outcome.code, want, "{who}: outcome code");
        }
        self.events += 1;
        self.log.push(event.clone());
        match event {
            Event::Message(m) => {
                assert!(!self.stream, "{who}: whole message in streaming mode");
                check_message(&m, self.message_limit, &who);
                self.echo_message(conn, m);
            }
            Event::Fragment(f) => {
                assert!(self.stream, "{who}: fragment outside streaming mode");
                let (kind, mut bytes) = match self.incoming.take() {
                    Some((kind, bytes)) => {
                        assert_eq!(kind, f.kind, "{who}: fragment kind changed mid-message");
                        (kind, bytes)
                    }
                    None => (f.kind, Vec::new()),
                };
                bytes.extend_from_slice(&f.data);
                if let Some(limit) = self.message_limit {
                    assert!(
                        bytes.len() <= limit,
                        "{who}: streamed message of {} bytes over the limit {limit}",
                        bytes.len()
                    );
                }
                if kind == MessageKind::Text {
                    if f.fin {
                        assert!(
                            std::str::from_utf8(&bytes).is_ok(),
                            "{who}: streamed text is not UTF-8"
                        );
                    } else {
                        assert!(
                            utf8_prefix_ok(&bytes),
                            "{who}: streamed text fragment is not a UTF-8 prefix"
                        );
                    }
                }
                if !f.fin {
                    self.incoming = Some((kind, bytes));
                }
                let want = self.send_state();
                let got = conn.send_fragment(f.kind, &f.data, f.fin);
                assert_eq!(got, want, "{who}: echo send_fragment");
                if got.is_ok() {
                    let opcode = match (self.echoing_fragments, f.kind) {
                        (true, _) => OpCode::Continuation,
                        (false, MessageKind::Text) => OpCode::Text,
                        (false, MessageKind::Binary) => OpCode::Binary,
                    };
                    self.frame(f.fin, opcode, &f.data);
                    self.echoing_fragments = !f.fin;
                }
            }
            Event::Ping(p) => {
                assert!(p.len() <= 125, "{who}: long ping payload");
                if self.auto_pong {
                    self.frame(true, OpCode::Pong, &p);
                } else {
                    let want = self.control_state();
                    let got = conn.send_pong(&p);
                    assert_eq!(got, want, "{who}: send_pong");
                    if got.is_ok() {
                        self.frame(true, OpCode::Pong, &p);
                    }
                }
            }
            Event::Pong(p) => assert!(p.len() <= 125, "{who}: long pong payload"),
            Event::CloseReceived(cf) => {
                check_close_frame(&cf, &who);
                if !self.close_written {
                    let payload = cf
                        .as_ref()
                        .map(|f| f.code.as_u16().to_be_bytes().to_vec())
                        .unwrap_or_default();
                    self.frame(true, OpCode::Close, &payload);
                    self.close_written = true;
                    self.sent_code = cf.as_ref().map(|f| f.code.as_u16());
                }
                self.after_close_received = Some(cf);
            }
            Event::Closed(outcome) => {
                assert!(conn.is_closed(), "{who}: Closed but not is_closed()");
                assert!(!conn.is_open(), "{who}: Closed but is_open()");
                if outcome.error.is_some() {
                    // No close frame arrived: 1006 (RFC 6455 §7.1.5).
                    assert_eq!(outcome.code, CloseCode::ABNORMAL, "{who}: failure code");
                    assert!(!outcome.clean, "{who}: failed but clean");
                }
                match &outcome.error {
                    None => assert!(outcome.clean, "{who}: unclean close without error"),
                    Some(ConnectionError::Protocol(e)) => {
                        assert_eq!(outcome.initiator, Initiator::Local);
                        if !self.close_written {
                            self.expected
                                .push(Expect::FailClose(e.close_code().as_u16()));
                            self.close_written = true;
                            self.sent_code = Some(e.close_code().as_u16());
                        }
                    }
                    Some(ConnectionError::UnexpectedEof) => {
                        assert!(self.eof_given, "{who}: UnexpectedEof without EOF");
                        let initiator = match self.local_close {
                            Some(_) => Initiator::Local,
                            None => Initiator::Remote,
                        };
                        assert_eq!(outcome.initiator, initiator, "{who}: EOF initiator");
                    }
                    Some(ConnectionError::CloseTimeout) => {
                        assert!(self.local_close.is_some(), "{who}: CloseTimeout, no close");
                        assert_eq!(outcome.initiator, Initiator::Local);
                    }
                    Some(other) => panic!("{who}: unexpected failure {other:?}"),
                }
                assert_eq!(
                    outcome.sent.as_ref().map(|f| f.code.as_u16()),
                    self.sent_code,
                    "{who}: CloseOutcome::sent"
                );
                self.closed = Some(outcome);
            }
        }
        if self.close_after == Some(self.events) {
            let want = self.send_state();
            let got = conn.close(now, CloseCode::NORMAL, "bye");
            assert_eq!(got, want, "{who}: close");
            if got.is_ok() {
                let mut payload = 1000u16.to_be_bytes().to_vec();
                payload.extend_from_slice(b"bye");
                self.frame(true, OpCode::Close, &payload);
                self.close_written = true;
                self.local_close = Some(1000);
                self.sent_code = Some(1000);
            }
        }
    }

    fn echo_message(&mut self, conn: &mut Connection, m: Message) {
        let who = format!("{:?}", self.role);
        let want = self.send_state();
        let (kind, opcode) = match m.kind() {
            MessageKind::Text => (MessageKind::Text, OpCode::Text),
            MessageKind::Binary => (MessageKind::Binary, OpCode::Binary),
        };
        let bytes = m.as_bytes().to_vec();
        match self.echo_mode {
            0 => {
                let got = match &m {
                    Message::Text(t) => conn.send_text(t.as_str()),
                    Message::Binary(b) => conn.send_binary(b),
                };
                assert_eq!(got, want, "{who}: echo send_text/send_binary");
                if got.is_ok() {
                    self.frame(true, opcode, &bytes);
                }
            }
            1 => {
                let got = conn.send(m);
                assert_eq!(got, want, "{who}: echo send");
                if got.is_ok() {
                    self.frame(true, opcode, &bytes);
                }
            }
            2 => {
                let got = conn.send_encoded(&EncodedFrame::new(&m));
                assert_eq!(got, want, "{who}: echo send_encoded");
                if got.is_ok() {
                    self.frame(true, opcode, &bytes);
                }
            }
            _ => {
                // Two fragments, cut in the middle (possibly inside a character).
                let (a, b) = bytes.split_at(bytes.len() / 2);
                let mut writer = conn.message_writer(kind);
                let got = writer.write(a);
                assert_eq!(got, want, "{who}: echo MessageWriter::write");
                if got.is_ok() {
                    let got = writer.finish(b);
                    assert_eq!(got, Ok(()), "{who}: echo MessageWriter::finish");
                    self.frame(false, opcode, a);
                    self.frame(true, OpCode::Continuation, b);
                }
            }
        }
    }
}

/// Input: `[flags, limits, chunk_param, mode, wire…]`.
///
/// * `flags`: bit 0 streaming mode, bit 1 automatic pongs, bits 2–3 how messages are echoed
///   (`send_text`/`send_binary`, `send`, `send_encoded`, two fragments), bit 4 EOF after the
///   input, bit 5 a clock step past the close timeout at the end.
/// * `limits`: low nibble indexes [`FRAME_LIMITS`], high nibble [`MESSAGE_LIMITS`].
/// * `mode`: bits 0–2 the chunking (whole, fixed `chunk_param + 1`, single bytes, random up to
///   `chunk_param + 1`, random up to 16, fixed up to 16, and the last two through
///   `input_buffer()`); bits 3–7, when not 0, call `close(1000, "bye")` after that many events.
/// * `wire`: the bytes the peer sent.
///
/// In buffered mode the run is repeated with the whole input in one read: any chunking must give
/// the same events and the same output (habit 8).
fn frame_target(role: Role, data: &[u8]) {
    let (events, output, stream) = frame_run(role, data, false);
    if !stream && data.get(3).is_some_and(|mode| mode & 7 != 0) {
        let (whole_events, whole_output, _) = frame_run(role, data, true);
        assert_eq!(
            events, whole_events,
            "{role:?}: events depend on the chunking"
        );
        assert_eq!(
            output, whole_output,
            "{role:?}: output depends on the chunking"
        );
    }
}

/// One run of a frame target; `whole` overrides the chunking with a single read. Returns the
/// events, the output and whether streaming mode was on.
fn frame_run(role: Role, data: &[u8], whole: bool) -> (Vec<Event>, Vec<u8>, bool) {
    let mut cur = Cursor::new(data);
    let flags = cur.byte();
    let limits = cur.byte();
    let chunk_param = usize::from(cur.byte());
    let mode = cur.byte();
    let wire = cur.take(usize::MAX);

    let stream = flags & 1 != 0;
    let auto_pong = flags & 2 != 0;
    let frame_limit = FRAME_LIMITS[usize::from(limits & 0x0F)];
    let message_limit = MESSAGE_LIMITS[usize::from(limits >> 4)];
    let config = Config::default()
        .stream_incoming(stream)
        .auto_pong(auto_pong)
        .max_frame_size(frame_limit)
        .max_message_size(message_limit);
    // After the events are drained, the buffer holds less than one frame: a partial header
    // (< 14 bytes) or a partial payload no longer than a control frame's or the size limits.
    let payload_bound = if stream {
        Some(125)
    } else {
        match (frame_limit, message_limit) {
            (Some(f), Some(m)) => Some(f.min(m)),
            (a, b) => a.or(b),
        }
        .map(|l| l.max(125))
    };
    let mut chunker = Chunker {
        mode: if whole { 0 } else { mode & 7 },
        param: chunk_param,
        rng: Rng::new((u32::from(chunk_param as u8) << 8) | u32::from(mode)),
    };

    let now = Instant::now();
    let mut conn = new_connection(role, config, now, u32::from(flags));
    let mut app = FrameApp {
        role,
        auto_pong,
        stream,
        echo_mode: (flags >> 2) & 3,
        message_limit,
        close_after: match mode >> 3 {
            0 => None,
            n => Some(usize::from(n)),
        },
        eof_given: false,
        events: 0,
        close_written: false,
        local_close: None,
        sent_code: None,
        closed: None,
        after_close_received: None,
        incoming: None,
        echoing_fragments: false,
        expected: Vec::new(),
        log: Vec::new(),
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let n = chunker.next().min(wire.len() - pos);
        let piece = &wire[pos..pos + n];
        pos += n;
        chunker.feed(&mut conn, now, piece);
        if let Some(bound) = payload_bound {
            assert!(
                conn.buffered_input() <= n + bound + 14,
                "buffered input {} over one read ({n}) plus one frame ({bound} + 14)",
                conn.buffered_input()
            );
        }
        app.poll_all(&mut conn, now);
        if let Some(bound) = payload_bound {
            assert!(
                conn.buffered_input() <= bound + 14,
                "buffered input {} after draining events, over one frame ({bound} + 14)",
                conn.buffered_input()
            );
        }
        if app.closed.is_some() {
            assert_eq!(conn.buffered_input(), 0, "input kept after Closed");
        }
        conn.poll_transmit(&mut out);
    }
    // One more poll: nothing may appear without new input.
    app.poll_all(&mut conn, now);
    if flags & 0x10 != 0 {
        app.eof_given = true;
        conn.receive_eof(now);
        app.poll_all(&mut conn, now);
        assert!(app.closed.is_some(), "no Closed after EOF");
        assert!(
            conn.should_close_transport(),
            "EOF handled but transport kept"
        );
    }
    if flags & 0x20 != 0 {
        let later = now + tidings_core::DEFAULT_CLOSE_TIMEOUT + Duration::from_secs(1);
        let was_closing = app.local_close.is_some() && app.closed.is_none();
        conn.handle_timeout(later);
        app.poll_all(&mut conn, later);
        if was_closing {
            assert!(
                matches!(
                    app.closed.as_ref().and_then(|o| o.error.as_ref()),
                    Some(ConnectionError::CloseTimeout)
                ),
                "close timeout passed without CloseTimeout: {:?}",
                app.closed
            );
        }
        if app.closed.is_some() {
            assert!(
                conn.should_close_transport(),
                "closed and past the close timeout, but the transport is kept"
            );
            assert_eq!(conn.poll_timeout(), None, "timer armed after the end");
        }
    }
    conn.poll_transmit(&mut out);
    assert_eq!(conn.queued_bytes(), 0, "poll_transmit left bytes queued");

    let frames = decode_output(role, &out);
    check_output_rules(role, &frames);
    let mut got = frames.iter();
    for (i, want) in app.expected.iter().enumerate() {
        let Some(f) = got.next() else {
            panic!(
                "{role:?} output has {} frames, expected {want:?} at {i}",
                frames.len()
            );
        };
        match want {
            Expect::Frame(w) => assert_eq!(f, w, "{role:?} output frame {i}"),
            Expect::FailClose(code) => {
                assert_eq!(
                    f.opcode,
                    OpCode::Close,
                    "{role:?} frame {i}: want failure close"
                );
                assert_eq!(
                    f.close_code(),
                    Some(*code),
                    "{role:?} frame {i}: failure code"
                );
            }
        }
    }
    if let Some(extra) = got.next() {
        panic!("{role:?} wrote an unexpected frame {extra:?}");
    }
    (app.log, out, stream)
}

/// A server connection fed raw client bytes; layout in `frame_target`'s doc:
/// `[flags, limits, chunk_param, mode, wire…]`.
pub fn frame_server(data: &[u8]) {
    frame_target(Role::Server, data);
}

/// A client connection fed raw server bytes; layout as for [`frame_server`].
pub fn frame_client(data: &[u8]) {
    frame_target(Role::Client, data);
}

// ---------------------------------------------------------------------------------------------
// Handshake targets
// ---------------------------------------------------------------------------------------------

fn limits_from(selector: u8) -> Limits {
    match selector & 3 {
        0 | 1 => Limits::default(),
        2 => Limits {
            max_headers: usize::from(selector >> 2) % 16,
            max_bytes: 8192,
        },
        _ => Limits {
            max_headers: 64,
            max_bytes: [0, 16, 64, 100, 200, 300, 1024, 4096][usize::from(selector >> 2) & 7],
        },
    }
}

/// Cut points to test prefixes at: all of them for short inputs, a spread plus the region around
/// `focus` otherwise.
fn cut_points(len: usize, focus: Option<usize>) -> Vec<usize> {
    if len <= 600 {
        return (0..len).collect();
    }
    let mut cuts: Vec<usize> = (0..64).map(|i| i * len / 64).collect();
    if let Some(f) = focus {
        cuts.extend(f.saturating_sub(3)..(f + 3).min(len));
    }
    cuts
}

fn base64_decode_16(s: &str) -> Option<[u8; 16]> {
    fn val(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let s = s.as_bytes();
    if s.len() != 24 || &s[22..] != b"==" {
        return None;
    }
    let mut out = Vec::with_capacity(18);
    for chunk in s[..22].chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | val(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&acc.to_be_bytes()[1..]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    out.try_into().ok()
}

fn summary_request(
    r: &Result<Status<(handshake::UpgradeRequest<'_>, usize)>, HandshakeError>,
) -> String {
    match r {
        Ok(Status::Partial) => "partial".into(),
        Ok(Status::Complete((req, n))) => format!("{n} {req:?}"),
        Err(e) => format!("{e:?}"),
    }
}

/// Parses a `101` with httparse and checks what `accept` must have put in it.
fn check_101(resp: &[u8], key: &str, protocol: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let n = match parsed.parse(resp) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("accept() output is not an HTTP response: {other:?}"),
    };
    assert_eq!(n, resp.len(), "accept() output has bytes after its head");
    assert_eq!(parsed.code, Some(101), "accept() status");
    assert_eq!(parsed.version, Some(1), "accept() version");
    let get = |name: &str| header_values(parsed.headers, name);
    assert_eq!(get("Upgrade"), [b"websocket".as_slice()]);
    assert_eq!(get("Connection"), [b"Upgrade".as_slice()]);
    assert_eq!(
        get("Sec-WebSocket-Accept"),
        [handshake::accept_key(key).as_bytes()]
    );
    let want: Vec<&[u8]> = protocol.map(str::as_bytes).into_iter().collect();
    assert_eq!(get("Sec-WebSocket-Protocol"), want);
}

/// Input: `[limits selector, request bytes…]`. Parses the request as a server; checks that
/// parsing any prefix gives `Partial` or the same result as the whole, that an accepted request's
/// `101` is a valid answer (with httparse and with the client's own parser), and that every error
/// carries a status among 400/403/405/426/431 with a matching response.
pub fn handshake_request(data: &[u8]) {
    let mut cur = Cursor::new(data);
    let limits = limits_from(cur.byte());
    let buf = cur.take(usize::MAX);
    let whole = handshake::parse_request(buf, &limits);
    let whole_summary = summary_request(&whole);
    let focus = match &whole {
        Ok(Status::Complete((_, n))) => Some(*n),
        _ => None,
    };
    for cut in cut_points(buf.len(), focus) {
        let r = handshake::parse_request(&buf[..cut], &limits);
        match (&r, focus) {
            (Ok(Status::Partial), _) => {}
            (Ok(Status::Complete((_, n))), Some(whole_n)) => assert_eq!(
                *n, whole_n,
                "prefix of {cut} bytes complete with another length"
            ),
            _ => {}
        }
        if !matches!(r, Ok(Status::Partial)) {
            assert_eq!(
                summary_request(&r),
                whole_summary,
                "prefix of {cut} bytes gives another result than the whole"
            );
        }
    }
    match whole {
        Ok(Status::Partial) => {
            assert!(buf.len() <= limits.max_bytes, "partial beyond max_bytes");
        }
        Ok(Status::Complete((req, n))) => {
            assert!(n <= limits.max_bytes, "head of {n} bytes over max_bytes");
            assert!(req.path().starts_with('/'), "path {:?}", req.path());
            assert_eq!(req.method(), "GET");
            assert!(!req.host().is_empty());
            let key = req.key();
            let key_bytes = base64_decode_16(key)
                .unwrap_or_else(|| panic!("accepted key {key:?} is not 16 base64 bytes"));
            match OriginPolicy::same_origin().check(&req) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e, HandshakeError::OriginRefused);
                    assert_eq!(e.status(), Some(403));
                }
            }

            // The plain 101, checked with httparse and with the client's parser.
            let resp = req
                .accept(&AcceptOptions::default())
                .expect("accept with default options");
            check_101(&resp, key, None);
            let client = ClientRequest::new("h", "/", key_bytes).expect("client request");
            assert_eq!(client.key(), key, "key round trip");
            let mut with_tail = resp.clone();
            with_tail.extend_from_slice(&[0x81, 0x00]);
            match handshake::parse_response(&with_tail, &client, &Limits::default()) {
                Ok(Status::Complete((r, n))) => {
                    assert_eq!(n, resp.len(), "client parse of the 101: consumed");
                    assert_eq!(r.protocol, None);
                    assert!(r.extensions.is_empty());
                }
                other => panic!("client rejects the server's 101: {other:?}"),
            }

            check_handshake_paths(buf, n, &limits);

            // Choosing the first offered subprotocol and every offered extension also gives a
            // 101 the client accepts.
            let protocols = req.protocols();
            let offers = req.extensions();
            let mut opts = AcceptOptions::new();
            let mut client = client;
            if let Some(p) = protocols.first() {
                opts = opts.protocol(*p);
                for p in &protocols {
                    // Duplicates in the offer are refused by the builder; skip them.
                    client = match client.clone().protocol(p) {
                        Ok(c) => c,
                        Err(HandshakeError::InvalidProtocol(_)) => client,
                        Err(e) => panic!("offered protocol {p:?} refused: {e:?}"),
                    };
                }
            }
            if !offers.is_empty() {
                let value = handshake::render_extensions(&offers);
                opts = opts.extensions(value.clone());
                client = client
                    .extension_offer(&value)
                    .unwrap_or_else(|e| panic!("rendered offer {value:?} refused: {e:?}"));
            }
            let resp = req
                .accept(&opts)
                .unwrap_or_else(|e| panic!("accepting what was offered fails: {e:?}"));
            check_101(&resp, key, protocols.first().copied());
            match handshake::parse_response(&resp, &client, &Limits::default()) {
                Ok(Status::Complete((r, n))) => {
                    assert_eq!(n, resp.len());
                    assert_eq!(r.protocol.as_deref(), protocols.first().copied());
                    assert_eq!(r.extensions, offers, "extensions round trip");
                }
                other => panic!("client rejects the negotiated 101: {other:?}"),
            }
        }
        Err(e) => {
            let status = e
                .status()
                .unwrap_or_else(|| panic!("request error without a status: {e:?}"));
            assert!(
                matches!(status, 400 | 403 | 405 | 426 | 431),
                "status {status} for {e:?}"
            );
            let resp = e.response().expect("an error with a status has a response");
            let head = format!("HTTP/1.1 {status} ");
            assert!(
                resp.starts_with(head.as_bytes()),
                "response for {e:?} starts {:?}",
                String::from_utf8_lossy(&resp[..resp.len().min(20)])
            );
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Response::new(&mut headers);
            let n = match parsed.parse(&resp) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("error response does not parse: {other:?}"),
            };
            assert_eq!(parsed.code, Some(status));
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .expect("error response has a Content-Length");
            assert_eq!(n + length, resp.len(), "Content-Length matches the body");
            if status == 426 {
                assert!(
                    parsed
                        .headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Version")
                            && h.value == b"13")
                );
            }
        }
    }
}

/// The handshake objects on a valid request: `ServerHandshake::parse` and `from_parts` (the same
/// head as hyper would hand it over, when `http` holds it unchanged) see the same request and
/// answer with the same `101`; the `Agreed` becomes a connection that already has the frame that
/// followed the head.
fn check_handshake_paths(buf: &[u8], head_len: usize, limits: &Limits) {
    let config = HandshakeConfig::new()
        .limits(*limits)
        .origin(OriginPolicy::allow_all());
    let mut with_frame = buf[..head_len].to_vec();
    // A masked empty text frame (key 0).
    with_frame.extend_from_slice(&[0x81, 0x80, 0, 0, 0, 0]);
    let from_bytes = match ServerHandshake::parse(&with_frame, &config) {
        Ok(Status::Complete(hs)) => hs,
        other => panic!("parse_request accepted, ServerHandshake::parse gives {other:?}"),
    };
    assert_eq!(from_bytes.head_len(), head_len);
    let (response, agreed) = from_bytes
        .accept(AcceptOptions::new())
        .expect("accept with default options");
    assert_eq!(
        response.encode(),
        from_bytes
            .request()
            .accept(&AcceptOptions::new())
            .expect("accept")
    );
    let mut conn = agreed.into_connection(Config::default(), Instant::now());
    assert!(
        matches!(conn.poll_event(), Some(Event::Message(m)) if m.as_text() == Some("")),
        "the frame after the head reaches the connection"
    );

    // The same head as `http` parts, where `http` keeps it as it is and the size is not what
    // decides (http counts the head its own way).
    if head_len + 256 > limits.max_bytes {
        return;
    }
    let Some(parts) = http_parts(&buf[..head_len]) else {
        return;
    };
    let from_parts = ServerHandshake::from_parts(&parts, &config)
        .unwrap_or_else(|e| panic!("bytes accepted, parts refused: {e:?}"));
    let (a, b) = (from_bytes.request(), from_parts.request());
    assert_eq!(
        (
            a.path(),
            a.query(),
            a.key(),
            a.origin(),
            a.protocols(),
            a.extensions()
        ),
        (
            b.path(),
            b.query(),
            b.key(),
            b.origin(),
            b.protocols(),
            b.extensions()
        ),
        "bytes and parts see another request"
    );
    let (parts_response, _) = from_parts
        .accept(AcceptOptions::new())
        .expect("accept from parts");
    assert_eq!(
        parts_response.headers().collect::<Vec<_>>(),
        response.headers().collect::<Vec<_>>()
    );
}

/// `head` as `http` request parts, if `http` holds its method, target and headers unchanged.
fn http_parts(head: &[u8]) -> Option<http::request::Parts> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return None;
    };
    let target = req.path?;
    let version = match req.version? {
        1 => http::Version::HTTP_11,
        _ => http::Version::HTTP_10,
    };
    let mut builder = http::Request::builder()
        .method(req.method?)
        .uri(target)
        .version(version);
    for h in req.headers.iter() {
        if h.value.iter().any(|&b| b == b' ' || b == b'\t') && h.value.trim_ascii() != h.value {
            return None;
        }
        builder = builder.header(h.name, h.value);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    let same_target = parts.uri.scheme().is_none()
        && parts
            .uri
            .path_and_query()
            .map(http::uri::PathAndQuery::as_str)
            == Some(target);
    same_target.then_some(parts)
}

/// The fixed request [`handshake_response`] answers: the RFC 6455 §1.3 key, two subprotocols and
/// a permessage-deflate offer.
pub fn fuzz_client_request() -> ClientRequest {
    ClientRequest::new("server.example.com", "/chat", *b"the sample nonce")
        .and_then(|r| r.protocol("chat"))
        .and_then(|r| r.protocol("superchat"))
        .and_then(|r| r.extension_offer("permessage-deflate; client_max_window_bits"))
        .expect("fixed client request")
}

type ResponseResult = Result<Status<(handshake::ServerResponse, usize)>, HandshakeError>;

/// Input: `[limits selector, response bytes…]`. Parses the bytes as the server's answer to
/// [`fuzz_client_request`]; checks prefix consistency, and that an accepted response really is a
/// `101` with the right `Sec-WebSocket-Accept`, an offered subprotocol and offered extensions
/// (cross-checked with httparse), and that a `Rejected` status is httparse's status.
pub fn handshake_response(data: &[u8]) {
    let mut cur = Cursor::new(data);
    let limits = limits_from(cur.byte());
    let buf = cur.take(usize::MAX);
    let req = fuzz_client_request();
    let whole: ResponseResult = handshake::parse_response(buf, &req, &limits);
    let focus = match &whole {
        Ok(Status::Complete((_, n))) => Some(*n),
        _ => None,
    };
    for cut in cut_points(buf.len(), focus) {
        let r = handshake::parse_response(&buf[..cut], &req, &limits);
        if !matches!(r, Ok(Status::Partial)) {
            assert_eq!(
                r, whole,
                "prefix of {cut} bytes gives another result than the whole"
            );
        }
    }
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let mut headers = vec![httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut headers);
    let independent = parsed.parse(window);
    match whole {
        Ok(Status::Partial) => {
            assert!(buf.len() <= limits.max_bytes, "partial beyond max_bytes");
        }
        Ok(Status::Complete((resp, n))) => {
            assert!(n <= limits.max_bytes, "head of {n} bytes over max_bytes");
            assert!(
                matches!(independent, Ok(httparse::Status::Complete(m)) if m == n),
                "httparse disagrees on the head: {independent:?} vs {n}"
            );
            assert_eq!(parsed.code, Some(101), "accepted a non-101");
            assert_eq!(parsed.version, Some(1), "accepted HTTP/1.0");
            let values = |name: &str| header_values(parsed.headers, name);
            let accept = values("Sec-WebSocket-Accept");
            assert_eq!(accept.len(), 1, "accepted without exactly one Accept");
            let trimmed = String::from_utf8_lossy(accept[0]);
            assert_eq!(
                trimmed.trim_matches([' ', '\t']),
                handshake::accept_key(req.key()),
                "accepted a wrong Sec-WebSocket-Accept"
            );
            if let Some(p) = &resp.protocol {
                assert!(req.protocols().contains(p), "accepted protocol {p:?}");
            }
            for e in &resp.extensions {
                // Extension tokens are compared ASCII case-insensitively, as HTTP tokens are.
                assert!(
                    e.name.eq_ignore_ascii_case("permessage-deflate"),
                    "accepted extension {e:?}, not offered"
                );
            }
            assert_eq!(resp.headers.len(), parsed.headers.len(), "header count");
        }
        Err(e) => match &e {
            HandshakeError::Rejected { status, .. } => {
                assert_ne!(*status, 101);
                assert_eq!(parsed.code, Some(*status), "Rejected status vs httparse");
            }
            HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::MissingAccept
            | HandshakeError::AcceptMismatch
            | HandshakeError::ProtocolNotOffered(_)
            | HandshakeError::ExtensionNotOffered(_)
            | HandshakeError::MalformedExtensions
            | HandshakeError::DuplicateHeader(_) => {
                assert!(
                    matches!(independent, Ok(httparse::Status::Complete(_))),
                    "{e:?} on a head httparse does not complete: {independent:?}"
                );
                assert_eq!(parsed.code, Some(101), "{e:?} for a non-101");
            }
            HandshakeError::Malformed(_) => {}
            HandshakeError::TooManyHeaders => {}
            HandshakeError::TooLarge { limit } => {
                assert_eq!(*limit, limits.max_bytes);
                assert!(buf.len() > limits.max_bytes);
            }
            other => panic!("unexpected response error {other:?}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

/// Input: `[chunk seed, bytes…]`. Feeds the bytes to a [`Utf8Validator`] in chunks and compares
/// with `std::str::from_utf8` of the whole: valid input is accepted everywhere; for invalid input
/// no chunk before the bad sequence is refused, and the error is reported no later than the chunk
/// holding the byte that reveals it (or at `finish` for a truncated character at the end).
pub fn utf8_incremental(data: &[u8]) {
    let mut cur = Cursor::new(data);
    let seed = cur.byte();
    let bytes = cur.take(usize::MAX);
    let mut rng = Rng::new(u32::from(seed));
    let max = usize::from(seed % 8) + 1;
    let whole = std::str::from_utf8(bytes);
    // The index of the byte whose arrival makes the input certainly invalid.
    let reveal = match whole {
        Ok(_) => None,
        Err(e) => Some(match e.error_len() {
            Some(n) => (e.valid_up_to() + n).min(bytes.len() - 1),
            None => bytes.len(), // only `finish` can tell
        }),
    };
    let first_bad = whole.as_ref().err().map(|e| e.valid_up_to());
    let mut v = Utf8Validator::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let n = rng.range1(max).min(bytes.len() - pos);
        let end = pos + n;
        let r = v.feed(&bytes[pos..end]);
        match (r, first_bad, reveal) {
            (Ok(()), _, Some(rv)) if rv < end => {
                panic!("invalid byte at {rv} not reported by the chunk {pos}..{end}")
            }
            (Ok(()), _, _) => {}
            (Err(_), Some(bad), _) if bad < end => return,
            (Err(_), _, _) => panic!("chunk {pos}..{end} refused before any invalid byte"),
        }
        pos = end;
    }
    match (v.finish(), whole) {
        (Ok(()), Ok(_)) | (Err(_), Err(_)) => {}
        (Ok(()), Err(e)) => panic!("finish accepted invalid UTF-8: {e}"),
        (Err(_), Ok(_)) => panic!("finish refused valid UTF-8"),
    }
}

// ---------------------------------------------------------------------------------------------
// Stateful client/server script
// ---------------------------------------------------------------------------------------------

const STATEFUL_LIMITS: [(usize, usize); 4] =
    [(64, 128), (1024, 4096), (65536, 1 << 17), (16, 1 << 20)];
const KEEPALIVE_MS: [u64; 4] = [300, 1000, 3000, 10_000];
const PONG_MS: [u64; 4] = [200, 1000, 5000, 20_000];
const CLOSE_MS: [u64; 4] = [500, 2000, 5000, 10_000];
const IDLE_MS: [u64; 4] = [1000, 3000, 10_000, 30_000];
const CLOSE_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1011, 1015, 1016, 2999, 3000, 4999, 5000, 0, 999, 1004,
];
/// Sizes for "big" payloads: around the 7/16/64-bit length forms and the copy threshold.
const BIG_SIZES: [usize; 16] = [
    125, 126, 127, 200, 1000, 4095, 4096, 4097, 8000, 16_384, 65_535, 65_536, 65_537, 70_000, 100,
    300,
];
/// Characters text payloads are built from (1 to 4 bytes of UTF-8).
const TEXT_CHARS: [char; 8] = [
    'a',
    'Z',
    ' ',
    '\u{e9}',
    '\u{20ac}',
    '\u{1d11e}',
    '\u{7f}',
    '0',
];

/// One end of the pair, with everything the checks need.
struct Side {
    role: Role,
    conn: Connection,
    stream: bool,
    auto_pong: bool,
    message_limit: usize,
    outcome: Option<CloseOutcome>,
    /// The peer's close frame arrived (`Some(None)`: without a code).
    close_received: Option<Option<tidings_core::CloseFrame>>,
    /// Whole messages received (streamed ones reassembled).
    received: Vec<(MessageKind, Vec<u8>)>,
    incoming: Option<(MessageKind, Vec<u8>)>,
    /// Whole messages this side sent successfully, in order.
    sent: Vec<(MessageKind, Vec<u8>)>,
    /// The streamed message being sent: kind and bytes so far.
    outgoing: Option<(MessageKind, Vec<u8>)>,
    /// Everything this side wrote.
    wire: Vec<u8>,
    /// The code the failure close frame must carry (the side failed while open).
    fail_code: Option<u16>,
}

impl Side {
    fn name(&self) -> &'static str {
        match self.role {
            Role::Client => "client",
            Role::Server => "server",
        }
    }

    fn poll(&mut self) {
        loop {
            let was_open = self.conn.is_open();
            // What the adapters' ordering rule relies on: when the lookahead says the next frame
            // is incomplete, polling decodes nothing.
            let ahead = self.conn.lookahead();
            let Some(event) = self.conn.poll_event() else {
                break;
            };
            let who = self.name();
            assert!(
                ahead != Lookahead::Incomplete,
                "{who}: event {event:?} after a lookahead of Incomplete"
            );
            assert!(
                self.outcome.is_none(),
                "{who}: event {event:?} after Closed"
            );
            match event {
                Event::Message(m) => {
                    assert!(!self.stream, "{who}: whole message in streaming mode");
                    check_message(&m, Some(self.message_limit), who);
                    self.received.push((m.kind(), m.as_bytes().to_vec()));
                }
                Event::Fragment(f) => {
                    assert!(self.stream, "{who}: fragment outside streaming mode");
                    let (kind, mut bytes) = self.incoming.take().unwrap_or((f.kind, Vec::new()));
                    assert_eq!(kind, f.kind, "{who}: fragment kind changed");
                    bytes.extend_from_slice(&f.data);
                    assert!(
                        bytes.len() <= self.message_limit,
                        "{who}: over message limit"
                    );
                    if kind == MessageKind::Text {
                        assert!(utf8_prefix_ok(&bytes), "{who}: streamed text not UTF-8");
                    }
                    if f.fin {
                        if kind == MessageKind::Text {
                            assert!(std::str::from_utf8(&bytes).is_ok(), "{who}: text not UTF-8");
                        }
                        self.received.push((kind, bytes));
                    } else {
                        self.incoming = Some((kind, bytes));
                    }
                }
                Event::Ping(p) => {
                    assert!(p.len() <= 125);
                    if !self.auto_pong {
                        assert_eq!(self.conn.send_pong(&p), Ok(()), "{who}: manual pong");
                    }
                }
                Event::Pong(p) => assert!(p.len() <= 125),
                Event::CloseReceived(cf) => {
                    check_close_frame(&cf, who);
                    self.close_received = Some(cf);
                }
                Event::Closed(o) => {
                    assert!(self.conn.is_closed(), "{who}: Closed but not is_closed()");
                    if let Some(ConnectionError::Protocol(e)) = &o.error
                        && was_open
                    {
                        self.fail_code = Some(e.close_code().as_u16());
                        assert_eq!(
                            o.sent.as_ref().map(|f| f.code),
                            Some(e.close_code()),
                            "{who}: CloseOutcome::sent after a failure"
                        );
                    }
                    // RFC 6455 §7.1.5: the code received, 1005 without one, 1006 without a frame.
                    let want = match &self.close_received {
                        Some(Some(f)) => f.code,
                        Some(None) => CloseCode::NO_STATUS,
                        None => CloseCode::ABNORMAL,
                    };
                    assert_eq!(o.code, want, "{who}: outcome code");
                    assert_eq!(
                        o.clean,
                        self.close_received.is_some(),
                        "{who}: clean flag vs close frames exchanged"
                    );
                    assert_eq!(o.error.is_none(), o.clean, "{who}: error vs clean");
                    self.outcome = Some(o);
                }
            }
        }
    }

    /// What a data command must return now.
    fn predict_data(&self) -> Result<(), Error> {
        if self.conn.is_closed() {
            Err(Error::Closed)
        } else if !self.conn.is_open() {
            Err(Error::Closing)
        } else {
            Ok(())
        }
    }

    fn send_whole(&mut self, kind: MessageKind, payload: Vec<u8>, variant: u8) {
        let mut want = self.predict_data();
        if want.is_ok() && self.outgoing.is_some() {
            want = Err(Error::MessageInProgress);
        }
        let got = match (kind, variant % 3) {
            (MessageKind::Text, 0) => {
                let text = String::from_utf8(payload.clone()).expect("built as text");
                self.conn.send_text(&text)
            }
            (MessageKind::Binary, 0) => self.conn.send_binary(&payload),
            (MessageKind::Text, 1) => {
                let text = String::from_utf8(payload.clone()).expect("built as text");
                self.conn.send(Message::text(text))
            }
            (MessageKind::Binary, 1) => self.conn.send(Message::binary(payload.clone())),
            (MessageKind::Text, _) => {
                let text = String::from_utf8(payload.clone()).expect("built as text");
                self.conn
                    .send_encoded(&EncodedFrame::new(&Message::text(text)))
            }
            (MessageKind::Binary, _) => self
                .conn
                .send_encoded(&EncodedFrame::new(&Message::binary(payload.clone()))),
        };
        assert_eq!(got, want, "{}: send {kind:?} result", self.name());
        if got.is_ok() {
            self.sent.push((kind, payload));
        }
    }

    fn send_fragment(&mut self, kind: MessageKind, data: Vec<u8>, fin: bool) {
        let mut so_far = match &self.outgoing {
            Some((k, bytes)) if *k == kind => bytes.clone(),
            _ => Vec::new(),
        };
        so_far.extend_from_slice(&data);
        let want = match self.predict_data() {
            Err(e) => Err(e),
            Ok(()) => match &self.outgoing {
                Some((k, _)) if *k != kind => Err(Error::MessageInProgress),
                _ if kind == MessageKind::Text
                    && !(utf8_prefix_ok(&so_far)
                        && (!fin || std::str::from_utf8(&so_far).is_ok())) =>
                {
                    Err(Error::InvalidUtf8)
                }
                _ => Ok(()),
            },
        };
        let got = self.conn.send_fragment(kind, &data, fin);
        assert_eq!(got, want, "{}: send_fragment result", self.name());
        assert_eq!(
            self.conn.is_sending_fragments(),
            if got.is_ok() {
                !fin
            } else {
                self.outgoing.is_some()
            },
            "{}: is_sending_fragments",
            self.name()
        );
        if got.is_ok() {
            if fin {
                self.outgoing = None;
                self.sent.push((kind, so_far));
            } else {
                self.outgoing = Some((kind, so_far));
            }
        }
    }

    fn control(&mut self, now: Instant, ping: bool, payload: &[u8]) {
        // Control frames may follow our close frame; only a closed connection refuses them.
        let want = if self.conn.is_closed() {
            Err(Error::Closed)
        } else if payload.len() > 125 {
            Err(Error::ControlPayloadTooLong(payload.len()))
        } else {
            Ok(())
        };
        let got = if ping {
            self.conn.send_ping(now, payload)
        } else {
            self.conn.send_pong(payload)
        };
        assert_eq!(got, want, "{}: ping/pong result", self.name());
    }

    fn close(&mut self, now: Instant, code: u16, reason: &str) {
        let want = match self.predict_data() {
            Err(e) => Err(e),
            Ok(()) if !CloseCode::new(code).is_sendable() => Err(Error::InvalidCloseCode(code)),
            Ok(()) if reason.len() > MAX_CLOSE_REASON => {
                Err(Error::CloseReasonTooLong(reason.len()))
            }
            Ok(()) => Ok(()),
        };
        let got = self.conn.close(now, CloseCode::new(code), reason);
        assert_eq!(got, want, "{}: close result", self.name());
        if got.is_ok() {
            assert!(!self.conn.is_open() && !self.conn.is_closed());
        }
    }

    /// Runs the timers due at `now` until none is due.
    fn timers(&mut self, now: Instant) {
        for _ in 0..4 {
            match self.conn.poll_timeout() {
                Some(at) if at <= now => {
                    self.conn.handle_timeout(now);
                    self.poll();
                }
                _ => return,
            }
        }
        panic!(
            "{}: timers still due after four rounds at one instant",
            self.name()
        );
    }
}

/// One direction of the simulated transport.
#[derive(Default)]
struct Link {
    /// Bytes written and not yet read.
    transit: Vec<u8>,
    /// A byte in transit was flipped: the receiver's checks are off.
    corrupted: bool,
    /// The sender closed its end: later output is dropped, EOF follows the bytes in transit.
    fin: bool,
    eof_delivered: bool,
    /// The receiver closed its socket: everything is dropped.
    dead: bool,
}

struct Sim {
    now: Instant,
    sides: [Side; 2],
    /// `links[i]` carries what `sides[i]` writes to the other side.
    links: [Link; 2],
    /// `sides[i]` closed its socket (it wanted to and its output was written).
    socket_closed: [bool; 2],
    budget: usize,
    /// Whether the last pass of `pump` took the output as owned chunks.
    owned: bool,
}

impl Sim {
    /// Moves output onto the links, models socket closes and EOFs, until nothing changes.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut progress = false;
            // Every other pass takes the output as owned chunks (completion-based I/O) and
            // frees the idle buffers: the bytes on the wire must not change.
            self.owned = !self.owned;
            for i in 0..2 {
                let j = 1 - i;
                let mut out = Vec::new();
                if self.owned {
                    let mut chunks = Vec::new();
                    let n = self.sides[i].conn.transmit_owned(&mut chunks);
                    out = chunks.concat();
                    assert_eq!(n, out.len(), "transmit_owned's count");
                    assert_eq!(self.sides[i].conn.queued_bytes(), 0, "output left queued");
                    self.sides[i].conn.release_idle_buffers();
                } else {
                    self.sides[i].conn.poll_transmit(&mut out);
                }
                self.sides[i].wire.extend_from_slice(&out);
                if !self.links[i].fin && !self.links[i].dead {
                    self.links[i].transit.extend_from_slice(&out);
                }
                if self.sides[i].conn.should_close_transport() && !self.socket_closed[i] {
                    // Side i closes its socket once its output is written.
                    assert!(
                        self.sides[i].conn.is_closed(),
                        "transport closed while open"
                    );
                    self.socket_closed[i] = true;
                    self.links[i].fin = true;
                    self.links[j].dead = true;
                    self.links[j].transit.clear();
                    progress = true;
                }
            }
            for i in 0..2 {
                let j = 1 - i;
                let link = &mut self.links[i];
                if link.fin && link.transit.is_empty() && !link.eof_delivered && !link.dead {
                    link.eof_delivered = true;
                    self.sides[j].conn.receive_eof(self.now);
                    self.sides[j].poll();
                    progress = true;
                }
            }
            if !progress {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Delivers up to `n` bytes of side `from`'s output, in reads of `piece` bytes.
    fn deliver(&mut self, from: usize, n: usize, piece: usize) {
        let to = 1 - from;
        let n = n.min(self.links[from].transit.len());
        let bytes: Vec<u8> = self.links[from].transit.drain(..n).collect();
        for chunk in bytes.chunks(piece.max(1)) {
            self.sides[to].conn.receive(self.now, chunk);
            self.sides[to].poll();
        }
    }

    fn deliver_all(&mut self) {
        for _ in 0..64 {
            if self.links.iter().all(|l| l.transit.is_empty()) {
                return;
            }
            for from in 0..2 {
                self.deliver(from, usize::MAX, usize::MAX);
            }
            self.pump();
        }
        panic!("deliver_all did not settle");
    }

    fn step_time(&mut self, d: Duration) {
        self.now += d;
        for side in &mut self.sides {
            side.timers(self.now);
        }
    }

    fn payload(&mut self, cur: &mut Cursor<'_>) -> Vec<u8> {
        let b = cur.byte();
        let p = if b >= 0xF0 {
            let fill = cur.byte();
            let size = BIG_SIZES[usize::from(b & 0x0F)];
            if size > self.budget {
                Vec::new()
            } else {
                (0..size).map(|i| fill.wrapping_add(i as u8)).collect()
            }
        } else {
            cur.take(usize::from(b % 64)).to_vec()
        };
        self.budget = self.budget.saturating_sub(p.len());
        p
    }

    fn text(&mut self, cur: &mut Cursor<'_>) -> Vec<u8> {
        let raw = self.payload(cur);
        let s: String = raw.iter().map(|b| TEXT_CHARS[usize::from(b % 8)]).collect();
        s.into_bytes()
    }
}

/// Input: `[config, timers, ops…]`, a script run on an in-memory client/server pair.
///
/// * `config`: bit 0/1 streaming mode on the client/server, bit 2/3 automatic pongs on the
///   client/server (otherwise the harness answers pings), bits 4–5 and 6–7 index the
///   client's and server's limits.
/// * `timers`: two bits each for keepalive, pong timeout, close timeout and idle timeout; every
///   timer is on, at some value.
/// * Each op is a byte: bit 0 picks the side (client, server), the rest modulo 11 the command,
///   which may read argument bytes: send text, send binary (3 ways), send a fragment, ping, pong,
///   close (code and reason, valid or not), deliver bytes of that side's output to the other in
///   pieces, flip a byte in transit, advance the clock and run timers, end that side's output
///   (EOF), deliver everything.
///
/// After the script everything is delivered and the clock runs until both sides are closed.
/// Checks: events follow the rules (nothing after Closed, UTF-8, limits); every command's result
/// is exactly the predicted one; each side's output is valid and, if it failed while open, ends
/// with the failure's close code; over each uncorrupted direction the receiver gets a prefix of
/// the sent messages — all of them if it got the sender's close frame — and fails only on size
/// limits; both sides end closed.
pub fn stateful(data: &[u8]) {
    let mut cur = Cursor::new(data);
    let config = cur.byte();
    let timers = cur.byte();
    let now = Instant::now();
    let make = |role: Role, shift: u8| {
        let stream = config & (1 << shift) != 0;
        let auto_pong = config & (1 << (2 + shift)) != 0;
        let (frame_limit, message_limit) =
            STATEFUL_LIMITS[usize::from((config >> (4 + 2 * shift)) & 3)];
        let ms = |table: &[u64; 4], bits: u8| {
            Duration::from_millis(table[usize::from((timers >> bits) & 3)])
        };
        let cfg = Config::default()
            .stream_incoming(stream)
            .auto_pong(auto_pong)
            .max_frame_size(Some(frame_limit))
            .max_message_size(Some(message_limit))
            .ping_interval(Some(ms(&KEEPALIVE_MS, 0)))
            .pong_timeout(Some(ms(&PONG_MS, 2)))
            .close_timeout(Some(ms(&CLOSE_MS, 4)))
            .idle_timeout(Some(ms(&IDLE_MS, 6)));
        Side {
            role,
            conn: new_connection(role, cfg, now, (u32::from(config) << 8) | u32::from(timers)),
            stream,
            auto_pong,
            message_limit,
            outcome: None,
            close_received: None,
            received: Vec::new(),
            incoming: None,
            sent: Vec::new(),
            outgoing: None,
            wire: Vec::new(),
            fail_code: None,
        }
    };
    let mut sim = Sim {
        now,
        sides: [make(Role::Client, 0), make(Role::Server, 1)],
        links: [Link::default(), Link::default()],
        socket_closed: [false; 2],
        budget: 1 << 20,
        owned: false,
    };

    let mut ops = 0;
    while !cur.is_empty() && ops < 2000 {
        ops += 1;
        let op = cur.byte();
        let s = usize::from(op & 1);
        match (op >> 1) % 11 {
            0 => {
                let text = sim.text(&mut cur);
                let variant = cur.byte();
                sim.sides[s].send_whole(MessageKind::Text, text, variant);
            }
            1 => {
                let data = sim.payload(&mut cur);
                let variant = cur.byte();
                sim.sides[s].send_whole(MessageKind::Binary, data, variant);
            }
            2 => {
                let flags = cur.byte();
                let kind = if flags & 1 != 0 {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                // Text fragments are built from characters, or raw bytes (maybe invalid).
                let data = if flags & 4 != 0 {
                    sim.text(&mut cur)
                } else {
                    sim.payload(&mut cur)
                };
                sim.sides[s].send_fragment(kind, data, flags & 2 != 0);
            }
            3 | 4 => {
                let n = usize::from(cur.byte()) % 130;
                let payload = vec![0x50u8; n];
                sim.sides[s].control(sim.now, (op >> 1) % 11 == 3, &payload);
            }
            5 => {
                let code = CLOSE_CODES[usize::from(cur.byte() & 0x0F)];
                let reason_len = usize::from(cur.byte()) % 130;
                let reason = "r".repeat(reason_len);
                sim.sides[s].close(sim.now, code, &reason);
            }
            6 => {
                let n = match cur.byte() {
                    0 => usize::MAX,
                    n => usize::from(n) * 8,
                };
                let piece = match cur.byte() {
                    0 => usize::MAX,
                    p => usize::from(p),
                };
                sim.deliver(s, n, piece);
            }
            7 => {
                let at = usize::from(cur.u16());
                let xor = cur.byte() | 1;
                let link = &mut sim.links[s];
                if !link.transit.is_empty() {
                    let len = link.transit.len();
                    link.transit[at % len] ^= xor;
                    link.corrupted = true;
                }
            }
            8 => {
                let ms = u64::from(cur.byte()) * 16;
                sim.step_time(Duration::from_millis(ms));
            }
            9 => {
                // Side s's output ends here (its half of the transport is shut down).
                sim.links[s].fin = true;
            }
            _ => sim.deliver_all(),
        }
        sim.pump();
    }

    // Let everything arrive, then let time run until both sides are done.
    sim.deliver_all();
    for _ in 0..200 {
        if sim.sides.iter().all(|s| s.outcome.is_some()) {
            break;
        }
        sim.step_time(Duration::from_millis(500));
        sim.pump();
        sim.deliver_all();
    }
    for side in &sim.sides {
        assert!(
            side.outcome.is_some(),
            "{} still open after the final run: {:?}",
            side.name(),
            side.conn
        );
    }
    sim.pump();

    for (i, side) in sim.sides.iter().enumerate() {
        let who = side.name();
        let frames = decode_output(side.role, &side.wire);
        let close = check_output_rules(side.role, &frames);
        if let Some(code) = side.fail_code {
            assert_eq!(
                close,
                Some(Some(code)),
                "{who} failed while open; its close frame must carry {code}"
            );
        }
        // Messages over the direction from the other side to this one.
        let peer = &sim.sides[1 - i];
        if sim.links[1 - i].corrupted {
            continue;
        }
        let got = &side.received;
        let sent = &peer.sent;
        assert!(
            got.len() <= sent.len() && got[..] == sent[..got.len()],
            "{who} received {} messages that are not a prefix of the {} sent",
            got.len(),
            sent.len()
        );
        if side.close_received.is_some() {
            assert_eq!(
                got.len(),
                sent.len(),
                "{who} got the close but lost messages"
            );
        }
        if let Some(ConnectionError::Protocol(e)) =
            side.outcome.as_ref().and_then(|o| o.error.as_ref())
        {
            assert!(
                matches!(
                    e,
                    ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. }
                ),
                "{who} failed with {e:?} on an uncorrupted stream"
            );
        }
    }
}

/// Every value of the header `name` (case-insensitive) in an httparse head, in order.
fn header_values<'h>(headers: &[httparse::Header<'h>], name: &str) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate
// ---------------------------------------------------------------------------------------------

/// The most of a `deflate_inflate` input that is used (keeps each execution cheap).
const DEFLATE_MAX_BODY: usize = 16 << 10;

/// What a client connection delivered, with the streamed fragments of one message joined, so
/// runs that read the same wire in other pieces or under another limit can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Delivered {
    Ping(Vec<u8>),
    /// A data message; `done` once its last byte arrived (always, outside streaming mode).
    Data {
        kind: MessageKind,
        bytes: Vec<u8>,
        done: bool,
    },
}

/// One run of a deflate client connection over the whole wire.
#[derive(Debug)]
struct InflateRun {
    limit: usize,
    stream: bool,
    log: Vec<Delivered>,
    /// The entry of `log` a streamed message in progress is appended to.
    open: Option<usize>,
    /// The close code of the failure, if the connection failed.
    failure: Option<u16>,
}

impl InflateRun {
    /// The complete data messages delivered.
    fn done_messages(&self) -> usize {
        self.log
            .iter()
            .filter(|d| matches!(d, Delivered::Data { done: true, .. }))
            .count()
    }

    /// The `n`th data message delivered (complete or not): its length and whether it is complete.
    fn data(&self, n: usize) -> Option<(usize, bool)> {
        self.log
            .iter()
            .filter_map(|d| match d {
                Delivered::Data { bytes, done, .. } => Some((bytes.len(), *done)),
                Delivered::Ping(_) => None,
            })
            .nth(n)
    }

    fn on_event(&mut self, event: Event) {
        let limit = self.limit;
        assert!(self.failure.is_none(), "event {event:?} after Closed");
        match event {
            Event::Message(m) => {
                assert!(!self.stream, "whole message in streaming mode");
                check_message(&m, Some(limit), "deflate client");
                self.log.push(Delivered::Data {
                    kind: m.kind(),
                    bytes: m.as_bytes().to_vec(),
                    done: true,
                });
            }
            Event::Fragment(f) => {
                assert!(self.stream, "fragment outside streaming mode");
                let i = match self.open {
                    Some(i) => i,
                    None => {
                        self.log.push(Delivered::Data {
                            kind: f.kind,
                            bytes: Vec::new(),
                            done: false,
                        });
                        self.log.len() - 1
                    }
                };
                let Some(Delivered::Data { kind, bytes, done }) = self.log.get_mut(i) else {
                    panic!("open entry {i} is not a message");
                };
                assert_eq!(*kind, f.kind, "fragment kind changed mid-message");
                bytes.extend_from_slice(&f.data);
                assert!(
                    bytes.len() <= limit,
                    "streamed message of {} bytes over the limit {limit}",
                    bytes.len()
                );
                if *kind == MessageKind::Text {
                    if f.fin {
                        assert!(
                            std::str::from_utf8(bytes).is_ok(),
                            "streamed text not UTF-8"
                        );
                    } else {
                        assert!(utf8_prefix_ok(bytes), "streamed text not a UTF-8 prefix");
                    }
                }
                *done = f.fin;
                self.open = (!f.fin).then_some(i);
            }
            Event::Ping(p) => {
                assert!(p.len() <= 125, "long ping payload");
                self.log.push(Delivered::Ping(p.to_vec()));
            }
            Event::Pong(_) | Event::CloseReceived(_) => {
                panic!("{event:?}, but the wire has no pong or close frames")
            }
            Event::Closed(outcome) => {
                let Some(ConnectionError::Protocol(e)) = &outcome.error else {
                    panic!("closed without a protocol error: {outcome:?}");
                };
                let code = e.close_code().as_u16();
                assert!(
                    matches!(code, 1002 | 1007 | 1009),
                    "failure {e:?} closes with {code}"
                );
                if matches!(e, ProtocolError::MessageTooLarge { .. }) {
                    assert_eq!(code, 1009, "too large, but closed with {code}");
                }
                assert_eq!(outcome.code, CloseCode::ABNORMAL, "failure code");
                assert!(!outcome.clean, "failed but clean");
                assert_eq!(
                    outcome.sent.as_ref().map(|f| f.code.as_u16()),
                    Some(code),
                    "CloseOutcome::sent"
                );
                self.failure = Some(code);
            }
        }
    }
}

/// The extension a default client makes of the server's `response`.
fn deflate_confirmed(response: &str) -> Box<dyn Extension> {
    let offers = handshake::parse_extensions([response.as_bytes()])
        .unwrap_or_else(|e| panic!("response {response:?} does not parse: {e:?}"));
    let [offer] = offers.as_slice() else {
        panic!("response {response:?} is not one extension");
    };
    DeflateConfig::new()
        .confirm(offer)
        .unwrap_or_else(|e| panic!("the default client refuses {response:?}: {e}"))
}

/// The server frames of an inflate run, from the body: each frame is a control byte, maybe a
/// length, and the payload (shorter at the end of the input). Control byte: bit 7 FIN, bit 6
/// RSV1, bits 4–5 the kind (0, 1 binary, 2 text, or a continuation inside a message; 3 ping),
/// bits 0–3 the length (0–13, 14: one length byte follows, 15: two, big-endian).
///
/// Also returns, per data message, what the connection checks against the size limit before
/// decoding: the largest frame of a compressed message, the sum of an uncompressed one's frames.
fn deflate_frames(body: &[u8]) -> (Vec<u8>, Vec<u64>) {
    let mut cur = Cursor::new(body);
    let mut wire = Vec::new();
    let mut wire_sizes: Vec<u64> = Vec::new();
    let mut compressed = false;
    let mut in_message = false;
    while !cur.is_empty() {
        let ctl = cur.byte();
        let len = match ctl & 0x0F {
            14 => usize::from(cur.byte()),
            15 => usize::from(cur.u16()),
            n => usize::from(n),
        };
        let payload = cur.take(len);
        let (fin, rsv1) = (ctl & 0x80 != 0, ctl & 0x40 != 0);
        let opcode = match (ctl >> 4) & 3 {
            3 => OpCode::Ping,
            _ if in_message => OpCode::Continuation,
            2 => OpCode::Text,
            _ => OpCode::Binary,
        };
        let (header, n) = FrameHeader {
            fin,
            rsv: if rsv1 { RSV1 } else { 0 },
            opcode,
            mask: None,
            len: payload.len() as u64,
        }
        .encode();
        wire.extend_from_slice(&header[..n]);
        wire.extend_from_slice(payload);
        if opcode.is_control() {
            continue;
        }
        let size = payload.len() as u64;
        if in_message {
            if let Some(last) = wire_sizes.last_mut() {
                *last = if compressed {
                    (*last).max(size)
                } else {
                    *last + size
                };
            }
        } else {
            compressed = rsv1;
            wire_sizes.push(size);
        }
        in_message = !fin;
    }
    (wire, wire_sizes)
}

/// A client connection with permessage-deflate (negotiated by `response`) and the message limit
/// `limit` reads `wire` as `chunker` cuts it; every event is checked, and so is its output (a
/// pong for every ping, then the failure's close frame).
fn inflate_run(
    response: &str,
    wire: &[u8],
    stream: bool,
    limit: usize,
    mut chunker: Chunker,
) -> InflateRun {
    let now = Instant::now();
    let config = Config::default()
        .stream_incoming(stream)
        .max_message_size(Some(limit));
    let mut conn = new_connection(Role::Client, config, now, u32::from(chunker.mode));
    conn.set_extension(deflate_confirmed(response));
    let mut run = InflateRun {
        limit,
        stream,
        log: Vec::new(),
        open: None,
        failure: None,
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let n = chunker.next().min(wire.len() - pos);
        let piece = &wire[pos..pos + n];
        pos += n;
        chunker.feed(&mut conn, now, piece);
        while let Some(event) = conn.poll_event() {
            run.on_event(event);
        }
        if run.failure.is_some() {
            assert_eq!(conn.buffered_input(), 0, "input kept after Closed");
        }
        conn.poll_transmit(&mut out);
    }
    assert!(conn.poll_event().is_none(), "an event without new input");
    conn.poll_transmit(&mut out);
    let frames = decode_output(Role::Client, &out);
    let close = check_output_rules(Role::Client, &frames);
    let pings: Vec<&[u8]> = run
        .log
        .iter()
        .filter_map(|d| match d {
            Delivered::Ping(p) => Some(p.as_slice()),
            Delivered::Data { .. } => None,
        })
        .collect();
    let pongs: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.opcode == OpCode::Pong)
        .map(|f| f.payload.as_slice())
        .collect();
    assert_eq!(pongs, pings, "a pong for every ping");
    assert_eq!(
        close,
        run.failure.map(Some),
        "the close frame written is the failure's"
    );
    run
}

/// Reading the wire in other pieces changes nothing: the same messages, and a failure in both or
/// neither. In streaming mode the message a failure cuts short may differ (a prefix), and so may
/// the code (a UTF-8 error and a DEFLATE error in one frame show in the order of the reads).
fn check_same_reading(chunked: &InflateRun, whole: &InflateRun) {
    if !chunked.stream {
        assert_eq!(chunked.log, whole.log, "messages depend on the reads");
        assert_eq!(
            chunked.failure, whole.failure,
            "failure depends on the reads"
        );
        return;
    }
    assert_eq!(
        chunked.failure.is_some(),
        whole.failure.is_some(),
        "failure depends on the reads: {:?} vs {:?}",
        chunked.failure,
        whole.failure
    );
    // Without the message the failure cut short (pings may follow its first fragments).
    let complete = |run: &InflateRun| -> Vec<Delivered> {
        let mut log = run.log.clone();
        if let (Some(_), Some(i)) = (run.failure, run.open) {
            log.remove(i);
        }
        log
    };
    assert_eq!(
        complete(chunked),
        complete(whole),
        "streamed messages depend on the reads"
    );
}

/// A tighter limit only refuses: under `a.limit`, the connection delivers what it does under the
/// looser `b.limit` up to where it fails, and fails only with 1009 where the other goes on, for a
/// message whose frames or decoded size really are over the limit (`wire_sizes`, see
/// [`deflate_frames`]).
fn check_limit_only_refuses(a: &InflateRun, b: &InflateRun, wire_sizes: &[u64]) {
    let (limit, looser) = (a.limit, b.limit);
    for (i, got) in a.log.iter().enumerate() {
        let Some(want) = b.log.get(i) else {
            panic!("limit {limit} delivered {got:?} at {i}, limit {looser} nothing");
        };
        match (got, want) {
            (
                Delivered::Data {
                    kind,
                    bytes,
                    done: false,
                },
                Delivered::Data {
                    kind: want_kind,
                    bytes: want_bytes,
                    ..
                },
            ) => {
                assert_eq!(kind, want_kind, "entry {i}: kind");
                assert!(
                    want_bytes.starts_with(bytes),
                    "limit {limit}: message {i} ({} bytes so far) is not a prefix of what limit \
                     {looser} delivered ({} bytes)",
                    bytes.len(),
                    want_bytes.len()
                );
                assert_eq!(a.open, Some(i), "entry {i}: unfinished but not open");
            }
            _ => assert_eq!(
                got, want,
                "entry {i} differs between limits {limit} and {looser}"
            ),
        }
    }
    let Some(code) = a.failure else {
        assert_eq!(a.log, b.log, "limit {limit} went on but delivered less");
        assert_eq!(
            b.failure, None,
            "limit {looser} failed, the tighter {limit} not"
        );
        return;
    };
    let failed_in = a.done_messages();
    if let Some(other) = b.failure
        && b.done_messages() == failed_in
    {
        // Both failed in the same message: the tighter limit may only make it 1009.
        assert!(
            code == other || code == 1009,
            "limit {limit} fails with {code}, limit {looser} with {other}"
        );
        return;
    }
    assert_eq!(
        code, 1009,
        "limit {limit} failed with {code} where limit {looser} went on"
    );
    let wire = wire_sizes.get(failed_in).copied().unwrap_or(0);
    if wire > limit as u64 {
        return; // refused from a frame header
    }
    match b.data(failed_in) {
        Some((len, _)) if len > limit => {}
        // Buffered: the looser run holds the message unfinished, its size is unknown.
        None if !a.stream => {}
        other => panic!(
            "limit {limit}: message {failed_in} refused as too large, though its frames take \
             {wire} bytes and it decodes to {other:?} (bytes, complete) under limit {looser}"
        ),
    }
}

/// Input: `[flags, limit (u16), params, params, chunk_param, body…]`; bit 0 of `flags` picks the
/// inflate half or the round trip. The limit is the message-size limit, 0 to 65535 bytes; the
/// body is used up to 16 KiB.
///
/// **Inflate** (bit 0 clear): a client connection with permessage-deflate negotiated by a
/// `permessage-deflate; …` response (`params[0]`: bit 0 `server_no_context_takeover`, bit 1
/// `client_no_context_takeover`, bits 2/3 `server_max_window_bits`/`client_max_window_bits`, with
/// `8 + (params[1] & 7)` and `8 + (params[1] >> 4 & 7)`) reads the server frames of the body
/// (layout in `deflate_frames`: FIN, RSV1, kind, length, payload). `flags` bit 1 is streaming
/// mode, bits 2–4 the chunking as for the frame targets (with `chunk_param`). Checks: every event
/// (limits on each message and on the fragments of each streamed message, UTF-8), a failure
/// closes with 1002, 1007 or 1009 (1009 when too large) and writes that close frame, a pong per
/// ping; reading the wire whole gives the same; under a looser limit (`2 * limit + 1`) the same is
/// delivered up to the failure, and the tighter limit refuses only messages that are over it.
///
/// **Round trip** (bit 0 set): a client config (`params[0]`) and a server config (`params[1]`;
/// bit 0 and 1 the no-context-takeover settings, bits 2–4 and 5–7 the server and client window
/// minus 8; level `chunk_param & 15`, threshold from `chunk_param >> 4`) negotiate (which must
/// succeed), then the body's messages (`[len, shape, bytes…]`: `len` under 0xF0, else 12 bits with
/// the next byte; the bytes repeated `shape & 15` + 1 times) go from the server to the client
/// (`flags` bit 1: the other way). Each compressed message is decoded cut at up to three points
/// (`shape >> 4`), with the budget the connection would give under the limit (none with `flags`
/// bit 5): it must come back exactly, or end with `TooLarge` after exactly the limit's worth of
/// its bytes when it is over the limit. A message left uncompressed must be under the threshold,
/// or not shrink without context takeover.
pub fn deflate_inflate(data: &[u8]) {
    let mut cur = Cursor::new(data);
    let flags = cur.byte();
    let limit = usize::from(cur.u16());
    let params = [cur.byte(), cur.byte()];
    let chunk_param = cur.byte();
    let body = cur.take(DEFLATE_MAX_BODY);
    if flags & 1 == 0 {
        deflate_inflate_wire(flags, limit, params, chunk_param, body);
    } else {
        deflate_round_trip(flags, limit, params, chunk_param, body);
    }
}

fn deflate_inflate_wire(flags: u8, limit: usize, params: [u8; 2], chunk_param: u8, body: &[u8]) {
    let [p, bits] = params;
    let mut response = String::from("permessage-deflate");
    if p & 1 != 0 {
        response.push_str("; server_no_context_takeover");
    }
    if p & 2 != 0 {
        response.push_str("; client_no_context_takeover");
    }
    if p & 4 != 0 {
        response.push_str(&format!("; server_max_window_bits={}", 8 + (bits & 7)));
    }
    if p & 8 != 0 {
        response.push_str(&format!(
            "; client_max_window_bits={}",
            8 + ((bits >> 4) & 7)
        ));
    }
    let stream = flags & 2 != 0;
    let mode = (flags >> 2) & 7;
    let (wire, wire_sizes) = deflate_frames(body);
    let run = |limit: usize, mode: u8| {
        let chunker = Chunker {
            mode,
            param: usize::from(chunk_param),
            rng: Rng::new((u32::from(chunk_param) << 8) | u32::from(flags)),
        };
        inflate_run(&response, &wire, stream, limit, chunker)
    };
    let a = run(limit, mode);
    if mode != 0 {
        check_same_reading(&a, &run(limit, 0));
    }
    check_limit_only_refuses(&a, &run(2 * limit + 1, mode), &wire_sizes);
}

fn deflate_round_trip(flags: u8, limit: usize, params: [u8; 2], chunk_param: u8, body: &[u8]) {
    let limit = if flags & 0x20 != 0 { usize::MAX } else { limit };
    let threshold = [0, 0, 0, 0, 1, 16, 300, DEFAULT_THRESHOLD][usize::from(chunk_param >> 4) & 7];
    let config = |p: u8| {
        DeflateConfig::new()
            .server_no_context_takeover(p & 1 != 0)
            .client_no_context_takeover(p & 2 != 0)
            .server_max_window_bits(8 + ((p >> 2) & 7))
            .client_max_window_bits(8 + ((p >> 5) & 7))
            .level(u32::from(chunk_param & 0x0F))
            .threshold(threshold)
    };
    let (client, server) = (config(params[0]), config(params[1]));
    // Two of our own configs always agree.
    let offer = handshake::render_extensions(&client.offers());
    let offers = handshake::parse_extensions([offer.as_bytes()])
        .unwrap_or_else(|e| panic!("our offer {offer:?} does not parse: {e:?}"));
    let (response, server_ext) = ext::negotiate_server(&[&server], &offers)
        .unwrap_or_else(|| panic!("{server:?} declines our offer {offer:?}"));
    let responses = handshake::parse_extensions([response.as_bytes()])
        .unwrap_or_else(|e| panic!("our response {response:?} does not parse: {e:?}"));
    let client_ext = ext::negotiate_client(&[&client], &responses)
        .unwrap_or_else(|e| panic!("{client:?} refuses our response {response:?}: {e}"))
        .unwrap_or_else(|| panic!("no extension from our response {response:?}"));
    let has = |name: &str| responses[0].params.iter().any(|(n, _)| n == name);
    let server_resets = has("server_no_context_takeover");
    let client_resets = (params[0] & 2 != 0) || has("client_no_context_takeover");
    let (mut tx, mut rx, tx_resets) = if flags & 2 != 0 {
        (client_ext, server_ext, client_resets)
    } else {
        (server_ext, client_ext, server_resets)
    };

    let mut cur = Cursor::new(body);
    let mut index = 0u32;
    while !cur.is_empty() {
        index += 1;
        let head = cur.byte();
        let len = if head < 0xF0 {
            usize::from(head)
        } else {
            (usize::from(head & 0x0F) << 8) | usize::from(cur.byte())
        };
        let shape = cur.byte();
        let message = cur.take(len).repeat(usize::from(shape & 0x0F) + 1);
        let mut wire = Default::default();
        let rsv = tx
            .encode(MessageKind::Binary, &message, &mut wire)
            .unwrap_or_else(|e| panic!("message {index}: encode fails: {e}"));
        let wire_len = wire.len();
        match rsv {
            None => {
                assert_eq!(
                    wire_len, 0,
                    "message {index}: left uncompressed, but written"
                );
                assert!(
                    message.len() < threshold || tx_resets,
                    "message {index} of {} bytes left uncompressed (threshold {threshold})",
                    message.len()
                );
                continue; // sent as it is; the receiver's decoder is not involved
            }
            Some(rsv) => assert_eq!(rsv, RSV1, "message {index}: RSV bits"),
        }
        if tx_resets {
            assert!(
                wire_len < message.len(),
                "message {index}: sent compressed without shrinking ({wire_len} of {})",
                message.len()
            );
        }
        let mut rng = Rng::new((u32::from(shape) << 16) ^ index);
        let mut cuts: Vec<usize> = (0..(shape >> 4) % 4)
            .map(|_| rng.next() as usize % (wire_len + 1))
            .collect();
        cuts.sort_unstable();
        let mut got = Default::default();
        let mut decoded = 0;
        let mut start = 0;
        for (i, end) in cuts.iter().copied().chain([wire_len]).enumerate() {
            let fin = i == cuts.len();
            let budget = limit - decoded;
            let r = rx.decode(RSV1, &wire[start..end], fin, &mut got, budget);
            let added = got.len() - decoded;
            assert!(
                added <= budget,
                "message {index}: decode appended {added} bytes, over its budget {budget}"
            );
            decoded = got.len();
            match r {
                Ok(()) => {}
                Err(ExtensionError::TooLarge) => {
                    assert!(
                        message.len() > limit,
                        "message {index} of {} bytes is too large for the limit {limit}",
                        message.len()
                    );
                    assert_eq!(decoded, limit, "message {index}: TooLarge before the limit");
                    assert!(
                        message.starts_with(&got),
                        "message {index}: decoded bytes differ before TooLarge"
                    );
                    return; // the connection fails here
                }
                Err(e) => panic!("message {index}: our own compressed data is refused: {e}"),
            }
            start = end;
        }
        assert!(
            message.len() <= limit,
            "message {index} of {} bytes decoded under the limit {limit}",
            message.len()
        );
        assert!(
            got[..] == message[..],
            "message {index}: {} bytes sent, {} bytes decoded, not the same",
            message.len(),
            got.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// hub_envelope
// ---------------------------------------------------------------------------------------------

/// The hub's JSON envelope (`tidings_hub::Envelope`, `{"type","payload","id"}`) and event text,
/// from a peer's message. Input: the message text (bytes that are not UTF-8 are replaced, as a
/// text frame could not carry them).
///
/// Properties: a parsed envelope keeps the text exactly (`raw`, `to_message`); serialising it
/// and parsing that back gives the same envelope; where serde_json reads the whole text too, the
/// two agree (an object whose `type` is that string, the same `payload` — absent for `null` — and
/// `id`), and an event built with the envelope's type as name and its payload as data is JSON of
/// the documented shape. (serde_json's whole reading can fail where the envelope's does not: the
/// envelope skips unknown fields and keeps its payload as raw text, checking syntax only, so a
/// lone surrogate escape there — grammatical JSON naming no character — passes until a handler
/// reads the payload, which then fails.) Events with the text as their name, and the error
/// envelope with the text as its message, are valid JSON of the documented shape.
pub fn hub_envelope(data: &[u8]) {
    use serde_json::Value;
    use tidings_hub::{Envelope, Payload, Utf8Bytes};

    let text = String::from_utf8_lossy(data).into_owned();
    let raw = Utf8Bytes::from(text.clone());
    if let Ok(envelope) = Envelope::parse(&raw) {
        assert_eq!(envelope.raw(), Some(&raw), "raw text kept");
        assert_eq!(envelope.to_message().as_text(), Some(text.as_str()));
        let again = serde_json::to_string(&envelope).expect("serialises");
        let reparsed = Envelope::parse(&Utf8Bytes::from(again)).expect("its own output parses");
        assert_eq!(reparsed, envelope, "round trip");
        let payload_value = envelope.payload_as::<Value>();
        if let Some(raw_payload) = envelope.payload() {
            assert_eq!(
                payload_value.is_ok(),
                serde_json::from_str::<Value>(raw_payload.get()).is_ok(),
                "the payload reads as serde_json reads it"
            );
        }
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            let object = value.as_object().expect("an envelope is an object");
            assert_eq!(
                object.get("type").and_then(Value::as_str),
                Some(envelope.kind())
            );
            let payload = object.get("payload").filter(|p| !p.is_null());
            assert_eq!(
                &payload_value.expect("serde_json read it"),
                payload.unwrap_or(&Value::Null),
                "payload"
            );
            let id: Option<Value> = envelope
                .id()
                .map(|id| serde_json::from_str(id.get()).expect("serde_json read it"));
            assert_eq!(id.as_ref(), object.get("id").filter(|i| !i.is_null()), "id");
            if let (Some(payload), Some(raw_payload)) = (payload, envelope.payload()) {
                // The payload's own text (re-serialising a parsed float need not give the same
                // digits back).
                let event = Payload::Event {
                    name: envelope.kind().to_owned(),
                    data: raw_payload.get().to_owned(),
                };
                let shaped: Value =
                    serde_json::from_str(event.to_message().as_text().expect("an event is text"))
                        .expect("event text is JSON");
                assert_eq!(
                    shaped,
                    serde_json::json!({"type": envelope.kind(), "data": payload})
                );
            }
        }
    }
    let event = Payload::Event {
        name: text.clone(),
        data: "null".to_owned(),
    };
    let shaped: Value = serde_json::from_str(event.to_message().as_text().expect("text"))
        .expect("any event name gives valid JSON");
    assert_eq!(shaped, serde_json::json!({"type": text, "data": null}));
    let error = Envelope::error(&text);
    let back = Envelope::parse(&Utf8Bytes::from(
        serde_json::to_string(&error).expect("json"),
    ))
    .expect("the error envelope parses");
    assert_eq!(back, error);
    let message: Value = back.payload_as().expect("value");
    assert_eq!(message, serde_json::json!({"message": text}));
}

// ---------------------------------------------------------------------------------------------
// hub_admission
// ---------------------------------------------------------------------------------------------

/// Ticket lifetimes (`TicketStore::lifetime`); the last is capped to a day by the store.
const ADMISSION_LIFETIMES: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 24 * 3600),
];

/// Ticket store capacities (`TicketStore::max_outstanding`).
const ADMISSION_MAX_OUTSTANDING: [usize; 8] = [0, 1, 2, 3, 4, 8, 16, 64];

/// Refill rates (tokens a second); NaN, infinite and negative ones count as 0.
const ADMISSION_RATES: [f64; 16] = [
    0.0,
    0.5,
    1.0,
    2.5,
    10.0,
    1e-3,
    0.1,
    3.0,
    1000.0,
    f64::NAN,
    f64::INFINITY,
    -1.0,
    0.3,
    0.7,
    7.0,
    100.0,
];

/// Query parameter names to carry a ticket (with a space and a `%`, which must be encoded).
const ADMISSION_TICKET_PARAMS: [&str; 4] = ["ticket", "t", "access ticket", "ticket%"];

/// Characters of constructed query tokens: every one that must be percent-encoded, and some
/// that need not be.
const ADMISSION_QUERY_CHARS: [char; 16] = [
    'a', 'Z', '0', '-', '_', '.', '~', ' ', '&', '=', '%', '+', '#', '/', 'é', '☃',
];

/// RFC 6750 `b64token` characters (without the trailing `=`).
const ADMISSION_B64TOKEN: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";

/// The fuzz clock: a fixed base `Instant` and an offset moved by the script.
struct AdmissionClock {
    base: Instant,
    offset: Duration,
}

impl AdmissionClock {
    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn set(&mut self, at: Instant) {
        self.offset = at.saturating_duration_since(self.base);
    }
}

/// A ticket the model issued.
struct ModelTicket {
    value: String,
    identity: u32,
    expires_at: Instant,
    /// When its tombstone may be forgotten (`expires_at + lifetime`).
    forget_at: Option<Instant>,
    /// The latest `now` the store has been given since the issue (an upper bound on the time
    /// the store has seen).
    seen_max: Instant,
    redeemed: bool,
    /// `squeezes` at the issue: a later squeeze may have dropped the entry early.
    squeezes: u32,
}

/// The ticket store and its model.
struct TicketModel {
    store: tidings_hub::auth::TicketStore<u32>,
    lifetime: Duration,
    max: usize,
    tickets: Vec<ModelTicket>,
    /// Issue calls made while the store may have been full (entries may have been dropped
    /// before their time; only tombstones and expired ones).
    squeezes: u32,
    /// The latest `now` given to the store; whether time never went backwards.
    latest: Option<Instant>,
    monotone: bool,
    next_identity: u32,
}

impl TicketModel {
    /// The value of one of the tickets issued so far, chosen by `pick` (none before the first).
    fn pick(&self, pick: u8) -> Option<String> {
        self.tickets
            .get(usize::from(pick) % self.tickets.len().max(1))
            .map(|t| t.value.clone())
    }

    /// Records a call to the store at `now`; `reaches` when the store takes its `now` (an issue,
    /// a redemption of a non-empty ticket: a call answered `Missing` does not).
    fn touch(&mut self, now: Instant, reaches: bool) {
        for t in &mut self.tickets {
            t.seen_max = t.seen_max.max(now);
        }
        if !reaches {
            return;
        }
        if let Some(latest) = self.latest {
            if now < latest {
                self.monotone = false;
            }
            self.latest = Some(latest.max(now));
        } else {
            self.latest = Some(now);
        }
    }

    fn issue(&mut self, now: Instant) {
        use tidings_hub::auth::TicketError;
        let squeeze = self.tickets.len() >= self.max;
        // Live for certain: never seen expired. Possibly live: not redeemed, not expired at now.
        let certain = self
            .tickets
            .iter()
            .filter(|t| !t.redeemed && t.seen_max.max(now) < t.expires_at)
            .count();
        let possible = self
            .tickets
            .iter()
            .filter(|t| !t.redeemed && now < t.expires_at)
            .count();
        self.touch(now, true);
        if squeeze {
            self.squeezes += 1;
        }
        let identity = self.next_identity;
        self.next_identity += 1;
        match self.store.issue(identity, now) {
            Ok(ticket) => {
                assert!(
                    certain < self.max,
                    "issue: {certain} live tickets at capacity {} yet issued",
                    self.max
                );
                let value = ticket.as_str().to_owned();
                assert_eq!(value.len(), 43, "a ticket is 43 characters");
                assert!(
                    value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "a ticket is base64url"
                );
                assert_eq!(ticket.to_string(), value);
                assert!(
                    !format!("{ticket:?}").contains(&value),
                    "Debug redacts a ticket"
                );
                let expires_at = now.checked_add(self.lifetime).unwrap_or(now);
                assert_eq!(ticket.expires_at(), expires_at, "expiry = issue + lifetime");
                assert!(
                    self.tickets.iter().all(|t| t.value != value),
                    "tickets are distinct"
                );
                self.tickets.push(ModelTicket {
                    value,
                    identity,
                    expires_at,
                    forget_at: expires_at.checked_add(self.lifetime),
                    seen_max: now,
                    redeemed: false,
                    squeezes: self.squeezes,
                });
            }
            Err(TicketError::Full) => {
                // Under a clock that never went back, "full" means full of live tickets.
                assert!(
                    !self.monotone || possible >= self.max,
                    "issue: Full with {possible} live tickets under capacity {}",
                    self.max
                );
            }
            Err(TicketError::Random) => {}
            Err(e) => panic!("issue: unexpected {e:?}"),
        }
    }

    /// Redeems `text` (directly, or as the value `redeem_query` found) and checks the answer
    /// against the model.
    fn check_redeem(
        &mut self,
        text: Option<&str>,
        result: Result<u32, tidings_hub::auth::TicketError>,
        now: Instant,
        how: &str,
    ) {
        use tidings_hub::auth::TicketError;
        if let Err(e) = result {
            check_ticket_rejection(e);
        }
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            assert_eq!(result, Err(TicketError::Missing), "{how}: no ticket");
            return;
        };
        let Some(t) = self.tickets.iter_mut().find(|t| t.value == text) else {
            assert_eq!(result, Err(TicketError::Unknown), "{how}: never issued");
            return;
        };
        let forgettable =
            t.forget_at.is_some_and(|f| t.seen_max >= f) || self.squeezes > t.squeezes;
        let seen_expired = t.seen_max >= t.expires_at;
        match result {
            Ok(identity) => {
                assert!(!t.redeemed, "{how}: a ticket redeemed twice");
                assert!(now < t.expires_at, "{how}: redeemed at or after its expiry");
                assert_eq!(
                    identity, t.identity,
                    "{how}: the identity it was issued for"
                );
                t.redeemed = true;
            }
            Err(TicketError::Reused) => assert!(t.redeemed, "{how}: Reused before any use"),
            Err(TicketError::Expired) => {
                assert!(!t.redeemed, "{how}: a redeemed ticket reported Expired");
                assert!(seen_expired, "{how}: Expired before its expiry");
            }
            Err(TicketError::Unknown) => {
                assert!(forgettable, "{how}: an issued ticket forgotten early");
            }
            Err(e) => panic!("{how}: unexpected {e:?}"),
        }
        if !t.redeemed && !seen_expired {
            panic!("{how}: a live ticket refused with {result:?}");
        }
    }

    fn check_len(&mut self) {
        let len = self.store.len();
        assert!(len <= self.max, "len {len} over capacity {}", self.max);
        let Some(latest) = self.latest else {
            assert_eq!(len, 0);
            return;
        };
        // `len` prunes as of the latest `now` (later than the issue of a ticket issued after
        // the clock went back).
        self.touch(latest, false);
        let unredeemed = self.tickets.iter().filter(|t| !t.redeemed).count();
        let certain = self
            .tickets
            .iter()
            .filter(|t| !t.redeemed && t.seen_max < t.expires_at)
            .count();
        assert!(
            certain <= len && len <= unredeemed,
            "len {len} outside {certain}..={unredeemed}"
        );
        if self.monotone {
            let live = self
                .tickets
                .iter()
                .filter(|t| !t.redeemed && latest < t.expires_at)
                .count();
            assert_eq!(len, live, "len: the live tickets");
        }
        // Live tickets and tombstones together stay within the capacity (read from Debug).
        let debug = format!("{:?}", self.store);
        let field = |name: &str| -> Option<usize> {
            let rest = &debug[debug.find(name)? + name.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        if let (Some(live), Some(tombstones)) = (field(" outstanding: "), field(" tombstones: ")) {
            assert!(
                live + tombstones <= self.max,
                "{live} live + {tombstones} tombstones over capacity {}",
                self.max
            );
        }
        for t in &self.tickets {
            assert!(!debug.contains(&t.value), "Debug shows a ticket");
        }
    }
}

/// A ticket error's refusal: 401 (with `WWW-Authenticate: Ticket`) or 503 (`Retry-After: 1`).
fn check_ticket_rejection(error: tidings_hub::auth::TicketError) {
    use tidings_hub::auth::TicketError;
    let rejection = error.rejection();
    let status = match error {
        TicketError::Full | TicketError::Random => 503,
        _ => 401,
    };
    assert_eq!(rejection.status(), status, "{error:?}");
    assert_eq!(error.status(), status, "{error:?}");
    if status == 401 {
        assert_eq!(
            response_header(&rejection, "WWW-Authenticate").as_deref(),
            Some("Ticket")
        );
    } else {
        assert_eq!(
            response_header(&rejection, "Retry-After").as_deref(),
            Some("1")
        );
    }
}

/// The first value of header `name` in a refusal's response.
fn response_header(rejection: &tidings_hub::Rejection, name: &str) -> Option<String> {
    let response = rejection.to_response();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = std::str::from_utf8(&response[..head_end]).expect("the head is text");
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Reference percent-decoding (`%XX` with hex digits of either case; `+` as a space; any other
/// `%` literal), `None` when the result is not UTF-8.
fn ref_percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 3).and_then(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            let hi = s.chars().next()?.to_digit(16)?;
            let lo = s.chars().nth(1)?.to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        });
        match (bytes[i], escape) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reference query lookup: the decoded value of the first `&`-separated pair whose decoded key
/// is `name`; `None` when there is none or its value is empty or not UTF-8.
fn ref_query_param(query: &str, name: &str) -> Option<String> {
    for pair in query.split('&') {
        let (key, value) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        if ref_percent_decode(key).as_deref() == Some(name) {
            return ref_percent_decode(value).filter(|v| !v.is_empty());
        }
    }
    None
}

/// Reference bearer token: the query's `token`, or else the first `Authorization` value that
/// is UTF-8 with the scheme `Bearer` (any case) and a non-empty token (spaces and tabs around
/// it ignored).
fn ref_bearer(query: Option<&str>, values: &[Vec<u8>]) -> Option<String> {
    if let Some(token) = query.and_then(|q| ref_query_param(q, "token")) {
        return Some(token);
    }
    let blank = |c: char| c == ' ' || c == '\t';
    values.iter().find_map(|value| {
        let value = std::str::from_utf8(value).ok()?.trim_start_matches(blank);
        let cut = value.find(blank)?;
        if !value[..cut].eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = value[cut..].trim_matches(blank);
        (!token.is_empty()).then(|| token.to_owned())
    })
}

/// Percent-encodes `text` for a query: unreserved ASCII raw or escaped (by the bits of `rng`),
/// a space as `+` or `%20`, everything else escaped byte by byte in either case.
fn query_encode(text: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let bits = rng.next();
        let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
        if unreserved && bits & 1 == 0 {
            out.push(c);
        } else if c == ' ' && bits & 1 == 0 {
            out.push('+');
        } else {
            for b in c.encode_utf8(&mut buf).bytes() {
                if bits & 2 == 0 {
                    out.push_str(&format!("%{b:02X}"));
                } else {
                    out.push_str(&format!("%{b:02x}"));
                }
            }
        }
    }
    out
}

/// Arbitrary query text from the input (`&` kept: it only makes more pairs).
fn admission_text(c: &mut Cursor<'_>, max: usize) -> String {
    let n = usize::from(c.byte()) % (max + 1);
    String::from_utf8_lossy(c.take(n)).into_owned()
}

/// A token bucket and the bound its grants must stay under.
struct BucketModel {
    bucket: tidings_hub::TokenBucket,
    capacity: f64,
    rate: f64,
    /// Grants so far.
    granted: f64,
    /// The latest `now` the bucket was given, in seconds after the base.
    high: Option<f64>,
    /// min over earlier calls i of (grants before i − rate × time of i).
    low: f64,
}

impl BucketModel {
    fn new(capacity: u32, rate: f64) -> Self {
        let bucket = tidings_hub::TokenBucket::new(capacity, rate);
        let effective = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        assert_eq!(bucket.capacity(), capacity);
        assert_eq!(bucket.refill_per_sec().to_bits(), effective.to_bits());
        BucketModel {
            bucket,
            capacity: f64::from(capacity),
            rate: effective,
            granted: 0.0,
            high: None,
            low: f64::INFINITY,
        }
    }

    /// Records a call at `now` (before its grants).
    fn call(&mut self, now: f64) {
        let high = self.high.map_or(now, |h| h.max(now));
        self.high = Some(high);
        self.low = self.low.min(self.granted - self.rate * high);
    }

    /// Records `n` tokens granted by the current call and checks the bound: over calls i..=j
    /// at most `capacity + rate × (t_j − t_i)` tokens.
    fn grant(&mut self, n: f64) {
        self.granted += n;
        let high = self.high.expect("call first");
        let excess = self.granted - self.rate * high - self.low - self.capacity;
        let eps = 1e-12 * (self.capacity + self.rate * high + self.granted) + 1e-9;
        assert!(
            excess <= eps,
            "bucket granted {excess} tokens over capacity {} + refill {}/s × elapsed",
            self.capacity,
            self.rate
        );
    }
}

/// Checks a probe of `bucket` at `now` (on clones: the bucket itself is untouched). `behind`:
/// the bucket has seen a later `now` (it counts refill from there, so the wait it gives from an
/// earlier `now` is short by the difference; only checked otherwise).
fn check_bucket_probe(bucket: &tidings_hub::TokenBucket, now: Instant, behind: bool) {
    let mut probe = bucket.clone();
    let wait = probe.time_until_available(now);
    let available = probe.available(now);
    let full = probe.is_full(now);
    let capacity = probe.capacity();
    let rate = probe.refill_per_sec();
    assert!(
        available <= capacity,
        "available {available} > capacity {capacity}"
    );
    assert_eq!(
        full,
        available == capacity,
        "full iff the capacity is available"
    );
    if available >= 1 {
        assert_eq!(wait, Some(Duration::ZERO), "no wait when a token is there");
    } else if wait == Some(Duration::ZERO) && !behind {
        assert!(bucket.clone().try_take(now), "no wait, yet no token");
    }
    assert_eq!(
        wait.is_none(),
        available == 0 && (rate == 0.0 || capacity == 0),
        "never only without refill or capacity"
    );
    if let Some(wait) = wait.filter(|w| !w.is_zero() && !behind) {
        let slack = Duration::from_millis(1);
        assert!(
            bucket.clone().try_take(now + wait + slack),
            "no token {wait:?} + 1 ms after time_until_available said"
        );
        let early = slack + wait / 1_000_000_000;
        if wait > early {
            assert!(
                !bucket.clone().try_take(now + wait - early),
                "a token before time_until_available ({wait:?})"
            );
        }
    }
}

/// Checks a `Limited`'s `429` and its `Retry-After`: whole seconds, rounded up, at least 1; 60
/// without a time.
fn check_limited(limited: &tidings_hub::Limited) {
    let rejection = limited.rejection();
    assert_eq!(rejection.status(), 429);
    let retry: u128 = response_header(&rejection, "Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After is a number of seconds");
    let expected = limited.retry_after.map_or(60, |d| {
        let nanos = d.as_nanos();
        nanos.div_ceil(1_000_000_000).max(1)
    });
    assert_eq!(retry, expected, "Retry-After for {:?}", limited.retry_after);
    assert!(retry >= 1);
    if let Some(d) = limited.retry_after {
        assert!(
            retry * 1_000_000_000 >= d.as_nanos(),
            "Retry-After before the wait"
        );
    }
    let as_rejection: tidings_hub::Rejection = (*limited).into();
    assert_eq!(as_rejection, rejection);
}

/// A rate limiter and an exact model of it (one `TokenBucket` per key, least recently used
/// eviction), kept while the model can tell which key goes.
struct LimiterModel {
    limiter: tidings_hub::RateLimiter<u8>,
    template: tidings_hub::TokenBucket,
    max_keys: usize,
    /// Key → (its bucket, the latest `now` it was checked at).
    buckets: Vec<(u8, tidings_hub::TokenBucket, Instant)>,
    exact: bool,
    /// The latest `now` given to the limiter.
    high: Option<Instant>,
}

impl LimiterModel {
    fn check(&mut self, key: u8, now: Instant) {
        let behind = self.high.is_some_and(|h| now < h);
        self.high = Some(self.high.map_or(now, |h| h.max(now)));
        let result = self.limiter.check(&key, now);
        if let Err(limited) = &result {
            check_limited(limited);
            let template = &self.template;
            assert_eq!(
                limited.retry_after.is_none(),
                template.refill_per_sec() == 0.0 || template.capacity() == 0,
                "retry_after None only when no token ever comes"
            );
        }
        let len = self.limiter.len();
        assert!(
            len <= self.max_keys,
            "limiter holds {len} keys over {}",
            self.max_keys
        );
        if !self.exact {
            return;
        }
        if !self.buckets.iter().any(|(k, _, _)| *k == key) && self.buckets.len() >= self.max_keys {
            self.buckets
                .retain_mut(|(_, bucket, _)| !bucket.is_full(now));
            if self.buckets.len() >= self.max_keys {
                let oldest = self.buckets.iter().map(|(_, _, at)| *at).min();
                let tied: Vec<usize> = (0..self.buckets.len())
                    .filter(|&i| Some(self.buckets[i].2) == oldest)
                    .collect();
                if tied.len() == 1 {
                    self.buckets.remove(tied[0]);
                } else {
                    // Which one goes is not determined: the exact model ends here.
                    self.exact = false;
                    return;
                }
            }
        }
        let index = match self.buckets.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                self.buckets.push((key, self.template.clone(), now));
                self.buckets.len() - 1
            }
        };
        assert_eq!(len, self.buckets.len(), "limiter keys");
        let entry = &mut self.buckets[index];
        entry.2 = entry.2.max(now);
        let expected = if entry.1.try_take(now) {
            Ok(())
        } else {
            Err(tidings_hub::Limited {
                retry_after: entry.1.time_until_available(now),
            })
        };
        assert_eq!(result, expected, "limiter key {key}: a bucket of its own");
        if let Err(tidings_hub::Limited {
            retry_after: Some(_),
        }) = result
            && !behind
        {
            // Retrying after Retry-After (and a millisecond) finds a token.
            let rejection = tidings_hub::Limited {
                retry_after: entry.1.clone().time_until_available(now),
            }
            .rejection();
            let secs: u64 = response_header(&rejection, "Retry-After")
                .and_then(|s| s.parse().ok())
                .expect("Retry-After");
            let later = now + Duration::from_secs(secs) + Duration::from_millis(1);
            assert!(
                entry.1.clone().try_take(later),
                "refused again {secs} s after Retry-After: {secs}"
            );
        }
    }
}

/// The hub's admission and abuse limits: one-time tickets (`TicketStore`), bearer tokens
/// (`bearer_token`, `BearerAuth`), token buckets and the keyed `RateLimiter` (`Limited`), driven
/// by a script on a simulated clock (a fixed base `Instant` plus offsets the script moves,
/// backwards too).
///
/// Input: `[tickets, bucket, limiter, ops…]`. `tickets`: lifetime (bits 0–2,
/// `ADMISSION_LIFETIMES`) and capacity (bits 3–5, `ADMISSION_MAX_OUTSTANDING`); `bucket`:
/// capacity (bits 0–3) and rate (bits 4–7, `ADMISSION_RATES`); `limiter`: `max_keys` 1–8 (bits
/// 0–2), capacity 0/1/2/4 (bits 3–4) and rate (bits 5–7). Each op is a byte `op % 16` and its
/// operands: 0 forward `b × 10 ms`, 1 forward `b × 37 s`, 2 back `b × 10 ms`, 3 to a ticket's
/// expiry or forget time ±1 ns, 4 issue, 5 redeem, 6 `redeem_query` with the ticket among other
/// parameters, 7 redeem arbitrary text, 8 redeem a ticket with one character changed, 9 `len`,
/// 10 `bearer_token` on an arbitrary query and `Authorization` values, 11 `bearer_token` and
/// `BearerAuth` on a constructed token, 12 take tokens, 13 probe the bucket, 14 limiter check,
/// 15 `redeem_query` on an arbitrary query.
///
/// Properties: a ticket redeems to its identity exactly once, only before its expiry, always
/// while it is live; `Reused`/`Expired`/`Unknown` only when true (`Unknown` for a ticket only once
/// it may be forgotten); text never issued is `Unknown` (`Missing` when empty); `redeem_query`
/// finds the first parameter of the name after percent-decoding; `Full` only with capacity live
/// tickets, and always then; `len` and live + tombstones within the capacity; tickets are 43
/// base64url characters, distinct, redacted in `Debug`. `bearer_token` agrees with a reference
/// reading of the query and headers and finds a constructed token; `BearerAuth` admits, refuses
/// and asks for a token with the right `401`. A bucket grants at most `capacity + rate × elapsed`
/// over any run of calls, all or nothing, consistently with `available`, `is_full` and
/// `time_until_available`; the limiter holds at most `max_keys` keys, answers as a bucket of the
/// key's own (least recently used eviction), and its `429`'s `Retry-After` is whole seconds
/// rounded up, at least 1, after which a token is there.
pub fn hub_admission(data: &[u8]) {
    use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
    use tidings_hub::auth::{BearerAuth, TicketStore, bearer_token};

    let mut c = Cursor::new(data);
    let tickets_cfg = c.byte();
    let bucket_cfg = c.byte();
    let limiter_cfg = c.byte();

    let mut clock = AdmissionClock {
        base: Instant::now(),
        offset: Duration::ZERO,
    };
    let lifetime = ADMISSION_LIFETIMES[usize::from(tickets_cfg & 7)];
    let max = ADMISSION_MAX_OUTSTANDING[usize::from(tickets_cfg >> 3 & 7)];
    let store = TicketStore::<u32>::new()
        .lifetime(lifetime)
        .max_outstanding(max);
    let lifetime = store.get_lifetime();
    assert!(
        lifetime <= Duration::from_secs(24 * 3600),
        "lifetime capped at a day"
    );
    let mut tickets = TicketModel {
        store,
        lifetime,
        max,
        tickets: Vec::new(),
        squeezes: 0,
        latest: None,
        monotone: true,
        next_identity: 0,
    };
    let mut bucket = BucketModel::new(
        u32::from(bucket_cfg & 15),
        ADMISSION_RATES[usize::from(bucket_cfg >> 4)],
    );
    let max_keys = 1 + usize::from(limiter_cfg & 7);
    let limiter_capacity = [0, 1, 2, 4][usize::from(limiter_cfg >> 3 & 3)];
    let limiter_rate = ADMISSION_RATES[usize::from(limiter_cfg >> 5)];
    let mut limiter = LimiterModel {
        limiter: tidings_hub::RateLimiter::new(limiter_capacity, limiter_rate).max_keys(max_keys),
        template: tidings_hub::TokenBucket::new(limiter_capacity, limiter_rate),
        max_keys,
        buckets: Vec::new(),
        exact: true,
        high: None,
    };

    let mut ops = 0;
    while !c.is_empty() && ops < 600 {
        ops += 1;
        let op = c.byte() % 16;
        let now = clock.now();
        match op {
            0 => clock.offset += Duration::from_millis(u64::from(c.byte()) * 10),
            1 => clock.offset += Duration::from_secs(u64::from(c.byte()) * 37),
            2 => {
                let back = Duration::from_millis(u64::from(c.byte()) * 10);
                clock.offset = clock.offset.saturating_sub(back);
            }
            3 => {
                let pick = c.byte();
                let Some(t) = tickets
                    .tickets
                    .get(usize::from(pick) % tickets.tickets.len().max(1))
                else {
                    continue;
                };
                let at = if pick & 0x80 == 0 {
                    t.expires_at
                } else {
                    t.forget_at.unwrap_or(t.expires_at)
                };
                let nudge = Duration::from_nanos(1);
                match c.byte() % 3 {
                    0 => clock.set(at.checked_sub(nudge).unwrap_or(at)),
                    1 => clock.set(at),
                    _ => clock.set(at + nudge),
                }
            }
            4 => tickets.issue(now),
            5 => {
                let Some(value) = tickets.pick(c.byte()) else {
                    continue;
                };
                tickets.touch(now, true);
                let result = tickets.store.redeem(&value, now);
                tickets.check_redeem(Some(&value), result, now, "redeem");
            }
            6 => {
                let Some(value) = tickets.pick(c.byte()) else {
                    continue;
                };
                let shape = c.byte();
                let name = ADMISSION_TICKET_PARAMS[usize::from(shape & 3)];
                let mut rng = Rng::new(u32::from(c.u16()));
                let prefix = admission_text(&mut c, 24);
                let suffix = admission_text(&mut c, 24);
                let query = format!(
                    "{prefix}&{}={}&{suffix}",
                    query_encode(name, &mut rng),
                    query_encode(&value, &mut rng)
                );
                let found = ref_query_param(&query, name);
                if !prefix.split('&').any(|p| {
                    ref_percent_decode(p.split('=').next().unwrap_or("")).as_deref() == Some(name)
                }) {
                    assert_eq!(
                        found.as_deref(),
                        Some(value.as_str()),
                        "encoded ticket {query}"
                    );
                }
                let query = (shape & 4 == 0).then_some(query.as_str());
                let found = query.and(found);
                tickets.touch(now, found.is_some());
                let result = tickets.store.redeem_query(query, name, now);
                tickets.check_redeem(found.as_deref(), result, now, "redeem_query");
            }
            7 => {
                let text = admission_text(&mut c, 64);
                tickets.touch(now, !text.is_empty());
                let result = tickets.store.redeem(&text, now);
                tickets.check_redeem(Some(&text), result, now, "redeem text");
            }
            8 => {
                let Some(value) = tickets.pick(c.byte()) else {
                    continue;
                };
                let at = usize::from(c.byte()) % value.len();
                let with = ADMISSION_B64TOKEN[usize::from(c.byte()) % ADMISSION_B64TOKEN.len()];
                let mut bytes = value.into_bytes();
                bytes[at] = with;
                let text = String::from_utf8(bytes).expect("ASCII");
                tickets.touch(now, !text.is_empty());
                let result = tickets.store.redeem(&text, now);
                tickets.check_redeem(Some(&text), result, now, "redeem changed ticket");
            }
            9 => tickets.check_len(),
            10 => {
                let shape = c.byte();
                let query = admission_text(&mut c, 48);
                let query = (shape & 1 == 0).then_some(query.as_str());
                let mut headers = HeaderMap::new();
                let mut values = Vec::new();
                for _ in 0..(shape >> 1) % 4 {
                    let n = usize::from(c.byte()) % 40;
                    let raw = c.take(n).to_vec();
                    if let Ok(value) = HeaderValue::from_bytes(&raw) {
                        headers.append(AUTHORIZATION, value);
                        values.push(raw);
                    }
                }
                assert_eq!(
                    bearer_token(query, &headers),
                    ref_bearer(query, &values),
                    "bearer_token({query:?}, {values:?})"
                );
            }
            11 => {
                let shape = c.byte();
                let len = 1 + usize::from(c.byte() % 24);
                let mut rng = Rng::new(u32::from(c.u16()));
                let b64: String = (0..len)
                    .map(|_| c.byte())
                    .map(|b| {
                        char::from(ADMISSION_B64TOKEN[usize::from(b) % ADMISSION_B64TOKEN.len()])
                    })
                    .chain(std::iter::repeat_n('=', usize::from(shape >> 6)))
                    .collect();
                let wide: String = (0..len)
                    .map(|_| ADMISSION_QUERY_CHARS[rng.next() as usize % 16])
                    .collect();
                let mut headers = HeaderMap::new();
                if shape & 1 != 0 {
                    headers.append(
                        AUTHORIZATION,
                        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
                    );
                }
                let mut expected = None;
                if shape & 2 != 0 {
                    let schemes = ["Bearer", "bearer", "BEARER", "bEaReR"];
                    let blanks = [" ", "\t", "  ", " \t "];
                    let value = format!(
                        "{}{}{}{b64}{}",
                        ["", " ", "\t"][rng.next() as usize % 3],
                        schemes[rng.next() as usize % 4],
                        blanks[rng.next() as usize % 4],
                        ["", " ", "\t "][rng.next() as usize % 3],
                    );
                    headers.append(
                        AUTHORIZATION,
                        HeaderValue::from_str(&value).expect("a valid header value"),
                    );
                    expected = Some(b64.clone());
                }
                let query = match (shape >> 2) & 3 {
                    0 => None,
                    1 => Some("a=1&tokens=x&b=&toke=n".to_owned()),
                    _ => {
                        let before = if shape & 16 != 0 { "x=1&token_=2&" } else { "" };
                        let after = if shape & 32 != 0 { "&token=second" } else { "" };
                        expected = Some(wide.clone());
                        Some(format!(
                            "{before}{}={}{after}",
                            query_encode("token", &mut rng),
                            query_encode(&wide, &mut rng)
                        ))
                    }
                };
                let found = bearer_token(query.as_deref(), &headers);
                assert_eq!(found, expected, "bearer_token({query:?}, {headers:?})");
                // BearerAuth: admitted when the hook knows the token, refused otherwise.
                let accept = if rng.next() & 1 == 0 {
                    expected.clone()
                } else {
                    Some("not-it".to_owned())
                };
                let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
                let hook_seen = std::sync::Arc::clone(&seen);
                let auth = BearerAuth::new(move |token: String| {
                    let ok = accept.as_deref() == Some(token.as_str());
                    *hook_seen.lock().expect("lock") = Some(token);
                    async move { ok.then_some(7u8) }
                });
                let mut future = std::pin::pin!(auth.authenticate(query.as_deref(), &headers));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let std::task::Poll::Ready(outcome) = future.as_mut().poll(&mut cx) else {
                    panic!("BearerAuth with a ready hook is ready");
                };
                let hooked = seen.lock().expect("lock").clone();
                assert_eq!(hooked, expected, "the hook gets the bearer token");
                match (&expected, outcome) {
                    (None, Err(r)) => {
                        assert_eq!(r.status(), 401);
                        assert_eq!(
                            response_header(&r, "WWW-Authenticate").as_deref(),
                            Some("Bearer")
                        );
                    }
                    (Some(_), Ok(identity)) => {
                        assert_eq!(identity, 7);
                        assert!(hooked.is_some());
                    }
                    (Some(_), Err(r)) => {
                        assert_eq!(r.status(), 401);
                        assert_eq!(
                            response_header(&r, "WWW-Authenticate").as_deref(),
                            Some("Bearer error=\"invalid_token\"")
                        );
                    }
                    (None, Ok(_)) => panic!("BearerAuth admitted a request without a token"),
                }
            }
            12 => {
                let n = u32::from(c.byte() % 5);
                let at = (now - clock.base).as_secs_f64();
                let available = bucket.bucket.clone().available(now);
                bucket.call(at);
                let granted = bucket.bucket.try_take_n(n, now);
                assert_eq!(
                    granted,
                    available >= n,
                    "take {n} with {available} available"
                );
                if granted {
                    bucket.grant(f64::from(n));
                }
            }
            13 => {
                let at = (now - clock.base).as_secs_f64();
                check_bucket_probe(&bucket.bucket, now, bucket.high.is_some_and(|h| at < h));
                bucket.call(at);
                let full = bucket.bucket.is_full(now);
                let available = bucket.bucket.available(now);
                assert_eq!(full, available == bucket.bucket.capacity());
                bucket.grant(0.0);
            }
            14 => limiter.check(c.byte() % 12, now),
            _ => {
                let query = admission_text(&mut c, 64);
                let name = ADMISSION_TICKET_PARAMS[usize::from(c.byte() & 3)];
                let found = ref_query_param(&query, name);
                tickets.touch(now, found.is_some());
                let result = tickets.store.redeem_query(Some(&query), name, now);
                tickets.check_redeem(found.as_deref(), result, now, "redeem_query text");
            }
        }
    }
    tickets.check_len();
}

// ---------------------------------------------------------------------------------------------
// redis_frame
// ---------------------------------------------------------------------------------------------

/// The most of a `redis_frame` input the structured part reads from (keeps executions cheap).
const REDIS_FRAME_STRUCTURED_MAX: usize = 4096;

/// The most bytes an origin or excepted-client id keeps on the wire (a `u16` length).
const REDIS_FRAME_ID_MAX: usize = u16::MAX as usize;

/// `value`'s `Debug`, cut to 400 bytes (decoded frames can hold 64 KiB ids and payloads).
fn redis_frame_debug(value: &impl std::fmt::Debug) -> String {
    let mut text = format!("{value:?}");
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Panics with `what` unless `got` is `Ok(want)`.
fn redis_frame_same(
    got: &Result<tidings_hub_redis::frame::Frame, tidings_hub_redis::frame::FrameError>,
    want: &tidings_hub_redis::frame::Frame,
    what: &str,
) {
    if got.as_ref() != Ok(want) {
        panic!(
            "{what}: got {}, want {}",
            redis_frame_debug(got),
            redis_frame_debug(want)
        );
    }
}

/// Checks a frame the codec decoded from `body` numbered `event_id` (`what` names the entry
/// point): the frame re-encodes to exactly `body`, and the whole message made of that
/// (`encode(event id or 0, encode_body(..))`), as well as the body alone, decode to the same
/// frame.
fn redis_frame_check(
    frame: &tidings_hub_redis::frame::Frame,
    body: &[u8],
    event_id: u64,
    what: &str,
) {
    use tidings_hub_redis::frame::{decode, decode_body, encode, encode_body};

    assert_eq!(
        frame.broadcast.event_id,
        (event_id != 0).then_some(event_id),
        "{what}: event id"
    );
    let again = encode_body(&frame.broadcast, frame.seq);
    assert!(
        again == body,
        "{what}: the body re-encodes to other bytes: {} for {}",
        redis_frame_debug(&again),
        redis_frame_debug(&body)
    );
    let id = frame.broadcast.event_id.unwrap_or(0);
    let wire = encode(id, &again);
    redis_frame_same(&decode(&wire), frame, &format!("{what}: round trip"));
    redis_frame_same(
        &decode_body(&again, id),
        frame,
        &format!("{what}: body round trip"),
    );
}

/// A text field of the structured part: `[len, bytes…]`, not-UTF-8 bytes replaced.
fn redis_frame_text(c: &mut Cursor<'_>) -> String {
    let n = usize::from(c.byte());
    String::from_utf8_lossy(c.take(n)).into_owned()
}

/// A big-endian `u64` of the structured part.
fn redis_frame_u64(c: &mut Cursor<'_>) -> u64 {
    (0..8).fold(0, |n, _| n << 8 | u64::from(c.byte()))
}

/// An origin or excepted-client id of the structured part, by `mode` (2 bits): 0 and 3 a text
/// field, 1 empty, 2 a text field repeated to `65532 + stretch` bytes (the wire keeps 65535).
fn redis_frame_id(c: &mut Cursor<'_>, mode: u8, stretch: u8) -> String {
    match mode & 3 {
        1 => String::new(),
        2 => {
            let mut unit = redis_frame_text(c);
            if unit.is_empty() {
                unit.push('x');
            }
            let want = REDIS_FRAME_ID_MAX - 3 + usize::from(stretch & 7);
            let mut long = unit.repeat(want / unit.len() + 1);
            let mut end = want;
            while !long.is_char_boundary(end) {
                end += 1;
            }
            long.truncate(end);
            long
        }
        _ => redis_frame_text(c),
    }
}

/// `id` as the wire keeps it: its longest prefix of whole characters within 65535 bytes.
fn redis_frame_kept_id(id: &str) -> &str {
    let mut end = id.len().min(REDIS_FRAME_ID_MAX);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// The backend's Redis wire codec (`tidings_hub_redis::frame`), on untrusted messages: any Redis
/// client can publish on the backend's channels, so decoding must never panic nor allocate more
/// than the message warrants (libFuzzer's malloc limit), and what it accepts must be exactly
/// what the codec writes.
///
/// Input: the whole input is a channel message for `decode`, and a body for `decode_body`
/// (numbered 7, and 0). Its first bytes (at most 4 KiB) also build a broadcast:
/// `[shape, ids, seq, event id?, origin, except?, rooms…, name?, payload…]`. `shape`: target
/// (bits 0–1: 0 all, 1 one room, 2–3 `Rooms` of `byte % 8` rooms, maybe none), payload (bits
/// 2–3: 0 text, 1 binary, 2 event, 3 binary), an excepted client (bit 4), an event id (bit 5,
/// a `u64` follows `seq`; 0 stays unnumbered), `seq` a `u64` (bit 6) or one byte. `ids`: the
/// origin's mode (bits 0–1) and the except's (bits 2–3): a text field, empty, or one repeated to
/// 65532–65539 bytes (bits 4–6). Text fields (ids, rooms, event name) are `[len, bytes…]`; the
/// payload (an event's data) is the rest; bytes that are not UTF-8 are replaced in texts.
///
/// Properties: `decode` and `decode_body` return (never panic); a message they accept starts
/// with the tag and a decimal event id, its body re-encodes to exactly its bytes (the encoding is
/// canonical) and the message re-encoded from the frame decodes to the same frame; a body
/// decodes the same alone, numbered 0 (unnumbered), or inside a channel message. A broadcast
/// built from the input, with any target, payload, except and event id, encodes to a message
/// and a body that decode to the same broadcast and sequence number — with an empty except read
/// as none (the wire's "no except") and ids over 65535 bytes kept to their longest prefix of
/// whole characters within that.
pub fn redis_frame(data: &[u8]) {
    use std::sync::Arc;
    use tidings_hub::{Broadcast, ClientId, Message, Payload, Target};
    use tidings_hub_redis::frame::{Frame, TAG, decode, decode_body, encode, encode_body};

    // 1. The input as a channel message.
    if let Ok(frame) = decode(data) {
        let id = frame.broadcast.event_id.unwrap_or(0);
        let body = encode_body(&frame.broadcast, frame.seq);
        assert!(
            data.starts_with(TAG) && data.ends_with(&body),
            "decode: a tagged message ending with its body"
        );
        let digits = &data[TAG.len()..data.len() - body.len()];
        let digits = digits
            .strip_suffix(b" ")
            .expect("decode: a space before the body");
        assert!(
            !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit),
            "decode: a decimal event id"
        );
        let parsed: u64 = std::str::from_utf8(digits)
            .expect("ASCII")
            .parse()
            .expect("decode: the event id fits a u64");
        assert_eq!(parsed, id, "decode: the event id");
        redis_frame_check(&frame, &body, id, "decode");
    }

    // 2. The input as a body (a history entry's).
    let numbered = decode_body(data, 7);
    let unnumbered = decode_body(data, 0);
    let tagged = decode(&encode(7, data));
    assert!(
        tagged == numbered,
        "a body decodes the same inside a channel message: {} alone, {} tagged",
        redis_frame_debug(&numbered),
        redis_frame_debug(&tagged)
    );
    match (&numbered, &unnumbered) {
        (Ok(frame), Ok(plain)) => {
            let mut renumbered = plain.clone();
            renumbered.broadcast = renumbered.broadcast.with_event_id(7);
            redis_frame_same(
                &Ok(renumbered),
                frame,
                "decode_body: only the event id differs",
            );
            redis_frame_check(frame, data, 7, "decode_body");
            redis_frame_check(plain, data, 0, "decode_body unnumbered");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "decode_body: the same error whatever the id"),
        _ => panic!(
            "decode_body: {} numbered 7 but {} unnumbered",
            redis_frame_debug(&numbered),
            redis_frame_debug(&unnumbered)
        ),
    }

    // 3. A broadcast built from the input encodes to what decodes to it.
    let mut c = Cursor::new(&data[..data.len().min(REDIS_FRAME_STRUCTURED_MAX)]);
    let shape = c.byte();
    let ids = c.byte();
    let seq = if shape & 0x40 != 0 {
        redis_frame_u64(&mut c)
    } else {
        u64::from(c.byte())
    };
    let event_id = if shape & 0x20 != 0 {
        redis_frame_u64(&mut c)
    } else {
        0
    };
    let origin = redis_frame_id(&mut c, ids, ids >> 4);
    let except = (shape & 0x10 != 0).then(|| redis_frame_id(&mut c, ids >> 2, ids >> 4));
    let target = match shape & 3 {
        0 => Target::All,
        1 => Target::Room(redis_frame_text(&mut c)),
        _ => {
            let count = c.byte() % 8;
            Target::Rooms((0..count).map(|_| redis_frame_text(&mut c)).collect())
        }
    };
    let payload = match shape >> 2 & 3 {
        0 => Payload::Message(Message::text(
            String::from_utf8_lossy(c.take(usize::MAX)).into_owned(),
        )),
        2 => {
            let name = redis_frame_text(&mut c);
            Payload::Event {
                name,
                data: String::from_utf8_lossy(c.take(usize::MAX)).into_owned(),
            }
        }
        _ => Payload::Message(Message::binary(c.take(usize::MAX).to_vec())),
    };
    let mut broadcast = Broadcast::new(target, payload, Arc::from(origin.as_str()))
        .except(except.as_deref().map(ClientId::new));
    if event_id != 0 {
        broadcast = broadcast.with_event_id(event_id);
    }
    // The wire cuts long ids and reads an empty except as none.
    let kept_except = except
        .as_deref()
        .map(redis_frame_kept_id)
        .filter(|e| !e.is_empty());
    let mut expected = Frame {
        broadcast: broadcast.clone().except(kept_except.map(ClientId::new)),
        seq,
    };
    expected.broadcast.origin = Arc::from(redis_frame_kept_id(&origin));

    let body = encode_body(&broadcast, seq);
    redis_frame_same(
        &decode_body(&body, event_id),
        &expected,
        "an encoded body decodes to its broadcast",
    );
    let wire = encode(event_id, &body);
    assert!(
        wire.starts_with(TAG) && wire.ends_with(&body),
        "a channel message is the tag, the id and the body"
    );
    redis_frame_same(
        &decode(&wire),
        &expected,
        "an encoded message decodes to its broadcast",
    );
}
