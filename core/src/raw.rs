//! The crate's only `unsafe` code, kept in one file (house rule; httparse does the same).
//!
//! Everything else in the crate is checked by the workspace lint `unsafe_code = "deny"`.
#![allow(unsafe_code)]

/// Views bytes that were validated as UTF-8 when they entered a [`crate::Utf8Bytes`] as `&str`,
/// without validating them a second time.
///
/// Callers: only `Utf8Bytes::as_str`, whose constructors all validate (or build from `&str`).
#[inline]
pub(crate) fn str_from_validated(bytes: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: every constructor of `Utf8Bytes` either takes a `str`/`String` or validates its bytes
    // with `frame::utf8` (incrementally for received text, whole-buffer otherwise); `Utf8Bytes`
    // exposes no way to mutate the bytes afterwards (`Bytes` is immutable).
    unsafe { std::str::from_utf8_unchecked(bytes) }
}
