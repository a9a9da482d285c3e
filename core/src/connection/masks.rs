//! Sources of client masking keys (RFC 6455 §5.3, §10.3).
//!
//! The core owns no OS randomness: a client connection takes a [`MaskSource`]. With the default
//! `getrandom` feature, [`OsMasks`] draws keys from the operating system in batches.

/// Supplies a fresh 32-bit masking key for every frame a client sends.
///
/// RFC 6455 §10.3: keys must be unpredictable to the application that supplies the payload, or a
/// malicious page could poison intermediary caches. Use a cryptographically strong source.
pub trait MaskSource: Send {
    /// The next masking key.
    fn next_mask(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4] + Send> MaskSource for F {
    fn next_mask(&mut self) -> [u8; 4] {
        self()
    }
}

/// Masking keys from the operating system's random source, fetched 256 bytes at a time.
#[cfg(feature = "getrandom")]
#[derive(Debug)]
pub struct OsMasks {
    buf: [u8; 256],
    pos: usize,
}

#[cfg(feature = "getrandom")]
impl Default for OsMasks {
    fn default() -> Self {
        OsMasks {
            buf: [0; 256],
            pos: 256,
        }
    }
}

#[cfg(feature = "getrandom")]
impl OsMasks {
    /// A new source; it reads the OS random source on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn refill(&mut self) {
        fill_random(&mut self.buf);
        self.pos = 0;
    }
}

#[cfg(feature = "getrandom")]
impl MaskSource for OsMasks {
    fn next_mask(&mut self) -> [u8; 4] {
        if self.pos + 4 > self.buf.len() {
            self.refill();
        }
        let mut key = [0u8; 4];
        key.copy_from_slice(&self.buf[self.pos..self.pos + 4]);
        self.pos += 4;
        key
    }
}

/// Fills `buf` from the operating system's random source. The OS source failing is practically
/// unheard of; rather than panic, this falls back to std's per-process random SipHash keys, which
/// are themselves seeded from the OS.
#[cfg(feature = "getrandom")]
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_ne_bytes()[..chunk.len()]);
    }
}
