//! The runtime-neutral body of the adapters' server helper: a route table (exact paths, WebSocket
//! and plain HTTP routes), connection limits with RAII permits, a registry of live connections
//! for graceful shutdown, and the accept loop. The adapters only bind a listener and name their
//! runtime ([`Network`]); `tidings_tokio::server` and `tidings_smol::server` document the helper
//! for applications, with examples.
//!
//! ```text
//!  accept ──► read the request head ──► route by path ─┬─ none ────────────► 404
//!   (spawn one task                                    ├─ HTTP route ──────► limits (503) ─► handler ─► response, close
//!    per connection)                                   └─ WebSocket route ─► validate (400/403/426…)
//!                                                         ─► limits (503) ─► choose (subprotocol, or a refusal)
//!                                                         ─► 101 ─► handler(WebSocket, RequestInfo)
//!  shutdown ──► stop accepting ─► close 1001 to every live WebSocket ─► wait (bounded) for the handlers
//! ```
//!
//! Also here, for HTTP servers that own the socket (hyper, axum): [`negotiate`] runs the engine's
//! upgrade validation on a request head and says what to answer.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tidings_core::handshake::{
    self, AcceptOptions, HandshakeError, Limits, Status, UpgradeRequest, is_token,
};
use tidings_core::{CloseCode, Role};

use crate::handshake::{accept_request, read_some, write_all};
use crate::runtime::{Runtime, Task, Timer, Transport};
use crate::{
    Agreed, Closer, Config, Error, Rejection, WebSocket, from_transport, with_handshake_timeout,
};

/// Default bound on the wait for handlers after a shutdown: 5 seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `Retry-After` of a `503` answered because of a connection limit: 1 second.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bytes read per read of a request head.
/// Connections accepted in one poll of the accept loop before it yields to the executor.
const ACCEPT_BUDGET: usize = 64;
/// Pause after an accept error that is not about one connection (out of file descriptors…).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
        let mut timer = rt.timer(rt.now() + timeout);
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

// ---- requests and responses ----------------------------------------------------------------------

/// What a handler knows about the request that reached it.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    peer_addr: SocketAddr,
    subprotocol: Option<String>,
}

impl RequestInfo {
    fn from_head(head: &Head<'_>, peer_addr: SocketAddr) -> Self {
        RequestInfo {
            method: head.method.to_owned(),
            path: head.path.to_owned(),
            query: head.query.map(str::to_owned),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
            peer_addr,
            subprotocol: None,
        }
    }

    /// The request method (`GET` for every WebSocket).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path of the request target, without the query: `/chat`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query of the request target, without the `?`: `room=1`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Every header field as `(name, value)`, in the order received.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The subprotocol agreed in the handshake (WebSocket routes).
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }
}

/// A plain HTTP response: status, headers and body. Plain HTTP routes answer with one, and
/// [`negotiate`] describes its answer with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl HttpResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.into())
    }

    /// Adds a header. When the response is written by the server helper, headers with an invalid
    /// name or value, and `Connection`, `Content-Length` and `Transfer-Encoding` (which it writes
    /// itself), are left out.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body.
    pub fn get_body(&self) -> &Bytes {
        &self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, Bytes) {
        (self.status, self.headers, self.body)
    }

    /// The complete HTTP/1.1 response with `Connection: close`; without the body for a `HEAD`
    /// request (the `Content-Length` stays).
    fn encode(&self, head_only: bool) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self.headers().collect();
        let mut out = handshake::reject_response(self.status, &headers, &self.body);
        if head_only {
            out.truncate(out.len() - self.body.len());
        }
        out
    }

    /// Parses a complete response written by the engine (a `101`, a refusal).
    fn parse(bytes: &[u8]) -> Option<Self> {
        let end = head_end(bytes)?;
        let mut lines = head_lines(&bytes[..end]);
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, |&b| b == b' ');
        let _version = parts.next()?;
        let status = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let mut response = HttpResponse::new(status).body(Bytes::copy_from_slice(&bytes[end..]));
        for line in lines {
            let (name, value) = split_header(line).ok()?;
            if name.eq_ignore_ascii_case("Content-Length") {
                // Derived from the body by whoever sends it.
                continue;
            }
            response = response.header(name, std::str::from_utf8(value).ok()?);
        }
        Some(response)
    }
}

impl From<Rejection> for HttpResponse {
    fn from(rejection: Rejection) -> Self {
        HttpResponse::parse(&rejection.to_response())
            .unwrap_or_else(|| HttpResponse::new(rejection.status()))
    }
}

// ---- reading a request head ----------------------------------------------------------------------

/// A syntactically valid HTTP/1.x request head (RFC 9112 §2–§5), as much as routing needs. The
/// WebSocket routes validate the head again with the core's `parse_request`.
struct Head<'b> {
    method: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    headers: Vec<(&'b str, &'b [u8])>,
}

impl Head<'_> {
    /// Whether the request announces a body (which the helper does not read).
    fn has_body(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("Transfer-Encoding")
                || (n.eq_ignore_ascii_case("Content-Length") && trim(v) != b"0")
        })
    }
}

/// The index just after the empty line that ends a head (`\r\n\r\n`, or bare `\n` line ends).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') {
        let next = i + nl + 1;
        match buf.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => i = next,
        }
    }
    None
}

/// The lines of a head, without line ends, the final empty line left out.
fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// `name: value` with a token name and a value without control characters (RFC 9110 §5.5).
fn split_header(line: &[u8]) -> Result<(&str, &[u8]), HandshakeError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        // RFC 9112 §5.2: obsolete line folding may be rejected with 400.
        return Err(HandshakeError::Malformed("header line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HandshakeError::Malformed("header line"))?;
    let name = std::str::from_utf8(&line[..colon])
        .ok()
        .filter(|n| is_token(n))
        .ok_or(HandshakeError::Malformed("header name"))?;
    let value = trim(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HandshakeError::Malformed("header value"));
    }
    Ok((name, value))
}

/// Parses a request head from the start of `buf`, bounded by `limits` like the core's
/// `parse_request` (431 beyond them).
fn parse_head<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Status<(Head<'b>, usize)>, HandshakeError> {
    let window = buf.get(..limits.max_bytes).unwrap_or(buf);
    let Some(end) = head_end(window) else {
        if buf.len() > limits.max_bytes {
            return Err(HandshakeError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        return Ok(Status::Partial);
    };
    let mut lines = head_lines(&window[..end]);
    let request_line = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(HandshakeError::Malformed("request line"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HandshakeError::Malformed("request line"));
    };
    if !is_token(method) {
        return Err(HandshakeError::Malformed("method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeError::Malformed("request target"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        _ => return Err(HandshakeError::Malformed("HTTP version")),
    }
    let (path, query) = split_target(target)?;
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == limits.max_headers {
            return Err(HandshakeError::TooManyHeaders);
        }
        headers.push(split_header(line)?);
    }
    if version == "HTTP/1.1" && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("Host")) {
        // RFC 9112 §3.2: a 1.1 request without Host is answered with 400.
        return Err(HandshakeError::MissingHost);
    }
    let head = Head {
        method,
        path,
        query,
        headers,
    };
    Ok(Status::Complete((head, end)))
}

/// Path and query of an origin-form (`/a?b`) or absolute-form (`http://h/a?b`) target.
fn split_target(target: &str) -> Result<(&str, Option<&str>), HandshakeError> {
    if target.contains('#') {
        return Err(HandshakeError::Malformed("request target has a fragment"));
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let (_, rest) = target
            .split_once("://")
            .ok_or(HandshakeError::Malformed("request target"))?;
        rest.find(['/', '?']).map_or("", |i| &rest[i..])
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    Ok((if path.is_empty() { "/" } else { path }, query))
}

// ---- the upgrade decision -----------------------------------------------------------------------

/// What to answer to an upgrade request.
enum Decision<T> {
    Accept {
        response: Vec<u8>,
        agreed: Agreed,
        consumed: usize,
        admitted: T,
    },
    Refuse {
        response: Vec<u8>,
        error: Error,
    },
}

/// The engine's checks on an upgrade request head, in order: the core's validation (RFC 6455
/// §4.2.1), the origin policy, `admit` (limits), `choose` (subprotocol, extra headers, or a
/// refusal), and the options' validity.
fn decide<T>(
    head: &[u8],
    config: &Config,
    admit: impl FnOnce() -> Result<T, Rejection>,
    choose: impl FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
) -> Decision<T> {
    let refuse_error = |e: HandshakeError| Decision::Refuse {
        response: e
            .response()
            .unwrap_or_else(|| handshake::reject_response(400, &[], b"invalid upgrade request")),
        error: Error::Handshake(e),
    };
    let refuse = |rejection: Rejection| Decision::Refuse {
        response: rejection.to_response(),
        error: Error::Refused(rejection.status()),
    };
    let (req, consumed) = match handshake::parse_request(head, &config.limits) {
        Ok(Status::Complete(parsed)) => parsed,
        Ok(Status::Partial) => {
            return refuse_error(HandshakeError::Malformed("incomplete request head"));
        }
        Err(e) => return refuse_error(e),
    };
    if let Err(e) = config.origin.check(&req) {
        return refuse_error(e);
    }
    let admitted = match admit() {
        Ok(admitted) => admitted,
        Err(rejection) => return refuse(rejection),
    };
    let options = match choose(&req) {
        Ok(options) => options,
        Err(rejection) => return refuse(rejection),
    };
    match accept_request(&req, config, options) {
        Ok((response, agreed)) => Decision::Accept {
            response,
            agreed,
            consumed,
            admitted,
        },
        // The application chose something the request does not allow.
        Err(e) => Decision::Refuse {
            response: handshake::reject_response(500, &[], b"invalid upgrade options"),
            error: Error::Handshake(e),
        },
    }
}

/// The engine's answer to an upgrade request read by another HTTP server; see [`negotiate`].
#[derive(Debug)]
pub enum Negotiation {
    /// Answer with `response` (`101 Switching Protocols` with `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, the chosen subprotocol and the extra headers), then run the
    /// WebSocket over the upgraded connection with what was `agreed`.
    Accept {
        /// The `101` response.
        response: HttpResponse,
        /// The subprotocol and extension agreed; pass it to `from_upgraded`.
        agreed: Agreed,
    },
    /// Answer with `response` (the status of the error or of the application's [`Rejection`])
    /// and do not upgrade.
    Refuse {
        /// The refusal, with `Connection: close`.
        response: HttpResponse,
        /// Why: [`Error::Handshake`] for an invalid request or origin, [`Error::Refused`] when
        /// `choose` refused.
        error: Error,
    },
}

/// Runs the engine's server-side handshake checks on an upgrade request whose head another HTTP
/// server already read (hyper, axum): `head` is the request head re-serialized as HTTP/1.1 bytes
/// (request line, headers, empty line). In order: the core's validation (RFC 6455 §4.2.1, bounded
/// by `config`'s handshake limits), `config`'s origin policy, then `choose`, which accepts with
/// [`AcceptOptions`] or refuses with a [`Rejection`].
pub fn negotiate<F>(head: &[u8], config: &Config, choose: F) -> Negotiation
where
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    let parse = |bytes: &[u8], status| {
        HttpResponse::parse(bytes).unwrap_or_else(|| HttpResponse::new(status))
    };
    match decide(head, config, || Ok(()), choose) {
        Decision::Accept {
            response, agreed, ..
        } => Negotiation::Accept {
            response: parse(&response, 101),
            agreed,
        },
        Decision::Refuse { response, error } => Negotiation::Refuse {
            response: parse(&response, 500),
            error,
        },
    }
}

// ---- routes --------------------------------------------------------------------------------------

/// What a route's `init` step handed to its handler (type-erased; the route's constructor pairs
/// the two with one type).
type InitState = Box<dyn Any + Send>;
type WsHandler = Arc<dyn Fn(WebSocket, RequestInfo, InitState) -> Task + Send + Sync>;
type Init =
    Arc<dyn Fn(&UpgradeRequest<'_>) -> Result<(AcceptOptions, InitState), Rejection> + Send + Sync>;
type HttpHandler =
    Arc<dyn Fn(RequestInfo) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync>;
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

    /// A plain HTTP route: `handler` answers every request on the path (any method) with an
    /// [`HttpResponse`].
    pub fn http<F, Fut>(handler: F) -> HttpRoute
    where
        F: Fn(RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        HttpRoute::new(handler)
    }
}

/// A route that upgrades to a WebSocket; see [`Route::websocket`].
#[derive(Clone)]
pub struct WebSocketRoute {
    handler: WsHandler,
    protocols: Vec<String>,
    choose: Option<Choose>,
    init: Option<Init>,
}

impl fmt::Debug for WebSocketRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketRoute")
            .field("protocols", &self.protocols)
            .field("choose", &self.choose.is_some())
            .field("init", &self.init.is_some())
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
            protocols: Vec::new(),
            choose: None,
            init: None,
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
        let handler: WsHandler = Arc::new(move |ws, info, state: InitState| {
            match state.downcast::<S>() {
                Ok(state) => Box::pin(handler(ws, info, *state)),
                // Unreachable: `init` below is the only producer of the state.
                Err(_) => Box::pin(async {}),
            }
        });
        let init: Init = Arc::new(move |req| {
            init(req).map(|(options, state)| (options, Box::new(state) as InitState))
        });
        WebSocketRoute {
            handler,
            protocols: Vec::new(),
            choose: None,
            init: Some(init),
        }
    }

    /// The subprotocols this route speaks: the first one the client offers (in the client's
    /// order of preference) is chosen; if none matches, the connection is accepted without a
    /// subprotocol (RFC 6455 §4.2.2 item 5.5 lets the client decide whether to go on).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Decides about each request (after validation, the origin policy and the connection
    /// limits): accept with [`AcceptOptions`] (subprotocol, extra headers) or refuse with a
    /// [`Rejection`] (e.g. 401 for missing credentials). Replaces [`protocols`](Self::protocols).
    /// A route made with [`Route::websocket_with`] decides with its `init` step instead.
    pub fn choose<F>(mut self, choose: F) -> Self
    where
        F: Fn(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection> + Send + Sync + 'static,
    {
        self.choose = Some(Arc::new(choose));
        self
    }

    fn options(&self, req: &UpgradeRequest<'_>) -> Result<(AcceptOptions, InitState), Rejection> {
        if let Some(init) = &self.init {
            return init(req);
        }
        let none = || Box::new(()) as InitState;
        if let Some(choose) = &self.choose {
            return choose(req).map(|options| (options, none()));
        }
        let offered = req.protocols();
        let pick = offered
            .iter()
            .find(|p| self.protocols.iter().any(|s| s == *p));
        let options = match pick {
            Some(p) => AcceptOptions::new().protocol(*p),
            None => AcceptOptions::new(),
        };
        Ok((options, none()))
    }
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
        F: Fn(RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        HttpRoute {
            handler: Arc::new(move |info| Box::pin(handler(info))),
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
    retry_after: Duration,
    shutdown_timeout: Duration,
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
            retry_after: DEFAULT_RETRY_AFTER,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            net: PhantomData,
        }
    }
}

impl<N: Network> Server<N> {
    /// No routes (every request gets 404), no connection limits, the default [`Config`], a 5 s
    /// shutdown timeout.
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

    /// The config of every connection: limits, timers and the origin policy of the handshake,
    /// the handshake timeout (which also bounds reading a plain HTTP request and writing its
    /// response).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The most connections served at once (WebSockets until their handler ends, plain HTTP
    /// requests until answered). Above it requests are answered `503` with `Retry-After`.
    /// Default: no limit.
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
        let listener = N::listener(listener)?;
        let shared = Arc::new(ServerShared {
            routes: self.routes,
            config: self.config,
            limiter: ConnectionLimiter::new(self.max_connections, self.max_per_ip),
            registry: Registry::new(),
            retry_after: self.retry_after,
            shutdown_timeout: self.shutdown_timeout,
            stop: Mutex::new(StopState::default()),
        });
        Ok(Listening {
            listener,
            local_addr,
            shared,
            rt: N::runtime(),
        })
    }
}

#[derive(Default)]
struct StopState {
    requested: bool,
    /// The accept loop (and any other waiter).
    waiters: Waiters,
    /// Connections still reading their request head, by registration id: a shutdown drops them.
    heads: HashMap<u64, Waker>,
}

/// What the accept loop and every connection task share.
struct ServerShared {
    routes: HashMap<String, Route>,
    config: Config,
    limiter: Arc<ConnectionLimiter>,
    registry: Arc<Registry>,
    retry_after: Duration,
    shutdown_timeout: Duration,
    stop: Mutex<StopState>,
}

impl ServerShared {
    fn request_stop(&self) {
        let mut st = lock(&self.stop);
        if !st.requested {
            st.requested = true;
            st.waiters.wake_all();
            for (_, waker) in st.heads.drain() {
                waker.wake();
            }
        }
    }

    /// [`poll_stop`](Self::poll_stop) for the connection registered as `id`, in O(1).
    fn poll_stop_for(&self, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.stop);
        if st.requested {
            return Poll::Ready(());
        }
        match st.heads.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                st.heads.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }

    fn forget_stop_waker(&self, id: u64) {
        lock(&self.stop).heads.remove(&id);
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
    rt: &'static dyn Runtime,
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
    /// Starts the graceful shutdown: the serve future stops accepting, sends close 1001 (going
    /// away) to every live WebSocket, and waits for the handlers, bounded by the shutdown timeout.
    /// Connections still sending their request head are dropped, and requests already read but
    /// not yet upgraded are answered `503`. Idempotent.
    pub fn shutdown(&self) {
        self.0.request_stop();
    }

    /// Whether [`shutdown`](Self::shutdown) was called (or the serve future's shutdown signal
    /// fired).
    pub fn is_shutting_down(&self) -> bool {
        self.0.stopping()
    }

    /// Connections being served: from accept until their handler ends (or the refusal is
    /// written).
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
    /// listener, sends close 1001 (going away) to every live WebSocket — and to any whose
    /// `101` was already on its way — drops connections still sending their request head,
    /// answers requests read but not yet upgraded with `503`, and waits until every handler
    /// (plain HTTP ones included) has ended or the shutdown timeout has passed.
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
            rt,
            ..
        } = self;
        let mut signal = pin!(signal);
        let mut backoff = None;
        poll_fn(|cx| {
            if shared.poll_stop(cx).is_ready() || signal.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            for _ in 0..ACCEPT_BUDGET {
                if let Some(timer) = &mut backoff {
                    let timer: &mut Box<dyn Timer> = timer;
                    if timer.poll_expired(cx).is_pending() {
                        return Poll::Pending;
                    }
                    backoff = None;
                }
                match listener.poll_accept(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((io, peer))) => {
                        let registration = shared.registry.register();
                        let task = connection(io, peer, shared.clone(), rt, registration);
                        rt.spawn(Box::pin(task));
                    }
                    Poll::Ready(Err(e)) if is_connection_error(&e) => {}
                    Poll::Ready(Err(_)) => backoff = Some(rt.timer(rt.now() + ACCEPT_BACKOFF)),
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

/// What a connection goes on with after its handshake.
enum Served {
    Http {
        handler: HttpHandler,
        info: RequestInfo,
        head_only: bool,
    },
    WebSocket {
        handler: WsHandler,
        info: RequestInfo,
        agreed: Agreed,
        leftover: BytesMut,
        state: InitState,
    },
}

/// Serves one accepted connection; `registration` and the permit count it until the end.
async fn connection(
    mut io: Box<dyn Transport>,
    peer: SocketAddr,
    shared: Arc<ServerShared>,
    rt: &'static dyn Runtime,
    registration: Registration,
) {
    let config = &shared.config;
    let opened = with_handshake_timeout(rt, config, async {
        match read_head(&mut *io, &shared, registration.id).await? {
            Some(buf) => answer(&mut *io, buf, peer, &shared).await,
            None => Ok(None),
        }
    })
    .await;
    let Ok(Some((served, _permit))) = opened else {
        // Refused (and answered), failed, timed out, or dropped by a shutdown.
        return;
    };
    match served {
        Served::Http {
            handler,
            info,
            head_only,
        } => {
            let response = handler(info).await.encode(head_only);
            let _ = with_handshake_timeout(rt, config, async {
                respond(&mut *io, &response).await;
                Ok(())
            })
            .await;
        }
        Served::WebSocket {
            handler,
            info,
            agreed,
            leftover,
            state,
        } => {
            let ws = from_transport(io, rt, Role::Server, config, agreed, &leftover);
            registration.set_closer(ws.closer());
            handler(ws, info, state).await;
        }
    }
}

/// Writes a complete response and shuts the transport down; errors are moot at this point.
async fn respond(io: &mut dyn Transport, response: &[u8]) {
    if write_all(io, response).await.is_ok() {
        let _ = poll_fn(|cx| io.poll_shutdown(cx)).await;
    }
}

/// Removes a connection's shutdown waker when its head is read (or the read is abandoned).
struct HeadWait<'a> {
    shared: &'a ServerShared,
    id: u64,
}

impl Drop for HeadWait<'_> {
    fn drop(&mut self) {
        self.shared.forget_stop_waker(self.id);
    }
}

/// Reads a complete request head (and whatever followed it). `None`: a shutdown started first;
/// the connection is dropped without an answer. An invalid head is answered with its status.
async fn read_head(
    io: &mut dyn Transport,
    shared: &ServerShared,
    id: u64,
) -> Result<Option<BytesMut>, Error> {
    let limits = &shared.config.limits;
    let wait = HeadWait { shared, id };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let read = {
            let mut read = pin!(read_some(io, &mut buf));
            poll_fn(|cx| {
                if let Poll::Ready(result) = read.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                shared.poll_stop_for(id, cx).map(|()| None)
            })
            .await
        };
        match read {
            None => return Ok(None),
            Some(result) => result?,
        }
        match parse_head(&buf, limits) {
            Ok(Status::Partial) => continue,
            Ok(Status::Complete(_)) => break,
            Err(e) => {
                drop(wait);
                if let Some(response) = e.response() {
                    respond(io, &response).await;
                }
                return Err(Error::Handshake(e));
            }
        }
    }
    drop(wait);
    Ok(Some(buf))
}

/// Routes a complete request head, applies the limits and (for a WebSocket route) answers the
/// upgrade. `None`: the request was refused and answered.
async fn answer(
    io: &mut dyn Transport,
    mut buf: BytesMut,
    peer: SocketAddr,
    shared: &ServerShared,
) -> Result<Option<(Served, ConnectionPermit)>, Error> {
    let config = &shared.config;
    let Ok(Status::Complete((head, _))) = parse_head(&buf, &config.limits) else {
        return Err(Error::Handshake(HandshakeError::Malformed("request head")));
    };
    let Some(Route(route)) = shared.routes.get(head.path) else {
        let response = Rejection::new(404)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("no route for this path");
        respond(io, &response.to_response()).await;
        return Ok(None);
    };
    let mut info = RequestInfo::from_head(&head, peer);
    let head_only = head.method == "HEAD";
    match route {
        RouteKind::Http(route) => {
            let admitted = if head.has_body() {
                Err(Rejection::new(413).body("request bodies are not supported"))
            } else {
                shared.admit(peer.ip())
            };
            match admitted {
                Ok(permit) => Ok(Some((
                    Served::Http {
                        handler: route.handler.clone(),
                        info,
                        head_only,
                    },
                    permit,
                ))),
                Err(rejection) => {
                    respond(io, &rejection.to_response()).await;
                    Ok(None)
                }
            }
        }
        RouteKind::WebSocket(route) => {
            let mut state = None;
            let decision = decide(
                &buf,
                config,
                || shared.admit(peer.ip()),
                |req| {
                    let (options, init) = route.options(req)?;
                    state = Some(init);
                    Ok(options)
                },
            );
            match decision {
                Decision::Refuse { response, .. } => {
                    respond(io, &response).await;
                    Ok(None)
                }
                Decision::Accept {
                    response,
                    agreed,
                    consumed,
                    admitted,
                } => {
                    write_all(io, &response).await?;
                    info.subprotocol = agreed.protocol.clone();
                    let leftover = buf.split_off(consumed);
                    let served = Served::WebSocket {
                        handler: route.handler.clone(),
                        info,
                        agreed,
                        leftover,
                        state: state.unwrap_or_else(|| Box::new(())),
                    };
                    Ok(Some((served, admitted)))
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
        Host: example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn head(buf: &[u8]) -> Result<Status<(Head<'_>, usize)>, HandshakeError> {
        parse_head(buf, &Limits::default())
    }

    #[test]
    fn head_parses_path_query_headers_and_length() {
        let mut buf = UPGRADE.to_vec();
        buf.extend_from_slice(b"\x81\x00");
        let Status::Complete((h, n)) = head(&buf).unwrap() else {
            panic!("partial")
        };
        assert_eq!(n, UPGRADE.len());
        assert_eq!(
            (h.method, h.path, h.query),
            ("GET", "/chat", Some("room=1"))
        );
        assert_eq!(h.headers.len(), 6);
        assert_eq!(h.headers[0], ("Host", &b"example.com"[..]));
        assert!(!h.has_body());
    }

    #[test]
    fn head_is_partial_until_the_empty_line_at_any_split() {
        for cut in 0..UPGRADE.len() {
            assert!(head(&UPGRADE[..cut]).unwrap().is_partial(), "cut at {cut}");
        }
        let bare = b"GET / HTTP/1.1\nHost: a\n\n";
        assert!(head(bare).unwrap().is_complete());
    }

    #[test]
    fn head_refuses_what_is_not_http_1() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
            b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        ];
        for buf in bad {
            let e = head(buf).err().unwrap_or_else(|| panic!("{buf:?} passed"));
            assert_eq!(e.status(), Some(400), "{buf:?}: {e}");
        }
    }

    #[test]
    fn head_is_bounded_by_the_limits() {
        let limits = Limits {
            max_headers: 2,
            max_bytes: 64,
        };
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse_head(many, &limits).err(),
            Some(HandshakeError::TooManyHeaders)
        );
        let long = [b'a'; 65];
        assert_eq!(
            parse_head(&long, &limits).err(),
            Some(HandshakeError::TooLarge { limit: 64 })
        );
        assert!(parse_head(&long[..64], &limits).unwrap().is_partial());
    }

    #[test]
    fn absolute_form_targets_route_by_their_path() {
        assert_eq!(split_target("http://h:1/a?b").unwrap(), ("/a", Some("b")));
        assert_eq!(split_target("http://h").unwrap(), ("/", None));
        assert_eq!(split_target("http://h?q").unwrap(), ("/", Some("q")));
        assert!(split_target("*").is_err());
    }

    #[test]
    fn bodies_are_detected() {
        for (line, body) in [
            ("Content-Length: 0", false),
            ("Content-Length: 5", true),
            ("Transfer-Encoding: chunked", true),
        ] {
            let buf = format!("POST / HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n");
            let Status::Complete((h, _)) = head(buf.as_bytes()).unwrap() else {
                panic!()
            };
            assert_eq!(h.has_body(), body, "{line}");
        }
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
        let n = negotiate(UPGRADE, &config, |req| {
            assert_eq!(req.path(), "/chat");
            Ok(AcceptOptions::new()
                .protocol("superchat")
                .header("X-A", "1"))
        });
        let Negotiation::Accept { response, agreed } = n else {
            panic!("{n:?}")
        };
        assert_eq!(agreed.protocol.as_deref(), Some("superchat"));
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
        let n = negotiate(UPGRADE, &config, |_| {
            Err(Rejection::new(401).header("WWW-Authenticate", "Basic"))
        });
        let Negotiation::Refuse { response, error } = n else {
            panic!("{n:?}")
        };
        assert_eq!(response.status(), 401);
        assert!(matches!(error, Error::Refused(401)));
        assert!(
            response
                .headers()
                .any(|h| h == ("WWW-Authenticate", "Basic"))
        );
        assert!(!response.headers().any(|(n, _)| n == "Content-Length"));

        let old = String::from_utf8_lossy(UPGRADE).replace("Version: 13", "Version: 8");
        let Negotiation::Refuse { response, error } =
            negotiate(old.as_bytes(), &config, |_| unreachable!())
        else {
            panic!()
        };
        assert_eq!(response.status(), 426);
        assert!(
            response
                .headers()
                .any(|h| h == ("Sec-WebSocket-Version", "13"))
        );
        assert!(matches!(
            error,
            Error::Handshake(HandshakeError::UnsupportedVersion)
        ));
        assert!(!response.get_body().is_empty());

        let foreign = String::from_utf8_lossy(UPGRADE).replace(
            "Host: example.com",
            "Host: example.com\r\nOrigin: https://evil.test",
        );
        let n = negotiate(foreign.as_bytes(), &config, |_| unreachable!());
        assert!(matches!(n, Negotiation::Refuse { response, .. } if response.status() == 403));
    }

    #[test]
    fn http_response_encodes_with_close_and_length_and_head_drops_the_body() {
        let r = HttpResponse::text(200, "hello").header("X-A", "1");
        let full = String::from_utf8(r.encode(false)).unwrap();
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"), "{full}");
        assert!(full.contains("\r\nConnection: close\r\n"), "{full}");
        assert!(full.contains("\r\nContent-Length: 5\r\n"), "{full}");
        assert!(full.ends_with("\r\n\r\nhello"), "{full}");
        let head = String::from_utf8(r.encode(true)).unwrap();
        assert_eq!(head, full.strip_suffix("hello").unwrap());
        let back = HttpResponse::parse(full.as_bytes()).unwrap();
        assert_eq!(back.status(), 200);
        assert_eq!(back.get_body(), "hello");
    }
}
