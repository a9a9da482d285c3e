//! The hub (`tidings-hub`) over real loopback sockets, on both runtimes: every test is written
//! once in `suite!` and expanded into `mod tokio_suite` and `mod smol_suite`.
//!
//! Nothing sleeps to synchronise: tests wait on events (a message, the hub going idle, a hook
//! firing, the backend hearing of a removal), each bounded by the test's overall timeout. Timers
//! appear only as the behaviour under test (the close timeout that ends a slow client, a
//! keepalive ping).
//!
//! Most tests run the hub behind the adapters' server helper with [`Hub::route`]; the factory
//! takes the client's ID from the `id` query parameter, so that a test can name the client it
//! connects and find it with `hub.client(id)`. Registration is awaited through the hub's
//! `on_connect` hook; a client's removal through the backend's `Presence::Disconnected`, which
//! is reported after the client left its rooms and the table (the `on_disconnect` hooks run
//! before that, while it is still in its rooms).

tidings_tests::runtime_shims!();

#[path = "common/removals.rs"]
mod removals;

macro_rules! suite {
    () => {
        use std::collections::{BTreeMap, HashSet};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use futures_util::future::{join, join_all};
        use serde_json::{Value, json};
        use smol::channel::{Receiver, Sender, unbounded};
        use tidings_core::OpCode;
        use tidings_tests::adapter_suite::{binary_payload, text_payload};
        use tidings_tests::op;

        use rt::ws::hub::{
            Admission, Backend, Broadcast, Client, ClientId, ClientOptions, Envelope, Handler,
            HandlerError, Hub, HubConfig, HubError, Message, Node, Presence, Router, handler_fn,
        };
        use rt::ws::server::{Server, ServerHandle, ShutdownReport, WebSocketRoute};
        use rt::ws::{
            CloseCode, Config, ConnectOptions, EncodedFrame, Event, OutboxError, OutboxLimits,
            UpgradeRequest, WebSocket,
        };

        const GUARD: Duration = Duration::from_secs(30);

        // ---- harness ----------------------------------------------------------------------------

        use crate::removals::Removals;

        /// What a test waits on: the hub's hooks, and the removals its backend hears of.
        struct Watch {
            connected: Receiver<Client>,
            disconnected: Receiver<Client>,
            errors: Receiver<(ClientId, String)>,
            removed: Receiver<ClientId>,
        }

        impl Watch {
            /// The next client the hub registered.
            async fn connected(&self) -> Client {
                self.connected.recv().await.expect("on_connect channel")
            }

            /// Waits for the `on_disconnect` hook to fire for `id`; the client as the hook saw it.
            async fn disconnected(&self, id: &str) -> Client {
                loop {
                    let client = self.disconnected.recv().await.expect("on_disconnect channel");
                    if client.id() == id {
                        return client;
                    }
                }
            }

            /// Waits until `id` has left its rooms and the hub.
            async fn removed(&self, id: &str) {
                while self.removed.recv().await.expect("backend channel") != id {}
            }

            /// The next error the `on_error` hook saw: the client's ID and the error's text.
            async fn error(&self) -> (ClientId, String) {
                self.errors.recv().await.expect("on_error channel")
            }
        }

        /// A hub with `config` whose hooks and backend report to the returned [`Watch`].
        fn watched(config: HubConfig) -> (Hub, Watch) {
            let (connect_tx, connected) = unbounded();
            let (disconnect_tx, disconnected) = unbounded();
            let (error_tx, errors) = unbounded();
            let (removed_tx, removed) = unbounded();
            let hub = Hub::builder()
                .config(config)
                .backend(Removals(removed_tx))
                .on_connect(move |client| {
                    let _ = connect_tx.try_send(client.clone());
                })
                .on_disconnect(move |client| {
                    let _ = disconnect_tx.try_send(client.clone());
                })
                .on_error(move |client, error| {
                    let _ = error_tx.try_send((client.id().clone(), error.to_string()));
                })
                .build();
            let watch = Watch {
                connected,
                disconnected,
                errors,
                removed,
            };
            (hub, watch)
        }

        /// The value of query parameter `name` in the upgrade request.
        fn query_param<'a>(req: &UpgradeRequest<'a>, name: &str) -> Option<&'a str> {
            req.query()?
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        }

        /// A route of `hub` running a handler from `make` for each connection, with the client
        /// ID from the `id` query parameter (generated when absent).
        fn route_with<H, F>(hub: &Hub, make: F) -> WebSocketRoute
        where
            H: Handler,
            F: Fn() -> H + Send + Sync + 'static,
        {
            hub.route(move |req: &UpgradeRequest<'_>| {
                let admission = Admission::new(make());
                Ok(match query_param(req, "id") {
                    Some(id) => admission.id(id),
                    None => admission,
                })
            })
        }

        /// A route whose clients' messages are ignored.
        fn quiet_route(hub: &Hub) -> WebSocketRoute {
            route_with(hub, || handler_fn(|_client: Client, _message: Message| async { Ok(()) }))
        }

        /// A route that echoes each client's messages back to it.
        fn echo_route(hub: &Hub) -> WebSocketRoute {
            route_with(hub, || {
                handler_fn(|client: Client, message: Message| async move {
                    client.send(message)?;
                    Ok(())
                })
            })
        }

        /// A running server helper with one route at `/ws`.
        struct Running {
            url: String,
            port: u16,
            handle: ServerHandle,
            task: rt::Join<ShutdownReport>,
        }

        impl Running {
            /// The URL of the route with a query.
            fn at(&self, query: &str) -> String {
                format!("{}?{query}", self.url)
            }

            /// Shuts the server down and waits for it: what a test started, it stops.
            async fn stop(self) -> ShutdownReport {
                self.handle.shutdown();
                self.task.await
            }
        }

        async fn start(route: WebSocketRoute, config: Config) -> Running {
            let listening = Server::new()
                .config(config)
                .route("/ws", route)
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listening.local_addr().port();
            Running {
                url: format!("ws://127.0.0.1:{port}/ws"),
                port,
                handle: listening.handle(),
                task: rt::spawn(listening.serve()),
            }
        }

        /// Connects as client `id` and waits until the hub has registered it.
        async fn connect_as(server: &Running, watch: &Watch, id: &str) -> WebSocket {
            connect_as_with(server, watch, id, "").await
        }

        /// [`connect_as`] with more query parameters (`&name=value…`).
        async fn connect_as_with(
            server: &Running,
            watch: &Watch,
            id: &str,
            more: &str,
        ) -> WebSocket {
            let ws = rt::ws::connect(&server.at(&format!("id={id}{more}")))
                .await
                .expect("connect");
            let client = watch.connected().await;
            assert_eq!(client.id(), id, "clients are connected one at a time");
            ws
        }

        fn client(hub: &Hub, id: &str) -> Client {
            hub.client(id)
                .unwrap_or_else(|| panic!("client {id} registered"))
        }

        fn ids(clients: &[Client]) -> Vec<String> {
            let mut ids: Vec<String> = clients.iter().map(|c| c.id().to_string()).collect();
            ids.sort();
            ids
        }

        async fn next_message(ws: &mut WebSocket) -> Message {
            match ws.recv().await {
                Some(Ok(message)) => message,
                other => panic!("expected a message, got {other:?}"),
            }
        }

        async fn next_text(ws: &mut WebSocket) -> String {
            match next_message(ws).await {
                Message::Text(text) => text.to_string(),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        async fn next_json(ws: &mut WebSocket) -> Value {
            let text = next_text(ws).await;
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
        }

        /// A message of `len` bytes whose first four carry `seq`.
        fn numbered(seq: u32, len: usize) -> Vec<u8> {
            let mut payload = binary_payload(len, seq as u8);
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            payload
        }

        fn seq_of(payload: &[u8]) -> u32 {
            u32::from_be_bytes(payload[..4].try_into().expect("four bytes"))
        }

        /// Broadcasts `marker` to every client and checks that it is the next message each of
        /// `sockets` receives: anything else sent to them and not read yet would come first.
        async fn only_marker_next(hub: &Hub, sockets: &mut [&mut WebSocket], marker: &str) {
            hub.to_all().text(marker.to_owned()).expect("marker broadcast");
            for ws in sockets.iter_mut() {
                assert_eq!(next_text(ws).await, marker);
            }
        }

        /// Reads until the connection ends (messages are discarded); its close outcome.
        async fn until_closed(ws: &mut WebSocket) -> rt::ws::CloseOutcome {
            while let Some(Ok(_)) = ws.recv().await {}
            ws.close_outcome().expect("the connection is over")
        }

        // ---- rooms and broadcasts ---------------------------------------------------------------

        #[test]
        fn broadcast_reaches_every_other_client_and_disconnects_clean_up() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let fanout = hub.clone();
                let route = route_with(&hub, move || {
                    let hub = fanout.clone();
                    handler_fn(move |client: Client, message: Message| {
                        let sent = hub.to_all().except(client.id()).send(message);
                        async move {
                            sent?;
                            Ok(())
                        }
                    })
                });
                let server = start(route, Config::default()).await;
                let mut a = connect_as(&server, &watch, "a").await;
                let mut b = connect_as(&server, &watch, "b").await;
                let mut c = connect_as(&server, &watch, "c").await;
                assert_eq!(hub.client_count(), 3);
                // All three are registered: each receives the other two's "hello".
                for ws in [&mut a, &mut b, &mut c] {
                    ws.send_text("hello").await.expect("send");
                }
                for ws in [&mut a, &mut b, &mut c] {
                    assert_eq!(next_text(ws).await, "hello");
                    assert_eq!(next_text(ws).await, "hello");
                }
                a.send_text("from a").await.expect("send");
                assert_eq!(next_text(&mut b).await, "from a");
                assert_eq!(next_text(&mut c).await, "from a");
                // a did not get its own: the next thing it reads is the marker.
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "marker").await;
                for mut ws in [a, b, c] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                hub.idle().await;
                assert_eq!(hub.client_count(), 0);
                server.stop().await;
            });
        }

        /// Join, leave, membership queries, room broadcasts, get-or-create, pinning, deletion,
        /// and empty unpinned rooms going away on their own.
        #[test]
        fn rooms_join_leave_broadcast_pin_delete_and_auto_delete() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(quiet_route(&hub), Config::default()).await;
                let mut a = connect_as(&server, &watch, "a").await;
                let mut b = connect_as(&server, &watch, "b").await;
                let mut c = connect_as(&server, &watch, "c").await;
                let (ca, cb, cc) = (client(&hub, "a"), client(&hub, "b"), client(&hub, "c"));
                assert!(hub.rooms().is_empty());
                assert!(hub.get_room("r").is_none());
                assert!(!hub.has_room("r"));
                assert_eq!(hub.room_size("r"), 0);

                // Joining creates the room; joining twice is not a second membership.
                assert!(ca.join("r").expect("join"));
                assert!(!ca.join("r").expect("join again"));
                assert!(cb.join("r").expect("join"));
                assert!(cc.join("s").expect("join"));
                assert!(ca.in_room("r") && !ca.in_room("s") && !cc.in_room("r"));
                assert_eq!(ca.rooms(), ["r"]);
                assert_eq!(cc.rooms(), ["s"]);
                assert_eq!(hub.rooms(), ["r", "s"]);
                assert!(hub.has_room("r"));
                let r = hub.get_room("r").expect("r exists");
                assert_eq!(r.name(), "r");
                assert_eq!(r.size(), 2);
                assert_eq!(hub.room_size("r"), 2);
                assert_eq!(ids(&r.clients()), ["a", "b"]);
                assert!(r.contains(ca.id()) && !r.contains(cc.id()));

                // A room broadcast reaches its members only.
                assert_eq!(hub.to_room("r").text("to r").expect("broadcast"), 2);
                assert_eq!(next_text(&mut a).await, "to r");
                assert_eq!(next_text(&mut b).await, "to r");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m1").await;

                // After leaving, a no longer receives r's broadcasts.
                assert!(ca.leave("r").expect("leave"));
                assert!(!ca.leave("r").expect("leave again"));
                assert!(!ca.in_room("r") && ca.rooms().is_empty());
                assert_eq!(r.size(), 1);
                assert_eq!(r.broadcast().text("after a left").expect("broadcast"), 1);
                assert_eq!(next_text(&mut b).await, "after a left");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m2").await;

                // The last member leaving deletes an unpinned room.
                assert!(r.leave(&cb));
                assert!(!r.exists() && !hub.has_room("r") && hub.get_room("r").is_none());
                assert_eq!(r.size(), 0);
                assert_eq!(hub.rooms(), ["s"]);
                match r.join(&ca) {
                    Err(HubError::RoomNotFound(name)) => assert_eq!(name, "r"),
                    other => panic!("joining a deleted room's handle: {other:?}"),
                }
                assert_eq!(hub.to_room("r").text("nobody").expect("broadcast"), 0);

                // `room` gets or creates; an empty room made this way exists until a member
                // leaves it empty.
                let lobby = hub.room("lobby").expect("create");
                assert!(lobby.exists() && !lobby.is_pinned());
                assert_eq!(lobby.size(), 0);
                assert_eq!(hub.rooms(), ["lobby", "s"]);
                assert!(lobby.join(&ca).expect("join"));
                assert_eq!(hub.room("lobby").expect("get").size(), 1, "not replaced");

                // Pinned, it survives being emptied; unpinned while empty, it goes at once.
                lobby.pin(true).expect("pin");
                assert!(lobby.is_pinned());
                assert!(ca.leave("lobby").expect("leave"));
                assert!(lobby.exists());
                assert_eq!(lobby.size(), 0);
                assert_eq!(hub.rooms(), ["lobby", "s"]);
                lobby.pin(false).expect("unpin");
                assert!(!lobby.exists());
                assert!(matches!(lobby.pin(true), Err(HubError::RoomNotFound(_))));

                // Deleting a room makes its members leave it.
                assert!(ca.join("s").expect("join"));
                assert_eq!(hub.delete_room("s").expect("delete"), 2);
                assert!(!cc.in_room("s") && cc.rooms().is_empty() && ca.rooms().is_empty());
                assert!(hub.rooms().is_empty());
                match hub.delete_room("s") {
                    Err(HubError::RoomNotFound(name)) => assert_eq!(name, "s"),
                    other => panic!("deleting twice: {other:?}"),
                }
                assert_eq!(hub.to_room("s").text("gone").expect("broadcast"), 0);
                let pinned = hub.room("p").expect("create");
                pinned.pin(true).expect("pin");
                assert!(cb.join("p").expect("join"));
                assert_eq!(pinned.delete().expect("delete a pinned room"), 1);
                assert!(!cb.in_room("p") && !pinned.exists());
                assert!(matches!(pinned.delete(), Err(HubError::RoomNotFound(_))));
                // None of the deleted rooms' broadcasts reached anyone.
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m3").await;

                // A member's disconnect takes it out of its rooms; the room goes with it.
                assert!(cc.join("solo").expect("join"));
                assert!(ca.join("pair").expect("join") && cc.join("pair").expect("join"));
                c.close(CloseCode::NORMAL, "").await.expect("close");
                watch.removed("c").await;
                assert!(!hub.has_room("solo"));
                assert_eq!(ids(&hub.get_room("pair").expect("pair").clients()), ["a"]);
                assert!(!cc.is_connected());
                assert!(matches!(cc.join("x"), Err(HubError::ConnectionClosed { .. })));
                assert!(!hub.has_room("x"), "a failed join creates no room");

                for mut ws in [a, b] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                hub.idle().await;
                assert!(hub.rooms().is_empty());
                server.stop().await;
            });
        }

        /// `to_all().except`, `to_room().except`, `broadcast_except`, and `to_rooms` delivering
        /// once to a client in several of the listed rooms.
        #[test]
        fn except_skips_the_sender_and_to_rooms_delivers_each_client_once() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(quiet_route(&hub), Config::default()).await;
                let mut a = connect_as(&server, &watch, "a").await;
                let mut b = connect_as(&server, &watch, "b").await;
                let mut c = connect_as(&server, &watch, "c").await;
                let (ca, cb, cc) = (client(&hub, "a"), client(&hub, "b"), client(&hub, "c"));
                for room in ["r1", "r2", "r3"] {
                    ca.join(room).expect("join");
                }
                cb.join("r2").expect("join");
                cc.join("r4").expect("join");

                assert_eq!(hub.to_all().except(ca.id()).text("all but a").expect("send"), 2);
                assert_eq!(next_text(&mut b).await, "all but a");
                assert_eq!(next_text(&mut c).await, "all but a");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m1").await;

                let except_b = hub.broadcast_except(Message::text("all but b"), cb.id());
                assert_eq!(except_b.expect("send"), 2);
                assert_eq!(next_text(&mut a).await, "all but b");
                assert_eq!(next_text(&mut c).await, "all but b");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m2").await;

                let sent = hub.to_room("r2").except(ca.id()).text("r2 but a");
                assert_eq!(sent.expect("send"), 1);
                assert_eq!(next_text(&mut b).await, "r2 but a");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m3").await;

                // a is in r1, r2 and r3, b in r2: one copy each; c (r4) none. A room that does
                // not exist adds nobody.
                let sent = hub.to_rooms(["r1", "r2", "r3", "nowhere"]).text("rooms");
                assert_eq!(sent.expect("send"), 2);
                assert_eq!(next_text(&mut a).await, "rooms");
                assert_eq!(next_text(&mut b).await, "rooms");
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m4").await;

                let sent = hub.to_rooms(vec!["r2".to_owned(), "r4".to_owned()]).except(cb.id());
                assert_eq!(sent.binary(vec![1u8, 2, 3]).expect("send"), 2);
                for ws in [&mut a, &mut c] {
                    assert_eq!(next_message(ws).await, Message::binary(vec![1u8, 2, 3]));
                }
                only_marker_next(&hub, &mut [&mut a, &mut b, &mut c], "m5").await;

                // Excepting a client that is not a recipient changes nothing.
                let sent = hub.to_room("r4").except(ca.id()).text("r4");
                assert_eq!(sent.expect("send"), 1);
                assert_eq!(next_text(&mut c).await, "r4");

                for mut ws in [a, b, c] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- disconnect cleanup -----------------------------------------------------------------

        /// Joins the rooms named in the request, then says "ready".
        struct Joiner {
            rooms: Vec<String>,
        }

        impl Handler for Joiner {
            async fn on_connect(&mut self, client: &Client) {
                for room in &self.rooms {
                    client.join(room).expect("join");
                }
                client.send_text("ready").expect("ready");
            }

            async fn on_message(
                &mut self,
                _client: &Client,
                _message: Message,
            ) -> Result<(), HandlerError> {
                Ok(())
            }
        }

        /// One connect/disconnect cycle: connects, waits until its rooms are joined, and ends
        /// the connection one of four ways.
        async fn cycle(port: u16, url: &str, i: usize) {
            let rooms = format!("common,r{},pinned", i % 10);
            let query = format!("rooms={rooms}");
            match i % 4 {
                // A clean close handshake.
                0 => {
                    let mut ws = rt::ws::connect(&format!("{url}?{query}"))
                        .await
                        .expect("connect");
                    assert_eq!(next_text(&mut ws).await, "ready");
                    let outcome = ws.close(CloseCode::NORMAL, "bye").await.expect("close");
                    assert!(outcome.clean, "{outcome:?}");
                }
                // The client drops its WebSocket: its driver closes with 1001.
                1 => {
                    let mut ws = rt::ws::connect(&format!("{url}?{query}"))
                        .await
                        .expect("connect");
                    assert_eq!(next_text(&mut ws).await, "ready");
                    drop(ws);
                }
                // TCP ends without a close frame.
                2 => {
                    let resource = format!("/ws?{query}");
                    let (mut raw, answer) = rt::Raw::client(port, &resource, &[]).await;
                    answer.expect("101");
                    assert_eq!(raw.expect_frame().await.payload, b"ready");
                    drop(raw);
                }
                // TCP ends in the middle of a frame.
                _ => {
                    let resource = format!("/ws?{query}");
                    let (mut raw, answer) = rt::Raw::client(port, &resource, &[]).await;
                    answer.expect("101");
                    assert_eq!(raw.expect_frame().await.payload, b"ready");
                    let frame = raw.frame(true, op::TEXT, b"never finished");
                    raw.send(&frame[..frame.len() / 2]).await;
                    drop(raw);
                }
            }
        }

        /// 1,000 clients connect, join rooms and leave (cleanly or not, eight at a time): none
        /// is left behind, nor any unpinned room, and each hook ran once per client.
        #[test]
        fn a_thousand_connect_disconnect_cycles_leave_no_client_and_no_room() {
            rt::run(GUARD, async {
                const CYCLES: usize = 1000;
                const AT_ONCE: usize = 8;
                let connects = Arc::new(AtomicUsize::new(0));
                let disconnects = Arc::new(AtomicUsize::new(0));
                let (on_connect, on_disconnect) = (connects.clone(), disconnects.clone());
                let hub = Hub::builder()
                    .on_connect(move |_| {
                        on_connect.fetch_add(1, Ordering::Relaxed);
                    })
                    .on_disconnect(move |_| {
                        on_disconnect.fetch_add(1, Ordering::Relaxed);
                    })
                    .build();
                hub.room("pinned").expect("room").pin(true).expect("pin");
                let route = hub.route(|req: &UpgradeRequest<'_>| {
                    let rooms = query_param(req, "rooms").unwrap_or_default();
                    Ok(Admission::new(Joiner {
                        rooms: rooms.split(',').map(str::to_owned).collect(),
                    }))
                });
                let server = start(route, Config::default()).await;
                let (port, url) = (server.port, server.url.clone());
                let workers = (0..AT_ONCE).map(|w| {
                    let url = url.clone();
                    async move {
                        for i in (w..CYCLES).step_by(AT_ONCE) {
                            cycle(port, &url, i).await;
                        }
                    }
                });
                join_all(workers).await;
                // Every client was registered (it read "ready"); the hub is idle once all left.
                hub.idle().await;
                assert_eq!(hub.client_count(), 0);
                assert!(hub.clients().is_empty());
                assert_eq!(hub.rooms(), ["pinned"]);
                assert_eq!(hub.get_room("pinned").expect("pinned").size(), 0);
                assert_eq!(connects.load(Ordering::Relaxed), CYCLES);
                assert_eq!(disconnects.load(Ordering::Relaxed), CYCLES);
                server.stop().await;
                assert_eq!(disconnects.load(Ordering::Relaxed), CYCLES);
            });
        }

        // ---- slow consumers and ordering --------------------------------------------------------

        /// A client that never reads is cut off (1008, through the close timeout since its close
        /// frame sits behind unread data) with its outbox never above the bound, while another
        /// client keeps receiving every broadcast in order.
        #[test]
        fn a_client_that_never_reads_is_cut_off_while_the_others_get_everything_in_order() {
            rt::run(GUARD, async {
                const BOUND: usize = 16;
                const SIZE: usize = 16 * 1024;
                let (hub, watch) = watched(HubConfig::default().outbox_messages(BOUND));
                assert_eq!(hub.config().get_slow_client_code(), CloseCode::POLICY_VIOLATION);
                let config = Config::default().close_timeout(Some(Duration::from_millis(500)));
                let server = start(quiet_route(&hub), config).await;
                let mut good = connect_as(&server, &watch, "good").await;
                // Completes the handshake, then never reads.
                let (slow_peer, answer) = rt::Raw::client(server.port, "/ws?id=slow", &[]).await;
                answer.expect("101");
                assert_eq!(watch.connected().await.id(), "slow");
                let slow = client(&hub, "slow");

                // One broadcast at a time: the good client's outbox never holds more than one.
                let mut cut_at = None;
                let mut seq = 0u32;
                loop {
                    let was_connected = slow.is_connected();
                    let delivered = hub.to_all().binary(numbered(seq, SIZE)).expect("send");
                    let queued = slow.queued_messages();
                    assert!(queued <= BOUND, "slow outbox holds {queued} > {BOUND}");
                    match delivered {
                        2 => assert!(slow.is_connected()),
                        1 => assert!(!slow.is_connected(), "only the slow one may be skipped"),
                        n => panic!("delivered to {n}"),
                    }
                    if was_connected && !slow.is_connected() {
                        cut_at = Some(seq);
                    }
                    match next_message(&mut good).await {
                        Message::Binary(data) => {
                            assert_eq!(data.len(), SIZE);
                            assert_eq!(seq_of(&data), seq, "the good client missed one");
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                    if cut_at.is_some_and(|cut| seq >= cut + 32) {
                        break;
                    }
                    seq += 1;
                    assert!(seq < 20_000, "the slow client was never cut off");
                }
                // The close frame cannot reach a peer that does not read: the close timeout
                // ends the connection.
                let gone = watch.disconnected("slow").await;
                let outcome = gone.close_outcome().expect("outcome of the slow client");
                let sent = outcome.sent.as_ref().map(|f| f.code);
                assert_eq!(sent, Some(CloseCode::POLICY_VIOLATION), "{outcome:?}");
                let reason = outcome.sent.as_ref().map(|f| f.reason.as_str());
                assert_eq!(reason, Some("outbox full: client too slow"));
                assert!(!outcome.clean, "{outcome:?}");
                watch.removed("slow").await;
                assert_eq!(ids(&hub.clients()), ["good"]);
                // The good client is unaffected.
                assert_eq!(hub.to_all().text("still here").expect("send"), 1);
                assert_eq!(next_text(&mut good).await, "still here");
                assert!(client(&hub, "good").is_connected());
                good.close(CloseCode::NORMAL, "").await.expect("close");
                drop(slow_peer);
                hub.idle().await;
                server.stop().await;
            });
        }

        /// `Client::send` to a client that never reads fails with `SlowClient` once its outbox
        /// is full (and the client is being disconnected), then with `ConnectionClosed`.
        #[test]
        fn direct_sends_to_a_client_that_never_reads_end_with_slow_client() {
            rt::run(GUARD, async {
                let config = HubConfig::default()
                    .outbox_messages(8)
                    .slow_client_code(CloseCode::new(4000));
                let (hub, watch) = watched(config);
                let server_config =
                    Config::default().close_timeout(Some(Duration::from_millis(300)));
                let server = start(quiet_route(&hub), server_config).await;
                let (slow_peer, answer) = rt::Raw::client(server.port, "/ws?id=slow", &[]).await;
                answer.expect("101");
                let slow = watch.connected().await;
                let mut sent = 0usize;
                let error = loop {
                    match slow.send_binary(numbered(sent as u32, 16 * 1024)) {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                    assert!(slow.queued_messages() <= 8);
                    assert!(sent < 100_000, "never refused");
                };
                assert!(matches!(error, HubError::SlowClient), "{error:?}");
                assert!(error.is_close_error());
                assert!(!slow.is_connected());
                match slow.send_text("after") {
                    Err(HubError::ConnectionClosed { .. }) => {}
                    other => panic!("a send after the cut: {other:?}"),
                }
                let gone = watch.disconnected("slow").await;
                let sent_code = gone.close_outcome().and_then(|o| o.sent).map(|f| f.code);
                assert_eq!(sent_code, Some(CloseCode::new(4000)), "the configured code");
                drop(slow_peer);
                hub.idle().await;
                server.stop().await;
            });
        }

        /// With `HubConfig::deflate`, a broadcast is compressed once and sent compressed to the
        /// clients that negotiated permessage-deflate without server context takeover and with a
        /// large enough window; the others (context takeover, a narrower window, no deflate) get
        /// it plain. Everyone decodes the same message, also between messages their own
        /// connection compressed.
        #[test]
        fn deflate_broadcasts_are_compressed_once_for_the_clients_that_can_take_them() {
            rt::run(GUARD, async {
                use rt::ws::DeflateConfig;
                // The server keeps its context unless a client asks it not to.
                let server_deflate = DeflateConfig::new();
                let hub_config = HubConfig::default().deflate(Some(server_deflate.clone()));
                let (hub, watch) = watched(hub_config);
                let server_config = Config::default().deflate(Some(server_deflate));
                let server = start(quiet_route(&hub), server_config).await;
                let connect = |id: &str, client_deflate: Option<DeflateConfig>| {
                    let url = server.at(&format!("id={id}"));
                    async move {
                        let options = ConnectOptions::new()
                            .config(Config::default().deflate(client_deflate));
                        rt::ws::connect_with(&url, &options).await.expect("connect").0
                    }
                };
                let mut ours = Vec::new();
                for (id, deflate) in [
                    ("zipped", Some(DeflateConfig::no_context_takeover())),
                    ("takeover", Some(DeflateConfig::new())),
                    (
                        "narrow",
                        Some(DeflateConfig::no_context_takeover().server_max_window_bits(9)),
                    ),
                    ("plain", None),
                ] {
                    ours.push(connect(id, deflate).await);
                    assert_eq!(watch.connected().await.id(), id);
                }
                let mut raws = Vec::new();
                for (id, offer) in [
                    ("raw-zipped", "permessage-deflate; server_no_context_takeover"),
                    ("raw-takeover", "permessage-deflate"),
                    (
                        "raw-narrow",
                        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                    ),
                ] {
                    let resource = format!("/ws?id={id}");
                    let headers = [("Sec-WebSocket-Extensions", offer)];
                    let (raw, answer) = rt::Raw::client(server.port, &resource, &headers).await;
                    let agreed = answer.expect("101");
                    assert!(format!("{agreed:?}").contains("permessage-deflate"), "{agreed:?}");
                    assert_eq!(watch.connected().await.id(), id);
                    raws.push(raw);
                }
                let agreed = client(&hub, "zipped").extensions().map(str::to_owned);
                assert!(agreed.is_some_and(|e| e.contains("server_no_context_takeover")));
                assert_eq!(client(&hub, "plain").extensions(), None);

                // Direct sends are compressed by each connection itself, with its context.
                let text = text_payload(20_000);
                let takeover = client(&hub, "takeover");
                takeover.send_text(format!("direct {text}")).expect("send");
                assert_eq!(hub.to_all().text(text.clone()).expect("send"), 7);
                assert_eq!(hub.to_all().text("short").expect("send"), 7);
                takeover.send_text(format!("direct again {text}")).expect("send");
                assert_eq!(next_text(&mut ours[1]).await, format!("direct {text}"));
                for ws in &mut ours {
                    assert_eq!(next_text(ws).await, text);
                    assert_eq!(next_text(ws).await, "short");
                }
                assert_eq!(next_text(&mut ours[1]).await, format!("direct again {text}"));

                // On the wire: compressed (RSV1) only where the frame compressed once fits;
                // below the threshold, plain for all.
                let zipped = raws[0].expect_frame().await;
                assert_eq!(zipped.header.rsv, 0b100, "compressed");
                assert!(zipped.payload.len() < text.len() / 4, "{} bytes", zipped.payload.len());
                for raw in &mut raws[1..] {
                    let frame = raw.expect_frame().await;
                    assert_eq!(frame.header.rsv, 0, "plain");
                    assert_eq!(frame.payload, text.as_bytes());
                }
                for raw in &mut raws {
                    let short = raw.expect_frame().await;
                    assert_eq!((short.header.rsv, &short.payload[..]), (0, &b"short"[..]));
                }
                for mut ws in ours {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                drop(raws);
                hub.idle().await;
                server.stop().await;
            });
        }

        /// Broadcasts the client's message to room "r" except the client.
        fn relay_route(hub: &Hub) -> WebSocketRoute {
            let relay = hub.clone();
            route_with(hub, move || {
                let hub = relay.clone();
                handler_fn(move |client: Client, message: Message| {
                    let sent = hub.to_room("r").except(client.id()).send(message);
                    async move {
                        sent?;
                        Ok(())
                    }
                })
            })
        }

        /// Reads `n` text messages and groups their numbers by sender (`"<sender> <n>"`).
        async fn collect_by_sender(
            read: &mut rt::ws::ReadHalf,
            n: usize,
        ) -> BTreeMap<String, Vec<usize>> {
            let mut by_sender: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for _ in 0..n {
                let text = match read.recv().await {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    other => panic!("expected a text message, got {other:?}"),
                };
                let (sender, seq) = text.split_once(' ').expect("sender and number");
                by_sender
                    .entry(sender.to_owned())
                    .or_default()
                    .push(seq.parse().expect("a number"));
            }
            by_sender
        }

        /// Two senders relay N numbered messages each to a room: every receiver sees each
        /// sender's numbers in order with none missing, and no sender hears itself.
        #[test]
        fn each_senders_broadcasts_arrive_in_order_at_every_receiver() {
            rt::run(GUARD, async {
                const N: usize = 400;
                // Bursts are not slowness: room for every message.
                let config = HubConfig::default().outbox_messages(4 * N);
                let (hub, watch) = watched(config);
                let server = start(relay_route(&hub), Config::default()).await;
                let names = ["s1", "s2", "r1", "r2"];
                let mut sockets = Vec::new();
                for name in names {
                    sockets.push(connect_as(&server, &watch, name).await);
                    client(&hub, name).join("r").expect("join");
                }
                let (reads, writes): (Vec<_>, Vec<_>) =
                    sockets.into_iter().map(WebSocket::split).unzip();
                let mut writes: Vec<_> = writes.into_iter().take(2).collect();
                let mut reads = reads;
                let receiving = reads.iter_mut().enumerate().map(|(i, read)| {
                    // Senders hear the other sender only.
                    let expect = if i < 2 { N } else { 2 * N };
                    collect_by_sender(read, expect)
                });
                let sending = writes.iter_mut().enumerate().map(|(i, write)| async move {
                    for seq in 0..N {
                        write
                            .send(Message::text(format!("{} {seq}", names[i])))
                            .await
                            .expect("send");
                    }
                });
                let (received, _) = join(join_all(receiving), join_all(sending)).await;
                let in_order: Vec<usize> = (0..N).collect();
                for (i, by_sender) in received.iter().enumerate() {
                    let expected: Vec<&str> = match i {
                        0 => vec!["s2"],
                        1 => vec!["s1"],
                        _ => vec!["s1", "s2"],
                    };
                    assert_eq!(by_sender.keys().collect::<Vec<_>>(), expected, "{}", names[i]);
                    for (sender, seqs) in by_sender {
                        assert_eq!(seqs, &in_order, "{sender}'s messages at {}", names[i]);
                    }
                }
                // Dropping every handle closes the connections (1001).
                drop(writes);
                drop(reads);
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- hub shutdown -----------------------------------------------------------------------

        /// `Hub::close` sends 1001 to every client; afterwards rooms, broadcasts and new clients
        /// (through the route: 503 before the upgrade; through `attach`: refused) are refused.
        #[test]
        fn closing_the_hub_sends_1001_to_all_and_refuses_what_comes_after() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(quiet_route(&hub), Config::default()).await;
                let mut a = connect_as(&server, &watch, "a").await;
                let mut b = connect_as(&server, &watch, "b").await;
                let ca = client(&hub, "a");
                ca.join("r").expect("join");
                assert!(!hub.is_closed());

                assert_eq!(hub.close(), 2);
                assert!(hub.is_closed());
                for ws in [&mut a, &mut b] {
                    assert!(ws.recv().await.is_none(), "a clean close");
                    let outcome = ws.close_outcome().expect("closed");
                    assert_eq!(outcome.code, CloseCode::GOING_AWAY, "{outcome:?}");
                    assert!(outcome.clean, "{outcome:?}");
                }
                hub.idle().await;
                assert_eq!(hub.client_count(), 0);
                assert!(hub.rooms().is_empty());
                assert_eq!(hub.close(), 0, "idempotent");

                assert!(matches!(hub.room("x"), Err(HubError::HubClosed)));
                assert!(matches!(hub.to_all().text("x"), Err(HubError::HubClosed)));
                assert!(matches!(hub.to_room("r").text("x"), Err(HubError::HubClosed)));
                assert!(matches!(hub.broadcast(Message::text("x")), Err(HubError::HubClosed)));
                assert!(matches!(ca.join("r"), Err(HubError::HubClosed)));

                // A new client through the route: refused before the upgrade.
                match rt::ws::connect(&server.at("id=late")).await {
                    Err(e) => assert_eq!(e.rejected_status(), Some(503), "{e}"),
                    Ok(_) => panic!("a closed hub admitted a client"),
                }
                // A WebSocket handed to `attach`: refused, and closed with 1001.
                let (listener, port) = rt::bind().await;
                let accept = rt::spawn(async move {
                    rt::ws::accept(listener.accept().await).await.expect("accept")
                });
                let mut outsider = rt::ws::connect(&format!("ws://127.0.0.1:{port}/"))
                    .await
                    .expect("connect");
                match hub.attach(accept.await, ClientOptions::new()) {
                    Err(HubError::HubClosed) => {}
                    other => panic!("attach to a closed hub: {other:?}"),
                }
                let outcome = until_closed(&mut outsider).await;
                assert_eq!(outcome.code, CloseCode::GOING_AWAY, "{outcome:?}");
                assert!(watch.connected.is_empty(), "nobody registered after the close");
                server.stop().await;
            });
        }

        // ---- handler factories ------------------------------------------------------------------

        /// A handler that logs its calls: greets on connect, acknowledges each message (closing
        /// the connection when asked to), and signals its disconnect.
        struct Recorder {
            log: Arc<Mutex<Vec<String>>>,
            ends: Arc<AtomicUsize>,
            ended: Sender<()>,
        }

        impl Handler for Recorder {
            async fn on_connect(&mut self, client: &Client) {
                self.log.lock().expect("log").push("connect".into());
                client.send_text("welcome").expect("welcome");
            }

            async fn on_message(
                &mut self,
                client: &Client,
                message: Message,
            ) -> Result<(), HandlerError> {
                let Message::Text(text) = message else {
                    return Err("text only".into());
                };
                self.log.lock().expect("log").push(format!("message {text}"));
                if text == "close me" {
                    client.close(CloseCode::NORMAL, "as asked")?;
                } else {
                    client.send_text(format!("ack {text}"))?;
                }
                Ok(())
            }

            fn on_disconnect(self, client: &Client) {
                // Checked by the test through the log: a panic here would be in a `Drop`.
                let entry = if client.in_room("lobby") {
                    "disconnect"
                } else {
                    "disconnect, no longer in its room"
                };
                self.log.lock().expect("log").push(entry.into());
                self.ends.fetch_add(1, Ordering::SeqCst);
                let _ = self.ended.try_send(());
            }
        }

        /// How a connection under test ends.
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum End {
            ClientCloses,
            HandlerCloses,
            HubCloses,
            TcpDrops,
            ServerShutsDown,
            ServeFutureDropped,
        }

        /// Runs one admitted connection to its `end`; checks that the handler saw connect,
        /// its messages and one disconnect (while the client was still in its room), in that
        /// order, and only one even once all is idle and the server has stopped.
        async fn handler_lifecycle(end: End) {
            let (hub, watch) = watched(HubConfig::default());
            let log = Arc::new(Mutex::new(Vec::new()));
            let ends = Arc::new(AtomicUsize::new(0));
            let (ended_tx, ended) = unbounded();
            let make = {
                let (log, ends) = (log.clone(), ends.clone());
                move || Recorder {
                    log: log.clone(),
                    ends: ends.clone(),
                    ended: ended_tx.clone(),
                }
            };
            let inits = Arc::new(AtomicUsize::new(0));
            let counted = inits.clone();
            let admit = make.clone();
            let route = hub.route(move |req: &UpgradeRequest<'_>| {
                counted.fetch_add(1, Ordering::SeqCst);
                if query_param(req, "token").is_none() {
                    return Err(rt::ws::Rejection::new(401));
                }
                Ok(Admission::new(admit()))
            });
            let server = start(route, Config::default()).await;
            let url = server.at("token=t");
            let joined = |client: Client| client.join("lobby").expect("join");

            let mut expected = vec!["connect", "message hello"];
            match end {
                End::TcpDrops => {
                    let (mut raw, answer) = rt::Raw::client(server.port, "/ws?token=t", &[]).await;
                    answer.expect("101");
                    joined(watch.connected().await);
                    assert_eq!(raw.expect_frame().await.payload, b"welcome");
                    raw.send_frame(true, op::TEXT, b"hello").await;
                    assert_eq!(raw.expect_frame().await.payload, b"ack hello");
                    drop(raw);
                }
                End::ServeFutureDropped => {
                    // `Hub::serve` in a task of our own, which is then cancelled.
                    let (listener, port) = rt::bind().await;
                    let serving = {
                        let hub = hub.clone();
                        let handler = make();
                        rt::spawn(async move {
                            let ws = rt::ws::accept(listener.accept().await).await.expect("accept");
                            hub.serve(ws, Admission::new(handler)).await
                        })
                    };
                    let mut ws = rt::ws::connect(&format!("ws://127.0.0.1:{port}/"))
                        .await
                        .expect("connect");
                    joined(watch.connected().await);
                    assert_eq!(next_text(&mut ws).await, "welcome");
                    ws.send_text("hello").await.expect("send");
                    assert_eq!(next_text(&mut ws).await, "ack hello");
                    drop(serving);
                    let outcome = until_closed(&mut ws).await;
                    assert_eq!(outcome.code, CloseCode::GOING_AWAY, "{outcome:?}");
                }
                _ => {
                    let mut ws = rt::ws::connect(&url).await.expect("connect");
                    joined(watch.connected().await);
                    assert_eq!(next_text(&mut ws).await, "welcome");
                    ws.send_text("hello").await.expect("send");
                    assert_eq!(next_text(&mut ws).await, "ack hello");
                    let code = match end {
                        End::ClientCloses => {
                            let outcome = ws.close(CloseCode::NORMAL, "bye").await.expect("close");
                            assert!(outcome.clean, "{outcome:?}");
                            CloseCode::NORMAL
                        }
                        End::HandlerCloses => {
                            ws.send_text("close me").await.expect("send");
                            expected.push("message close me");
                            CloseCode::NORMAL
                        }
                        End::HubCloses => {
                            assert_eq!(hub.close(), 1);
                            CloseCode::GOING_AWAY
                        }
                        End::ServerShutsDown => {
                            server.handle.shutdown();
                            CloseCode::GOING_AWAY
                        }
                        End::TcpDrops | End::ServeFutureDropped => unreachable!(),
                    };
                    let outcome = until_closed(&mut ws).await;
                    assert_eq!(outcome.code, code, "{end:?}: {outcome:?}");
                }
            }
            ended.recv().await.expect("on_disconnect ran");
            assert_eq!(ends.load(Ordering::SeqCst), 1, "{end:?}");
            hub.idle().await;
            let report = server.stop().await;
            assert_eq!(report.still_open, 0);
            assert_eq!(ends.load(Ordering::SeqCst), 1, "{end:?}: on_disconnect ran again");
            expected.push("disconnect");
            assert_eq!(*log.lock().expect("log"), expected, "{end:?}");
            assert!(ended.is_empty());
            assert_eq!(inits.load(Ordering::SeqCst), usize::from(end != End::ServeFutureDropped));
        }

        #[test]
        fn factory_refusal_is_an_http_status_before_the_upgrade() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let route = hub.route(|req: &UpgradeRequest<'_>| {
                    if query_param(req, "token").is_none() {
                        return Err(rt::ws::Rejection::new(401));
                    }
                    Ok(Admission::new(handler_fn(|_c: Client, _m: Message| async { Ok(()) })))
                });
                let server = start(route, Config::default()).await;
                match rt::ws::connect(&server.url).await {
                    Err(e) => assert_eq!(e.rejected_status(), Some(401), "{e}"),
                    Ok(_) => panic!("admitted without a token"),
                }
                assert!(watch.connected.is_empty(), "a refused request registers nobody");
                assert_eq!(hub.client_count(), 0);
                // With the token, it is admitted.
                let mut ws = rt::ws::connect(&server.at("token=t")).await.expect("connect");
                watch.connected().await;
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                hub.idle().await;
                server.stop().await;
            });
        }

        #[test]
        fn on_disconnect_runs_once_when_the_client_closes() {
            rt::run(GUARD, handler_lifecycle(End::ClientCloses));
        }

        #[test]
        fn on_disconnect_runs_once_when_the_handler_closes() {
            rt::run(GUARD, handler_lifecycle(End::HandlerCloses));
        }

        #[test]
        fn on_disconnect_runs_once_when_the_hub_closes() {
            rt::run(GUARD, handler_lifecycle(End::HubCloses));
        }

        #[test]
        fn on_disconnect_runs_once_when_tcp_drops() {
            rt::run(GUARD, handler_lifecycle(End::TcpDrops));
        }

        #[test]
        fn on_disconnect_runs_once_when_the_server_shuts_down() {
            rt::run(GUARD, handler_lifecycle(End::ServerShutsDown));
        }

        #[test]
        fn on_disconnect_runs_once_when_the_serve_future_is_dropped() {
            rt::run(GUARD, handler_lifecycle(End::ServeFutureDropped));
        }

        // ---- the backend seam ------------------------------------------------------------------

        /// A backend that keeps the set of rooms this node is subscribed to, as a remote backend
        /// would (Redis SUBSCRIBE/UNSUBSCRIBE), and can run a step of "another task" right after
        /// the hub reported a client leaving a room.
        #[derive(Clone, Default)]
        struct Subscriptions {
            subscribed: Arc<Mutex<std::collections::BTreeSet<String>>>,
            interleave: Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>,
        }

        impl Backend for Subscriptions {
            fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError> {
                Ok(local.deliver(&broadcast))
            }

            fn subscribe(&self, room: &str) {
                self.subscribed.lock().expect("set").insert(room.to_owned());
            }

            fn unsubscribe(&self, room: &str) {
                self.subscribed.lock().expect("set").remove(room);
            }

            fn presence(&self, change: Presence) {
                if let Presence::Left { .. } = change {
                    let step = self.interleave.lock().expect("step").take();
                    if let Some(step) = step {
                        step();
                    }
                }
            }
        }

        /// The backend is told to subscribe to a room when it gets its first member here and to
        /// unsubscribe when it loses its last one. A join by another task that lands between a
        /// leave's table update and its report (here: run from the backend's `presence` call,
        /// which the hub makes after releasing its lock, just before `unsubscribe`) must not leave
        /// the node unsubscribed from a room that has a member: a remote backend would stop
        /// delivering that room's broadcasts from other nodes. (Found by this test: the hub now
        /// reports its changes to the backend in the order it made them.)
        #[test]
        fn backend_stays_subscribed_when_a_join_races_the_last_leave() {
            rt::run(GUARD, async {
                let backend = Subscriptions::default();
                let (connect_tx, connected) = unbounded();
                let hub = Hub::builder()
                    .backend(backend.clone())
                    .on_connect(move |client| {
                        let _ = connect_tx.try_send(client.clone());
                    })
                    .build();
                let server = start(quiet_route(&hub), Config::default()).await;
                let mut a = rt::ws::connect(&server.at("id=a")).await.expect("connect");
                let ca = connected.recv().await.expect("a");
                let mut b = rt::ws::connect(&server.at("id=b")).await.expect("connect");
                let cb = connected.recv().await.expect("b");
                let subscribed = || backend.subscribed.lock().expect("set").clone();

                assert!(ca.join("r").expect("join"));
                assert_eq!(subscribed(), ["r".to_owned()].into());
                // Without interleaving: the last leave unsubscribes, the next join subscribes.
                assert!(ca.leave("r").expect("leave"));
                assert!(subscribed().is_empty());
                assert!(ca.join("r").expect("join"));
                assert_eq!(subscribed(), ["r".to_owned()].into());

                // b joins while a's leave is being reported.
                let joiner = cb.clone();
                *backend.interleave.lock().expect("step") = Some(Box::new(move || {
                    assert!(joiner.join("r").expect("join"));
                }));
                assert!(ca.leave("r").expect("leave"));
                assert_eq!(ids(&hub.get_room("r").expect("r").clients()), ["b"]);
                assert_eq!(
                    subscribed(),
                    ["r".to_owned()].into(),
                    "room r has a member on this node but the backend was unsubscribed from it"
                );

                for ws in [&mut a, &mut b] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- client data, store and IDs ---------------------------------------------------------

        /// What a factory kept from the request.
        #[derive(Debug, PartialEq)]
        struct User(String);

        /// Request data from the factory, the key/value store, the subprotocol, generated and
        /// given IDs, and duplicate IDs refused (through the route and through `attach`).
        #[test]
        fn client_data_store_and_ids() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let route = hub.route(|req: &UpgradeRequest<'_>| {
                    let user = User(query_param(req, "user").unwrap_or("anonymous").to_owned());
                    let admission = Admission::new(handler_fn(|_c: Client, _m: Message| async {
                        Ok(())
                    }))
                    .data(user)
                    .protocol("chat.v1");
                    Ok(match query_param(req, "id") {
                        Some(id) => admission.id(id),
                        None => admission,
                    })
                });
                let server = start(route, Config::default()).await;
                let options = ConnectOptions::new().protocol("chat.v1");
                let connect = |query: String| {
                    let url = server.at(&query);
                    let options = options.clone();
                    async move { rt::ws::connect_with(&url, &options).await.expect("connect").0 }
                };

                // A given ID is used; the factory's data and the subprotocol come with it.
                let mut alice = connect("id=alice&user=Alice".into()).await;
                let ca = watch.connected().await;
                assert_eq!(ca.id(), "alice");
                assert_eq!(client(&hub, "alice"), ca);
                assert_eq!(ca.data::<User>(), Some(&User("Alice".into())));
                assert_eq!(ca.data::<String>(), None, "data of another type");
                assert_eq!(ca.subprotocol(), Some("chat.v1"));
                assert_eq!(alice.subprotocol(), Some("chat.v1"));
                assert!(ca.hub().is_some());

                // The key/value store.
                assert_eq!(ca.get::<u32>("score"), None);
                ca.set("score", 5u32);
                assert_eq!(ca.get::<u32>("score"), Some(5));
                assert_eq!(ca.get::<String>("score"), None, "a value of another type");
                assert_eq!(ca.with("score", |v: &mut u32| { *v += 1; *v }), Some(6));
                assert_eq!(client(&hub, "alice").get::<u32>("score"), Some(6), "shared");
                assert_eq!(ca.with("score", |v: &mut String| v.len()), None);
                ca.set("score", "high".to_owned());
                assert_eq!(ca.get::<String>("score").as_deref(), Some("high"), "replaced");
                assert!(ca.remove("score"));
                assert!(!ca.remove("score"));
                assert_eq!(ca.get::<String>("score"), None);

                // Generated IDs: 32 hex digits, all different.
                let mut anonymous = Vec::new();
                let mut generated = HashSet::new();
                for _ in 0..16 {
                    anonymous.push(connect("user=x".into()).await);
                    let id = watch.connected().await.id().to_string();
                    assert_eq!(id.len(), 32, "{id}");
                    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
                    generated.insert(id);
                }
                assert_eq!(generated.len(), 16);
                assert_eq!(hub.client_count(), 17);

                // A second "alice" through the route: upgraded, then closed with 1008
                // ("duplicate client id") without disturbing the first.
                let mut impostor = connect("id=alice&user=Mallory".into()).await;
                let outcome = until_closed(&mut impostor).await;
                assert_eq!(outcome.code, CloseCode::POLICY_VIOLATION, "{outcome:?}");
                assert_eq!(outcome.reason, "duplicate client id", "{outcome:?}");
                assert_eq!(client(&hub, "alice"), ca, "the first alice stays");
                assert_eq!(ca.data::<User>(), Some(&User("Alice".into())));
                assert_eq!(hub.client_count(), 17);
                assert!(watch.disconnected.is_empty(), "no disconnect for a refused client");
                assert_eq!(hub.to_all().text("still alice").expect("send"), 17);
                assert_eq!(next_text(&mut alice).await, "still alice");

                // The same through `attach`, and `attach` with options of its own.
                let (listener, port) = rt::bind().await;
                let accept = rt::spawn(async move {
                    let mut accepted = Vec::new();
                    for _ in 0..2 {
                        let ws = rt::ws::accept(listener.accept().await).await.expect("accept");
                        accepted.push(ws);
                    }
                    accepted
                });
                let outside = format!("ws://127.0.0.1:{port}/");
                let mut first = rt::ws::connect(&outside).await.expect("connect");
                let mut second = rt::ws::connect(&outside).await.expect("connect");
                let mut accepted = accept.await.into_iter();
                let duplicate = accepted.next().expect("first accepted");
                match hub.attach(duplicate, ClientOptions::new().id("alice")) {
                    Err(HubError::DuplicateClient(id)) => assert_eq!(id, "alice"),
                    other => panic!("a duplicate ID: {other:?}"),
                }
                assert_eq!(
                    until_closed(&mut first).await.code,
                    CloseCode::POLICY_VIOLATION
                );
                let options = ClientOptions::new().id("bob").data(7u64);
                let (bob, mut incoming) =
                    hub.attach(accepted.next().expect("second"), options).expect("attach");
                assert_eq!(watch.connected().await, bob);
                assert_eq!(bob.id(), "bob");
                assert_eq!(bob.data::<u64>(), Some(&7));
                assert_eq!(incoming.client(), &bob);
                second.send_text("hi bob").await.expect("send");
                match incoming.recv().await {
                    Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "hi bob"),
                    other => panic!("{other:?}"),
                }
                bob.send_text("hi second").expect("send");
                assert_eq!(next_text(&mut second).await, "hi second");
                // Dropping the stream is bob's disconnect.
                drop(incoming);
                watch.removed("bob").await;
                assert!(hub.client("bob").is_none());
                assert!(!bob.is_connected());
                assert_eq!(until_closed(&mut second).await.code, CloseCode::GOING_AWAY);

                // Closing from the server: codes that may not be sent and over-long reasons are
                // refused without closing anything.
                let bad = ca.close(CloseCode::new(1005), "");
                assert!(matches!(bad, Err(HubError::WebSocket(_))), "{bad:?}");
                let bad = ca.close(CloseCode::NORMAL, &"x".repeat(124));
                assert!(matches!(bad, Err(HubError::WebSocket(_))), "{bad:?}");
                assert!(ca.is_connected());

                // Once alice has gone, sending to her handle says how her connection ended.
                alice.close(CloseCode::NORMAL, "done").await.expect("close");
                watch.removed("alice").await;
                let late = ca.send_text("late").expect_err("alice has gone");
                assert!(late.is_close_error() && late.is_normal_close(), "{late:?}");
                assert_eq!(late.close_code(), Some(CloseCode::NORMAL));
                assert!(rt::ws::hub::is_close_error(&late, &[CloseCode::NORMAL]));
                assert!(!rt::ws::hub::is_close_error(&late, &[CloseCode::GOING_AWAY]));
                assert!(rt::ws::hub::is_normal_close(&late));
                assert!(matches!(ca.join("r"), Err(HubError::ConnectionClosed { .. })));
                drop(anonymous);
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- the JSON router --------------------------------------------------------------------

        #[derive(serde::Deserialize)]
        struct Add {
            a: i64,
            b: i64,
        }

        /// Echo, typed add, a failing handler; `/ws?router=fallback` gets a router with only a
        /// fallback.
        fn json_route(hub: &Hub) -> WebSocketRoute {
            let router = Router::new()
                .on("echo", |client: Client, msg: Envelope| async move {
                    client.reply(&msg, "echoed", &msg.payload())?;
                    Ok(())
                })
                .on_typed("add", |client: Client, msg: Envelope, add: Add| async move {
                    client.reply(&msg, "sum", &(add.a + add.b))?;
                    Ok(())
                })
                .on("fail", |_client: Client, _msg: Envelope| async move {
                    Err::<(), HandlerError>("boom".into())
                });
            let fallback = Router::new().fallback(|client: Client, msg: Envelope| async move {
                client.reply(&msg, "fallback", msg.kind())?;
                Ok(())
            });
            hub.route(move |req: &UpgradeRequest<'_>| {
                let chosen = match query_param(req, "router") {
                    Some("fallback") => fallback.clone(),
                    _ => router.clone(),
                };
                let admission = Admission::new(chosen);
                Ok(match query_param(req, "id") {
                    Some(id) => admission.id(id),
                    None => admission,
                })
            })
        }

        /// Sends `request` (JSON text) and returns the reply.
        async fn ask(ws: &mut WebSocket, request: &str) -> Value {
            ws.send_text(request).await.expect("send");
            next_json(ws).await
        }

        #[test]
        fn json_router_dispatches_by_type_and_answers_bad_input_with_error_envelopes() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default());
                let server = start(json_route(&hub), Config::default()).await;
                let mut ws = connect_as(&server, &watch, "j").await;

                let reply = ask(&mut ws, r#"{"type":"echo","payload":{"x":[1,"y"]},"id":"r1"}"#);
                assert_eq!(reply.await, json!({"type":"echoed","payload":{"x":[1,"y"]},"id":"r1"}));
                // Without an id, the reply has none; any JSON id is copied as it was.
                let reply = ask(&mut ws, r#"{"type":"echo","payload":3}"#).await;
                assert_eq!(reply, json!({"type":"echoed","payload":3}));
                let reply = ask(&mut ws, r#"{"type":"add","payload":{"a":2,"b":40},"id":7}"#);
                assert_eq!(reply.await, json!({"type":"sum","payload":42,"id":7}));
                assert!(watch.errors.is_empty());

                // A payload that is not the handler's type.
                let reply = ask(&mut ws, r#"{"type":"add","payload":{"a":"x"},"id":"r2"}"#).await;
                assert_eq!(reply["type"], "error");
                assert_eq!(reply["id"], "r2");
                let message = reply["payload"]["message"].as_str().expect("a message");
                assert!(message.starts_with("invalid payload for add: "), "{message}");
                assert_eq!(reply.as_object().map(|o| o.len()), Some(3), "{reply}");
                assert_eq!(watch.error().await, (ClientId::from("j"), message.to_owned()));

                // An unknown type, without and with an id.
                let reply = ask(&mut ws, r#"{"type":"nope"}"#).await;
                let unknown = json!({"message": "unknown message type: nope"});
                assert_eq!(reply, json!({"type": "error", "payload": unknown}));
                assert_eq!(watch.error().await.1, "unknown message type: nope");
                let reply = ask(&mut ws, r#"{"type":"nope","id":["q",1]}"#).await;
                assert_eq!(
                    reply,
                    json!({"type": "error", "payload": unknown, "id": ["q", 1]})
                );
                watch.error().await;

                // Not JSON, not an envelope, not text.
                for bad in ["not json", r#"{"payload":1}"#, r#"[1,2]"#, r#"{"type":3}"#] {
                    let reply = ask(&mut ws, bad).await;
                    assert_eq!(reply["type"], "error", "{bad}");
                    assert_eq!(reply.get("id"), None, "{bad}");
                    let message = reply["payload"]["message"].as_str().expect("a message");
                    assert!(message.starts_with("invalid JSON: "), "{bad}: {message}");
                    assert_eq!(watch.error().await.1, message);
                }
                ws.send_binary(vec![b'{', b'}']).await.expect("send");
                assert_eq!(
                    next_json(&mut ws).await,
                    json!({
                        "type": "error",
                        "payload": {"message": "binary messages are not accepted: send JSON text"}
                    })
                );
                watch.error().await;

                // A handler error: the request's id, and the error hook.
                let reply = ask(&mut ws, r#"{"type":"fail","id":"f1"}"#).await;
                assert_eq!(reply, json!({"type":"error","payload":{"message":"boom"},"id":"f1"}));
                assert_eq!(watch.error().await, (ClientId::from("j"), "boom".to_owned()));

                // None of it closed the connection.
                let reply = ask(&mut ws, r#"{"type":"echo","payload":"still open","id":"r3"}"#);
                assert_eq!(reply.await, json!({"type":"echoed","payload":"still open","id":"r3"}));
                assert!(client(&hub, "j").is_connected());
                assert!(watch.errors.is_empty());

                // A router with a fallback: every type goes to it.
                let mut fb = connect_as_with(&server, &watch, "fb", "&router=fallback").await;
                let reply = ask(&mut fb, r#"{"type":"whatever","id":1}"#).await;
                assert_eq!(reply, json!({"type":"fallback","payload":"whatever","id":1}));
                let reply = ask(&mut fb, r#"{"type":"echo"}"#).await;
                assert_eq!(reply, json!({"type":"fallback","payload":"echo"}));

                // Events and JSON broadcasts, and an event to one client.
                let sent = hub.to_all().event("tick", &json!({"n": 1}));
                assert_eq!(sent.expect("event"), 2);
                let sent = hub.to_room("none").event("tick", &1);
                assert_eq!(sent.expect("event"), 0);
                let sent = hub.to_all().except(&ClientId::from("fb")).json(&json!({"k": [true]}));
                assert_eq!(sent.expect("json"), 1);
                client(&hub, "fb").send_event("hello", &[1, 2]).expect("event");
                client(&hub, "fb").send_json(&json!({"direct": null})).expect("json");
                assert_eq!(next_json(&mut ws).await, json!({"type":"tick","data":{"n":1}}));
                assert_eq!(next_json(&mut ws).await, json!({"k":[true]}));
                assert_eq!(next_json(&mut fb).await, json!({"type":"tick","data":{"n":1}}));
                assert_eq!(next_json(&mut fb).await, json!({"type":"hello","data":[1,2]}));
                assert_eq!(next_json(&mut fb).await, json!({"direct":null}));

                for mut ws in [ws, fb] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                hub.idle().await;
                server.stop().await;
            });
        }

        /// With `error_replies(false)`, errors reach the hook but not the client.
        #[test]
        fn json_router_without_error_replies_reports_to_the_hook_only() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default().error_replies(false));
                let server = start(json_route(&hub), Config::default()).await;
                let mut ws = connect_as(&server, &watch, "q").await;
                ws.send_text(r#"{"type":"fail","id":1}"#).await.expect("send");
                ws.send_text("not json").await.expect("send");
                // The echo's reply is the next message: the failures were not answered.
                let reply = ask(&mut ws, r#"{"type":"echo","payload":1}"#).await;
                assert_eq!(reply, json!({"type":"echoed","payload":1}));
                assert_eq!(watch.error().await.1, "boom");
                assert!(watch.error().await.1.starts_with("invalid JSON: "));
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- per-hub connection settings --------------------------------------------------------

        /// `HubConfig::max_message_size` applies to the hub's clients over the server's own
        /// (64 MiB) limit: a 17-byte message closes the client with 1009.
        #[test]
        fn hub_message_size_limit_overrides_the_servers() {
            rt::run(GUARD, async {
                let (hub, watch) = watched(HubConfig::default().max_message_size(Some(16)));
                let server_config = Config::default();
                let server_limit = server_config.get_core().get_max_message_size();
                assert!(server_limit.unwrap_or(usize::MAX) >= 1 << 20, "{server_limit:?}");
                let server = start(echo_route(&hub), server_config).await;
                let mut ws = connect_as(&server, &watch, "big").await;
                ws.send_text("sixteen bytes ok").await.expect("send");
                assert_eq!(next_text(&mut ws).await, "sixteen bytes ok");
                ws.send_text("seventeen bytes!!").await.expect("send");
                let outcome = until_closed(&mut ws).await;
                assert_eq!(outcome.code, CloseCode::MESSAGE_TOO_BIG, "{outcome:?}");
                let gone = watch.disconnected("big").await;
                let sent = gone.close_outcome().and_then(|o| o.sent).map(|f| f.code);
                assert_eq!(sent, Some(CloseCode::MESSAGE_TOO_BIG));
                hub.idle().await;
                server.stop().await;
            });
        }

        /// The hub's message size limit also covers a message that arrived with the upgrade
        /// request (in the same TCP segment as it), so already buffered when the connection was
        /// handed to the hub: the connection's driver task, spawned before the hub applies its
        /// settings, must not have let it through under the server's 64 MiB limit. Repeated,
        /// as that would be a race.
        #[test]
        fn hub_message_size_limit_covers_a_message_sent_with_the_upgrade_request() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default().max_message_size(Some(16)));
                let server = start(echo_route(&hub), Config::default()).await;
                let host = format!("127.0.0.1:{}", server.port);
                let mask = Some(tidings_tests::TEST_KEY);
                let frame = tidings_tests::raw_frame(true, 0, op::TEXT, mask, b"seventeen bytes!!");
                for i in 0..100 {
                    let resource = format!("/ws?id=early{i}");
                    let request = tidings_tests::adapter_suite::raw_request(&host, &resource, &[]);
                    let tcp = rt::connect(server.port).await;
                    let (mut raw, answer) = rt::Raw::client_over(tcp, &request, &frame).await;
                    answer.expect("101");
                    let first = raw.expect_frame().await;
                    assert_eq!(first.header.opcode, OpCode::Close, "attempt {i}: {first:?}");
                    assert_eq!(first.close_code(), Some(1009), "attempt {i}");
                }
                hub.idle().await;
                server.stop().await;
            });
        }

        /// `HubConfig::ping_interval` makes the server ping a client of a server that does not.
        #[test]
        fn hub_ping_interval_overrides_the_servers() {
            rt::run(GUARD, async {
                let config = HubConfig::default().ping_interval(Some(Duration::from_millis(50)));
                let (hub, watch) = watched(config);
                let server_config = Config::default().ping_interval(None);
                let server = start(echo_route(&hub), server_config).await;
                let mut ws = connect_as(&server, &watch, "p").await;
                let mut pings = 0;
                while pings < 2 {
                    match ws.recv_event().await {
                        Some(Event::Ping(_)) => pings += 1,
                        other => panic!("expected a ping, got {other:?}"),
                    }
                }
                // Answered automatically: the connection is fine.
                ws.send_text("after pings").await.expect("send");
                assert_eq!(next_text(&mut ws).await, "after pings");
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                hub.idle().await;
                server.stop().await;
            });
        }

        // ---- tidings-io: send_encoded and the outbox --------------------------------------------

        /// `n` connections between our client and our server: (clients, servers), in order.
        async fn pairs(n: usize) -> (Vec<WebSocket>, Vec<WebSocket>) {
            let (listener, port) = rt::bind().await;
            let accept = rt::spawn(async move {
                let mut servers = Vec::new();
                for _ in 0..n {
                    servers.push(rt::ws::accept(listener.accept().await).await.expect("accept"));
                }
                servers
            });
            let mut clients = Vec::new();
            for _ in 0..n {
                let url = format!("ws://127.0.0.1:{port}/");
                clients.push(rt::ws::connect(&url).await.expect("connect"));
            }
            (clients, accept.await)
        }

        /// One `EncodedFrame` sent on several connections arrives intact on each, in order with
        /// ordinary sends: server connections share its bytes, client connections mask a copy.
        #[test]
        fn send_encoded_delivers_one_frame_intact_to_many_connections_in_both_roles() {
            rt::run(GUARD, async {
                let (mut clients, mut servers) = pairs(3).await;
                let big = binary_payload(70_000, 3);
                let text = text_payload(300);
                let messages = [Message::binary(big), Message::text(text), Message::text("")];
                let frames: Vec<EncodedFrame> = messages.iter().map(EncodedFrame::new).collect();
                let wire: Vec<_> = frames.iter().map(|f| f.wire().clone()).collect();
                for round in 0..2 {
                    let (senders, receivers) = if round == 0 {
                        (&mut servers, &mut clients)
                    } else {
                        (&mut clients, &mut servers)
                    };
                    for ws in senders.iter_mut() {
                        ws.send_text("before").await.expect("send");
                        for frame in &frames {
                            ws.send_encoded(frame).await.expect("send_encoded");
                        }
                        ws.send_text("after").await.expect("send");
                    }
                    for ws in receivers.iter_mut() {
                        assert_eq!(next_text(ws).await, "before");
                        for message in &messages {
                            assert_eq!(&next_message(ws).await, message);
                        }
                        assert_eq!(next_text(ws).await, "after");
                    }
                }
                // Masking the client copies left the shared frame alone.
                let after: Vec<_> = frames.iter().map(|f| f.wire().clone()).collect();
                assert_eq!(after, wire);
                for mut ws in clients {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                for mut ws in servers {
                    assert!(ws.recv().await.is_none());
                }
            });
        }

        /// Our server connection facing a raw client peer that reads only when told to.
        async fn server_facing_raw() -> (WebSocket, rt::Raw) {
            let (listener, port) = rt::bind().await;
            let accept = rt::spawn(async move {
                rt::ws::accept(listener.accept().await).await.expect("accept")
            });
            let (raw, answer) = rt::Raw::client(port, "/", &[]).await;
            answer.expect("101");
            (accept.await, raw)
        }

        /// The outbox refuses with `Full` at its message bound and at its byte bound while the
        /// peer is not reading, delivers everything it accepted in order once the peer reads,
        /// and refuses with `Closed` once the connection is closing.
        #[test]
        fn outbox_is_bounded_in_messages_and_bytes_and_refuses_after_close() {
            rt::run(GUARD, async {
                const SIZE: usize = 16 * 1024;
                let frame = |seq: u32| EncodedFrame::new(&Message::binary(numbered(seq, SIZE)));
                let (mut ws, mut raw) = server_facing_raw().await;

                // The message bound: the peer reads nothing until the outbox refuses.
                let outbox = ws.outbox(OutboxLimits::default().messages(4));
                assert_eq!(outbox.limits().get_messages(), 4);
                let mut sent = 0u32;
                let full = loop {
                    match outbox.try_send_encoded(&frame(sent)) {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                };
                assert!(full.is_full(), "{full:?}");
                assert!(matches!(full, OutboxError::Full { messages: 4, .. }), "{full:?}");
                assert!(outbox.queued_messages() <= 4);
                assert!(sent >= 4);
                // Everything accepted arrives, in order; then the outbox is empty again.
                for seq in 0..sent {
                    let got = raw.expect_frame().await;
                    assert_eq!(got.header.opcode, OpCode::Binary);
                    assert_eq!(got.payload, numbered(seq, SIZE));
                }
                assert_eq!(outbox.queued_messages(), 0);
                assert_eq!(outbox.queued_bytes(), 0);

                // The byte bound: 40 KiB holds two of these messages, not three.
                let by_bytes = ws.outbox(OutboxLimits::default().messages(1000).bytes(40 * 1024));
                assert!(by_bytes.same_connection(&outbox));
                let mut sent = 0u32;
                let full = loop {
                    match by_bytes.try_send(Message::binary(numbered(sent, SIZE))) {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                };
                match full {
                    OutboxError::Full { messages, bytes } => {
                        assert!(messages < 1000, "{full:?}");
                        assert!(bytes > 0 && bytes + SIZE > 40 * 1024, "{full:?}");
                        // The bound is checked against payload lengths: frame headers may
                        // take the output a few bytes past it.
                        assert!(bytes <= 40 * 1024 + 14, "{full:?}");
                    }
                    other => panic!("expected Full, got {other:?}"),
                }
                for seq in 0..sent {
                    assert_eq!(raw.expect_frame().await.payload, numbered(seq, SIZE));
                }

                // Closing through the outbox: after what was queued; then it refuses.
                outbox.try_send(Message::text("last")).expect("send");
                assert!(outbox.close(CloseCode::NORMAL, "done").expect("close"));
                assert!(!outbox.close(CloseCode::NORMAL, "again").expect("close again"));
                assert!(outbox.is_closed());
                assert_eq!(outbox.try_send_encoded(&frame(0)), Err(OutboxError::Closed));
                assert_eq!(by_bytes.try_send(Message::text("x")), Err(OutboxError::Closed));
                assert_eq!(raw.expect_frame().await.payload, b"last");
                let close = raw.expect_frame().await;
                assert_eq!(close.close_code(), Some(1000));
                raw.send_frame(true, op::CLOSE, &close.payload).await;
                assert!(ws.recv().await.is_none());
                assert!(ws.close_outcome().expect("closed").clean);

                // An outbox does not keep its connection open: dropping the WebSocket closes it
                // with 1001, and the outbox refuses from then on.
                let (ws, mut raw) = server_facing_raw().await;
                let outbox = ws.outbox(OutboxLimits::default());
                outbox.try_send(Message::text("queued")).expect("send");
                drop(ws);
                assert_eq!(raw.expect_frame().await.payload, b"queued");
                let close = raw.expect_frame().await;
                assert_eq!(close.close_code(), Some(1001));
                assert_eq!(outbox.try_send(Message::text("late")), Err(OutboxError::Closed));
                raw.send_frame(true, op::CLOSE, &close.payload).await;
                assert!(raw.until_eof().await.is_empty());
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
