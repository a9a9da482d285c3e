//! The `chat` example's wire protocol (`tidings_examples::chat`), checked from the outside: the
//! example's routes run in-process on an ephemeral loopback port under each runtime's server
//! helper (every test is written once in `suite!` and expanded into `mod tokio_suite` and
//! `mod smol_suite`), and an independent client, async-tungstenite, talks to them. Every message
//! is compared as a whole `serde_json::Value`; timestamps are parsed as RFC 3339.
//!
//! Nothing sleeps. That something did *not* arrive is shown with an ordering fence: the client
//! sends a request only it gets an answer to (an unknown type) after the event that could have
//! caused the unwanted message, and the answer must be the very next thing it receives (each
//! client's messages are queued in order, so an unwanted message would have come first).

tidings_tests::runtime_shims!();

/// The client side, runtime-neutral: an async-tungstenite stream of either runtime.
#[path = "common/json_peer.rs"]
mod json_peer;

mod peer {
    use std::time::{Duration, SystemTime};

    use async_tungstenite::tungstenite::{Error, Message};
    use futures_util::{Sink, Stream};

    pub use super::json_peer::{Peer, error, error_message};

    /// The app's answer to the unknown type a fence sends.
    pub const UNKNOWN: &str = "unknown message type: fence";
    use serde_json::{Value, json};

    impl<S> Peer<S>
    where
        S: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Unpin,
    {
        /// Joins `room` as `user` and takes its own announcement; each of `others`, already in
        /// it, must get the announcement next.
        pub async fn join_seen_by(&mut self, user: &str, room: &str, others: &mut [&mut Self]) {
            self.send_json(join_room(room)).await;
            self.expect(joined(user, room)).await;
            for other in others {
                other.expect(joined(user, room)).await;
            }
        }

        /// The next message must be a `chat` from `user` in `room` with `text`, and a timestamp
        /// of now in RFC 3339.
        pub async fn expect_chat(&mut self, room: &str, user: &str, text: &str) {
            let mut got = self.recv().await;
            let stamp = got
                .get_mut("payload")
                .and_then(Value::as_object_mut)
                .and_then(|payload| payload.remove("timestamp"))
                .unwrap_or_else(|| panic!("{}: a chat without a timestamp", self.name));
            let stamp = stamp.as_str().expect("the timestamp is a string");
            let at = humantime::parse_rfc3339(stamp).unwrap_or_else(|e| {
                panic!("{}: timestamp {stamp:?} is not RFC 3339: {e}", self.name)
            });
            let skew = match at.duration_since(SystemTime::now()) {
                Ok(ahead) => ahead,
                Err(behind) => behind.duration(),
            };
            assert!(
                skew < Duration::from_secs(300),
                "{}: timestamp {stamp} is not now",
                self.name
            );
            assert_eq!(
                got,
                json!({"type": "chat", "payload": {"room": room, "user": user, "text": text}}),
                "{}: unexpected message",
                self.name
            );
        }
    }

    pub fn joined(user: &str, room: &str) -> Value {
        json!({"type": "user_joined", "data": {"user": user, "room": room}})
    }

    pub fn left(user: &str, room: &str) -> Value {
        json!({"type": "user_left", "data": {"user": user, "room": room}})
    }

    pub fn join_room(room: &str) -> Value {
        json!({"type": "join_room", "payload": {"room": room}})
    }

    pub fn leave_room(room: &str) -> Value {
        json!({"type": "leave_room", "payload": {"room": room}})
    }

    pub fn chat(room: &str, text: &str) -> Value {
        json!({"type": "chat", "payload": {"room": room, "text": text}})
    }
}

macro_rules! suite {
    ($connect:path) => {
        use std::net::SocketAddr;
        use std::time::Duration;

        use async_tungstenite::tungstenite;
        use serde_json::json;
        use tidings_examples::chat;

        use super::peer::{
            Peer, chat, error, error_message, join_room, joined, leave_room, left,
        };
        use rt::ws::hub::Hub;
        use rt::ws::server::{Server, ShutdownReport};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(30);

        /// The chat's routes on a free loopback port, served by this runtime's helper.
        async fn start(hub: &Hub) -> (rt::Join<ShutdownReport>, SocketAddr) {
            let mut server = Server::new();
            for (path, route) in chat::routes(hub) {
                server = server.route(path, route);
            }
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            let addr = listening.local_addr();
            (rt::spawn(listening.serve()), addr)
        }

        /// A client connected as `/ws` + `query`, past its own `user_joined` for `general`.
        async fn connect(
            addr: SocketAddr,
            query: &str,
            name: &'static str,
            user: &str,
        ) -> Peer<impl futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
               + futures_util::Sink<tungstenite::Message, Error = tungstenite::Error>
               + Unpin> {
            let ws = rt::their_connect(&format!("ws://{addr}/ws{query}")).await;
            let mut peer = Peer::new(ws, name, crate::peer::UNKNOWN);
            peer.expect(joined(user, "general")).await;
            peer
        }

        #[test]
        fn the_page_at_root_is_html_that_talks_to_the_websocket() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut tcp = rt::connect(addr.port()).await;
                let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                rt::write_all(&mut tcp, request.as_bytes()).await.expect("write");
                let mut response = Vec::new();
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = rt::read(&mut tcp, &mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    response.extend_from_slice(&buf[..n]);
                }
                let response = String::from_utf8(response).expect("UTF-8");
                let (head, body) = response.split_once("\r\n\r\n").expect("a head");
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                let content_type = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("Content-Type"))
                    .map(|(_, value)| value.trim());
                assert_eq!(content_type, Some("text/html; charset=utf-8"));
                assert!(body.starts_with("<!doctype html>"), "{body}");
                for needle in [
                    "new WebSocket(",
                    "/ws?user=",
                    "location.protocol",
                    "wss:",
                    "textContent",
                    "id=\"messages\"",
                    "id=\"message-input\"",
                    "id=\"room-select\"",
                    "id=\"room-input\"",
                    "id=\"join-button\"",
                    "id=\"leave-button\"",
                    "id=\"send-button\"",
                    "id=\"status\"",
                ] {
                    assert!(body.contains(needle), "the page lacks {needle}");
                }
                // Self-contained, and user text never goes in as markup.
                for needle in ["http://", "https://", "<script src", "<link", "@import", "innerHTML"] {
                    assert!(!body.contains(needle), "the page has {needle}");
                }
            });
        }

        #[test]
        fn users_are_anonymous_by_default_and_everyone_starts_in_general() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "", "a", "anonymous").await;
                let mut b = connect(addr, "?user=", "b", "anonymous").await;
                a.expect(joined("anonymous", "general")).await;
                let mut c = connect(addr, "?x=1&user=al%C3%AFce+b", "c", "alïce b").await;
                a.expect(joined("alïce b", "general")).await;
                b.expect(joined("alïce b", "general")).await;
                // All three are in general, and only there.
                for client in hub.clients() {
                    assert_eq!(client.rooms(), ["general"], "{client:?}");
                }
                c.send_json(chat("general", "hello")).await;
                for peer in [&mut a, &mut b, &mut c] {
                    peer.expect_chat("general", "alïce b", "hello").await;
                }
                for peer in [&mut a, &mut b, &mut c] {
                    peer.fence().await;
                }
                // A name over 64 bytes is refused before the upgrade.
                let long = "x".repeat(65);
                match $connect(format!("ws://{addr}/ws?user={long}")).await {
                    Err(tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status().as_u16(), 400)
                    }
                    other => panic!("expected 400, got {:?}", other.map(|(_, r)| r)),
                }
            });
        }

        #[test]
        fn joins_and_leaves_are_announced_to_the_room_and_the_member_itself() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.expect(joined("bob", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                // bob is not in r: his next message is his own join, not alice's.
                bob.join_seen_by("bob", "r", &mut [&mut alice]).await;

                // The leaver hears its own leave, announced before it leaves.
                bob.send_json(leave_room("r")).await;
                bob.expect(left("bob", "r")).await;
                alice.expect(left("bob", "r")).await;
                bob.send_json(leave_room("r")).await;
                bob.expect(error("not in room r")).await;
                alice.send_json(join_room("r")).await;
                alice.expect(error("already in room r")).await;

                // general is a room like any other.
                alice.send_json(leave_room("general")).await;
                alice.expect(left("alice", "general")).await;
                bob.expect(left("alice", "general")).await;
                alice.join_seen_by("alice", "general", &mut [&mut bob]).await;

                alice.fence().await;
                bob.fence().await;
                let alice_rooms = hub.clients().into_iter().find(|c| {
                    c.data::<chat::User>().is_some_and(|u| u.0 == "alice")
                });
                assert_eq!(alice_rooms.expect("alice").rooms(), ["general", "r"]);
            });
        }

        #[test]
        fn chat_reaches_the_members_of_its_room_only() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.expect(joined("bob", "general")).await;
                let mut carol = connect(addr, "?user=carol", "carol", "carol").await;
                alice.expect(joined("carol", "general")).await;
                bob.expect(joined("carol", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                carol.join_seen_by("carol", "r", &mut [&mut alice]).await;

                alice.send_json(chat("r", "secret")).await;
                alice.expect_chat("r", "alice", "secret").await;
                carol.expect_chat("r", "alice", "secret").await;
                // bob, not a member, saw neither the joins nor the chat of r (his next message is
                // the answer to his own request), and may not send there.
                bob.send_json(chat("r", "let me in")).await;
                bob.expect(error("not in room r")).await;
                bob.send_json(json!({"type": "chat", "payload": {"room": "r", "text": "?"}, "id": 42}))
                    .await;
                bob.expect(json!({
                    "type": "error", "payload": {"message": "not in room r"}, "id": 42
                }))
                .await;
                // Nor did his attempts reach r.
                alice.fence().await;
                carol.fence().await;

                carol.send_json(chat("general", "hi all")).await;
                for peer in [&mut alice, &mut bob, &mut carol] {
                    peer.expect_chat("general", "carol", "hi all").await;
                }
                // A room nobody is in.
                bob.send_json(chat("nowhere", "hello?")).await;
                bob.expect(error("not in room nowhere")).await;
                for peer in [&mut alice, &mut bob, &mut carol] {
                    peer.fence().await;
                }
            });
        }

        #[test]
        fn a_disconnect_announces_user_left_to_every_room_the_client_was_in() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.expect(joined("bob", "general")).await;
                let mut carol = connect(addr, "?user=carol", "carol", "carol").await;
                alice.expect(joined("carol", "general")).await;
                bob.expect(joined("carol", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                bob.join_seen_by("bob", "r", &mut [&mut alice]).await;
                alice.join_seen_by("alice", "s", &mut []).await;
                carol.join_seen_by("carol", "s", &mut [&mut alice]).await;
                carol.send_json(leave_room("general")).await;
                carol.expect(left("carol", "general")).await;
                alice.expect(left("carol", "general")).await;
                bob.expect(left("carol", "general")).await;

                // alice is in general, r and s; bob in general and r; carol in s.
                alice.close().await;
                let mut for_bob = vec![bob.recv().await, bob.recv().await];
                for_bob.sort_by_key(|v| v.to_string());
                assert_eq!(for_bob, [left("alice", "general"), left("alice", "r")]);
                carol.expect(left("alice", "s")).await;
                bob.fence().await;
                carol.fence().await;
            });
        }

        #[test]
        fn malformed_json_unknown_types_and_invalid_input_get_error_replies() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;

                for bad in ["not json", "{\"payload\":{}}", "[1,2]", "{\"type\":3}"] {
                    a.send(bad).await;
                    let reply = a.recv().await;
                    let message = error_message(&reply);
                    assert!(message.starts_with("invalid JSON"), "{bad}: {message}");
                }
                a.send_binary(b"{\"type\":\"chat\"}").await;
                a.expect(error("binary messages are not accepted: send JSON text")).await;
                a.send_json(json!({"type": "dance", "id": "d1"})).await;
                a.expect(json!({
                    "type": "error", "payload": {"message": "unknown message type: dance"}, "id": "d1"
                }))
                .await;
                for (kind, payload) in [
                    ("join_room", json!(null)),
                    ("leave_room", json!({"name": "r"})),
                    ("chat", json!({"room": "general"})),
                    ("chat", json!({"room": 1, "text": "x"})),
                ] {
                    a.send_json(json!({"type": kind, "payload": payload})).await;
                    let reply = a.recv().await;
                    let message = error_message(&reply);
                    assert!(
                        message.starts_with(&format!("invalid payload for {kind}: ")),
                        "{kind} {payload}: {message}"
                    );
                }

                // Room names: not empty, at most 64 bytes.
                let long_room = "r".repeat(65);
                let max_room = "r".repeat(64);
                a.send_json(join_room("")).await;
                a.expect(error("room name must not be empty")).await;
                a.send_json(join_room(&long_room)).await;
                a.expect(error("room name too long (at most 64 bytes)")).await;
                a.send_json(leave_room("")).await;
                a.expect(error("room name must not be empty")).await;
                a.send_json(chat(&long_room, "x")).await;
                a.expect(error("room name too long (at most 64 bytes)")).await;
                a.send_json(join_room(&max_room)).await;
                a.expect(joined("a", &max_room)).await;

                // Texts: not empty or blank, at most 2000 bytes (UTF-8 bytes, not characters).
                a.send_json(chat("general", "")).await;
                a.expect(error("message text must not be empty")).await;
                a.send_json(chat("general", " \n\t")).await;
                a.expect(error("message text must not be empty")).await;
                let longest = "é".repeat(1000);
                let too_long = format!("{longest}x");
                a.send_json(chat("general", &too_long)).await;
                a.expect(error("message text too long (at most 2000 bytes)")).await;
                a.send_json(chat("general", &longest)).await;
                a.expect_chat("general", "a", &longest).await;

                // Still connected, nothing else queued.
                a.fence().await;
            });
        }

        #[test]
        fn each_connection_s_messages_are_handled_in_order() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;
                // Sent back to back, without waiting for any answer.
                a.send_json(join_room("r")).await;
                a.send_json(chat("r", "first")).await;
                a.send_json(leave_room("r")).await;
                a.send_json(chat("r", "too late")).await;
                a.expect(joined("a", "r")).await;
                a.expect_chat("r", "a", "first").await;
                a.expect(left("a", "r")).await;
                a.expect(error("not in room r")).await;
                a.fence().await;
            });
        }

        #[test]
        fn closing_the_hub_sends_going_away() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;
                let mut b = connect(addr, "?user=b", "b", "b").await;
                a.expect(joined("b", "general")).await;
                assert_eq!(hub.close(), 2);
                a.expect_close(1001).await;
                b.expect_close(1001).await;
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
