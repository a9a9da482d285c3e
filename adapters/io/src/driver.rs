//! The per-connection driver task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::runtime::Timer;
use crate::shared::Shared;

/// Passes before the driver yields to the executor even if its timer keeps expiring.
const MAX_PASSES: usize = 16;

/// Spawns the driver of `shared` on its runtime.
pub(crate) fn spawn(shared: Arc<Shared>) {
    let rt = shared.rt;
    rt.spawn(Box::pin(Driver {
        shared,
        timer: None,
    }));
}

/// Runs timers and keeps the socket moving while the application is not in `recv`/`send`; ends
/// once the transport is closed.
struct Driver {
    shared: Arc<Shared>,
    timer: Option<Box<dyn Timer>>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Register first: any change after this point wakes us again.
        this.shared.driver.register(cx.waker());
        for _ in 0..MAX_PASSES {
            let abandoned = this.shared.abandoned();
            let deadline = match this.shared.lock().drive(abandoned) {
                Err(()) => return Poll::Ready(()),
                Ok(deadline) => deadline,
            };
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            let timer = match &mut this.timer {
                Some(timer) => {
                    timer.reset(deadline);
                    timer
                }
                None => this.timer.insert(this.shared.rt.timer(deadline)),
            };
            if timer.poll_expired(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
