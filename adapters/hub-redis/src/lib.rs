//! `tidings-hub-redis`: a [`Backend`] for [`tidings_hub`] that makes the hubs of several
//! processes one hub, through Redis — rooms and broadcasts, presence counts, and the history
//! that Server-Sent Events clients replay with `Last-Event-ID`.
//!
//! ```no_run
//! use tidings_hub::{Hub, HubConfig};
//! use tidings_hub_redis::{RedisBackend, RedisConfig, RedisBackendError};
//!
//! // `rt`: `tidings_tokio::runtime()` or `tidings_smol::runtime()`.
//! async fn run(rt: &'static dyn tidings_io::Runtime) -> Result<(), RedisBackendError> {
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379", RedisConfig::default(), rt).await?;
//! let hub = Hub::builder()
//!     .config(HubConfig::default().history(100))
//!     .backend(backend)
//!     .build();
//! // Use `hub` exactly as an in-process hub: rooms, broadcasts, counts, SSE.
//! # drop(hub);
//! Ok(())
//! }
//! ```
//!
//! # How it works
//!
//! ```text
//!   node A                               Redis                              node B
//!   to_room("r").text(..) ─ PUBLISH ───► <prefix>:room:r ──────────────────► (subscribed while
//!    └ A's members at once                                                    it has members
//!   to_all() / to_rooms() ─ PUBLISH ───► <prefix>:all ─────────────────────►  of r) deliver to
//!                                                                             B's members
//!   presence ── HSET + PEXPIRE ────────► <prefix>:node:<id> ◄── HGETALL ─── counts across nodes
//!   with HubConfig::history(n):
//!   broadcast ─ EVALSHA (id, XADD, PUBLISH in one step) ─► <prefix>:history:<room> (n events)
//! ```
//!
//! * **Broadcasts** go to every node, encoded once per node: a room's on the room's channel,
//!   which a node subscribes to only while it has members in the room (`SUBSCRIBE` when the
//!   room gets its first local member, `UNSUBSCRIBE` when it loses its last); broadcasts to all
//!   clients and to several rooms on the prefix's `all` channel, which every node hears (each
//!   picks its own members of the rooms). A message carries its origin node and the excepted
//!   client, so "everyone but the sender" holds across nodes. One node publishes through one
//!   connection, in order, so every node receives each publisher's broadcasts in the order it
//!   made them. The wire format is in [`frame`].
//! * **Delivery on the publishing node**: without a history, at once, in the caller's task,
//!   as the in-process hub does (the copy that comes back from Redis is skipped). With a
//!   history ([`HubConfig::history`](tidings_hub::HubConfig::history) above 0), every broadcast
//!   is numbered by Redis: a script takes the next event id (the Redis server's clock in
//!   microseconds, kept increasing), appends the event to each target room's stream (trimmed
//!   to the history length) and publishes it, in one atomic step; every node, this one
//!   included, delivers it when it comes back. So event ids increase in delivery order on
//!   every node, and a Server-Sent Events client that reconnects to any node with
//!   `Last-Event-ID` gets exactly what it missed, from the streams.
//! * **Presence**: each node keeps its client count and room sizes in a hash that expires
//!   unless renewed (every fifth of [`RedisConfig::presence_timeout`]), and reads the other
//!   nodes' hashes on the same beat. [`Hub::client_count`](tidings_hub::Hub::client_count),
//!   [`Hub::room_size`](tidings_hub::Hub::room_size) and [`Hub::rooms`](tidings_hub::Hub::rooms)
//!   answer with this node's exact figure plus what the others last reported: a node that dies
//!   without cleaning up drops out of the counts within the timeout (15 s by default).
//!   [`RedisBackend::sync`] brings the figures up to date at once.
//!
//! # Faults
//!
//! * **Redis unreachable at start**: [`RedisBackend::connect`] fails with
//!   [`RedisBackendError::Connect`]; nothing retries behind the application's back.
//! * **Redis lost while running**: the backend reconnects by itself, with a backoff from
//!   [`RedisConfig::reconnect_delay`] doubling up to [`RedisConfig::max_reconnect_delay`],
//!   resubscribes to its channels, writes its presence again, and delivery resumes; the node
//!   keeps serving meanwhile ([`RedisStats::reconnects`]). What an outage loses, as Redis
//!   pub/sub keeps nothing:
//!   * this node's broadcasts made while it is cut off reach only its own clients (counted in
//!     [`RedisStats::dropped`]); with a history they are numbered here, above every id this
//!     node has seen, and are not in the history;
//!   * the other nodes' broadcasts made meanwhile do not reach this node, except, with a
//!     history, those to its rooms that Redis kept: after reconnecting, the node reads its
//!     rooms' streams from the last event it received and delivers what it missed, before
//!     anything newer ([`RedisStats::replayed`]). That covers a node whose own link to Redis
//!     failed while Redis ran on, and a Redis restarted with its data; a Redis restarted
//!     without persistence starts with empty streams.
//!
//!   Room sizes of other nodes stay at their last figure until the next beat after the
//!   reconnection. Measured (`outage_figures` in `tests/tests/hub_redis.rs`): Redis killed for
//!   0.5 s under a publisher sending every millisecond, the other node's deliveries resumed
//!   about 0.24 s after the restart (the backoff's next attempt), and what was published from
//!   the kill until then was lost for the other node; the publishing node's own members got
//!   everything.
//! * **Foreign or malformed messages** on the prefix's channels are dropped and counted
//!   ([`RedisStats::malformed`]), never delivered and never a panic.
//! * **Several applications on one Redis**: every key and channel starts with
//!   [`RedisConfig::prefix`].
//!
//! # Runtimes
//!
//! Feature `tokio` (default) runs the Redis connections on tokio, `smol` on smol; the backend's
//! own task runs on the [`Runtime`] given to [`RedisBackend::connect`] (`tidings_tokio::runtime()`
//! or `tidings_smol::runtime()`).
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_core::Stream;
use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tidings_hub::backend::HistoryFuture;
use tidings_hub::{Backend, Broadcast, HubError, Node, Presence, Target};
use tidings_io::Runtime;

pub mod frame;

/// The script that numbers a broadcast, keeps it in its rooms' histories and publishes it, in
/// one atomic step. `KEYS[1]`: the event id counter; `KEYS[2..]`: the rooms' streams.
/// `ARGV`: the channel, the body, the history length. Returns the event id.
///
/// The id is the Redis server's clock in microseconds, or one more than the last id when the
/// clock has not moved past it: ids only increase, across nodes and across a Redis restart
/// that lost the counter.
const PUBLISH_SCRIPT: &str = r"
local t = redis.call('TIME')
local id = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if id <= last then id = last + 1 end
local ids = string.format('%.0f', id)
redis.call('SET', KEYS[1], ids)
for i = 2, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[3], ids .. '-0', 'b', ARGV[2])
end
redis.call('PUBLISH', ARGV[1], 'tdg1 ' .. ids .. ' ' .. ARGV[2])
return ids
";

/// The settings of a [`RedisBackend`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    prefix: String,
    presence_timeout: Duration,
    reconnect_delay: Duration,
    max_reconnect_delay: Duration,
    response_timeout: Duration,
    connect_timeout: Duration,
    max_queue: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "tidings".to_owned(),
            presence_timeout: Duration::from_secs(15),
            reconnect_delay: Duration::from_millis(50),
            max_reconnect_delay: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_queue: 65_536,
        }
    }
}

impl RedisConfig {
    /// The start of every key and channel name, so that several applications can share one
    /// Redis (nodes of one application use the same prefix). Default `tidings`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a node that stops renewing its presence (it died without cleaning up) keeps
    /// counting on the others; it renews every fifth of it. Default 15 s; at least 50 ms.
    pub fn presence_timeout(mut self, timeout: Duration) -> Self {
        self.presence_timeout = timeout.max(Duration::from_millis(50));
        self
    }

    /// The first wait before reconnecting after Redis was lost; it doubles after each failed
    /// attempt. Default 50 ms.
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.reconnect_delay = delay;
        self
    }

    /// The longest wait between reconnection attempts. Default 2 s.
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// How long a Redis command may take before the connection counts as lost. Default 5 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long connecting to Redis may take. Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most broadcasts waiting to be sent to Redis; beyond it a broadcast fails with
    /// [`HubError::Backend`]. Default 65,536.
    pub fn max_queue(mut self, broadcasts: usize) -> Self {
        self.max_queue = broadcasts.max(1);
        self
    }

    /// The prefix ([`prefix`](Self::prefix)).
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The presence timeout ([`presence_timeout`](Self::presence_timeout)).
    pub fn get_presence_timeout(&self) -> Duration {
        self.presence_timeout
    }
}

/// Why the backend could not start or answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisBackendError {
    /// The Redis URL is not valid.
    Url(redis::RedisError),
    /// Redis could not be reached, or refused the connection.
    Connect(redis::RedisError),
    /// The backend has stopped (its hub was closed).
    Closed,
}

impl fmt::Display for RedisBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisBackendError::Url(e) => write!(f, "invalid Redis URL: {e}"),
            RedisBackendError::Connect(e) => write!(f, "cannot connect to Redis: {e}"),
            RedisBackendError::Closed => f.write_str("the Redis backend has stopped"),
        }
    }
}

impl std::error::Error for RedisBackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisBackendError::Url(e) | RedisBackendError::Connect(e) => Some(e),
            RedisBackendError::Closed => None,
        }
    }
}

/// Counters of a [`RedisBackend`], since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Whether it is connected to Redis now.
    pub connected: bool,
    /// Broadcasts of this node sent to Redis.
    pub published: u64,
    /// Broadcasts received from Redis and delivered here.
    pub received: u64,
    /// Messages on our channels that were not ours or not well-formed, dropped.
    pub malformed: u64,
    /// Broadcasts of this node that reached only its own clients, made while Redis was lost.
    pub dropped: u64,
    /// Broadcasts Redis refused (a script error, say).
    pub failed: u64,
    /// Numbered broadcasts missed while the connection was lost and delivered from the rooms'
    /// histories after it came back.
    pub replayed: u64,
    /// Times the connection was lost and made again.
    pub reconnects: u64,
}

/// A [`Backend`] on Redis; see the [crate docs](crate). A cheap handle: clones share one
/// backend. Pass one to [`HubBuilder::backend`](tidings_hub::HubBuilder::backend); the
/// backend stops when its hub is closed or every handle is dropped.
#[derive(Clone)]
pub struct RedisBackend {
    handle: Arc<Handle>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.handle.shared.config.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Stops the task when the last [`RedisBackend`] goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Key and channel names under the prefix.
struct Keys {
    all: String,
    room: String,
    history: String,
    event_id: String,
    nodes: String,
    node: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            all: format!("{prefix}:all"),
            room: format!("{prefix}:room:"),
            history: format!("{prefix}:history:"),
            event_id: format!("{prefix}:event-id"),
            nodes: format!("{prefix}:nodes"),
            node: format!("{prefix}:node:"),
        }
    }

    fn room_channel(&self, room: &str) -> String {
        format!("{}{room}", self.room)
    }

    fn history(&self, room: &str) -> String {
        format!("{}{room}", self.history)
    }

    fn node(&self, id: &str) -> String {
        format!("{}{id}", self.node)
    }
}

/// A broadcast waiting for the task.
enum Op {
    /// Delivered here already; published as it is.
    Publish { channel: String, message: Vec<u8> },
    /// Numbered by the script, delivered here when it comes back; `fallback` is delivered here
    /// if it never went out.
    Numbered {
        channel: String,
        body: Bytes,
        streams: Vec<String>,
        seq: u64,
        fallback: Broadcast,
    },
}

/// What the application's calls leave for the task.
#[derive(Default)]
struct Pending {
    queue: VecDeque<Op>,
    /// Rooms with members on this node: the channels to be subscribed to.
    rooms: HashSet<String>,
    rooms_changed: bool,
    /// This node's presence.
    clients: usize,
    sizes: HashMap<String, usize>,
    presence_changed: bool,
    syncs: Vec<oneshot::Sender<()>>,
    closing: bool,
    waker: Option<Waker>,
}

/// The other nodes' figures, as last read.
#[derive(Default)]
struct Remote {
    clients: usize,
    sizes: HashMap<String, usize>,
}

struct Shared {
    config: RedisConfig,
    keys: Keys,
    client: redis::Client,
    rt: &'static dyn Runtime,
    node: OnceLock<Node>,
    pending: Mutex<Pending>,
    remote: Mutex<Remote>,
    /// The command connection while connected (for history reads).
    conn: Mutex<Option<MultiplexedConnection>>,
    connected: AtomicBool,
    seq: AtomicU64,
    /// The highest event id seen (ids of this node's outage broadcasts start above it).
    last_id: AtomicU64,
    /// The highest event id received from Redis: after a reconnection, the rooms' streams are
    /// read from there.
    seen: AtomicU64,
    /// The highest sequence number of this node's numbered broadcasts that came back.
    echoed: AtomicU64,
    /// The highest sequence number of this node's numbered broadcasts delivered here without
    /// Redis when the connection was lost (a catch-up skips them if they made it after all).
    fell_back: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    replayed: AtomicU64,
    reconnects: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Runs `change` on the pending state and wakes the task.
    fn change(&self, change: impl FnOnce(&mut Pending)) {
        let waker = {
            let mut pending = lock(&self.pending);
            change(&mut pending);
            pending.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn close(&self) {
        self.change(|p| p.closing = true);
    }

    /// Queues `op` for Redis and returns `delivered`, the clients it reached here already; or,
    /// when the connection was lost since the caller looked, handles it as a broadcast made
    /// while Redis is lost (delivered here only, counted in `dropped`). Checked under the
    /// queue's lock, which a session's last drain also takes after it marks the connection
    /// lost: no broadcast is left in the queue for the next connection to send late.
    fn enqueue(&self, op: Op, delivered: usize) -> usize {
        let waker = {
            let mut pending = lock(&self.pending);
            if self.connected.load(Ordering::Acquire) {
                pending.queue.push_back(op);
                pending.waker.take()
            } else {
                drop(pending);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return match op {
                    Op::Numbered { fallback, .. } => self.deliver_here(fallback, true),
                    Op::Publish { .. } => delivered,
                };
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        delivered
    }

    fn node_id(&self) -> Option<&Arc<str>> {
        self.node.get().map(Node::id)
    }

    /// An id for a numbered broadcast delivered here without Redis: above every id seen, and
    /// on the same microsecond scale as Redis's.
    fn outage_id(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let id = now.max(last + 1);
            match self
                .last_id
                .compare_exchange(last, id, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// Delivers a broadcast that will not go through Redis to this node's clients.
    fn deliver_here(&self, broadcast: Broadcast, numbered: bool) -> usize {
        let Some(node) = self.node.get() else {
            return 0;
        };
        let broadcast = if numbered {
            broadcast.with_event_id(self.outage_id())
        } else {
            broadcast
        };
        node.deliver(&broadcast)
    }
}

impl RedisBackend {
    /// Connects to the Redis at `url` (`redis://HOST:PORT`, `redis://:PASSWORD@HOST/DB`,
    /// `rediss://` where the `redis` crate has TLS), checks that it answers, and starts the
    /// backend's task on `rt`.
    ///
    /// # Errors
    ///
    /// [`RedisBackendError::Url`] for a bad URL, [`RedisBackendError::Connect`] when Redis
    /// cannot be reached (within [`RedisConfig::connect_timeout`]) or refuses.
    pub async fn connect(
        url: &str,
        config: RedisConfig,
        rt: &'static dyn Runtime,
    ) -> Result<RedisBackend, RedisBackendError> {
        let client = redis::Client::open(url).map_err(RedisBackendError::Url)?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.prefix),
            config,
            client,
            rt,
            node: OnceLock::new(),
            pending: Mutex::new(Pending::default()),
            remote: Mutex::new(Remote::default()),
            conn: Mutex::new(None),
            connected: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            last_id: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            echoed: AtomicU64::new(0),
            fell_back: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let session = Session::open(&shared)
            .await
            .map_err(RedisBackendError::Connect)?;
        // Connected from here on: what the application does before the task first runs is
        // queued for it, not treated as an outage.
        *lock(&shared.conn) = Some(session.conn.clone());
        shared.connected.store(true, Ordering::Release);
        let task = shared.clone();
        rt.spawn(Box::pin(run(task, session)));
        Ok(RedisBackend {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Waits until everything this node did before the call has reached Redis (its
    /// broadcasts, room subscriptions and presence), then reads the other nodes' presence, so
    /// that the counts are up to date. While Redis is lost, it waits for the reconnection.
    ///
    /// # Errors
    ///
    /// [`RedisBackendError::Closed`] once the backend has stopped.
    pub async fn sync(&self) -> Result<(), RedisBackendError> {
        let (tx, rx) = oneshot::channel();
        self.handle.shared.change(|p| p.syncs.push(tx));
        rx.await.map_err(|_| RedisBackendError::Closed)
    }

    /// The counters since the start.
    pub fn stats(&self) -> RedisStats {
        let s = &self.handle.shared;
        RedisStats {
            connected: s.connected.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            replayed: s.replayed.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.handle.shared.config
    }
}

impl Backend for RedisBackend {
    fn attach(&self, node: Node) {
        let _ = self.handle.shared.node.set(node);
    }

    fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError> {
        let s = &self.handle.shared;
        let numbered = local.history() > 0;
        if !s.connected.load(Ordering::Acquire) {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(s.deliver_here(broadcast, numbered));
        }
        if lock(&s.pending).queue.len() >= s.config.max_queue {
            return Err(HubError::Backend(format!(
                "{} broadcasts are waiting to be sent to Redis",
                s.config.max_queue
            )));
        }
        let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let body = frame::encode_body(&broadcast, seq);
        let channel = match &broadcast.target {
            Target::Room(room) => s.keys.room_channel(room),
            _ => s.keys.all.clone(),
        };
        if numbered {
            let streams = match &broadcast.target {
                Target::Room(room) => vec![s.keys.history(room)],
                Target::Rooms(rooms) => rooms.iter().map(|r| s.keys.history(r)).collect(),
                _ => Vec::new(),
            };
            let op = Op::Numbered {
                channel,
                body,
                streams,
                seq,
                fallback: broadcast,
            };
            Ok(s.enqueue(op, 0))
        } else {
            let delivered = local.deliver(&broadcast);
            let message = frame::encode(0, &body);
            Ok(s.enqueue(Op::Publish { channel, message }, delivered))
        }
    }

    fn subscribe(&self, room: &str) {
        self.handle.shared.change(|p| {
            p.rooms.insert(room.to_owned());
            p.rooms_changed = true;
        });
    }

    fn unsubscribe(&self, room: &str) {
        self.handle.shared.change(|p| {
            p.rooms.remove(room);
            p.rooms_changed = true;
        });
    }

    fn presence(&self, change: Presence) {
        self.handle.shared.change(|p| {
            match change {
                Presence::Connected(_) => p.clients += 1,
                Presence::Disconnected(_) => p.clients = p.clients.saturating_sub(1),
                Presence::Joined { room, .. } => *p.sizes.entry(room).or_default() += 1,
                Presence::Left { room, .. } => {
                    if let Some(size) = p.sizes.get_mut(&room) {
                        *size = size.saturating_sub(1);
                        if *size == 0 {
                            p.sizes.remove(&room);
                        }
                    }
                }
                _ => {}
            }
            p.presence_changed = true;
        });
    }

    fn client_count(&self, local: usize) -> usize {
        local + lock(&self.handle.shared.remote).clients
    }

    fn room_size(&self, room: &str, local: usize) -> usize {
        local
            + lock(&self.handle.shared.remote)
                .sizes
                .get(room)
                .copied()
                .unwrap_or(0)
    }

    fn rooms(&self, mut local: Vec<String>) -> Vec<String> {
        let remote = lock(&self.handle.shared.remote);
        let known: HashSet<&str> = local.iter().map(String::as_str).collect();
        let more: Vec<String> = remote
            .sizes
            .keys()
            .filter(|room| !known.contains(room.as_str()))
            .cloned()
            .collect();
        local.extend(more);
        local
    }

    fn history(&self, rooms: &[String], after: u64) -> Option<HistoryFuture> {
        let s = &self.handle.shared;
        let length = s.node.get()?.history();
        if length == 0 {
            return None;
        }
        let conn = lock(&s.conn).clone();
        let keys: Vec<String> = rooms.iter().map(|r| s.keys.history(r)).collect();
        Some(Box::pin(async move {
            let mut conn =
                conn.ok_or_else(|| HubError::Backend("Redis is unreachable".to_owned()))?;
            let events = read_history(&mut conn, &keys, after, length)
                .await
                .map_err(|e| HubError::Backend(format!("reading the history from Redis: {e}")))?;
            Ok(events
                .into_iter()
                .map(|(id, frame)| (id, frame.broadcast.payload))
                .collect())
        }))
    }

    fn close(&self) {
        self.handle.shared.close();
    }
}

/// The broadcasts in `keys`' streams numbered after `after` (at most `length` per stream), by
/// id, each once.
async fn read_history(
    conn: &mut MultiplexedConnection,
    keys: &[String],
    after: u64,
    length: usize,
) -> redis::RedisResult<Vec<(u64, frame::Frame)>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("XRANGE")
            .arg(key)
            .arg(format!("({after}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(length);
    }
    let replies: Vec<Vec<(String, Vec<Vec<u8>>)>> = pipe.query_async(conn).await?;
    let mut events: Vec<(u64, frame::Frame)> = Vec::new();
    for (id, fields) in replies.into_iter().flatten() {
        let id = id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse::<u64>().ok())
            .unwrap_or(0);
        // Fields come as name, value: the body is the value of `b`.
        let body = fields
            .chunks(2)
            .find(|pair| pair.first().is_some_and(|name| name == b"b"))
            .and_then(|pair| pair.get(1));
        if let Some(frame) = body.and_then(|body| frame::decode_body(body, id).ok()) {
            events.push((id, frame));
        }
    }
    events.sort_by_key(|(id, _)| *id);
    events.dedup_by_key(|(id, _)| *id);
    Ok(events)
}

/// The connections of one stretch of being connected.
struct Session {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
    sha: String,
}

impl Session {
    async fn open(shared: &Shared) -> redis::RedisResult<Session> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(shared.config.connect_timeout))
            .set_response_timeout(Some(shared.config.response_timeout));
        let mut conn = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PUBLISH_SCRIPT)
            .query_async(&mut conn)
            .await?;
        let (mut sink, stream) = shared.client.get_async_pubsub().await?.split();
        sink.subscribe(&shared.keys.all).await?;
        Ok(Session {
            conn,
            sink,
            stream,
            sha,
        })
    }
}

/// Whether `e` means the connection is gone (rather than one command refused).
fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// The backend's task: runs sessions, reconnecting with a backoff, until closed.
async fn run(shared: Arc<Shared>, first: Session) {
    let mut session = Some(first);
    let mut delay = shared.config.reconnect_delay;
    loop {
        if let Some(current) = session.take() {
            delay = shared.config.reconnect_delay;
            match serve(&shared, current).await {
                Ended::Closed => break,
                Ended::Lost(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, "Redis connection lost; reconnecting");
                }
            }
        }
        if lock(&shared.pending).closing {
            break;
        }
        sleep(shared.rt, delay).await;
        if lock(&shared.pending).closing {
            break;
        }
        match Session::open(&shared).await {
            Ok(next) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::info!("Redis connection restored");
                session = Some(next);
            }
            Err(_) => delay = (delay * 2).min(shared.config.max_reconnect_delay),
        }
    }
    shared.connected.store(false, Ordering::Release);
    *lock(&shared.conn) = None;
    // Whoever waits for a sync learns that the backend has stopped.
    lock(&shared.pending).syncs.clear();
}

enum Ended {
    Closed,
    Lost(redis::RedisError),
}

/// Why the task woke.
enum Wake {
    Work,
    Beat,
    Lost,
}

/// One connected stretch: the receiver runs in its own task; this one sends what the
/// application leaves, keeps the presence, and answers syncs.
async fn serve(shared: &Arc<Shared>, session: Session) -> Ended {
    let Session {
        mut conn,
        mut sink,
        stream,
        sha,
    } = session;
    let mut subscribed: HashSet<String> = HashSet::new();
    let caught_up = match catch_up(shared, &mut conn, &mut sink, &mut subscribed).await {
        Ok(upto) => upto,
        Err(e) => return Ended::Lost(e),
    };
    let stop = Arc::new(Stop::default());
    let (done_tx, done_rx) = oneshot::channel::<()>();
    {
        let shared = shared.clone();
        let stop = stop.clone();
        shared.rt.spawn(Box::pin(async move {
            receive(&shared, stream, &stop, caught_up).await;
            stop.lost.store(true, Ordering::Release);
            shared.change(|_| {});
            let _ = done_tx.send(());
        }));
    }
    *lock(&shared.conn) = Some(conn.clone());
    {
        let mut pending = lock(&shared.pending);
        pending.rooms_changed = true;
        pending.presence_changed = true;
    }
    shared.connected.store(true, Ordering::Release);
    let beat_every = shared.config.presence_timeout / 5;
    let mut timer = shared.rt.sleep_until(shared.rt.now() + beat_every);
    let (outcome, unsent) = loop {
        let wake = std::future::poll_fn(|cx| {
            if stop.lost.load(Ordering::Acquire) {
                return Poll::Ready(Wake::Lost);
            }
            {
                let mut p = lock(&shared.pending);
                if !p.queue.is_empty()
                    || p.rooms_changed
                    || p.presence_changed
                    || !p.syncs.is_empty()
                    || p.closing
                {
                    return Poll::Ready(Wake::Work);
                }
                p.waker = Some(cx.waker().clone());
            }
            if timer.poll_expired(cx).is_ready() {
                return Poll::Ready(Wake::Beat);
            }
            Poll::Pending
        })
        .await;
        if let Wake::Lost = wake {
            let closed = std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the subscription connection closed",
            );
            break (Ended::Lost(redis::RedisError::from(closed)), Vec::new());
        }
        let (batch, rooms, presence, syncs, closing) = {
            let mut p = lock(&shared.pending);
            // Taken first: the room changes made before these broadcasts are in `rooms`, so a
            // room's channel is subscribed to before its broadcasts go out.
            let batch: Vec<Op> = p.queue.drain(..).collect();
            let rooms = std::mem::take(&mut p.rooms_changed).then(|| p.rooms.clone());
            let presence =
                std::mem::take(&mut p.presence_changed).then(|| (p.clients, p.sizes.clone()));
            (
                batch,
                rooms,
                presence,
                std::mem::take(&mut p.syncs),
                p.closing,
            )
        };
        let step = async {
            if let Some(rooms) = rooms {
                let wanted: HashSet<String> =
                    rooms.iter().map(|r| shared.keys.room_channel(r)).collect();
                let add: Vec<&String> = wanted.difference(&subscribed).collect();
                if !add.is_empty() {
                    sink.subscribe(&add).await?;
                }
                let remove: Vec<&String> = subscribed.difference(&wanted).collect();
                if !remove.is_empty() {
                    sink.unsubscribe(&remove).await?;
                }
                subscribed = wanted;
            }
            if !batch.is_empty() {
                send(shared, &mut conn, &sha, &batch).await?;
            }
            if let Some((clients, sizes)) = presence {
                write_presence(shared, &mut conn, clients, &sizes).await?;
            }
            if let Wake::Beat = wake {
                renew_presence(shared, &mut conn).await?;
            }
            if matches!(wake, Wake::Beat) || !syncs.is_empty() {
                read_presence(shared, &mut conn).await?;
            }
            Ok::<(), redis::RedisError>(())
        };
        match step.await {
            Ok(()) => {}
            Err(e) if is_lost(&e) => {
                // Failed after the receiver has stopped, so that no echo comes in between.
                break (Ended::Lost(e), batch);
            }
            Err(_e) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_e, "Redis refused a command");
            }
        }
        for sync in syncs {
            let _ = sync.send(());
        }
        if let Wake::Beat = wake {
            timer.reset(shared.rt.now() + beat_every);
        }
        if closing {
            let _ = remove_presence(shared, &mut conn).await;
            break (Ended::Closed, Vec::new());
        }
    };
    // Disconnected from here on: new broadcasts are delivered here only, and what is left in
    // the queue is too (stored under the queue's lock: see `Shared::enqueue`).
    {
        let _pending = lock(&shared.pending);
        shared.connected.store(false, Ordering::Release);
    }
    *lock(&shared.conn) = None;
    stop.stop();
    let _ = done_rx.await;
    fail_batch(shared, unsent);
    let left: Vec<Op> = lock(&shared.pending).queue.drain(..).collect();
    fail_batch(shared, left);
    outcome
}

/// After a reconnection with a history on: subscribes to this node's rooms at once (what is
/// published from here on waits in the subscription), then delivers what their streams got
/// since the last event this node received. Returns the last id delivered so (the receiver
/// skips what it already had); 0 when there was nothing to catch up.
async fn catch_up(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<String>,
) -> redis::RedisResult<u64> {
    let seen = shared.seen.load(Ordering::Acquire);
    let Some(node) = shared.node.get() else {
        return Ok(0);
    };
    let length = node.history();
    if seen == 0 || length == 0 {
        return Ok(0);
    }
    let rooms: Vec<String> = lock(&shared.pending).rooms.iter().cloned().collect();
    if rooms.is_empty() {
        return Ok(0);
    }
    let channels: HashSet<String> = rooms.iter().map(|r| shared.keys.room_channel(r)).collect();
    sink.subscribe(&channels.iter().collect::<Vec<_>>()).await?;
    *subscribed = channels;
    let keys: Vec<String> = rooms.iter().map(|r| shared.keys.history(r)).collect();
    let missed = read_history(conn, &keys, seen, length).await?;
    let mut upto = 0;
    let fell_back = shared.fell_back.load(Ordering::Relaxed);
    for (id, frame) in missed {
        upto = id;
        let broadcast = frame.broadcast;
        if broadcast.origin == *node.id() && frame.seq <= fell_back {
            continue;
        }
        shared.seen.fetch_max(id, Ordering::AcqRel);
        shared.last_id.fetch_max(id, Ordering::Relaxed);
        shared.replayed.fetch_add(1, Ordering::Relaxed);
        node.deliver(&broadcast);
    }
    Ok(upto)
}

/// Sends a batch of broadcasts in one pipeline.
async fn send(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    sha: &str,
    batch: &[Op],
) -> redis::RedisResult<()> {
    let history = shared.node.get().map_or(0, Node::history).max(1);
    let mut pipe = redis::pipe();
    for op in batch {
        match op {
            Op::Publish { channel, message } => {
                pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
            }
            Op::Numbered {
                channel,
                body,
                streams,
                ..
            } => {
                pipe.cmd("EVALSHA")
                    .arg(sha)
                    .arg(1 + streams.len())
                    .arg(&shared.keys.event_id)
                    .arg(streams)
                    .arg(channel)
                    .arg(body.as_ref())
                    .arg(history)
                    .ignore();
            }
        }
    }
    pipe.query_async::<()>(conn).await?;
    shared
        .published
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Broadcasts that did not (or may not have) gone out: delivered here, numbered ones unless
/// they came back already.
fn fail_batch(shared: &Shared, batch: Vec<Op>) {
    let echoed = shared.echoed.load(Ordering::Acquire);
    for op in batch {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        if let Op::Numbered { seq, fallback, .. } = op
            && seq > echoed
        {
            shared.fell_back.fetch_max(seq, Ordering::Relaxed);
            shared.deliver_here(fallback, true);
        }
    }
}

/// Writes this node's presence whole: `c` the client count, `r:<room>` each room's size.
async fn write_presence(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    clients: usize,
    sizes: &HashMap<String, usize>,
) -> redis::RedisResult<()> {
    let Some(id) = shared.node_id() else {
        return Ok(());
    };
    let key = shared.keys.node(id);
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL").arg(&key).ignore();
    let hset = pipe.cmd("HSET").arg(&key).arg("c").arg(clients);
    for (room, size) in sizes {
        hset.arg(format!("r:{room}")).arg(*size);
    }
    hset.ignore();
    pipe.cmd("PEXPIRE")
        .arg(&key)
        .arg(presence_ttl(shared))
        .ignore();
    pipe.cmd("SADD").arg(&shared.keys.nodes).arg(&**id).ignore();
    pipe.query_async::<()>(conn).await
}

/// How long a node's presence lives unless renewed: three beats.
fn presence_ttl(shared: &Shared) -> u64 {
    u64::try_from((shared.config.presence_timeout * 3 / 5).as_millis()).unwrap_or(u64::MAX)
}

/// Renews this node's presence; writes it again when Redis lost it (a restart).
async fn renew_presence(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    let Some(id) = shared.node_id() else {
        return Ok(());
    };
    let renewed: (i64, i64) = redis::pipe()
        .cmd("PEXPIRE")
        .arg(shared.keys.node(id))
        .arg(presence_ttl(shared))
        .cmd("SADD")
        .arg(&shared.keys.nodes)
        .arg(&**id)
        .query_async(conn)
        .await?;
    if renewed.0 == 0 {
        let (clients, sizes) = {
            let p = lock(&shared.pending);
            (p.clients, p.sizes.clone())
        };
        write_presence(shared, conn, clients, &sizes).await?;
    }
    Ok(())
}

/// Reads the other nodes' presence; forgets nodes whose presence expired.
async fn read_presence(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    let own = shared.node_id().map(|id| &**id);
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&shared.keys.nodes)
        .query_async(conn)
        .await?;
    let others: Vec<&String> = nodes.iter().filter(|n| Some(n.as_str()) != own).collect();
    let mut remote = Remote::default();
    if !others.is_empty() {
        let mut pipe = redis::pipe();
        for node in &others {
            pipe.cmd("HGETALL").arg(shared.keys.node(node));
        }
        let hashes: Vec<HashMap<String, usize>> = pipe.query_async(conn).await?;
        let mut gone = Vec::new();
        for (node, hash) in others.iter().zip(hashes) {
            if hash.is_empty() {
                gone.push(node.as_str());
                continue;
            }
            for (field, value) in hash {
                if field == "c" {
                    remote.clients += value;
                } else if let Some(room) = field.strip_prefix("r:") {
                    *remote.sizes.entry(room.to_owned()).or_default() += value;
                }
            }
        }
        if !gone.is_empty() {
            redis::cmd("SREM")
                .arg(&shared.keys.nodes)
                .arg(&gone)
                .query_async::<()>(conn)
                .await?;
        }
    }
    *lock(&shared.remote) = remote;
    Ok(())
}

/// Removes this node's presence (the hub was closed).
async fn remove_presence(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    let Some(id) = shared.node_id() else {
        return Ok(());
    };
    redis::pipe()
        .cmd("DEL")
        .arg(shared.keys.node(id))
        .ignore()
        .cmd("SREM")
        .arg(&shared.keys.nodes)
        .arg(&**id)
        .ignore()
        .query_async::<()>(conn)
        .await
}

/// Tells the receiver to stop.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    lost: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }
}

/// Delivers what arrives on the subscriptions until the connection ends or `stop`.
async fn receive(shared: &Shared, mut stream: PubSubStream, stop: &Stop, caught_up: u64) {
    loop {
        let next = std::future::poll_fn(|cx| {
            *lock(&stop.waker) = Some(cx.waker().clone());
            if stop.stopped.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            Pin::new(&mut stream).poll_next(cx)
        })
        .await;
        let Some(message) = next else {
            return;
        };
        handle(shared, message.get_payload_bytes(), caught_up);
    }
}

/// One message from a channel: decoded, checked, delivered here (unless numbered at most
/// `caught_up`: delivered from the history already).
fn handle(shared: &Shared, message: &[u8], caught_up: u64) {
    let frame = match frame::decode(message) {
        Ok(frame) => frame,
        Err(_e) => {
            shared.malformed.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::warn!(error = %_e, len = message.len(), "dropped a message that is not ours");
            return;
        }
    };
    let Some(node) = shared.node.get() else {
        return;
    };
    let broadcast = frame.broadcast;
    if let Some(id) = broadcast.event_id {
        if id <= caught_up {
            return;
        }
        shared.last_id.fetch_max(id, Ordering::Relaxed);
        shared.seen.fetch_max(id, Ordering::AcqRel);
    }
    if broadcast.origin == *node.id() {
        match broadcast.event_id {
            // Delivered here when it was made.
            None => return,
            Some(_) => {
                shared.echoed.fetch_max(frame.seq, Ordering::Release);
            }
        }
    }
    shared.received.fetch_add(1, Ordering::Relaxed);
    node.deliver(&broadcast);
}

/// Waits `delay` on the runtime's clock.
async fn sleep(rt: &'static dyn Runtime, delay: Duration) {
    let mut timer = rt.sleep_until(rt.now() + delay);
    std::future::poll_fn(|cx| timer.poll_expired(cx)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("app1");
        assert_eq!(keys.all, "app1:all");
        assert_eq!(keys.room_channel("lobby"), "app1:room:lobby");
        assert_eq!(keys.history("lobby"), "app1:history:lobby");
        assert_eq!(keys.node("n1"), "app1:node:n1");
        assert_eq!(keys.event_id, "app1:event-id");
        assert_eq!(keys.nodes, "app1:nodes");
    }

    #[test]
    fn presence_timeout_has_a_floor() {
        let config = RedisConfig::default().presence_timeout(Duration::ZERO);
        assert_eq!(config.get_presence_timeout(), Duration::from_millis(50));
    }
}
