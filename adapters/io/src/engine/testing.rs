//! A deterministic runtime for the engine's unit tests: a simulated clock, spawned tasks polled
//! only when the test runs them, and an in-memory transport whose other end the test plays
//! (with a tidings-core client connection to make and read frames).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tidings_core::{Connection, Event, Role};

use super::{Engine, spawn};
use crate::runtime::{Runtime, Sleep, Task, Transport};
use crate::trace::ConnSpan;
use crate::{Config, WebSocket};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts the wakes it receives.
#[derive(Default)]
pub(super) struct WakeCount(AtomicUsize);

impl WakeCount {
    pub(super) fn new() -> (Arc<Self>, Waker) {
        let count = Arc::new(WakeCount::default());
        (count.clone(), Waker::from(count))
    }

    pub(super) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
pub(super) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

/// A spawned task: polled by [`TestRuntime::run`] while it is woken.
struct TaskCell {
    future: Mutex<Option<Task>>,
    woken: AtomicBool,
    wakes: AtomicUsize,
    polls: AtomicUsize,
}

impl Wake for TaskCell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.woken.store(true, Ordering::SeqCst);
    }
}

struct SleepState {
    deadline: Instant,
    waker: Option<Waker>,
}

/// The test runtime: its clock moves only with [`advance`](Self::advance).
pub(super) struct TestRuntime {
    now: Arc<Mutex<Instant>>,
    tasks: Mutex<Vec<Arc<TaskCell>>>,
    sleeps: Mutex<Vec<Weak<Mutex<SleepState>>>>,
}

impl TestRuntime {
    /// A runtime for one test (leaked: the engine wants a `'static` runtime).
    pub(super) fn new() -> &'static TestRuntime {
        Box::leak(Box::new(TestRuntime {
            now: Arc::new(Mutex::new(Instant::now())),
            tasks: Mutex::new(Vec::new()),
            sleeps: Mutex::new(Vec::new()),
        }))
    }

    /// Moves the clock on and wakes the sleeps that expired.
    pub(super) fn advance(&self, by: Duration) {
        let now = {
            let mut now = lock(&self.now);
            *now += by;
            *now
        };
        let mut woken = Vec::new();
        lock(&self.sleeps).retain(|sleep| {
            let Some(sleep) = sleep.upgrade() else {
                return false;
            };
            let mut sleep = lock(&sleep);
            if sleep.deadline <= now
                && let Some(w) = sleep.waker.take()
            {
                woken.push(w);
            }
            true
        });
        woken.into_iter().for_each(Waker::wake);
    }

    /// Polls woken tasks until none is woken; returns the number of polls.
    pub(super) fn run(&self) -> usize {
        let mut polls = 0;
        for _ in 0..10_000 {
            let tasks: Vec<_> = lock(&self.tasks).clone();
            let mut any = false;
            for task in tasks {
                if !task.woken.swap(false, Ordering::SeqCst) {
                    continue;
                }
                any = true;
                polls += 1;
                task.polls.fetch_add(1, Ordering::SeqCst);
                let waker = Waker::from(task.clone());
                let mut slot = lock(&task.future);
                if let Some(future) = slot.as_mut()
                    && future
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                {
                    *slot = None;
                }
            }
            if !any {
                return polls;
            }
        }
        panic!("tasks kept waking each other");
    }

    /// How many times the spawned tasks were woken, in all.
    pub(super) fn task_wakes(&self) -> usize {
        lock(&self.tasks)
            .iter()
            .map(|t| t.wakes.load(Ordering::SeqCst))
            .sum()
    }

    /// How many spawned tasks have not finished.
    pub(super) fn live_tasks(&self) -> usize {
        lock(&self.tasks)
            .iter()
            .filter(|t| lock(&t.future).is_some())
            .count()
    }
}

struct TestSleep {
    state: Arc<Mutex<SleepState>>,
    /// The runtime's clock.
    now: Arc<Mutex<Instant>>,
}

impl Sleep for TestSleep {
    fn reset(&mut self, deadline: Instant) {
        lock(&self.state).deadline = deadline;
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = *lock(&self.now);
        let mut state = lock(&self.state);
        if state.deadline <= now {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Runtime for TestRuntime {
    fn now(&self) -> Instant {
        *lock(&self.now)
    }

    fn sleep_until(&self, deadline: Instant) -> Box<dyn Sleep> {
        let state = Arc::new(Mutex::new(SleepState {
            deadline,
            waker: None,
        }));
        lock(&self.sleeps).push(Arc::downgrade(&state));
        Box::new(TestSleep {
            state,
            now: self.now.clone(),
        })
    }

    fn spawn(&self, task: Task) {
        lock(&self.tasks).push(Arc::new(TaskCell {
            future: Mutex::new(Some(task)),
            // Spawned tasks run on the next `run`.
            woken: AtomicBool::new(true),
            wakes: AtomicUsize::new(0),
            polls: AtomicUsize::new(0),
        }));
    }

    fn name(&self) -> &'static str {
        "test"
    }
}

/// What both ends of the in-memory transport share.
#[derive(Default)]
struct PipeState {
    to_engine: BytesMut,
    /// The test end closed its side: reads see end of stream once `to_engine` is drained.
    eof: bool,
    from_engine: Vec<u8>,
    /// How many more bytes the engine may write before its writes wait.
    room: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    reads: usize,
    writes: usize,
    shutdown: bool,
}

/// The engine's end of the in-memory transport.
struct Pipe(Arc<Mutex<PipeState>>);

impl Transport for Pipe {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.0);
        // As a socket does: at most the buffer's spare capacity (the engine reserves before it
        // reads), the rest left for the next read.
        let n = st.to_engine.len().min(buf.capacity() - buf.len());
        if n > 0 {
            buf.extend_from_slice(&st.to_engine.split_to(n));
            st.reads += 1;
            return Poll::Ready(Ok(n));
        }
        if st.eof {
            return Poll::Ready(Ok(0));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.0);
        if st.shutdown {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if st.room == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(st.room - written);
            st.from_engine.extend_from_slice(&buf[..n]);
            written += n;
            if written == st.room {
                break;
            }
        }
        st.room -= written;
        st.writes += 1;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.0).shutdown = true;
        Poll::Ready(Ok(()))
    }
}

/// The test's end of a connection: a client speaking to the engine's server connection through
/// the in-memory transport.
pub(super) struct Peer {
    pipe: Arc<Mutex<PipeState>>,
    /// Makes the client's frames and reads the server's.
    pub(super) client: Connection,
    pub(super) rt: &'static TestRuntime,
}

impl Peer {
    /// Hands what the client queued to the engine (waking its reader).
    pub(super) fn flush(&mut self) {
        let mut wire = Vec::new();
        self.client.poll_transmit(&mut wire);
        self.send_raw(&wire);
    }

    /// Hands raw bytes to the engine.
    pub(super) fn send_raw(&mut self, wire: &[u8]) {
        let waker = {
            let mut st = lock(&self.pipe);
            st.to_engine.extend_from_slice(wire);
            st.read_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ends the client's side of the stream.
    pub(super) fn send_eof(&mut self) {
        let waker = {
            let mut st = lock(&self.pipe);
            st.eof = true;
            st.read_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Lets the engine write `bytes` more (waking a waiting writer).
    pub(super) fn allow(&mut self, bytes: usize) {
        let waker = {
            let mut st = lock(&self.pipe);
            st.room = st.room.saturating_add(bytes);
            st.write_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The events the client decodes from everything the engine wrote so far.
    pub(super) fn events(&mut self) -> Vec<Event> {
        let wire = std::mem::take(&mut lock(&self.pipe).from_engine);
        let now = self.rt.now();
        self.client.receive(now, &wire);
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Bytes the engine wrote that the client has not read yet.
    pub(super) fn unread(&self) -> usize {
        lock(&self.pipe).from_engine.len()
    }

    /// Bytes handed to the engine that it has not read yet.
    pub(super) fn unread_input(&self) -> usize {
        lock(&self.pipe).to_engine.len()
    }

    /// Write calls the engine made.
    pub(super) fn writes(&self) -> usize {
        lock(&self.pipe).writes
    }

    /// Whether the engine shut the transport down.
    pub(super) fn is_shut_down(&self) -> bool {
        lock(&self.pipe).shutdown
    }
}

/// A server WebSocket on the test runtime with `config`, and the client end. The transport
/// takes unlimited writes until [`Peer`] says otherwise with `room`.
pub(super) fn connect(config: &Config, room: usize) -> (WebSocket, Peer) {
    let rt = TestRuntime::new();
    let now = rt.now();
    let pipe = Arc::new(Mutex::new(PipeState {
        room,
        ..PipeState::default()
    }));
    let conn = Connection::server(config.core.clone(), now);
    let span = ConnSpan::upgraded(rt, Role::Server);
    let engine = Engine::new(
        conn,
        Box::new(Pipe(pipe.clone())),
        config,
        rt,
        None,
        None,
        span.clone(),
    );
    let ws = WebSocket::new(engine.clone());
    spawn(engine, &span);
    let client =
        Connection::client_with_masks(tidings_core::Config::default(), || [1, 2, 3, 4], now);
    rt.run();
    (ws, Peer { pipe, client, rt })
}
