//! Notifications to users over WebSocket and Server-Sent Events, on the hub: the logic of the
//! `notifications` example, runtime-neutral so that either server helper hosts it (the example
//! runs it on tidings-tokio; the tests run it on both).
//!
//! ```sh
//! cargo run --release --example notifications -- 127.0.0.1:9004
//! curl -N 'http://127.0.0.1:9004/events?user_id=alice'           # alice's notifications (SSE)
//! curl -d '{"user_id":"alice","title":"Hi","body":"for alice"}' http://127.0.0.1:9004/api/notify
//! curl -d '{"user_id":"","title":"Maintenance","body":"for everyone"}' http://127.0.0.1:9004/api/notify
//! ```
//!
//! # Routes (fixed: clients outside depend on them)
//!
//! * `/ws/notifications?user_id=U`: a WebSocket subscriber of user `U`.
//! * `GET /events?user_id=U`: a Server-Sent Events subscriber of user `U` (`200`,
//!   `Content-Type: text/event-stream`); other methods `405`. A reconnecting client's
//!   `Last-Event-ID` header replays the notifications for it that it missed (see *History*).
//! * `POST /api/notify` with a JSON body `{"user_id":"U","title":"…","body":"…"}`: sends a
//!   notification to every connection of user `U` (WebSocket and SSE alike), or to every
//!   connection of every user when `user_id` is empty (`""`). Answers `200` with
//!   `{"id":"<notification id>","delivered":N}` (`N`: the connections it was queued to; `0`
//!   when the user is not connected); `400` with `{"error":"…"}` for a body that is not such
//!   a JSON object (malformed, not an object, a field missing or not a string, a `user_id`
//!   over [`MAX_USER_ID_BYTES`], a `title` over [`MAX_TITLE_BYTES`], a `body` over
//!   [`MAX_BODY_BYTES`] bytes); `405` for other methods. Any `Content-Type` is taken; other
//!   fields are ignored. A notification to a user is not checked against anything: one to a
//!   user who never connected is kept in the history all the same.
//!
//! The user ID (`user_id`, percent-decoded, `+` for a space) must be present, not empty and at
//! most [`MAX_USER_ID_BYTES`] bytes: otherwise the subscription is refused with `400`. User IDs
//! are not authenticated (this is an example: put your authentication in front), and a user
//! may have any number of connections. Each subscriber is in the rooms `user:<U>` and
//! [`EVERYONE`].
//!
//! # Wire format
//!
//! A notification is
//! `{"id":"…","title":"…","body":"…","timestamp":"2025-01-31T12:00:00.123Z"}`: its ID (unique
//! within a server process, across restarts and across the processes of one Redis: a prefix of
//! the start time and the hub node's random id, and a counter), title and
//! body as posted, and the server's time of the POST in RFC 3339 (UTC, milliseconds).
//!
//! * WebSocket: the text message `{"type":"notification","data":<notification>}`. The server
//!   expects nothing from the client; it answers `{"type":"ping"}` (optionally with an `"id"`)
//!   with `{"type":"pong"}` (with that `id`), which a client can use to know that
//!   it is subscribed (the upgrade completes a moment before the subscription: a notification
//!   sent in between does not reach it). Anything else is answered with an error envelope
//!   (`{"type":"error","payload":{"message":"unknown message type: …"}}`).
//! * SSE: the event `event: notification`, `data: <notification>`, `id: <n>` (the hub's event
//!   number, which the browser sends back as `Last-Event-ID` when it reconnects). The stream
//!   starts with `retry: 3000` and sends a comment (`:`) after 15 s without events. The
//!   subscription is in place when the response head arrives.
//!
//! # History
//!
//! The hub keeps the last [`HISTORY`] notifications of each user (and of [`EVERYONE`]), also
//! those sent while the user was offline, for up to 1,024 rooms (the oldest room's history goes
//! first): an SSE client reconnecting with `Last-Event-ID: n` first gets the ones numbered after
//! `n`, in order, then live ones. Histories live in memory: they do not survive a restart, and
//! event numbers start again at 1 in a new process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidings_hub::{
    Admission, Client, Envelope, HandlerError, Hub, HubConfig, Rejection, Router, SseConfig,
    SseSubscription, UpgradeRequest,
};
use tidings_io::http::{Method, Request, Response, StatusCode};
use tidings_io::{Body, HttpResponse, IntoResponse, Json, Route, Runtime};

/// The room of every subscriber: a notification with an empty `user_id` goes there.
pub const EVERYONE: &str = "everyone";
/// The prefix of a user's room: user `alice` is in the room `user:alice`.
pub const USER_PREFIX: &str = "user:";
/// The longest user ID, in bytes.
pub const MAX_USER_ID_BYTES: usize = 64;
/// The longest notification title, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;
/// The longest notification body, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;
/// Notifications kept per room for `Last-Event-ID` replay.
pub const HISTORY: usize = 100;
/// The reconnection delay the SSE stream asks browsers for (`retry:`).
pub const SSE_RETRY: Duration = Duration::from_secs(3);

/// The user a subscriber connected as: its request data ([`Client::data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// The settings of the notifications hub: a history of [`HISTORY`] events per room.
///
/// ```
/// let hub = tidings_hub::Hub::with_config(tidings_examples::notifications::config());
/// # drop(hub);
/// ```
pub fn config() -> HubConfig {
    HubConfig::default().history(HISTORY)
}

/// The room of user `user`.
pub fn user_room(user: &str) -> String {
    format!("{USER_PREFIX}{user}")
}

/// The routes on `hub` (made with [`config`]): `/ws/notifications`, `/events` and
/// `/api/notify`. `rt` is the runtime of the server helper that hosts them
/// (`tidings_tokio::runtime()` or `tidings_smol::runtime()`); it runs the SSE heartbeats.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use tidings_examples::notifications;
/// let hub = tidings_tokio::hub::Hub::with_config(notifications::config());
/// let server = tidings_tokio::server::Server::new().routes(notifications::routes(&hub, tidings_tokio::runtime()));
/// server.bind("127.0.0.1:9004").await?.serve().await;
/// # Ok(()) }
/// ```
pub fn routes(hub: &Hub, rt: &'static dyn Runtime) -> Vec<(&'static str, Route)> {
    let router = router();
    let ws = hub.route(move |req: &UpgradeRequest<'_>| {
        let user = user_id(req.query()).map_err(|why| {
            Rejection::new(400)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(format!("{why}\n"))
        })?;
        Ok(Admission::new(router.clone()).data(User(user)))
    });
    let sse_hub = hub.clone();
    let events = Route::http(move |req: Request<Bytes>| {
        let response = subscribe(&sse_hub, rt, &req);
        async move { response }
    });
    let notifier = Arc::new(Notifier::new(hub.clone()));
    let notify = Route::http(move |req: Request<Bytes>| {
        let response = notifier.notify(&req);
        async move { response }
    });
    vec![
        ("/ws/notifications", ws.into()),
        ("/events", events.into()),
        ("/api/notify", notify.into()),
    ]
}

/// The user ID from a request's query; why it is refused.
fn user_id(query: Option<&str>) -> Result<String, String> {
    let user = crate::query::param(query, "user_id").unwrap_or_default();
    if user.is_empty() {
        return Err("missing user_id".to_owned());
    }
    if user.len() > MAX_USER_ID_BYTES {
        return Err(format!(
            "user_id too long (at most {MAX_USER_ID_BYTES} bytes)"
        ));
    }
    Ok(user)
}

/// The WebSocket's router: subscribes on connect, answers `ping`; anything else is an error.
fn router() -> Router {
    Router::new()
        .on("ping", |client: Client, msg: Envelope| async move {
            client.reply(&msg, "pong", &())?;
            Ok::<(), HandlerError>(())
        })
        .on_connect(|client| {
            if let Some(User(user)) = client.data::<User>() {
                let _ = client.join(&user_room(user));
                let _ = client.join(EVERYONE);
            }
        })
}

/// `GET /events?user_id=U`: an SSE subscriber of `U`.
fn subscribe(hub: &Hub, rt: &'static dyn Runtime, req: &Request<Bytes>) -> Response<Body> {
    if req.method() != Method::GET {
        return HttpResponse::text(405, "use GET\n")
            .header("Allow", "GET")
            .into_response();
    }
    let user = match user_id(req.uri().query()) {
        Ok(user) => user,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    let subscription = SseSubscription::new()
        .room(user_room(&user))
        .room(EVERYONE)
        .last_event_id_from(req.headers())
        .data(User(user))
        .config(SseConfig::default().retry(Some(SSE_RETRY)));
    match hub.subscribe_sse(rt, subscription) {
        Ok(stream) => IntoResponse::into_response(stream.into_response()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// The body of `POST /api/notify`.
#[derive(Debug, Deserialize)]
struct NotifyRequest {
    user_id: String,
    title: String,
    body: String,
}

/// A notification as subscribers receive it (the `data` of the event).
#[derive(Debug, Serialize)]
struct Notification<'a> {
    id: &'a str,
    title: &'a str,
    body: &'a str,
    timestamp: String,
}

/// The answer to a notification that was sent.
#[derive(Debug, Serialize)]
struct Sent {
    id: String,
    delivered: usize,
}

/// The answer to a request that was refused.
#[derive(Debug, Serialize)]
struct Refused {
    error: String,
}

/// Sends the notifications of `POST /api/notify`, numbering them.
struct Notifier {
    hub: Hub,
    /// The server's start time in milliseconds since the Unix epoch (hex) and the first 8 hex
    /// digits of the hub's random node id: the IDs' prefix.
    epoch: String,
    /// The number of the last notification.
    last: AtomicU64,
}

impl Notifier {
    fn new(hub: Hub) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let node = hub.node().id().get(..8).unwrap_or_default().to_owned();
        Notifier {
            hub,
            epoch: format!("{millis:x}{node}"),
            last: AtomicU64::new(0),
        }
    }

    fn notify(&self, req: &Request<Bytes>) -> Response<Body> {
        if req.method() != Method::POST {
            return HttpResponse::text(405, "use POST\n")
                .header("Allow", "POST")
                .into_response();
        }
        match self.send(req.body()) {
            Ok(sent) => Json(sent).into_response(),
            Err((status, error)) => (status, Json(Refused { error })).into_response(),
        }
    }

    fn send(&self, body: &[u8]) -> Result<Sent, (StatusCode, String)> {
        let bad = |why: String| (StatusCode::BAD_REQUEST, why);
        // An object: serde would also take the fields as an array (`["U","t","b"]`).
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON object: {e}")))?;
        let req: NotifyRequest = serde_json::from_value(object.into())
            .map_err(|e| bad(format!("invalid request: {e}")))?;
        if req.user_id.len() > MAX_USER_ID_BYTES {
            return Err(bad(format!(
                "user_id too long (at most {MAX_USER_ID_BYTES} bytes)"
            )));
        }
        if req.title.len() > MAX_TITLE_BYTES {
            return Err(bad(format!(
                "title too long (at most {MAX_TITLE_BYTES} bytes)"
            )));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(bad(format!(
                "body too long (at most {MAX_BODY_BYTES} bytes)"
            )));
        }
        let id = format!(
            "{}-{}",
            self.epoch,
            self.last.fetch_add(1, Ordering::Relaxed) + 1
        );
        let notification = Notification {
            id: &id,
            title: &req.title,
            body: &req.body,
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        let room = if req.user_id.is_empty() {
            EVERYONE.to_owned()
        } else {
            user_room(&req.user_id)
        };
        let delivered = self
            .hub
            .to_room(&room)
            .event("notification", &notification)
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        Ok(Sent { id, delivered })
    }
}
