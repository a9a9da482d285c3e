//! The hub's Server-Sent Events subscribers (`Hub::subscribe_sse`), on both runtimes: every test
//! is written once in `suite!` and expanded into `mod tokio_suite` and `mod smol_suite`.
//!
//! Most tests drive the subscriber's [`SseStream`] body directly (`BodyExt::frame`), no HTTP
//! server involved, and parse what it yields with an event-stream parser of their own
//! (`common/http_sse.rs`). WebSocket members are real clients of the server helper; the last
//! test runs SSE through the server helper over TCP as well.
//!
//! Nothing sleeps. A broadcast is queued to every subscriber before it returns, so what a body
//! can yield at once ([`Events::ready`], polled once without waiting) is everything that was
//! sent to it: "nothing arrived" is checked there, deterministically.

tidings_tests::runtime_shims!();

#[macro_use]
#[path = "common/http_sse.rs"]
mod http_sse;

#[path = "common/removals.rs"]
mod removals;

/// A subscriber's stream driven as an HTTP body, runtime-neutral.
#[path = "common/sse_events.rs"]
mod body;

macro_rules! suite {
    () => {
        use std::time::Duration;

        use bytes::Bytes;
        use http::{HeaderMap, HeaderValue, Request, StatusCode};
        use serde_json::{Value, json};
        use smol::channel::{Receiver, unbounded};

        use rt::ws::WebSocket;
        use rt::ws::hub::{
            Admission, Client, Hub, HubConfig, HubError, Message, SseConfig, SseSubscription,
            UpgradeRequest, handler_fn,
        };
        use rt::ws::server::{IntoResponse, Route, Server, ServerHandle, ShutdownReport};

        use crate::body::Events;
        use crate::http_sse::SseEvent;
        use crate::removals::Removals;

        const GUARD: Duration = Duration::from_secs(30);

        http_client!();

        // ---- harness ----------------------------------------------------------------------------

        /// The rooms a WebSocket client joins on connect (`?rooms=a,b`).
        struct Rooms(Vec<String>);

        fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        }

        fn rooms_of(query: Option<&str>) -> Vec<String> {
            param(query, "rooms")
                .map(|rooms| rooms.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        }

        /// What a test waits on: the hub's hooks.
        struct Watch {
            connected: Receiver<Client>,
            /// Each disconnected client with the rooms it was in when the hook ran.
            disconnected: Receiver<(Client, Vec<String>)>,
            /// Each client that has left its rooms and the hub (after its disconnect hook).
            removed: Receiver<rt::ws::hub::ClientId>,
        }

        impl Watch {
            /// Waits for the connect hook of `id` (a WebSocket client has joined its rooms then).
            async fn connected(&self, id: &str) -> Client {
                loop {
                    let client = self.connected.recv().await.expect("on_connect channel");
                    if client.id() == id {
                        return client;
                    }
                }
            }

            /// Waits for the disconnect hook of `id`; the client and its rooms at that moment.
            async fn disconnected(&self, id: &str) -> (Client, Vec<String>) {
                loop {
                    let seen = self.disconnected.recv().await.expect("on_disconnect channel");
                    if seen.0.id() == id {
                        return seen;
                    }
                }
            }

            /// Waits until `id` has left its rooms and the hub.
            async fn removed(&self, id: &str) {
                while self.removed.recv().await.expect("backend channel") != id {}
            }
        }

        /// A hub with `config` whose hooks report to the returned [`Watch`]; a WebSocket client
        /// joins the rooms of its [`Rooms`] data on connect.
        fn watched(config: HubConfig) -> (Hub, Watch) {
            let (connect_tx, connected) = unbounded();
            let (disconnect_tx, disconnected) = unbounded();
            let (removed_tx, removed) = unbounded();
            let hub = Hub::builder()
                .config(config)
                .backend(Removals(removed_tx))
                .on_connect(move |client| {
                    if let Some(Rooms(rooms)) = client.data::<Rooms>() {
                        for room in rooms {
                            client.join(room).expect("join");
                        }
                    }
                    let _ = connect_tx.try_send(client.clone());
                })
                .on_disconnect(move |client| {
                    let _ = disconnect_tx.try_send((client.clone(), client.rooms()));
                })
                .build();
            let watch = Watch {
                connected,
                disconnected,
                removed,
            };
            (hub, watch)
        }

        /// A subscription to `rooms`.
        fn to(rooms: &[&str]) -> SseSubscription {
            SseSubscription::new().rooms(rooms.iter().copied())
        }

        /// Subscribes on this runtime.
        fn subscribe(hub: &Hub, subscription: SseSubscription) -> Events {
            Events::new(
                hub.subscribe_sse(rt::ws::runtime(), subscription)
                    .expect("subscribe_sse"),
            )
        }

        /// The server helper with the hub's WebSocket route at `/ws` (`?id=…&rooms=a,b`) and
        /// an SSE route at `/events` (`?id=…&rooms=a,b`, `Last-Event-ID`, heartbeat 50 ms).
        struct Running {
            port: u16,
            handle: ServerHandle,
            task: rt::Join<ShutdownReport>,
        }

        impl Running {
            async fn stop(self) -> ShutdownReport {
                self.handle.shutdown();
                self.task.await
            }
        }

        async fn start(hub: &Hub) -> Running {
            let ws = hub.route(|req: &UpgradeRequest<'_>| {
                let id = param(req.query(), "id").expect("an id").to_owned();
                let quiet = handler_fn(|_client: Client, _message: Message| async { Ok(()) });
                Ok(Admission::new(quiet).id(id).data(Rooms(rooms_of(req.query()))))
            });
            let sse_hub = hub.clone();
            let events = Route::http(move |req: Request<Bytes>| {
                let query = req.uri().query();
                let mut subscription = SseSubscription::new()
                    .rooms(rooms_of(query))
                    .last_event_id_from(req.headers())
                    .config(SseConfig::default().heartbeat(Some(Duration::from_millis(50))));
                if let Some(id) = param(query, "id") {
                    subscription = subscription.id(id);
                }
                let response = match sse_hub.subscribe_sse(rt::ws::runtime(), subscription) {
                    Ok(stream) => IntoResponse::into_response(stream.into_response()),
                    Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
                };
                async move { response }
            });
            let listening = Server::new()
                .route("/ws", ws)
                .route("/events", events)
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            Running {
                port: listening.local_addr().port(),
                handle: listening.handle(),
                task: rt::spawn(listening.serve()),
            }
        }

        /// A WebSocket client `id` in `rooms` (`a,b`), once the hub has registered it.
        async fn ws_member(server: &Running, watch: &Watch, id: &str, rooms: &str) -> WebSocket {
            let url = format!("ws://127.0.0.1:{}/ws?id={id}&rooms={rooms}", server.port);
            let ws = rt::ws::connect(&url).await.expect("connect");
            watch.connected(id).await;
            ws
        }

        async fn next_message(ws: &mut WebSocket) -> Message {
            match ws.recv().await {
                Some(Ok(message)) => message,
                other => panic!("expected a message, got {other:?}"),
            }
        }

        async fn next_json(ws: &mut WebSocket) -> Value {
            match next_message(ws).await {
                Message::Text(text) => serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}")),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        /// The ids of `events`, as numbers.
        fn ids(events: &[SseEvent]) -> Vec<u64> {
            events.iter().map(SseEvent::number).collect()
        }

        fn assert_increasing(ids: &[u64], who: &str) {
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "{who}: ids not strictly increasing: {ids:?}"
            );
        }

        /// Sends the event `e` with `{"seq":seq}` to `room`.
        fn numbered(hub: &Hub, room: &str, seq: u64) -> usize {
            hub.to_room(room)
                .event("e", &json!({ "seq": seq }))
                .expect("broadcast")
        }

        fn seq_of(event: &SseEvent) -> u64 {
            event.json()["seq"].as_u64().expect("a seq")
        }

        // ---- one room, two formats --------------------------------------------------------------

        #[test]
        fn websocket_and_sse_members_of_a_room_get_the_same_event() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(&hub).await;
                let mut ws = ws_member(&server, &watch, "w", "r").await;
                let mut sse = subscribe(&hub, to(&["r"]).id("s"));
                let mut outsider = subscribe(&hub, to(&["elsewhere"]));

                let data = json!({"n": 1, "text": "two\nlines", "list": [1, 2]});
                assert_eq!(hub.to_room("r").event("news", &data).expect("event"), 2);
                assert_eq!(next_json(&mut ws).await, json!({"type": "news", "data": data}));
                let event = sse.next().await;
                assert_eq!(event.event, "news");
                assert_eq!(event.data, data.to_string(), "the data is the JSON, on one line");
                let first = event.number();

                let more = json!(["a", {"b": null}]);
                assert_eq!(hub.to_room("r").event("more", &more).expect("event"), 2);
                assert_eq!(next_json(&mut ws).await, json!({"type": "more", "data": more}));
                let event = sse.next().await;
                assert_eq!((event.event.as_str(), event.json()), ("more", more));
                assert!(event.number() > first);

                sse.assert_nothing_queued("the SSE member");
                outsider.assert_nothing_queued("a subscriber of another room");
                assert_eq!(sse.retry(), None, "no retry: unless configured");
                drop(ws);
                server.stop().await;
            });
        }

        #[test]
        fn text_broadcasts_reach_sse_as_data_and_binary_ones_skip_it() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(&hub).await;
                let mut ws = ws_member(&server, &watch, "w", "r").await;
                let mut sse = subscribe(&hub, to(&["r"]));

                assert_eq!(hub.to_room("r").text("hello\nworld").expect("text"), 2);
                assert_eq!(next_message(&mut ws).await, Message::text("hello\nworld"));
                let event = sse.next().await;
                assert_eq!((event.event.as_str(), event.data.as_str()), ("message", "hello\nworld"));
                let mut last = event.number();

                // Empty text and a trailing line break come back exactly.
                for text in ["", "ends in a line break\n", "\r\nCRLF"] {
                    hub.to_room("r").text(text).expect("text");
                    assert_eq!(next_message(&mut ws).await, Message::text(text));
                    let event = sse.next().await;
                    let expected = text.replace("\r\n", "\n");
                    assert_eq!((event.event.as_str(), event.data.as_str()), ("message", expected.as_str()));
                    assert!(event.number() > last);
                    last = event.number();
                }

                // Binary: the WebSocket member only; the SSE member is not counted.
                assert_eq!(hub.to_room("r").binary(vec![1u8, 2, 3]).expect("binary"), 1);
                assert_eq!(next_message(&mut ws).await, Message::binary(vec![1u8, 2, 3]));
                sse.assert_nothing_queued("the SSE member, after a binary broadcast");

                // JSON text is text.
                assert_eq!(hub.to_room("r").json(&json!({"k": 1})).expect("json"), 2);
                let event = sse.next().await;
                assert_eq!((event.event.as_str(), event.data.as_str()), ("message", r#"{"k":1}"#));
                assert!(event.number() > last);
                last = event.number();

                // A broadcast to every client reaches SSE clients too, numbered.
                assert_eq!(hub.to_all().text("to all").expect("to all"), 2);
                let event = sse.next().await;
                assert_eq!(event.data, "to all");
                assert!(event.number() > last);
                assert_eq!(next_message(&mut ws).await, Message::text(r#"{"k":1}"#));
                assert_eq!(next_message(&mut ws).await, Message::text("to all"));

                // Sent to the SSE client alone: text and events go, binary and frames do not.
                let client = sse.stream.client().clone();
                assert!(client.is_sse());
                client.send_text("just you").expect("send_text");
                client.send_event("hi", &json!({"x": 1})).expect("send_event");
                assert!(matches!(
                    client.send_binary(vec![0u8]),
                    Err(HubError::NotSupported(_))
                ));
                let events = sse.ready();
                assert_eq!(events.len(), 2, "{events:?}");
                assert_eq!((events[0].event.as_str(), events[0].data.as_str()), ("message", "just you"));
                assert_eq!((events[1].event.as_str(), events[1].json()), ("hi", json!({"x": 1})));
                drop(ws);
                server.stop().await;
            });
        }

        // ---- membership -------------------------------------------------------------------------

        #[test]
        fn client_count_includes_sse_clients_and_a_dropped_stream_leaves_the_hub() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(&hub).await;
                let mut ws = ws_member(&server, &watch, "w", "r").await;
                let a = subscribe(&hub, to(&["r"]).id("a"));
                let b = subscribe(&hub, to(&["r", "s"]).id("b").data(42u32));
                // The connect hook ran for each, in its rooms.
                assert_eq!(watch.connected("a").await.rooms(), ["r"]);
                let seen_b = watch.connected("b").await;
                assert_eq!(seen_b.rooms(), ["r", "s"]);
                assert_eq!(seen_b.data::<u32>(), Some(&42));

                assert_eq!(hub.client_count(), 3);
                assert_eq!(hub.room_size("r"), 3);
                assert_eq!(hub.room_size("s"), 1);
                assert!(hub.client("a").expect("a").is_sse());
                assert!(!hub.client("w").expect("w").is_sse());
                let b_client = b.stream.client().clone();
                assert!(b_client.is_connected());

                // Dropping the body (what the HTTP server does when the client goes away) runs
                // the disconnect hook, the client still in its rooms, then it leaves.
                drop(b);
                let (gone, rooms) = watch.disconnected("b").await;
                assert_eq!(gone.id(), "b");
                assert_eq!(rooms, ["r", "s"]);
                assert_eq!(hub.client_count(), 2);
                assert!(hub.client("b").is_none());
                assert_eq!(hub.room_size("r"), 2);
                assert!(!hub.has_room("s"), "the emptied room went away");
                assert!(!b_client.is_connected());
                assert_eq!(hub.to_room("r").text("x").expect("text"), 2);

                drop(a);
                watch.disconnected("a").await;
                assert_eq!(hub.client_count(), 1);
                assert_eq!(next_message(&mut ws).await, Message::text("x"));
                ws.close(rt::ws::CloseCode::NORMAL, "").await.expect("close");
                while let Some(Ok(_)) = ws.recv().await {}
                hub.idle().await;
                assert_eq!(hub.client_count(), 0);
                server.stop().await;
            });
        }

        #[test]
        fn an_sse_subscriber_with_the_id_of_a_connected_client_is_refused() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(&hub).await;
                let _ws = ws_member(&server, &watch, "w", "r").await;
                let mut s = subscribe(&hub, to(&["r"]).id("s"));
                watch.connected("s").await;
                for taken in ["s", "w"] {
                    match hub.subscribe_sse(rt::ws::runtime(), to(&["r"]).id(taken)) {
                        Err(HubError::DuplicateClient(id)) => assert_eq!(id, taken),
                        other => panic!("{taken}: expected DuplicateClient, got {other:?}"),
                    }
                }
                assert_eq!(hub.client_count(), 2);
                assert_eq!(hub.room_size("r"), 2);
                // The refused ones ran no hooks, and the first `s` is untouched.
                assert!(watch.connected.try_recv().is_err(), "no connect hook for a refusal");
                assert!(watch.disconnected.try_recv().is_err());
                assert_eq!(hub.to_room("r").text("still here").expect("text"), 2);
                assert_eq!(s.next().await.data, "still here");

                // A WebSocket with the SSE client's id is upgraded, then closed with 1008.
                let url = format!("ws://127.0.0.1:{}/ws?id=s&rooms=r", server.port);
                let mut twin = rt::ws::connect(&url).await.expect("connect");
                while let Some(Ok(_)) = twin.recv().await {}
                let outcome = twin.close_outcome().expect("closed");
                assert_eq!(u16::from(outcome.code), 1008, "{outcome:?}");
                assert!(hub.client("s").expect("s").is_sse());

                // Once the stream is dropped the id is free again.
                drop(s);
                watch.disconnected("s").await;
                watch.removed("s").await;
                let _again = subscribe(&hub, to(&["r"]).id("s"));
                assert_eq!(hub.client_count(), 2);

                // A closed hub takes no subscribers.
                hub.close();
                assert!(matches!(
                    hub.subscribe_sse(rt::ws::runtime(), to(&["r"])),
                    Err(HubError::HubClosed)
                ));
                server.stop().await;
            });
        }

        #[test]
        fn closing_the_hub_ends_sse_streams_after_what_was_queued() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let mut sse = subscribe(&hub, to(&["r"]));
                numbered(&hub, "r", 1);
                numbered(&hub, "r", 2);
                assert_eq!(hub.close(), 1);
                let events = sse.ready();
                assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), [1, 2]);
                assert!(sse.is_ended(), "the stream ends after the queued events");
                drop(sse);
                assert_eq!(hub.client_count(), 0);
            });
        }

        #[test]
        fn a_subscriber_whose_queue_is_full_is_ended_after_what_was_queued() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let mut slow = subscribe(
                    &hub,
                    to(&["r"]).config(SseConfig::default().queue_events(2)),
                );
                let mut fast = subscribe(&hub, to(&["r"]));
                assert_eq!(numbered(&hub, "r", 1), 2);
                assert_eq!(numbered(&hub, "r", 2), 2);
                // The third does not fit: not counted, and the slow stream ends after 1 and 2.
                assert_eq!(numbered(&hub, "r", 3), 1);
                let events = slow.ready();
                assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), [1, 2]);
                assert!(slow.is_ended());
                assert!(!slow.stream.client().is_connected());
                let events = fast.ready();
                assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), [1, 2, 3]);
                drop(slow);
                assert_eq!(hub.client_count(), 1);
            });
        }

        // ---- ids and history --------------------------------------------------------------------

        #[test]
        fn last_event_id_replays_what_was_missed_then_live_events() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default().history(100));
                // Sent while nobody listened: kept all the same.
                numbered(&hub, "r", 1);
                numbered(&hub, "r", 2);
                numbered(&hub, "other", 100);
                let mut live = subscribe(&hub, to(&["r"]).last_event_id(Some("0")));
                for seq in 3..=6 {
                    assert_eq!(numbered(&hub, "r", seq), 1);
                }
                let seen = live.ready();
                assert_eq!(seen.iter().map(seq_of).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
                assert_increasing(&ids(&seen), "live");

                // Reconnecting after the event with seq 3: gets 4, 5, 6, the very same events.
                let k = 2;
                let mut late = subscribe(
                    &hub,
                    to(&["r"]).last_event_id(seen[k].id.as_deref()),
                );
                assert_eq!(late.ready(), seen[k + 1..]);
                // From the request's headers alike (with surrounding space).
                let mut headers = HeaderMap::new();
                let value = format!(" {} ", seen[k].number());
                headers.insert("last-event-id", HeaderValue::from_str(&value).expect("value"));
                let mut from_headers = subscribe(&hub, to(&["r"]).last_event_id_from(&headers));
                assert_eq!(from_headers.ready(), seen[k + 1..]);

                // Then live ones, with one id for all.
                assert_eq!(numbered(&hub, "r", 7), 3);
                let seven = live.next().await;
                assert_eq!(seq_of(&seven), 7);
                assert_eq!(late.next().await, seven);
                assert_eq!(from_headers.next().await, seven);

                // No Last-Event-ID, an id not yet given, or not an id at all: nothing replayed.
                let last = seven.number().to_string();
                let future = (seven.number() + 10).to_string();
                for value in [None, Some(last.as_str()), Some(future.as_str()), Some("x7")] {
                    let mut fresh = subscribe(&hub, to(&["r"]).last_event_id(value));
                    fresh.assert_nothing_queued(&format!("a subscriber with {value:?}"));
                }
                live.assert_nothing_queued("live");
                late.assert_nothing_queued("late");
            });
        }

        #[test]
        fn replay_from_a_history_that_wrapped_gets_only_the_last_events() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default().history(3));
                let mut live = subscribe(&hub, to(&["r"]));
                for seq in 1..=10 {
                    numbered(&hub, "r", seq);
                }
                let seen = live.ready();
                assert_eq!(seen.len(), 10);
                // Last-Event-ID of event 2: 3..=10 were missed, the history holds 8, 9, 10.
                let mut late = subscribe(&hub, to(&["r"]).last_event_id(seen[1].id.as_deref()));
                let replayed = late.ready();
                assert_eq!(replayed, seen[7..], "the last 3 only");
                numbered(&hub, "r", 11);
                let eleven = late.next().await;
                assert_eq!(seq_of(&eleven), 11);
                assert_eq!(live.next().await, eleven);
            });
        }

        #[test]
        fn event_ids_strictly_increase_in_every_room() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default().history(1000));
                let roomy = SseConfig::default().queue_events(10_000);
                let mut only_1 = subscribe(&hub, to(&["r1"]).config(roomy));
                let mut only_2 = subscribe(&hub, to(&["r2"]).config(roomy));
                let mut both = subscribe(&hub, to(&["r1", "r2"]).config(roomy));
                const SENDERS: u64 = 4;
                const EACH: u64 = 100;
                // Concurrent senders, to one room, the other, both, and everyone.
                std::thread::scope(|scope| {
                    for sender in 0..SENDERS {
                        let hub = hub.clone();
                        scope.spawn(move || {
                            for seq in 0..EACH {
                                let data = json!({"sender": sender, "seq": seq});
                                let _ = match seq % 4 {
                                    0 => hub.to_room("r1").event("e", &data),
                                    1 => hub.to_room("r2").event("e", &data),
                                    2 => hub.to_rooms(["r1", "r2"]).event("e", &data),
                                    _ => hub.to_all().event("e", &data),
                                }
                                .expect("broadcast");
                            }
                        });
                    }
                });
                let per_kind = SENDERS * EACH / 4;
                for (events, name, expected) in [
                    (only_1.ready(), "r1", 3 * per_kind),
                    (only_2.ready(), "r2", 3 * per_kind),
                    (both.ready(), "both", 4 * per_kind),
                ] {
                    assert_eq!(events.len() as u64, expected, "{name}");
                    assert_increasing(&ids(&events), name);
                    // Each sender's events in the order it sent them, each once.
                    for sender in 0..SENDERS {
                        let seqs: Vec<u64> = events
                            .iter()
                            .map(SseEvent::json)
                            .filter(|d| d["sender"] == sender)
                            .map(|d| d["seq"].as_u64().expect("seq"))
                            .collect();
                        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: {seqs:?}");
                    }
                }
                // The histories hold the same ids, in order.
                for (room, name) in [("r1", "r1 replay"), ("r2", "r2 replay")] {
                    let mut replay = subscribe(
                        &hub,
                        to(&[room]).last_event_id(Some("0")).config(roomy),
                    );
                    let events = replay.ready();
                    assert_eq!(events.len() as u64, 2 * per_kind, "{name}: to_all is not kept");
                    assert_increasing(&ids(&events), name);
                }
            });
        }

        #[test]
        fn a_broadcast_to_two_rooms_of_a_subscriber_arrives_once_with_one_id() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default().history(10));
                let mut in_both = subscribe(&hub, to(&["a", "b"]));
                let mut in_b = subscribe(&hub, to(&["b"]));
                assert_eq!(hub.to_rooms(["a", "b"]).event("x", &json!(1)).expect("to_rooms"), 2);
                let both_got = in_both.ready();
                assert_eq!(both_got.len(), 1, "{both_got:?}");
                let b_got = in_b.ready();
                assert_eq!(b_got, both_got, "the same event, with the same id");
                // Kept in both rooms' histories, replayed once.
                let mut late = subscribe(&hub, to(&["a", "b"]).last_event_id(Some("0")));
                assert_eq!(late.ready(), both_got);
                let mut late_a = subscribe(&hub, to(&["a"]).last_event_id(Some("0")));
                assert_eq!(late_a.ready(), both_got);
            });
        }

        // ---- through the server helper ----------------------------------------------------------

        #[test]
        fn over_http_a_subscriber_is_a_client_until_its_connection_goes() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default().history(10));
                let server = start(&hub).await;
                let mut sse = HttpClient::get(server.port, "/events?id=t&rooms=r", &[]).await;
                let head = sse.head().await;
                assert_eq!(head.status, 200);
                assert_eq!(head.media_type(), Some("text/event-stream"));
                assert_eq!(head.header("cache-control"), Some("no-cache"));
                // Subscribed by the time the head arrives.
                assert!(hub.client("t").expect("t").is_sse());

                hub.to_room("r").event("e", &json!({"n": 1})).expect("event");
                let first = sse.event().await;
                assert_eq!((first.event.as_str(), first.json()), ("e", json!({"n": 1})));
                hub.to_room("r").text("two").expect("text");
                let second = sse.event().await;
                assert_eq!(second.data, "two");

                // The client goes: the next heartbeat's write fails, the server drops the body.
                drop(sse);
                let (_, rooms) = watch.disconnected("t").await;
                assert_eq!(rooms, ["r"]);
                watch.removed("t").await;
                assert!(hub.client("t").is_none());
                assert_eq!(hub.client_count(), 0);

                // Reconnecting with Last-Event-ID gets what came after it.
                hub.to_room("r").text("three").expect("text");
                let last = first.number().to_string();
                let mut again = HttpClient::get(
                    server.port,
                    "/events?id=t&rooms=r",
                    &[("Last-Event-ID", last.as_str())],
                )
                .await;
                assert_eq!(again.head().await.status, 200);
                assert_eq!(again.event().await, second);
                assert_eq!(again.event().await.data, "three");

                // A duplicate id is refused by this route with 409.
                let (head, _) = HttpClient::get(server.port, "/events?id=t&rooms=r", &[])
                    .await
                    .text()
                    .await;
                assert_eq!(head.status, 409);

                // Closing the hub ends the stream (the last chunk is written).
                hub.to_room("r").text("four").expect("text");
                hub.close();
                let rest = again.until_end().await;
                assert_eq!(rest.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["four"]);
                assert!(again.response.is_ended(), "the chunked body ended cleanly");
                watch.disconnected("t").await;
                server.stop().await;
            });
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;
    suite!();
}

mod smol_suite {
    use super::smol_rt as rt;
    suite!();
}
