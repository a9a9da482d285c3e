//! Adapter configuration: the core's limits and timers plus the I/O knobs of the async driver.

use std::time::Duration;

use tidings_core::handshake::{HandshakeConfig, Limits, OriginPolicy};

/// Default handshake timeout: 10 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default write-buffer high-water mark: 1 MiB.
pub const DEFAULT_WRITE_HIGH_WATER: usize = 1 << 20;
/// Default bound on received events waiting for the application: 1 MiB.
pub const DEFAULT_READ_HIGH_WATER: usize = 1 << 20;

/// Configuration of a WebSocket connection on either adapter.
///
/// ```
/// # use std::time::Duration;
/// # use tidings_io::Config;
/// let config = Config::default()
///     .ping_interval(Some(Duration::from_secs(20)))
///     .pong_timeout(Some(Duration::from_secs(10)))
///     .max_message_size(Some(1 << 20));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) core: tidings_core::Config,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) write_high_water: usize,
    pub(crate) read_high_water: usize,
    /// Limits, origin policy and extensions of the opening handshake.
    pub(crate) handshake: HandshakeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            core: tidings_core::Config::default(),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            write_timeout: None,
            write_high_water: DEFAULT_WRITE_HIGH_WATER,
            read_high_water: DEFAULT_READ_HIGH_WATER,
            handshake: HandshakeConfig::default(),
        }
    }
}

impl Config {
    /// Replaces the core configuration (limits, timers, automatic pong, streaming).
    pub fn core(mut self, core: tidings_core::Config) -> Self {
        self.core = core;
        self
    }

    /// The core configuration.
    pub fn get_core(&self) -> &tidings_core::Config {
        &self.core
    }

    /// Largest accepted message; a bigger one fails the connection with 1009 (RFC 6455 §7.4.1).
    /// Default 64 MiB; `None` removes the limit.
    pub fn max_message_size(mut self, limit: Option<usize>) -> Self {
        self.core = self.core.max_message_size(limit);
        self
    }

    /// Largest accepted frame payload (1009 above it). Default 16 MiB.
    pub fn max_frame_size(mut self, limit: Option<usize>) -> Self {
        self.core = self.core.max_frame_size(limit);
        self
    }

    /// Sends a ping when nothing was received for this long (keepalive; RFC 6455 §5.5.2). Off by
    /// default. Runs in the driver task: it needs no `recv()` call.
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.core = self.core.ping_interval(every);
        self
    }

    /// Fails the connection if a keepalive ping is not answered within this time. Off by default.
    pub fn pong_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core = self.core.pong_timeout(timeout);
        self
    }

    /// Closes the connection (1000, "idle timeout") when no data message arrived for this long.
    /// Off by default.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core = self.core.idle_timeout(timeout);
        self
    }

    /// Fails the connection (an `io::ErrorKind::TimedOut` error) when queued output makes no
    /// progress for this long: the peer stopped reading. Off by default.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long the close handshake may take before the transport is closed anyway. Default 5 s.
    pub fn close_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core = self.core.close_timeout(timeout);
        self
    }

    /// How long the opening handshake may take (reading the request or response head, writing the
    /// answer). Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Output bytes that may be queued before `send` waits for the peer to read: a slow reader
    /// then blocks the sender instead of growing memory. At most one message more than this is
    /// queued. Default 1 MiB.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes.max(1);
        self
    }

    /// Received bytes (messages and control frames) that may wait for the application before the
    /// driver stops reading from the socket; TCP flow control then slows the peer. Default 1 MiB.
    pub fn read_high_water(mut self, bytes: usize) -> Self {
        self.read_high_water = bytes.max(1);
        self
    }

    /// Answers pings automatically (RFC 6455 §5.5.3). On by default.
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.core = self.core.auto_pong(on);
        self
    }

    /// Bounds on the handshake head (header count and bytes).
    pub fn handshake_limits(mut self, limits: Limits) -> Self {
        self.handshake.limits = limits;
        self
    }

    /// The `Origin` policy a server applies before the application sees the request (RFC 6455
    /// §10.2). Default: same origin (requests without `Origin`, i.e. non-browser clients, pass).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.handshake.origin = policy;
        self
    }

    /// permessage-deflate compression (RFC 7692), off by default: `Some(config)` offers it as a
    /// client and accepts a client's offer as a server. The accept callback can decline it for one
    /// request with [`AcceptOptions::extensions("")`](tidings_core::handshake::AcceptOptions::extensions);
    /// naming an extension there is refused (the engine would announce it without running it).
    ///
    /// It is off by default because compression costs CPU per message and memory per connection
    /// (with context takeover about 418 KiB once both directions ran, without it about 47 KiB;
    /// see [`tidings_core::ext::deflate`]); turn it on for text-heavy traffic (chat, JSON feeds)
    /// where it shrinks messages several-fold.
    ///
    /// Compression without context takeover borrows compressors from the `DeflateConfig`'s
    /// [`CompressorPool`](tidings_core::ext::deflate::CompressorPool). A `DeflateConfig` without
    /// one is given a new pool here, owned by this `Config` and shared by every connection made
    /// with it or a clone of it (that is what keeps such a connection at about 47 KiB); set your
    /// own with [`DeflateConfig::compressor_pool`](tidings_core::ext::deflate::DeflateConfig::compressor_pool)
    /// to share one between configs or with a hub.
    ///
    /// ```
    /// # use tidings_io::Config;
    /// use tidings_io::core::ext::deflate::{CompressorPool, DeflateConfig};
    /// let config = Config::default().deflate(Some(DeflateConfig::new()));
    /// let lean = Config::default().deflate(Some(DeflateConfig::no_context_takeover()));
    /// assert!(lean.get_deflate().is_some_and(|d| d.get_compressor_pool().is_some()));
    /// // One pool for two configs.
    /// let shared = DeflateConfig::no_context_takeover().compressor_pool(CompressorPool::new());
    /// let a = Config::default().deflate(Some(shared.clone()));
    /// let b = Config::default().max_message_size(Some(1 << 20)).deflate(Some(shared));
    /// assert_eq!(a.get_deflate(), b.get_deflate());
    /// ```
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, config: Option<tidings_core::ext::deflate::DeflateConfig>) -> Self {
        self.handshake.deflate = config.map(|deflate| {
            if deflate.get_compressor_pool().is_some() {
                deflate
            } else {
                deflate.compressor_pool(tidings_core::ext::deflate::CompressorPool::new())
            }
        });
        self
    }

    /// The handshake's part of the config: head limits, origin policy, extensions.
    pub fn handshake_config(&self) -> &HandshakeConfig {
        &self.handshake
    }

    /// The permessage-deflate settings, if compression is on.
    #[cfg(feature = "deflate")]
    pub fn get_deflate(&self) -> Option<&tidings_core::ext::deflate::DeflateConfig> {
        self.handshake.deflate.as_ref()
    }
}
