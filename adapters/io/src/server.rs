//! The runtime-neutral body of the adapters' server helper: hyper's HTTP/1.1 (keep-alive, request
//! bodies, streaming responses) with our routing on top — exact-path routes, WebSocket and plain
//! HTTP side by side — connection limits with RAII permits, a registry of live connections for
//! graceful shutdown, and the accept loop. The adapters only bind a listener and name their
//! runtime ([`Network`]); `tidings_tokio::server` and `tidings_smol::server` document the helper
//! for applications, with examples.
//!
//! ```text
//!  accept ──► hyper HTTP/1.1 connection (one task; keep-alive; head read timeout)
//!              │ each request ──► route by path ─┬─ none ────────────► 404
//!              │                                 ├─ HTTP route ──────► limits (503) ─► body (413 over the limit)
//!              │                                 │                      ─► handler ─► response (whole or streamed)
//!              │                                 └─ WebSocket route ─► validate (400/403/426…) ─► limits (503)
//!              │                                                        ─► init / async init (a refusal, any status)
//!              │                                                        ─► 101 ─► handler(WebSocket, RequestInfo)
//!  shutdown ──► stop accepting ─► idle HTTP connections closed, streams ended ─► close 1001 to every
//!               live WebSocket ─► wait (bounded) for the handlers
//! ```
//!
//! After a `101` the engine takes the socket back from hyper (with any bytes hyper had read past
//! the head): the WebSocket runs on the raw transport, not through hyper.
//!
//! Also here, for HTTP servers of the application's (hyper, axum): [`negotiate`] runs the
//! engine's upgrade checks on an `http` request head and says what to answer.

use std::any::Any;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Frame;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use tidings_core::CloseCode;
use tidings_core::handshake::{
    AcceptOptions, OriginPolicy, ServerHandshake, UpgradeRequest, parse_protocols,
};

use crate::body::{Body, BoxError, IntoResponse};
use crate::handshake::{Negotiation, accept_options, error_response, start};
use crate::hyper_rt::{HyperIo, HyperTimer};
use crate::runtime::{Runtime, Sleep, Task, Transport};
use crate::trace::{self, ConnSpan};
use crate::{Closer, Config, Rejection, WebSocket};

/// Default bound on the wait for handlers after a shutdown: 5 seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `Retry-After` of a `503` answered because of a connection limit: 1 second.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default bound on a request body read for an HTTP route: 1 MiB (`413` above it).
pub const DEFAULT_MAX_BODY_SIZE: usize = 1 << 20;

/// Connections accepted in one poll of the accept loop before it yields to the executor.
const ACCEPT_BUDGET: usize = 64;
/// Pause after an accept error that is not about one connection (out of file descriptors…).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// hyper's smallest read buffer.
const HYPER_MIN_BUF: usize = 8192;

// ---- small synchronisation helpers --------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakers of tasks waiting for a condition that lives under the same lock.
#[derive(Default)]
struct Waiters(Vec<Waker>);

impl Waiters {
    fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

// ---- connection limits ---------------------------------------------------------------------------

/// Counts live connections, in total and per client IP address, and refuses new ones above the
/// limits. A [`ConnectionPermit`] is one counted connection; dropping it releases the slot.
///
/// IPv4-mapped IPv6 addresses count as their IPv4 address; other IPv6 addresses count one by one
/// (not per /64 prefix).
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which limit a refused connection would have exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The limit on all connections.
    Total,
    /// The limit on connections from one IP address.
    PerIp,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitExceeded::Total => "too many connections",
            LimitExceeded::PerIp => "too many connections from this address",
        })
    }
}

impl std::error::Error for LimitExceeded {}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` connections in all and `max_per_ip` from one address
    /// (`None`: no limit).
    pub fn new(max_total: Option<usize>, max_per_ip: Option<usize>) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total,
            max_per_ip,
            state: Mutex::new(LimiterState::default()),
        })
    }

    /// Counts one more connection from `ip`, or says which limit it would exceed.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`] when a limit is reached; nothing is counted then.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        let ip = ip.to_canonical();
        let mut st = lock(&self.state);
        if self.max_total.is_some_and(|max| st.total >= max) {
            return Err(LimitExceeded::Total);
        }
        let from_ip = st.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip.is_some_and(|max| from_ip >= max) {
            return Err(LimitExceeded::PerIp);
        }
        st.total += 1;
        st.per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections counted now.
    pub fn active(&self) -> usize {
        lock(&self.state).total
    }

    /// Connections counted now from `ip`.
    pub fn active_from(&self, ip: IpAddr) -> usize {
        let st = lock(&self.state);
        st.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// One connection counted by a [`ConnectionLimiter`]; released when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionPermit {
    /// The address this permit counts for.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut st = lock(&self.limiter.state);
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.per_ip.remove(&self.ip);
            }
        }
    }
}

// ---- registry of live connections --------------------------------------------------------------

/// The live connections of a server, for graceful shutdown.
///
/// Each connection holds a [`Registration`] for as long as it is served (handshake and handler
/// included); a WebSocket's registration carries its [`Closer`]. [`close_all`](Self::close_all)
/// starts the close handshake on every registered WebSocket (and on any registered later), and
/// [`drain`](Self::drain) waits, bounded, until every registration is dropped.
#[derive(Default)]
pub struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    next_id: u64,
    live: HashMap<u64, Option<Closer>>,
    /// Set by `close_all`: the close to send to connections registered from now on.
    closing: Option<(CloseCode, String)>,
    /// Close handshakes started because of `closing`.
    closed: usize,
    idle: Waiters,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Registry")
            .field("live", &st.live.len())
            .field("closing", &st.closing.is_some())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers one connection; it counts until the registration is dropped.
    pub fn register(self: &Arc<Self>) -> Registration {
        let mut st = lock(&self.state);
        let id = st.next_id;
        st.next_id += 1;
        st.live.insert(id, None);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Registered connections.
    pub fn len(&self) -> usize {
        lock(&self.state).live.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`close_all`](Self::close_all) was called.
    pub fn is_closing(&self) -> bool {
        lock(&self.state).closing.is_some()
    }

    /// Close handshakes started by [`close_all`](Self::close_all), including those of
    /// WebSockets registered after it.
    pub fn closed(&self) -> usize {
        lock(&self.state).closed
    }

    /// Starts the close handshake with `code` and `reason` on every registered WebSocket, and on
    /// every one registered from now on. Returns how many were started now (connections already
    /// closing are not counted).
    pub fn close_all(&self, code: CloseCode, reason: &str) -> usize {
        let closers: Vec<Closer> = {
            let mut st = lock(&self.state);
            st.closing = Some((code, reason.to_owned()));
            st.live.values().flatten().cloned().collect()
        };
        // Outside the registry lock: closing takes each connection's own lock.
        let started = closers
            .iter()
            .filter(|c| matches!(c.close(code, reason), Ok(true)))
            .count();
        lock(&self.state).closed += started;
        started
    }

    /// Resolves once no connection is registered.
    pub fn idle(&self) -> Idle<'_> {
        Idle { registry: self }
    }

    /// Waits until no connection is registered or `timeout` has passed on `rt`'s clock; returns
    /// how many are still registered.
    pub async fn drain(&self, rt: &'static dyn Runtime, timeout: Duration) -> usize {
        let mut timer = rt.sleep_until(rt.now() + timeout);
        let mut idle = self.idle();
        poll_fn(|cx| {
            if Pin::new(&mut idle).poll(cx).is_ready() || timer.poll_expired(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        self.len()
    }
}

/// The future of [`Registry::idle`].
#[must_use = "futures do nothing unless polled"]
pub struct Idle<'a> {
    registry: &'a Registry,
}

impl Future for Idle<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.registry.state);
        if st.live.is_empty() {
            return Poll::Ready(());
        }
        st.idle.register(cx.waker());
        Poll::Pending
    }
}

/// One connection in a [`Registry`]; dropping it unregisters the connection.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

impl Registration {
    /// Attaches the connection's [`Closer`], so that [`Registry::close_all`] reaches it. If the
    /// registry is already closing, the close handshake starts at once.
    pub fn set_closer(&self, closer: Closer) {
        let closing = {
            let mut st = lock(&self.registry.state);
            if let Some(slot) = st.live.get_mut(&self.id) {
                *slot = Some(closer.clone());
            }
            st.closing.clone()
        };
        if let Some((code, reason)) = closing
            && matches!(closer.close(code, &reason), Ok(true))
        {
            lock(&self.registry.state).closed += 1;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut st = lock(&self.registry.state);
        st.live.remove(&self.id);
        if st.live.is_empty() {
            st.idle.wake_all();
        }
    }
}

// ---- requests ------------------------------------------------------------------------------------

/// The client's address, in the extensions of every request an HTTP route receives
/// (`req.extensions().get::<PeerAddr>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// What a WebSocket handler (and an async `init` step) knows about the request that reached it:
/// the `http` request head, the client's address, and the subprotocol agreed.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    peer_addr: SocketAddr,
    subprotocol: Option<String>,
}

impl RequestInfo {
    fn new(parts: http::request::Parts, peer_addr: SocketAddr) -> Self {
        RequestInfo {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            peer_addr,
            subprotocol: None,
        }
    }

    fn snapshot(parts: &http::request::Parts, peer_addr: SocketAddr) -> Self {
        RequestInfo {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            peer_addr,
            subprotocol: None,
        }
    }

    /// The request method (`GET` for every WebSocket).
    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The request target.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The path of the request target, without the query: `/chat`.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query of the request target, without the `?`: `room=1`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The header fields.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(http::HeaderValue::as_bytes)
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order of preference.
    pub fn protocols(&self) -> Vec<&str> {
        parse_protocols(
            self.headers
                .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .map(http::HeaderValue::as_bytes),
        )
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The subprotocol agreed in the handshake (WebSocket routes, once accepted).
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }
}

// ---- routes --------------------------------------------------------------------------------------

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// What a route's `init` step handed to its handler (type-erased; the route's constructor pairs
/// the two with one type).
type InitState = Box<dyn Any + Send>;
type WsHandler = Arc<dyn Fn(WebSocket, RequestInfo, InitState) -> Task + Send + Sync>;
type Init =
    Arc<dyn Fn(&UpgradeRequest<'_>) -> Result<(AcceptOptions, InitState), Rejection> + Send + Sync>;
type AsyncInit = Arc<
    dyn Fn(RequestInfo) -> BoxFuture<Result<(AcceptOptions, InitState), Rejection>> + Send + Sync,
>;
type HttpHandler = Arc<dyn Fn(Request<Bytes>) -> BoxFuture<Response<Body>> + Send + Sync>;
type Choose = Arc<dyn Fn(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection> + Send + Sync>;

/// One entry of a [`Server`]'s route table: a [`WebSocketRoute`] or an [`HttpRoute`].
#[derive(Clone)]
pub struct Route(RouteKind);

#[derive(Clone)]
enum RouteKind {
    WebSocket(WebSocketRoute),
    Http(HttpRoute),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            RouteKind::WebSocket(r) => r.fmt(f),
            RouteKind::Http(r) => r.fmt(f),
        }
    }
}

impl Route {
    /// A WebSocket route: `handler` runs once per accepted connection and owns the WebSocket;
    /// the connection counts (limits, shutdown) until the handler's future ends.
    pub fn websocket<F, Fut>(handler: F) -> WebSocketRoute
    where
        F: Fn(WebSocket, RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        WebSocketRoute::new(handler)
    }

    /// A WebSocket route with an `init` step: `init` sees each upgrade request (after validation,
    /// the origin policy and the connection limits) and either refuses it with a [`Rejection`]
    /// (an HTTP status, before anything is upgraded) or accepts it with [`AcceptOptions`] and a
    /// state of its choosing, which `handler` receives with the WebSocket. A per-connection
    /// handler object built from the request, or the user an `Authorization` header named, is
    /// passed this way.
    ///
    /// ```
    /// # use tidings_io::{AcceptOptions, Rejection, Route};
    /// let route = Route::websocket_with(
    ///     |req| match req.header("Authorization") {
    ///         Some(token) => Ok((AcceptOptions::new(), token.to_vec())),
    ///         None => Err(Rejection::new(401)),
    ///     },
    ///     |ws, _info, token: Vec<u8>| async move {
    ///         let _ = (ws, token);
    ///     },
    /// );
    /// ```
    pub fn websocket_with<S, I, F, Fut>(init: I, handler: F) -> WebSocketRoute
    where
        S: Send + 'static,
        I: Fn(&UpgradeRequest<'_>) -> Result<(AcceptOptions, S), Rejection> + Send + Sync + 'static,
        F: Fn(WebSocket, RequestInfo, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        WebSocketRoute::with_init(init, handler)
    }

    /// A WebSocket route whose `init` step is asynchronous: it receives the request (already
    /// validated, within the limits) and may look things up — a session store, a database — before
    /// it accepts with [`AcceptOptions`] and a state for `handler`, or refuses with a
    /// [`Rejection`]. Nothing is upgraded until it has decided.
    ///
    /// ```
    /// # use tidings_io::{AcceptOptions, Rejection, RequestInfo, Route};
    /// async fn user_of(token: Option<Vec<u8>>) -> Option<String> {
    ///     token.map(|t| String::from_utf8_lossy(&t).into_owned())
    /// }
    /// let route = Route::websocket_async(
    ///     |info: RequestInfo| async move {
    ///         match user_of(info.header("Authorization").map(<[u8]>::to_vec)).await {
    ///             Some(user) => Ok((AcceptOptions::new(), user)),
    ///             None => Err(Rejection::new(401)),
    ///         }
    ///     },
    ///     |ws, _info, user: String| async move {
    ///         let _ = (ws, user);
    ///     },
    /// );
    /// ```
    pub fn websocket_async<S, I, IFut, F, Fut>(init: I, handler: F) -> WebSocketRoute
    where
        S: Send + 'static,
        I: Fn(RequestInfo) -> IFut + Send + Sync + 'static,
        IFut: Future<Output = Result<(AcceptOptions, S), Rejection>> + Send + 'static,
        F: Fn(WebSocket, RequestInfo, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut route = WebSocketRoute::with_handler(handler);
        route.accept = Accept::Async(Arc::new(move |info| {
            let fut = init(info);
            Box::pin(async move {
                fut.await
                    .map(|(options, state)| (options, Box::new(state) as InitState))
            })
        }));
        route
    }

    /// A plain HTTP route: `handler` answers every request on the path (any method). It receives
    /// the request with its body read (up to the server's
    /// [`max_body_size`](Server::max_body_size); `413` above it) and the client's [`PeerAddr`]
    /// in the extensions, and answers with anything [`IntoResponse`]: an `http::Response` with a
    /// whole or streaming body (Server-Sent Events: [`SseBody`](crate::sse::SseBody)), an
    /// [`HttpResponse`](crate::HttpResponse), a status, a string.
    pub fn http<F, Fut>(handler: F) -> HttpRoute
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        HttpRoute::new(handler)
    }
}

/// How a WebSocket route decides about a request.
#[derive(Clone)]
enum Accept {
    /// Choose a subprotocol from a list.
    Protocols(Vec<String>),
    /// A callback that accepts or refuses.
    Choose(Choose),
    /// An `init` step that also makes the handler's state.
    Init(Init),
    /// An asynchronous `init` step.
    Async(AsyncInit),
}

/// A route that upgrades to a WebSocket; see [`Route::websocket`].
#[derive(Clone)]
pub struct WebSocketRoute {
    handler: WsHandler,
    accept: Accept,
    /// This route's origin policy, instead of the server config's.
    origin: Option<OriginPolicy>,
}

impl fmt::Debug for WebSocketRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accept = match &self.accept {
            Accept::Protocols(p) => format!("protocols {p:?}"),
            Accept::Choose(_) => "choose".to_owned(),
            Accept::Init(_) => "init".to_owned(),
            Accept::Async(_) => "async init".to_owned(),
        };
        f.debug_struct("WebSocketRoute")
            .field("accept", &accept)
            .field("origin", &self.origin)
            .finish()
    }
}

impl WebSocketRoute {
    /// See [`Route::websocket`].
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(WebSocket, RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        WebSocketRoute {
            handler: Arc::new(move |ws, info, _| Box::pin(handler(ws, info))),
            accept: Accept::Protocols(Vec::new()),
            origin: None,
        }
    }

    fn with_handler<S, F, Fut>(handler: F) -> Self
    where
        S: Send + 'static,
        F: Fn(WebSocket, RequestInfo, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: WsHandler = Arc::new(move |ws, info, state: InitState| {
            match state.downcast::<S>() {
                Ok(state) => Box::pin(handler(ws, info, *state)),
                // Unreachable: the route's init step is the only producer of the state.
                Err(_) => Box::pin(async {}),
            }
        });
        WebSocketRoute {
            handler,
            accept: Accept::Protocols(Vec::new()),
            origin: None,
        }
    }

    /// See [`Route::websocket_with`].
    pub fn with_init<S, I, F, Fut>(init: I, handler: F) -> Self
    where
        S: Send + 'static,
        I: Fn(&UpgradeRequest<'_>) -> Result<(AcceptOptions, S), Rejection> + Send + Sync + 'static,
        F: Fn(WebSocket, RequestInfo, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut route = Self::with_handler(handler);
        route.accept = Accept::Init(Arc::new(move |req| {
            init(req).map(|(options, state)| (options, Box::new(state) as InitState))
        }));
        route
    }

    /// The subprotocols this route speaks: the first one the client offers (in the client's
    /// order of preference) is chosen; if none matches, the connection is accepted without a
    /// subprotocol (RFC 6455 §4.2.2 item 5.5 lets the client decide whether to go on).
    /// Replaces a [`choose`](Self::choose) callback; ignored by routes with an `init` step.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if matches!(self.accept, Accept::Protocols(_) | Accept::Choose(_)) {
            self.accept = Accept::Protocols(protocols.into_iter().map(Into::into).collect());
        }
        self
    }

    /// This route's origin policy (RFC 6455 §10.2), instead of the one in the server's
    /// [`Config`] (which defaults to same-origin): an allow-list with wildcard patterns such as
    /// `https://*.example.com` or `http://localhost:*`
    /// ([`OriginPolicy::allow`]), or same-origin. A browser page from an origin the policy
    /// refuses gets `403 Forbidden` before anything else about the request is decided;
    /// clients that send no `Origin` (not browsers) pass every policy.
    ///
    /// **Development switch:** [`OriginPolicy::allow_all`] lets pages from any origin in,
    /// `null` included — for a page opened from a file or a dev server on another port. Do not
    /// ship it on a route that trusts cookies or other ambient credentials: any site a user
    /// visits could then open the socket as that user (cross-site WebSocket hijacking).
    ///
    /// ```
    /// # use tidings_io::{OriginPolicy, Route};
    /// let route = Route::websocket(|_ws, _info| async {})
    ///     .origin(OriginPolicy::allow(["https://app.example.com", "https://*.example.com"]));
    /// # drop(route);
    /// ```
    pub fn origin(mut self, policy: OriginPolicy) -> Self {
        self.origin = Some(policy);
        self
    }

    /// Decides about each request (after validation, the origin policy and the connection
    /// limits): accept with [`AcceptOptions`] (subprotocol, extra headers) or refuse with a
    /// [`Rejection`] (e.g. 401 for missing credentials). Replaces [`protocols`](Self::protocols).
    /// A route made with [`Route::websocket_with`] or [`Route::websocket_async`] decides with its
    /// `init` step instead.
    pub fn choose<F>(mut self, choose: F) -> Self
    where
        F: Fn(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection> + Send + Sync + 'static,
    {
        if matches!(self.accept, Accept::Protocols(_) | Accept::Choose(_)) {
            self.accept = Accept::Choose(Arc::new(choose));
        }
        self
    }
}

/// The options of a synchronous decision (`None` for an asynchronous `init`).
fn sync_options(
    accept: &Accept,
    req: &UpgradeRequest<'_>,
) -> Option<Result<(AcceptOptions, InitState), Rejection>> {
    let none = || Box::new(()) as InitState;
    Some(match accept {
        Accept::Init(init) => init(req),
        Accept::Choose(choose) => choose(req).map(|options| (options, none())),
        Accept::Protocols(protocols) => {
            let offered = req.protocols();
            let pick = offered.iter().find(|p| protocols.iter().any(|s| s == *p));
            let options = match pick {
                Some(p) => AcceptOptions::new().protocol(*p),
                None => AcceptOptions::new(),
            };
            Ok((options, none()))
        }
        Accept::Async(_) => return None,
    })
}

/// A route that answers plain HTTP requests; see [`Route::http`].
#[derive(Clone)]
pub struct HttpRoute {
    handler: HttpHandler,
}

impl fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRoute").finish_non_exhaustive()
    }
}

impl HttpRoute {
    /// See [`Route::http`].
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        HttpRoute {
            handler: Arc::new(move |req| {
                let fut = handler(req);
                Box::pin(async move { fut.await.into_response() })
            }),
        }
    }
}

impl From<WebSocketRoute> for Route {
    fn from(route: WebSocketRoute) -> Self {
        Route(RouteKind::WebSocket(route))
    }
}

impl From<HttpRoute> for Route {
    fn from(route: HttpRoute) -> Self {
        Route(RouteKind::Http(route))
    }
}

// ---- what an adapter provides -------------------------------------------------------------------

/// A listening socket of an adapter's runtime.
pub trait Listener: Send + 'static {
    /// Accepts the next connection: its transport (with `TCP_NODELAY` set) and the client's
    /// address. `Pending` registers `cx`'s waker.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Box<dyn Transport>, SocketAddr)>>;
}

/// What an adapter provides to the server helper: its runtime, and its listener for a bound
/// standard TCP listener. `tidings_tokio::server::Tcp` and `tidings_smol::server::Tcp` are the
/// two implementations.
pub trait Network: 'static {
    /// The runtime that runs the connections.
    fn runtime() -> &'static dyn Runtime;
    /// The runtime's listener for `listener` (already bound and listening). Called inside the
    /// runtime.
    ///
    /// # Errors
    ///
    /// Whatever registering the socket with the runtime's reactor fails with.
    fn listener(listener: std::net::TcpListener) -> io::Result<Box<dyn Listener>>;

    /// The runtime's listener for `listener` that accepts TLS with `config` (the handshake runs
    /// in each connection's task, on its first read: see [`LazyTransport`](crate::LazyTransport)).
    ///
    /// # Errors
    ///
    /// As [`listener`](Self::listener); the default refuses with `Unsupported`.
    #[cfg(feature = "rustls")]
    fn listener_tls(
        listener: std::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Box<dyn Listener>> {
        let _ = (listener, config);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this network has no TLS listener",
        ))
    }
}

// ---- the server ----------------------------------------------------------------------------------

/// The server helper's builder: routes, limits, config and shutdown timeout, for the network `N`
/// of an adapter. Applications use the adapters' alias, `tidings_tokio::server::Server` or
/// `tidings_smol::server::Server`.
pub struct Server<N> {
    routes: HashMap<String, Route>,
    config: Config,
    max_connections: Option<usize>,
    max_per_ip: Option<usize>,
    max_body_size: usize,
    retry_after: Duration,
    shutdown_timeout: Duration,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    net: PhantomData<fn() -> N>,
}

impl<N> fmt::Debug for Server<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        paths.sort_unstable();
        f.debug_struct("Server")
            .field("routes", &paths)
            .field("config", &self.config)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_per_ip)
            .field("max_body_size", &self.max_body_size)
            .field("retry_after", &self.retry_after)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl<N> Default for Server<N> {
    fn default() -> Self {
        Server {
            routes: HashMap::new(),
            config: Config::default(),
            max_connections: None,
            max_per_ip: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            retry_after: DEFAULT_RETRY_AFTER,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            #[cfg(feature = "rustls")]
            tls: None,
            net: PhantomData,
        }
    }
}

impl<N: Network> Server<N> {
    /// No routes (every request gets 404), no connection limits, the default [`Config`], 1 MiB
    /// request bodies, a 5 s shutdown timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `route` on `path`, matched exactly against the path of the request target (the
    /// query is not part of it; no prefixes, no patterns, no trailing-slash folding, no
    /// percent-decoding). A second route on the same path replaces the first.
    pub fn route(mut self, path: impl Into<String>, route: impl Into<Route>) -> Self {
        self.routes.insert(path.into(), route.into());
        self
    }

    /// Serves each `(path, route)` of `routes`, as [`route`](Self::route) does; for an app that
    /// hands over its routes as a list (`Server::new().routes(chat::routes(&hub))`).
    pub fn routes<P, R>(mut self, routes: impl IntoIterator<Item = (P, R)>) -> Self
    where
        P: Into<String>,
        R: Into<Route>,
    {
        for (path, route) in routes {
            self = self.route(path, route);
        }
        self
    }

    /// The config of every connection: limits, timers and the origin policy of the handshake,
    /// and the handshake timeout, which bounds reading each request head (on a keep-alive
    /// connection, also the wait for the next request).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The most connections served at once (WebSockets until their handler ends, plain HTTP
    /// requests until their response is sent). Above it requests are answered `503` with
    /// `Retry-After`. Default: no limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// The most connections served at once for one client IP address, counted like
    /// [`max_connections`](Self::max_connections). Default: no limit.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.max_per_ip = Some(max);
        self
    }

    /// The largest request body an HTTP route receives; a longer one is answered `413 Content
    /// Too Large` without calling the handler. Default 1 MiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The `Retry-After` of a `503` for a limit or a shutdown, rounded up to whole seconds.
    /// Default 1 s.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// How long a shutdown waits for the handlers to end after sending them the close. Default
    /// 5 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Serves HTTPS and `wss://` on the port with this rustls config (feature `rustls` of the
    /// adapter): every connection is TLS. Set the config's ALPN protocols to `http/1.1` (or
    /// leave them empty). The TLS handshake counts against the handshake timeout.
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds a TCP listener on the first address of `addr` that works (resolved with the
    /// standard library, so a host name blocks for DNS). Must run inside the adapter's runtime.
    ///
    /// # Errors
    ///
    /// The bind error of the last address tried.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Listening> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => return self.listen(listener),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
    }

    /// Serves on an already bound listener (systemd socket activation, a port chosen by the
    /// caller). Must run inside the adapter's runtime.
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read or the runtime refuses it.
    pub fn listen(self, listener: std::net::TcpListener) -> io::Result<Listening> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        #[cfg(feature = "rustls")]
        let listener = match self.tls {
            Some(config) => N::listener_tls(listener, config)?,
            None => N::listener(listener)?,
        };
        #[cfg(not(feature = "rustls"))]
        let listener = N::listener(listener)?;
        let shared = Arc::new(ServerShared {
            routes: self.routes,
            config: self.config,
            limiter: ConnectionLimiter::new(self.max_connections, self.max_per_ip),
            registry: Registry::new(),
            max_body_size: self.max_body_size,
            retry_after: self.retry_after,
            shutdown_timeout: self.shutdown_timeout,
            stop: Mutex::new(StopState::default()),
            next_watch: AtomicU64::new(0),
            rt: N::runtime(),
        });
        Ok(Listening {
            listener,
            local_addr,
            shared,
        })
    }
}

#[derive(Default)]
struct StopState {
    requested: bool,
    /// The accept loop (and any other waiter).
    waiters: Waiters,
    /// HTTP connections and streaming bodies, by watch id: a shutdown wakes them.
    watchers: HashMap<u64, Waker>,
}

/// What the accept loop and every connection task share.
struct ServerShared {
    routes: HashMap<String, Route>,
    config: Config,
    limiter: Arc<ConnectionLimiter>,
    registry: Arc<Registry>,
    max_body_size: usize,
    retry_after: Duration,
    shutdown_timeout: Duration,
    stop: Mutex<StopState>,
    next_watch: AtomicU64,
    rt: &'static dyn Runtime,
}

impl ServerShared {
    fn request_stop(&self) {
        let mut st = lock(&self.stop);
        if !st.requested {
            st.requested = true;
            st.waiters.wake_all();
            for (_, waker) in st.watchers.drain() {
                waker.wake();
            }
        }
    }

    /// A new id for [`poll_stop_for`](Self::poll_stop_for).
    fn watch_id(&self) -> u64 {
        self.next_watch.fetch_add(1, Ordering::Relaxed)
    }

    /// [`poll_stop`](Self::poll_stop) for the watcher `id`, in O(1).
    fn poll_stop_for(&self, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.stop);
        if st.requested {
            return Poll::Ready(());
        }
        match st.watchers.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                st.watchers.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }

    fn forget_watcher(&self, id: u64) {
        lock(&self.stop).watchers.remove(&id);
    }

    fn stopping(&self) -> bool {
        lock(&self.stop).requested
    }

    fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.stop);
        if st.requested {
            return Poll::Ready(());
        }
        st.waiters.register(cx.waker());
        Poll::Pending
    }

    /// A `503` with `Retry-After`.
    fn unavailable(&self, why: &str) -> Rejection {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        Rejection::new(503)
            .header("Retry-After", secs.to_string())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(why)
    }

    /// Counts a connection from `ip`, unless the server is shutting down or a limit is reached.
    fn admit(&self, ip: IpAddr) -> Result<ConnectionPermit, Rejection> {
        if self.stopping() {
            return Err(self.unavailable("server shutting down"));
        }
        self.limiter
            .try_acquire(ip)
            .map_err(|e| self.unavailable(&e.to_string()))
    }
}

/// A bound server, ready to [`serve`](Self::serve).
pub struct Listening {
    listener: Box<dyn Listener>,
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
}

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listening")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Controls a running server from elsewhere: shutdown, live connection count.
#[derive(Clone)]
pub struct ServerHandle(Arc<ServerShared>);

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("connections", &self.connections())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

impl ServerHandle {
    /// Starts the graceful shutdown: the serve future stops accepting, closes idle HTTP
    /// connections, ends streaming responses, sends close 1001 (going away) to every live
    /// WebSocket, and waits for the handlers, bounded by the shutdown timeout. Connections still
    /// sending their request head are dropped, and requests already read but not yet upgraded
    /// are answered `503`. Idempotent.
    pub fn shutdown(&self) {
        self.0.request_stop();
    }

    /// Whether [`shutdown`](Self::shutdown) was called (or the serve future's shutdown signal
    /// fired).
    pub fn is_shutting_down(&self) -> bool {
        self.0.stopping()
    }

    /// Connections being served: HTTP connections from accept until they close, WebSockets until
    /// their handler ends.
    pub fn connections(&self) -> usize {
        self.0.registry.len()
    }

    /// Resolves once no connection is being served (see [`connections`](Self::connections)).
    pub fn idle(&self) -> Idle<'_> {
        self.0.registry.idle()
    }
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// WebSockets sent a close 1001 (going away).
    pub closed: usize,
    /// Connections whose handler had not ended when the shutdown timeout ran out. Their tasks
    /// go on in the background.
    pub still_open: usize,
}

impl Listening {
    /// The address the server listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to shut the server down or watch its connections.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.shared.clone())
    }

    /// Serves until [`ServerHandle::shutdown`], then shuts down gracefully; see
    /// [`serve_with_shutdown`](Self::serve_with_shutdown).
    pub async fn serve(self) -> ShutdownReport {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Serves until `signal` resolves (e.g. a Ctrl-C future) or [`ServerHandle::shutdown`] is
    /// called. Each connection runs in its own task. Then shuts down gracefully: closes the
    /// listener, closes idle HTTP connections and ends streaming responses, sends close 1001
    /// (going away) to every live WebSocket — and to any whose `101` was already on its way —
    /// drops connections still sending their request head, answers requests read but not yet
    /// upgraded with `503`, and waits until every handler (plain HTTP ones included) has ended
    /// or the shutdown timeout has passed.
    ///
    /// Accept errors do not end the server: a failed connection is skipped, and other errors
    /// (out of file descriptors) pause accepting for 100 ms.
    pub async fn serve_with_shutdown<S>(self, signal: S) -> ShutdownReport
    where
        S: Future<Output = ()>,
    {
        let Listening {
            mut listener,
            shared,
            ..
        } = self;
        let rt = shared.rt;
        let mut signal = pin!(signal);
        let mut backoff = None;
        poll_fn(|cx| {
            if shared.poll_stop(cx).is_ready() || signal.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            for _ in 0..ACCEPT_BUDGET {
                if let Some(timer) = &mut backoff {
                    let timer: &mut Box<dyn Sleep> = timer;
                    if timer.poll_expired(cx).is_pending() {
                        return Poll::Pending;
                    }
                    backoff = None;
                }
                match listener.poll_accept(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((io, peer))) => {
                        let registration = shared.registry.register();
                        let task = connection(io, peer, shared.clone(), registration);
                        rt.spawn(trace::http_connection(peer, Box::pin(task)));
                    }
                    Poll::Ready(Err(e)) if is_connection_error(&e) => {}
                    Poll::Ready(Err(_)) => {
                        backoff = Some(rt.sleep_until(rt.now() + ACCEPT_BACKOFF))
                    }
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        drop(listener);
        shared.request_stop();
        shared
            .registry
            .close_all(CloseCode::GOING_AWAY, "server shutting down");
        let still_open = shared.registry.drain(rt, shared.shutdown_timeout).await;
        ShutdownReport {
            closed: shared.registry.closed(),
            still_open,
        }
    }
}

/// Accept errors that concern one connection only.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

// ---- one connection ------------------------------------------------------------------------------

/// Serves one accepted connection with hyper until it closes or upgrades; `registration` counts
/// it until then.
async fn connection(
    io: Box<dyn Transport>,
    peer: SocketAddr,
    shared: Arc<ServerShared>,
    registration: Registration,
) {
    // Requests of this connection whose response is not sent yet: at a shutdown, a connection
    // with none (idle, or still sending a request head) is dropped at once.
    let busy = Arc::new(AtomicUsize::new(0));
    let service_shared = shared.clone();
    let service_busy = busy.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = service_shared.clone();
        let busy = Busy::new(&service_busy);
        async move {
            let (response, permit) = route(req, &shared, peer).await;
            let watch = shared.watch_id();
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Guarded {
                    body,
                    shared,
                    watch,
                    _permit: permit,
                    _busy: busy,
                })
            }))
        }
    });
    let limits = &shared.config.handshake.limits;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(HyperTimer(shared.rt))
        .header_read_timeout(shared.config.handshake_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_bytes.max(HYPER_MIN_BUF))
        .serve_connection(HyperIo::new(io), service)
        .with_upgrades();
    let mut conn = pin!(conn);
    let watch = shared.watch_id();
    let mut stopping = false;
    let _ = poll_fn(|cx| {
        if !stopping && shared.poll_stop_for(watch, cx).is_ready() {
            if busy.load(Ordering::Acquire) == 0 {
                return Poll::Ready(Ok(()));
            }
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    shared.forget_watcher(watch);
    drop(registration);
}

/// Counts a request of a connection until its response is sent (or dropped).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers one request: 404, an HTTP route, or a WebSocket upgrade; with the permit an HTTP
/// route's response holds until it is sent.
async fn route(
    req: Request<Incoming>,
    shared: &Arc<ServerShared>,
    peer: SocketAddr,
) -> (Response<Body>, Option<ConnectionPermit>) {
    let Some(Route(route)) = shared.routes.get(req.uri().path()).cloned() else {
        trace::refused(404, &"no route for this path", req.uri().path());
        let response = (StatusCode::NOT_FOUND, "no route for this path").into_response();
        return (response, None);
    };
    match route {
        RouteKind::Http(route) => serve_http(&route, req, shared, peer).await,
        RouteKind::WebSocket(route) => (serve_websocket(&route, req, shared, peer).await, None),
    }
}

async fn serve_http(
    route: &HttpRoute,
    req: Request<Incoming>,
    shared: &Arc<ServerShared>,
    peer: SocketAddr,
) -> (Response<Body>, Option<ConnectionPermit>) {
    let permit = match shared.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(rejection) => {
            trace::refused(rejection.status(), &rejection.reason(), req.uri().path());
            return (rejection.into_response(), None);
        }
    };
    let (mut parts, body) = req.into_parts();
    let body = match Limited::new(body, shared.max_body_size).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let response =
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
            return (response, None);
        }
        Err(e) => {
            return (
                (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                None,
            );
        }
    };
    parts.extensions.insert(PeerAddr(peer));
    let response = (route.handler)(Request::from_parts(parts, body)).await;
    (response, Some(permit))
}

async fn serve_websocket(
    route: &WebSocketRoute,
    mut req: Request<Incoming>,
    shared: &Arc<ServerShared>,
    peer: SocketAddr,
) -> Response<Body> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let span = ConnSpan::server(shared.rt, Some(peer));
    span.record_path(parts.uri.path());
    let route_handshake;
    let handshake = match &route.origin {
        Some(policy) => {
            route_handshake = shared.config.handshake.clone().origin(policy.clone());
            &route_handshake
        }
        None => &shared.config.handshake,
    };
    let hs = match ServerHandshake::from_parts(&parts, handshake) {
        Ok(hs) => hs,
        Err(e) => {
            let response = error_response(&e);
            span.refused(response.status(), &e);
            return response.into_response();
        }
    };
    let permit = match shared.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(rejection) => {
            span.refused(rejection.status(), &rejection.reason());
            return rejection.into_response();
        }
    };
    let decided = match sync_options(&route.accept, hs.request()) {
        Some(decided) => decided,
        None => {
            let Accept::Async(init) = &route.accept else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let decided = init(RequestInfo::snapshot(&parts, peer)).await;
            if shared.stopping() {
                let rejection = shared.unavailable("server shutting down");
                span.refused(rejection.status(), &rejection.reason());
                return rejection.into_response();
            }
            decided
        }
    };
    let (decision, state) = match decided {
        Ok((options, state)) => (accept_options(&hs, options), state),
        Err(rejection) => {
            span.refused(rejection.status(), &"refused by the application");
            return rejection.into_response();
        }
    };
    let (response, mut agreed) = match decision {
        Negotiation::Accept { response, agreed } => (response, agreed),
        Negotiation::Refuse { response, error } => {
            span.refused(response.status(), &error);
            return response.into_response();
        }
    };
    drop(hs);
    let mut info = RequestInfo::new(parts, peer);
    info.subprotocol = agreed.protocol().map(str::to_owned);
    let registration = shared.registry.register();
    let handler = route.handler.clone();
    let task_shared = shared.clone();
    let task_span = span.clone();
    shared.rt.spawn(span.instrument(Box::pin(async move {
        let shared = task_shared;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<HyperIo>() else {
            return;
        };
        let (io, staged) = parts.io.into_parts();
        agreed.feed(&parts.read_buf);
        agreed.feed(&staged);
        let ws = start(io, shared.rt, &shared.config, agreed, task_span);
        registration.set_closer(ws.closer());
        let _permit = permit;
        handler(ws, info, state).await;
        drop(registration);
    })));
    response.into_response()
}

/// A response body that holds its connection permit (HTTP routes) and its request's place in
/// the connection's count until it is sent, and ends a stream that is still open when the server
/// shuts down.
struct Guarded {
    body: Body,
    shared: Arc<ServerShared>,
    watch: u64,
    _permit: Option<ConnectionPermit>,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => this.shared.poll_stop_for(this.watch, cx).map(|()| None),
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.shared.forget_watcher(self.watch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Error, negotiate_parts};
    use tidings_core::handshake::HandshakeError;

    fn upgrade(extra: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::get("/chat?room=1")
            .header("Host", "example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", "chat, superchat")
            .header("Sec-WebSocket-Version", "13");
        for (n, v) in extra {
            builder = builder.header(*n, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn limiter_counts_per_ip_and_in_total_and_releases_on_drop() {
        let limiter = ConnectionLimiter::new(Some(3), Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a6: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limiter.try_acquire(a).unwrap();
        let p2 = limiter.try_acquire(a6).unwrap();
        assert_eq!(limiter.try_acquire(a).err(), Some(LimitExceeded::PerIp));
        let p3 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.try_acquire(b).err(), Some(LimitExceeded::Total));
        assert_eq!((limiter.active(), limiter.active_from(a)), (3, 2));
        drop(p1);
        let p4 = limiter.try_acquire(a).unwrap();
        drop((p2, p3, p4));
        assert_eq!((limiter.active(), limiter.active_from(a)), (0, 0));
        assert!(lock(&limiter.state).per_ip.is_empty());
    }

    #[test]
    fn registry_counts_registrations_and_wakes_when_idle() {
        let registry = Registry::new();
        let r1 = registry.register();
        let r2 = registry.register();
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.close_all(CloseCode::GOING_AWAY, ""), 0);
        assert!(registry.is_closing());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut idle = registry.idle();
        assert!(Pin::new(&mut idle).poll(&mut cx).is_pending());
        drop(r1);
        assert!(Pin::new(&mut idle).poll(&mut cx).is_pending());
        drop(r2);
        assert!(Pin::new(&mut idle).poll(&mut cx).is_ready());
    }

    #[test]
    fn negotiate_accepts_with_the_engine_headers() {
        let config = Config::default();
        let n = negotiate_parts(&upgrade(&[]), &config, |req| {
            assert_eq!(req.path(), "/chat");
            Ok(AcceptOptions::new()
                .protocol("superchat")
                .header("X-A", "1"))
        });
        let Negotiation::Accept { response, agreed } = n else {
            panic!("{n:?}")
        };
        assert_eq!(agreed.protocol(), Some("superchat"));
        assert_eq!(response.status(), 101);
        let headers: Vec<_> = response.headers().collect();
        assert_eq!(
            headers,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ("Sec-WebSocket-Protocol", "superchat"),
                ("X-A", "1"),
            ]
        );
        assert!(response.get_body().is_empty());
    }

    #[test]
    fn negotiate_refuses_with_the_status_of_the_error() {
        let config = Config::default();
        let n = negotiate_parts(&upgrade(&[]), &config, |_| {
            Err(Rejection::new(401).header("WWW-Authenticate", "Basic"))
        });
        let Negotiation::Refuse { response, error } = n else {
            panic!("{n:?}")
        };
        assert_eq!(response.status(), 401);
        assert!(matches!(error, Error::Refused(401)));
        assert_eq!(response.get_header("WWW-Authenticate"), Some("Basic"));

        let mut old = upgrade(&[]);
        old.headers
            .insert("Sec-WebSocket-Version", http::HeaderValue::from_static("8"));
        let Negotiation::Refuse { response, error } =
            negotiate_parts(&old, &config, |_| unreachable!())
        else {
            panic!()
        };
        assert_eq!(response.status(), 426);
        assert_eq!(response.get_header("Sec-WebSocket-Version"), Some("13"));
        assert!(matches!(
            error,
            Error::Handshake(HandshakeError::UnsupportedVersion)
        ));
        assert!(!response.get_body().is_empty());

        let foreign = upgrade(&[("Origin", "https://evil.test")]);
        let n = negotiate_parts(&foreign, &config, |_| unreachable!());
        assert!(matches!(n, Negotiation::Refuse { response, .. } if response.status() == 403));
    }
}
