//! hyper on any runtime: hyper's I/O and timer traits implemented over the engine's
//! [`Transport`] and [`Runtime`], so the server helper runs hyper's HTTP/1.1 on tokio, smol, or
//! a runtime of the application's, with no executor of hyper's own (HTTP/1 needs none).

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hyper::rt::{Read, ReadBufCursor, Sleep, Write};

use crate::runtime::{self, Runtime, Transport};

/// Bytes asked of the transport per read while hyper reads HTTP (heads and bodies). After an
/// upgrade the engine reads the transport itself, with its own buffer.
const HTTP_READ: usize = 8 * 1024;

/// An engine [`Transport`] as hyper's I/O. What hyper asked for is read into a small staging
/// buffer and copied into hyper's; whatever hyper did not take stays there and is handed back
/// with the transport after an upgrade ([`into_parts`](Self::into_parts)).
pub(crate) struct HyperIo {
    inner: Box<dyn Transport>,
    staging: BytesMut,
}

impl fmt::Debug for HyperIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperIo")
            .field("staged", &self.staging.len())
            .finish_non_exhaustive()
    }
}

impl HyperIo {
    pub(crate) fn new(inner: Box<dyn Transport>) -> Self {
        HyperIo {
            inner,
            staging: BytesMut::new(),
        }
    }

    /// The transport, and bytes read from it that hyper has not seen (they come after hyper's
    /// own read buffer).
    pub(crate) fn into_parts(self) -> (Box<dyn Transport>, BytesMut) {
        (self.inner, self.staging)
    }
}

impl Read for HyperIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.staging.is_empty() {
            let want = buf.remaining().min(HTTP_READ);
            if want == 0 {
                return Poll::Ready(Ok(()));
            }
            // Never more capacity than hyper can take at once, so nothing lingers here while
            // hyper parses (and the staging buffer stays small on an idle keep-alive connection).
            if this.staging.capacity() < want {
                this.staging = BytesMut::with_capacity(want);
            }
            match this.inner.poll_read_into(cx, &mut this.staging) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: hyper sees a read of zero bytes.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
            }
        }
        let n = this.staging.len().min(buf.remaining());
        buf.put_slice(&this.staging[..n]);
        this.staging.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl Write for HyperIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .inner
            .poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.poll_shutdown(cx)
    }
}

/// The runtime's timers as hyper's (header read timeout).
#[derive(Clone, Copy)]
pub(crate) struct HyperTimer(pub(crate) &'static dyn Runtime);

impl fmt::Debug for HyperTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HyperTimer")
    }
}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.0.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep(Mutex::new(self.0.sleep_until(deadline))))
    }

    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// One of the runtime's timers; the lock makes it `Sync` as hyper asks, and is never contended
/// (only the future's owner polls it).
struct HyperSleep(Mutex<Box<dyn runtime::Sleep>>);

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut timer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        timer.poll_expired(cx)
    }
}

impl Sleep for HyperSleep {}
