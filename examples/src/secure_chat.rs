//! The chat behind a login, over HTTPS and `wss://`: the logic of the `secure_chat` example,
//! runtime-neutral so that either server helper hosts it (the example runs it on tidings-tokio
//! with its TLS config; the tests run it on both). The chat itself — rooms, join and leave, chat
//! messages, the page script — is [`chat`]'s, unchanged; this module adds who may use it.
//!
//! ```sh
//! cargo run --release --example secure_chat -- 127.0.0.1:8443
//! # open https://127.0.0.1:8443/ (accept the development certificate), log in as alice / wonderland
//! curl -sk -X POST -d '{"username":"alice","password":"wonderland"}' https://127.0.0.1:8443/login
//! ```
//!
//! ```text
//!  browser ── POST /login {"username","password"} ──► per-IP limit (429) ─► credentials (401)
//!     ▲                                                                         │
//!     └──────────────────── 200 {"otp":"<ticket>"} (one use, 5 s) ◄────────────┘
//!  browser ── GET wss://host/ws?otp=<ticket> ──► redeemed before the upgrade (401) ─► chat router
//! ```
//!
//! # Routes (fixed: clients outside depend on them)
//!
//! Every route is served over TLS only (the server helper's `tls` config: see
//! [`self_signed_tls_config`] and [`pem_tls_config`]).
//!
//! * `GET /` (and `HEAD`): the page ([`PAGE`], `text/html; charset=utf-8`, no external
//!   resources): a login form (element ids `login-form`, `username`, `password`, `login-button`,
//!   `login-error`). Its submit `POST`s `/login`; on `401` it shows `invalid username or
//!   password` in `#login-error`, on `429` `too many attempts, try again in N s` (`N` from
//!   `Retry-After`). Once logged in it hides the form, shows the chat's elements (the ids of the
//!   chat page: `status`, `user-name`, `messages`, `room-select`, `message-input`, `send-button`,
//!   `room-input`, `join-button`, `leave-button`, `rooms-list`) and runs `/chat.js` with
//!   `startChat({ user, connect })`, whose `connect` logs in again for a fresh ticket before
//!   every reconnection (the first connection uses the login's own ticket) and returns
//!   `wss://HOST/ws?otp=<ticket>`. The credentials stay in the page's memory only (never in
//!   storage, the URL or a cookie). Other methods: `405` with `Allow: GET, HEAD`.
//! * `GET /chat.js` and `GET /chat.css`: the chat's script and style sheet ([`chat::SCRIPT`],
//!   [`chat::STYLE`]). Other methods: `405`.
//! * `POST /login` with the JSON object `{"username":"alice","password":"wonderland"}` (any
//!   `Content-Type`; other fields ignored). Every answer is JSON (`Content-Type:
//!   application/json`) with `Cache-Control: no-store`:
//!
//!   | status | body | when |
//!   |---|---|---|
//!   | `200` | `{"otp":"<ticket>"}` | the credentials are right: a one-time ticket (43 characters of base64url) for `/ws` |
//!   | `400` | `{"error":"…"}` | the body is not a JSON object with the string fields `username` and `password` |
//!   | `401` | `{"error":"invalid username or password"}` | an unknown user or a wrong password (the same answer for both) |
//!   | `405` | `{"error":"use POST"}`, with `Allow: POST` | any other method |
//!   | `429` | `{"error":"too many attempts, try again in N s"}`, with `Retry-After: N` | over the login limit of the client's IP address |
//!   | `503` | `{"error":"…"}` | no ticket could be issued (the store is full) |
//!
//!   **Login limit**: per client IP address (the TCP peer: behind a reverse proxy every client
//!   shares the proxy's), [`LOGIN_BURST`] attempts at once, then one every
//!   1 / [`LOGIN_REFILL_PER_SEC`] s (2 s). Every `POST` counts — right, wrong or malformed — and
//!   the limit is checked first, so a client over it learns nothing about the credentials. The
//!   page logs in again before each reconnection, so a page that reconnects often spends
//!   attempts too (its backoff waits and retries).
//!
//!   Passwords are compared in constant time ([`Credentials::check`]): the time taken depends
//!   on the length of what was sent only, not on how much of it matched or which user it names.
//! * `/ws?otp=<ticket>`: the WebSocket. The ticket ([`TICKET_PARAM`]) is redeemed when the
//!   upgrade request arrives, before anything is upgraded: a missing, unknown, already used or
//!   expired ticket (older than [`TICKET_LIFETIME`]) is answered `401` (never `101` and then a
//!   close). A ticket is good for one upgrade only. The admitted client is the user the ticket
//!   was issued to (`chat::User`), and speaks the chat's wire protocol exactly
//!   (see [`chat`]: it starts in `general`, so its first message is its own
//!   `user_joined` for `general`). The same-origin policy applies: a browser page from another
//!   origin is refused with `403`; clients that send no `Origin` (not browsers) are let in.
//!
//! # Limits of the WebSocket ([`hub_config`])
//!
//! * A message larger than [`MAX_MESSAGE_BYTES`] (the whole envelope, in bytes) closes the
//!   connection with `1009` (message too big). The chat's own text limit is larger, so here a
//!   chat text can be about 440 bytes in `general` (less in rooms with longer names); the page
//!   refuses a message over the limit before sending it.
//! * The server pings every [`PING_INTERVAL`]; a client whose pong does not arrive within
//!   [`PONG_TIMEOUT`] is dropped. Browsers answer pings by themselves.
//! * The chat's own limits ([`chat::hub_config`], e.g. a message rate
//!   limit if it sets one) apply unchanged.
//!
//! # What it does not do
//!
//! No user database, password hashing or sign-up: [`Credentials`] are a list given at start
//! (the example's command line). No sessions or cookies: the page keeps the credentials in
//! memory and logs in again for each connection. No rate limit per user name (only per IP), no
//! lockout, no `X-Forwarded-For`. Tickets live in this process's memory.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tidings_hub::auth::TicketStore;
use tidings_hub::{Admission, Hub, HubConfig, RateLimiter, Rejection, UpgradeRequest};
use tidings_io::http::{Method, Request};
use tidings_io::{HttpResponse, PeerAddr, Route};

use crate::chat::{self, User};

/// The page served at `/`: the login form, then the chat.
pub const PAGE: &str = include_str!("secure_chat.html");

/// The query parameter of `/ws` that carries the one-time ticket: `/ws?otp=<ticket>`.
pub const TICKET_PARAM: &str = "otp";
/// How long a ticket is good for after the login that issued it. The page connects right
/// after logging in, so a few seconds are plenty; a ticket that leaks (a log, a proxy) is
/// useless soon after.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(5);
/// Login attempts an IP address may make at once (its bucket's capacity).
pub const LOGIN_BURST: u32 = 5;
/// Login attempts an IP address regains per second once it used its burst: one every 2 s.
pub const LOGIN_REFILL_PER_SEC: f64 = 0.5;
/// The largest WebSocket message a client may send, in bytes; a larger one closes the
/// connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// How often the server pings each client.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long a client has to answer a ping before it is dropped.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// The development user name, when no users are given.
pub const DEV_USER: &str = "alice";
/// The development password, when no users are given.
pub const DEV_PASSWORD: &str = "wonderland";
/// The host names the development certificate is for (plus the IP addresses given to
/// [`self_signed_tls_config`]).
pub const DEV_CERT_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];
/// The answer to wrong credentials (`401`), the same for an unknown user and a wrong password.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";

/// The settings of the secure chat's hub: the chat's ([`chat::hub_config`]) with a message
/// size limit of [`MAX_MESSAGE_BYTES`] and the server's keepalive ([`PING_INTERVAL`],
/// [`PONG_TIMEOUT`]).
pub fn hub_config() -> HubConfig {
    chat::hub_config()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .ping_interval(Some(PING_INTERVAL))
        .pong_timeout(Some(PONG_TIMEOUT))
}

// ---- credentials ---------------------------------------------------------------------------------

/// The users who may log in, with their passwords (kept in memory as given: this is an example;
/// a real service stores password hashes). Debug output shows the user names only.
#[derive(Clone, Default)]
pub struct Credentials {
    users: Vec<(String, String)>,
}

impl Credentials {
    /// No users: nobody can log in.
    pub fn new() -> Self {
        Self::default()
    }

    /// The development user: [`DEV_USER`] / [`DEV_PASSWORD`].
    pub fn development() -> Self {
        Credentials {
            users: vec![(DEV_USER.to_owned(), DEV_PASSWORD.to_owned())],
        }
    }

    /// Adds a user.
    ///
    /// # Errors
    ///
    /// A user name that is empty, longer than [`chat::MAX_USER_BYTES`] bytes or already added,
    /// or an empty password, with why.
    pub fn add(
        &mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<(), String> {
        let (user, password) = (user.into(), password.into());
        if user.is_empty() {
            return Err("a user name must not be empty".to_owned());
        }
        if user.len() > chat::MAX_USER_BYTES {
            return Err(format!(
                "user name {user:?} too long (at most {} bytes)",
                chat::MAX_USER_BYTES
            ));
        }
        if password.is_empty() {
            return Err(format!("the password of {user:?} must not be empty"));
        }
        if self.users.iter().any(|(known, _)| *known == user) {
            return Err(format!("user {user:?} given twice"));
        }
        self.users.push((user, password));
        Ok(())
    }

    /// [`add`](Self::add), chained.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn with(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Self, String> {
        self.add(user, password)?;
        Ok(self)
    }

    /// The user names, in the order added.
    pub fn users(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.iter().map(|(user, _)| user.as_str())
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is the password of `user`. Every user is compared, name and
    /// password, in constant time: the time taken depends on the lengths sent and the number
    /// of users only, not on which user matched or how many bytes did.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let mut found = false;
        for (known, secret) in &self.users {
            // `&`, not `&&`: both comparisons run for every entry.
            found |= same_bytes(user.as_bytes(), known.as_bytes())
                & same_bytes(password.as_bytes(), secret.as_bytes());
        }
        found
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `given == expected` in constant time: one pass over `given` (whose length the sender knows
/// anyway) against `expected` repeated, folding the differences with no early exit, so neither
/// the position of the first difference nor the length of `expected` shows in the timing.
fn same_bytes(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (g, e) in given.iter().zip(expected.iter().cycle()) {
        diff |= g ^ e;
    }
    std::hint::black_box(diff) == 0
}

// ---- the app ---------------------------------------------------------------------------------------

/// The secure chat's state, shared by its routes: the chat's hub, the tickets issued by
/// `/login` and redeemed by `/ws`, the per-IP login limit and the users. Fields are public so
/// that an application (or a test) can issue a ticket itself or use another limit; build the
/// routes ([`routes`]) after changing them. Clones share the hub, the tickets and the limits.
#[derive(Clone)]
pub struct App {
    /// The chat's hub (made with [`hub_config`]).
    pub hub: Hub,
    /// One-time tickets, each for a user name; [`TICKET_LIFETIME`].
    pub tickets: TicketStore<String>,
    /// Login attempts per client IP address: [`LOGIN_BURST`], then [`LOGIN_REFILL_PER_SEC`].
    pub logins: RateLimiter<IpAddr>,
    /// Who may log in.
    pub users: Credentials,
}

impl App {
    /// A new hub ([`hub_config`]), ticket store and login limit for `users`.
    pub fn new(users: Credentials) -> Self {
        App {
            hub: Hub::with_config(hub_config()),
            tickets: TicketStore::new().lifetime(TICKET_LIFETIME),
            logins: RateLimiter::new(LOGIN_BURST, LOGIN_REFILL_PER_SEC),
            users,
        }
    }
}

/// The secure chat's routes on `app`: the page at `/`, the chat's script and style sheet at
/// `/chat.js` and `/chat.css`,
/// `/login` and the WebSocket at `/ws`. Give them to either server helper with a TLS config:
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings_examples::secure_chat::{self, App, Credentials};
/// let app = App::new(Credentials::development());
/// let tls = secure_chat::self_signed_tls_config(&[])?;
/// let server = tidings_tokio::server::Server::new().tls(tls.config).routes(secure_chat::routes(&app));
/// server.bind("127.0.0.1:8443").await?.serve().await;
/// # Ok(()) }
/// ```
pub fn routes(app: &App) -> Vec<(&'static str, Route)> {
    let tickets = app.tickets.clone();
    let router = chat::router();
    // The ticket is redeemed in `init`, before the upgrade: a bad one is a 401 answer.
    let ws = app.hub.route(move |req: &UpgradeRequest<'_>| {
        let user = tickets.redeem_query(req.query(), TICKET_PARAM, Instant::now())?;
        Ok::<_, Rejection>(Admission::new(router.clone()).data(User(user)))
    });
    let login_app = app.clone();
    let login = Route::http(move |req: Request<Bytes>| {
        let response = login(&login_app, &req, Instant::now());
        async move { response }
    });
    let page =
        Route::http(
            |req: Request<Bytes>| async move { chat::static_resource(&req, chat::HTML, PAGE) },
        );
    let mut routes = vec![
        ("/", page.into()),
        ("/login", login.into()),
        ("/ws", ws.into()),
    ];
    routes.extend(chat::asset_routes());
    routes
}

/// The body of `POST /login`.
#[derive(Debug, Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

/// The answer to a good login.
#[derive(Debug, Serialize)]
struct LoggedIn<'a> {
    otp: &'a str,
}

/// The answer to a refused login.
#[derive(Debug, Serialize)]
struct Refused<'a> {
    error: &'a str,
}

/// `/login` at `now`.
fn login(app: &App, req: &Request<Bytes>, now: Instant) -> HttpResponse {
    if req.method() != Method::POST {
        return refused(405, "use POST").header("Allow", "POST");
    }
    // Always there under the server helper; without it every such request shares one bucket.
    let ip = req
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip());
    if let Err(limited) = app.logins.check(&ip, now) {
        let retry_after = limited.retry_after_secs();
        return refused(
            429,
            &format!("too many attempts, try again in {retry_after} s"),
        )
        .header("Retry-After", retry_after.to_string());
    }
    let credentials = match parse_login(req.body()) {
        Ok(credentials) => credentials,
        Err(why) => return refused(400, &why),
    };
    if !app
        .users
        .check(&credentials.username, &credentials.password)
    {
        return refused(401, INVALID_CREDENTIALS);
    }
    match app.tickets.issue(credentials.username, now) {
        Ok(ticket) => json(
            200,
            &LoggedIn {
                otp: ticket.as_str(),
            },
        ),
        // Full of live tickets (or no randomness): nothing the client did wrong.
        Err(e) => {
            refused(503, &format!("cannot issue a ticket now: {e}")).header("Retry-After", "1")
        }
    }
}

/// The credentials of a login body; why it is refused.
fn parse_login(body: &[u8]) -> Result<LoginRequest, String> {
    // An object: serde would also take the fields as an array (`["alice","wonderland"]`).
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("expected a JSON object with username and password: {e}"))?;
    serde_json::from_value(object.into()).map_err(|e| format!("invalid login: {e}"))
}

/// A JSON answer of `/login` (never cached: it may carry a ticket).
fn json(status: u16, value: &impl Serialize) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    HttpResponse::new(status)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-store")
        .body(body)
}

/// `{"error":"…"}` with `status`.
fn refused(status: u16, error: &str) -> HttpResponse {
    json(status, &Refused { error })
}

// ---- TLS -------------------------------------------------------------------------------------------

/// Why a TLS config could not be made: a message for the user (it names the file and what is
/// wrong with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError(pub String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// A development TLS config: a fresh self-signed certificate and its key, made in memory.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The server config, for `Server::tls`.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate, for a client that should trust it (e.g. a test's root store).
    pub certificate: CertificateDer<'static>,
    /// The certificate in PEM, for `curl --cacert` or a browser's trust store.
    pub certificate_pem: String,
    /// The names it is for: [`DEV_CERT_NAMES`] and the extra IP addresses.
    pub names: Vec<String>,
}

/// A server config with a new self-signed certificate (made with rcgen, ECDSA P-256) for
/// `localhost`, `127.0.0.1` and each address of `extra_ips` (e.g. the address the server binds,
/// when it is a specific one; unspecified addresses and repeats are left out).
///
/// # Errors
///
/// If the certificate cannot be made or rustls refuses it (neither is expected).
pub fn self_signed_tls_config(extra_ips: &[IpAddr]) -> Result<SelfSigned, TlsSetupError> {
    let mut names: Vec<String> = DEV_CERT_NAMES.iter().map(|&n| n.to_owned()).collect();
    for ip in extra_ips {
        let name = ip.to_string();
        if !ip.is_unspecified() && !names.contains(&name) {
            names.push(name);
        }
    }
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names.clone())
            .map_err(|e| TlsSetupError(format!("cannot make a self-signed certificate: {e}")))?;
    let certificate = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    Ok(SelfSigned {
        config: tls_config(vec![certificate.clone()], key)?,
        certificate,
        certificate_pem: cert.pem(),
        names,
    })
}

/// A server config from PEM files: `cert` holds the certificate chain (one or more
/// `CERTIFICATE` blocks, the server's first), `key` its private key (a `PRIVATE KEY` (PKCS#8),
/// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1) block).
///
/// # Errors
///
/// A file that cannot be read, holds no certificate or no key, is not valid PEM, or a key that
/// rustls cannot use with the certificate; the message names the file.
pub fn pem_tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            TlsSetupError(format!(
                "cannot read the {what} file {}: {e}",
                path.display()
            ))
        })
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "key")?;
    let chain = certificate_chain(&cert_pem)
        .map_err(|why| TlsSetupError(format!("{}: {why}", cert.display())))?;
    let key_der =
        private_key(&key_pem).map_err(|why| TlsSetupError(format!("{}: {why}", key.display())))?;
    tls_config(chain, key_der)
        .map_err(|e| TlsSetupError(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// [`pem_tls_config`] from PEM text in memory.
///
/// # Errors
///
/// As [`pem_tls_config`], without file names.
pub fn tls_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain =
        certificate_chain(cert_pem).map_err(|why| TlsSetupError(format!("certificate: {why}")))?;
    let key = private_key(key_pem).map_err(|why| TlsSetupError(format!("key: {why}")))?;
    tls_config(chain, key)
}

/// A server config for a certificate chain and its key: TLS 1.2 and 1.3 on rustls' ring
/// provider, HTTP/1.1 by ALPN.
///
/// # Errors
///
/// A key that rustls cannot use or that does not belong to the certificate.
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError(format!("certificate and key do not work together: {e}")))?;
    // The server helper speaks HTTP/1.1 (WebSockets upgrade from it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of a PEM text, in order.
fn certificate_chain(pem_text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {}", pem_error(&e)))?;
    if chain.is_empty() {
        return Err("no certificate (no CERTIFICATE block) found".to_owned());
    }
    Ok(chain)
}

/// The first private key of a PEM text.
fn private_key(pem_text: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem_text).map_err(|e| match e {
        pem::Error::NoItemsFound => "no private key found (expected a PRIVATE KEY, \
             RSA PRIVATE KEY or EC PRIVATE KEY block)"
            .to_owned(),
        e => format!("invalid PEM: {}", pem_error(&e)),
    })
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block without its END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(why) => format!("bad base64 ({why})"),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        for (a, b) in [
            ("", ""),
            ("a", "a"),
            ("wonderland", "wonderland"),
            ("wonderland", "wonderlanD"),
            ("wonder", "wonderland"),
            ("wonderland", "wonder"),
            ("wonderwonder", "wonder"),
            ("", "x"),
            ("x", ""),
        ] {
            assert_eq!(
                same_bytes(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn credentials_check_every_user() {
        let users = Credentials::development()
            .with("bob", "builder")
            .expect("bob");
        assert!(users.check("alice", "wonderland"));
        assert!(users.check("bob", "builder"));
        assert!(!users.check("alice", "builder"));
        assert!(!users.check("bob", "wonderland"));
        assert!(!users.check("carol", "wonderland"));
        assert!(!users.check("", ""));
        assert!(!Credentials::new().check("alice", "wonderland"));
        assert!(users.clone().with("bob", "again").is_err());
        assert!(Credentials::new().with("", "x").is_err());
        assert!(Credentials::new().with("x", "").is_err());
        assert!(!format!("{users:?}").contains("wonderland"));
    }

    #[test]
    fn login_bodies() {
        assert!(parse_login(br#"{"username":"a","password":"b","x":1}"#).is_ok());
        assert!(parse_login(br#"["a","b"]"#).is_err());
        assert!(parse_login(br#"{"username":"a"}"#).is_err());
        assert!(parse_login(br#"{"username":"a","password":1}"#).is_err());
        assert!(parse_login(b"username=a&password=b").is_err());
    }
}
