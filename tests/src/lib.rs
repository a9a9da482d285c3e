//! Shared test support for tidings.
