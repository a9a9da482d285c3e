//! # tidings-core
//!
//! A sans-IO WebSocket protocol engine (RFC 6455): bytes in, events out; commands in, bytes out.
#![deny(unsafe_code)]

mod close;
mod connection;
mod error;
pub mod ext;
mod frame;
pub mod handshake;
mod message;
mod raw;

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use connection::{
    CloseOutcome, Config, Connection, Event, Fragment, Initiator, MaskSource, MessageWriter, Role,
    Timer, DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
};
#[cfg(feature = "getrandom")]
pub use connection::OsMasks;
pub use error::{ConnectionError, Error, ProtocolError};
pub use frame::utf8::{Utf8Error, Utf8Validator};
pub use frame::header::{MAX_HEADER_LEN, RSV1};
pub use frame::{mask, EncodedFrame, FrameHeader, OpCode};
pub use message::{Message, MessageKind, Utf8Bytes};
