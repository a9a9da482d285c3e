//! Admission before the upgrade: one-time WebSocket tickets and bearer tokens (feature `auth`).
//!
//! Browsers cannot set an `Authorization` header on a WebSocket, and cookies travel with
//! requests from other sites. The usual answer is a **one-time ticket**: after a normal login
//! (an HTTP request the application authenticates however it likes), the server issues a short
//! lived, unguessable ticket with [`TicketStore::issue`]; the page opens
//! `wss://…/ws?ticket=<ticket>`, and the WebSocket route redeems it with
//! [`TicketStore::redeem_query`], which yields the identity the ticket was issued for exactly
//! once. A missing, unknown, reused or expired ticket is answered with `401` before anything is
//! upgraded ([`TicketError::rejection`]; `?` converts a [`TicketError`] into a
//! [`Rejection`]).
//!
//! ```
//! # use std::time::Instant;
//! use tidings_hub::auth::{TicketError, TicketStore};
//! let tickets = TicketStore::<String>::new(); // 5 s lifetime
//! // In the login handler:
//! let ticket = tickets.issue("alice".to_owned(), Instant::now())?;
//! let url = format!("/ws?ticket={ticket}");
//! // In the WebSocket route's `init` (`req.query()`):
//! let query = url.split_once('?').map(|(_, q)| q);
//! assert_eq!(tickets.redeem_query(query, "ticket", Instant::now())?, "alice");
//! assert_eq!(
//!     tickets.redeem_query(query, "ticket", Instant::now()),
//!     Err(TicketError::Reused)
//! );
//! # Ok::<(), TicketError>(())
//! ```
//!
//! Clients that can set headers (or put a token in the query) use a **bearer token**:
//! [`bearer_token`] extracts it from the `token` query parameter or the
//! `Authorization: Bearer` header (RFC 6750 §2.1), and [`BearerAuth`] checks it with an
//! asynchronous hook (a session store, a database, a JWT library) from an asynchronous route
//! (`Hub::route_async`), answering `401` with `WWW-Authenticate: Bearer` when it is missing or
//! refused.
//!
//! Nothing here reads a clock, spawns a task or arms a timer: every call that depends on time
//! takes `now`, and expired tickets are pruned by the calls themselves.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tidings_io::Rejection;

/// The length of a ticket: 32 random bytes in unpadded base64url.
const TICKET_LEN: usize = 43;

/// The random bytes in a ticket (256 bits).
const TICKET_BYTES: usize = 32;

/// The default lifetime of a ticket.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(5);

/// The default cap on the entries (outstanding tickets and tombstones) of a store.
const DEFAULT_MAX_OUTSTANDING: usize = 65_536;

/// The longest lifetime a store accepts; longer ones are capped.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

// ---- tickets ---------------------------------------------------------------------------------

/// A store of one-time tickets: each is valid for **one** redemption within its lifetime.
///
/// [`issue`](Self::issue) binds a fresh random [`Ticket`] to an identity `T` (a user ID, a
/// session, anything `Send`); [`redeem`](Self::redeem) (or
/// [`redeem_query`](Self::redeem_query) for the query of an upgrade request) hands the identity
/// back once, if the ticket is redeemed before it expires. The store is a handle: clones share
/// it, so the login handler and the WebSocket route can each keep one.
///
/// # Semantics
///
/// * **Lifetime**: a ticket issued at `t` with lifetime `L` ([`lifetime`](Self::lifetime),
///   5 s by default) is valid for `now < t + L`; at `now >= t + L` it is
///   [`Expired`](TicketError::Expired).
/// * **One use**: the first successful redemption returns the identity; every later one is
///   [`Reused`](TicketError::Reused). A ticket the store never issued (or has forgotten) is
///   [`Unknown`](TicketError::Unknown).
/// * **Expiry without timers**: entries are kept in issue order (the lifetime is one value for
///   the store, so that is also expiry order) beside a map from ticket to entry, and every
///   [`issue`](Self::issue), [`redeem`](Self::redeem) and [`len`](Self::len) first prunes from
///   the front. The identity is dropped as soon as a ticket is redeemed or has expired; what
///   stays is a tombstone without it, so that the store can still answer `Reused` or `Expired`
///   until `t + 2L`. After that the entry is gone and the answer is `Unknown`.
/// * **Bounded**: live tickets and tombstones together never exceed
///   [`max_outstanding`](Self::max_outstanding) (65 536 by default). When an issue would exceed
///   it, the store prunes, then drops tombstones (oldest first), and if it is still full of live
///   tickets, `issue` fails with [`Full`](TicketError::Full). Dropping tombstones other than the
///   oldest takes one pass over the store, which only happens when it is full.
/// * **Time** is passed in (`now`) and may go backwards without a panic: a ticket is then valid
///   until the `now` of its issue plus its lifetime, and an entry issued "in the past" behind
///   newer ones may be pruned later than its time, never earlier.
///
/// Tickets are compared through the store's hash map only (SipHash with random keys), never by
/// a loop over their characters.
pub struct TicketStore<T = ()> {
    inner: Arc<Mutex<Store<T>>>,
    lifetime: Duration,
    max_outstanding: usize,
}

/// The state of one entry.
enum State<T> {
    /// Issued, not yet redeemed (possibly expired but not yet noticed).
    Live(T),
    /// Redeemed: a tombstone.
    Redeemed,
    /// Expired before it was redeemed: a tombstone.
    Expired,
}

/// One issued ticket in the map.
struct Slot<T> {
    expires_at: Instant,
    state: State<T>,
}

/// The shared state of a [`TicketStore`].
struct Store<T> {
    /// Ticket → entry.
    map: HashMap<Arc<str>, Slot<T>>,
    /// The tickets in issue order, with their expiry.
    order: VecDeque<(Arc<str>, Instant)>,
    /// How many entries at the front of `order` are known to have expired (their identity has
    /// been dropped, or they had been redeemed before).
    expired_prefix: usize,
    /// How many entries of the map are tombstones.
    tombstones: usize,
    /// The latest `now` passed to the store, for [`TicketStore::len`].
    latest: Option<Instant>,
}

impl<T> Store<T> {
    fn new() -> Self {
        Store {
            map: HashMap::new(),
            order: VecDeque::new(),
            expired_prefix: 0,
            tombstones: 0,
            latest: None,
        }
    }

    /// Live (not yet redeemed, not known to have expired) entries.
    fn live(&self) -> usize {
        self.map.len().saturating_sub(self.tombstones)
    }

    /// Turns the expired entries at the front into tombstones (dropping their identities), then
    /// removes the tombstones whose time is up (`expires_at + lifetime <= now`) from the front.
    fn prune(&mut self, now: Instant, lifetime: Duration) {
        self.latest = Some(self.latest.map_or(now, |latest| latest.max(now)));
        while let Some((key, expires_at)) = self.order.get(self.expired_prefix) {
            if now < *expires_at {
                break;
            }
            if let Some(slot) = self.map.get_mut(key) {
                self.tombstones += slot.expire();
            }
            self.expired_prefix += 1;
        }
        while let Some((_, expires_at)) = self.order.front() {
            let gone = expires_at
                .checked_add(lifetime)
                .is_some_and(|forget_at| forget_at <= now);
            if !gone {
                break;
            }
            self.pop_front();
        }
    }

    /// Removes the oldest entry, whatever its state.
    fn pop_front(&mut self) {
        let Some((key, _)) = self.order.pop_front() else {
            return;
        };
        self.expired_prefix = self.expired_prefix.saturating_sub(1);
        if let Some(slot) = self.map.remove(&key)
            && !matches!(slot.state, State::Live(_))
        {
            self.tombstones = self.tombstones.saturating_sub(1);
        }
    }

    /// Makes room for one more entry under `max`: prunes, drops the tombstones at the front,
    /// and then, if needed, every other tombstone in one pass. Whether there is room.
    fn make_room(&mut self, now: Instant, lifetime: Duration, max: usize) -> bool {
        self.prune(now, lifetime);
        if self.order.len() < max {
            return true;
        }
        while let Some((key, _)) = self.order.front() {
            let tombstone = self.map.get(key).is_none_or(|slot| !slot.is_live_at(now));
            if !tombstone {
                break;
            }
            self.pop_front();
        }
        if self.order.len() < max {
            return true;
        }
        if self.tombstones > 0 {
            self.compact(now);
        }
        self.order.len() < max
    }

    /// Removes every tombstone (and every entry expired at `now`) wherever it is.
    fn compact(&mut self, now: Instant) {
        let Store { map, order, .. } = self;
        order.retain(|(key, _)| {
            let keep = map.get(key).is_some_and(|slot| slot.is_live_at(now));
            if !keep {
                map.remove(key);
            }
            keep
        });
        self.tombstones = 0;
        self.expired_prefix = 0;
    }
}

impl<T> Slot<T> {
    /// Whether the entry is live and not expired at `now`.
    fn is_live_at(&self, now: Instant) -> bool {
        matches!(self.state, State::Live(_)) && now < self.expires_at
    }

    /// Makes a live entry an expired tombstone; 1 if it was live, else 0.
    fn expire(&mut self) -> usize {
        if matches!(self.state, State::Live(_)) {
            self.state = State::Expired;
            1
        } else {
            0
        }
    }
}

impl<T: Send + 'static> TicketStore<T> {
    /// An empty store: tickets live 5 seconds, at most 65 536 entries.
    pub fn new() -> Self {
        TicketStore {
            inner: Arc::new(Mutex::new(Store::new())),
            lifetime: DEFAULT_LIFETIME,
            max_outstanding: DEFAULT_MAX_OUTSTANDING,
        }
    }

    /// Sets how long a ticket stays valid after its issue (5 seconds by default; at most a
    /// day, longer values are capped). Keep it short: a ticket only has to survive the page
    /// opening its WebSocket. A redeemed or expired ticket is remembered (as a tombstone, for
    /// [`TicketError::Reused`] and [`TicketError::Expired`]) for as long again.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.min(MAX_LIFETIME);
        self
    }

    /// Caps the entries of the store, live tickets and tombstones together (65 536 by
    /// default). When it is full of live tickets, [`issue`](Self::issue) fails with
    /// [`TicketError::Full`].
    pub fn max_outstanding(mut self, n: usize) -> Self {
        self.max_outstanding = n;
        self
    }

    /// How long a ticket stays valid after its issue.
    pub fn get_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Issues a fresh ticket for `identity`, valid until `now` plus the
    /// [lifetime](Self::lifetime).
    ///
    /// # Errors
    ///
    /// [`TicketError::Full`] when the store holds [`max_outstanding`](Self::max_outstanding)
    /// live tickets; [`TicketError::Random`] when the operating system gives no randomness.
    pub fn issue(&self, identity: T, now: Instant) -> Result<Ticket, TicketError> {
        // `now` within a day of the end of `Instant`'s range: the ticket is born expired.
        let expires_at = now.checked_add(self.lifetime).unwrap_or(now);
        let mut store = self.lock();
        if !store.make_room(now, self.lifetime, self.max_outstanding) {
            return Err(TicketError::Full);
        }
        // 256 random bits do not collide; a second draw covers a broken source that repeats.
        let mut value = random_ticket()?;
        if store.map.contains_key(value.as_str()) {
            value = random_ticket()?;
            if store.map.contains_key(value.as_str()) {
                return Err(TicketError::Random);
            }
        }
        let key: Arc<str> = Arc::from(value.as_str());
        store.map.insert(
            Arc::clone(&key),
            Slot {
                expires_at,
                state: State::Live(identity),
            },
        );
        store.order.push_back((key, expires_at));
        Ok(Ticket { value, expires_at })
    }

    /// Redeems `ticket`: the identity it was issued for, once, if `now` is before its expiry.
    ///
    /// # Errors
    ///
    /// [`TicketError::Missing`] for an empty ticket, [`TicketError::Reused`] when it was
    /// redeemed before, [`TicketError::Expired`] when its lifetime is over, and
    /// [`TicketError::Unknown`] when the store does not know it (never issued, malformed, or
    /// forgotten after twice its lifetime).
    pub fn redeem(&self, ticket: &str, now: Instant) -> Result<T, TicketError> {
        if ticket.is_empty() {
            return Err(TicketError::Missing);
        }
        let mut store = self.lock();
        store.prune(now, self.lifetime);
        // Not the length of a ticket: not one (and not worth hashing).
        if ticket.len() != TICKET_LEN {
            return Err(TicketError::Unknown);
        }
        let Some(slot) = store.map.get_mut(ticket) else {
            return Err(TicketError::Unknown);
        };
        let result = match slot.state {
            State::Redeemed => return Err(TicketError::Reused),
            State::Expired => return Err(TicketError::Expired),
            State::Live(_) if now >= slot.expires_at => {
                slot.state = State::Expired;
                Err(TicketError::Expired)
            }
            State::Live(_) => match std::mem::replace(&mut slot.state, State::Redeemed) {
                State::Live(identity) => Ok(identity),
                State::Redeemed | State::Expired => Err(TicketError::Reused),
            },
        };
        store.tombstones += 1;
        drop(store);
        result
    }

    /// Redeems the ticket in the query parameter `param` of a request's query (`query` is the
    /// part after `?`, without it, as `UpgradeRequest::query` gives it). The value is
    /// percent-decoded (`+` as a space); the first parameter of that name counts.
    ///
    /// # Errors
    ///
    /// [`TicketError::Missing`] when there is no query, no such parameter, or it is empty (or
    /// does not decode to UTF-8); otherwise as [`redeem`](Self::redeem).
    pub fn redeem_query(
        &self,
        query: Option<&str>,
        param: &str,
        now: Instant,
    ) -> Result<T, TicketError> {
        match query.and_then(|query| query_param(query, param)) {
            Some(ticket) => self.redeem(&ticket, now),
            None => Err(TicketError::Missing),
        }
    }

    /// The outstanding tickets: issued, neither redeemed nor expired. It prunes first, as of
    /// the latest `now` the store was given (it takes no time itself and reads no clock).
    pub fn len(&self) -> usize {
        let mut store = self.lock();
        if let Some(latest) = store.latest {
            store.prune(latest, self.lifetime);
        }
        store.live()
    }

    /// Whether no ticket is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> TicketStore<T> {
    fn lock(&self) -> MutexGuard<'_, Store<T>> {
        // A panic elsewhere while holding the lock leaves the store consistent enough: every
        // update is a single map or queue operation.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Clone for TicketStore<T> {
    fn clone(&self) -> Self {
        TicketStore {
            inner: Arc::clone(&self.inner),
            lifetime: self.lifetime,
            max_outstanding: self.max_outstanding,
        }
    }
}

impl<T: Send + 'static> Default for TicketStore<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TicketStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.lock();
        f.debug_struct("TicketStore")
            .field("lifetime", &self.lifetime)
            .field("max_outstanding", &self.max_outstanding)
            .field("outstanding", &store.live())
            .field("tombstones", &store.tombstones)
            .finish()
    }
}

/// 256 bits from the operating system in unpadded base64url (43 characters).
fn random_ticket() -> Result<String, TicketError> {
    let mut bytes = [0u8; TICKET_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| TicketError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// An issued ticket: 256 bits from the operating system, in base64url without padding (43
/// characters of `A–Z a–z 0–9 - _`, safe in a URL as they are).
///
/// [`Display`](fmt::Display) writes the ticket (for the URL); [`Debug`](fmt::Debug) redacts it,
/// so that logging a ticket does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    value: String,
    expires_at: Instant,
}

impl Ticket {
    /// The ticket, to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The ticket as a `String`.
    pub fn into_string(self) -> String {
        self.value
    }

    /// When the ticket expires: it is valid for `now < expires_at`.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("value", &format_args!("<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a ticket was not issued or not redeemed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketError {
    /// The request carries no ticket (no such query parameter, or it is empty).
    Missing,
    /// The store does not know the ticket: never issued, malformed, or forgotten twice its
    /// lifetime after its issue.
    Unknown,
    /// The ticket was redeemed before.
    Reused,
    /// The ticket's lifetime is over.
    Expired,
    /// The store is full of live tickets ([`TicketStore::max_outstanding`]).
    Full,
    /// The operating system gave no randomness for a new ticket.
    Random,
}

impl TicketError {
    /// The HTTP status to refuse with: `401` for [`Missing`](Self::Missing),
    /// [`Unknown`](Self::Unknown), [`Reused`](Self::Reused) and [`Expired`](Self::Expired);
    /// `503` for [`Full`](Self::Full) and [`Random`](Self::Random).
    pub fn status(&self) -> u16 {
        match self {
            TicketError::Missing
            | TicketError::Unknown
            | TicketError::Reused
            | TicketError::Expired => 401,
            TicketError::Full | TicketError::Random => 503,
        }
    }

    /// The refusal to answer an upgrade with, before anything is upgraded: the
    /// [status](Self::status), `WWW-Authenticate: Ticket` (for `401`), `Retry-After: 1` (for
    /// `503`), `Content-Type: text/plain; charset=utf-8`, `Cache-Control: no-store`, and a
    /// one-line body naming the reason (`ticket expired`).
    pub fn rejection(&self) -> Rejection {
        let status = self.status();
        let rejection = Rejection::new(status);
        let rejection = if status == 401 {
            rejection.header("WWW-Authenticate", "Ticket")
        } else {
            rejection.header("Retry-After", "1")
        };
        plain(rejection, &self.to_string())
    }
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TicketError::Missing => "ticket missing",
            TicketError::Unknown => "ticket unknown",
            TicketError::Reused => "ticket already used",
            TicketError::Expired => "ticket expired",
            TicketError::Full => "too many outstanding tickets",
            TicketError::Random => "no randomness for a ticket",
        })
    }
}

impl std::error::Error for TicketError {}

impl From<TicketError> for Rejection {
    fn from(error: TicketError) -> Self {
        error.rejection()
    }
}

/// Adds the plain-text, uncacheable body `line` to a refusal.
fn plain(rejection: Rejection, line: &str) -> Rejection {
    rejection
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-store")
        .body(format!("{line}\n"))
}

// ---- bearer tokens ---------------------------------------------------------------------------

/// The bearer token of a request: the `token` query parameter (percent-decoded, `+` as a
/// space; the first one counts) or else the `Authorization: Bearer <token>` header (the scheme
/// case-insensitive, spaces around the token ignored; RFC 6750 §2.1). `query` is the part after
/// `?`. An empty token, or one that does not decode to UTF-8, counts as none.
pub fn bearer_token(query: Option<&str>, headers: &http::HeaderMap) -> Option<String> {
    if let Some(token) = query.and_then(|query| query_param(query, "token")) {
        return Some(token);
    }
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .find_map(|value| {
            let value = std::str::from_utf8(value.as_bytes()).ok()?;
            let value = value.trim_start_matches([' ', '\t']);
            let (scheme, token) = value.split_once([' ', '\t'])?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            let token = token.trim_matches([' ', '\t']);
            (!token.is_empty()).then(|| token.to_owned())
        })
}

/// The validation hook of a [`BearerAuth`].
type Validate<I> = dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<I>> + Send>> + Send + Sync;

/// Validates bearer tokens ([`bearer_token`]) with an asynchronous hook and refuses with `401`.
///
/// Use it from an asynchronous route (`Hub::route_async`): the hook may look the token up in a
/// session store or a database, or check a signature, and resolves to the identity the token
/// stands for. Cheap to clone (clones share the hook).
///
/// ```
/// # use tidings_hub::auth::BearerAuth;
/// let auth = BearerAuth::new(|token: String| async move {
///     (token == "s3cret").then(|| "alice".to_owned())
/// });
/// // In the route: `let user = auth.authenticate(info.query(), info.headers()).await?;`
/// # drop(auth);
/// ```
pub struct BearerAuth<I> {
    validate: Arc<Validate<I>>,
}

impl<I: Send + 'static> BearerAuth<I> {
    /// Checks tokens with `validate`: it gets the token and resolves to the identity, or to
    /// `None` to refuse it.
    pub fn new<F, Fut>(validate: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<I>> + Send + 'static,
    {
        BearerAuth {
            validate: Arc::new(move |token| Box::pin(validate(token))),
        }
    }

    /// The identity of a request (its query, the part after `?`, and its headers), or the
    /// `401` refusal: `WWW-Authenticate: Bearer` when the request carries no token, and
    /// `WWW-Authenticate: Bearer error="invalid_token"` when the hook refused it (RFC 6750 §3),
    /// with `Cache-Control: no-store` and a one-line plain-text body.
    ///
    /// The hook is called before this returns; the future awaits its answer.
    pub fn authenticate(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> impl Future<Output = Result<I, Rejection>> + Send + 'static {
        let pending = bearer_token(query, headers).map(|token| (self.validate)(token));
        async move {
            let Some(pending) = pending else {
                let rejection = Rejection::new(401).header("WWW-Authenticate", "Bearer");
                return Err(plain(rejection, "bearer token missing"));
            };
            pending.await.ok_or_else(|| {
                let rejection = Rejection::new(401)
                    .header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
                plain(rejection, "bearer token refused")
            })
        }
    }
}

impl<I> Clone for BearerAuth<I> {
    fn clone(&self) -> Self {
        BearerAuth {
            validate: Arc::clone(&self.validate),
        }
    }
}

impl<I> fmt::Debug for BearerAuth<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth").finish_non_exhaustive()
    }
}

// ---- query strings ---------------------------------------------------------------------------

/// The percent-decoded value of the first parameter named `name` (after decoding) in `query`
/// (`a=1&token=xyz&b`), or `None` when it is absent, empty or not UTF-8 once decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    let value = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key).as_deref() == Some(name)).then_some(value)
    })?;
    percent_decode(value).filter(|value| !value.is_empty())
}

/// Decodes `+` (as a space) and `%XX` escapes (an invalid escape stays as it is); `None` when
/// the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    // `+` first: an escaped plus (`%2B`) stays a plus.
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use http::{HeaderMap, HeaderValue};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// Polls a future that completes without waiting on anything.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        panic!("the future did not complete");
    }

    fn header(rejection: &Rejection, name: &str) -> Option<String> {
        let response = rejection.to_response();
        let text = String::from_utf8_lossy(&response).into_owned();
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    fn body(rejection: &Rejection) -> String {
        let response = rejection.to_response();
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    #[test]
    fn a_ticket_redeems_once_then_is_reused() {
        let store = TicketStore::<String>::new();
        let t0 = Instant::now();
        let ticket = store.issue("alice".into(), t0).expect("issue");
        assert_eq!(store.len(), 1);
        assert_eq!(store.redeem(ticket.as_str(), t0 + MS), Ok("alice".into()));
        assert_eq!(store.len(), 0);
        assert!(store.is_empty());
        assert_eq!(
            store.redeem(ticket.as_str(), t0 + 2 * MS),
            Err(TicketError::Reused)
        );
        // Reused even after its lifetime, while the tombstone lasts.
        assert_eq!(
            store.redeem(ticket.as_str(), t0 + 6 * SECOND),
            Err(TicketError::Reused)
        );
    }

    #[test]
    fn a_ticket_expires_exactly_at_its_lifetime() {
        let store = TicketStore::<u32>::new().lifetime(5 * SECOND);
        assert_eq!(store.get_lifetime(), 5 * SECOND);
        let t0 = Instant::now();
        let a = store.issue(1, t0).expect("issue");
        let b = store.issue(2, t0).expect("issue");
        assert_eq!(a.expires_at(), t0 + 5 * SECOND);
        let just_before = t0 + 5 * SECOND - Duration::from_nanos(1);
        assert_eq!(store.redeem(a.as_str(), just_before), Ok(1));
        assert_eq!(
            store.redeem(b.as_str(), t0 + 5 * SECOND),
            Err(TicketError::Expired)
        );
        assert_eq!(
            store.redeem(b.as_str(), t0 + 5 * SECOND),
            Err(TicketError::Expired)
        );
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn an_expired_ticket_found_by_pruning_is_expired_and_its_identity_dropped() {
        let store = TicketStore::<Arc<()>>::new().lifetime(SECOND);
        let identity = Arc::new(());
        let t0 = Instant::now();
        let ticket = store.issue(Arc::clone(&identity), t0).expect("issue");
        assert_eq!(Arc::strong_count(&identity), 2);
        // Another call after the expiry prunes it: the identity is gone, the tombstone stays.
        store.issue(Arc::new(()), t0 + SECOND).expect("issue");
        assert_eq!(Arc::strong_count(&identity), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.redeem(ticket.as_str(), t0 + SECOND + MS),
            Err(TicketError::Expired)
        );
    }

    #[test]
    fn unknown_and_missing_tickets() {
        let store = TicketStore::<()>::new();
        let t0 = Instant::now();
        store.issue((), t0).expect("issue");
        assert_eq!(store.redeem("nope", t0), Err(TicketError::Unknown));
        let forged = "A".repeat(TICKET_LEN);
        assert_eq!(store.redeem(&forged, t0), Err(TicketError::Unknown));
        assert_eq!(store.redeem("", t0), Err(TicketError::Missing));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_tombstone_is_pruned_after_twice_the_lifetime_and_becomes_unknown() {
        let store = TicketStore::<()>::new().lifetime(5 * SECOND);
        let t0 = Instant::now();
        let used = store.issue((), t0).expect("issue");
        let expired = store.issue((), t0).expect("issue");
        store.redeem(used.as_str(), t0 + SECOND).expect("redeem");
        let almost = t0 + 10 * SECOND - MS;
        assert_eq!(
            store.redeem(used.as_str(), almost),
            Err(TicketError::Reused)
        );
        assert_eq!(
            store.redeem(expired.as_str(), almost),
            Err(TicketError::Expired)
        );
        let forgotten = t0 + 10 * SECOND;
        assert_eq!(
            store.redeem(used.as_str(), forgotten),
            Err(TicketError::Unknown)
        );
        assert_eq!(
            store.redeem(expired.as_str(), forgotten),
            Err(TicketError::Unknown)
        );
        let store = store.inner.lock().expect("lock");
        assert!(store.map.is_empty() && store.order.is_empty());
        assert_eq!(store.tombstones, 0);
    }

    #[test]
    fn a_full_store_refuses_then_recovers_after_expiry() {
        let store = TicketStore::<u32>::new()
            .lifetime(SECOND)
            .max_outstanding(3);
        let t0 = Instant::now();
        for i in 0..3 {
            store.issue(i, t0).expect("issue");
        }
        assert_eq!(store.issue(3, t0 + MS), Err(TicketError::Full));
        assert_eq!(store.issue(3, t0 + SECOND - MS), Err(TicketError::Full));
        assert_eq!(store.len(), 3);
        // Expired: tombstones, which make way for new tickets.
        let later = store.issue(3, t0 + SECOND).expect("issue after expiry");
        assert_eq!(store.redeem(later.as_str(), t0 + SECOND), Ok(3));
        for i in 0..3 {
            store.issue(i, t0 + SECOND).expect("issue");
        }
        assert_eq!(store.issue(9, t0 + SECOND), Err(TicketError::Full));
        assert_eq!(TicketError::Full.status(), 503);
    }

    #[test]
    fn a_full_store_drops_redeemed_tombstones_behind_live_tickets() {
        let store = TicketStore::<u32>::new().max_outstanding(3);
        let t0 = Instant::now();
        let _live = store.issue(0, t0).expect("issue");
        let b = store.issue(1, t0).expect("issue");
        let c = store.issue(2, t0).expect("issue");
        store.redeem(b.as_str(), t0).expect("redeem");
        store.redeem(c.as_str(), t0).expect("redeem");
        // Full of entries, but two are tombstones behind a live ticket.
        let d = store.issue(3, t0).expect("issue");
        let e = store.issue(4, t0).expect("issue");
        assert_eq!(store.issue(5, t0), Err(TicketError::Full));
        assert_eq!(store.len(), 3);
        // The dropped tombstones are forgotten.
        assert_eq!(store.redeem(b.as_str(), t0), Err(TicketError::Unknown));
        assert_eq!(store.redeem(d.as_str(), t0), Ok(3));
        assert_eq!(store.redeem(e.as_str(), t0), Ok(4));
        let inner = store.inner.lock().expect("lock");
        assert_eq!(inner.order.len(), inner.map.len());
        assert_eq!(inner.tombstones, 2);
    }

    #[test]
    fn a_store_of_capacity_zero_is_always_full() {
        let store = TicketStore::<()>::new().max_outstanding(0);
        assert_eq!(store.issue((), Instant::now()), Err(TicketError::Full));
    }

    #[test]
    fn tickets_are_distinct_43_url_safe_characters() {
        let store = TicketStore::<()>::new().max_outstanding(10_000);
        let t0 = Instant::now();
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let ticket = store.issue((), t0).expect("issue");
            assert_eq!(ticket.as_str().len(), 43);
            assert!(
                ticket
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{ticket}"
            );
            assert_eq!(ticket.to_string(), ticket.as_str());
            assert!(seen.insert(ticket.into_string()));
        }
        assert_eq!(store.len(), 1000);
    }

    #[test]
    fn pruning_keeps_the_store_bounded_over_a_long_run() {
        let capacity = 1000;
        let store = TicketStore::<u64>::new()
            .lifetime(5 * MS)
            .max_outstanding(capacity);
        let t0 = Instant::now();
        let mut max_entries = 0;
        for i in 0..100_000u32 {
            let now = t0 + MS * i;
            let ticket = store.issue(u64::from(i), now).expect("never full");
            if i % 3 == 0 {
                assert_eq!(store.redeem(ticket.as_str(), now), Ok(u64::from(i)));
            }
            assert!(store.len() <= capacity);
            let entries = store.inner.lock().expect("lock").order.len();
            max_entries = max_entries.max(entries);
        }
        // Tickets live 5 ms, tombstones 5 ms more: about ten entries at any time.
        assert!(max_entries <= 11, "{max_entries}");
    }

    #[test]
    fn a_full_store_of_live_tickets_under_a_long_run_stays_bounded() {
        let capacity = 100;
        let store = TicketStore::<u32>::new()
            .lifetime(SECOND)
            .max_outstanding(capacity);
        let t0 = Instant::now();
        let mut full = 0;
        for i in 0..10_000u32 {
            let now = t0 + MS * i;
            match store.issue(i, now) {
                Ok(_) => {}
                Err(TicketError::Full) => full += 1,
                Err(e) => panic!("{e}"),
            }
            let entries = store.inner.lock().expect("lock").order.len();
            assert!(entries <= capacity);
        }
        assert!(full > 0);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let store = TicketStore::<u32>::new().lifetime(5 * SECOND);
        let t0 = Instant::now() + 60 * SECOND;
        let a = store.issue(1, t0).expect("issue");
        // Issued "in the past", behind a newer ticket.
        let b = store.issue(2, t0 - 30 * SECOND).expect("issue");
        assert_eq!(store.redeem(b.as_str(), t0), Err(TicketError::Expired));
        assert_eq!(store.redeem(a.as_str(), t0 - 40 * SECOND), Ok(1));
        assert_eq!(store.len(), 0);
        let c = store.issue(3, t0 + 20 * SECOND).expect("issue");
        assert_eq!(store.redeem(c.as_str(), t0), Ok(3));
        // Both a and b are forgotten once time has moved far enough.
        assert_eq!(
            store.redeem(a.as_str(), t0 + 60 * SECOND),
            Err(TicketError::Unknown)
        );
        assert_eq!(
            store.redeem(b.as_str(), t0 + 60 * SECOND),
            Err(TicketError::Unknown)
        );
        // A huge lifetime is capped rather than overflowing.
        let long = TicketStore::<()>::new().lifetime(Duration::MAX);
        assert_eq!(long.get_lifetime(), MAX_LIFETIME);
        long.issue((), t0).expect("issue");
    }

    #[test]
    fn debug_output_never_shows_a_ticket() {
        let store = TicketStore::<String>::new();
        let ticket = store.issue("alice".into(), Instant::now()).expect("issue");
        let debug = format!("{ticket:?}");
        assert!(!debug.contains(ticket.as_str()), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
        let debug = format!("{store:?}");
        assert!(!debug.contains(ticket.as_str()), "{debug}");
        assert!(debug.contains("outstanding: 1"), "{debug}");
        let auth = BearerAuth::new(|_token: String| async { Some(()) });
        assert_eq!(format!("{auth:?}"), "BearerAuth { .. }");
    }

    #[test]
    fn stores_are_shared_by_clones_and_send_sync() {
        fn send_sync<X: Send + Sync + 'static>() {}
        send_sync::<TicketStore<String>>();
        send_sync::<BearerAuth<String>>();
        send_sync::<Ticket>();
        send_sync::<TicketError>();
        let store = TicketStore::<u8>::default();
        let clone = store.clone();
        let ticket = store.issue(7, Instant::now()).expect("issue");
        assert_eq!(clone.redeem(ticket.as_str(), Instant::now()), Ok(7));
    }

    #[test]
    fn redeem_query_decodes_the_named_parameter() {
        let store = TicketStore::<u8>::new();
        let t0 = Instant::now();
        let ticket = store.issue(1, t0).expect("issue");
        let query = format!("a=1&ticket={ticket}&ticket=other&b");
        assert_eq!(store.redeem_query(Some(&query), "ticket", t0), Ok(1));
        let ticket = store.issue(2, t0).expect("issue");
        // Percent-encoded (a browser may escape `-` and `_`, it need not).
        let encoded: String = ticket
            .as_str()
            .chars()
            .map(|c| format!("%{:02X}", c as u32))
            .collect();
        let query = format!("tick%65t={encoded}");
        assert_eq!(store.redeem_query(Some(&query), "ticket", t0), Ok(2));
        for query in [None, Some(""), Some("a=1"), Some("ticket="), Some("ticket")] {
            assert_eq!(
                store.redeem_query(query, "ticket", t0),
                Err(TicketError::Missing),
                "{query:?}"
            );
        }
        assert_eq!(
            store.redeem_query(Some("ticket=%FF"), "ticket", t0),
            Err(TicketError::Missing)
        );
        assert_eq!(
            store.redeem_query(Some("ticket=abc"), "ticket", t0),
            Err(TicketError::Unknown)
        );
    }

    #[test]
    fn rejections_carry_status_headers_and_reason() {
        for (error, status) in [
            (TicketError::Missing, 401),
            (TicketError::Unknown, 401),
            (TicketError::Reused, 401),
            (TicketError::Expired, 401),
            (TicketError::Full, 503),
            (TicketError::Random, 503),
        ] {
            assert_eq!(error.status(), status);
            let rejection: Rejection = error.into();
            assert_eq!(rejection, error.rejection());
            assert_eq!(rejection.status(), status);
            assert_eq!(
                header(&rejection, "Content-Type").as_deref(),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(
                header(&rejection, "Cache-Control").as_deref(),
                Some("no-store")
            );
            assert_eq!(body(&rejection), format!("{error}\n"));
            if status == 401 {
                assert_eq!(
                    header(&rejection, "WWW-Authenticate").as_deref(),
                    Some("Ticket")
                );
                assert_eq!(header(&rejection, "Retry-After"), None);
            } else {
                assert_eq!(header(&rejection, "WWW-Authenticate"), None);
                assert_eq!(header(&rejection, "Retry-After").as_deref(), Some("1"));
            }
        }
        assert_eq!(body(&TicketError::Expired.rejection()), "ticket expired\n");
        let error: Box<dyn std::error::Error> = Box::new(TicketError::Reused);
        assert_eq!(error.to_string(), "ticket already used");
    }

    #[test]
    fn bearer_token_from_the_query() {
        let none = HeaderMap::new();
        assert_eq!(
            bearer_token(Some("token=abc"), &none).as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(Some("a=1&token=good%20token+x&token=second&b"), &none).as_deref(),
            Some("good token x")
        );
        assert_eq!(
            bearer_token(Some("token=%E2%9C%93%zz%4"), &none).as_deref(),
            Some("\u{2713}%zz%4")
        );
        // Not UTF-8 once decoded, empty, or absent: none.
        for query in [
            None,
            Some(""),
            Some("token="),
            Some("token"),
            Some("token=%C3"),
            Some("tokens=abc"),
        ] {
            assert_eq!(bearer_token(query, &none), None, "{query:?}");
        }
    }

    #[test]
    fn bearer_token_from_the_header() {
        let token = |value: &str| bearer_token(None, &headers(&[("authorization", value)]));
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(
            token("BEARER   abc.def-_~+/=  ").as_deref(),
            Some("abc.def-_~+/=")
        );
        assert_eq!(token("  Bearer\tabc").as_deref(), Some("abc"));
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Basic YWxhZGRpbjpvcGVu",
            "Bearerabc",
            "",
        ] {
            assert_eq!(token(value), None, "{value:?}");
        }
        // The first Bearer credential among several headers.
        let map = headers(&[("authorization", "Basic x"), ("authorization", "Bearer y")]);
        assert_eq!(bearer_token(None, &map).as_deref(), Some("y"));
    }

    #[test]
    fn bearer_token_query_wins_over_header() {
        let map = headers(&[("authorization", "Bearer from-header")]);
        assert_eq!(
            bearer_token(Some("token=from-query"), &map).as_deref(),
            Some("from-query")
        );
        // An empty query token is none: the header counts.
        assert_eq!(
            bearer_token(Some("token="), &map).as_deref(),
            Some("from-header")
        );
    }

    #[test]
    fn bearer_auth_admits_refuses_and_asks_for_a_token() {
        let auth = BearerAuth::new(|token: String| async move {
            (token == "good token").then(|| "carol".to_owned())
        });
        let auth = auth.clone();
        let none = HeaderMap::new();

        let ok = block_on(auth.authenticate(Some("token=good+token"), &none));
        assert_eq!(ok, Ok("carol".to_owned()));
        let ok =
            block_on(auth.authenticate(None, &headers(&[("authorization", "Bearer good token")])));
        assert_eq!(ok, Ok("carol".to_owned()));

        let refused = block_on(auth.authenticate(Some("token=bad"), &none)).expect_err("refused");
        assert_eq!(refused.status(), 401);
        assert_eq!(
            header(&refused, "WWW-Authenticate").as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(
            header(&refused, "Cache-Control").as_deref(),
            Some("no-store")
        );
        assert_eq!(body(&refused), "bearer token refused\n");

        let missing = block_on(auth.authenticate(None, &none)).expect_err("missing");
        assert_eq!(missing.status(), 401);
        assert_eq!(
            header(&missing, "WWW-Authenticate").as_deref(),
            Some("Bearer")
        );
        assert_eq!(body(&missing), "bearer token missing\n");
    }

    #[test]
    fn bearer_auth_future_is_send_and_static() {
        fn send_static<F: Future + Send + 'static>(_: F) {}
        let auth = BearerAuth::new(|_token: String| async { Some(1u8) });
        let headers = HeaderMap::new();
        let query = String::from("token=x");
        let future = auth.authenticate(Some(&query), &headers);
        drop(query);
        drop(headers);
        drop(auth);
        send_static(future);
    }

    /// Both fit the hub's routes: `?` turns a refusal into the route's `Rejection`.
    #[cfg(feature = "server")]
    #[test]
    fn tickets_and_bearer_auth_fit_hub_routes() {
        use crate::{Admission, Client, Hub, Message, UpgradeRequest, handler_fn};
        let quiet = || handler_fn(|_client: Client, _message: Message| async { Ok(()) });
        let hub = Hub::new();
        let tickets = TicketStore::<String>::new();
        let store = tickets.clone();
        let by_ticket = hub.route(move |req: &UpgradeRequest<'_>| {
            let user = store.redeem_query(req.query(), "ticket", Instant::now())?;
            Ok::<_, Rejection>(Admission::new(quiet()).data(user))
        });
        let auth = BearerAuth::new(|token: String| async move { Some(token) });
        let by_token = hub.route_async(move |info: tidings_io::RequestInfo| {
            let auth = auth.clone();
            async move {
                let user = auth.authenticate(info.query(), info.headers()).await?;
                Ok(Admission::new(quiet()).data(user))
            }
        });
        drop((by_ticket, by_token));
    }

    #[test]
    fn percent_decoding_leaves_invalid_escapes_alone() {
        assert_eq!(percent_decode("a%41b").as_deref(), Some("aAb"));
        assert_eq!(percent_decode("%").as_deref(), Some("%"));
        assert_eq!(percent_decode("%4").as_deref(), Some("%4"));
        assert_eq!(percent_decode("%g1%41").as_deref(), Some("%g1A"));
        assert_eq!(percent_decode("100%25").as_deref(), Some("100%"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
