//! `tidings-hub`: placeholder crate. Its implementation arrives with its own issue; today it only
//! re-exports the sans-IO core so that the workspace layout is final.
#![forbid(unsafe_code)]

pub use tidings_core as core;
