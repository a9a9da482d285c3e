//! A live dashboard fed by Server-Sent Events, on the hub: the logic of the `live_feed` example,
//! runtime-neutral so that either server helper hosts it (the example runs it on tidings-smol;
//! the tests run it on both).
//!
//! ```sh
//! cargo run --release --example live_feed -- 127.0.0.1:9005
//! # open http://127.0.0.1:9005/, or: curl -N http://127.0.0.1:9005/feed
//! ```
//!
//! # Routes (fixed: clients outside depend on them)
//!
//! * `GET /`: the dashboard (`text/html; charset=utf-8`, no external resources). Its script opens
//!   `new EventSource("/feed")` on its own origin and shows the number of connected clients
//!   (element `clients`), the connection state (`status`) and a log of the latest ticks
//!   (`log`, newest first).
//! * `GET /feed`: the event stream (`200`, `Content-Type: text/event-stream`); other methods
//!   `405`. Each subscriber is a client of the hub in the room [`FEED`].
//!
//! # Events
//!
//! Every [`TICK`] (1 s) the [`ticker`] sends to the room [`FEED`]:
//!
//! ```text
//! event: tick
//! data: {"seq":7,"time":"2025-01-31T12:00:07.000Z","clients":2}
//! id: 42
//! ```
//!
//! `seq` counts the ticks from 1, `time` is the server's time (RFC 3339, UTC, milliseconds) and
//! `clients` the number of clients connected to the hub ([`Hub::client_count`]) when the tick
//! was sent: a subscriber counts itself. A client that goes away is counted until the server
//! notices, which is at the latest when a write to it fails: ticks are written every second
//! (and a comment after [`HEARTBEAT`] without events), so within a few ticks. The stream starts
//! with `retry: 2000`. Ticks are not kept: a reconnecting client gets the next one (its
//! `Last-Event-ID` is not replayed).

use std::future::poll_fn;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tidings_hub::{Hub, HubError, SseConfig, SseSubscription};
use tidings_io::http::{Method, Request, Response, StatusCode};
use tidings_io::{Body, HttpResponse, IntoResponse, Route, Runtime};

/// The room of the feed's subscribers.
pub const FEED: &str = "feed";
/// How often the ticker sends a tick.
pub const TICK: Duration = Duration::from_secs(1);
/// A comment is sent after this long without events: a client that went away is noticed by
/// the failed write within it, also if the ticks stop.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The reconnection delay the stream asks browsers for (`retry:`).
pub const RETRY: Duration = Duration::from_secs(2);

/// The dashboard served at `/`.
pub const PAGE: &str = include_str!("live_feed.html");

/// The data of a `tick` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// The tick's number, from 1.
    pub seq: u64,
    /// The server's time, RFC 3339.
    pub time: String,
    /// The clients connected to the hub.
    pub clients: usize,
}

/// The feed's routes on `hub`: the page at `/` and the stream at `/feed`. `rt` is the runtime of
/// the server helper that hosts them (`tidings_smol::runtime()` or `tidings_tokio::runtime()`);
/// it runs the heartbeats. Run the [`ticker`] alongside:
///
/// ```no_run
/// # fn f() -> std::io::Result<()> { smol::block_on(async {
/// use tidings_examples::live_feed;
/// let hub = tidings_smol::hub::Hub::new();
/// let rt = tidings_smol::runtime();
/// let _ticker = smol::spawn(live_feed::ticker(hub.clone(), rt, live_feed::TICK));
/// let server = tidings_smol::server::Server::new().routes(live_feed::routes(&hub, rt));
/// server.bind("127.0.0.1:9005").await?.serve().await;
/// # Ok(()) }) }
/// ```
pub fn routes(hub: &Hub, rt: &'static dyn Runtime) -> Vec<(&'static str, Route)> {
    let hub = hub.clone();
    let feed = Route::http(move |req: Request<Bytes>| {
        let response = subscribe(&hub, rt, &req);
        async move { response }
    });
    vec![("/", Route::http(page).into()), ("/feed", feed.into())]
}

/// Sends a `tick` to [`FEED`] every `every` on `rt`'s clock (the first after `every`), until the
/// hub is closed. A tick that is late (a busy machine) is sent at once and the next ones keep
/// to the original schedule; ticks missed by more than one interval are skipped.
pub async fn ticker(hub: Hub, rt: &'static dyn Runtime, every: Duration) {
    let mut deadline = rt.now() + every;
    let mut timer = rt.sleep_until(deadline);
    for seq in 1.. {
        poll_fn(|cx| timer.poll_expired(cx)).await;
        let tick = Tick {
            seq,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            clients: hub.client_count(),
        };
        // Nothing else can fail for an event of this data.
        if let Err(HubError::HubClosed) = hub.to_room(FEED).event("tick", &tick) {
            return;
        }
        deadline += every;
        let now = rt.now();
        if deadline + every < now {
            deadline = now;
        }
        timer.reset(deadline);
    }
}

/// The dashboard, for `GET` (and `HEAD`, answered without the body).
async fn page(req: Request<Bytes>) -> HttpResponse {
    match req.method().as_str() {
        "GET" | "HEAD" => HttpResponse::html(200, PAGE)
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff"),
        _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET, HEAD"),
    }
}

/// `GET /feed`: a subscriber of [`FEED`].
fn subscribe(hub: &Hub, rt: &'static dyn Runtime, req: &Request<Bytes>) -> Response<Body> {
    if req.method() != Method::GET {
        return HttpResponse::text(405, "use GET\n")
            .header("Allow", "GET")
            .into_response();
    }
    let config = SseConfig::default()
        .heartbeat(Some(HEARTBEAT))
        .retry(Some(RETRY));
    match hub.subscribe_sse(rt, SseSubscription::new().room(FEED).config(config)) {
        Ok(stream) => IntoResponse::into_response(stream.into_response()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
