//! The `notifications` example's wire format (`tidings_examples::notifications`), checked from the
//! outside: the example's routes run in-process on an ephemeral loopback port under each
//! runtime's server helper (every test is written once in `suite!` and expanded into
//! `mod tokio_suite` and `mod smol_suite`); WebSocket subscribers are async-tungstenite clients,
//! SSE subscribers and `POST /api/notify` go over raw TCP with a hand-written HTTP/1.1 and
//! event-stream client (`common/http_sse.rs`). Notifications are compared as whole JSON values;
//! timestamps are parsed as RFC 3339.
//!
//! Nothing sleeps. A WebSocket subscriber is known to be subscribed once it has the answer to
//! its `ping`; an SSE subscriber once its response head has arrived. That something did *not*
//! arrive is shown with an ordering fence: for a WebSocket, a request only it gets an answer to
//! (an unknown type), whose answer must be the next message; for an SSE stream, a later
//! notification to that user, which must be the next event.

tidings_tests::runtime_shims!();

#[macro_use]
#[path = "common/http_sse.rs"]
mod http_sse;

/// The WebSocket side, runtime-neutral: an async-tungstenite stream of either runtime.
#[allow(dead_code)]
#[path = "common/json_peer.rs"]
mod json_peer;

mod peer {
    use std::time::{Duration, SystemTime};

    use serde_json::{Value, json};

    pub use super::json_peer::Peer;

    /// The app's answer to the unknown type a fence sends.
    pub const UNKNOWN: &str = "unknown message type: fence";

    /// A notification without its timestamp, after checking that the timestamp is RFC 3339 and
    /// now.
    pub fn without_timestamp(notification: &Value) -> Value {
        let mut notification = notification.clone();
        let stamp = notification
            .as_object_mut()
            .and_then(|n| n.remove("timestamp"))
            .unwrap_or_else(|| panic!("no timestamp in {notification}"));
        let stamp = stamp.as_str().expect("the timestamp is a string");
        let at = humantime::parse_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("timestamp {stamp:?} is not RFC 3339: {e}"));
        let skew = match at.duration_since(SystemTime::now()) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        assert!(
            skew < Duration::from_secs(300),
            "timestamp {stamp} is not now"
        );
        notification
    }

    /// The notification `id` with `title` and `body`, without its timestamp.
    pub fn notification(id: &str, title: &str, body: &str) -> Value {
        json!({"id": id, "title": title, "body": body})
    }
}

macro_rules! suite {
    ($connect:path) => {
        use std::net::SocketAddr;
        use std::time::Duration;

        use async_tungstenite::tungstenite;
        use serde_json::{Value, json};
        use tidings_examples::notifications::{self, MAX_USER_ID_BYTES};

        use super::peer::{Peer, UNKNOWN, notification, without_timestamp};
        use crate::http_sse::SseEvent;
        use rt::ws::hub::Hub;
        use rt::ws::server::{Server, ShutdownReport};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(30);

        http_client!();

        /// The example's hub and routes on a free loopback port, served by this runtime's helper.
        async fn start() -> (Hub, rt::Join<ShutdownReport>, u16) {
            let hub = Hub::with_config(notifications::config());
            let server = Server::new().routes(notifications::routes(&hub, rt::ws::runtime()));
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            let addr: SocketAddr = listening.local_addr();
            (hub, rt::spawn(listening.serve()), addr.port())
        }

        /// A WebSocket subscriber of `user`, once subscribed (it has the answer to its `ping`).
        async fn ws(
            port: u16,
            user: &str,
            name: &'static str,
        ) -> Peer<impl futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
               + futures_util::Sink<tungstenite::Message, Error = tungstenite::Error>
               + Unpin> {
            let url = format!("ws://127.0.0.1:{port}/ws/notifications?user_id={user}");
            let mut peer = Peer::new(rt::their_connect(&url).await, name, UNKNOWN);
            peer.send_json(json!({"type": "ping", "id": name})).await;
            peer.expect(json!({"type": "pong", "id": name})).await;
            peer
        }

        /// An SSE subscriber of `user` (with `headers`), once subscribed (its head arrived).
        async fn sse(port: u16, user: &str, headers: &[(&str, &str)]) -> HttpClient {
            let mut client =
                HttpClient::get(port, &format!("/events?user_id={user}"), headers).await;
            let head = client.head().await;
            assert_eq!(head.status, 200);
            assert_eq!(head.media_type(), Some("text/event-stream"));
            client
        }

        /// `POST /api/notify` with `body`; the status and the JSON answer.
        async fn post(port: u16, body: &[u8]) -> (u16, Value) {
            let headers = [("Content-Type", "application/json")];
            let (head, answer) = HttpClient::send(port, "POST", "/api/notify", &headers, body)
                .await
                .json()
                .await;
            assert_eq!(head.media_type(), Some("application/json"));
            (head.status, answer)
        }

        /// Sends a notification to `user` (`""`: everyone); its id and how many connections it
        /// was queued to.
        async fn notify(port: u16, user: &str, title: &str, body: &str) -> (String, u64) {
            let request = json!({"user_id": user, "title": title, "body": body});
            let (status, answer) = post(port, request.to_string().as_bytes()).await;
            assert_eq!(status, 200, "{answer}");
            let id = answer["id"].as_str().expect("an id").to_owned();
            let delivered = answer["delivered"].as_u64().expect("delivered");
            (id, delivered)
        }

        /// The next SSE event must be the notification `expected` (without its timestamp); the
        /// event, whose `id:` is numeric.
        async fn expect_sse(client: &mut HttpClient, expected: &Value) -> SseEvent {
            let event = client.event().await;
            assert_eq!(event.event, "notification", "{event:?}");
            assert_eq!(&without_timestamp(&event.json()), expected, "{event:?}");
            event.number();
            event
        }

        /// The next WebSocket message must be the notification `expected`; its data.
        async fn expect_ws<S>(peer: &mut Peer<S>, expected: &Value) -> Value
        where
            S: futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
                + futures_util::Sink<tungstenite::Message, Error = tungstenite::Error>
                + Unpin,
        {
            let got = peer.recv().await;
            assert_eq!(got["type"], "notification", "{}: {got}", peer.name);
            assert_eq!(got.as_object().map(|o| o.len()), Some(2), "{got}");
            assert_eq!(&without_timestamp(&got["data"]), expected, "{}", peer.name);
            got["data"].clone()
        }

        #[test]
        fn a_notification_reaches_exactly_its_user_on_every_connection() {
            rt::run(GUARD, async {
                let (_hub, _server, port) = start().await;
                let mut alice_ws = ws(port, "alice", "alice-ws").await;
                let mut alice_ws2 = ws(port, "alice", "alice-ws2").await;
                let mut alice_sse = sse(port, "alice", &[]).await;
                let mut bob_ws = ws(port, "bob", "bob-ws").await;
                let mut bob_sse = sse(port, "bob", &[]).await;

                let (id, delivered) = notify(port, "alice", "Hello", "for alice").await;
                assert_eq!(delivered, 3, "alice's three connections");
                let expected = notification(&id, "Hello", "for alice");
                let over_ws = expect_ws(&mut alice_ws, &expected).await;
                assert_eq!(expect_ws(&mut alice_ws2, &expected).await, over_ws);
                let event = expect_sse(&mut alice_sse, &expected).await;
                assert_eq!(event.json(), over_ws, "the same data over SSE and WebSocket");
                assert_eq!(alice_sse.response.events.retry, Some(3000));

                // bob got nothing: his WebSocket's next message answers his own request, and his
                // stream's next event is the notification sent to him afterwards.
                bob_ws.fence().await;
                let (bob_id, delivered) = notify(port, "bob", "Hi", "for bob").await;
                assert_eq!(delivered, 2);
                let for_bob = notification(&bob_id, "Hi", "for bob");
                let bob_event = expect_sse(&mut bob_sse, &for_bob).await;
                assert!(bob_event.number() > event.number());
                expect_ws(&mut bob_ws, &for_bob).await;
                // Nor did alice get bob's.
                alice_ws.fence().await;
                alice_ws2.fence().await;

                // A user with no connection: sent to no one, answered all the same.
                let (_, delivered) = notify(port, "carol", "Hey", "nobody home").await;
                assert_eq!(delivered, 0);
                for peer in [&mut alice_ws, &mut bob_ws] {
                    peer.fence().await;
                }
            });
        }

        #[test]
        fn an_empty_user_id_reaches_every_user() {
            rt::run(GUARD, async {
                let (_hub, _server, port) = start().await;
                let mut alice_ws = ws(port, "alice", "alice-ws").await;
                let mut alice_sse = sse(port, "alice", &[]).await;
                let mut bob_ws = ws(port, "bob", "bob-ws").await;
                let mut bob_sse = sse(port, "bob", &[]).await;

                let (id, delivered) = notify(port, "", "Maintenance", "at noon").await;
                assert_eq!(delivered, 4);
                let expected = notification(&id, "Maintenance", "at noon");
                let data = expect_ws(&mut alice_ws, &expected).await;
                assert_eq!(expect_ws(&mut bob_ws, &expected).await, data);
                let a = expect_sse(&mut alice_sse, &expected).await;
                let b = expect_sse(&mut bob_sse, &expected).await;
                assert_eq!(a, b, "one event, one id");
                assert_eq!(a.json(), data);
                // Once each.
                alice_ws.fence().await;
                bob_ws.fence().await;
                let (next, _) = notify(port, "alice", "again", "").await;
                expect_sse(&mut alice_sse, &notification(&next, "again", "")).await;
            });
        }

        #[test]
        fn ids_differ_and_timestamps_are_rfc3339() {
            rt::run(GUARD, async {
                let (_hub, _server, port) = start().await;
                let mut alice = sse(port, "alice", &[]).await;
                let mut ids = Vec::new();
                let mut event_ids = Vec::new();
                for n in 0..5 {
                    let title = format!("n{n}");
                    let (id, _) = notify(port, "alice", &title, "same body").await;
                    // expect_sse checks the timestamp.
                    let event = expect_sse(&mut alice, &notification(&id, &title, "same body")).await;
                    ids.push(id);
                    event_ids.push(event.number());
                }
                let mut unique = ids.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), ids.len(), "notification ids repeat: {ids:?}");
                assert!(event_ids.windows(2).all(|w| w[0] < w[1]), "{event_ids:?}");
            });
        }

        #[test]
        fn bad_requests_are_refused_and_reach_no_one() {
            rt::run(GUARD, async {
                let (_hub, _server, port) = start().await;
                let mut alice = ws(port, "alice", "alice").await;
                let long_user = "u".repeat(MAX_USER_ID_BYTES + 1);
                let bodies = [
                    "".to_owned(),
                    "not json".to_owned(),
                    "{\"user_id\":\"alice\",\"title\":\"t\",\"body\":\"b\"".to_owned(),
                    "[\"alice\",\"t\",\"b\"]".to_owned(),
                    "{}".to_owned(),
                    json!({"user_id": "alice", "title": "t"}).to_string(),
                    json!({"user_id": "alice", "body": "b"}).to_string(),
                    json!({"title": "t", "body": "b"}).to_string(),
                    json!({"user_id": 7, "title": "t", "body": "b"}).to_string(),
                    json!({"user_id": "alice", "title": null, "body": "b"}).to_string(),
                    json!({"user_id": long_user, "title": "t", "body": "b"}).to_string(),
                    json!({"user_id": "alice", "title": "t".repeat(257), "body": "b"}).to_string(),
                    json!({"user_id": "alice", "title": "t", "body": "b".repeat(4097)}).to_string(),
                ];
                for body in &bodies {
                    let (status, answer) = post(port, body.as_bytes()).await;
                    assert_eq!(status, 400, "{body}: {answer}");
                    assert!(answer["error"].is_string(), "{body}: {answer}");
                }
                for method in ["GET", "PUT", "DELETE"] {
                    let (head, _) =
                        HttpClient::send(port, method, "/api/notify", &[], b"").await.text().await;
                    assert_eq!(head.status, 405, "{method}");
                    assert_eq!(head.header("allow"), Some("POST"));
                }
                // None of them reached alice.
                alice.fence().await;
                // Unknown fields are ignored; the longest values pass.
                let longest = json!({
                    "user_id": "alice", "title": "t".repeat(256), "body": "b".repeat(4096), "x": 1
                });
                let (status, answer) = post(port, longest.to_string().as_bytes()).await;
                assert_eq!(status, 200, "{answer}");
                let id = answer["id"].as_str().expect("id");
                expect_ws(&mut alice, &notification(id, &"t".repeat(256), &"b".repeat(4096))).await;
                alice.fence().await;
            });
        }

        #[test]
        fn subscribing_needs_a_user_id_of_bounded_length() {
            rt::run(GUARD, async {
                let (hub, _server, port) = start().await;
                let long = "u".repeat(MAX_USER_ID_BYTES + 1);
                let longest = "é".repeat(MAX_USER_ID_BYTES / 2);
                let long_query = format!("?user_id={long}");
                for query in ["", "?user_id=", "?user=alice", long_query.as_str()] {
                    let url = format!("ws://127.0.0.1:{port}/ws/notifications{query}");
                    match $connect(url).await {
                        Err(tungstenite::Error::Http(response)) => {
                            assert_eq!(response.status().as_u16(), 400, "{query}")
                        }
                        other => panic!("{query}: expected 400, got {:?}", other.map(|(_, r)| r)),
                    }
                    let (head, _) = HttpClient::get(port, &format!("/events{query}"), &[])
                        .await
                        .text()
                        .await;
                    assert_eq!(head.status, 400, "SSE {query}");
                }
                assert_eq!(hub.client_count(), 0);
                // At the bound (bytes, percent-encoded), and with `+` for a space: accepted.
                let encoded: String = longest.bytes().map(|b| format!("%{b:02X}")).collect();
                let mut at_bound = ws(port, &encoded, "at-bound").await;
                let mut spaced = sse(port, "a+b", &[]).await;
                let (id, delivered) = notify(port, &longest, "t", "b").await;
                assert_eq!(delivered, 1);
                expect_ws(&mut at_bound, &notification(&id, "t", "b")).await;
                let (id, _) = notify(port, "a b", "t", "b").await;
                expect_sse(&mut spaced, &notification(&id, "t", "b")).await;
                // Only GET subscribes.
                let (head, _) = HttpClient::send(port, "POST", "/events?user_id=a", &[], b"")
                    .await
                    .text()
                    .await;
                assert_eq!(head.status, 405);
                // The WebSocket expects nothing but ping: anything else is an error reply.
                at_bound.send_json(json!({"type": "subscribe", "id": 1})).await;
                at_bound
                    .expect(json!({
                        "type": "error",
                        "payload": {"message": "unknown message type: subscribe"},
                        "id": 1
                    }))
                    .await;
            });
        }

        #[test]
        fn an_sse_client_reconnecting_with_last_event_id_gets_what_it_missed() {
            rt::run(GUARD, async {
                let (_hub, _server, port) = start().await;
                let mut first = sse(port, "alice", &[]).await;
                let (id, _) = notify(port, "alice", "one", "").await;
                let seen = expect_sse(&mut first, &notification(&id, "one", "")).await;
                drop(first);

                // Missed while away: two for alice, one for everyone, and one for bob.
                let mut missed = Vec::new();
                for (user, title) in [("alice", "two"), ("alice", "three"), ("", "all"), ("bob", "bob's")] {
                    let (id, _) = notify(port, user, title, "").await;
                    if user != "bob" {
                        missed.push(notification(&id, title, ""));
                    }
                }
                let last = seen.id.clone().expect("an id");
                let mut back = sse(port, "alice", &[("Last-Event-ID", last.as_str())]).await;
                let mut ids = vec![seen.number()];
                for expected in &missed {
                    ids.push(expect_sse(&mut back, expected).await.number());
                }
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
                // Then live ones (and bob's was not replayed: this is next).
                let (id, _) = notify(port, "alice", "live", "").await;
                expect_sse(&mut back, &notification(&id, "live", "")).await;

                // Without Last-Event-ID nothing is replayed.
                let mut fresh = sse(port, "alice", &[]).await;
                let (id, _) = notify(port, "alice", "after", "").await;
                let expected = notification(&id, "after", "");
                expect_sse(&mut fresh, &expected).await;
                expect_sse(&mut back, &expected).await;
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
