//! permessage-deflate (RFC 7692): per-message DEFLATE compression on the extension hook.
//!
//! A [`DeflateConfig`] negotiates the extension in either role (it is an
//! [`ExtensionConfig`]); the negotiated parameters become a [`PerMessageDeflate`] instance on the
//! connection. Compression and decompression run on [flate2] with the zlib-rs backend (pure Rust,
//! with window-size control); no DEFLATE is written here.
//!
//! # What gets compressed
//!
//! Whole messages sent with `send`, `send_text`, `send_binary` of at least
//! [`threshold`](DeflateConfig::threshold) bytes (default [`DEFAULT_THRESHOLD`]) are compressed,
//! sent with RSV1 on their single frame (RFC 7692 §6). Smaller messages, streamed messages
//! ([`crate::Connection::send_fragment`]) and control frames go uncompressed, which the RFC
//! allows per message. Without context takeover on our side, a message that does not shrink is
//! sent uncompressed too.
//!
//! # Context takeover and memory
//!
//! With context takeover (the default) each direction keeps one DEFLATE stream for the whole
//! connection, so later messages refer to earlier ones and small, repetitive messages (chat,
//! JSON feeds) shrink best. The price is memory per connection, measured on zlib-rs
//! (`tests/tests/deflate_memory.rs`): the compressor of a 15-bit window holds about 371 KiB
//! (about 247 KiB with 10 bits: the 128 KiB hash head does not shrink with the window), and the
//! decompressor about 47 KiB, so about 418 KiB in all. Each is created when first needed, so a
//! connection that never sends a message above the threshold never pays for a compressor.
//!
//! Without context takeover on our side ([`DeflateConfig::no_context_takeover`], or
//! `server_no_context_takeover` for a server) every message is compressed from a fresh state, so
//! a compressor holds nothing between messages and connections can share them: give the config a
//! [`CompressorPool`] ([`DeflateConfig::compressor_pool`]) and each message borrows one from the
//! pool for the time it is compressed, so a connection costs only its decompressor. Without a
//! pool the connection keeps its own compressor (created at its first compressed message and
//! reset after each one), the same memory as with context takeover. The ratio on small messages
//! is worse than with context takeover.
//! [`server_max_window_bits`](DeflateConfig::server_max_window_bits) /
//! [`client_max_window_bits`](DeflateConfig::client_max_window_bits) shrink the windows.
//!
//! # The compressor pool
//!
//! A [`CompressorPool`] is an explicit object, created by whoever creates the connections (a
//! server, a hub, an adapter config) and handed to them through their [`DeflateConfig`]; nothing
//! here keeps compressors in global or thread-local state. It is a cheap handle: clones share
//! the same idle compressors, so every connection made from one config (and its clones) draws
//! from one pool. It only serves compression without context takeover and
//! [`crate::EncodedFrame::with_deflate`]; with context takeover the compressor *is* the
//! connection's stream state and stays with the connection.
//!
//! The pool keeps compressors keyed by level and window, at most
//! [`max_idle`](CompressorPool::max_idle) of them in all (default [`DEFAULT_MAX_IDLE`]); past
//! the bound the least recently returned one is dropped, so its memory stays under about `max_idle` times
//! 371 KiB (15-bit windows), and in practice under the largest number of messages compressed at
//! the same moment, since a compressor is lent only for one message. It is `Send + Sync`: a
//! [`std::sync::Mutex`] guards the idle list, held only to take or return one (never while
//! compressing), and a compressor is reset outside the lock before it goes back.
//!
//! It pays off with many connections without context takeover (memory: about 47 KiB instead of
//! about 418 KiB each; and a few compressors touched in turn rather than one per connection, so
//! they are more likely in cache), and for [`crate::EncodedFrame::with_deflate`], which otherwise
//! allocates and initialises a compressor per call. With few connections, or with context
//! takeover, it brings nothing.
//!
//! # Decompression bombs
//!
//! Inflation writes at most the byte budget the connection gives it (the rest of the message-size
//! limit) and fails with [`ExtensionError::TooLarge`] as soon as one more byte would come out, so
//! a tiny frame that would inflate to gigabytes ends the connection with 1009 after at most the
//! limit's worth of memory. Keep a message-size limit when deflate is on.
//!
//! # Encode-once broadcast
//!
//! [`crate::EncodedFrame::with_deflate`] compresses a message once for many connections, with a
//! compressor borrowed from the config's [`CompressorPool`] if it has one (a fresh one
//! otherwise). A server connection sends that compressed form only when its own
//! compression has no context takeover (`server_no_context_takeover` was negotiated), and the
//! negotiated `server_max_window_bits` is at least the window the frame was compressed with;
//! otherwise the frame goes out uncompressed (never recompressed per connection). With context
//! takeover a shared frame cannot be used: the client's window would then hold bytes our
//! compressor never saw.
//!
//! # The zlib window of 8 bits
//!
//! zlib (and zlib-rs, which follows it) cannot make a raw DEFLATE stream with a 256-byte window.
//! When 8 bits are negotiated for our compressor, it runs with 9: zlib never emits a distance
//! beyond the window size minus 262 bytes, so a 512-byte window produces distances of at most 250,
//! which a 256-byte decoder accepts. Decompression always uses a 32 KiB window, which decodes any
//! window size.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ext::{Extension, ExtensionConfig, ExtensionError};
use crate::frame::header::RSV1;
use crate::handshake::ExtensionOffer;
use crate::message::MessageKind;
use crate::raw;

/// The extension token (RFC 7692 §6).
pub const NAME: &str = "permessage-deflate";
/// Default compression threshold: messages shorter than this are sent uncompressed.
pub const DEFAULT_THRESHOLD: usize = 512;
/// Default compression level: 1, zlib's fastest, as gorilla/websocket. On 1 KiB JSON messages
/// with context takeover, level 6 (zlib's own default) made them about a fifth smaller than
/// level 1 but an in-memory round trip took about 4.8 times as long (see BENCHMARKS.md).
pub const DEFAULT_LEVEL: u32 = 1;
/// The empty stored block that ends every compressed message; removed by the sender and appended
/// again by the receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Smallest and largest window size (RFC 7692 §7.1.2).
const MIN_BITS: u8 = 8;
const MAX_BITS: u8 = 15;
/// Output growth step while inflating.
const INFLATE_STEP: usize = 64 << 10;
/// Default bound on the idle compressors a [`CompressorPool`] keeps: 64, about 23 MiB at most
/// with 15-bit windows, enough for one compression in flight on each of 64 threads.
pub const DEFAULT_MAX_IDLE: usize = 64;

/// Idle zlib compressors shared by connections whose compression has no context takeover, and by
/// [`crate::EncodedFrame::with_deflate`]; see the [module docs](self#the-compressor-pool).
///
/// A cheap handle: clones share the same compressors, and two handles are equal when they are
/// clones of one pool. Pass it to the connections with [`DeflateConfig::compressor_pool`].
///
/// ```
/// use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};
/// let pool = CompressorPool::new();
/// let config = DeflateConfig::no_context_takeover().compressor_pool(pool.clone());
/// assert_eq!(config.get_compressor_pool(), Some(&pool));
/// assert_eq!(pool.idle(), 0); // compressors are created when first needed
/// ```
#[derive(Clone)]
pub struct CompressorPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    max_idle: usize,
    /// Idle compressors, the least recently returned first.
    idle: Mutex<Vec<Idle>>,
}

/// An idle compressor: reset, with the level and (effective) window it was made with.
struct Idle {
    level: u32,
    bits: u8,
    compress: Compress,
}

impl CompressorPool {
    /// An empty pool keeping at most [`DEFAULT_MAX_IDLE`] idle compressors.
    pub fn new() -> Self {
        Self::with_max_idle(DEFAULT_MAX_IDLE)
    }

    /// An empty pool keeping at most `max_idle` idle compressors in all (whatever their level and
    /// window); past it the least recently used one is dropped. With 0 it keeps none: each
    /// message then gets a fresh compressor, which saves the memory and costs an allocation and
    /// initialisation per message.
    pub fn with_max_idle(max_idle: usize) -> Self {
        CompressorPool {
            inner: Arc::new(PoolInner {
                max_idle,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The bound on idle compressors.
    pub fn max_idle(&self) -> usize {
        self.inner.max_idle
    }

    /// How many compressors are idle in the pool now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The list stays consistent whatever panicked while it was locked (only a push or a
        // remove happens under the lock).
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle compressor for `level` and `bits` (the most recently returned), or a new one.
    fn take(&self, level: u32, bits: u8) -> Compress {
        let bits = effective_bits(bits);
        let found = {
            let mut idle = self.lock();
            idle.iter()
                .rposition(|i| i.level == level && i.bits == bits)
                .map(|index| idle.remove(index).compress)
        };
        found.unwrap_or_else(|| new_compress(level, bits))
    }

    /// Resets `compress` and keeps it, dropping the oldest idle one if the pool is full.
    fn give_back(&self, level: u32, bits: u8, mut compress: Compress) {
        if self.inner.max_idle == 0 {
            return;
        }
        compress.reset();
        let bits = effective_bits(bits);
        let evicted = {
            let mut idle = self.lock();
            let evicted = (idle.len() >= self.inner.max_idle).then(|| idle.remove(0));
            idle.push(Idle {
                level,
                bits,
                compress,
            });
            evicted
        };
        drop(evicted); // freed outside the lock
    }

    /// Runs `f` on a compressor of the pool for `level` and `bits`, then returns it reset.
    fn with<R>(&self, level: u32, bits: u8, f: impl FnOnce(&mut Compress) -> R) -> R {
        let mut compress = self.take(level, bits);
        let result = f(&mut compress);
        self.give_back(level, bits, compress);
        result
    }
}

impl Default for CompressorPool {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CompressorPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressorPool")
            .field("max_idle", &self.inner.max_idle)
            .field("idle", &self.idle())
            .finish()
    }
}

/// The same pool (clones of one handle).
impl PartialEq for CompressorPool {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for CompressorPool {}

/// permessage-deflate settings for one side, and its negotiation (RFC 7692 §7.1).
///
/// The parameter names follow the RFC and mean the same in both roles:
///
/// | setting | as a server | as a client |
/// |---|---|---|
/// | `server_no_context_takeover` | reset our compressor after each message (always answered) | ask the server to reset its compressor; fail if it does not agree |
/// | `client_no_context_takeover` | ask the client to reset its compressor | reset our compressor after each message (offered as a hint) |
/// | `server_max_window_bits` | our compression window; announced when below 15 | ask the server for at most this window; fail if it does not agree |
/// | `client_max_window_bits` | ask the client for at most this window, if it offered the parameter | our compression window; offered |
///
/// A server meets stricter demands of the client (a smaller `server_max_window_bits`,
/// `server_no_context_takeover`). Modes: leave deflate out of the adapter config to disable it,
/// [`DeflateConfig::new`] for context takeover, [`DeflateConfig::no_context_takeover`] for none.
///
/// Without context takeover, give it a [`CompressorPool`] with
/// [`compressor_pool`](Self::compressor_pool) so the connections made with it share compressors
/// instead of keeping one each (see the [module docs](self#context-takeover-and-memory)). Two
/// configs are equal when their settings are and they have the same pool or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    threshold: usize,
    level: u32,
    pool: Option<CompressorPool>,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_BITS,
            client_max_window_bits: MAX_BITS,
            threshold: DEFAULT_THRESHOLD,
            level: DEFAULT_LEVEL,
            pool: None,
        }
    }
}

impl DeflateConfig {
    /// Context takeover in both directions, 15-bit windows, threshold [`DEFAULT_THRESHOLD`],
    /// level [`DEFAULT_LEVEL`].
    pub fn new() -> Self {
        Self::default()
    }

    /// No context takeover in either direction: both compressors reset after every message
    /// (RFC 7692 §7.1.1).
    pub fn no_context_takeover() -> Self {
        Self::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
    }

    /// `server_no_context_takeover` (RFC 7692 §7.1.1.1); see the type's table.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// `client_no_context_takeover` (RFC 7692 §7.1.1.2); see the type's table.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// `server_max_window_bits` (RFC 7692 §7.1.2.1), clamped to 8..=15; see the type's table.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_BITS, MAX_BITS);
        self
    }

    /// `client_max_window_bits` (RFC 7692 §7.1.2.2), clamped to 8..=15; see the type's table.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(MIN_BITS, MAX_BITS);
        self
    }

    /// Messages shorter than `bytes` are sent uncompressed (0 compresses everything). Default
    /// [`DEFAULT_THRESHOLD`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Compression level, 0 (stored) to 9 (smallest), clamped. Default [`DEFAULT_LEVEL`].
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Compression without context takeover, and [`crate::EncodedFrame::with_deflate`], borrow
    /// compressors from `pool` for one message at a time instead of each connection keeping its
    /// own. Connections made with this config (or a clone) share the pool; create one where the
    /// connections are created (a server, a hub) and give it to all of them. Ignored by
    /// compression with context takeover, whose compressor belongs to its connection.
    pub fn compressor_pool(mut self, pool: CompressorPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The compressor pool, if one was given.
    pub fn get_compressor_pool(&self) -> Option<&CompressorPool> {
        self.pool.as_ref()
    }

    /// The compression threshold in bytes.
    pub fn get_threshold(&self) -> usize {
        self.threshold
    }

    /// The compression level.
    pub fn get_level(&self) -> u32 {
        self.level
    }

    /// The configured `server_max_window_bits`.
    pub fn get_server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    fn instance(&self, params: Negotiated) -> PerMessageDeflate {
        PerMessageDeflate {
            compress: None,
            compress_bits: params.compress_bits,
            level: self.level,
            threshold: self.threshold,
            reset_compress: params.reset_compress,
            // Only compression without context takeover borrows from the pool.
            pool: self.pool.clone().filter(|_| params.reset_compress),
            decompress: None,
            reset_decompress: params.reset_decompress,
            ended: false,
        }
    }
}

/// What negotiation decided for one connection.
struct Negotiated {
    compress_bits: u8,
    reset_compress: bool,
    reset_decompress: bool,
}

impl ExtensionConfig for DeflateConfig {
    fn name(&self) -> &str {
        NAME
    }

    /// One offer: the no-context-takeover parameters that are on, `server_max_window_bits` when
    /// below 15, and always `client_max_window_bits` (with our window when below 15), so the
    /// server may ask for a smaller one (RFC 7692 §7.1.2.2).
    fn offers(&self) -> Vec<ExtensionOffer> {
        let mut offer = ExtensionOffer::new(NAME);
        if self.server_no_context_takeover {
            offer = offer.with_param("server_no_context_takeover", None);
        }
        if self.client_no_context_takeover {
            offer = offer.with_param("client_no_context_takeover", None);
        }
        if self.server_max_window_bits < MAX_BITS {
            let bits = self.server_max_window_bits.to_string();
            offer = offer.with_param("server_max_window_bits", Some(&bits));
        }
        let client_bits = (self.client_max_window_bits < MAX_BITS)
            .then(|| self.client_max_window_bits.to_string());
        vec![offer.with_param("client_max_window_bits", client_bits.as_deref())]
    }

    /// Accepts a well-formed offer (RFC 7692 §7.1): meets its `server_no_context_takeover` and
    /// `server_max_window_bits` demands, answers with our own settings, and declines (`None`) an
    /// offer with an unknown, repeated or invalid parameter, so the next offer is tried.
    fn accept(&self, offer: &ExtensionOffer) -> Option<(ExtensionOffer, Box<dyn Extension>)> {
        let p = Params::parse(offer, Side::Offer).ok()?;
        let server_nct = self.server_no_context_takeover || p.server_no_context_takeover;
        let server_bits = self
            .server_max_window_bits
            .min(p.server_max_window_bits.unwrap_or(MAX_BITS));
        let mut response = ExtensionOffer::new(NAME);
        if server_nct {
            response = response.with_param("server_no_context_takeover", None);
        }
        if self.client_no_context_takeover {
            response = response.with_param("client_no_context_takeover", None);
        }
        if p.server_max_window_bits.is_some() || server_bits < MAX_BITS {
            response =
                response.with_param("server_max_window_bits", Some(&server_bits.to_string()));
        }
        // §7.1.2.2: only when offered; the offered value is the client's own upper bound.
        if let Some(offered) = p.client_max_window_bits
            && self.client_max_window_bits < MAX_BITS
        {
            let bits = self.client_max_window_bits.min(offered.unwrap_or(MAX_BITS));
            response = response.with_param("client_max_window_bits", Some(&bits.to_string()));
        }
        let instance = self.instance(Negotiated {
            compress_bits: server_bits,
            reset_compress: server_nct,
            reset_decompress: self.client_no_context_takeover,
        });
        Some((response, Box::new(instance)))
    }

    /// Checks the server's answer against our offer (RFC 7692 §7.1): a malformed parameter, a
    /// missing `server_no_context_takeover` we asked for, or a `server_max_window_bits` missing or
    /// above what we asked for fails the handshake.
    fn confirm(&self, response: &ExtensionOffer) -> Result<Box<dyn Extension>, ExtensionError> {
        let p = Params::parse(response, Side::Response)?;
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(ExtensionError::Invalid(
                "server did not accept server_no_context_takeover".into(),
            ));
        }
        if self.server_max_window_bits < MAX_BITS
            && p.server_max_window_bits
                .is_none_or(|bits| bits > self.server_max_window_bits)
        {
            return Err(ExtensionError::Invalid(format!(
                "server did not accept server_max_window_bits={}",
                self.server_max_window_bits
            )));
        }
        let compress_bits = match p.client_max_window_bits {
            Some(Some(bits)) => bits.min(self.client_max_window_bits),
            _ => self.client_max_window_bits,
        };
        Ok(Box::new(self.instance(Negotiated {
            compress_bits,
            reset_compress: self.client_no_context_takeover || p.client_no_context_takeover,
            reset_decompress: p.server_no_context_takeover,
        })))
    }
}

/// Which kind of element is parsed: the client's offer or the server's response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Response,
}

/// The parameters of one offer or response (RFC 7692 §7.1).
#[derive(Default, Debug, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value (allowed only in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    fn parse(element: &ExtensionOffer, side: Side) -> Result<Params, ExtensionError> {
        let mut p = Params::default();
        let mut seen = [false; 4];
        for (name, value) in &element.params {
            let value = value.as_deref();
            let index = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => {
                    no_value(name, value)?;
                    p.server_no_context_takeover = true;
                    0
                }
                "client_no_context_takeover" => {
                    no_value(name, value)?;
                    p.client_no_context_takeover = true;
                    1
                }
                "server_max_window_bits" => {
                    let value = value.ok_or_else(|| invalid(name, "needs a value"))?;
                    p.server_max_window_bits = Some(window_bits(name, value)?);
                    2
                }
                "client_max_window_bits" => {
                    p.client_max_window_bits = Some(match value {
                        Some(v) => Some(window_bits(name, v)?),
                        None if side == Side::Offer => None,
                        None => return Err(invalid(name, "needs a value in a response")),
                    });
                    3
                }
                _ => return Err(invalid(name, "is unknown")),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(invalid(name, "is repeated"));
            }
        }
        Ok(p)
    }
}

fn invalid(name: &str, why: &str) -> ExtensionError {
    ExtensionError::Invalid(format!("permessage-deflate parameter {name} {why}"))
}

fn no_value(name: &str, value: Option<&str>) -> Result<(), ExtensionError> {
    match value {
        None => Ok(()),
        Some(_) => Err(invalid(name, "takes no value")),
    }
}

/// A window size: a decimal 8..=15 without leading zeros (RFC 7692 §7.1.2.1).
fn window_bits(name: &str, value: &str) -> Result<u8, ExtensionError> {
    match value.parse::<u8>() {
        Ok(bits) if (MIN_BITS..=MAX_BITS).contains(&bits) && !value.starts_with(['0', '+']) => {
            Ok(bits)
        }
        _ => Err(invalid(name, "needs a value from 8 to 15")),
    }
}

/// The negotiated permessage-deflate state of one connection (RFC 7692 §7.2).
pub struct PerMessageDeflate {
    /// Created at the first compressed message (a connection that only sends small messages
    /// never pays for it); never with a pool.
    compress: Option<Compress>,
    compress_bits: u8,
    level: u32,
    threshold: usize,
    reset_compress: bool,
    /// Where compression without context takeover borrows its compressor, if anywhere.
    pool: Option<CompressorPool>,
    /// Created at the first compressed message received.
    decompress: Option<Decompress>,
    reset_decompress: bool,
    /// The peer ended its DEFLATE stream with a final block (BFINAL); the decompressor restarts
    /// at the next message.
    ended: bool,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("compress_bits", &self.compress_bits)
            .field("level", &self.level)
            .field("threshold", &self.threshold)
            .field("reset_compress", &self.reset_compress)
            .field("reset_decompress", &self.reset_decompress)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl PerMessageDeflate {
    /// Inflates `input` into `out`, writing at most `budget` bytes; returns the bytes written.
    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        budget: usize,
    ) -> Result<usize, ExtensionError> {
        // A 15-bit window decodes every window size (RFC 7692 §7.1.2).
        let decompress = self
            .decompress
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, MAX_BITS));
        let mut written = 0;
        loop {
            if self.ended {
                // After a final block (BFINAL) the rest of the message is ignored, as zlib does
                // (RFC 7692 §7.2.3.4 has such a block followed by padding).
                return Ok(written);
            }
            let room = budget - written;
            if room == 0 {
                // The budget is spent: one more byte of output means the message is too large.
                // The probe may also reach the end of a final block (its end-of-block code came
                // after the last byte of output); that ends the stream as below, or the next
                // message would run into the finished stream and come out empty.
                let mut probe = BytesMut::with_capacity(1);
                let (_, n, status) = inflate_step(decompress, input, &mut probe, 1)?;
                if n > 0 {
                    return Err(ExtensionError::TooLarge);
                }
                self.ended = status == Status::StreamEnd;
                return Ok(written);
            }
            // Use the room already there (no reallocation for the tail, say); else grow by a
            // guess from the input size.
            let spare = out.capacity() - out.len();
            let want = if spare >= 256 {
                spare
            } else {
                input.len().saturating_mul(4).clamp(1024, INFLATE_STEP)
            };
            let step = room.min(want);
            let (consumed, n, status) = inflate_step(decompress, input, out, step)?;
            input = &input[consumed..];
            written += n;
            if status == Status::StreamEnd {
                self.ended = true;
                continue;
            }
            if input.is_empty() && n < step {
                return Ok(written); // all input used and all output flushed
            }
            if consumed == 0 && n == 0 {
                return Err(ExtensionError::Invalid(
                    "DEFLATE data made no progress".into(),
                ));
            }
        }
    }
}

fn inflate_step(
    d: &mut Decompress,
    input: &[u8],
    out: &mut BytesMut,
    max: usize,
) -> Result<(usize, usize, Status), ExtensionError> {
    raw::inflate_into(d, input, out, max, FlushDecompress::None)
        .map_err(|e| ExtensionError::Invalid(format!("invalid DEFLATE data: {e}")))
}

impl Extension for PerMessageDeflate {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    /// Compresses a message of at least the threshold (RFC 7692 §7.2.1): DEFLATE with a sync
    /// flush, its trailing `00 00 ff ff` removed.
    fn encode(
        &mut self,
        _kind: MessageKind,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        let (level, bits) = (self.level, self.compress_bits);
        if !self.reset_compress {
            let compress = self
                .compress
                .get_or_insert_with(|| new_compress(level, bits));
            deflate_message(compress, payload, out)?;
            return Ok(Some(RSV1));
        }
        // No context takeover: every message starts from a fresh state, in a compressor borrowed
        // from the pool or in the connection's own, reset after each message (module docs).
        let start = out.len();
        match &self.pool {
            Some(pool) => pool.with(level, bits, |c| deflate_message(c, payload, out))?,
            None => {
                let compress = self
                    .compress
                    .get_or_insert_with(|| new_compress(level, bits));
                let result = deflate_message(compress, payload, out);
                compress.reset();
                result?;
            }
        }
        if out.len() - start >= payload.len() {
            // Did not shrink; with no context to keep in step, send it as it is.
            out.truncate(start);
            return Ok(None);
        }
        Ok(Some(RSV1))
    }

    /// Inflates one frame of a compressed message (RFC 7692 §7.2.2); after the last frame the
    /// tail `00 00 ff ff` is inflated too, and without context takeover the decompressor resets.
    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        budget: usize,
    ) -> Result<(), ExtensionError> {
        let written = self.inflate(payload, out, budget)?;
        if fin {
            self.inflate(&TAIL, out, budget - written)?;
            if (self.reset_decompress || self.ended)
                && let Some(decompress) = self.decompress.as_mut()
            {
                decompress.reset(false);
                self.ended = false;
            }
        }
        Ok(())
    }

    fn accepts_deflated(&self, window_bits: u8) -> bool {
        self.reset_compress && window_bits <= self.compress_bits.max(9)
    }
}

/// The window zlib runs with for `bits`: 8 becomes 9 (module docs).
fn effective_bits(bits: u8) -> u8 {
    bits.max(9)
}

fn new_compress(level: u32, bits: u8) -> Compress {
    // zlib cannot make raw streams with an 8-bit window; 9 is safe for an 8-bit peer (module docs).
    Compress::new_with_window_bits(Compression::new(level), false, effective_bits(bits))
}

/// Compresses `payload` as one message into `out`: sync flush, tail removed.
fn deflate_message(
    compress: &mut Compress,
    mut input: &[u8],
    out: &mut BytesMut,
) -> Result<(), ExtensionError> {
    if input.is_empty() {
        // An empty message is one empty block (RFC 7692 §7.2.3.6); after an earlier sync flush
        // zlib would produce nothing at all.
        out.extend_from_slice(&[0x00]);
        return Ok(());
    }
    let start = out.len();
    loop {
        let step = (input.len() / 2).max(256) + 64;
        let (consumed, n) = raw::deflate_into(compress, input, out, step, FlushCompress::Sync)
            .map_err(|e| ExtensionError::Invalid(format!("compression failed: {e}")))?;
        input = &input[consumed..];
        if input.is_empty() && n < step {
            break;
        }
    }
    if !out[start..].ends_with(&TAIL) {
        return Err(ExtensionError::Invalid(
            "compressor output lacks the sync-flush tail".into(),
        ));
    }
    out.truncate(out.len() - TAIL.len());
    Ok(())
}

/// Compresses one message from a fresh state (for [`crate::EncodedFrame::with_deflate`]), with a
/// compressor of the config's pool or a new one: the payload of a frame with RSV1, or `None` when
/// it does not shrink.
pub(crate) fn deflate_once(config: &DeflateConfig, payload: &[u8]) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
    let (level, bits) = (config.level, config.server_max_window_bits);
    let mut deflate = |c: &mut Compress| deflate_message(c, payload, &mut out);
    match &config.pool {
        Some(pool) => pool.with(level, bits, deflate),
        None => deflate(&mut new_compress(level, bits)),
    }
    .ok()?;
    (out.len() < payload.len()).then_some(out)
}

#[cfg(test)]
mod tests;
