//! The connection's timers, kept in one small table indexed by [`Timer`] (quinn-proto's
//! `connection/timer.rs` habit): `poll_timeout` is the table's minimum.

use std::time::Instant;

/// A connection timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The close handshake (our close frame awaiting the peer's) or, for a client, the wait for the
    /// server to close the transport after the handshake.
    Close,
    /// A ping awaiting its pong.
    Pong,
    /// No data message received for the idle timeout.
    Idle,
    /// Time to send a keepalive ping ([`Config::ping_interval`](crate::Config::ping_interval)).
    Ping,
}

impl Timer {
    /// Every timer, in the order expired timers are handled.
    pub const ALL: [Timer; 4] = [Timer::Close, Timer::Pong, Timer::Idle, Timer::Ping];
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers([Option<Instant>; 4]);

impl Timers {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    pub(crate) fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    pub(crate) fn clear_all(&mut self) {
        self.0 = [None; 4];
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Clears and returns whether `timer` expired at `now`.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.0[timer as usize] {
            Some(at) if at <= now => {
                self.0[timer as usize] = None;
                true
            }
            _ => false,
        }
    }
}
