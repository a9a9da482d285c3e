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
//!
//! The server pushes a `rooms` event to everyone after each join, leave and disconnect. The tests
//! of the `rooms` events check them message by message; the others, which are about something
//! else, skip `rooms` events (`next`, `want`, `settle`: their fence proves that nothing but
//! `rooms` events came before its answer) and check everything else as strictly as before.

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
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde_json::{Value, json};

    /// Numbers the fences of [`Peer::settle`].
    static SETTLES: AtomicU32 = AtomicU32::new(0);

    /// Whether `msg` is a `rooms` event.
    pub fn is_rooms(msg: &Value) -> bool {
        msg["type"] == "rooms"
    }

    impl<S> Peer<S>
    where
        S: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Unpin,
    {
        /// The next message that is not a `rooms` event.
        pub async fn next(&mut self) -> Value {
            loop {
                let msg = self.recv().await;
                if !is_rooms(&msg) {
                    return msg;
                }
            }
        }

        /// The next message that is not a `rooms` event must be `expected`, exactly.
        pub async fn want(&mut self, expected: Value) {
            let got = self.next().await;
            assert_eq!(got, expected, "{}: unexpected message", self.name);
        }

        /// A fence past `rooms` events: the answer to a request of its own must be the next
        /// message that is not a `rooms` event.
        pub async fn settle(&mut self) {
            let id = format!("settle-{}", SETTLES.fetch_add(1, Ordering::Relaxed));
            self.send_json(json!({"type": "fence", "id": id})).await;
            self.want(json!({"type": "error", "payload": {"message": UNKNOWN}, "id": id}))
                .await;
        }

        /// Joins `room` as `user` and takes its own announcement; each of `others`, already in
        /// it, must get the announcement next (`rooms` events skipped).
        pub async fn join_seen_by(&mut self, user: &str, room: &str, others: &mut [&mut Self]) {
            self.send_json(join_room(room)).await;
            self.want(joined(user, room)).await;
            for other in others {
                other.want(joined(user, room)).await;
            }
        }

        /// The next message past `rooms` events must be a `chat` from `user` in `room` with
        /// `text`, and a timestamp of now in RFC 3339.
        pub async fn expect_chat(&mut self, room: &str, user: &str, text: &str) {
            let mut got = self.next().await;
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

    /// `{"type":"rooms","data":{"rooms":[{"name":…,"members":…},…]}}`, in the order given.
    pub fn rooms(list: &[(&str, usize)]) -> Value {
        let list: Vec<Value> = list
            .iter()
            .map(|(name, members)| json!({"name": name, "members": members}))
            .collect();
        json!({"type": "rooms", "data": {"rooms": list}})
    }

    pub fn list_rooms() -> Value {
        json!({"type": "list_rooms"})
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
            Peer, chat, error, error_message, join_room, joined, leave_room, left, list_rooms,
            rooms,
        };
        use rt::ws::OriginPolicy;
        use rt::ws::hub::Hub;
        use rt::ws::server::{Server, ShutdownReport};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(30);

        /// A hub with the chat's settings, as the example makes it.
        fn new_hub() -> Hub {
            Hub::with_config(chat::hub_config())
        }

        /// The chat's routes on a free loopback port, served by this runtime's helper.
        async fn start(hub: &Hub) -> (rt::Join<ShutdownReport>, SocketAddr) {
            serve(chat::routes(hub)).await
        }

        /// `routes` on a free loopback port, served by this runtime's helper.
        async fn serve(
            routes: Vec<(&'static str, rt::ws::server::Route)>,
        ) -> (rt::Join<ShutdownReport>, SocketAddr) {
            let server = Server::new().routes(routes);
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            let addr = listening.local_addr();
            (rt::spawn(listening.serve()), addr)
        }

        /// A client connected as `/ws` + `query`, past its own `user_joined` for `general`
        /// (its first message).
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

        /// `GET path` (the connection closed after the response): its head and body.
        async fn get(addr: SocketAddr, path: &str) -> (String, String) {
            let mut tcp = rt::connect(addr.port()).await;
            let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
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
            (head.to_owned(), body.to_owned())
        }

        /// The value of the response header `name`.
        fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
            head.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim())
        }

        #[test]
        fn the_page_at_root_is_html_that_talks_to_the_websocket() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let (head, page) = get(addr, "/").await;
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                assert_eq!(header(&head, "Content-Type"), Some("text/html; charset=utf-8"));
                assert!(page.starts_with("<!doctype html>"), "{page}");
                assert_eq!(page, chat::PAGE);
                let (head, script) = get(addr, "/chat.js").await;
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                assert_eq!(script, chat::SCRIPT);

                // The page builds its WebSocket URL and hands it to the script it loads.
                for needle in [
                    "<script src=\"/chat.js\"></script>",
                    "startChat(",
                    "/ws?user=",
                    "location.protocol",
                    "wss:",
                    "id=\"messages\"",
                    "id=\"message-input\"",
                    "id=\"room-select\"",
                    "id=\"room-input\"",
                    "id=\"join-button\"",
                    "id=\"leave-button\"",
                    "id=\"send-button\"",
                    "id=\"status\"",
                    "id=\"user-name\"",
                    "id=\"rooms-list\"",
                    "id=\"name-input\"",
                    "id=\"name-button\"",
                ] {
                    assert!(page.contains(needle), "the page lacks {needle}");
                }
                // The script opens the socket, renders with textContent, keeps the rooms panel
                // (`<li data-room>` with a join or leave button) and reconnects.
                for needle in [
                    "window.startChat",
                    "new WebSocket(",
                    "await connect()",
                    "textContent",
                    "dataset.room",
                    "\"join\"",
                    "\"leave\"",
                    "list_rooms",
                    "reconnecting in",
                ] {
                    assert!(script.contains(needle), "the script lacks {needle}");
                }
                // Self-contained (the one script and the one style sheet are its own, same
                // origin), and user text never goes in as markup.
                assert_eq!(page.matches("<script src").count(), 1, "{page}");
                assert_eq!(page.matches("<link").count(), 1, "{page}");
                assert!(page.contains(r#"<link rel="stylesheet" href="/chat.css">"#));
                assert!(!script.contains("<link"), "{script}");
                for text in [&page, &script, chat::STYLE] {
                    for needle in ["http://", "https://", "@import", "innerHTML"] {
                        assert!(!text.contains(needle), "the page or script has {needle}");
                    }
                }
                assert!(!script.contains("<script"), "{script}");
            });
        }

        #[test]
        fn the_script_is_served_as_javascript() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let (head, body) = get(addr, "/chat.js").await;
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                assert_eq!(
                    header(&head, "Content-Type"),
                    Some("application/javascript; charset=utf-8")
                );
                assert_eq!(header(&head, "Cache-Control"), Some("no-cache"));
                assert_eq!(header(&head, "X-Content-Type-Options"), Some("nosniff"));
                assert!(body.starts_with("// tidings chat"), "{body}");
                // Only GET and HEAD.
                let mut tcp = rt::connect(addr.port()).await;
                let request =
                    format!("POST /chat.js HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                rt::write_all(&mut tcp, request.as_bytes()).await.expect("write");
                let mut buf = vec![0; 4096];
                let n = rt::read(&mut tcp, &mut buf).await.expect("read");
                let head = String::from_utf8_lossy(&buf[..n]);
                assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
            });
        }

        #[test]
        fn the_style_sheet_is_served_as_css() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let (head, body) = get(addr, "/chat.css").await;
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                assert_eq!(header(&head, "Content-Type"), Some("text/css; charset=utf-8"));
                assert_eq!(header(&head, "X-Content-Type-Options"), Some("nosniff"));
                assert_eq!(body, chat::STYLE);
                assert!(body.contains("#messages"), "{body}");
            });
        }

        #[test]
        fn users_are_anonymous_by_default_and_everyone_starts_in_general() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "", "a", "anonymous").await;
                let mut b = connect(addr, "?user=", "b", "anonymous").await;
                a.want(joined("anonymous", "general")).await;
                let mut c = connect(addr, "?x=1&user=al%C3%AFce+b", "c", "alïce b").await;
                a.want(joined("alïce b", "general")).await;
                b.want(joined("alïce b", "general")).await;
                // All three are in general, and only there.
                for client in hub.clients() {
                    assert_eq!(client.rooms(), ["general"], "{client:?}");
                }
                c.send_json(chat("general", "hello")).await;
                for peer in [&mut a, &mut b, &mut c] {
                    peer.expect_chat("general", "alïce b", "hello").await;
                }
                for peer in [&mut a, &mut b, &mut c] {
                    peer.settle().await;
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
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.want(joined("bob", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                // bob is not in r: his next message is his own join, not alice's.
                bob.join_seen_by("bob", "r", &mut [&mut alice]).await;

                // The leaver hears its own leave, announced before it leaves.
                bob.send_json(leave_room("r")).await;
                bob.want(left("bob", "r")).await;
                alice.want(left("bob", "r")).await;
                bob.send_json(leave_room("r")).await;
                bob.want(error("not in room r")).await;
                alice.send_json(join_room("r")).await;
                alice.want(error("already in room r")).await;

                // general is a room like any other.
                alice.send_json(leave_room("general")).await;
                alice.want(left("alice", "general")).await;
                bob.want(left("alice", "general")).await;
                alice.join_seen_by("alice", "general", &mut [&mut bob]).await;

                alice.settle().await;
                bob.settle().await;
                let alice_rooms = hub.clients().into_iter().find(|c| {
                    c.data::<chat::User>().is_some_and(|u| u.0 == "alice")
                });
                assert_eq!(alice_rooms.expect("alice").rooms(), ["general", "r"]);
            });
        }

        #[test]
        fn chat_reaches_the_members_of_its_room_only() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.want(joined("bob", "general")).await;
                let mut carol = connect(addr, "?user=carol", "carol", "carol").await;
                alice.want(joined("carol", "general")).await;
                bob.want(joined("carol", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                carol.join_seen_by("carol", "r", &mut [&mut alice]).await;

                alice.send_json(chat("r", "secret")).await;
                alice.expect_chat("r", "alice", "secret").await;
                carol.expect_chat("r", "alice", "secret").await;
                // bob, not a member, saw neither the joins nor the chat of r (his next message
                // past the `rooms` pushes is the answer to his own request), and may not send
                // there.
                bob.send_json(chat("r", "let me in")).await;
                bob.want(error("not in room r")).await;
                bob.send_json(json!({"type": "chat", "payload": {"room": "r", "text": "?"}, "id": 42}))
                    .await;
                bob.want(json!({
                    "type": "error", "payload": {"message": "not in room r"}, "id": 42
                }))
                .await;
                // Nor did his attempts reach r.
                alice.settle().await;
                carol.settle().await;

                carol.send_json(chat("general", "hi all")).await;
                for peer in [&mut alice, &mut bob, &mut carol] {
                    peer.expect_chat("general", "carol", "hi all").await;
                }
                // A room nobody is in.
                bob.send_json(chat("nowhere", "hello?")).await;
                bob.want(error("not in room nowhere")).await;
                for peer in [&mut alice, &mut bob, &mut carol] {
                    peer.settle().await;
                }
            });
        }

        #[test]
        fn a_disconnect_announces_user_left_to_every_room_the_client_was_in() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                alice.want(joined("bob", "general")).await;
                let mut carol = connect(addr, "?user=carol", "carol", "carol").await;
                alice.want(joined("carol", "general")).await;
                bob.want(joined("carol", "general")).await;

                alice.join_seen_by("alice", "r", &mut []).await;
                bob.join_seen_by("bob", "r", &mut [&mut alice]).await;
                alice.join_seen_by("alice", "s", &mut []).await;
                carol.join_seen_by("carol", "s", &mut [&mut alice]).await;
                carol.send_json(leave_room("general")).await;
                carol.want(left("carol", "general")).await;
                alice.want(left("carol", "general")).await;
                bob.want(left("carol", "general")).await;

                // alice is in general, r and s; bob in general and r; carol in s.
                alice.close().await;
                let mut for_bob = vec![bob.next().await, bob.next().await];
                for_bob.sort_by_key(|v| v.to_string());
                assert_eq!(for_bob, [left("alice", "general"), left("alice", "r")]);
                carol.want(left("alice", "s")).await;
                bob.settle().await;
                carol.settle().await;
            });
        }

        #[test]
        fn list_rooms_answers_the_sender_with_every_room_sorted_by_name() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                // Alone, alice sees each push right after her own announcement.
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                alice.expect(rooms(&[("general", 1)])).await;
                for (room, list) in [
                    ("zeta", &[("general", 1), ("zeta", 1)][..]),
                    ("beta", &[("beta", 1), ("general", 1), ("zeta", 1)][..]),
                    // Byte order: capitals first.
                    ("Alpha", &[("Alpha", 1), ("beta", 1), ("general", 1), ("zeta", 1)][..]),
                ] {
                    alice.send_json(join_room(room)).await;
                    alice.expect(joined("alice", room)).await;
                    alice.expect(rooms(list)).await;
                }
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                let all = rooms(&[("Alpha", 1), ("beta", 1), ("general", 2), ("zeta", 1)]);
                bob.expect(all.clone()).await;
                alice.expect(joined("bob", "general")).await;
                alice.expect(all.clone()).await;

                // The payload may be absent, `{}` or null; the answer (without the request's
                // `id`) goes to the sender only.
                alice.send_json(list_rooms()).await;
                alice.expect(all.clone()).await;
                alice
                    .send_json(json!({"type": "list_rooms", "payload": {}, "id": "l1"}))
                    .await;
                alice.expect(all.clone()).await;
                bob.send_json(json!({"type": "list_rooms", "payload": null})).await;
                bob.expect(all.clone()).await;
                alice.fence().await;
                bob.fence().await;

                // A payload that is not an object is refused like any other.
                bob.send_json(json!({"type": "list_rooms", "payload": 5, "id": 9})).await;
                let reply = bob.recv().await;
                assert_eq!(reply["id"], 9, "{reply}");
                let message = reply["payload"]["message"].as_str().expect("a message");
                assert!(
                    message.starts_with("invalid payload for list_rooms: "),
                    "{message}"
                );
                bob.fence().await;
                alice.fence().await;
            });
        }

        #[test]
        fn rooms_are_pushed_to_everyone_as_members_come_and_go() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut alice = connect(addr, "?user=alice", "alice", "alice").await;
                alice.expect(rooms(&[("general", 1)])).await;
                // A new client gets the rooms right after its own join announcement.
                let mut bob = connect(addr, "?user=bob", "bob", "bob").await;
                bob.expect(rooms(&[("general", 2)])).await;
                alice.expect(joined("bob", "general")).await;
                alice.expect(rooms(&[("general", 2)])).await;

                // A join: a new room; alice, not in it, hears of it all the same.
                bob.send_json(join_room("r")).await;
                bob.expect(joined("bob", "r")).await;
                bob.expect(rooms(&[("general", 2), ("r", 1)])).await;
                alice.expect(rooms(&[("general", 2), ("r", 1)])).await;
                // Counts go up...
                alice.send_json(join_room("r")).await;
                alice.expect(joined("alice", "r")).await;
                alice.expect(rooms(&[("general", 2), ("r", 2)])).await;
                bob.expect(joined("alice", "r")).await;
                bob.expect(rooms(&[("general", 2), ("r", 2)])).await;
                // ...and down with a leave.
                bob.send_json(leave_room("r")).await;
                bob.expect(left("bob", "r")).await;
                bob.expect(rooms(&[("general", 2), ("r", 1)])).await;
                alice.expect(left("bob", "r")).await;
                alice.expect(rooms(&[("general", 2), ("r", 1)])).await;
                // A refused request changes nothing and pushes nothing.
                bob.send_json(leave_room("r")).await;
                bob.expect(error("not in room r")).await;
                bob.send_json(join_room("r")).await;
                bob.expect(joined("bob", "r")).await;
                bob.expect(rooms(&[("general", 2), ("r", 2)])).await;
                alice.expect(joined("bob", "r")).await;
                alice.expect(rooms(&[("general", 2), ("r", 2)])).await;

                // A disconnect: the leaves are announced, then the counts without bob.
                bob.close().await;
                let mut left_rooms = vec![alice.recv().await, alice.recv().await];
                left_rooms.sort_by_key(|v| v.to_string());
                assert_eq!(left_rooms, [left("bob", "general"), left("bob", "r")]);
                alice.expect(rooms(&[("general", 1), ("r", 1)])).await;
                // An emptied room is gone from the list.
                alice.send_json(leave_room("r")).await;
                alice.expect(left("alice", "r")).await;
                alice.expect(rooms(&[("general", 1)])).await;
                alice.fence().await;
                assert_eq!(hub.rooms(), ["general"]);
            });
        }

        #[test]
        fn the_websocket_s_origin_policy_is_same_origin_or_the_one_given() {
            rt::run(GUARD, async {
                use tungstenite::client::IntoClientRequest;

                let with_origin = |addr: SocketAddr, origin: &str| {
                    let mut request = format!("ws://{addr}/ws?user=o")
                        .into_client_request()
                        .expect("a request");
                    request
                        .headers_mut()
                        .insert("Origin", origin.parse().expect("a header value"));
                    request
                };
                let status = |result: Result<_, tungstenite::Error>| match result {
                    Ok(_) => 101,
                    Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
                    Err(e) => panic!("{e}"),
                };
                // By default: the page's own origin only.
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let own = format!("http://{addr}");
                assert_eq!(status($connect(with_origin(addr, &own)).await), 101);
                assert_eq!(status($connect(with_origin(addr, "http://evil.example")).await), 403);

                // With an allow-list: its origins only.
                let hub = new_hub();
                let policy = OriginPolicy::allow(["https://*.example.com", "http://localhost:*"]);
                let (_server, addr) = serve(chat::routes_with_origin(&hub, policy)).await;
                for (origin, want) in [
                    ("https://chat.example.com", 101),
                    ("http://localhost:5173", 101),
                    ("https://example.com", 403),
                    ("http://evil.example", 403),
                ] {
                    assert_eq!(status($connect(with_origin(addr, origin)).await), want, "{origin}");
                }
                // The page is not a WebSocket: the policy is the route's alone.
                let (head, _) = get(addr, "/").await;
                assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            });
        }

        #[test]
        fn malformed_json_unknown_types_and_invalid_input_get_error_replies() {
            rt::run(GUARD, async {
                // More messages than the chat's burst, back to back: without its rate limit
                // (tested on its own), so every reply is the one the input asks for.
                let hub = Hub::with_config(chat::hub_config().rate_limit(None));
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;

                for bad in ["not json", "{\"payload\":{}}", "[1,2]", "{\"type\":3}"] {
                    a.send(bad).await;
                    let reply = a.next().await;
                    let message = error_message(&reply);
                    assert!(message.starts_with("invalid JSON"), "{bad}: {message}");
                }
                a.send_binary(b"{\"type\":\"chat\"}").await;
                a.want(error("binary messages are not accepted: send JSON text")).await;
                a.send_json(json!({"type": "dance", "id": "d1"})).await;
                a.want(json!({
                    "type": "error", "payload": {"message": "unknown message type: dance"}, "id": "d1"
                }))
                .await;
                for (kind, payload) in [
                    ("join_room", json!(null)),
                    ("leave_room", json!({"name": "r"})),
                    ("chat", json!({"room": "general"})),
                    ("chat", json!({"room": 1, "text": "x"})),
                    ("list_rooms", json!("all")),
                ] {
                    a.send_json(json!({"type": kind, "payload": payload})).await;
                    let reply = a.next().await;
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
                a.want(error("room name must not be empty")).await;
                a.send_json(join_room(&long_room)).await;
                a.want(error("room name too long (at most 64 bytes)")).await;
                a.send_json(leave_room("")).await;
                a.want(error("room name must not be empty")).await;
                a.send_json(chat(&long_room, "x")).await;
                a.want(error("room name too long (at most 64 bytes)")).await;
                a.send_json(join_room(&max_room)).await;
                a.want(joined("a", &max_room)).await;

                // Texts: not empty or blank, at most 2000 bytes (UTF-8 bytes, not characters).
                a.send_json(chat("general", "")).await;
                a.want(error("message text must not be empty")).await;
                a.send_json(chat("general", " \n\t")).await;
                a.want(error("message text must not be empty")).await;
                let longest = "é".repeat(1000);
                let too_long = format!("{longest}x");
                a.send_json(chat("general", &too_long)).await;
                a.want(error("message text too long (at most 2000 bytes)")).await;
                a.send_json(chat("general", &longest)).await;
                a.expect_chat("general", "a", &longest).await;

                // Still connected, nothing else queued.
                a.settle().await;
            });
        }

        #[test]
        fn each_connection_s_messages_are_handled_in_order() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;
                a.expect(rooms(&[("general", 1)])).await;
                // Sent back to back, without waiting for any answer.
                a.send_json(join_room("r")).await;
                a.send_json(chat("r", "first")).await;
                a.send_json(list_rooms()).await;
                a.send_json(leave_room("r")).await;
                a.send_json(chat("r", "too late")).await;
                a.expect(joined("a", "r")).await;
                a.expect(rooms(&[("general", 1), ("r", 1)])).await;
                a.expect_chat("r", "a", "first").await;
                a.expect(rooms(&[("general", 1), ("r", 1)])).await;
                a.expect(left("a", "r")).await;
                a.expect(rooms(&[("general", 1)])).await;
                a.expect(error("not in room r")).await;
                a.fence().await;
            });
        }

        #[test]
        fn a_flood_is_answered_with_rate_limit_errors_and_the_client_stays_connected() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;
                a.expect(rooms(&[("general", 1)])).await;
                // Far more than the burst, back to back: even at the steady rate, sending them
                // would have to take over (FLOOD - MESSAGE_BURST) / MESSAGES_PER_SEC seconds for
                // none to be refused.
                const FLOOD: u32 = 4 * chat::MESSAGE_BURST;
                for i in 0..FLOOD {
                    a.send_json(chat("general", &format!("m{i}"))).await;
                }
                let (mut delivered, mut refused) = (0, 0);
                while delivered + refused < FLOOD {
                    let msg = a.next().await;
                    if msg == error("rate limit exceeded") {
                        refused += 1;
                    } else {
                        assert_eq!(msg["type"], "chat", "unexpected message {msg}");
                        delivered += 1;
                    }
                }
                assert!(delivered >= chat::MESSAGE_BURST, "the burst went through: {delivered}");
                assert!(refused > 0, "a flood of {FLOOD} was not limited");
                // Still connected, and answered once the bucket refills.
                a.send_json(list_rooms()).await;
                loop {
                    let msg = a.recv().await;
                    if msg == rooms(&[("general", 1)]) {
                        break;
                    }
                    assert_eq!(msg, error("rate limit exceeded"), "unexpected message");
                    a.send_json(list_rooms()).await;
                }
            });
        }

        #[test]
        fn closing_the_hub_sends_going_away() {
            rt::run(GUARD, async {
                let hub = new_hub();
                let (_server, addr) = start(&hub).await;
                let mut a = connect(addr, "?user=a", "a", "a").await;
                a.expect(rooms(&[("general", 1)])).await;
                let mut b = connect(addr, "?user=b", "b", "b").await;
                b.expect(rooms(&[("general", 2)])).await;
                a.expect(joined("b", "general")).await;
                a.expect(rooms(&[("general", 2)])).await;
                // The close is the next thing each gets (a closed hub pushes no `rooms`).
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
