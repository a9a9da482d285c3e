//! A game lobby on the hub's typed router: the logic of the `game_lobby` example, runtime-neutral
//! so that either server helper hosts it (the example runs it on tidings-smol; the tests run it
//! on both).
//!
//! ```sh
//! cargo run --release --example game_lobby -- 127.0.0.1:9003
//! # a player connects to ws://127.0.0.1:9003/ws/game?player_id=p1
//! ```
//!
//! # Connecting
//!
//! `/ws/game?player_id=p1` (percent-decoded, `+` for a space). The player ID is the client's ID in
//! the hub. Refused before the upgrade: a missing or empty `player_id`, or one longer than
//! [`MAX_ID_BYTES`] bytes, with `400`; a `player_id` that is connected already with `409`. A
//! player starts in the room `lobby`; a player in game `g1` is in the room `game:g1` (and no
//! longer in `lobby`). A player is in exactly one of these rooms at a time.
//!
//! # Wire protocol (JSON text messages; fixed: clients outside depend on it)
//!
//! Requests are envelopes `{"type","payload","id"}`; `id` is optional, any JSON value, and echoed
//! in the reply (`joined`, `left`) or error it causes.
//!
//! | `type` | `payload` | effect |
//! |---|---|---|
//! | `join_game` | `{"game_id":"g1"}` | leaves `lobby` (or the game it was in, telling that game's others `player_left`), joins `game:g1`; replies `{"type":"joined","payload":{"game_id":"g1"}}` and tells the others in `g1` `{"type":"player_joined","payload":{"player":"p1"}}` (not the joiner) |
//! | `leave_game` | none | leaves its game for `lobby`; replies `{"type":"left","payload":{"game_id":"g1"}}` and tells the others in the game `{"type":"player_left","payload":{"player":"p1"}}` |
//! | `game_action` | anything | the whole message, exactly as sent (the same text: `type`, `payload`, `id`, spacing and key order), to the others in the player's game, not to the sender |
//! | `chat` | `{"text":"hi"}` | `{"type":"chat","payload":{"player":"p1","text":"hi"}}` to every member of each room the player is in (the sender included), each once |
//!
//! Errors, answered to the sender only as `{"type":"error","payload":{"message":"…"}}` (with the
//! request's `id` when it had one; the connection stays open):
//!
//! * any other `type`: `unknown command: <type>`;
//! * `leave_game` or `game_action` outside a game: `not in a game`;
//! * `join_game` for the game it is in: `already in game g1`; a `game_id` that is empty or longer
//!   than [`MAX_ID_BYTES`] bytes;
//! * a `chat` text that is empty (or only whitespace) or longer than [`MAX_TEXT_BYTES`] bytes;
//! * a payload of the wrong shape (`invalid payload for <type>: …`), text that is not an envelope
//!   (malformed JSON, no `type`), a binary message.
//!
//! Players in different games (or one in a game and one in the lobby) never see each other's
//! actions or chats. Each connection's messages are handled one at a time, in the order sent.

use serde::{Deserialize, Serialize};
use tidings_hub::{
    Admission, Client, Envelope, HandlerError, Hub, Rejection, Router, UpgradeRequest,
};
use tidings_io::Route;

/// The room players start in, and go back to when they leave a game.
pub const LOBBY: &str = "lobby";
/// The prefix of a game's room name: game `g1` is the room `game:g1`.
pub const GAME_PREFIX: &str = "game:";
/// The longest player ID and game ID, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// The longest chat text, in bytes.
pub const MAX_TEXT_BYTES: usize = 2000;

/// The lobby's routes on `hub`: the WebSocket at `/ws/game`. Give them to either server helper
/// (`tidings_tokio::server::Server` or `tidings_smol::server::Server`):
///
/// ```no_run
/// # fn f() -> std::io::Result<()> { smol::block_on(async {
/// let hub = tidings_smol::hub::Hub::new();
/// let server = tidings_smol::server::Server::new().routes(tidings_examples::game_lobby::routes(&hub));
/// server.bind("127.0.0.1:9003").await?.serve().await;
/// # Ok(()) }) }
/// ```
pub fn routes(hub: &Hub) -> Vec<(&'static str, Route)> {
    let router = router();
    let players = hub.clone();
    let ws = hub.route(move |req: &UpgradeRequest<'_>| {
        let id = crate::query::param(req.query(), "player_id").unwrap_or_default();
        if id.is_empty() {
            return Err(refuse(400, "missing player_id"));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(refuse(400, "player_id too long"));
        }
        // A second connection that passes this check at the same moment as the first is
        // upgraded and then closed by the hub with 1008 (`duplicate client id`).
        if players.client(&id).is_some() {
            return Err(refuse(409, "player_id already connected"));
        }
        Ok(Admission::new(router.clone()).id(id))
    });
    vec![("/ws/game", ws.into())]
}

fn refuse(status: u16, why: &str) -> Rejection {
    Rejection::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(format!("{why}\n"))
}

/// The message router.
fn router() -> Router {
    Router::new()
        .on_typed("join_game", join_game)
        .on("leave_game", leave_game)
        .on("game_action", game_action)
        .on_typed("chat", chat)
        .fallback(|_client: Client, msg: Envelope| async move {
            Err(format!("unknown command: {}", msg.kind()).into())
        })
        .on_connect(|client| {
            let _ = client.join(LOBBY);
        })
}

/// `{"game_id":"g1"}`.
#[derive(Debug, Serialize, Deserialize)]
struct GameId {
    game_id: String,
}

/// `{"player":"p1"}`: the payload of `player_joined` and `player_left`.
#[derive(Debug, Serialize)]
struct Player<'a> {
    player: &'a str,
}

/// `{"text":"hi"}`.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    text: String,
}

/// `{"player":"p1","text":"hi"}`.
#[derive(Debug, Serialize)]
struct ChatMessage<'a> {
    player: &'a str,
    text: &'a str,
}

async fn join_game(client: Client, msg: Envelope, req: GameId) -> Result<(), HandlerError> {
    let game = req.game_id;
    if game.is_empty() {
        return Err("game_id must not be empty".into());
    }
    if game.len() > MAX_ID_BYTES {
        return Err(format!("game_id too long (at most {MAX_ID_BYTES} bytes)").into());
    }
    if current_game(&client).as_deref() == Some(game.as_str()) {
        return Err(format!("already in game {game}").into());
    }
    let hub = hub_of(&client)?;
    if let Some(old) = current_game(&client) {
        leave_game_room(&hub, &client, &old)?;
    }
    client.leave(LOBBY)?;
    let room = format!("{GAME_PREFIX}{game}");
    client.join(&room)?;
    client.reply(&msg, "joined", &GameId { game_id: game })?;
    hub.to_room(&room).except(client.id()).json(&Envelope::new(
        "player_joined",
        &Player {
            player: client.id().as_str(),
        },
    )?)?;
    Ok(())
}

async fn leave_game(client: Client, msg: Envelope) -> Result<(), HandlerError> {
    let game = current_game(&client).ok_or("not in a game")?;
    leave_game_room(&hub_of(&client)?, &client, &game)?;
    client.join(LOBBY)?;
    client.reply(&msg, "left", &GameId { game_id: game })?;
    Ok(())
}

/// Leaves the room of `game` and tells the others there.
fn leave_game_room(hub: &Hub, client: &Client, game: &str) -> Result<(), HandlerError> {
    let room = format!("{GAME_PREFIX}{game}");
    client.leave(&room)?;
    hub.to_room(&room).json(&Envelope::new(
        "player_left",
        &Player {
            player: client.id().as_str(),
        },
    )?)?;
    Ok(())
}

async fn game_action(client: Client, msg: Envelope) -> Result<(), HandlerError> {
    let game = current_game(&client).ok_or("not in a game")?;
    // `to_message` is the received text itself (shared, not re-serialised).
    hub_of(&client)?
        .to_room(&format!("{GAME_PREFIX}{game}"))
        .except(client.id())
        .send(msg.to_message())?;
    Ok(())
}

async fn chat(client: Client, _msg: Envelope, req: ChatRequest) -> Result<(), HandlerError> {
    if req.text.trim().is_empty() {
        return Err("chat text must not be empty".into());
    }
    if req.text.len() > MAX_TEXT_BYTES {
        return Err(format!("chat text too long (at most {MAX_TEXT_BYTES} bytes)").into());
    }
    let message = ChatMessage {
        player: client.id().as_str(),
        text: &req.text,
    };
    hub_of(&client)?
        .to_rooms(client.rooms())
        .json(&Envelope::new("chat", &message)?)?;
    Ok(())
}

/// The game the player is in, if any.
fn current_game(client: &Client) -> Option<String> {
    client
        .rooms()
        .iter()
        .find_map(|room| room.strip_prefix(GAME_PREFIX).map(str::to_owned))
}

fn hub_of(client: &Client) -> Result<Hub, HandlerError> {
    client.hub().ok_or_else(|| "hub closed".into())
}
