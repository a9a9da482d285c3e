//! Incremental UTF-8 validation — temporary version.

use std::fmt;

/// Invalid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a whole buffer.
pub fn validate(bytes: &[u8]) -> Result<&str, Utf8Error> {
    std::str::from_utf8(bytes).map_err(|_| Utf8Error)
}

/// Incremental validator.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    carry: Vec<u8>,
}

impl Utf8Validator {
    /// Feeds a chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        self.carry.extend_from_slice(chunk);
        match std::str::from_utf8(&self.carry) {
            Ok(_) => {
                self.carry.clear();
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                let v = e.valid_up_to();
                self.carry.drain(..v);
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the stream.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }
}
