//! smol's streams, clock, timers and spawner, as the engine's [`Transport`] and [`Runtime`].

use std::any::Any;
use std::future::Future;
use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use tidings_io::{Runtime, Sleep, Task, Transport};

/// Spare room from which reads go straight into the core's buffer (zeroed first) instead of
/// through the scratch buffer: the engine reserves this much only for the rest of a large frame.
const DIRECT_READ: usize = 128 * 1024;
/// First size of the scratch buffer.
const SCRATCH_MIN: usize = 4 * 1024;
/// Largest size of the scratch buffer: it doubles up to this while reads fill it.
const SCRATCH_MAX: usize = 1 << 20;

/// Any `futures-io` stream as a [`Transport`]. `futures-io` reads need an initialised buffer, so
/// reads land in a scratch buffer (allocated when a read starts, grown while reads fill it, freed
/// when a read would wait) and are appended to the core's.
pub(crate) struct FuturesIo<S> {
    stream: S,
    scratch: Vec<u8>,
}

impl<S> Transport for FuturesIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let spare = buf.capacity() - buf.len();
        if spare >= DIRECT_READ {
            // The engine reserved room for a large frame: read straight into it (zeroing costs
            // less than the copy out of the scratch buffer).
            let len = buf.len();
            buf.resize(len + spare, 0);
            let result = Pin::new(&mut self.stream).poll_read(cx, &mut buf[len..]);
            let n = match &result {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(len + n);
            return result;
        }
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH_MIN];
        }
        let room = (buf.capacity() - buf.len()).clamp(1, self.scratch.len());
        let n = match Pin::new(&mut self.stream).poll_read(cx, &mut self.scratch[..room]) {
            Poll::Ready(Ok(n)) => n,
            Poll::Pending => {
                // Nothing to read: an idle connection holds no scratch buffer.
                self.scratch = Vec::new();
                return Poll::Pending;
            }
            other => return other,
        };
        buf.extend_from_slice(&self.scratch[..n]);
        if n == self.scratch.len() && n < SCRATCH_MAX {
            self.scratch = vec![0; n * 2];
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Boxes a `futures-io` stream for the engine: smol's TCP streams get the direct path of
/// [`SmolTcp`], any other stream (TLS, a custom one) the generic one.
pub(crate) fn transport<S>(stream: S) -> Box<dyn Transport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut slot = Some(stream);
    let tcp = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<async_net::TcpStream>>()
        .and_then(Option::take);
    match (tcp, slot) {
        (Some(tcp), _) => Box::new(SmolTcp {
            io: tcp.into(),
            last_read: 0,
            drained: false,
        }),
        (None, Some(stream)) => Box::new(FuturesIo {
            stream,
            scratch: Vec::new(),
        }),
        (None, None) => unreachable!("the stream is taken only when it is a TCP stream"),
    }
}

/// A smol TCP stream, used through its `Async` socket, read straight into the core's buffer.
///
/// * Reads zero-fill only about twice what the last read returned (at least [`SCRATCH_MIN`],
///   the whole room when the engine reserved it for the rest of a large frame): no scratch
///   buffer, so an idle connection holds none, and no copy.
/// * A read that returns fewer bytes than it had room for emptied the socket's receive queue,
///   so the next read registers for readiness at once instead of first making a read that would
///   only say "would block" (nginx's habit). `Async::poll_readable` re-arms the socket's
///   one-shot interest, and the reactor reports data that arrived in between.
struct SmolTcp {
    io: Arc<async_io::Async<std::net::TcpStream>>,
    /// Bytes the last read returned.
    last_read: usize,
    /// The last read emptied the receive queue.
    drained: bool,
}

impl Transport for SmolTcp {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if self.drained {
            if self.io.poll_readable(cx)?.is_pending() {
                return Poll::Pending;
            }
            self.drained = false;
        }
        loop {
            let spare = buf.capacity() - buf.len();
            let room = if spare >= DIRECT_READ {
                spare
            } else {
                (self.last_read * 2)
                    .clamp(SCRATCH_MIN, SCRATCH_MAX)
                    .min(spare)
                    .max(1)
            };
            let len = buf.len();
            buf.resize(len + room, 0);
            let result = self.io.get_ref().read(&mut buf[len..]);
            buf.truncate(len + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(n) => {
                    self.last_read = n;
                    self.drained = n > 0 && n < room;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.io.poll_readable(cx)?.is_pending() {
                        return Poll::Pending;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_close(cx)
    }
}

/// The smol runtime: `std::time::Instant`, `async_io::Timer`, and the spawner: the one given to
/// [`set_spawner`], else smol's global executor (feature `global-executor`).
pub(crate) struct Smol;

/// The runtime instance handed to the engine.
pub(crate) static RUNTIME: Smol = Smol;

/// The application's spawner, once given.
static SPAWNER: OnceLock<Box<dyn Fn(Task) + Send + Sync>> = OnceLock::new();

/// Runs the connections' driver tasks (and the server helper's connection tasks) with `spawner`
/// from now on: the application's own executor, such as an `async_executor::Executor` it runs,
/// instead of smol's global one. It can be given once, before the first connection.
///
/// ```no_run
/// use std::sync::{Arc, OnceLock};
///
/// let executor: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
/// let ex = executor.clone();
/// tidings_smol::set_spawner(move |task| ex.spawn(task).detach()).expect("the first spawner");
/// // ... run `executor` on the application's threads.
/// ```
///
/// # Errors
///
/// [`SpawnerSet`] if a spawner was already given (the first one stays).
pub fn set_spawner(spawner: impl Fn(Task) + Send + Sync + 'static) -> Result<(), SpawnerSet> {
    SPAWNER.set(Box::new(spawner)).map_err(|_| SpawnerSet)
}

/// [`set_spawner`] was called before: a runtime keeps its first spawner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnerSet;

impl std::fmt::Display for SpawnerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a spawner was already set")
    }
}

impl std::error::Error for SpawnerSet {}

struct SmolSleep(async_io::Timer);

impl Sleep for SmolSleep {
    fn reset(&mut self, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Smol {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Box<dyn Sleep> {
        Box::new(SmolSleep(async_io::Timer::at(deadline)))
    }

    fn spawn(&self, task: Task) {
        if let Some(spawner) = SPAWNER.get() {
            return spawner(task);
        }
        #[cfg(feature = "global-executor")]
        smol::spawn(task).detach();
        #[cfg(not(feature = "global-executor"))]
        {
            // No executor to run it on: the task gets a thread of its own, driven by async-io.
            std::thread::spawn(move || async_io::block_on(task));
        }
    }

    fn name(&self) -> &'static str {
        "smol"
    }
}
