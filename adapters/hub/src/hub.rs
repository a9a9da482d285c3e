//! The hub: its configuration, its tables of clients and rooms, and broadcasting.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tidings_core::{CloseCode, EncodedFrame, Message, Utf8Bytes};
use tidings_io::sse::SseBody;
use tidings_io::{Config, OutboxError, OutboxLimits, Runtime, WebSocket};

use crate::HubError;
use crate::backend::{Backend, Broadcast, InProcess, Node, Payload, Presence, Target};
use crate::client::{Client, ClientOptions, Sink, lock};
use crate::id::{ClientId, random_hex};
use crate::limit::RateLimit;
use crate::sse::{SseState, SseStream, SseSubscription};

// ---- configuration --------------------------------------------------------------------------

/// Connection settings a hub applies to every client it registers, over the ones the connection
/// was accepted with (the adapter's [`Config`]). `None` keeps the connection's own.
#[derive(Debug, Clone, Default)]
struct Overrides {
    ping_interval: Option<Option<Duration>>,
    pong_timeout: Option<Option<Duration>>,
    idle_timeout: Option<Option<Duration>>,
    write_timeout: Option<Option<Duration>>,
    max_message_size: Option<Option<usize>>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.ping_interval.is_none()
            && self.pong_timeout.is_none()
            && self.idle_timeout.is_none()
            && self.write_timeout.is_none()
            && self.max_message_size.is_none()
    }

    fn apply(&self, mut config: Config) -> Config {
        if let Some(v) = self.ping_interval {
            config = config.ping_interval(v);
        }
        if let Some(v) = self.pong_timeout {
            config = config.pong_timeout(v);
        }
        if let Some(v) = self.idle_timeout {
            config = config.idle_timeout(v);
        }
        if let Some(v) = self.write_timeout {
            config = config.write_timeout(v);
        }
        if let Some(v) = self.max_message_size {
            config = config.max_message_size(v);
        }
        config
    }
}

/// Settings of a [`Hub`].
///
/// Per-client connection settings (ping interval, pong timeout, read and write timeouts, the
/// message size limit) are inherited from the adapter [`Config`] each connection was accepted
/// with; the setters here override them for the hub's clients.
///
/// ```
/// # use std::time::Duration;
/// # use tidings_hub::HubConfig;
/// let config = HubConfig::default()
///     .outbox_messages(64)
///     .ping_interval(Some(Duration::from_secs(20)))
///     .pong_timeout(Some(Duration::from_secs(10)))
///     .max_message_size(Some(64 * 1024));
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    outbox: OutboxLimits,
    slow_client_code: CloseCode,
    overrides: Overrides,
    error_replies: bool,
    rate_limit: Option<RateLimit>,
    history: usize,
    history_rooms: usize,
    #[cfg(feature = "deflate")]
    deflate: Option<tidings_core::ext::deflate::DeflateConfig>,
}

/// Default bound on the rooms that keep an event history: 1,024.
pub const DEFAULT_HISTORY_ROOMS: usize = 1024;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            outbox: OutboxLimits::default(),
            slow_client_code: CloseCode::POLICY_VIOLATION,
            overrides: Overrides::default(),
            error_replies: true,
            rate_limit: None,
            history: 0,
            history_rooms: DEFAULT_HISTORY_ROOMS,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl HubConfig {
    /// The bounds of each client's outbox: how many messages (default 256) and bytes (default
    /// 1 MiB) may wait unwritten before the client counts as too slow and is disconnected.
    pub fn outbox(mut self, limits: OutboxLimits) -> Self {
        self.outbox = limits;
        self
    }

    /// The message bound of each client's outbox (default 256).
    pub fn outbox_messages(mut self, messages: usize) -> Self {
        self.outbox = self.outbox.messages(messages);
        self
    }

    /// The byte bound of each client's outbox (default 1 MiB).
    pub fn outbox_bytes(mut self, bytes: usize) -> Self {
        self.outbox = self.outbox.bytes(bytes);
        self
    }

    /// The close code sent to a client disconnected because its outbox was full. Default 1008
    /// (policy violation, RFC 6455 §7.4.1): the client broke the hub's rule that it read what it
    /// is sent; 1013 (try again later) would tell a well-behaved client the server is
    /// overloaded, which it is not.
    pub fn slow_client_code(mut self, code: CloseCode) -> Self {
        self.slow_client_code = code;
        self
    }

    /// The close code for slow clients.
    pub fn get_slow_client_code(&self) -> CloseCode {
        self.slow_client_code
    }

    /// The outbox limits.
    pub fn get_outbox(&self) -> OutboxLimits {
        self.outbox
    }

    /// Sends a keepalive ping this often (overrides the connection's setting).
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.overrides.ping_interval = Some(every);
        self
    }

    /// Fails a client whose pong does not arrive within this time (overrides the connection's
    /// setting).
    pub fn pong_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.overrides.pong_timeout = Some(timeout);
        self
    }

    /// Closes a client that sent nothing for this long (overrides the connection's setting).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.overrides.idle_timeout = Some(timeout);
        self
    }

    /// Fails a client whose socket accepts nothing for this long (overrides the connection's
    /// setting).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.overrides.write_timeout = Some(timeout);
        self
    }

    /// The largest message a client may send; a larger one closes it with 1009 (overrides the
    /// connection's setting).
    pub fn max_message_size(mut self, limit: Option<usize>) -> Self {
        self.overrides.max_message_size = Some(limit);
        self
    }

    /// Whether invalid input and handler errors are answered to the client with
    /// `{"type":"error","payload":{"message":"…"}}` (default on, with the `json` feature).
    pub fn error_replies(mut self, on: bool) -> Self {
        self.error_replies = on;
        self
    }

    /// Whether error replies are on.
    pub fn get_error_replies(&self) -> bool {
        self.error_replies
    }

    /// Limits the messages each WebSocket client may send (a token bucket per connection,
    /// checked before a message reaches the handler or the [`Incoming`](crate::Incoming)
    /// stream). A message over the limit is dropped and, by default, answered with
    /// `{"type":"error","payload":{"message":"rate limit exceeded"}}` (the error hooks see
    /// [`HubError::RateLimited`]); with [`RateLimit::close_on_exceed`] the connection is closed
    /// with 1008 instead. Control frames (ping, pong) are not counted. Default: no limit.
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// The per-client message rate limit.
    pub fn get_rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }

    /// Keeps the last `events` broadcasts to each room (text messages and events), numbered, so
    /// that a Server-Sent Events subscriber that reconnects with `Last-Event-ID` gets those it
    /// missed ([`SseSubscription::last_event_id`](crate::SseSubscription::last_event_id)).
    /// A history outlives its room's members. Default 0: no history.
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }

    /// The most rooms that keep a history; beyond it the oldest room's history goes. Bounds
    /// the memory of histories at about `history × history_rooms` events. Default 1,024.
    pub fn history_rooms(mut self, rooms: usize) -> Self {
        self.history_rooms = rooms;
        self
    }

    /// The history length per room ([`history`](Self::history)).
    pub fn get_history(&self) -> usize {
        self.history
    }

    /// Compresses each broadcast once with these settings (level, threshold,
    /// `server_max_window_bits`) for the clients that negotiated permessage-deflate without
    /// context takeover and with a window at least as large; the others get the plain frame.
    /// Use the [`DeflateConfig`](tidings_core::ext::deflate::DeflateConfig) the server accepts
    /// with. Off by default (broadcasts go uncompressed; clients' own messages are compressed
    /// by their connection as negotiated).
    ///
    /// Each broadcast borrows a compressor from the config's
    /// [`CompressorPool`](tidings_core::ext::deflate::CompressorPool) for the time it is
    /// compressed. A config without one gets a pool of its own when the hub is built, so a
    /// [`Hub`] owns one pool (a few compressors, one per broadcast compressed at the same time,
    /// about 371 KiB each with a 15-bit window) instead of making a compressor per broadcast.
    /// To share one pool with the server's connections, give the hub and the server's
    /// [`Config`] the same `DeflateConfig`, with a pool set.
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, config: Option<tidings_core::ext::deflate::DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }
}

// ---- hooks ----------------------------------------------------------------------------------

type ClientHook = Arc<dyn Fn(&Client) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Client, &HubError) + Send + Sync>;

#[derive(Default, Clone)]
struct Hooks {
    on_connect: Vec<ClientHook>,
    on_disconnect: Vec<ClientHook>,
    on_error: Vec<ErrorHook>,
}

/// Builds a [`Hub`] with hooks and a backend.
///
/// ```
/// # use tidings_hub::{Hub, HubConfig};
/// let hub = Hub::builder()
///     .config(HubConfig::default().outbox_messages(128))
///     .on_connect(|client| println!("{} connected", client.id()))
///     .on_disconnect(|client| println!("{} left rooms {:?}", client.id(), client.rooms()))
///     .build();
/// # drop(hub);
/// ```
#[must_use]
pub struct HubBuilder {
    config: HubConfig,
    backend: Arc<dyn Backend>,
    hooks: Hooks,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// The hub's settings.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// The [`Backend`] that carries broadcasts, room subscriptions, presence and counts across
    /// processes. Default [`InProcess`].
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Arc::new(backend);
        self
    }

    /// Runs `hook` for each client once it is registered, before its first message is handled.
    pub fn on_connect(mut self, hook: impl Fn(&Client) + Send + Sync + 'static) -> Self {
        self.hooks.on_connect.push(Arc::new(hook));
        self
    }

    /// Runs `hook` once for each client whose connection ended (whichever side ended it), while
    /// it is still in its rooms ([`Client::rooms`]); it then leaves them and the hub.
    pub fn on_disconnect(mut self, hook: impl Fn(&Client) + Send + Sync + 'static) -> Self {
        self.hooks.on_disconnect.push(Arc::new(hook));
        self
    }

    /// Runs `hook` for every handler error and every invalid message (before the error reply,
    /// if [`HubConfig::error_replies`] is on).
    pub fn on_error(mut self, hook: impl Fn(&Client, &HubError) + Send + Sync + 'static) -> Self {
        self.hooks.on_error.push(Arc::new(hook));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let backend = self.backend;
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut config = self.config;
        // The hub's own compressor pool for broadcasts, unless the config brought one.
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut config.deflate
            && deflate.get_compressor_pool().is_none()
        {
            *deflate = std::mem::take(deflate)
                .compressor_pool(tidings_core::ext::deflate::CompressorPool::new());
        }
        let id: Arc<str> = random_hex().into();
        let inner = Arc::new_cyclic(|weak| HubInner {
            node: Node::new(id, weak.clone()),
            config,
            backend: backend.clone(),
            hooks: self.hooks,
            state: RwLock::new(State::default()),
            closed: AtomicBool::new(false),
            deflate_takers: AtomicUsize::new(0),
            reports: Mutex::new(Reports::default()),
            idle: Mutex::new(IdleWaiters::default()),
            sse: Mutex::new(SseState::default()),
            sse_clients: AtomicUsize::new(0),
        });
        backend.attach(inner.node.clone());
        Hub { inner }
    }
}

// ---- the tables -----------------------------------------------------------------------------

#[derive(Default)]
struct State {
    clients: HashMap<ClientId, Member>,
    rooms: HashMap<Arc<str>, RoomState>,
}

struct Member {
    client: Client,
    rooms: HashSet<Arc<str>>,
}

#[derive(Default)]
struct RoomState {
    members: HashMap<ClientId, Client>,
    pinned: bool,
}

pub(crate) struct HubInner {
    node: Node,
    config: HubConfig,
    backend: Arc<dyn Backend>,
    hooks: Hooks,
    state: RwLock<State>,
    closed: AtomicBool,
    /// Clients that take broadcasts compressed once.
    deflate_takers: AtomicUsize,
    /// Backend notifications not yet reported.
    reports: Mutex<Reports>,
    /// Tasks waiting for the hub to have no clients.
    idle: Mutex<IdleWaiters>,
    /// Event ids and room histories of Server-Sent Events.
    sse: Mutex<SseState>,
    /// Server-Sent Events clients connected (broadcasts skip the SSE work when there are none
    /// and no history is kept).
    sse_clients: AtomicUsize,
}

/// The wakers of [`Hub::idle`] futures, each removed when its future is dropped.
#[derive(Default)]
struct IdleWaiters {
    next: u64,
    waiters: HashMap<u64, Waker>,
}

/// Room changes to report to the backend once the lock is released.
#[derive(Default)]
struct Changes {
    presence: Vec<Presence>,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
}

/// Backend notifications waiting to be reported, in the order the changes were made.
#[derive(Default)]
struct Reports {
    queue: std::collections::VecDeque<Changes>,
    draining: bool,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.presence.is_empty() && self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }

    fn report(self, backend: &dyn Backend) {
        for room in &self.subscribe {
            backend.subscribe(room);
        }
        for change in self.presence {
            backend.presence(change);
        }
        for room in &self.unsubscribe {
            backend.unsubscribe(room);
        }
    }
}

impl HubInner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<(), HubError> {
        if self.is_closed() {
            Err(HubError::HubClosed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn config(&self) -> &HubConfig {
        &self.config
    }

    // ---- clients ------------------------------------------------------------------------

    /// Makes `ws` a client: applies the hub's connection settings, creates its outbox, and adds
    /// it to the table; then the connect hooks run.
    pub(crate) fn register(
        self: &Arc<Self>,
        ws: &WebSocket,
        options: ClientOptions,
    ) -> Result<Client, HubError> {
        self.check_open()?;
        if !self.config.overrides.is_empty() {
            ws.set_config(&self.config.overrides.apply(ws.config()));
        }
        #[cfg(feature = "deflate")]
        let takes_deflated = self
            .config
            .deflate
            .as_ref()
            .is_some_and(|d| ws.accepts_deflated(d.get_server_max_window_bits()));
        #[cfg(not(feature = "deflate"))]
        let takes_deflated = false;
        let id = options.id.unwrap_or_else(ClientId::generate);
        let client = Client::new(
            id,
            ws,
            options.data,
            Arc::downgrade(self),
            &self.config,
            takes_deflated,
        );
        self.insert(&client, &[], None)?;
        Ok(client)
    }

    /// Adds `client` to the table and to `rooms` in one step, sending it (an SSE client) the
    /// events of those rooms' histories numbered after `replay_after`; then the connect hooks
    /// run.
    fn insert(
        &self,
        client: &Client,
        rooms: &[String],
        replay_after: Option<u64>,
    ) -> Result<(), HubError> {
        let id = client.id().clone();
        let mut changes = Changes::default();
        {
            let mut st = self.write();
            // Checked again under the lock: `close` sets the flag, then takes the lock to list
            // the clients it closes.
            self.check_open()?;
            if st.clients.contains_key(&id) {
                return Err(HubError::DuplicateClient(id));
            }
            st.clients.insert(
                id.clone(),
                Member {
                    client: client.clone(),
                    rooms: HashSet::new(),
                },
            );
            changes.presence.push(Presence::Connected(id.clone()));
            for room in rooms {
                add_to_room(&mut st, room, client, &mut changes);
            }
            if let Some(after) = replay_after {
                // Under the table lock: no broadcast to these rooms runs meanwhile, so the
                // client gets each event once, from the history or live.
                let events = lock(&self.sse).since(rooms, after);
                for (_, event) in events {
                    if client.send_sse_encoded(event).is_err() {
                        break;
                    }
                }
            }
            self.queue_report(changes);
        }
        self.flush_reports();
        if client.0.takes_deflated {
            self.deflate_takers.fetch_add(1, Ordering::Relaxed);
        }
        if client.is_sse() {
            self.sse_clients.fetch_add(1, Ordering::Relaxed);
        }
        for hook in &self.hooks.on_connect {
            hook(client);
        }
        Ok(())
    }

    /// Removes a client whose connection ended: the disconnect hooks run (the client still in
    /// its rooms), then it leaves its rooms and the table.
    pub(crate) fn unregister(&self, client: &Client) {
        for hook in &self.hooks.on_disconnect {
            hook(client);
        }
        let id = client.id();
        let mut changes = Changes::default();
        let empty = {
            let mut st = self.write();
            let is_this = st
                .clients
                .get(id)
                .is_some_and(|m| Arc::ptr_eq(&m.client.0, &client.0));
            if is_this && let Some(member) = st.clients.remove(id) {
                for room in member.rooms {
                    remove_from_room(&mut st, &room, id, &mut changes);
                }
                changes.presence.push(Presence::Disconnected(id.clone()));
            }
            self.queue_report(std::mem::take(&mut changes));
            st.clients.is_empty()
        };
        self.flush_reports();
        if client.0.takes_deflated {
            self.deflate_takers.fetch_sub(1, Ordering::Relaxed);
        }
        if client.is_sse() {
            self.sse_clients.fetch_sub(1, Ordering::Relaxed);
        }
        if empty {
            for (_, waker) in lock(&self.idle).waiters.drain() {
                waker.wake();
            }
        }
    }

    /// Queues the backend notifications of a change; called with the state lock held, so the
    /// queue is in the order the changes were made.
    fn queue_report(&self, changes: Changes) {
        if !changes.is_empty() {
            lock(&self.reports).queue.push_back(changes);
        }
    }

    /// Reports the queued notifications to the backend, in order, outside the state lock. One
    /// caller at a time drains the queue; a change made meanwhile (by another task, or by the
    /// backend itself from inside a notification) is queued and reported by that drainer after
    /// the ones before it — so a join racing the last leave of a room ends subscribed.
    fn flush_reports(&self) {
        {
            let mut reports = lock(&self.reports);
            if reports.draining || reports.queue.is_empty() {
                return;
            }
            reports.draining = true;
        }
        // Lets go of the drain if a backend call panics.
        struct Draining<'a>(&'a Mutex<Reports>);
        impl Drop for Draining<'_> {
            fn drop(&mut self) {
                lock(self.0).draining = false;
            }
        }
        let _draining = Draining(&self.reports);
        loop {
            let Some(changes) = lock(&self.reports).queue.pop_front() else {
                return;
            };
            changes.report(&*self.backend);
        }
    }

    pub(crate) fn report_error(&self, client: &Client, error: &HubError) {
        for hook in &self.hooks.on_error {
            hook(client, error);
        }
    }

    // ---- rooms --------------------------------------------------------------------------------

    pub(crate) fn join(&self, room: &str, client: &Client) -> Result<bool, HubError> {
        self.check_open()?;
        let mut changes = Changes::default();
        let joined = {
            let mut st = self.write();
            let Some(joined) = add_to_room(&mut st, room, client, &mut changes) else {
                return Err(HubError::ConnectionClosed {
                    outcome: client.close_outcome(),
                });
            };
            self.queue_report(std::mem::take(&mut changes));
            joined
        };
        self.flush_reports();
        Ok(joined)
    }

    pub(crate) fn leave(&self, room: &str, id: &ClientId) -> bool {
        let mut changes = Changes::default();
        let left = {
            let mut st = self.write();
            let left = st.clients.get_mut(id).is_some_and(|m| m.rooms.remove(room));
            if left {
                remove_from_room(&mut st, room, id, &mut changes);
            }
            self.queue_report(std::mem::take(&mut changes));
            left
        };
        self.flush_reports();
        left
    }

    pub(crate) fn in_room(&self, room: &str, id: &ClientId) -> bool {
        self.read()
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains_key(id))
    }

    pub(crate) fn client_rooms(&self, id: &ClientId) -> Vec<String> {
        let st = self.read();
        let mut rooms: Vec<String> = st
            .clients
            .get(id)
            .map(|m| m.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }

    fn create_room(&self, room: &str) -> Result<(), HubError> {
        self.check_open()?;
        let mut st = self.write();
        if !st.rooms.contains_key(room) {
            st.rooms.insert(room.into(), RoomState::default());
        }
        Ok(())
    }

    fn has_room(&self, room: &str) -> bool {
        self.read().rooms.contains_key(room)
    }

    fn local_room_size(&self, room: &str) -> usize {
        self.read().rooms.get(room).map_or(0, |r| r.members.len())
    }

    fn set_pinned(&self, room: &str, pinned: bool) -> Result<(), HubError> {
        let mut st = self.write();
        let state = st
            .rooms
            .get_mut(room)
            .ok_or_else(|| HubError::RoomNotFound(room.to_owned()))?;
        state.pinned = pinned;
        if !pinned && state.members.is_empty() {
            st.rooms.remove(room);
        }
        Ok(())
    }

    fn delete_room(&self, room: &str) -> Result<usize, HubError> {
        let mut changes = Changes::default();
        let removed = {
            let mut st = self.write();
            let state = st
                .rooms
                .remove(room)
                .ok_or_else(|| HubError::RoomNotFound(room.to_owned()))?;
            for id in state.members.keys() {
                if let Some(member) = st.clients.get_mut(id) {
                    member.rooms.remove(room);
                }
                changes.presence.push(Presence::Left {
                    room: room.to_owned(),
                    client: id.clone(),
                });
            }
            if !state.members.is_empty() {
                changes.unsubscribe.push(room.to_owned());
            }
            self.queue_report(std::mem::take(&mut changes));
            state.members.len()
        };
        self.flush_reports();
        Ok(removed)
    }

    // ---- broadcasting -------------------------------------------------------------------------

    fn publish(
        &self,
        target: Target,
        except: Option<ClientId>,
        payload: Payload,
    ) -> Result<usize, HubError> {
        self.check_open()?;
        let broadcast = Broadcast::new(target, payload, self.node.id().clone()).except(except);
        self.backend.publish(broadcast, &self.node)
    }

    /// Encodes `message` once for all recipients: the plain frame, and the compressed one when
    /// clients can take it.
    fn encode(&self, message: &Message) -> EncodedFrame {
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.config.deflate
            && self.deflate_takers.load(Ordering::Relaxed) > 0
        {
            return EncodedFrame::with_deflate(message, deflate);
        }
        EncodedFrame::new(message)
    }

    /// Queues `broadcast` to this node's clients it is for; see [`Node::deliver`]. WebSocket
    /// clients get one frame encoded once; SSE clients one event encoded once, numbered and
    /// kept in the rooms' histories when they are on.
    pub(crate) fn deliver(&self, broadcast: &Broadcast) -> usize {
        let sse_on = self.sse_clients.load(Ordering::Relaxed) > 0;
        // A broadcast the backend numbered is kept in the backend's history, not here.
        let history = self.config.history > 0
            && broadcast.event_id.is_none()
            && !matches!(broadcast.target, Target::All);
        let mut frame = None;
        let except = broadcast.except.as_ref();
        let mut delivered = 0;
        let mut slow = Vec::new();
        let mut sse_members = Vec::new();
        {
            let st = self.read();
            let mut send = |client: &Client| {
                if except == Some(client.id()) {
                    return;
                }
                let outbox = match &client.0.sink {
                    Sink::WebSocket(outbox) => outbox,
                    Sink::Sse(_) => {
                        sse_members.push(client.clone());
                        return;
                    }
                };
                let frame =
                    frame.get_or_insert_with(|| self.encode(&broadcast.payload.to_message()));
                match outbox.try_send_encoded(frame) {
                    Ok(()) => delivered += 1,
                    Err(OutboxError::Full { .. }) => slow.push(client.clone()),
                    Err(_) => {}
                }
            };
            let rooms: &[String] = match &broadcast.target {
                Target::All => {
                    st.clients.values().for_each(|m| send(&m.client));
                    &[]
                }
                Target::Room(room) => {
                    if let Some(room) = st.rooms.get(room.as_str()) {
                        room.members.values().for_each(send);
                    }
                    std::slice::from_ref(room)
                }
                Target::Rooms(rooms) => {
                    let mut seen = HashSet::new();
                    for room in rooms {
                        if let Some(room) = st.rooms.get(room.as_str()) {
                            for client in room.members.values() {
                                if seen.insert(client.id()) {
                                    send(client);
                                }
                            }
                        }
                    }
                    rooms
                }
            };
            if (sse_on && !sse_members.is_empty()) || history {
                // Still under the table lock, so a subscriber joining meanwhile gets this event
                // either from the history or live, never both and never neither.
                let mut sse = lock(&self.sse);
                let id = broadcast.event_id.unwrap_or_else(|| sse.next_id());
                if let Some(event) = crate::sse::encode(&broadcast.payload, id) {
                    if history {
                        for room in rooms {
                            sse.record(
                                room,
                                id,
                                &event,
                                self.config.history,
                                self.config.history_rooms,
                            );
                        }
                    }
                    for client in &sse_members {
                        // A full queue disconnects the client (`send_sse_encoded`).
                        if client.send_sse_event(id, event.clone()).is_ok() {
                            delivered += 1;
                        }
                    }
                }
            }
        }
        for client in slow {
            client.disconnect_slow();
        }
        delivered
    }

    /// Subscribes a Server-Sent Events client; see [`Hub::subscribe_sse`].
    fn subscribe_sse(
        self: &Arc<Self>,
        rt: &'static dyn Runtime,
        subscription: SseSubscription,
    ) -> Result<SseStream, HubError> {
        self.check_open()?;
        let (sender, body) = SseBody::channel(rt, subscription.config);
        let id = subscription.id.unwrap_or_else(ClientId::generate);
        let client = Client::new_sse(
            id,
            sender,
            subscription.data,
            Arc::downgrade(self),
            &self.config,
        );
        let remote = subscription
            .last_event_id
            .and_then(|after| Some((after, self.backend.history(&subscription.rooms, after)?)));
        let Some((after, history)) = remote else {
            self.insert(&client, &subscription.rooms, subscription.last_event_id)?;
            return Ok(SseStream::new(body, client));
        };
        // The backend keeps the history: live events are held back from the moment the client
        // joins until the history has come and been sent; then those the history did not have.
        client.hold_sse();
        self.insert(&client, &subscription.rooms, None)?;
        let replaying = client.clone();
        let hub = Arc::downgrade(self);
        rt.spawn(Box::pin(async move {
            // Without its history, the client still gets the live events (the error goes to
            // the error hooks).
            let events = history.await.unwrap_or_else(|error| {
                if let Some(hub) = hub.upgrade() {
                    hub.report_error(&replaying, &error);
                }
                Vec::new()
            });
            let replayed = events
                .into_iter()
                .filter(|(id, _)| *id > after)
                .filter_map(|(id, payload)| Some((id, crate::sse::encode(&payload, id)?)))
                .collect();
            replaying.release_sse(replayed);
        }));
        Ok(SseStream::new(body, client))
    }
}

/// Adds `client` (in the table) to `room`'s members, creating the room; whether it joined
/// (`false`: already a member). `None` if the client is not in the table.
fn add_to_room(st: &mut State, room: &str, client: &Client, changes: &mut Changes) -> Option<bool> {
    let State { clients, rooms } = st;
    let id = client.id();
    let member = clients.get_mut(id).filter(|m| m.client == *client)?;
    let name: Arc<str> = match rooms.get_key_value(room) {
        Some((name, _)) => name.clone(),
        None => room.into(),
    };
    let state = rooms.entry(name.clone()).or_default();
    let joined = state.members.insert(id.clone(), client.clone()).is_none();
    if joined {
        member.rooms.insert(name);
        if state.members.len() == 1 {
            changes.subscribe.push(room.to_owned());
        }
        changes.presence.push(Presence::Joined {
            room: room.to_owned(),
            client: id.clone(),
        });
    }
    Some(joined)
}

/// Removes `id` from `room`'s members (the caller removed `room` from the member's set); an
/// unpinned room left empty goes away.
fn remove_from_room(st: &mut State, room: &str, id: &ClientId, changes: &mut Changes) {
    let Some(state) = st.rooms.get_mut(room) else {
        return;
    };
    if state.members.remove(id).is_none() {
        return;
    }
    changes.presence.push(Presence::Left {
        room: room.to_owned(),
        client: id.clone(),
    });
    if state.members.is_empty() {
        changes.unsubscribe.push(room.to_owned());
        if !state.pinned {
            st.rooms.remove(room);
        }
    }
}

// ---- the public handle --------------------------------------------------------------------------

/// A set of clients and named rooms, with broadcasts encoded once.
///
/// Cheap to clone (a handle on shared state); runtime-neutral (it runs on `tidings-io`, so the
/// same hub works under `tidings-tokio` and `tidings-smol`). Clients are added by running their
/// WebSocket with [`serve`](Self::serve), [`run`](Self::run) or [`attach`](Self::attach), or
/// through a route ([`route`](Self::route)).
///
/// ```
/// # use tidings_hub::Hub;
/// let hub = Hub::new();
/// let lobby = hub.room("lobby").unwrap();      // get or create
/// assert!(hub.get_room("nowhere").is_none());  // get existing
/// assert_eq!(lobby.size(), 0);
/// hub.to_room("lobby").text("hello").unwrap(); // no members: delivered to none
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("node", self.inner.node.id())
            .field("clients", &self.client_count())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// A hub with the default settings and the in-process backend.
    pub fn new() -> Self {
        Hub::builder().build()
    }

    /// A hub with `config` and the in-process backend.
    pub fn with_config(config: HubConfig) -> Self {
        Hub::builder().config(config).build()
    }

    /// A builder for hooks and a backend.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            config: HubConfig::default(),
            backend: Arc::new(InProcess),
            hooks: Hooks::default(),
        }
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// This node: its ID, and the way in for a backend's deliveries.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    // ---- clients ----------------------------------------------------------------------------

    /// Clients connected (across nodes, as the backend counts them).
    pub fn client_count(&self) -> usize {
        let local = self.inner.read().clients.len();
        self.inner.backend.client_count(local)
    }

    /// The clients connected to this node.
    pub fn clients(&self) -> Vec<Client> {
        self.inner
            .read()
            .clients
            .values()
            .map(|m| m.client.clone())
            .collect()
    }

    /// The client with this ID on this node.
    pub fn client(&self, id: &str) -> Option<Client> {
        self.inner.read().clients.get(id).map(|m| m.client.clone())
    }

    /// Resolves once the hub has no clients on this node (at once if it has none now): after
    /// [`close`](Self::close), every client has gone.
    pub fn idle(&self) -> Idle<'_> {
        Idle {
            hub: &self.inner,
            id: None,
        }
    }

    /// Closes the hub: every client is sent close 1001 (going away) and leaves once its
    /// connection ends; new clients, rooms and broadcasts are refused with
    /// [`HubError::HubClosed`]. Returns how many clients were sent the close. Idempotent.
    pub fn close(&self) -> usize {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        let clients = self.clients();
        let closed = clients
            .iter()
            .filter(|c| matches!(c.close(CloseCode::GOING_AWAY, "hub closed"), Ok(true)))
            .count();
        self.inner.backend.close();
        closed
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    // ---- rooms ------------------------------------------------------------------------------

    /// The room named `name`, created (empty) if it does not exist. An empty room goes away when
    /// its last member leaves, unless [pinned](Room::pin).
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`].
    pub fn room(&self, name: &str) -> Result<Room, HubError> {
        self.inner.create_room(name)?;
        Ok(self.room_handle(name))
    }

    /// The room named `name`, if it exists on this node.
    pub fn get_room(&self, name: &str) -> Option<Room> {
        self.inner.has_room(name).then(|| self.room_handle(name))
    }

    fn room_handle(&self, name: &str) -> Room {
        Room {
            hub: self.clone(),
            name: name.into(),
        }
    }

    /// Whether a room named `name` exists on this node.
    pub fn has_room(&self, name: &str) -> bool {
        self.inner.has_room(name)
    }

    /// The names of the rooms (across nodes, as the backend knows them), sorted.
    pub fn rooms(&self) -> Vec<String> {
        let local: Vec<String> = self
            .inner
            .read()
            .rooms
            .keys()
            .map(|r| r.to_string())
            .collect();
        let mut rooms = self.inner.backend.rooms(local);
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// Members of `name` (across nodes, as the backend counts them); 0 if there is no such room.
    pub fn room_size(&self, name: &str) -> usize {
        let local = self.inner.local_room_size(name);
        self.inner.backend.room_size(name, local)
    }

    /// Deletes the room: its members leave it. Returns how many there were.
    ///
    /// # Errors
    ///
    /// [`HubError::RoomNotFound`].
    pub fn delete_room(&self, name: &str) -> Result<usize, HubError> {
        self.inner.delete_room(name)
    }

    // ---- broadcasting -------------------------------------------------------------------------

    /// Subscribes a Server-Sent Events client: it becomes a client of the hub (counted by
    /// [`client_count`](Self::client_count), seen by the hooks) in the subscription's rooms,
    /// where room broadcasts reach it like the WebSocket members (encoded once per format:
    /// text messages as `data:`, events as `event: <name>`, each with an `id:`). With a
    /// `Last-Event-ID` and [`HubConfig::history`] on, the events of its rooms it missed are
    /// sent first. Return the stream from an HTTP route; when the client goes away (the
    /// server drops the body), it leaves the hub. `rt` runs its heartbeat timer.
    ///
    /// ```
    /// # use tidings_hub::{Hub, HubConfig, SseSubscription};
    /// # fn route(rt: &'static dyn tidings_io::Runtime, headers: &http::HeaderMap) {
    /// let hub = Hub::with_config(HubConfig::default().history(100));
    /// let stream = hub
    ///     .subscribe_sse(rt, SseSubscription::new().room("feed").last_event_id_from(headers))
    ///     .unwrap();
    /// let response = stream.into_response(); // text/event-stream
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`]; [`HubError::DuplicateClient`] for the ID of a connected client.
    pub fn subscribe_sse(
        &self,
        rt: &'static dyn Runtime,
        subscription: SseSubscription,
    ) -> Result<SseStream, HubError> {
        self.inner.subscribe_sse(rt, subscription)
    }

    /// A broadcast to every client.
    pub fn to_all(&self) -> Broadcaster<'_> {
        Broadcaster::new(self, Target::All)
    }

    /// A broadcast to the members of `room`.
    pub fn to_room(&self, room: &str) -> Broadcaster<'_> {
        Broadcaster::new(self, Target::Room(room.to_owned()))
    }

    /// A broadcast to the members of any of `rooms`, each client once.
    pub fn to_rooms<I, S>(&self, rooms: I) -> Broadcaster<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Broadcaster::new(
            self,
            Target::Rooms(rooms.into_iter().map(Into::into).collect()),
        )
    }

    /// Sends `message` to every client: shorthand for `to_all().send(message)`.
    ///
    /// # Errors
    ///
    /// See [`Broadcaster::send`].
    pub fn broadcast(&self, message: Message) -> Result<usize, HubError> {
        self.to_all().send(message)
    }

    /// Sends `message` to every client but `except`.
    ///
    /// # Errors
    ///
    /// See [`Broadcaster::send`].
    pub fn broadcast_except(&self, message: Message, except: &ClientId) -> Result<usize, HubError> {
        self.to_all().except(except).send(message)
    }
}

/// One broadcast being addressed: from [`Hub::to_all`], [`Hub::to_room`], [`Hub::to_rooms`] or
/// [`Room::broadcast`]; optionally [`except`](Self::except) one client; then sent with
/// [`send`](Self::send) or a typed variant.
///
/// The message is encoded once (one [`EncodedFrame`], its bytes shared by every recipient's
/// output queue; compressed once too with [`HubConfig::deflate`]) and queued to each recipient's
/// outbox without waiting: a slow client never blocks the sender. Each sender's broadcasts reach
/// every recipient in the order they were sent.
#[must_use = "a broadcast is sent by `send` or one of its typed variants"]
pub struct Broadcaster<'a> {
    hub: &'a Hub,
    target: Target,
    except: Option<ClientId>,
}

impl fmt::Debug for Broadcaster<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcaster")
            .field("target", &self.target)
            .field("except", &self.except)
            .finish()
    }
}

impl<'a> Broadcaster<'a> {
    fn new(hub: &'a Hub, target: Target) -> Self {
        Broadcaster {
            hub,
            target,
            except: None,
        }
    }

    /// Leaves `client` out (typically the sender).
    pub fn except(mut self, client: &ClientId) -> Self {
        self.except = Some(client.clone());
        self
    }

    /// Sends `message`. Returns how many clients of this node it was queued to (clients whose
    /// outbox was full are disconnected and not counted).
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`], or the backend's error.
    pub fn send(self, message: Message) -> Result<usize, HubError> {
        self.payload(Payload::Message(message))
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn text(self, text: impl Into<Utf8Bytes>) -> Result<usize, HubError> {
        self.send(Message::text(text))
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn binary(self, data: impl Into<Bytes>) -> Result<usize, HubError> {
        self.send(Message::binary(data))
    }

    /// Sends `value` as JSON text (serialised once).
    ///
    /// # Errors
    ///
    /// [`HubError::Json`], else as for [`send`](Self::send).
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<usize, HubError> {
        let text = serde_json::to_string(value)?;
        self.send(Message::text(text))
    }

    /// Sends the event `{"type":"<name>","data":<data>}` (serialised once).
    ///
    /// # Errors
    ///
    /// As for [`json`](Self::json).
    #[cfg(feature = "json")]
    pub fn event<T: serde::Serialize + ?Sized>(
        self,
        name: &str,
        data: &T,
    ) -> Result<usize, HubError> {
        let data = serde_json::to_string(data)?;
        self.payload(Payload::Event {
            name: name.to_owned(),
            data,
        })
    }

    /// Sends a payload as it is handed to the backend.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn payload(self, payload: Payload) -> Result<usize, HubError> {
        self.hub.inner.publish(self.target, self.except, payload)
    }
}

/// The future of [`Hub::idle`].
#[must_use = "futures do nothing unless polled"]
pub struct Idle<'a> {
    hub: &'a HubInner,
    id: Option<u64>,
}

impl fmt::Debug for Idle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idle").finish_non_exhaustive()
    }
}

impl Future for Idle<'_> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        {
            // Registered before the check: a client leaving after it wakes this task.
            let mut idle = lock(&this.hub.idle);
            let id = *this.id.get_or_insert_with(|| {
                idle.next += 1;
                idle.next
            });
            match idle.waiters.get_mut(&id) {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => {
                    idle.waiters.insert(id, cx.waker().clone());
                }
            }
        }
        if this.hub.read().clients.is_empty() {
            if let Some(id) = this.id.take() {
                lock(&this.hub.idle).waiters.remove(&id);
            }
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.hub.idle).waiters.remove(&id);
        }
    }
}

// ---- rooms ----------------------------------------------------------------------------------

/// A named room of a [`Hub`]: a handle by name (cheap to clone). From [`Hub::room`] (get or
/// create) or [`Hub::get_room`] (existing only).
#[derive(Clone)]
pub struct Room {
    hub: Hub,
    name: Arc<str>,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

impl Room {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Members (across nodes, as the backend counts them); 0 once the room is gone.
    pub fn size(&self) -> usize {
        self.hub.room_size(&self.name)
    }

    /// Whether the room still exists on this node.
    pub fn exists(&self) -> bool {
        self.hub.has_room(&self.name)
    }

    /// Whether `client` is a member.
    pub fn contains(&self, client: &ClientId) -> bool {
        self.hub.inner.in_room(&self.name, client)
    }

    /// The members on this node.
    pub fn clients(&self) -> Vec<Client> {
        self.hub
            .inner
            .read()
            .rooms
            .get(&*self.name)
            .map(|r| r.members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds `client`; returns whether it was not a member yet.
    ///
    /// # Errors
    ///
    /// [`HubError::RoomNotFound`] if the room was deleted (or went away empty) since this handle
    /// was made; [`HubError::HubClosed`]; [`HubError::ConnectionClosed`] for a client that left.
    pub fn join(&self, client: &Client) -> Result<bool, HubError> {
        if !self.exists() {
            return Err(HubError::RoomNotFound(self.name.to_string()));
        }
        self.hub.inner.join(&self.name, client)
    }

    /// Removes `client`; returns whether it was a member.
    pub fn leave(&self, client: &Client) -> bool {
        self.hub.inner.leave(&self.name, client.id())
    }

    /// Keeps the room when it is empty (`true`), or lets it go away with its last member (`false`,
    /// the default; an empty room goes away at once).
    ///
    /// # Errors
    ///
    /// [`HubError::RoomNotFound`] if the room is gone.
    pub fn pin(&self, pinned: bool) -> Result<(), HubError> {
        self.hub.inner.set_pinned(&self.name, pinned)
    }

    /// Whether the room is pinned.
    pub fn is_pinned(&self) -> bool {
        self.hub
            .inner
            .read()
            .rooms
            .get(&*self.name)
            .is_some_and(|r| r.pinned)
    }

    /// Deletes the room; its members leave it. Returns how many there were.
    ///
    /// # Errors
    ///
    /// [`HubError::RoomNotFound`] if it is already gone.
    pub fn delete(&self) -> Result<usize, HubError> {
        self.hub.delete_room(&self.name)
    }

    /// A broadcast to the room's members.
    pub fn broadcast(&self) -> Broadcaster<'_> {
        self.hub.to_room(&self.name)
    }
}

#[cfg(all(test, feature = "deflate"))]
mod tests {
    use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};

    use super::*;

    fn pool_of(hub: &Hub) -> Option<CompressorPool> {
        let deflate = hub.inner.config.deflate.as_ref()?;
        deflate.get_compressor_pool().cloned()
    }

    #[test]
    fn a_hub_owns_one_compressor_pool_for_its_broadcasts() {
        let config = HubConfig::default().deflate(Some(DeflateConfig::no_context_takeover()));
        let hub = Hub::builder().config(config.clone()).build();
        let pool = pool_of(&hub).expect("the hub made a pool");
        // Another hub from the same settings has its own.
        let other = Hub::builder().config(config).build();
        assert_ne!(pool_of(&other), Some(pool.clone()));
        // Broadcasts borrow from it: one compressor, back in the pool after each message.
        hub.inner.deflate_takers.store(1, Ordering::Relaxed);
        let message = Message::text("tick ".repeat(400));
        for _ in 0..3 {
            assert!(hub.inner.encode(&message).deflated().is_some());
        }
        assert_eq!(pool.idle(), 1);
        // A pool given with the settings is kept.
        let given = CompressorPool::new();
        let config = HubConfig::default().deflate(Some(
            DeflateConfig::no_context_takeover().compressor_pool(given.clone()),
        ));
        let hub = Hub::builder().config(config).build();
        assert_eq!(pool_of(&hub), Some(given));
        // Without deflate there is no pool.
        assert_eq!(pool_of(&Hub::builder().build()), None);
    }
}
