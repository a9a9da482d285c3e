//! The `game_lobby` example's wire protocol (`tidings_examples::game_lobby`), checked from the
//! outside: the example's routes run in-process on an ephemeral loopback port under each
//! runtime's server helper (every test is written once in `suite!` and expanded into
//! `mod tokio_suite` and `mod smol_suite`), and an independent client, async-tungstenite, talks
//! to them. Every message is compared as a whole `serde_json::Value`, a forwarded game action as
//! the exact text sent.
//!
//! Nothing sleeps. That something did *not* arrive is shown with an ordering fence: the player
//! sends a request only it gets an answer to (an unknown command) after the event that could have
//! caused the unwanted message, and the answer must be the very next thing it receives (each
//! client's messages are queued in order, so an unwanted message would have come first).

tidings_tests::runtime_shims!();

/// The client side, runtime-neutral: an async-tungstenite stream of either runtime.
#[path = "common/json_peer.rs"]
mod json_peer;

mod peer {
    use async_tungstenite::tungstenite::{Error, Message};
    use futures_util::{Sink, Stream};

    pub use super::json_peer::{Peer, error, error_message};

    /// The app's answer to the unknown type a fence sends.
    pub const UNKNOWN: &str = "unknown command: fence";
    use serde_json::{Value, json};

    impl<S> Peer<S>
    where
        S: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Unpin,
    {
        /// Joins `game` (no request id) and takes the reply.
        pub async fn join(&mut self, game: &str) {
            self.send_json(json!({"type": "join_game", "payload": {"game_id": game}}))
                .await;
            self.expect(json!({"type": "joined", "payload": {"game_id": game}}))
                .await;
        }

        /// Joins `game` and takes the reply; each of `others`, already in it, must be told
        /// `player_joined` next.
        pub async fn join_seen_by(&mut self, game: &str, others: &mut [&mut Self]) {
            self.join(game).await;
            for other in others {
                other.expect(player_joined(self.name)).await;
            }
        }

        /// Sends a chat message.
        pub async fn chat(&mut self, text: &str) {
            self.send_json(json!({"type": "chat", "payload": {"text": text}}))
                .await;
        }
    }

    pub fn chat_from(player: &str, text: &str) -> Value {
        json!({"type": "chat", "payload": {"player": player, "text": text}})
    }

    pub fn player_joined(player: &str) -> Value {
        json!({"type": "player_joined", "payload": {"player": player}})
    }

    pub fn player_left(player: &str) -> Value {
        json!({"type": "player_left", "payload": {"player": player}})
    }
}

macro_rules! suite {
    ($connect:path) => {
        use std::net::SocketAddr;
        use std::time::Duration;

        use async_tungstenite::tungstenite;
        use serde_json::json;
        use tidings_examples::game_lobby;

        use super::peer::{Peer, chat_from, error, error_message, player_left};
        use rt::ws::hub::Hub;
        use rt::ws::server::{Server, ShutdownReport};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(30);

        /// The lobby's routes on a free loopback port, served by this runtime's helper.
        async fn start(hub: &Hub) -> (rt::Join<ShutdownReport>, SocketAddr) {
            let server = Server::new().routes(game_lobby::routes(hub));
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            let addr = listening.local_addr();
            (rt::spawn(listening.serve()), addr)
        }

        /// Player `id`, connected and registered (past a fence).
        async fn player(
            addr: SocketAddr,
            id: &'static str,
        ) -> Peer<impl futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
               + futures_util::Sink<tungstenite::Message, Error = tungstenite::Error>
               + Unpin> {
            let ws = rt::their_connect(&format!("ws://{addr}/ws/game?player_id={id}")).await;
            let mut peer = Peer::new(ws, id, crate::peer::UNKNOWN);
            peer.fence().await;
            peer
        }

        /// The HTTP status the upgrade to `url` is refused with.
        async fn refused(url: String) -> u16 {
            match $connect(url.as_str()).await {
                Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
                other => panic!("{url}: expected a refusal, got {:?}", other.map(|(_, r)| r)),
            }
        }

        fn rooms_of(hub: &Hub, player: &str) -> Vec<String> {
            hub.client(player)
                .unwrap_or_else(|| panic!("{player} is not connected"))
                .rooms()
        }

        #[test]
        fn a_missing_player_id_is_refused_with_400_and_a_connected_one_with_409() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                for query in ["", "?player_id=", "?player_id", "?other=p1", &format!("?player_id={}", "p".repeat(65))] {
                    assert_eq!(refused(format!("ws://{addr}/ws/game{query}")).await, 400, "{query}");
                }
                let p1 = player(addr, "p1").await;
                assert_eq!(refused(format!("ws://{addr}/ws/game?player_id=p1")).await, 409);
                // The ID is the client's ID; once p1 has gone, it can be used again.
                assert!(hub.client("p1").is_some());
                p1.close().await;
                hub.idle().await;
                let mut again = player(addr, "p1").await;
                // A percent-encoded ID is decoded.
                let mut spaced = Peer::new(
                    rt::their_connect(&format!("ws://{addr}/ws/game?player_id=p%202")).await,
                    "p 2",
                    crate::peer::UNKNOWN,
                );
                spaced.fence().await;
                spaced.chat("hi").await;
                spaced.expect(chat_from("p 2", "hi")).await;
                again.expect(chat_from("p 2", "hi")).await;
                again.fence().await;
            });
        }

        #[test]
        fn players_start_in_the_lobby() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                assert_eq!(rooms_of(&hub, "p1"), ["lobby"]);
                assert_eq!(rooms_of(&hub, "p2"), ["lobby"]);
                p1.chat("hi").await;
                p1.expect(chat_from("p1", "hi")).await;
                p2.expect(chat_from("p1", "hi")).await;
                p1.fence().await;
                p2.fence().await;
            });
        }

        #[test]
        fn join_game_replies_to_the_joiner_and_tells_only_the_others_in_the_game() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                let mut p3 = player(addr, "p3").await;

                // The reply echoes the request's id.
                p1.send_json(json!({"type": "join_game", "payload": {"game_id": "g1"}, "id": "j1"}))
                    .await;
                p1.expect(json!({"type": "joined", "payload": {"game_id": "g1"}, "id": "j1"}))
                    .await;
                assert_eq!(rooms_of(&hub, "p1"), ["game:g1"]);
                p2.join_seen_by("g1", &mut [&mut p1]).await;
                // Not the joiner, not the lobby.
                p2.fence().await;
                p3.fence().await;
                p1.fence().await;

                p1.send_json(json!({"type": "join_game", "payload": {"game_id": "g1"}, "id": 5}))
                    .await;
                p1.expect(json!({"type": "error", "payload": {"message": "already in game g1"}, "id": 5}))
                    .await;
                p3.send_json(json!({"type": "join_game", "payload": {"game_id": ""}})).await;
                p3.expect(error("game_id must not be empty")).await;
                p3.send_json(json!({"type": "join_game", "payload": {"game_id": "g".repeat(65)}}))
                    .await;
                p3.expect(error("game_id too long (at most 64 bytes)")).await;
                for payload in [json!(null), json!({"game": "g1"}), json!({"game_id": 1})] {
                    p3.send_json(json!({"type": "join_game", "payload": payload})).await;
                    let reply = p3.recv().await;
                    let message = error_message(&reply);
                    assert!(message.starts_with("invalid payload for join_game: "), "{message}");
                }
                assert_eq!(rooms_of(&hub, "p3"), ["lobby"]);
                p1.fence().await;
                p2.fence().await;
            });
        }

        #[test]
        fn game_actions_are_forwarded_verbatim_to_the_others_in_the_game_only() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                let mut p3 = player(addr, "p3").await;
                let mut p4 = player(addr, "p4").await;
                let mut p5 = player(addr, "p5").await;
                p1.join("g1").await;
                p2.join_seen_by("g1", &mut [&mut p1]).await;
                p3.join_seen_by("g1", &mut [&mut p1, &mut p2]).await;
                p4.join("g2").await;

                // Odd spacing, key order, number formatting, escapes, an id: all kept.
                let action = "{ \"id\" : 7,\"payload\":{\"move\":\"e2e4\",\"n\":1.50,\"s\":\"\\u00e9\"},  \"type\":\"game_action\" }";
                p1.send(action).await;
                assert_eq!(p2.recv_text().await, action);
                assert_eq!(p3.recv_text().await, action);
                // Not the sender, not another game, not the lobby.
                p1.fence().await;
                p4.fence().await;
                p5.fence().await;

                // From g2 it reaches no one in g1 (p4 is alone in g2).
                let other = r#"{"type":"game_action","payload":{"move":"resign"}}"#;
                p4.send(other).await;
                p4.fence().await;
                p1.fence().await;
                p2.fence().await;
                p3.fence().await;

                // Outside a game it is an error.
                p5.send(r#"{"type":"game_action","payload":{"move":"x"},"id":"a1"}"#).await;
                p5.expect(json!({"type": "error", "payload": {"message": "not in a game"}, "id": "a1"}))
                    .await;
                p5.send(r#"{"type":"game_action"}"#).await;
                p5.expect(error("not in a game")).await;
                p1.fence().await;
                p4.fence().await;
            });
        }

        #[test]
        fn chat_reaches_the_rooms_of_the_player_and_no_other_game() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                let mut p3 = player(addr, "p3").await;
                let mut p4 = player(addr, "p4").await;
                let mut p5 = player(addr, "p5").await;
                p1.join("g1").await;
                p2.join_seen_by("g1", &mut [&mut p1]).await;
                p3.join("g2").await;

                p1.chat("gg").await;
                p1.expect(chat_from("p1", "gg")).await;
                p2.expect(chat_from("p1", "gg")).await;
                for peer in [&mut p3, &mut p4, &mut p5] {
                    peer.fence().await;
                }

                p4.chat("anyone?").await;
                p4.expect(chat_from("p4", "anyone?")).await;
                p5.expect(chat_from("p4", "anyone?")).await;
                for peer in [&mut p1, &mut p2, &mut p3] {
                    peer.fence().await;
                }

                p3.chat("alone").await;
                p3.expect(chat_from("p3", "alone")).await;
                for peer in [&mut p1, &mut p2, &mut p4, &mut p5] {
                    peer.fence().await;
                }

                // Invalid chats are answered to the sender only.
                p1.chat("").await;
                p1.expect(error("chat text must not be empty")).await;
                p1.chat(" \t").await;
                p1.expect(error("chat text must not be empty")).await;
                p1.chat(&"x".repeat(2001)).await;
                p1.expect(error("chat text too long (at most 2000 bytes)")).await;
                p1.send_json(json!({"type": "chat"})).await;
                let reply = p1.recv().await;
                assert!(error_message(&reply).starts_with("invalid payload for chat: "), "{reply}");
                p2.fence().await;
                p1.fence().await;
            });
        }

        #[test]
        fn leave_game_goes_back_to_the_lobby_and_tells_the_others() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                let mut p3 = player(addr, "p3").await;
                p1.join("g1").await;
                p2.join_seen_by("g1", &mut [&mut p1]).await;

                // Joining another game leaves the first one, and its others are told.
                p2.join("g2").await;
                p1.expect(player_left("p2")).await;
                assert_eq!(rooms_of(&hub, "p2"), ["game:g2"]);
                p2.join_seen_by("g1", &mut [&mut p1]).await;

                p1.send_json(json!({"type": "leave_game", "id": "l1"})).await;
                p1.expect(json!({"type": "left", "payload": {"game_id": "g1"}, "id": "l1"}))
                    .await;
                p2.expect(player_left("p1")).await;
                assert_eq!(rooms_of(&hub, "p1"), ["lobby"]);
                // Back in the lobby: its chat reaches the lobby, not the game.
                p1.chat("back").await;
                p1.expect(chat_from("p1", "back")).await;
                p3.expect(chat_from("p1", "back")).await;
                p2.fence().await;

                p1.send_json(json!({"type": "leave_game"})).await;
                p1.expect(error("not in a game")).await;
                p2.send_json(json!({"type": "leave_game", "payload": {"ignored": true}})).await;
                p2.expect(json!({"type": "left", "payload": {"game_id": "g1"}})).await;
                for peer in [&mut p1, &mut p2, &mut p3] {
                    peer.fence().await;
                }
            });
        }

        #[test]
        fn unknown_commands_and_malformed_messages_get_error_replies() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                let mut p2 = player(addr, "p2").await;
                p1.send_json(json!({"type": "dance", "id": "x"})).await;
                p1.expect(json!({"type": "error", "payload": {"message": "unknown command: dance"}, "id": "x"}))
                    .await;
                p1.send_json(json!({"type": "join", "payload": {"game_id": "g1"}})).await;
                p1.expect(error("unknown command: join")).await;
                for bad in ["nope", "{\"payload\":{}}", "{\"type\":null}"] {
                    p1.send(bad).await;
                    let reply = p1.recv().await;
                    assert!(error_message(&reply).starts_with("invalid JSON"), "{bad}: {reply}");
                }
                p1.send_binary(b"\x01\x02").await;
                p1.expect(error("binary messages are not accepted: send JSON text")).await;
                // Still connected, still in the lobby; the others heard nothing.
                p1.fence().await;
                p2.fence().await;
                assert_eq!(rooms_of(&hub, "p1"), ["lobby"]);
            });
        }

        #[test]
        fn closing_the_hub_sends_going_away() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut p1 = player(addr, "p1").await;
                p1.join("g1").await;
                assert_eq!(hub.close(), 1);
                p1.expect_close(1001).await;
                hub.idle().await;
            });
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;
    suite!(::async_tungstenite::tokio::connect_async);
}

mod smol_suite {
    use super::smol_rt as rt;
    suite!(::async_tungstenite::smol::connect_async);
}
