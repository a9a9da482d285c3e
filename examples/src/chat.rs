//! A chat with rooms, on the hub: the logic of the `chat` example, runtime-neutral so that either
//! server helper hosts it (the example runs it on tidings-tokio; the tests run it on both).
//!
//! ```sh
//! cargo run --release --example chat
//! # then open http://127.0.0.1:8080/ (and http://127.0.0.1:8080/?user=bob in another tab)
//! ```
//!
//! # Routes
//!
//! * `GET /`: the page (`text/html; charset=utf-8`, nothing from other hosts; its script is
//!   `/chat.js`, its style sheet `/chat.css`). Without `?user=` it first asks for a name
//!   (prefilled with a made-up one, `guest-1234`); with `?user=alice` it connects at once. It connects to `/ws?user=<name>` on
//!   the same host (`wss:` when the page came over `https:`) and reconnects after a lost
//!   connection (backoff from 0.5 s doubling to 10 s, ±20% jitter), rejoining its rooms. It shows
//!   each chat message with its time, room and user and the join/leave notices, a sidebar with
//!   every room, its member count and a join or leave button, a message input, a room selector
//!   for sending, and controls to join a room by name and to leave the selected one. Element ids
//!   are stable (for tests and later additions): `status`, `user-name`, `messages`,
//!   `room-select`, `message-input`, `send-button`, `room-input`, `join-button`, `leave-button`,
//!   `rooms-list` (one `<li data-room="NAME">` per room, with a button of class `join` or
//!   `leave`), `name-input`, `name-button`.
//! * `GET /chat.js`: the page's script ([`SCRIPT`], `application/javascript; charset=utf-8`),
//!   reusable by another page with the same elements: it defines
//!   `window.startChat({ user, connect })`, where `connect` is an `async () => url` giving the
//!   WebSocket URL for each (re)connection.
//! * `GET /chat.css`: the page's style sheet ([`STYLE`], `text/css; charset=utf-8`).
//! * `/ws?user=alice`: the WebSocket. The user name is the query's `user` parameter
//!   (percent-decoded, `+` for a space); missing or empty, it is `anonymous`; longer than
//!   [`MAX_USER_BYTES`] the upgrade is refused with `400`. Names are not unique: two clients may
//!   use the same one. The default origin policy applies: browsers must come from the page's
//!   own origin (same `Host`); clients that send no `Origin` (not browsers) are let in
//!   ([`routes_with_origin`] sets another policy for this route).
//!
//! # Wire protocol (JSON text messages; fixed: clients outside depend on it)
//!
//! Client to server — envelopes `{"type","payload","id"}`, `id` optional (any JSON value; it is
//! only echoed in error replies):
//!
//! | `type` | `payload` | effect |
//! |---|---|---|
//! | `join_room` | `{"room":"r"}` | joins `r`; `user_joined` is announced to `r` (the joiner included) |
//! | `leave_room` | `{"room":"r"}` | `user_left` is announced to `r` (the leaver included), then the client leaves it |
//! | `chat` | `{"room":"r","text":"hi"}` | if the sender is in `r`: the chat message below to every member of `r`, the sender included |
//! | `list_rooms` | `{}` or absent | the `rooms` event below to the sender only |
//!
//! Server to client:
//!
//! ```json
//! {"type":"chat","payload":{"room":"r","user":"alice","text":"hi","timestamp":"2025-01-31T12:00:00.123Z"}}
//! {"type":"user_joined","data":{"user":"alice","room":"r"}}
//! {"type":"user_left","data":{"user":"alice","room":"r"}}
//! {"type":"rooms","data":{"rooms":[{"name":"general","members":2},{"name":"r","members":1}]}}
//! {"type":"error","payload":{"message":"not in room r"},"id":"req-7"}
//! ```
//!
//! * Every client starts in room `general`; that join is announced like any other, so a new
//!   client's first message other than a `rooms` push is its own `user_joined` for `general`
//!   (on one process it is the very first; with `--redis`, another process's `rooms` push can
//!   come before it).
//! * The joiner receives its own `user_joined` (it is in the room when it is announced); on an
//!   explicit `leave_room` the leaver receives its own `user_left` (announced before it leaves),
//!   so a page can keep its list of rooms from these events alone. A disconnect counts as leaving
//!   every room the client was in: `user_left` goes to each of them (not to the client, which is
//!   gone).
//! * `rooms` lists every room that has members, sorted by name (byte order), with `members` its
//!   number of clients. Besides answering `list_rooms`, the server pushes it to every client
//!   whenever the rooms or their member counts change: after each join (a new client's included,
//!   so that the new client gets it right after its own `user_joined` for `general`), each
//!   `leave_room`, and each disconnect (after the `user_left` announcements; the client that
//!   left is not in the counts). The pushes are made one at a time, so the last one a client
//!   receives is the current state; a client that cares only about other messages skips them.
//! * The timestamp is the server's time of the broadcast, RFC 3339 in UTC with milliseconds.
//! * Errors (`{"type":"error","payload":{"message":…}}`, with the request's `id` when it had
//!   one; the connection stays open): text that is not an envelope (malformed JSON, no `type`),
//!   a binary message, an unknown `type` (`unknown message type: <type>`), a payload of the wrong
//!   shape (`invalid payload for <type>: …`), a room name that is empty or longer than
//!   [`MAX_ROOM_BYTES`] bytes, a text that is empty (or only whitespace) or longer than
//!   [`MAX_TEXT_BYTES`] bytes, `join_room` for a room the client is in (`already in room r`),
//!   `leave_room` or `chat` for a room it is not in (`not in room r`; such a chat reaches no one).
//! * Each connection's messages are handled one at a time, in the order sent: a `chat` sent right
//!   after a `join_room` finds the sender in the room.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidings_hub::{
    Admission, Client, Envelope, HandlerError, Hub, HubConfig, RateLimit, Rejection, Router,
    UpgradeRequest,
};
use tidings_io::http::Request;
use tidings_io::{HttpResponse, OriginPolicy, Route};

/// The room every client starts in.
pub const GENERAL: &str = "general";
/// The user name of a client that gave none.
pub const ANONYMOUS: &str = "anonymous";
/// The longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 64;
/// The longest message text, in bytes.
pub const MAX_TEXT_BYTES: usize = 2000;
/// The longest user name, in bytes (a longer one is refused with `400`).
pub const MAX_USER_BYTES: usize = 64;

/// The page served at `/`.
pub const PAGE: &str = include_str!("chat.html");

/// The page's script, served at `/chat.js`: `window.startChat({ user, connect })` runs the chat
/// in a page with the elements of [`PAGE`]; `connect` is an `async () => url` that gives the
/// WebSocket URL for each (re)connection (the chat page's returns `ws(s)://host/ws?user=…`; a
/// page that authenticates first can fetch a one-time ticket there).
pub const SCRIPT: &str = include_str!("chat.js");

/// The page's style sheet, served at `/chat.css` (the layout and look of the chat's elements,
/// for [`PAGE`] and any page that runs [`SCRIPT`]).
pub const STYLE: &str = include_str!("chat.css");

/// The user name a client connected with: its request data ([`Client::data`]), which
/// [`router`] reads. Another route that serves the router admits its clients with it:
/// `Admission::new(router()).data(User(name))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// The most messages a chat client may send in a burst ([`hub_config`]).
pub const MESSAGE_BURST: u32 = 20;
/// The steady rate, in messages per second, a chat client may keep up ([`hub_config`]).
pub const MESSAGES_PER_SEC: f64 = 5.0;

/// The settings of the chat's hub: `Hub::with_config(chat::hub_config())`. The one place for
/// the chat's limits: each connection may send [`MESSAGE_BURST`] messages at once and
/// [`MESSAGES_PER_SEC`] after that; a message over the limit is dropped and answered with
/// `{"type":"error","payload":{"message":"rate limit exceeded"}}`.
pub fn hub_config() -> HubConfig {
    HubConfig::default().rate_limit(Some(RateLimit::new(MESSAGE_BURST, MESSAGES_PER_SEC)))
}

/// The chat's routes on `hub`: the page at `/`, its script at `/chat.js`, its style sheet at
/// `/chat.css` and the WebSocket at `/ws`, under the server's origin policy. Give them to either
/// server helper (`tidings_tokio::server::Server` or `tidings_smol::server::Server`):
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use tidings_examples::chat;
/// let hub = tidings_tokio::hub::Hub::with_config(chat::hub_config());
/// let server = tidings_tokio::server::Server::new().routes(chat::routes(&hub));
/// server.bind("127.0.0.1:8080").await?.serve().await;
/// # Ok(()) }
/// ```
pub fn routes(hub: &Hub) -> Vec<(&'static str, Route)> {
    routes_inner(hub, None)
}

/// [`routes`] with `origin` as the WebSocket route's origin policy instead of the server's
/// (e.g. `OriginPolicy::allow(["http://localhost:*"])`). An allow-list replaces same-origin:
/// list the page's own origin too.
pub fn routes_with_origin(hub: &Hub, origin: OriginPolicy) -> Vec<(&'static str, Route)> {
    routes_inner(hub, Some(origin))
}

fn routes_inner(hub: &Hub, origin: Option<OriginPolicy>) -> Vec<(&'static str, Route)> {
    let router = router();
    let mut ws = hub.route(move |req: &UpgradeRequest<'_>| {
        let user = user_name(req.query())?;
        Ok(Admission::new(router.clone()).data(User(user)))
    });
    if let Some(origin) = origin {
        ws = ws.origin(origin);
    }
    let page = Route::http(|req: Request<Bytes>| async move { static_resource(&req, HTML, PAGE) });
    let mut routes = vec![("/", page.into()), ("/ws", ws.into())];
    routes.extend(asset_routes());
    routes
}

/// The user name from an upgrade request's query.
fn user_name(query: Option<&str>) -> Result<String, Rejection> {
    let name = crate::query::param(query, "user").unwrap_or_default();
    if name.len() > MAX_USER_BYTES {
        return Err(Rejection::new(400)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!(
                "user name too long (at most {MAX_USER_BYTES} bytes)\n"
            )));
    }
    Ok(if name.is_empty() {
        ANONYMOUS.to_owned()
    } else {
        name
    })
}

/// `body` as a static resource of `content_type` for `GET` and `HEAD` (the server helper leaves
/// the body out of a `HEAD` answer), `405` with `Allow: GET, HEAD` for other methods. The
/// chat's pages, script and style sheet, and `secure_chat`'s page, are served with it.
pub(crate) fn static_resource(
    req: &Request<Bytes>,
    content_type: &'static str,
    body: &'static str,
) -> HttpResponse {
    match req.method().as_str() {
        "GET" | "HEAD" => HttpResponse::new(200)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff")
            .header("X-Frame-Options", "DENY")
            .header("Referrer-Policy", "no-referrer")
            .body(body),
        _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET, HEAD"),
    }
}

/// The `Content-Type` of the pages.
pub(crate) const HTML: &str = "text/html; charset=utf-8";

/// The routes of the chat's script (`/chat.js`) and style sheet (`/chat.css`), shared by every
/// page that runs the chat ([`routes`] and `secure_chat`'s).
pub fn asset_routes() -> [(&'static str, Route); 2] {
    [
        (
            "/chat.js",
            Route::http(|req: Request<Bytes>| async move {
                static_resource(&req, "application/javascript; charset=utf-8", SCRIPT)
            })
            .into(),
        ),
        (
            "/chat.css",
            Route::http(|req: Request<Bytes>| async move {
                static_resource(&req, "text/css; charset=utf-8", STYLE)
            })
            .into(),
        ),
    ]
}

/// The chat's message router, for a WebSocket route of one's own (another way to admit
/// clients, another path); [`routes`] serves it at `/ws`. It reads each client's name from its
/// [`User`] data (a client without one is [`ANONYMOUS`]) and speaks the wire protocol of the
/// module docs: one handler per message type; everything else (malformed JSON, unknown types,
/// payloads of the wrong shape) the router answers with an error itself. Its hooks join
/// `general` on connect (and push `rooms`), and on disconnect announce `user_left` to every
/// room of the client, take it out of them and push `rooms`.
///
/// ```
/// use tidings_examples::chat::{self, User};
/// use tidings_hub::{Admission, Hub, UpgradeRequest};
///
/// let hub = Hub::with_config(chat::hub_config());
/// let router = chat::router();
/// let route = hub.route(move |_req: &UpgradeRequest<'_>| {
///     // e.g. the name a one-time ticket in the query stands for
///     Ok::<_, tidings_hub::Rejection>(Admission::new(router.clone()).data(User("alice".into())))
/// });
/// # drop(route);
/// ```
pub fn router() -> Router {
    Router::new()
        .on_typed("join_room", join_room)
        .on_typed("leave_room", leave_room)
        .on_typed("chat", chat)
        .on_typed("list_rooms", list_rooms)
        .on_connect(|client| {
            if let Ok(hub) = hub_of(client)
                && let Ok(true) = join(&hub, client, GENERAL)
            {
                push_rooms(&hub, None);
            }
        })
        .on_disconnect(|client| {
            // The client is still in its rooms here; it leaves them now (rather than right
            // after, as the hub would), so that the `rooms` pushed next counts it out.
            let Ok(hub) = hub_of(client) else { return };
            let rooms = client.rooms();
            for room in &rooms {
                let _ = hub
                    .to_room(room)
                    .except(client.id())
                    .event("user_left", &Presence::new(client, room));
            }
            for room in &rooms {
                let _ = client.leave(room);
            }
            if !rooms.is_empty() {
                push_rooms(&hub, Some(client));
            }
        })
}

/// `{"room":"r"}`: the payload of `join_room` and `leave_room`.
#[derive(Debug, Deserialize)]
struct RoomRequest {
    room: String,
}

/// `{"room":"r","text":"hi"}`: the payload of a client's `chat`.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    room: String,
    text: String,
}

/// The payload of the `chat` the room receives.
#[derive(Debug, Serialize)]
struct ChatMessage<'a> {
    room: &'a str,
    user: &'a str,
    text: &'a str,
    timestamp: String,
}

/// The data of `user_joined` and `user_left`.
#[derive(Debug, Serialize)]
struct Presence<'a> {
    user: &'a str,
    room: &'a str,
}

/// The payload of `list_rooms`: `{}` (any fields are ignored) or none.
#[derive(Debug, Deserialize)]
struct ListRooms {}

/// The data of `rooms`.
#[derive(Debug, Serialize)]
struct RoomList {
    rooms: Vec<RoomInfo>,
}

/// One room of `rooms`.
#[derive(Debug, Serialize)]
struct RoomInfo {
    name: String,
    members: usize,
}

impl RoomList {
    /// The rooms with members now, sorted by name.
    fn of(hub: &Hub) -> Self {
        let rooms = hub
            .rooms()
            .into_iter()
            .map(|name| {
                let members = hub.room_size(&name);
                RoomInfo { name, members }
            })
            // A room emptied between the two calls is gone.
            .filter(|room| room.members > 0)
            .collect();
        RoomList { rooms }
    }
}

/// Serialises the `rooms` events (pushes and replies): each takes its snapshot and queues it
/// under this lock, so every client receives them in the order they were taken and the last one
/// it gets is the current state. (Sending only queues; nothing waits under the lock.)
static ROOMS_PUSH: Mutex<()> = Mutex::new(());

/// Pushes `rooms` to every client (but `except`): after a change of the rooms or their counts.
fn push_rooms(hub: &Hub, except: Option<&Client>) {
    let _order = ROOMS_PUSH.lock().unwrap_or_else(PoisonError::into_inner);
    let list = RoomList::of(hub);
    let mut to = hub.to_all();
    if let Some(client) = except {
        to = to.except(client.id());
    }
    // Fails only once the hub is closed, when nobody is listening any more.
    let _ = to.event("rooms", &list);
}

impl<'a> Presence<'a> {
    fn new(client: &'a Client, room: &'a str) -> Self {
        Presence {
            user: user_of(client),
            room,
        }
    }
}

async fn join_room(client: Client, _msg: Envelope, req: RoomRequest) -> Result<(), HandlerError> {
    check_room(&req.room)?;
    if !join(&hub_of(&client)?, &client, &req.room)? {
        return Err(format!("already in room {}", req.room).into());
    }
    push_rooms(&hub_of(&client)?, None);
    Ok(())
}

async fn leave_room(client: Client, _msg: Envelope, req: RoomRequest) -> Result<(), HandlerError> {
    check_room(&req.room)?;
    check_member(&client, &req.room)?;
    // Announced while the leaver is still a member, so that it hears its own leave.
    hub_of(&client)?
        .to_room(&req.room)
        .event("user_left", &Presence::new(&client, &req.room))?;
    if client.leave(&req.room)? {
        push_rooms(&hub_of(&client)?, None);
    }
    Ok(())
}

async fn list_rooms(
    client: Client,
    _msg: Envelope,
    _req: Option<ListRooms>,
) -> Result<(), HandlerError> {
    let hub = hub_of(&client)?;
    // Under the pushes' lock, so that it cannot overtake a newer push.
    let _order = ROOMS_PUSH.lock().unwrap_or_else(PoisonError::into_inner);
    client.send_event("rooms", &RoomList::of(&hub))?;
    Ok(())
}

async fn chat(client: Client, _msg: Envelope, req: ChatRequest) -> Result<(), HandlerError> {
    check_room(&req.room)?;
    if req.text.trim().is_empty() {
        return Err("message text must not be empty".into());
    }
    if req.text.len() > MAX_TEXT_BYTES {
        return Err(format!("message text too long (at most {MAX_TEXT_BYTES} bytes)").into());
    }
    check_member(&client, &req.room)?;
    let message = ChatMessage {
        room: &req.room,
        user: user_of(&client),
        text: &req.text,
        timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    };
    hub_of(&client)?
        .to_room(&req.room)
        .json(&Envelope::new("chat", &message)?)?;
    Ok(())
}

/// Joins `room` and announces it there (the joiner included); `false` if already a member.
fn join(hub: &Hub, client: &Client, room: &str) -> Result<bool, HandlerError> {
    if !client.join(room)? {
        return Ok(false);
    }
    hub.to_room(room)
        .event("user_joined", &Presence::new(client, room))?;
    Ok(true)
}

fn check_room(room: &str) -> Result<(), HandlerError> {
    if room.is_empty() {
        return Err("room name must not be empty".into());
    }
    if room.len() > MAX_ROOM_BYTES {
        return Err(format!("room name too long (at most {MAX_ROOM_BYTES} bytes)").into());
    }
    Ok(())
}

fn check_member(client: &Client, room: &str) -> Result<(), HandlerError> {
    if client.in_room(room) {
        Ok(())
    } else {
        Err(format!("not in room {room}").into())
    }
}

fn user_of(client: &Client) -> &str {
    client.data::<User>().map_or(ANONYMOUS, |u| u.0.as_str())
}

fn hub_of(client: &Client) -> Result<Hub, HandlerError> {
    client.hub().ok_or_else(|| "hub closed".into())
}
