//! Rate limits: a [`TokenBucket`] (one client's messages), a [`RateLimiter`] of buckets by key
//! (logins per IP address), and the hub's per-connection [`RateLimit`].
//!
//! Time is passed in (`now: Instant`) and nothing runs in the background: a bucket refills by the
//! time elapsed since it was last looked at, so tests drive it with a simulated clock and an idle
//! bucket costs nothing.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tidings_core::CloseCode;
use tidings_io::Rejection;

/// A token bucket: holds up to `capacity` tokens, starts full, and gains `refill_per_sec` tokens
/// a second up to its capacity; each event takes one. It allows bursts of `capacity` and a
/// sustained rate of `refill_per_sec`.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use tidings_hub::TokenBucket;
/// let t0 = Instant::now();
/// let mut bucket = TokenBucket::new(2, 1.0);
/// assert!(bucket.try_take(t0));
/// assert!(bucket.try_take(t0));
/// assert!(!bucket.try_take(t0)); // empty
/// assert!(bucket.try_take(t0 + Duration::from_secs(1))); // one token back after a second
/// ```
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date (`None`: never, the bucket is full).
    updated: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `refill_per_sec` tokens a second. A
    /// capacity of 0 allows nothing; a rate that is negative or not finite counts as 0 (no refill).
    pub fn new(capacity: u32, refill_per_sec: f64) -> Self {
        let refill_per_sec = if refill_per_sec.is_finite() && refill_per_sec > 0.0 {
            refill_per_sec
        } else {
            0.0
        };
        TokenBucket {
            capacity: f64::from(capacity),
            refill_per_sec,
            tokens: f64::from(capacity),
            updated: None,
        }
    }

    /// The bucket's capacity.
    pub fn capacity(&self) -> u32 {
        // Exact: the capacity came from a `u32`.
        self.capacity as u32
    }

    /// The refill rate, in tokens a second.
    pub fn refill_per_sec(&self) -> f64 {
        self.refill_per_sec
    }

    /// Brings the token count up to `now`. A `now` earlier than the last one adds nothing.
    fn refill(&mut self, now: Instant) {
        if let Some(then) = self.updated {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
            if now > then {
                self.updated = Some(now);
            }
        } else {
            self.updated = Some(now);
        }
    }

    /// Takes one token if there is one: `true` when the event may go ahead.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(1, now)
    }

    /// Takes `n` tokens if there are that many (all or nothing).
    pub fn try_take_n(&mut self, n: u32, now: Instant) -> bool {
        self.refill(now);
        let n = f64::from(n);
        if self.tokens + TOKEN_SLACK >= n {
            self.tokens = (self.tokens - n).max(0.0);
            true
        } else {
            false
        }
    }

    /// The whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        // In 0..=capacity, which came from a u32.
        (self.tokens + TOKEN_SLACK).floor().min(self.capacity) as u32
    }

    /// How long after `now` until one token is available (zero if one is); `None` when none
    /// ever will be (no refill, or a capacity of 0).
    pub fn time_until_available(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens + TOKEN_SLACK >= 1.0 {
            return Some(Duration::ZERO);
        }
        if self.refill_per_sec == 0.0 || self.capacity < 1.0 {
            return None;
        }
        // Rounded up to the nanosecond: a take at `now` plus this wait succeeds.
        let nanos = ((1.0 - self.tokens) / self.refill_per_sec * 1e9).ceil();
        Duration::try_from_secs_f64(nanos / 1e9).ok()
    }

    /// Whether the bucket is full at `now` (it has been idle long enough to forget).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens + TOKEN_SLACK >= self.capacity
    }
}

/// Refused by a rate limit: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// How long until the key has a token again (`None`: never, with this limit).
    pub retry_after: Option<Duration>,
}

impl Limited {
    /// The wait in whole seconds, rounded up and at least 1, as `Retry-After` gives it (60 when
    /// no token will ever come).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after
            .map_or(60, |d| {
                d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
            })
            .max(1)
    }

    /// The answer to an HTTP request over the limit: `429 Too Many Requests` (RFC 6585 §4) with
    /// `Retry-After` in whole seconds, rounded up (RFC 9110 §10.2.3).
    pub fn rejection(&self) -> Rejection {
        Rejection::new(429)
            .header("Retry-After", self.retry_after_secs().to_string())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("too many requests\n")
    }
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "rate limit exceeded: retry in {} ms", d.as_millis()),
            None => f.write_str("rate limit exceeded"),
        }
    }
}

impl std::error::Error for Limited {}

impl From<Limited> for Rejection {
    fn from(limited: Limited) -> Self {
        limited.rejection()
    }
}

/// Default bound on the keys a [`RateLimiter`] tracks: 10,000.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// How far below a whole token a bucket may be and still give it: the refill adds up in
/// floating point, and a bucket that has waited exactly [`TokenBucket::time_until_available`]
/// must not come out a rounding error short.
const TOKEN_SLACK: f64 = 1e-9;

/// A [`TokenBucket`] per key — an IP address for a login form, a user for an API — with a
/// bound on the keys it remembers. Clones share the buckets.
///
/// A key's bucket is forgotten once it is full again (it has been idle for `capacity /
/// refill_per_sec`), when room is needed; with every bucket busy, the least recently used goes.
/// So memory stays within `max_keys` buckets however many keys come, and a key that is forgotten
/// early only gets a full bucket back.
///
/// ```
/// # use std::net::IpAddr;
/// # use std::time::Instant;
/// # use tidings_hub::RateLimiter;
/// // 5 attempts, then one every 10 s, per IP address.
/// let logins = RateLimiter::<IpAddr>::new(5, 0.1);
/// let ip: IpAddr = "192.0.2.7".parse().unwrap();
/// let now = Instant::now();
/// for _ in 0..5 {
///     assert!(logins.check(&ip, now).is_ok());
/// }
/// let refused = logins.check(&ip, now).unwrap_err();
/// assert_eq!(refused.rejection().status(), 429);
/// ```
pub struct RateLimiter<K> {
    inner: Arc<Mutex<Buckets<K>>>,
}

struct Buckets<K> {
    template: TokenBucket,
    max_keys: usize,
    /// Each key's bucket and the latest `now` it was checked at (for least-recently-used
    /// eviction; the bucket's own time moves whenever it is refilled, eviction's scan included).
    buckets: HashMap<K, (TokenBucket, Instant)>,
}

impl<K> Clone for RateLimiter<K> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("RateLimiter")
            .field("capacity", &inner.template.capacity())
            .field("refill_per_sec", &inner.template.refill_per_sec())
            .field("max_keys", &inner.max_keys)
            .field("keys", &inner.buckets.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `capacity` events at once per key, then `refill_per_sec` a second; at most
    /// [`DEFAULT_MAX_KEYS`] keys remembered.
    pub fn new(capacity: u32, refill_per_sec: f64) -> Self {
        RateLimiter {
            inner: Arc::new(Mutex::new(Buckets {
                template: TokenBucket::new(capacity, refill_per_sec),
                max_keys: DEFAULT_MAX_KEYS,
                buckets: HashMap::new(),
            })),
        }
    }

    /// Bounds the keys remembered (at least 1).
    pub fn max_keys(self, max: usize) -> Self {
        self.lock().max_keys = max.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token from `key`'s bucket at `now`.
    ///
    /// # Errors
    ///
    /// [`Limited`], with the time until the key has a token again, when its bucket is empty.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let mut inner = self.lock();
        if !inner.buckets.contains_key(key) && inner.buckets.len() >= inner.max_keys {
            inner.make_room(now);
        }
        let template = inner.template.clone();
        let (bucket, used) = inner
            .buckets
            .entry(key.clone())
            .or_insert_with(|| (template, now));
        *used = (*used).max(now);
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(Limited {
                retry_after: bucket.time_until_available(now),
            })
        }
    }

    /// The keys remembered now.
    pub fn len(&self) -> usize {
        self.lock().buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Forgets the full buckets, or else the least recently used one.
    fn make_room(&mut self, now: Instant) {
        self.buckets.retain(|_, (bucket, _)| !bucket.is_full(now));
        if self.buckets.len() < self.max_keys {
            return;
        }
        let oldest = self
            .buckets
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.buckets.remove(&key);
        }
    }
}

/// What the hub does with a message over a client's [`RateLimit`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitAction {
    /// Drops the message and answers the client with an error
    /// (`{"type":"error","payload":{"message":"rate limit exceeded"}}` with the `json` feature,
    /// and the error hooks); the connection stays open. The default.
    ErrorReply,
    /// Closes the connection with this code (1008, policy violation, RFC 6455 §7.4.1, is the
    /// usual one) and the reason `rate limit exceeded`.
    Close(CloseCode),
}

/// A limit on the messages each client of a hub may send: a [`TokenBucket`] per connection
/// (`capacity` messages at once, then `refill_per_sec` a second), checked before the message
/// reaches the handler, and what to do with a message over it.
///
/// ```
/// # use tidings_hub::{HubConfig, RateLimit};
/// // Bursts of 20, 5 a second sustained; above that, close with 1008.
/// let config = HubConfig::default().rate_limit(Some(RateLimit::new(20, 5.0).close_on_exceed()));
/// # drop(config);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    capacity: u32,
    refill_per_sec: f64,
    action: RateLimitAction,
}

impl RateLimit {
    /// `capacity` messages at once, then `refill_per_sec` a second; excess messages are answered
    /// with an error ([`RateLimitAction::ErrorReply`]).
    pub fn new(capacity: u32, refill_per_sec: f64) -> Self {
        RateLimit {
            capacity,
            refill_per_sec,
            action: RateLimitAction::ErrorReply,
        }
    }

    /// What to do with a message over the limit.
    pub fn action(mut self, action: RateLimitAction) -> Self {
        self.action = action;
        self
    }

    /// Closes the connection with 1008 (policy violation) on a message over the limit.
    pub fn close_on_exceed(self) -> Self {
        self.action(RateLimitAction::Close(CloseCode::POLICY_VIOLATION))
    }

    /// The action on a message over the limit.
    pub fn get_action(&self) -> RateLimitAction {
        self.action
    }

    /// A new full bucket for one connection.
    pub fn bucket(&self) -> TokenBucket {
        TokenBucket::new(self.capacity, self.refill_per_sec)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_allows_a_burst_of_its_capacity_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 2.0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        // 2 a second: one token every 500 ms.
        assert!(!b.try_take(t0 + ms(499)));
        assert!(b.try_take(t0 + ms(500)));
        assert!(!b.try_take(t0 + ms(600)));
        assert_eq!(b.time_until_available(t0 + ms(600)), Some(ms(400)));
        // A long idle time refills to the capacity, never above.
        assert_eq!(b.available(t0 + Duration::from_secs(100)), 3);
        assert!(b.is_full(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn bucket_without_refill_or_capacity_never_recovers() {
        let t0 = Instant::now();
        let mut none = TokenBucket::new(0, 10.0);
        assert!(!none.try_take(t0));
        assert_eq!(none.time_until_available(t0), None);
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut b = TokenBucket::new(1, rate);
            assert!(b.try_take(t0));
            assert!(!b.try_take(t0 + Duration::from_secs(3600)), "rate {rate}");
            assert_eq!(b.time_until_available(t0), None);
        }
    }

    #[test]
    fn bucket_take_n_is_all_or_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 1.0);
        assert!(!b.try_take_n(6, t0));
        assert_eq!(b.available(t0), 5);
        assert!(b.try_take_n(5, t0));
        assert_eq!(b.available(t0), 0);
    }

    #[test]
    fn bucket_tolerates_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 1.0);
        assert!(b.try_take(t0));
        // Earlier than the last look: no refill, no panic, and the later clock still counts.
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn limiter_keeps_one_bucket_per_key() {
        let t0 = Instant::now();
        let limiter = RateLimiter::<IpAddr>::new(2, 0.5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check(&a, t0).is_ok());
        assert!(limiter.check(&a, t0).is_ok());
        let refused = limiter.check(&a, t0).unwrap_err();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(2)));
        // Another key is unaffected.
        assert!(limiter.check(&b, t0).is_ok());
        // Two seconds later `a` has one token again.
        assert!(limiter.check(&a, t0 + Duration::from_secs(2)).is_ok());
        assert!(limiter.check(&a, t0 + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn limiter_refusal_is_429_with_retry_after_rounded_up() {
        let limited = Limited {
            retry_after: Some(ms(1500)),
        };
        let r = limited.rejection();
        assert_eq!(r.status(), 429);
        let head = |r: Rejection| String::from_utf8(r.to_response()).unwrap();
        assert!(head(r).contains("Retry-After: 2\r\n"));
        let never = Limited { retry_after: None }.rejection();
        assert!(head(never).contains("Retry-After: 60\r\n"));
        let soon = Limited {
            retry_after: Some(ms(1)),
        };
        assert!(head(soon.rejection()).contains("Retry-After: 1\r\n"));
    }

    #[test]
    fn limiter_memory_stays_bounded_under_many_keys() {
        let t0 = Instant::now();
        let limiter = RateLimiter::<u32>::new(3, 1.0).max_keys(100);
        for key in 0..10_000u32 {
            // Every key is busy (just used), so the least recently used goes.
            assert!(limiter.check(&key, t0 + ms(u64::from(key))).is_ok());
            assert!(limiter.len() <= 100);
        }
        // A key evicted early comes back with a full bucket: it is never refused wrongly.
        assert!(limiter.check(&0, t0 + ms(10_000)).is_ok());
    }

    #[test]
    fn limiter_forgets_full_buckets_first() {
        let t0 = Instant::now();
        let limiter = RateLimiter::<u32>::new(1, 1.0).max_keys(2);
        assert!(limiter.check(&1, t0).is_ok());
        assert!(limiter.check(&2, t0 + Duration::from_secs(5)).is_ok());
        // Key 1 has been full again since t0 + 1 s; key 2 is empty. Making room for key 3 must
        // forget 1, keep 2 (still refused).
        assert!(limiter.check(&3, t0 + Duration::from_secs(5)).is_ok());
        assert!(limiter.check(&2, t0 + Duration::from_secs(5)).is_err());
        assert_eq!(limiter.len(), 2);
    }

    /// Found by the `hub_admission` fuzz target: the scan for full buckets refills them all to
    /// the same instant, so eviction by the buckets' own time picked an arbitrary key.
    #[test]
    fn limiter_evicts_the_least_recently_checked_key() {
        for _ in 0..20 {
            let t0 = Instant::now();
            let limiter = RateLimiter::<u32>::new(1, 0.5).max_keys(2);
            assert!(limiter.check(&1, t0).is_ok());
            assert!(limiter.check(&2, t0 + ms(10)).is_ok());
            // Room for 3: neither bucket is full; 1 is the least recently checked.
            assert!(limiter.check(&3, t0 + ms(20)).is_ok());
            let refused = limiter
                .check(&2, t0 + ms(20))
                .expect_err("2 is remembered, empty");
            let wait = refused.retry_after.expect("a refill");
            assert!(wait > ms(1900) && wait <= ms(1990), "{wait:?}");
        }
    }

    #[test]
    fn a_token_is_there_after_the_wait_it_was_promised_for() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 0.5);
        assert!(bucket.try_take_n(3, t0));
        let mut now = t0 + ms(1990);
        assert!(!bucket.try_take(now));
        now += ms(10);
        // 1.99 s + 0.01 s at 0.5/s: one token, give or take a rounding error.
        let wait = bucket.time_until_available(now).expect("a refill");
        assert!(bucket.try_take(now + wait), "waited {wait:?}");
    }

    #[test]
    fn a_huge_retry_after_does_not_overflow() {
        let limited = Limited {
            retry_after: Some(Duration::MAX),
        };
        let response = limited.rejection().to_http_response();
        assert_eq!(
            response.get_header("Retry-After"),
            Some(u64::MAX.to_string().as_str())
        );
    }

    #[test]
    fn rate_limit_config_defaults_to_error_replies() {
        let limit = RateLimit::new(2, 1.0);
        assert_eq!(limit.get_action(), RateLimitAction::ErrorReply);
        assert_eq!(
            limit.close_on_exceed().get_action(),
            RateLimitAction::Close(CloseCode::POLICY_VIOLATION)
        );
        assert_eq!(limit.bucket().capacity(), 2);
    }
}
