//! Who hears of socket readiness: the application task waiting in `recv`/`send` if there is
//! one, otherwise the connection's driver task — so the driver costs nothing while the
//! application keeps up.

use std::sync::Arc;
use std::task::{Wake, Waker};

use atomic_waker::AtomicWaker;

/// Wakes the driver task.
#[derive(Default)]
pub(crate) struct DriverSignal {
    waker: AtomicWaker,
}

impl DriverSignal {
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    pub(crate) fn wake(&self) {
        self.waker.wake();
    }
}

/// One direction's readiness (reading or writing): routed to the application task that waits
/// for it, or to the driver when none does. The transport is polled with a waker made from
/// this, so a wake lands on exactly one task.
pub(crate) struct Readiness {
    app: AtomicWaker,
    driver: Arc<DriverSignal>,
}

impl Readiness {
    pub(crate) fn new(driver: Arc<DriverSignal>) -> Arc<Self> {
        Arc::new(Readiness {
            app: AtomicWaker::new(),
            driver,
        })
    }

    /// Registers the application task that waits for this direction.
    pub(crate) fn set_app(&self, waker: &Waker) {
        self.app.register(waker);
    }

    /// Unregisters the application task. Returns whether it was still registered (`false`: a
    /// wake was routed to it and it has not consumed it).
    pub(crate) fn clear_app(&self) -> bool {
        self.app.take().is_some()
    }

    /// Wakes the waiting application task, if any.
    pub(crate) fn wake_app(&self) {
        self.app.wake();
    }
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self.app.take() {
            Some(w) => w.wake(),
            None => self.driver.wake(),
        }
    }
}
