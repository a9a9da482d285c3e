//! The per-connection driver task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::runtime::Timer;
use crate::shared::Shared;
use crate::trace::ConnSpan;

/// Passes before the driver yields to the executor even if its timer keeps expiring.
const MAX_PASSES: usize = 16;

/// Spawns the driver of `shared` on its runtime, inside the connection's `span`.
pub(crate) fn spawn(shared: Arc<Shared>, span: &ConnSpan) {
    let rt = shared.rt;
    rt.spawn(span.instrument(Box::pin(Driver {
        shared,
        timer: None,
        timer_at: None,
    })));
}

/// Runs timers and keeps the socket moving while the application is not in `recv`/`send`; ends
/// once the transport is closed.
struct Driver {
    shared: Arc<Shared>,
    timer: Option<Box<dyn Timer>>,
    /// The deadline `timer` is set for, while it has not fired.
    timer_at: Option<Instant>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Register first: any change after this point wakes us again.
        this.shared.driver.register(cx.waker());
        for _ in 0..MAX_PASSES {
            let abandoned = this.shared.abandoned();
            let deadline = match this.shared.lock().drive(abandoned, this.timer_at) {
                Err(()) => return Poll::Ready(()),
                Ok(deadline) => deadline,
            };
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            // `drive` keeps a timer that is set earlier than needed (it fires early and is set
            // again then): moving a timer later on every pass costs more on some runtimes than
            // an occasional early wake.
            if this.timer_at != Some(deadline) {
                match &mut this.timer {
                    Some(timer) => timer.reset(deadline),
                    None => this.timer = Some(this.shared.rt.timer(deadline)),
                }
                this.timer_at = Some(deadline);
            }
            let Some(timer) = this.timer.as_mut() else {
                return Poll::Pending;
            };
            if timer.poll_expired(cx).is_pending() {
                return Poll::Pending;
            }
            this.timer_at = None;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
