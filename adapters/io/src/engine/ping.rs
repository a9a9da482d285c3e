//! `ping()`: a user ping with a payload of its own, waiting for its pong (RFC 6455 §5.5.2,
//! §5.5.3: a pong echoes the ping's payload).

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Engine;
use crate::Error;

/// The user ping waiting for its pong.
#[derive(Default)]
pub(super) struct Pings {
    pending: Option<PendingPing>,
    seq: u64,
}

struct PendingPing {
    payload: [u8; 8],
    sent: Instant,
    rtt: Option<Duration>,
}

impl Pings {
    /// A fresh payload, remembered as the one awaited.
    fn start(&mut self, now: Instant) -> [u8; 8] {
        self.seq = self.seq.wrapping_add(1);
        // Distinct from the core's keepalive payloads (a plain counter) by the high byte.
        let payload = (self.seq | 0xA5 << 56).to_be_bytes();
        self.pending = Some(PendingPing {
            payload,
            sent: now,
            rtt: None,
        });
        payload
    }

    /// A pong arrived: whether it answers the awaited ping (its round trip is recorded).
    pub(super) fn pong_arrived(&mut self, payload: &[u8], now: Instant) -> bool {
        match &mut self.pending {
            Some(ping) if ping.rtt.is_none() && payload == ping.payload => {
                ping.rtt = Some(now.saturating_duration_since(ping.sent));
                true
            }
            _ => false,
        }
    }

    /// The round-trip time of the awaited ping, once its pong arrived.
    fn take_rtt(&mut self) -> Option<Duration> {
        let rtt = self.pending.as_ref()?.rtt?;
        self.pending = None;
        Some(rtt)
    }
}

impl Engine {
    /// Queues a ping with a fresh payload; [`poll_pong`](Self::poll_pong) waits for its pong.
    pub(crate) fn ping(&self) -> Result<(), Error> {
        let mut st = self.lock();
        if st.transport_gone() {
            return Err(st.closed_error());
        }
        let now = st.rt.now();
        let payload = st.pings.start(now);
        st.conn.send_ping(now, &payload)?;
        st.after_send();
        st.note_deadline();
        Ok(())
    }

    /// The round-trip time once the pong arrives; an error if the connection ends first.
    pub(crate) fn poll_pong(&self, cx: &mut Context<'_>) -> Poll<Result<Duration, Error>> {
        self.poll_wait(cx, |st| {
            if let Some(rtt) = st.pings.take_rtt() {
                return Some(Ok(rtt));
            }
            if st.inbound.outcome().is_some() || st.transport_gone() {
                return Some(Err(st.closed_error()));
            }
            None
        })
    }
}
