//! Connection configuration: limits, timers, behaviour switches.

use std::time::Duration;

/// Configuration of a [`crate::Connection`]. Build it from `Config::default()` with the setter
/// methods; every timer is off by default except the close-handshake timeout.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) max_frame_size: Option<usize>,
    pub(crate) max_message_size: Option<usize>,
    pub(crate) auto_pong: bool,
    pub(crate) stream_incoming: bool,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Option<Duration>,
    pub(crate) close_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

/// Default frame size limit: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// Default message size limit: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Default close-handshake timeout: 5 seconds.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: Some(DEFAULT_MAX_FRAME_SIZE),
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            auto_pong: true,
            stream_incoming: false,
            ping_interval: None,
            pong_timeout: None,
            close_timeout: Some(DEFAULT_CLOSE_TIMEOUT),
            idle_timeout: None,
        }
    }
}

impl Config {
    /// Largest accepted frame payload; a bigger frame fails the connection with 1009, decided from
    /// its header before any of it is buffered. `None` removes the limit. Default 16 MiB.
    /// Not applied in streaming mode, where frames are never buffered whole.
    pub fn max_frame_size(mut self, limit: Option<usize>) -> Self {
        self.max_frame_size = limit;
        self
    }

    /// Largest accepted message (sum of its frames, or its decoded size with an extension); a
    /// bigger one fails the connection with 1009. `None` removes the limit. Default 64 MiB.
    pub fn max_message_size(mut self, limit: Option<usize>) -> Self {
        self.max_message_size = limit;
        self
    }

    /// Answer pings with pongs automatically (RFC 6455 §5.5.2). Default on.
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Deliver data as [`crate::Event::Fragment`]s as it arrives instead of whole messages, for
    /// messages larger than memory. Default off. The message size limit still applies: lift it
    /// with [`max_message_size`](Self::max_message_size) for unbounded streams.
    pub fn stream_incoming(mut self, on: bool) -> Self {
        self.stream_incoming = on;
        self
    }

    /// Sends a ping when nothing was received for this long (keepalive; RFC 6455 §5.5.2).
    /// Default off.
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.ping_interval = every;
        self
    }

    /// Fail the connection (1006, [`crate::ConnectionError::PongTimeout`]) when no pong arrives this
    /// long after a ping we sent. Default off.
    pub fn pong_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// How long to wait for the peer's close frame after ours, and (client) for the server to close
    /// the transport after the handshake. Default 5 s.
    pub fn close_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Close the connection (1000, "idle timeout") when no data message arrived for this long.
    /// Default off.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The frame size limit.
    pub fn get_max_frame_size(&self) -> Option<usize> {
        self.max_frame_size
    }

    /// The message size limit.
    pub fn get_max_message_size(&self) -> Option<usize> {
        self.max_message_size
    }
}
