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

/// Inflates from `input` into at most `max` bytes of `out`'s spare capacity (reserved here) and
/// extends `out` by what was written: `(consumed, written, status)`. No zero-filling.
#[cfg(feature = "deflate")]
pub(crate) fn inflate_into(
    d: &mut flate2::Decompress,
    input: &[u8],
    out: &mut bytes::BytesMut,
    max: usize,
    flush: flate2::FlushDecompress,
) -> Result<(usize, usize, flate2::Status), flate2::DecompressError> {
    out.reserve(max);
    let (in0, out0) = (d.total_in(), d.total_out());
    let status = d.decompress_uninit(input, &mut out.spare_capacity_mut()[..max], flush)?;
    let consumed = (d.total_in() - in0) as usize;
    let written = ((d.total_out() - out0) as usize).min(max);
    // SAFETY: the decompressor initialised the first `written` bytes of the spare capacity it was
    // given (its `total_out` counts exactly the bytes it wrote there; flate2's own
    // `decompress_vec` sets a `Vec`'s length from the same count), and `written <= max`, which is
    // within the capacity reserved above.
    unsafe { out.set_len(out.len() + written) };
    Ok((consumed, written, status))
}

/// Compresses from `input` into at most `max` bytes of `out`'s spare capacity (reserved here) and
/// extends `out` by what was written: `(consumed, written)`.
#[cfg(feature = "deflate")]
pub(crate) fn deflate_into(
    c: &mut flate2::Compress,
    input: &[u8],
    out: &mut bytes::BytesMut,
    max: usize,
    flush: flate2::FlushCompress,
) -> Result<(usize, usize), flate2::CompressError> {
    out.reserve(max);
    let (in0, out0) = (c.total_in(), c.total_out());
    c.compress_uninit(input, &mut out.spare_capacity_mut()[..max], flush)?;
    let consumed = (c.total_in() - in0) as usize;
    let written = ((c.total_out() - out0) as usize).min(max);
    // SAFETY: as in `inflate_into`: the compressor initialised the first `written` bytes of the
    // spare capacity (counted by `total_out`, as flate2's `compress_vec` relies on), and
    // `written <= max`, within the capacity reserved above.
    unsafe { out.set_len(out.len() + written) };
    Ok((consumed, written))
}
