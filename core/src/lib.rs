//! tidings-core (being written)
#![deny(unsafe_code)]

pub mod handshake;
