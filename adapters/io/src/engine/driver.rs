//! The per-connection driver task: timers, abandonment, and I/O while the application is
//! elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tidings_core::CloseCode;

use super::{Engine, State};
use crate::runtime::Sleep;
use crate::trace::ConnSpan;

/// Passes before the driver yields to the executor even if its timer keeps expiring.
const MAX_PASSES: usize = 16;

/// Spawns the driver of `engine` on its runtime, inside the connection's `span`.
pub(crate) fn spawn(engine: Arc<Engine>, span: &ConnSpan) {
    let rt = engine.rt;
    rt.spawn(span.instrument(Box::pin(Driver {
        engine,
        sleep: None,
        sleep_until: None,
    })));
}

/// Runs timers and keeps the socket moving while the application is not in `recv`/`send`; ends
/// once the transport is closed.
struct Driver {
    engine: Arc<Engine>,
    sleep: Option<Box<dyn Sleep>>,
    /// The deadline `sleep` is set for, while it has not fired.
    sleep_until: Option<Instant>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Register first: any change after this point wakes us again.
        this.engine.driver.register(cx.waker());
        for _ in 0..MAX_PASSES {
            let abandoned = this.engine.abandoned();
            let deadline = match this.engine.lock().drive(abandoned, this.sleep_until) {
                Err(()) => return Poll::Ready(()),
                Ok(deadline) => deadline,
            };
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            // `drive` keeps a timer that is set earlier than needed (it fires early and is set
            // again then): moving a timer later on every pass costs more on some runtimes than
            // an occasional early wake.
            if this.sleep_until != Some(deadline) {
                match &mut this.sleep {
                    Some(sleep) => sleep.reset(deadline),
                    None => this.sleep = Some(this.engine.rt.sleep_until(deadline)),
                }
                this.sleep_until = Some(deadline);
            }
            let Some(sleep) = this.sleep.as_mut() else {
                return Poll::Pending;
            };
            if sleep.poll_expired(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep_until = None;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl State {
    /// One driver pass: timers, abandonment, reading ahead, writing, shutdown. `sleep_until` is
    /// when the driver's timer is set to fire, if it is set. Returns the deadline to set the
    /// timer to — `sleep_until` itself when that is earlier than needed but still ahead (it will
    /// fire early and be set again) — or `Err(())` once the transport is gone and the driver can
    /// stop.
    fn drive(
        &mut self,
        abandoned: bool,
        sleep_until: Option<Instant>,
    ) -> Result<Option<Instant>, ()> {
        let now = self.rt.now();
        if self.deadline().is_some_and(|d| d <= now) {
            self.conn.handle_timeout(now);
            self.check_stall(now);
        }
        if abandoned && !self.abandoned {
            self.abandoned = true;
            self.inbound.discard();
            // Every handle was dropped without a close: close politely (RFC 6455 §7.1.2).
            let _ = self.start_close(CloseCode::GOING_AWAY, "");
        }
        self.read_ahead(now);
        self.progress_output();
        if self.transport_gone() {
            return Err(());
        }
        self.release_if_idle();
        let deadline = match (self.deadline(), sleep_until) {
            (Some(wanted), Some(set)) if set > now && set < wanted => Some(set),
            (wanted, _) => wanted,
        };
        self.armed = deadline;
        Ok(deadline)
    }
}
