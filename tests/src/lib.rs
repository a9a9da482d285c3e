//! Shared test support for tidings.
//!
//! * [`Pair`]: an in-memory client [`Connection`] and server [`Connection`] joined by a simulated
//!   transport, with a simulated clock. [`Pair::drive`] moves bytes both ways (whole, in chunks,
//!   or with partial writes) until both sides are quiet, collecting every event per side, and
//!   models the TCP close: once a side wants its transport closed and has flushed its output, the
//!   other side gets EOF.
//! * Raw frame builders ([`raw_frame`], [`raw_header`], …) to inject hand-made bytes into one side,
//!   and [`decode_frames`] to read a side's raw output back as frames.
//! * [`vectors`]: the parser for the frame vector file `tests/vectors/frames.txt`.
//!
//! Nothing here reads a clock or sleeps: time is an `Instant` captured once and advanced by adding
//! `Duration`s.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use tidings_core::mask::apply_mask;
use tidings_core::{
    CloseOutcome, Config, Connection, Event, FrameHeader, MaskSource, Message, OpCode,
    ProtocolError, Role,
};

pub mod adapter_suite;
pub mod vectors;

/// Raw opcode values, including reserved ones, for hand-made frames.
pub mod op {
    /// Continuation.
    pub const CONT: u8 = 0x0;
    /// Text.
    pub const TEXT: u8 = 0x1;
    /// Binary.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// The masking key used by the frame builders for client-to-server frames.
pub const TEST_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

// ---------------------------------------------------------------------------------------------
// Masks
// ---------------------------------------------------------------------------------------------

/// A deterministic source of masking keys (splitmix64), so client output is reproducible.
#[derive(Clone, Debug)]
pub struct SeqMasks {
    state: u64,
}

impl SeqMasks {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeqMasks { state: seed }
    }
}

impl MaskSource for SeqMasks {
    fn next_mask(&mut self) -> [u8; 4] {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let b = z.to_le_bytes();
        [b[0], b[1], b[2], b[3]]
    }
}

// ---------------------------------------------------------------------------------------------
// Single connections
// ---------------------------------------------------------------------------------------------

/// A server connection with `config`, starting at `now`.
pub fn server(config: Config, now: Instant) -> Connection {
    Connection::server(config, now)
}

/// A client connection with `config` and deterministic masks, starting at `now`.
pub fn client(config: Config, now: Instant) -> Connection {
    Connection::client_with_masks(config, SeqMasks::new(1), now)
}

/// A connection of the given role (client ones get deterministic masks).
pub fn connection(role: Role, config: Config, now: Instant) -> Connection {
    match role {
        Role::Client => client(config, now),
        Role::Server => server(config, now),
    }
}

/// Polls every available event.
pub fn drain_events(conn: &mut Connection) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(e) = conn.poll_event() {
        events.push(e);
    }
    events
}

/// Takes all queued output.
pub fn take_output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    out
}

/// Feeds `bytes` to `conn` in chunks of `chunk` bytes (all at once for `None` or `Some(0)`),
/// polling every event after each chunk, and returns the events.
pub fn feed(conn: &mut Connection, now: Instant, bytes: &[u8], chunk: Option<usize>) -> Vec<Event> {
    let mut events = Vec::new();
    let size = match chunk {
        Some(n) if n > 0 => n,
        _ => bytes.len().max(1),
    };
    for piece in bytes.chunks(size) {
        conn.receive(now, piece);
        events.extend(drain_events(conn));
    }
    events
}

// ---------------------------------------------------------------------------------------------
// Event helpers
// ---------------------------------------------------------------------------------------------

/// The data messages among `events`.
pub fn messages(events: &[Event]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The terminal outcome among `events`, if the connection ended.
pub fn closed(events: &[Event]) -> Option<&CloseOutcome> {
    events.iter().find_map(|e| match e {
        Event::Closed(o) => Some(o),
        _ => None,
    })
}

/// Whether `events` hold a ping.
pub fn count_pings(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Ping(_)))
        .count()
}

/// Whether `events` hold a pong.
pub fn count_pongs(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Pong(_)))
        .count()
}

// ---------------------------------------------------------------------------------------------
// The pair
// ---------------------------------------------------------------------------------------------

/// A client and a server connection joined in memory, with a simulated clock.
#[derive(Debug)]
pub struct Pair {
    /// The client end (deterministic masks).
    pub client: Connection,
    /// The server end.
    pub server: Connection,
    /// The simulated clock.
    pub now: Instant,
    /// When the pair was created.
    pub start: Instant,
    /// Every event the client produced, in order.
    pub client_events: Vec<Event>,
    /// Every event the server produced, in order.
    pub server_events: Vec<Event>,
    /// Every byte the client wrote to the transport.
    pub client_wire: Vec<u8>,
    /// Every byte the server wrote to the transport.
    pub server_wire: Vec<u8>,
    /// Deliver bytes in reads of at most this many bytes (`None`: whole writes).
    pub chunk_size: Option<usize>,
    /// Write at most this many bytes per write, through `transmit_slices` + `advance_transmit`
    /// (`None`: copy everything with `poll_transmit`).
    pub write_limit: Option<usize>,
    /// The client closed its transport (the server got EOF).
    pub client_transport_closed: bool,
    /// The server closed its transport (the client got EOF).
    pub server_transport_closed: bool,
}

/// What an event hook gets: the role of the side, its connection, the event and the time.
pub type Hook<'a> = dyn FnMut(Role, &mut Connection, &Event, Instant) + 'a;

impl Pair {
    /// A pair with default configurations.
    pub fn new() -> Self {
        Self::with_configs(Config::default(), Config::default())
    }

    /// A pair with the same configuration on both ends.
    pub fn with_config(config: Config) -> Self {
        Self::with_configs(config.clone(), config)
    }

    /// A pair with a configuration per end.
    pub fn with_configs(client_config: Config, server_config: Config) -> Self {
        let now = Instant::now();
        Pair {
            client: client(client_config, now),
            server: server(server_config, now),
            now,
            start: now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_wire: Vec::new(),
            server_wire: Vec::new(),
            chunk_size: None,
            write_limit: None,
            client_transport_closed: false,
            server_transport_closed: false,
        }
    }

    /// Delivers reads of at most `n` bytes.
    pub fn chunked(mut self, n: usize) -> Self {
        self.chunk_size = Some(n);
        self
    }

    /// Writes at most `n` bytes per write (partial writes through `transmit_slices`).
    pub fn partial_writes(mut self, n: usize) -> Self {
        self.write_limit = Some(n);
        self
    }

    /// Moves the simulated clock forward (no timer is handled).
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Time elapsed since the pair was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Calls `handle_timeout` on each side whose deadline is at or before `now`; returns whether
    /// any did.
    pub fn run_timers(&mut self) -> bool {
        let now = self.now;
        let mut fired = false;
        for conn in [&mut self.client, &mut self.server] {
            if let Some(at) = conn.poll_timeout()
                && at <= now
            {
                conn.handle_timeout(now);
                fired = true;
            }
        }
        fired
    }

    /// The earliest deadline of either side.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.client.poll_timeout(), self.server.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances by `d`, runs the timers and drives.
    pub fn step(&mut self, d: Duration) {
        self.advance(d);
        self.run_timers();
        self.drive();
    }

    /// Lets `d` pass like an event loop would: jumps from deadline to deadline, handling timers and
    /// driving at each, then to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_for_with(d, &mut |_, _, _, _| {});
    }

    /// [`run_for`](Self::run_for) with an event hook (see [`drive_with`](Self::drive_with)).
    pub fn run_for_with(&mut self, d: Duration, hook: &mut Hook<'_>) {
        let end = self.now + d;
        let mut guard = 0u32;
        while let Some(at) = self.next_deadline()
            && at <= end
        {
            guard += 1;
            assert!(guard < 100_000, "timers keep firing at one instant");
            self.now = self.now.max(at);
            self.run_timers();
            self.drive_with(hook);
        }
        self.now = end;
        self.run_timers();
        self.drive_with(hook);
    }

    /// Moves bytes both ways until neither side has output, events or EOF to deliver.
    pub fn drive(&mut self) {
        self.drive_with(&mut |_, _, _, _| {});
    }

    /// [`drive`](Self::drive), calling `hook` on every event as it is polled, with that side's
    /// connection — so the application can answer (e.g. echo) before the next event is decoded.
    pub fn drive_with(&mut self, hook: &mut Hook<'_>) {
        let mut guard = 0u32;
        loop {
            guard += 1;
            assert!(guard < 10_000_000, "drive did not reach a quiet state");
            let mut progress = false;
            progress |= poll_all(
                Role::Client,
                &mut self.client,
                &mut self.client_events,
                self.now,
                hook,
            );
            progress |= poll_all(
                Role::Server,
                &mut self.server,
                &mut self.server_events,
                self.now,
                hook,
            );
            // Client → server.
            let out = write_once(&mut self.client, self.write_limit);
            if !out.is_empty() {
                progress = true;
                self.client_wire.extend_from_slice(&out);
                if !self.server_transport_closed {
                    deliver(
                        Role::Server,
                        &mut self.server,
                        &mut self.server_events,
                        &out,
                        self.chunk_size,
                        self.now,
                        hook,
                    );
                }
            }
            // Server → client.
            let out = write_once(&mut self.server, self.write_limit);
            if !out.is_empty() {
                progress = true;
                self.server_wire.extend_from_slice(&out);
                if !self.client_transport_closed {
                    deliver(
                        Role::Client,
                        &mut self.client,
                        &mut self.client_events,
                        &out,
                        self.chunk_size,
                        self.now,
                        hook,
                    );
                }
            }
            // The TCP close: a side that is done and flushed closes its socket; the peer reads EOF.
            if !self.server_transport_closed
                && self.server.should_close_transport()
                && self.server.queued_bytes() == 0
            {
                self.server_transport_closed = true;
                if !self.client_transport_closed {
                    self.client.receive_eof(self.now);
                }
                progress = true;
            }
            if !self.client_transport_closed
                && self.client.should_close_transport()
                && self.client.queued_bytes() == 0
            {
                self.client_transport_closed = true;
                if !self.server_transport_closed {
                    self.server.receive_eof(self.now);
                }
                progress = true;
            }
            if !progress {
                return;
            }
        }
    }

    /// Injects raw bytes into the server as if the client had sent them, polling its events.
    pub fn inject_to_server(&mut self, bytes: &[u8]) {
        deliver(
            Role::Server,
            &mut self.server,
            &mut self.server_events,
            bytes,
            self.chunk_size,
            self.now,
            &mut |_, _, _, _| {},
        );
    }

    /// Injects raw bytes into the client as if the server had sent them, polling its events.
    pub fn inject_to_client(&mut self, bytes: &[u8]) {
        deliver(
            Role::Client,
            &mut self.client,
            &mut self.client_events,
            bytes,
            self.chunk_size,
            self.now,
            &mut |_, _, _, _| {},
        );
    }

    /// The client's terminal outcome, if it ended.
    pub fn client_closed(&self) -> Option<&CloseOutcome> {
        closed(&self.client_events)
    }

    /// The server's terminal outcome, if it ended.
    pub fn server_closed(&self) -> Option<&CloseOutcome> {
        closed(&self.server_events)
    }

    /// Messages the client received.
    pub fn client_messages(&self) -> Vec<Message> {
        messages(&self.client_events)
    }

    /// Messages the server received.
    pub fn server_messages(&self) -> Vec<Message> {
        messages(&self.server_events)
    }

    /// Clears both event logs.
    pub fn clear_events(&mut self) {
        self.client_events.clear();
        self.server_events.clear();
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

fn poll_all(
    role: Role,
    conn: &mut Connection,
    events: &mut Vec<Event>,
    now: Instant,
    hook: &mut Hook<'_>,
) -> bool {
    let mut any = false;
    while let Some(e) = conn.poll_event() {
        hook(role, conn, &e, now);
        events.push(e);
        any = true;
    }
    any
}

fn deliver(
    role: Role,
    conn: &mut Connection,
    events: &mut Vec<Event>,
    bytes: &[u8],
    chunk: Option<usize>,
    now: Instant,
    hook: &mut Hook<'_>,
) {
    let size = match chunk {
        Some(n) if n > 0 => n,
        _ => bytes.len().max(1),
    };
    for piece in bytes.chunks(size) {
        conn.receive(now, piece);
        poll_all(role, conn, events, now, hook);
    }
}

/// One write from `conn`: everything (`poll_transmit`), or at most `limit` bytes gathered from
/// `transmit_slices` and acknowledged with `advance_transmit`.
fn write_once(conn: &mut Connection, limit: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    match limit {
        None => {
            conn.poll_transmit(&mut out);
        }
        Some(limit) => {
            let limit = limit.max(1);
            {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = conn.transmit_slices(&mut slices);
                for s in slices.iter().take(n) {
                    let take = (limit - out.len()).min(s.len());
                    out.extend_from_slice(&s[..take]);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            conn.advance_transmit(out.len());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Raw frames
// ---------------------------------------------------------------------------------------------

/// A frame header with any bits, opcode (4 bits, reserved ones included) and length, in the
/// minimal length encoding.
pub fn raw_header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let form = if len < 126 {
        LenForm::Short
    } else if len <= u64::from(u16::MAX) {
        LenForm::Medium
    } else {
        LenForm::Long
    };
    raw_header_with(fin, rsv, opcode, mask, len, form)
}

/// How the payload length is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenForm {
    /// 7 bits (the value must be < 126).
    Short,
    /// 126 + 16 bits.
    Medium,
    /// 127 + 64 bits.
    Long,
}

/// A frame header with an explicit length encoding (e.g. a 64-bit length with its MSB set).
pub fn raw_header_with(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    form: LenForm,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push((u8::from(fin) << 7) | ((rsv & 0b111) << 4) | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match form {
        LenForm::Short => out.push(mask_bit | (len as u8 & 0x7F)),
        LenForm::Medium => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        LenForm::Long => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A whole frame: header plus payload, masked with `mask` if given.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = raw_header(fin, rsv, opcode, mask, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// A final, masked frame as a client sends it (key [`TEST_KEY`]).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(true, 0, opcode, Some(TEST_KEY), payload)
}

/// A final, unmasked frame as a server sends it.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(true, 0, opcode, None, payload)
}

/// A frame as the peer of `receiver` sends it: masked towards a server, unmasked towards a client.
pub fn frame_to(receiver: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = match receiver {
        Role::Server => Some(TEST_KEY),
        Role::Client => None,
    };
    raw_frame(fin, 0, opcode, mask, payload)
}

/// A close frame payload: the 2-byte code and the reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

// ---------------------------------------------------------------------------------------------
// Reading raw output
// ---------------------------------------------------------------------------------------------

/// One frame read from the wire, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFrame {
    /// The decoded header (its `mask` is the key that was on the wire).
    pub header: FrameHeader,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl WireFrame {
    /// The status code of a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.header.opcode, self.payload.as_slice()) {
            (OpCode::Close, [hi, lo, ..]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }

    /// The reason of a close frame, lossily decoded.
    pub fn close_reason(&self) -> Option<String> {
        match (self.header.opcode, self.payload.get(2..)) {
            (OpCode::Close, Some(r)) => Some(String::from_utf8_lossy(r).into_owned()),
            _ => None,
        }
    }
}

/// Why raw output could not be read as frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A header broke a rule that the header alone decides.
    Protocol(ProtocolError),
    /// The bytes end inside a frame.
    Truncated {
        /// Where the unfinished frame starts.
        at: usize,
    },
}

/// Reads `bytes` as a sequence of complete frames, unmasking payloads.
pub fn decode_frames(bytes: &[u8]) -> Result<Vec<WireFrame>, WireError> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let (header, hlen) = match FrameHeader::decode(rest) {
            Ok(Some(h)) => h,
            Ok(None) => return Err(WireError::Truncated { at: pos }),
            Err(e) => return Err(WireError::Protocol(e)),
        };
        let len = usize::try_from(header.len).map_err(|_| WireError::Truncated { at: pos })?;
        let end = hlen
            .checked_add(len)
            .filter(|end| *end <= rest.len())
            .ok_or(WireError::Truncated { at: pos })?;
        let mut payload = rest[hlen..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key);
        }
        frames.push(WireFrame { header, payload });
        pos += end;
    }
    Ok(frames)
}

/// A data message reassembled from wire frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage {
    /// `OpCode::Text` or `OpCode::Binary`.
    pub opcode: OpCode,
    /// The concatenated payload.
    pub payload: Vec<u8>,
}

/// Reassembles the data messages among `frames` (control frames are skipped). Returns `None` on a
/// fragmentation error.
pub fn reassemble(frames: &[WireFrame]) -> Option<Vec<WireMessage>> {
    let mut out = Vec::new();
    let mut current: Option<WireMessage> = None;
    for f in frames {
        match f.header.opcode {
            OpCode::Text | OpCode::Binary => {
                if current.is_some() {
                    return None;
                }
                let m = WireMessage {
                    opcode: f.header.opcode,
                    payload: f.payload.clone(),
                };
                if f.header.fin {
                    out.push(m);
                } else {
                    current = Some(m);
                }
            }
            OpCode::Continuation => {
                let mut m = current.take()?;
                m.payload.extend_from_slice(&f.payload);
                if f.header.fin {
                    out.push(m);
                } else {
                    current = Some(m);
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Hex encoding, lowercase.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
pub mod fuzz;

/// A permessage-deflate message payload (RSV1 frame payload, tail removed) that inflates to
/// `mib` MiB of zeros while its own size grows by about 1 KiB per MiB: one compressed MiB, then a
/// compressed MiB that only refers back to the window, repeated. Made with the crate's own
/// compressor (context takeover), so it is what a real peer could send.
///
/// # Panics
///
/// If the compressor fails (it does not).
pub fn deflate_bomb(mib: usize) -> Vec<u8> {
    use tidings_core::ext::ExtensionConfig;
    use tidings_core::ext::deflate::DeflateConfig;
    use tidings_core::handshake::ExtensionOffer;
    let mut ext = DeflateConfig::new()
        .threshold(0)
        .level(9)
        .confirm(&ExtensionOffer::new("permessage-deflate"))
        .expect("plain response accepted");
    let zeros = vec![0u8; 1 << 20];
    let mut first = bytes::BytesMut::new();
    let mut next = bytes::BytesMut::new();
    for out in [&mut first, &mut next] {
        ext.encode(tidings_core::MessageKind::Binary, &zeros, out)
            .expect("compresses")
            .expect("compressed");
    }
    let mut bomb = first.to_vec();
    for _ in 1..mib {
        // Each part ended in a sync flush whose tail the sender removed: put it back in between.
        bomb.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        bomb.extend_from_slice(&next);
    }
    bomb
}
