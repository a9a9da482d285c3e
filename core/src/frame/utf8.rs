//! Incremental UTF-8 validation of text messages, RFC 6455 §5.6 and §8.1.
//!
//! A text message's payload, reassembled from all its fragments, must be
//! valid UTF-8 (§5.6); an endpoint that receives invalid UTF-8 must _Fail the
//! WebSocket Connection_ (§8.1), with close code 1007 (§7.4.1). The payload
//! may arrive split across frames and across reads at any byte, even in the
//! middle of a character, so [`Utf8Validator`] is fed chunk by chunk and
//! carries at most 3 bytes of an unfinished character from one chunk to the
//! next.
//!
//! It fails fast: the [`Utf8Validator::feed`] call that receives the first
//! byte after which no continuation could make the message valid reports the
//! error. That includes a chunk that ends in a prefix that can never be
//! completed (`F4 90`: above U+10FFFF; `ED A0`: a UTF-16 surrogate; `E0 80`:
//! an overlong form; `C0`, `F5`: bytes that never start a character), not
//! only one that contains a whole bad sequence. Only a message that ends
//! inside a character that could still have been completed is left for
//! [`Utf8Validator::finish`] to reject.
//!
//! The bulk of each chunk is checked with `simdutf8` (SIMD, selected at run
//! time); the few carried bytes are completed with the next chunk's first
//! bytes and checked on their own. Errors say the same as
//! [`std::str::from_utf8`] over the whole message would.
//!
//! This module does not decide what to do about an error: the connection
//! turns it into close code 1007.

use std::fmt;

/// Invalid UTF-8 in a text message (RFC 6455 §8.1: the connection must fail,
/// with close code 1007).
///
/// Positions count from the first byte of the message (since the validator
/// was created, reset or finished), across all chunks fed. The two accessors
/// mean what they mean on [`std::str::Utf8Error`] for the whole message, so
/// a stream that fails reports the same error as validating the
/// concatenated message at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Utf8Error {
    valid_up_to: usize,
    error_len: Option<u8>,
}

impl Utf8Error {
    /// The number of leading bytes of the message that are valid UTF-8: the
    /// index where the offending sequence starts.
    #[must_use]
    pub fn valid_up_to(&self) -> usize {
        self.valid_up_to
    }

    /// The length of the invalid sequence that starts at
    /// [`valid_up_to`](Self::valid_up_to) (1 to 3 bytes), as in
    /// [`std::str::Utf8Error::error_len`]; `None` when the message ended in
    /// the middle of a character that could still have been completed.
    #[must_use]
    pub fn error_len(&self) -> Option<usize> {
        self.error_len.map(usize::from)
    }

    fn from_compat(e: simdutf8::compat::Utf8Error, base: usize) -> Self {
        Self {
            valid_up_to: base.saturating_add(e.valid_up_to()),
            // `error_len` is at most 3 by definition of UTF-8.
            error_len: e.error_len().map(|n| n.min(3) as u8),
        }
    }
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error_len {
            Some(len) => write!(
                f,
                "invalid UTF-8 sequence of {len} byte(s) at byte {} of the text message",
                self.valid_up_to
            ),
            None => write!(
                f,
                "text message ends inside a UTF-8 sequence that starts at byte {}",
                self.valid_up_to
            ),
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a whole buffer as UTF-8 at SIMD speed (RFC 6455 §5.6).
///
/// For a message that is complete in one buffer; for one that arrives in
/// pieces, use [`Utf8Validator`]. The error is the one
/// [`std::str::from_utf8`] would give: for `b"ok\xed\xa0\x80"` (a surrogate
/// after two ASCII bytes), `valid_up_to() == 2` and `error_len() == Some(1)`.
///
/// # Errors
///
/// [`Utf8Error`] locating the first invalid or truncated sequence.
pub fn validate(bytes: &[u8]) -> Result<&str, Utf8Error> {
    // `compat` rather than `basic` + a second pass on error: on 1 MiB inputs
    // it measured as fast as `basic` (ASCII and mixed text), and it stops at
    // the first error.
    simdutf8::compat::from_utf8(bytes).map_err(|e| Utf8Error::from_compat(e, 0))
}

/// Incremental, fail-fast UTF-8 validator for one text message at a time
/// (RFC 6455 §5.6, §8.1).
///
/// Feed the payload of every fragment as it is unmasked, in order, then call
/// [`finish`](Self::finish) when the frame with FIN arrives. The validator
/// holds no more than the (at most 3) bytes of a character split across
/// chunks, and a byte count for error positions.
///
/// ```
/// # use tidings_core::Utf8Validator;
/// let mut v = Utf8Validator::default();
/// let euro = "€".as_bytes(); // e2 82 ac
/// v.feed(&euro[..1])?;
/// v.feed(&euro[1..])?;
/// assert!(v.is_complete());
/// v.finish()?;
///
/// // A surrogate half (U+D800) fails on the byte that rules it out,
/// // before the rest of it arrives.
/// assert!(v.feed(b"\xed").is_ok());
/// assert!(v.feed(b"\xa0").is_err());
/// # Ok::<(), tidings_core::Utf8Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The start of a character that the next chunk must complete; a valid
    /// prefix of some character, so never more than 3 bytes.
    pending: [u8; 3],
    /// How many bytes of `pending` are in use.
    pending_len: u8,
    /// Message position of `pending[0]` (or of the next byte when nothing is
    /// pending): the count of bytes accepted as whole characters.
    consumed: usize,
    /// The first error, repeated until the message ends.
    error: Option<Utf8Error>,
}

impl Utf8Validator {
    /// A validator at the start of a message; the same as `default()`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether everything fed since the message started is valid UTF-8 and
    /// ends on a character boundary, so [`finish`](Self::finish) would
    /// succeed now.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.pending_len == 0
    }

    /// Validates the next `chunk` of the message.
    ///
    /// Chunks may split characters anywhere. An empty chunk is accepted and
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] from the call whose chunk contains the first byte that
    /// no continuation can make valid, including a chunk that ends in an
    /// impossible prefix such as `F4 90` or `ED A0`. Once an error is
    /// returned, every later `feed` returns it again until
    /// [`finish`](Self::finish) or [`reset`](Self::reset).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let rest = match self.complete_pending(chunk) {
            Ok(Some(rest)) => rest,
            Ok(None) => return Ok(()),
            Err(error) => return Err(self.fail(error)),
        };
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => {
                self.consumed = self.consumed.saturating_add(rest.len());
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                // A valid but unfinished character at the end: carry it.
                let split = e.valid_up_to();
                let tail = rest.get(split..).unwrap_or_default();
                match self.pending.get_mut(..tail.len()) {
                    Some(slot) => {
                        slot.copy_from_slice(tail);
                        self.pending_len = tail.len() as u8;
                        self.consumed = self.consumed.saturating_add(split);
                        Ok(())
                    }
                    // Unreachable: an unfinished character is at most 3 bytes.
                    None => Err(self.fail(Utf8Error::from_compat(e, self.consumed))),
                }
            }
            Err(e) => Err(self.fail(Utf8Error::from_compat(e, self.consumed))),
        }
    }

    /// Ends the message: checks that it did not stop in the middle of a
    /// character, then resets the validator for the next message.
    ///
    /// # Errors
    ///
    /// The error a [`feed`](Self::feed) already returned, or [`Utf8Error`]
    /// with [`error_len`](Utf8Error::error_len) `None` if the message ends
    /// with an unfinished character.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let result = match self.error {
            Some(error) => Err(error),
            None if self.pending_len != 0 => Err(Utf8Error {
                valid_up_to: self.consumed,
                error_len: None,
            }),
            None => Ok(()),
        };
        self.reset();
        result
    }

    /// Forgets the current message (its carried bytes, position and any
    /// error), ready for a new one.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn fail(&mut self, error: Utf8Error) -> Utf8Error {
        self.error = Some(error);
        error
    }

    /// Completes a carried character from the first bytes of `chunk`.
    ///
    /// Returns the rest of `chunk` after the completed character, `None` if
    /// `chunk` was too short to complete it (its bytes are then carried too),
    /// or the error if `chunk` rules the character out.
    fn complete_pending<'a>(&mut self, chunk: &'a [u8]) -> Result<Option<&'a [u8]>, Utf8Error> {
        let carried = usize::from(self.pending_len);
        if carried == 0 {
            return Ok(Some(chunk));
        }
        let width: usize = match self.pending[0] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        let take = width.saturating_sub(carried).min(chunk.len());
        let mut seq = [0u8; 4];
        seq[..carried].copy_from_slice(&self.pending[..carried]);
        seq[carried..carried + take].copy_from_slice(&chunk[..take]);
        let seq = &seq[..carried + take];
        // At most 4 bytes: the scalar check in std is the cheapest here.
        match std::str::from_utf8(seq) {
            Ok(_) => {
                self.pending_len = 0;
                self.consumed = self.consumed.saturating_add(seq.len());
                Ok(chunk.get(take..))
            }
            Err(e) if e.error_len().is_none() && seq.len() <= self.pending.len() => {
                // `take == chunk.len()`: still unfinished, still possible.
                self.pending[..seq.len()].copy_from_slice(seq);
                self.pending_len = seq.len() as u8;
                Ok(None)
            }
            Err(e) => Err(Utf8Error {
                valid_up_to: self.consumed.saturating_add(e.valid_up_to()),
                error_len: Some(e.error_len().unwrap_or(seq.len()).min(3) as u8),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The index of the first byte after which `bytes` can no longer be a
    /// prefix of valid UTF-8, by the definition: the shortest prefix that
    /// `std` rejects with a known error length.
    fn first_impossible_byte(bytes: &[u8]) -> Option<usize> {
        let start = match std::str::from_utf8(bytes) {
            Ok(_) => return None,
            Err(e) if e.error_len().is_none() => return None,
            Err(e) => e.valid_up_to(),
        };
        (start..bytes.len()).find(
            |&i| matches!(std::str::from_utf8(&bytes[..=i]), Err(e) if e.error_len().is_some()),
        )
    }

    fn std_error(bytes: &[u8]) -> Option<(usize, Option<usize>)> {
        std::str::from_utf8(bytes)
            .err()
            .map(|e| (e.valid_up_to(), e.error_len()))
    }

    /// Feeds `bytes` one byte at a time; returns the index of the byte whose
    /// `feed` failed.
    fn failing_byte(bytes: &[u8]) -> Option<usize> {
        let mut v = Utf8Validator::default();
        bytes.iter().position(|b| v.feed(&[*b]).is_err())
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).expect("test vector is hex"))
            .collect()
    }

    #[test]
    fn autobahn_6_x_vectors_fail_on_the_first_impossible_byte() {
        // (bytes, index of the byte whose feed must fail)
        let cases = [
            // 6.4.1/6.4.3: κόσμε then a surrogate, ED A0 80.
            (
                "ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64",
                Some(12),
            ),
            // 6.4.2/6.4.4: κόσμε then F4 90 80 80 (above U+10FFFF).
            (
                "ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80 65 64",
                Some(12),
            ),
            ("f4 90 80 80", Some(1)),
            ("ed a0 80", Some(1)),
            ("ed 9f bf", None),       // U+D7FF
            ("ee 80 80", None),       // U+E000
            ("f4 8f bf bf", None),    // U+10FFFF
            ("c0 af", Some(0)),       // overlong '/', C0 never starts a character
            ("c1 bf", Some(0)),       // overlong, C1 ditto
            ("e0 80 af", Some(1)),    // overlong 3-byte form
            ("f0 80 80 af", Some(1)), // overlong 4-byte form
            ("f5 80 80 80", Some(0)), // F5..FF never appear
            ("fe", Some(0)),
            ("ff", Some(0)),
            ("80", Some(0)),          // lone continuation byte
            ("e2 82 41", Some(2)),    // ASCII where a continuation was due
            ("e2 82 ac 80", Some(3)), // one continuation too many
            ("ce ba e1 bd", None),    // valid so far; only `finish` rejects it
            ("ef bf bf", None),       // U+FFFF is a valid character
        ];
        for (vector, expected) in cases {
            let bytes = hex(vector);
            assert_eq!(failing_byte(&bytes), expected, "{vector}");
            assert_eq!(first_impossible_byte(&bytes), expected, "{vector} (oracle)");
        }
    }

    #[test]
    fn impossible_prefix_at_end_of_chunk_fails_in_that_feed() {
        for prefix in [
            "f4 90",
            "ed a0",
            "c0",
            "f5",
            "e0 80",
            "f0 8f",
            "ce ba ed a0",
        ] {
            let mut v = Utf8Validator::default();
            assert!(v.feed(&hex(prefix)).is_err(), "{prefix}");
        }
    }

    #[test]
    fn truncated_message_fails_at_finish_with_no_error_len() {
        let mut v = Utf8Validator::default();
        v.feed(b"ab\xf0\x9f").expect("valid so far");
        v.feed(b"\x98").expect("valid so far");
        assert!(!v.is_complete());
        let err = v.finish().expect_err("ends inside U+1F600");
        assert_eq!((err.valid_up_to(), err.error_len()), (2, None));
        // `finish` started a new message.
        assert!(v.is_complete());
        v.feed(b"fresh").expect("new message");
        v.finish().expect("complete");
    }

    #[test]
    fn error_is_sticky_until_reset() {
        let mut v = Utf8Validator::default();
        let err = v.feed(b"a\xffb").expect_err("ff is never valid");
        assert_eq!(v.feed(b"ok"), Err(err));
        assert!(!v.is_complete());
        v.reset();
        v.feed(b"ok").expect("fresh after reset");
    }

    #[test]
    fn error_positions_count_across_chunks() {
        let mut v = Utf8Validator::default();
        v.feed(b"hello ").expect("ascii");
        v.feed(&hex("e2 82")).expect("prefix of the euro sign");
        let err = v.feed(b"X").expect_err("continuation byte missing");
        assert_eq!((err.valid_up_to(), err.error_len()), (6, Some(2)));
        assert_eq!(
            err.to_string(),
            "invalid UTF-8 sequence of 2 byte(s) at byte 6 of the text message"
        );
    }

    #[test]
    fn validate_matches_std() {
        for bytes in [
            &b""[..],
            b"plain",
            "κόσμε".as_bytes(),
            b"\xed\xa0\x80",
            b"ab\xe2\x82",
        ] {
            assert_eq!(
                validate(bytes).map_err(|e| (e.valid_up_to(), e.error_len())),
                std::str::from_utf8(bytes).map_err(|e| (e.valid_up_to(), e.error_len())),
            );
        }
    }

    /// Mostly-valid text with a few arbitrary bytes spliced in, so errors
    /// land anywhere, including deep inside long valid runs; plus raw bytes.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            ".{0,300}".prop_map(String::into_bytes),
            (
                ".{0,300}",
                proptest::collection::vec((any::<usize>(), any::<u8>()), 1..3)
            )
                .prop_map(|(s, edits)| {
                    let mut bytes = s.into_bytes();
                    for (at, byte) in edits {
                        let at = at % (bytes.len() + 1);
                        bytes.insert(at, byte);
                    }
                    bytes
                }),
            // Long runs, so simdutf8's SIMD path and its block edges are hit.
            (
                0usize..200,
                ".{0,8}",
                proptest::collection::vec(any::<u8>(), 0..4),
                0usize..200
            )
                .prop_map(|(a, mid, junk, b)| {
                    let mut bytes = "x".repeat(a).into_bytes();
                    bytes.extend_from_slice(mid.as_bytes());
                    bytes.extend_from_slice(&junk);
                    bytes.extend_from_slice("é".repeat(b).as_bytes());
                    bytes
                }),
        ]
    }

    fn chunk(bytes: &[u8], cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.windows(2).map(|w| (w[0], w[1])).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_chunking_agrees_with_std_and_fails_on_the_right_chunk(
            bytes in message(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut v = Utf8Validator::default();
            let mut outcome = Ok(());
            let mut failed_chunk = None;
            let chunks = chunk(&bytes, &cuts);
            for (i, &(start, end)) in chunks.iter().enumerate() {
                if let Err(e) = v.feed(&bytes[start..end]) {
                    outcome = Err(e);
                    failed_chunk = Some(i);
                    break;
                }
            }
            if outcome.is_ok() {
                outcome = v.finish();
            }
            prop_assert_eq!(
                outcome.map_err(|e| (e.valid_up_to(), e.error_len())).err(),
                std_error(&bytes)
            );
            // Fail fast: the failing feed is the one holding the first
            // impossible byte (a non-empty chunk; empty chunks change nothing).
            let expected_chunk = first_impossible_byte(&bytes).and_then(|at| {
                chunks.iter().position(|&(start, end)| start <= at && at < end)
            });
            prop_assert_eq!(failed_chunk, expected_chunk);
        }

        #[test]
        fn byte_at_a_time_fails_on_the_first_impossible_byte(bytes in message()) {
            prop_assert_eq!(failing_byte(&bytes), first_impossible_byte(&bytes));
        }
    }
}
