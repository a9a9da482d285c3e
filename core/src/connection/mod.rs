//! The connection state machine (RFC 6455 §5–§7), sans-IO.

mod config;
mod masks;
mod output;
mod timer;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

pub use config::{Config, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE};
pub use masks::MaskSource;
#[cfg(feature = "getrandom")]
pub use masks::OsMasks;
#[cfg(feature = "getrandom")]
pub(crate) use masks::fill_random;
pub use timer::Timer;

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::error::{ConnectionError, Error, ProtocolError};
use crate::ext::{Extension, ExtensionError};
use crate::frame::EncodedFrame;
use crate::frame::header::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::frame::mask::apply_mask_offset;
use crate::frame::utf8::{self, Utf8Validator};
use crate::message::{Message, MessageKind, Utf8Bytes};
use output::Output;
use timer::Timers;

/// Which end of the connection this is (RFC 6455 §5.1: clients mask, servers do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the upgrade request. Masks every frame it sends.
    Client,
    /// The end that accepted the upgrade. Sends unmasked frames; closes the transport first.
    Server,
}

/// Who started the closing of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This endpoint (a `close` command, a timeout, or a protocol error it detected).
    Local,
    /// The peer sent the first close frame.
    Remote,
}

/// How a connection ended: the terminal [`Event::Closed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseOutcome {
    /// The connection close code of RFC 6455 §7.1.5: the code of the close frame received from
    /// the peer, 1005 when that frame carried none, 1006 when none arrived (a failed connection,
    /// a timeout, EOF).
    pub code: CloseCode,
    /// The connection close reason of RFC 6455 §7.1.6: the reason in the peer's close frame.
    pub reason: String,
    /// The close frame this endpoint sent, if it carried a code: the code given to
    /// [`Connection::close`], the echo of the peer's code, or the failure code (1002, 1007, 1009)
    /// when this endpoint failed the connection. `None` if no close frame was sent, or only an
    /// empty one (the reply to an empty close).
    pub sent: Option<CloseFrame>,
    /// Who started the close.
    pub initiator: Initiator,
    /// Whether both close frames were exchanged (RFC 6455 §7.1.4 "closed cleanly").
    pub clean: bool,
    /// Why the connection failed, if it did.
    pub error: Option<ConnectionError>,
}

impl CloseOutcome {
    /// A clean close with a normal code (1000 or 1001) and no error.
    pub fn is_normal(&self) -> bool {
        self.clean && self.error.is_none() && self.code.is_normal()
    }

    /// Whether the connection ended because of an error (protocol violation, timeout, EOF).
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// A piece of a data message, delivered in streaming mode ([`Config::stream_incoming`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The message kind, repeated on every fragment.
    pub kind: MessageKind,
    /// Payload bytes as they arrived (unmasked, decoded by the extension, UTF-8 checked so far).
    /// For text, a fragment may end inside a multi-byte character.
    pub data: Bytes,
    /// Whether this is the last piece of the message.
    pub fin: bool,
}

/// What the connection reports to the application, from [`Connection::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A piece of a data message (only in streaming mode).
    Fragment(Fragment),
    /// A ping arrived; with automatic pongs (the default) the pong is already queued.
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The peer's close frame arrived (`None` when it carried no status code). The reply, if one
    /// is due, is already queued; [`Event::Closed`] follows.
    CloseReceived(Option<CloseFrame>),
    /// The connection is over. Always the last event.
    Closed(CloseOutcome),
}

/// What a [`Connection`]'s next [`poll_event`](Connection::poll_event) would act upon; see
/// [`Connection::lookahead`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookahead {
    /// A complete, well-formed ping or pong frame: polling answers the ping (or times the pong)
    /// and returns its event, and acts on nothing after it.
    Control,
    /// Too few bytes to tell, and what has arrived may begin a ping or a pong.
    Incomplete,
    /// Anything else: a data frame, a close frame, a malformed frame, events already decided,
    /// or the end of the input.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    CloseSent,
    Closed,
}

/// The frame being decoded: its header and how much of its payload has been handled.
#[derive(Debug)]
struct InFrame {
    header: FrameHeader,
    /// Payload bytes already consumed from the input (streaming mode) — the mask offset.
    consumed: u64,
    /// Bytes at the front of `input` already unmasked and UTF-8 checked (buffered mode).
    checked: usize,
}

/// The data message being received.
#[derive(Debug)]
struct InMessage {
    kind: MessageKind,
    /// RSV bits of the first frame that an extension claims (the message is transformed).
    ext_rsv: u8,
    /// Bytes of the message so far (wire bytes, or decoded bytes with an extension).
    size: u64,
    buf: BytesMut,
    utf8: Utf8Validator,
}

#[derive(Debug)]
struct OutMessage {
    kind: MessageKind,
    utf8: Utf8Validator,
}

/// A sans-IO WebSocket connection: bytes in, events out; commands in, bytes out.
///
/// ```text
///  transport ──receive()──► input buffer ──poll_event()──► Event (Message, Ping, Closed…)
///  transport ◄─transmit_slices()/advance_transmit()── output queue ◄── send_*/close/auto pong
///  clock ──handle_timeout(now)──► timers (keepalive, pong, close, idle); poll_timeout() = next deadline
/// ```
///
/// Input is decoded lazily, one frame at a time, as events are polled: an application that answers
/// each message before polling the next (an echo) gets its answers out before whatever the peer
/// sent next is acted upon — including a protocol error, whose close frame then follows the answers.
///
/// Methods come in four groups, in this order: getters; inputs ([`receive`](Self::receive),
/// [`receive_eof`](Self::receive_eof), [`handle_timeout`](Self::handle_timeout)); commands
/// (`send_*`, [`close`](Self::close), streaming [`send_fragment`](Self::send_fragment)); outputs
/// ([`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout),
/// [`transmit_slices`](Self::transmit_slices) + [`advance_transmit`](Self::advance_transmit),
/// [`poll_transmit`](Self::poll_transmit)).
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    /// Nothing more is expected from the transport: it may be closed once output is flushed.
    transport_done: bool,
    eof: bool,
    input: BytesMut,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    pending: VecDeque<Event>,
    output: Output,
    out_message: Option<OutMessage>,
    timers: Timers,
    last_rx: Instant,
    masks: Option<Box<dyn MaskSource>>,
    extension: Option<Box<dyn Extension>>,
    /// The close frame we sent, if it carried a code.
    close_sent: Option<CloseFrame>,
    ping_counter: u64,
    scratch: BytesMut,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered_input", &self.input.len())
            .field("queued_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side connection, after the handshake, starting at `now`.
    pub fn server(config: Config, now: Instant) -> Self {
        Self::new(Role::Server, config, None, now)
    }

    /// A client-side connection using OS randomness for masking keys.
    #[cfg(feature = "getrandom")]
    pub fn client(config: Config, now: Instant) -> Self {
        Self::client_with_masks(config, OsMasks::new(), now)
    }

    /// A client-side connection with an injected source of masking keys.
    pub fn client_with_masks(
        config: Config,
        masks: impl MaskSource + 'static,
        now: Instant,
    ) -> Self {
        Self::new(Role::Client, config, Some(Box::new(masks)), now)
    }

    fn new(role: Role, config: Config, masks: Option<Box<dyn MaskSource>>, now: Instant) -> Self {
        let mut conn = Connection {
            role,
            config,
            state: State::Open,
            transport_done: false,
            eof: false,
            input: BytesMut::new(),
            frame: None,
            message: None,
            pending: VecDeque::new(),
            output: Output::default(),
            out_message: None,
            timers: Timers::default(),
            last_rx: now,
            masks,
            extension: None,
            close_sent: None,
            ping_counter: 0,
            scratch: BytesMut::new(),
        };
        conn.arm_receive_timers(now);
        conn
    }

    /// Installs a negotiated extension (RFC 6455 §9). Call before any data flows.
    pub fn set_extension(&mut self, extension: Box<dyn Extension>) {
        self.extension = Some(extension);
    }

    /// Replaces the configuration of a live connection (a hub applying its own limits and timers
    /// to a connection accepted elsewhere). The size limits apply to the next frame and message
    /// checked; the keepalive and idle timers restart from `now` with the new intervals; a pong
    /// timeout already running keeps its deadline, unless the new configuration has none.
    pub fn set_config(&mut self, config: Config, now: Instant) {
        self.config = config;
        if self.state != State::Open {
            return;
        }
        self.timers.clear(Timer::Ping);
        self.timers.clear(Timer::Idle);
        if self.config.pong_timeout.is_none() {
            self.timers.clear(Timer::Pong);
        }
        self.arm_receive_timers(now);
    }

    // ----------------------------------------------------------------------------------------
    // Getters
    // ----------------------------------------------------------------------------------------

    /// Whether [`send_encoded`](Self::send_encoded) sends the compressed form of a frame
    /// compressed once with a `window_bits` window ([`EncodedFrame::with_deflate`]): a server
    /// whose permessage-deflate compresses without context takeover, with a window at least as
    /// large (RFC 7692 §7.1.1, §7.1.2).
    pub fn accepts_deflated(&self, window_bits: u8) -> bool {
        self.role == Role::Server
            && self
                .extension
                .as_ref()
                .is_some_and(|e| e.accepts_deflated(window_bits))
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether data can still be sent (no close frame sent or received).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is over ([`Event::Closed`] was produced; it may still be waiting in
    /// [`poll_event`](Self::poll_event)).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the transport should be closed once the queued output is written: the connection is
    /// over and nothing more will be read. The server closes the TCP connection first (RFC 6455
    /// §7.1.1); a client waits for that (or for the close timeout) before it closes.
    pub fn should_close_transport(&self) -> bool {
        self.transport_done
    }

    /// Bytes queued for the transport and not yet written: the adapter's backpressure measure.
    pub fn queued_bytes(&self) -> usize {
        self.output.len()
    }

    /// Bytes received and not yet decoded into events.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Input bytes still missing from the frame being received, known from its decoded header
    /// (buffered mode; `0` when no frame is partly received, and in streaming mode). An adapter
    /// may reserve this much room before its next read, so that a large frame lands in one
    /// allocation instead of growing the buffer by copies. Bounded by the frame size limit,
    /// which the header was checked against.
    pub fn input_needed(&self) -> usize {
        match &self.frame {
            Some(frame) if !self.config.stream_incoming && !frame.header.opcode.is_control() => {
                usize::try_from(frame.header.len)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(self.input.len())
            }
            _ => 0,
        }
    }

    /// What the next [`poll_event`](Self::poll_event) would act upon, found without acting on
    /// it. An adapter that reads ahead of its application uses it to answer pings (and time
    /// pongs) while the application still handles a message, without acting on anything that
    /// would change what the application's answer can be: a data frame, the peer's close frame
    /// (whose reply ends the sending side, RFC 6455 §5.5.1) or a malformed frame (whose failure
    /// does, §7.1.7) waits for the application.
    pub fn lookahead(&self) -> Lookahead {
        if !self.pending.is_empty() || self.state == State::Closed {
            return Lookahead::Other;
        }
        let (opcode, masked, rsv, start, len) = match &self.frame {
            Some(frame) => {
                let h = &frame.header;
                (h.opcode, h.mask.is_some(), h.rsv, 0, h.len)
            }
            None => match FrameHeader::decode(&self.input) {
                Ok(Some((h, header_len))) => (h.opcode, h.mask.is_some(), h.rsv, header_len, h.len),
                Ok(None) if self.eof => return Lookahead::Other,
                Ok(None) => return Lookahead::Incomplete,
                Err(_) => return Lookahead::Other,
            },
        };
        let expects_mask = self.role == Role::Server;
        if !matches!(opcode, OpCode::Ping | OpCode::Pong) || masked != expects_mask || rsv != 0 {
            return Lookahead::Other;
        }
        // A control frame's length is at most 125 (checked by `FrameHeader::decode`).
        if (self.input.len() as u64) >= start as u64 + len {
            Lookahead::Control
        } else if self.eof {
            Lookahead::Other
        } else {
            Lookahead::Incomplete
        }
    }

    /// Whether a streamed outgoing message ([`send_fragment`](Self::send_fragment)) is unfinished.
    pub fn is_sending_fragments(&self) -> bool {
        self.out_message.is_some()
    }

    // ----------------------------------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------------------------------

    /// Hands bytes read from the transport to the connection, at `now`.
    ///
    /// Bytes are decoded as [`poll_event`](Self::poll_event) is called. Drain the events before
    /// receiving more: the buffer then never holds more than one frame plus one read.
    /// Ignored once the connection is closed.
    pub fn receive(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Closed || data.is_empty() {
            return;
        }
        self.input.extend_from_slice(data);
        self.last_rx = now;
        self.arm_receive_timers(now);
    }

    /// The input buffer, for an adapter that reads straight into it (no copy); call
    /// [`received`](Self::received) afterwards with the time of the read.
    pub fn input_buffer(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Records that bytes were appended through [`input_buffer`](Self::input_buffer) at `now`.
    pub fn received(&mut self, now: Instant) {
        if self.state == State::Closed {
            self.input.clear();
            return;
        }
        self.last_rx = now;
        self.arm_receive_timers(now);
    }

    /// The transport reached end of stream. Buffered input is still decoded first; if the close
    /// handshake has not completed by then, the connection ends with 1006 and
    /// [`ConnectionError::UnexpectedEof`].
    pub fn receive_eof(&mut self, _now: Instant) {
        self.eof = true;
        if self.state == State::Closed {
            self.transport_done = true;
            self.timers.clear_all();
        }
    }

    /// Frees the memory of the buffers that hold nothing: the input buffer when every byte
    /// received was decoded, the output queue when everything was written (a small one, up to
    /// 2 KiB, is kept for the next message), and scratch space.
    /// An adapter calls this when the connection goes idle (its next read would wait and its
    /// output is written), so that an idle connection holds no buffer; the next read or command
    /// allocates again. A message being received keeps what it has so far.
    pub fn release_idle_buffers(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        self.output.release();
        if self.scratch.capacity() > 0 {
            self.scratch = BytesMut::new();
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
    }

    /// Handles every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if !self.timers.take_expired(timer, now) {
                continue;
            }
            match timer {
                Timer::Close => match self.state {
                    State::CloseSent => {
                        self.terminate(Initiator::Local, None, Some(ConnectionError::CloseTimeout))
                    }
                    State::Closed => self.transport_done = true,
                    State::Open => {}
                },
                Timer::Pong => {
                    if self.state != State::Closed {
                        self.terminate(Initiator::Local, None, Some(ConnectionError::PongTimeout));
                    }
                }
                Timer::Idle => {
                    if self.state == State::Open {
                        let _ = self.close(now, CloseCode::NORMAL, "idle timeout");
                    }
                }
                Timer::Ping => {
                    if self.state == State::Open {
                        self.ping_counter = self.ping_counter.wrapping_add(1);
                        let payload = self.ping_counter.to_be_bytes();
                        self.write_frame(true, 0, OpCode::Ping, &payload);
                        self.arm_pong_timer(now);
                        if let Some(every) = self.config.ping_interval {
                            self.timers.set(Timer::Ping, now + every);
                        }
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Commands
    // ----------------------------------------------------------------------------------------

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_payload(MessageKind::Text, Payload::Borrowed(text.as_bytes()))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_payload(MessageKind::Binary, Payload::Borrowed(data))
    }

    /// Queues a message. On the server side a large payload is queued by reference, not copied.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        let kind = message.kind();
        self.send_payload(kind, Payload::Shared(message.into_bytes()))
    }

    fn send_payload(&mut self, kind: MessageKind, payload: Payload<'_>) -> Result<(), Error> {
        self.check_can_send_data()?;
        if self.out_message.is_some() {
            return Err(Error::MessageInProgress);
        }
        let opcode = kind_opcode(kind);
        if let Some(ext) = self.extension.as_mut() {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            match ext.encode(kind, payload.as_slice(), &mut scratch) {
                Ok(Some(rsv)) => {
                    self.write_frame(true, rsv, opcode, &scratch);
                    self.scratch = scratch;
                    return Ok(());
                }
                Ok(None) => self.scratch = scratch,
                Err(e) => {
                    self.scratch = scratch;
                    return Err(Error::Extension(e.to_string()));
                }
            }
        }
        match payload {
            Payload::Shared(bytes) if self.role == Role::Server => {
                self.write_header(true, 0, opcode, bytes.len() as u64, None);
                self.output.push_shared(bytes);
            }
            other => self.write_frame(true, 0, opcode, other.as_slice()),
        }
        Ok(())
    }

    /// Queues a pre-encoded frame: encode once with [`EncodedFrame::new`] (or
    /// [`EncodedFrame::with_deflate`]), send to many connections. The server role queues the
    /// shared bytes without copying (the compressed form where the negotiated extension accepts
    /// it, see [`crate::ext::Extension::accepts_deflated`]); the client role must mask, so it
    /// copies the plain payload.
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.check_can_send_data()?;
        if self.out_message.is_some() {
            return Err(Error::MessageInProgress);
        }
        match self.role {
            Role::Server => {
                let deflated = frame.deflated().filter(|(_, bits)| {
                    self.extension
                        .as_ref()
                        .is_some_and(|e| e.accepts_deflated(*bits))
                });
                let wire = deflated.map_or(frame.wire(), |(wire, _)| wire);
                self.output.push_shared(wire.clone());
            }
            Role::Client => {
                let opcode = kind_opcode(frame.kind());
                self.write_frame(true, 0, opcode, frame.payload());
            }
        }
        Ok(())
    }

    /// Queues one fragment of a streamed message (RFC 6455 §5.4). The first call sets the kind;
    /// later ones must repeat it; `fin` ends the message. Control frames and `close` may be sent
    /// between fragments, whole messages may not. Text fragments are checked to form valid UTF-8
    /// together (a fragment may end inside a character).
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        self.check_can_send_data()?;
        let (opcode, mut utf8) = match &self.out_message {
            Some(m) if m.kind != kind => return Err(Error::MessageInProgress),
            Some(m) => (OpCode::Continuation, m.utf8.clone()),
            None => (kind_opcode(kind), Utf8Validator::default()),
        };
        if kind == MessageKind::Text {
            utf8.feed(data).map_err(|_| Error::InvalidUtf8)?;
            if fin {
                utf8.finish().map_err(|_| Error::InvalidUtf8)?;
            }
        }
        self.write_frame(fin, 0, opcode, data);
        self.out_message = if fin {
            None
        } else {
            Some(OutMessage { kind, utf8 })
        };
        Ok(())
    }

    /// A writer for one streamed message; see [`send_fragment`](Self::send_fragment).
    pub fn message_writer(&mut self, kind: MessageKind) -> MessageWriter<'_> {
        MessageWriter { conn: self, kind }
    }

    /// Queues a ping (RFC 6455 §5.5.2) and, with a pong timeout configured, starts waiting for the
    /// pong.
    pub fn send_ping(&mut self, now: Instant, payload: &[u8]) -> Result<(), Error> {
        self.check_control(payload)?;
        self.write_frame(true, 0, OpCode::Ping, payload);
        self.arm_pong_timer(now);
        Ok(())
    }

    /// Queues a pong (RFC 6455 §5.5.3), e.g. when automatic pongs are off; an unsolicited pong is
    /// a valid one-way heartbeat.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_control(payload)?;
        self.write_frame(true, 0, OpCode::Pong, payload);
        Ok(())
    }

    /// Starts the close handshake (RFC 6455 §7.1.2): queues a close frame with `code` and `reason`
    /// after everything already queued, and waits up to the close timeout for the peer's.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), Error> {
        match self.state {
            State::Open => {}
            State::CloseSent => return Err(Error::Closing),
            State::Closed => return Err(Error::Closed),
        }
        if !code.is_sendable() {
            return Err(Error::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::CloseReasonTooLong(reason.len()));
        }
        self.write_close(Some(&CloseFrame::new(code, reason)));
        self.state = State::CloseSent;
        self.timers.clear_all();
        if let Some(t) = self.config.close_timeout {
            self.timers.set(Timer::Close, now + t);
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------------------------------

    /// The next event, decoding buffered input as needed. `None` means more input (or a timeout)
    /// is needed. Changes after [`receive`](Self::receive), [`receive_eof`](Self::receive_eof) and
    /// [`handle_timeout`](Self::handle_timeout). After [`Event::Closed`] it returns `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.pop_front() {
            return Some(event);
        }
        if self.state == State::Closed {
            return None;
        }
        match self.decode() {
            Ok(Some(event)) => Some(event),
            Ok(None) if self.eof => {
                // If our close frame is out, the close was ours; the peer just never answered it.
                let initiator = match self.state {
                    State::CloseSent => Initiator::Local,
                    _ => Initiator::Remote,
                };
                self.terminate(initiator, None, Some(ConnectionError::UnexpectedEof));
                self.pending.pop_front()
            }
            Ok(None) => None,
            Err(e) => {
                self.fail(e);
                self.pending.pop_front()
            }
        }
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must be called.
    /// Changes after every input and command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fills `dst` with the queued output as slices, for a vectored write; returns how many were
    /// filled. Call [`advance_transmit`](Self::advance_transmit) with the number of bytes written.
    #[must_use]
    pub fn transmit_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.output.slices(dst)
    }

    /// The queued output as a sequence of byte slices.
    pub fn transmit_chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.output.chunks()
    }

    /// Drops the first `n` bytes of queued output after they were written to the transport.
    pub fn advance_transmit(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Appends all queued output to `dst` and clears the queue; returns the number of bytes.
    pub fn poll_transmit(&mut self, dst: &mut Vec<u8>) -> usize {
        self.output.copy_out(dst)
    }

    /// Moves all queued output into `dst` as owned chunks, in order, and clears the queue;
    /// returns the number of bytes. Nothing is copied: a large payload sent as [`Bytes`] is
    /// handed over as the chunk it was given, and the frames copied into the connection's
    /// staging buffer as one chunk.
    ///
    /// For completion-based I/O (io_uring, IOCP), where the kernel owns a write's buffers until
    /// the write completes: the chunks go to one vectored write, and `dst` can be cleared and
    /// reused after it. Unlike [`transmit_slices`](Self::transmit_slices) and
    /// [`advance_transmit`](Self::advance_transmit), the bytes leave the queue at once: a partial
    /// write is the caller's to finish.
    pub fn transmit_owned(&mut self, dst: &mut Vec<Bytes>) -> usize {
        self.output.take_chunks(dst)
    }

    // ----------------------------------------------------------------------------------------
    // Internals: decoding
    // ----------------------------------------------------------------------------------------

    fn decode(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                let Some((header, len)) = FrameHeader::decode(&self.input)? else {
                    return Ok(None);
                };
                self.check_header(&header)?;
                self.input.advance(len);
                self.frame = Some(InFrame {
                    header,
                    consumed: 0,
                    checked: 0,
                });
            }
            let Some(frame) = self.frame.as_ref() else {
                return Ok(None);
            };
            let header = frame.header;
            if header.opcode.is_control() {
                let len = header.len as usize; // ≤ 125, checked by FrameHeader::decode
                if self.input.len() < len {
                    return Ok(None);
                }
                let mut payload = self.input.split_to(len);
                if let Some(key) = header.mask {
                    apply_mask_offset(&mut payload, key, 0);
                }
                self.frame = None;
                if let Some(event) = self.handle_control(header.opcode, payload.freeze())? {
                    return Ok(Some(event));
                }
                continue;
            }
            let event = if self.config.stream_incoming {
                self.decode_streaming()?
            } else {
                self.decode_buffered()?
            };
            match event {
                Step::Event(e) => return Ok(Some(e)),
                Step::Continue => continue,
                Step::NeedMore => return Ok(None),
            }
        }
    }

    /// Header rules that depend on the connection (RFC 6455 §5.1, §5.2, §5.4) and the size limits.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let ext_bits = self.extension.as_ref().map_or(0, |e| e.rsv_bits());
        let allowed = match h.opcode {
            OpCode::Text | OpCode::Binary => ext_bits,
            _ => 0, // continuation and control frames carry no per-message extension bits
        };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv & !allowed));
        }
        if h.opcode.is_control() {
            return Ok(());
        }
        match (h.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            _ => {}
        }
        if !self.config.stream_incoming {
            // Buffered frames must fit in memory: the configured limit, and in any case the
            // address space (a 64-bit length on a 32-bit target).
            let limit = self.config.max_frame_size.unwrap_or(usize::MAX);
            if h.len > limit as u64 {
                return Err(ProtocolError::FrameTooLarge { size: h.len, limit });
            }
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.size);
        // A continuation belongs to the message in progress; a new message is transformed when
        // its first frame carries the extension's bits.
        let transformed = match &self.message {
            Some(m) => m.ext_rsv != 0,
            None => h.rsv & ext_bits != 0,
        };
        if let Some(limit) = self.config.max_message_size {
            // For transformed messages the wire size is bounded too; the decoded size is checked
            // as the extension produces it.
            let wire_total = if transformed {
                h.len
            } else {
                so_far.saturating_add(h.len)
            };
            if wire_total > limit as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    size: wire_total,
                    limit,
                });
            }
        }
        if let Some(kind) = match h.opcode {
            OpCode::Text => Some(MessageKind::Text),
            OpCode::Binary => Some(MessageKind::Binary),
            _ => None,
        } {
            self.message = Some(InMessage {
                kind,
                ext_rsv: h.rsv & ext_bits,
                size: 0,
                buf: BytesMut::new(),
                utf8: Utf8Validator::default(),
            });
        }
        Ok(())
    }

    fn decode_buffered(&mut self) -> Result<Step, ProtocolError> {
        let (Some(frame), Some(msg)) = (self.frame.as_mut(), self.message.as_mut()) else {
            return Ok(Step::NeedMore);
        };
        let header = frame.header;
        let len = header.len as usize; // ≤ max_frame_size or message limit, checked in check_header
        let available = self.input.len().min(len);
        if available > frame.checked {
            let chunk = &mut self.input[frame.checked..available];
            if let Some(key) = header.mask {
                apply_mask_offset(chunk, key, frame.checked);
            }
            if msg.kind == MessageKind::Text && msg.ext_rsv == 0 {
                msg.utf8
                    .feed(chunk)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            frame.checked = available;
        }
        if available < len {
            return Ok(Step::NeedMore);
        }
        let payload = self.input.split_to(len);
        self.frame = None;
        if msg.ext_rsv != 0 {
            let budget = message_budget(self.config.max_message_size, msg.size);
            let ext = self
                .extension
                .as_mut()
                .ok_or_else(|| ProtocolError::Extension("no extension".into()))?;
            let before = msg.buf.len();
            ext.decode(msg.ext_rsv, &payload, header.fin, &mut msg.buf, budget)
                .map_err(|e| ext_error(e, msg.size, self.config.max_message_size))?;
            let added = (msg.buf.len() - before) as u64;
            msg.size += added;
            if msg.kind == MessageKind::Text {
                msg.utf8
                    .feed(&msg.buf[before..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else {
            msg.size += len as u64;
            if header.fin && msg.buf.is_empty() {
                // Single-frame message: hand out the input bytes without copying.
                let kind = msg.kind;
                let mut utf8 = std::mem::take(&mut msg.utf8);
                self.message = None;
                return self.finish_message(kind, &mut utf8, payload.freeze());
            }
            msg.buf.extend_from_slice(&payload);
        }
        if !header.fin {
            return Ok(Step::Continue);
        }
        let Some(mut msg) = self.message.take() else {
            return Ok(Step::NeedMore);
        };
        let data = msg.buf.split().freeze();
        self.finish_message(msg.kind, &mut msg.utf8, data)
    }

    fn finish_message(
        &mut self,
        kind: MessageKind,
        utf8: &mut Utf8Validator,
        data: Bytes,
    ) -> Result<Step, ProtocolError> {
        self.note_message_received();
        let message = match kind {
            MessageKind::Text => {
                utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Message::Text(Utf8Bytes::from_validated(data))
            }
            MessageKind::Binary => Message::Binary(data),
        };
        Ok(Step::Event(Event::Message(message)))
    }

    fn decode_streaming(&mut self) -> Result<Step, ProtocolError> {
        let (Some(frame), Some(msg)) = (self.frame.as_mut(), self.message.as_mut()) else {
            return Ok(Step::NeedMore);
        };
        let header = frame.header;
        let remaining = header.len - frame.consumed;
        let take = (self.input.len() as u64).min(remaining) as usize;
        if take == 0 && remaining > 0 {
            return Ok(Step::NeedMore);
        }
        let mut chunk = self.input.split_to(take);
        if let Some(key) = header.mask {
            apply_mask_offset(&mut chunk, key, frame.consumed as usize);
        }
        frame.consumed += take as u64;
        let frame_done = frame.consumed == header.len;
        let fin = frame_done && header.fin;
        if frame_done {
            self.frame = None;
        }
        let data = if msg.ext_rsv != 0 {
            let budget = message_budget(self.config.max_message_size, msg.size);
            let ext = self
                .extension
                .as_mut()
                .ok_or_else(|| ProtocolError::Extension("no extension".into()))?;
            let mut out = BytesMut::new();
            ext.decode(msg.ext_rsv, &chunk, fin, &mut out, budget)
                .map_err(|e| ext_error(e, msg.size, self.config.max_message_size))?;
            msg.size += out.len() as u64;
            out.freeze()
        } else {
            msg.size += take as u64;
            chunk.freeze()
        };
        let kind = msg.kind;
        if kind == MessageKind::Text {
            msg.utf8
                .feed(&data)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if fin {
                msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        if fin {
            self.message = None;
            self.note_message_received();
        } else if data.is_empty() {
            // Nothing to report for an empty non-final piece.
            return Ok(Step::Continue);
        }
        Ok(Step::Event(Event::Fragment(Fragment { kind, data, fin })))
    }

    fn handle_control(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                // RFC 6455 §5.5.2: answer unless the peer's close already arrived (then the state
                // is Closed and no frame is decoded at all); having sent our close is no excuse.
                if self.config.auto_pong {
                    self.write_frame(true, 0, OpCode::Pong, &payload);
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => {
                self.timers.clear(Timer::Pong);
                Ok(Some(Event::Pong(payload)))
            }
            OpCode::Close => {
                let frame = parse_close_payload(&payload)?;
                let initiator = match self.state {
                    State::Open => {
                        // RFC 6455 §5.5.1: reply with a close frame, echoing the status code.
                        let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                        self.write_close(reply.as_ref());
                        Initiator::Remote
                    }
                    _ => Initiator::Local,
                };
                self.terminate(initiator, Some(frame.clone()), None);
                // RFC 6455 §7.1.1: the server closes the TCP connection first; the client waits
                // for that, bounded by the close timeout.
                match self.role {
                    Role::Server => self.transport_done = true,
                    Role::Client if self.eof => self.transport_done = true,
                    Role::Client => match self.config.close_timeout {
                        Some(t) => self.timers.set(Timer::Close, self.last_rx + t),
                        None => self.transport_done = true,
                    },
                }
                if let Some(Event::Closed(outcome)) = self.pending.back_mut() {
                    outcome.clean = true;
                }
                Ok(Some(Event::CloseReceived(frame)))
            }
            _ => Ok(None),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Internals: state and timers
    // ----------------------------------------------------------------------------------------

    /// Fails the connection (RFC 6455 §7.1.7): queue a close frame with the error's code unless
    /// one was sent already, and end it.
    fn fail(&mut self, error: ProtocolError) {
        if self.state == State::Open {
            let reason = truncate_reason(&error.to_string());
            self.write_close(Some(&CloseFrame::new(error.close_code(), reason)));
        }
        self.terminate(
            Initiator::Local,
            None,
            Some(ConnectionError::Protocol(error)),
        );
    }

    /// Ends the connection: state, timers, buffers and the terminal event. `received` is the
    /// peer's close frame payload if one arrived (`Some(None)` when it carried no code).
    fn terminate(
        &mut self,
        initiator: Initiator,
        received: Option<Option<CloseFrame>>,
        error: Option<ConnectionError>,
    ) {
        // RFC 6455 §7.1.5, §7.1.6: the connection close code and reason are those of the close
        // frame received; 1005 if it had no code, 1006 if none arrived.
        let (code, reason) = match received {
            Some(Some(frame)) => (frame.code, frame.reason),
            Some(None) => (CloseCode::NO_STATUS, String::new()),
            None => (CloseCode::ABNORMAL, String::new()),
        };
        if error.is_some() {
            self.transport_done = true;
        }
        self.state = State::Closed;
        self.timers.clear_all();
        self.input = BytesMut::new();
        self.frame = None;
        self.message = None;
        self.pending.push_back(Event::Closed(CloseOutcome {
            code,
            reason,
            sent: self.close_sent.clone(),
            initiator,
            clean: false,
            error,
        }));
    }

    fn arm_receive_timers(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        if let Some(every) = self.config.ping_interval {
            self.timers.set(Timer::Ping, now + every);
        }
        if self.timers.get(Timer::Idle).is_none()
            && let Some(t) = self.config.idle_timeout
        {
            self.timers.set(Timer::Idle, now + t);
        }
    }

    fn note_message_received(&mut self) {
        if self.state == State::Open
            && let Some(t) = self.config.idle_timeout
        {
            self.timers.set(Timer::Idle, self.last_rx + t);
        }
    }

    fn arm_pong_timer(&mut self, now: Instant) {
        if let Some(t) = self.config.pong_timeout
            && self.timers.get(Timer::Pong).is_none()
        {
            self.timers.set(Timer::Pong, now + t);
        }
    }

    fn check_can_send_data(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            State::CloseSent => Err(Error::Closing),
            State::Closed => Err(Error::Closed),
        }
    }

    /// Control frames may still be sent after our close frame (RFC 6455 §5.5.1 forbids only data
    /// frames), never after the connection is closed.
    fn check_control(&self, payload: &[u8]) -> Result<(), Error> {
        if self.state == State::Closed {
            return Err(Error::Closed);
        }
        if payload.len() > 125 {
            return Err(Error::ControlPayloadTooLong(payload.len()));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Internals: encoding
    // ----------------------------------------------------------------------------------------

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = [0u8; 125];
        let len = match frame {
            Some(f) => {
                payload[..2].copy_from_slice(&f.code.as_u16().to_be_bytes());
                let reason = truncate_reason(&f.reason);
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
            None => 0,
        };
        self.close_sent = frame.map(|f| CloseFrame::new(f.code, truncate_reason(&f.reason)));
        self.write_frame(true, 0, OpCode::Close, &payload[..len]);
    }

    fn write_header(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        len: u64,
        mask: Option<[u8; 4]>,
    ) {
        let (bytes, n) = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            len,
        }
        .encode();
        self.output.push_copy(&bytes[..n]);
    }

    fn write_frame(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) {
        self.output.reserve(MAX_HEADER_LEN + payload.len());
        match self.masks.as_mut() {
            Some(masks) => {
                let key = masks.next_mask();
                self.write_header(fin, rsv, opcode, payload.len() as u64, Some(key));
                self.output.push_masked(payload, key);
            }
            None => {
                self.write_header(fin, rsv, opcode, payload.len() as u64, None);
                self.output.push_copy(payload);
            }
        }
    }
}

/// A payload to send: borrowed (always copied) or shared (queued by reference when large).
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(s) => s,
            Payload::Shared(b) => b,
        }
    }
}

enum Step {
    Event(Event),
    Continue,
    NeedMore,
}

/// Bytes a message may still grow by under the message size limit.
fn message_budget(limit: Option<usize>, so_far: u64) -> usize {
    match limit {
        Some(limit) => (limit as u64).saturating_sub(so_far) as usize,
        None => usize::MAX,
    }
}

fn kind_opcode(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    }
}

fn ext_error(e: ExtensionError, size: u64, limit: Option<usize>) -> ProtocolError {
    match e {
        ExtensionError::TooLarge => ProtocolError::MessageTooLarge {
            size: size.saturating_add(1),
            limit: limit.unwrap_or(usize::MAX),
        },
        ExtensionError::Invalid(msg) => ProtocolError::Extension(msg),
    }
}

/// Parses a close frame payload (RFC 6455 §5.5.1): empty, or a 2-byte code plus a UTF-8 reason.
fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::new(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
            }
            let reason = utf8::validate(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame::new(code, reason)))
        }
    }
}

/// Cuts a reason to the 123 bytes a close frame can carry, at a character boundary.
fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Writes one streamed message through [`Connection::send_fragment`].
#[derive(Debug)]
pub struct MessageWriter<'a> {
    conn: &'a mut Connection,
    kind: MessageKind,
}

impl MessageWriter<'_> {
    /// Queues `data` as a non-final fragment.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_fragment(self.kind, data, false)
    }

    /// Queues `data` as the final fragment, ending the message.
    pub fn finish(self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_fragment(self.kind, data, true)
    }
}

#[cfg(test)]
mod tests;
