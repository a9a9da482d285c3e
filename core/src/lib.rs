//! # tidings-core
//!
//! A **sans-IO** WebSocket protocol engine (RFC 6455): bytes in, events out; commands in, bytes
//! out. It performs no I/O, spawns nothing, reads no clock (every time-dependent call takes
//! `now: Instant`) and owns no OS randomness unless the default `getrandom` feature provides it.
//! Drive it from tokio, smol, blocking threads, an event loop of your own, or a fuzzer.
//!
//! ```text
//!                  bytes in                                       bytes out
//!  socket ──► your I/O loop ──receive(now, bytes)──► Connection ──transmit_slices()/advance_transmit()──► socket
//!                 ▲                                     │  poll_event() → Message, Ping, Pong, CloseReceived, Closed
//!                 │                                     │  send_text / send_binary / send_encoded / close …
//!                 └──── sleep until poll_timeout() ◄────┘  handle_timeout(now) when it passes
//! ```
//!
//! ## What it does
//!
//! * Framing (RFC 6455 §5): header decode/encode for 7/16/64-bit lengths, masking in place,
//!   control-frame rules, reserved opcodes and RSV bits, fragmentation, incremental UTF-8
//!   validation that fails at the first invalid byte (even inside a fragment still arriving),
//!   close-frame payload rules, and frame/message size limits decided from the header before
//!   anything is buffered. A peer's violation fails the connection with the right close code
//!   (1002, 1007, 1009) and a [`ProtocolError`] in the terminal [`Event::Closed`].
//! * The connection state machine in both [`Role`]s: zero-copy single-frame messages (`Bytes`
//!   split off the input buffer), automatic pongs, the close handshake in both directions
//!   (RFC 6455 §7; the server closes the transport first), a streaming outgoing message
//!   ([`Connection::send_fragment`]) and an opt-in streaming incoming mode
//!   ([`Config::stream_incoming`]), output as a vectored view with partial-write support, a
//!   backpressure measure ([`Connection::queued_bytes`]), and encode-once broadcast frames
//!   ([`EncodedFrame`], [`Connection::send_encoded`]).
//! * Timers ([`Timer`]): keepalive pings, pong timeout (dead peer), close-handshake timeout, idle
//!   timeout; [`Connection::poll_timeout`] and [`Connection::handle_timeout`].
//! * The HTTP/1.1 upgrade handshake (RFC 6455 §4) in both roles, in [`handshake`]: a bounded
//!   request parser on httparse with the HTTP status for every refusal, an origin policy,
//!   a client request builder and response validation. Bytes that follow the HTTP head are handed
//!   to the connection.
//! * [`CloseCode`], a `u16` newtype with the registered codes and predicates.
//! * The extension hook ([`ext::Extension`]): per-message transforms owning RSV bits, with a
//!   decoded-size budget so an expanding extension ends in 1009, not in memory exhaustion, and
//!   on it permessage-deflate (RFC 7692, [`ext::deflate`], default feature `deflate`): offer and
//!   answer negotiation in both roles with both context-takeover modes and window sizes, a
//!   compression threshold and level, inflation bounded by the message-size limit, and
//!   compress-once broadcast frames ([`EncodedFrame::with_deflate`]).
//! * A Server-Sent Events encoder ([`sse`]), pure formatting, beside the frame encoder.
//!
//! ## What it does not do
//!
//! No sockets, no TLS, no DNS, no async, no threads, no clock, no HTTP routing: those belong to
//! the adapters (`tidings-tokio`, `tidings-smol`) or to your code. It does not buffer unboundedly on
//! your behalf either: bytes given to [`Connection::receive`] are decoded as you poll events, so
//! drain events before reading more.
//!
//! ## Bring your own runtime
//!
//! An echo, driven by hand (the `std_echo_server` example does the same over blocking
//! `std::net` sockets, in `examples/src/blocking.rs`):
//!
//! ```
//! use std::time::Instant;
//! use tidings_core::{Config, Connection, Event, Message};
//!
//! let now = Instant::now();
//! let mut server = Connection::server(Config::default(), now);
//! let mut client = Connection::client_with_masks(Config::default(), || [1, 2, 3, 4], now);
//!
//! client.send_text("hello").unwrap();
//! let mut wire = Vec::new();
//! client.poll_transmit(&mut wire);          // bytes the client writes to its socket
//! server.receive(now, &wire);               // … that the server reads from its socket
//! while let Some(event) = server.poll_event() {
//!     if let Event::Message(msg) = event {
//!         assert_eq!(msg.as_text(), Some("hello"));
//!         server.send(msg).unwrap();        // echo
//!     }
//! }
//! wire.clear();
//! server.poll_transmit(&mut wire);
//! client.receive(now, &wire);
//! assert_eq!(client.poll_event(), Some(Event::Message(Message::text("hello"))));
//! ```
//!
//! ## Safety
//!
//! `unsafe` code lives in one private module (`raw`), each block with a `// SAFETY:` comment; the
//! rest of the crate is checked by `#![deny(unsafe_code)]`.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod close;
mod connection;
mod error;
pub mod ext;
mod frame;
pub mod handshake;
mod message;
mod raw;
pub mod sse;

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
#[cfg(feature = "getrandom")]
pub use connection::OsMasks;
pub use connection::{
    CloseOutcome, Config, Connection, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE, Event, Fragment, Initiator, Lookahead, MaskSource, MessageWriter,
    Role, Timer,
};
pub use error::{ConnectionError, Error, ProtocolError};
pub use frame::header::{MAX_HEADER_LEN, RSV1};
pub use frame::utf8::{Utf8Error, Utf8Validator};
pub use frame::{EncodedFrame, FrameHeader, OpCode, mask};
pub use message::{Message, MessageKind, Utf8Bytes};
