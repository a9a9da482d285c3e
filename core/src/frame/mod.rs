//! RFC 6455 §5 framing: opcodes, headers, masking, UTF-8 validation and pre-encoded frames.

pub(crate) mod encode;
pub(crate) mod header;
pub mod mask;
pub(crate) mod utf8;

pub use encode::EncodedFrame;
pub use header::{FrameHeader, OpCode};
