//! A game lobby on the hub's typed router (tidings-smol): players connect to
//! `/ws/game?player_id=ID`, start in the lobby, join and leave games, send game actions to the
//! others in their game and chat to their room. The wire protocol and the rules are documented in
//! `tidings_examples::game_lobby` (`examples/src/game_lobby.rs`).
//!
//! ```sh
//! cargo run --release --example game_lobby -- 127.0.0.1:9003
//! # a player: ws://127.0.0.1:9003/ws/game?player_id=p1
//! ```
//!
//! Ctrl-C shuts it down gracefully: the hub closes every player with 1001 (going away), and the
//! server waits up to 5 s for the connections to end.

use tidings_examples::game_lobby;
use tidings_smol::hub::Hub;
use tidings_smol::server::Server;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let (interrupted, ctrl_c) = smol::channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = interrupted.try_send(());
    })
    .map_err(std::io::Error::other)?;
    smol::block_on(async {
        let hub = Hub::new();
        let server = Server::new().routes(game_lobby::routes(&hub));
        let listening = server.bind(&addr).await?;
        println!(
            "game lobby listening on ws://{}/ws/game?player_id=ID",
            listening.local_addr()
        );
        let report = listening
            .serve_with_shutdown(async {
                let _ = ctrl_c.recv().await;
                let closed = hub.close();
                println!("shutting down: {closed} player(s) sent close 1001");
            })
            .await;
        println!("stopped ({} connection(s) still open)", report.still_open);
        Ok(())
    })
}
