//! Masking (RFC 6455 §5.3) — temporary scalar version.

/// XORs `buf` with the masking key.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_offset(buf, key, 0)
}

/// XORs `buf`, which starts `offset` bytes into the payload, with the masking key.
pub fn apply_mask_offset(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + offset) & 3];
    }
}
