//! A bounded, non-blocking queue straight into a connection's output: how a hub sends one
//! pre-encoded broadcast frame to thousands of connections without a task or a channel per
//! connection.

use std::fmt;
use std::sync::Arc;

use tidings_core::{CloseCode, EncodedFrame, MAX_HEADER_LEN, Message};

use crate::Error;
use crate::engine::{Engine, Outgoing};

/// Default bound on the messages waiting in an [`Outbox`]: 256.
pub const DEFAULT_OUTBOX_MESSAGES: usize = 256;
/// Default bound on the bytes waiting in a connection's output for an [`Outbox`] to accept more:
/// 1 MiB.
pub const DEFAULT_OUTBOX_BYTES: usize = 1 << 20;

/// The bounds of an [`Outbox`].
///
/// ```
/// # use tidings_io::OutboxLimits;
/// let limits = OutboxLimits::default().messages(64).bytes(256 * 1024);
/// assert_eq!(limits.get_messages(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    messages: usize,
    bytes: usize,
    inline: bool,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            messages: DEFAULT_OUTBOX_MESSAGES,
            bytes: DEFAULT_OUTBOX_BYTES,
            inline: false,
        }
    }
}

impl OutboxLimits {
    /// At most this many messages sent through the outbox may wait unwritten (at least 1).
    /// Default [`DEFAULT_OUTBOX_MESSAGES`].
    pub fn messages(mut self, messages: usize) -> Self {
        self.messages = messages.max(1);
        self
    }

    /// A message is refused when the connection's queued output (everything not yet written,
    /// the outbox's messages and any other) would exceed this many bytes with it. A message is
    /// always accepted into an empty output, so one message larger than the bound still goes
    /// out. Default [`DEFAULT_OUTBOX_BYTES`].
    pub fn bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes.max(1);
        self
    }

    /// Writes to the socket from the sender's task, right after queuing, instead of waking the
    /// connection's driver task to write (the default, which lets the broadcasts queued before
    /// the driver runs leave in one write, and spreads a fan-out's writes over the runtime's
    /// threads). See `BENCHMARKS.md` for the two measured side by side.
    pub fn write_inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// The message bound.
    pub fn get_messages(&self) -> usize {
        self.messages
    }

    /// The byte bound.
    pub fn get_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the sender's task writes ([`write_inline`](Self::write_inline)).
    pub fn get_write_inline(&self) -> bool {
        self.inline
    }
}

/// Why an [`Outbox`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxError {
    /// The outbox is at one of its bounds: the peer is not reading fast enough.
    Full {
        /// Outbox messages waiting unwritten.
        messages: usize,
        /// Output bytes waiting unwritten.
        bytes: usize,
    },
    /// The connection is closing or closed; nothing more can be sent.
    Closed,
    /// The message cannot be sent on this connection (local misuse, e.g. a streamed message is in
    /// progress).
    Refused(tidings_core::Error),
}

impl OutboxError {
    /// Whether the outbox refused because it was full.
    pub fn is_full(&self) -> bool {
        matches!(self, OutboxError::Full { .. })
    }
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::Full { messages, bytes } => write!(
                f,
                "outbox full ({messages} messages, {bytes} bytes waiting): the peer is not reading"
            ),
            OutboxError::Closed => f.write_str("the connection is closing or closed"),
            OutboxError::Refused(e) => write!(f, "message refused: {e}"),
        }
    }
}

impl std::error::Error for OutboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutboxError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OutboxError> for Error {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Refused(e) => Error::Local(e),
            OutboxError::Closed => Error::Local(tidings_core::Error::Closed),
            full @ OutboxError::Full { .. } => {
                Error::Io(std::io::Error::new(std::io::ErrorKind::WouldBlock, full))
            }
        }
    }
}

/// A bounded, non-blocking sender into one connection's output, from
/// [`WebSocket::outbox`](crate::WebSocket::outbox) or [`WriteHalf::outbox`](crate::WriteHalf::outbox).
///
/// [`try_send_encoded`](Self::try_send_encoded) queues a pre-encoded frame's shared bytes
/// directly into the connection's output queue — no copy for server connections, no task and
/// no channel per connection — and returns at once: it never waits for the peer. When the peer
/// does not keep up, the outbox reaches its [`OutboxLimits`] and refuses with
/// [`OutboxError::Full`]; what to do then (drop the message, disconnect the peer) is the caller's
/// policy. Memory per connection is bounded by the limits.
///
/// Queued messages are written by the connection's driver task, woken once per batch (or from
/// the sender's task with [`OutboxLimits::write_inline`]); they keep their order with each other
/// and with everything else sent on the connection.
///
/// An outbox does not keep the connection open: once the application's handles are dropped, the
/// connection closes (1001) and the outbox refuses with [`OutboxError::Closed`].
#[derive(Clone)]
pub struct Outbox {
    engine: Arc<Engine>,
    limits: OutboxLimits,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(engine: Arc<Engine>, limits: OutboxLimits) -> Self {
        Outbox { engine, limits }
    }

    /// Queues `frame` (see [`Connection::send_encoded`](tidings_core::Connection::send_encoded):
    /// server connections queue its shared bytes, the compressed form where the connection's
    /// permessage-deflate can take it) unless the outbox is full or the connection closing.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Full`] at a bound, [`OutboxError::Closed`] once the connection is closing.
    pub fn try_send_encoded(&self, frame: &EncodedFrame) -> Result<(), OutboxError> {
        self.engine
            .outbox_send(&self.limits, frame.wire().len(), Outgoing::Encoded(frame))
    }

    /// Queues `message` like [`try_send_encoded`](Self::try_send_encoded) (it is encoded for this
    /// connection alone, compressed by its own extension if it has one).
    ///
    /// # Errors
    ///
    /// As for [`try_send_encoded`](Self::try_send_encoded).
    pub fn try_send(&self, message: Message) -> Result<(), OutboxError> {
        // The frame header is at most MAX_HEADER_LEN bytes on top of the payload.
        let len = message.len() + MAX_HEADER_LEN;
        self.engine
            .outbox_send(&self.limits, len, Outgoing::Message(message))
    }

    /// Starts the close handshake with `code` and `reason` after what is already queued (the
    /// peer sees the queued messages first). Returns `false` if the connection was already
    /// closing or gone.
    ///
    /// # Errors
    ///
    /// [`Error::Local`] for a code that may not be sent or a reason longer than 123 bytes.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<bool, Error> {
        self.engine.close(code, reason)
    }

    /// Messages sent through this connection's outboxes that are not completely written yet.
    pub fn queued_messages(&self) -> usize {
        self.engine.outbox_len()
    }

    /// Output bytes queued on the connection and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.engine.queued_bytes()
    }

    /// Whether the connection is closing or over: the outbox refuses everything.
    pub fn is_closed(&self) -> bool {
        self.engine.is_closing()
    }

    /// The limits.
    pub fn limits(&self) -> OutboxLimits {
        self.limits
    }

    /// Whether this outbox and `other` send into the same connection.
    pub fn same_connection(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.engine, &other.engine)
    }
}
