//! The queue of bytes waiting to be written to the transport.
//!
//! Small frames are copied into one contiguous staging buffer (one write, no allocation per
//! frame); large payloads given as `Bytes` are queued as their own chunk without copying, so a
//! vectored write sends header and payload as separate `IoSlice`s (tokio-websockets habit).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads up to this size are copied into the staging buffer rather than queued by reference.
pub(crate) const INLINE_MAX: usize = 4096;
/// A staging buffer up to this capacity is kept when the output goes idle.
const KEEP_STAGING: usize = 2048;
/// A chunk queue up to this capacity is kept when the output goes idle.
const KEEP_CHUNKS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Chunks that come before `staging`, oldest first.
    chunks: VecDeque<Bytes>,
    /// The newest bytes, still growable.
    staging: BytesMut,
    /// Total queued bytes.
    len: usize,
}

impl Output {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `additional` bytes of copied frames at once (a header and its payload),
    /// so that a staging buffer released while idle is allocated once, not grown per push.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.staging.reserve(additional);
    }

    pub(crate) fn push_copy(&mut self, data: &[u8]) {
        self.staging.extend_from_slice(data);
        self.len += data.len();
    }

    /// Appends `data` and masks it in place (client role, RFC 6455 §5.3).
    pub(crate) fn push_masked(&mut self, data: &[u8], key: [u8; 4]) {
        let start = self.staging.len();
        self.staging.extend_from_slice(data);
        crate::frame::mask::apply_mask(&mut self.staging[start..], key);
        self.len += data.len();
    }

    pub(crate) fn push_shared(&mut self, data: Bytes) {
        if data.len() <= INLINE_MAX {
            self.push_copy(&data);
            return;
        }
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    pub(crate) fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let iter = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.staging[..]))
            .filter(|c| !c.is_empty());
        for (slot, chunk) in dst.iter_mut().zip(iter) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.staging[..]))
            .filter(|c| !c.is_empty())
    }

    pub(crate) fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    let take = n.min(front.len());
                    front.advance(take);
                    n -= take;
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    self.staging.advance(n);
                    n = 0;
                }
            }
        }
        if self.len == 0 {
            self.chunks.clear();
            self.staging.clear();
        }
    }

    /// Frees the buffers' memory when nothing is queued, unless they are small enough to keep:
    /// a connection sending small messages then reuses its buffer instead of allocating it
    /// again for every message (a fan-out queues and writes one message per subscriber at a
    /// time).
    pub(crate) fn release(&mut self) {
        if self.len == 0 {
            if self.chunks.capacity() > KEEP_CHUNKS {
                self.chunks = VecDeque::new();
            }
            if self.staging.capacity() > KEEP_STAGING {
                self.staging = BytesMut::new();
            }
        }
    }

    /// Moves everything queued into `dst` as owned chunks, without copying (the staging buffer's
    /// bytes become one chunk; its spare room stays for the next frames).
    pub(crate) fn take_chunks(&mut self, dst: &mut Vec<Bytes>) -> usize {
        let n = self.len;
        dst.extend(self.chunks.drain(..));
        if !self.staging.is_empty() {
            dst.push(self.staging.split().freeze());
        }
        self.len = 0;
        n
    }

    pub(crate) fn copy_out(&mut self, dst: &mut Vec<u8>) -> usize {
        let n = self.len;
        dst.reserve(n);
        for chunk in self.chunks() {
            dst.extend_from_slice(chunk);
        }
        self.advance(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue of a small frame, a large shared payload and another small frame; the payload
    /// and the bytes the queue must give.
    fn mixed_queue() -> (Output, Bytes, Vec<u8>) {
        let mut out = Output::default();
        out.push_copy(b"ab");
        let big = Bytes::from(vec![7u8; INLINE_MAX + 1]);
        out.push_shared(big.clone());
        out.push_copy(b"cd");
        let mut expect = b"ab".to_vec();
        expect.extend_from_slice(&big);
        expect.extend_from_slice(b"cd");
        (out, big, expect)
    }

    #[test]
    fn order_is_kept_across_inline_and_shared_chunks() {
        let (mut out, _, expect) = mixed_queue();
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.slices(&mut slices), 3);
        // Partial writes at every position give the same byte stream.
        for cut in [1, 2, 3, INLINE_MAX, INLINE_MAX + 3] {
            let (mut o, _, _) = mixed_queue();
            let mut got = Vec::new();
            let first: Vec<u8> = o.chunks().flat_map(|c| c.to_vec()).take(cut).collect();
            got.extend_from_slice(&first);
            o.advance(cut);
            o.copy_out(&mut got);
            assert_eq!(got, expect, "cut {cut}");
            assert!(o.is_empty());
        }
        let mut all = Vec::new();
        assert_eq!(out.copy_out(&mut all), expect.len());
        assert_eq!(all, expect);
    }

    #[test]
    fn owned_chunks_are_the_queue_in_order_and_share_the_large_payload() {
        let (mut out, big, expect) = mixed_queue();
        let mut chunks = Vec::new();
        assert_eq!(out.take_chunks(&mut chunks), INLINE_MAX + 5);
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        let flat: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        assert_eq!(flat, expect);
        // The large payload is the same allocation, not a copy.
        assert!(chunks.iter().any(|c| c.as_ptr() == big.as_ptr()));
        // The queue goes on after: new frames are queued and taken on their own.
        out.push_copy(b"ef");
        let mut next = Vec::new();
        assert_eq!(out.take_chunks(&mut next), 2);
        assert_eq!(next.concat(), b"ef");
        // Nothing queued, nothing taken.
        assert_eq!(out.take_chunks(&mut next), 0);
        assert_eq!(next.len(), 1);
    }
}
