//! Support code shared by the tidings examples.
//!
//! [`blocking`] drives the sans-IO core over plain blocking `std::net` sockets: the
//! "bring your own runtime" story in about a hundred lines.
#![forbid(unsafe_code)]

pub mod blocking;
