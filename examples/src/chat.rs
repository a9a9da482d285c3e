//! A chat with rooms, on the hub: the logic of the `chat` example, runtime-neutral so that either
//! server helper hosts it (the example runs it on tidings-tokio; the tests run it on both).
//!
//! ```sh
//! cargo run --release --example chat -- 127.0.0.1:9002
//! # then open http://127.0.0.1:9002/?user=alice (and ?user=bob in another tab)
//! ```
//!
//! # Routes
//!
//! * `GET /`: the page (`text/html; charset=utf-8`, no external resources). Its script connects to
//!   `/ws?user=<name>` on the same host (`wss:` when the page came over `https:`), the name taken
//!   from the page's own `?user=` or made up (`guest-1234`). It shows each chat message with its
//!   user, room and time and the join/leave notices, and has a message input, a room selector for
//!   sending, and controls to join a room by name and to leave the selected one. Element ids are
//!   stable (for tests and later additions): `status`, `user-name`, `messages`, `room-select`,
//!   `message-input`, `send-button`, `room-input`, `join-button`, `leave-button`.
//! * `/ws?user=alice`: the WebSocket. The user name is the query's `user` parameter
//!   (percent-decoded, `+` for a space); missing or empty, it is `anonymous`; longer than
//!   [`MAX_USER_BYTES`] the upgrade is refused with `400`. Names are not unique: two clients may
//!   use the same one. The default origin policy applies: browsers must come from the page's
//!   own origin (same `Host`); clients that send no `Origin` (not browsers) are let in.
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
//!
//! Server to client:
//!
//! ```json
//! {"type":"chat","payload":{"room":"r","user":"alice","text":"hi","timestamp":"2025-01-31T12:00:00.123Z"}}
//! {"type":"user_joined","data":{"user":"alice","room":"r"}}
//! {"type":"user_left","data":{"user":"alice","room":"r"}}
//! {"type":"error","payload":{"message":"not in room r"},"id":"req-7"}
//! ```
//!
//! * Every client starts in room `general`; that join is announced like any other, so a new
//!   client's first message is its own `user_joined` for `general`.
//! * The joiner receives its own `user_joined` (it is in the room when it is announced); on an
//!   explicit `leave_room` the leaver receives its own `user_left` (announced before it leaves),
//!   so a page can keep its list of rooms from these events alone. A disconnect counts as leaving
//!   every room the client was in: `user_left` goes to each of them (not to the client, which is
//!   gone).
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

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidings_hub::{
    Admission, Client, Envelope, HandlerError, Hub, Rejection, Router, UpgradeRequest,
};
use tidings_io::http::Request;
use tidings_io::{HttpResponse, Route};

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

/// The user name a client connected with: its request data ([`Client::data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

/// The chat's routes on `hub`: the page at `/` and the WebSocket at `/ws`. Give them to either
/// server helper (`tidings_tokio::server::Server` or `tidings_smol::server::Server`):
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// let hub = tidings_tokio::hub::Hub::new();
/// let mut server = tidings_tokio::server::Server::new();
/// for (path, route) in tidings_examples::chat::routes(&hub) {
///     server = server.route(path, route);
/// }
/// server.bind("127.0.0.1:9002").await?.serve().await;
/// # Ok(()) }
/// ```
pub fn routes(hub: &Hub) -> Vec<(&'static str, Route)> {
    let router = router();
    let ws = hub.route(move |req: &UpgradeRequest<'_>| {
        let user = user_name(req.query())?;
        Ok(Admission::new(router.clone()).data(User(user)))
    });
    vec![("/", Route::http(page).into()), ("/ws", ws.into())]
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

/// The page, for `GET` (and `HEAD`, answered without the body).
async fn page(req: Request<Bytes>) -> HttpResponse {
    match req.method().as_str() {
        "GET" | "HEAD" => HttpResponse::html(200, PAGE)
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff"),
        _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET, HEAD"),
    }
}

/// The message router: one handler per message type; everything else (malformed JSON, unknown
/// types, payloads of the wrong shape) the router answers with an error itself. Its hooks join
/// `general` on connect and announce `user_left` to every room of a client that disconnects.
fn router() -> Router {
    Router::new()
        .on_typed("join_room", join_room)
        .on_typed("leave_room", leave_room)
        .on_typed("chat", chat)
        .on_connect(|client| {
            if let Ok(hub) = hub_of(client) {
                let _ = join(&hub, client, GENERAL);
            }
        })
        .on_disconnect(|client| {
            // The client is still in its rooms here; it leaves them right after.
            let Ok(hub) = hub_of(client) else { return };
            for room in client.rooms() {
                let _ = hub
                    .to_room(&room)
                    .except(client.id())
                    .event("user_left", &Presence::new(client, &room));
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
    Ok(())
}

async fn leave_room(client: Client, _msg: Envelope, req: RoomRequest) -> Result<(), HandlerError> {
    check_room(&req.room)?;
    check_member(&client, &req.room)?;
    // Announced while the leaver is still a member, so that it hears its own leave.
    hub_of(&client)?
        .to_room(&req.room)
        .event("user_left", &Presence::new(&client, &req.room))?;
    client.leave(&req.room)?;
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
