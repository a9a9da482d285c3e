//! Hubs across processes through the Redis backend (`tidings-hub-redis`), against a private
//! `redis-server` per test (`common/redis_server.rs`; skipped without one, failed under
//! `TIDINGS_REDIS_TESTS=require`), on both runtimes: every test is written once in `suite!` and
//! expanded into `mod tokio_suite` and `mod smol_suite`. Each test's nodes are separate hubs
//! with separate backend connections, sharing one key prefix of their own.
//!
//! Members are Server-Sent Events subscribers driven as bodies (`common/sse_events.rs`), so
//! that what a node delivers is read without a network client. Nothing sleeps: a node's
//! subscriptions and presence are in place once its [`RedisBackend::sync`] returns, and that
//! something did *not* arrive is shown with a fence (a later broadcast from the same publisher
//! must be the very next thing received, since each publisher's broadcasts arrive in order).
//! The two waits on Redis's own clock (a dead node's presence expiring) poll with a deadline.

tidings_tests::runtime_shims!();

#[allow(unused_macros)]
#[path = "common/http_sse.rs"]
mod http_sse;

#[path = "common/sse_events.rs"]
mod body;

#[path = "common/redis_server.rs"]
mod redis_server;

/// A TCP relay between a node and Redis that the test can cut: the node's connections die
/// and it cannot reconnect, as if its process or its network were gone, while Redis runs on.
mod relay {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;

    pub struct Relay {
        port: u16,
        cut: Arc<AtomicBool>,
        streams: Arc<Mutex<Vec<TcpStream>>>,
    }

    impl Relay {
        /// Relays a loopback port to `target`'s.
        pub fn start(target: u16) -> Relay {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
            let port = listener.local_addr().expect("relay address").port();
            let cut = Arc::new(AtomicBool::new(false));
            let streams = Arc::new(Mutex::new(Vec::new()));
            let (c, s) = (cut.clone(), streams.clone());
            thread::spawn(move || {
                for inbound in listener.incoming() {
                    let Ok(inbound) = inbound else { continue };
                    if c.load(Ordering::Acquire) {
                        let _ = inbound.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let mut list = s.lock().expect("relay list");
                    for stream in [&inbound, &outbound] {
                        if let Ok(clone) = stream.try_clone() {
                            list.push(clone);
                        }
                    }
                    pipe(&inbound, &outbound);
                    pipe(&outbound, &inbound);
                }
            });
            Relay { port, cut, streams }
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// Relays new connections again after [`cut`](Self::cut).
        pub fn resume(&self) {
            self.cut.store(false, Ordering::Release);
        }

        /// Closes every relayed connection and refuses new ones.
        pub fn cut(&self) {
            self.cut.store(true, Ordering::Release);
            for stream in self.streams.lock().expect("relay list").drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.cut();
        }
    }

    fn pipe(from: &TcpStream, to: &TcpStream) {
        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
            return;
        };
        thread::spawn(move || {
            let mut buf = [0; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

macro_rules! suite {
    () => {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};

        use rt::ws::hub::{ClientId, Hub, HubConfig, SseConfig, SseSubscription};
        use tidings_hub_redis::{RedisBackend, RedisBackendError, RedisConfig};

        use crate::body::Events;
        use crate::redis_server::{self, RedisServer, Reply};
        use crate::relay::Relay;

        const GUARD: Duration = Duration::from_secs(60);

        /// A key prefix of the test's own.
        fn prefix(test: &str) -> String {
            static N: AtomicUsize = AtomicUsize::new(0);
            format!(
                "t-{}-{test}-{}",
                rt::NAME,
                N.fetch_add(1, Ordering::Relaxed)
            )
        }

        /// One node: a hub on a backend of its own.
        struct Node {
            hub: Hub,
            backend: RedisBackend,
        }

        async fn node_with(url: &str, config: RedisConfig, history: usize) -> Node {
            let backend = RedisBackend::connect(url, config, rt::ws::runtime())
                .await
                .expect("connect to redis");
            let hub = Hub::builder()
                .config(HubConfig::default().history(history))
                .backend(backend.clone())
                .build();
            Node { hub, backend }
        }

        async fn node(server: &RedisServer, prefix: &str, history: usize) -> Node {
            node_with(
                &server.url(),
                RedisConfig::default().prefix(prefix),
                history,
            )
            .await
        }

        impl Node {
            /// An SSE member of `rooms` with the client id `id`, with room for every event a
            /// test sends before it reads (the order test's 500).
            fn member(&self, id: &str, rooms: &[&str]) -> Events {
                let subscription = SseSubscription::new()
                    .rooms(rooms.iter().copied())
                    .id(id)
                    .config(SseConfig::default().queue_events(1024));
                Events::new(
                    self.hub
                        .subscribe_sse(rt::ws::runtime(), subscription)
                        .expect("subscribe"),
                )
            }
        }

        /// Every node's changes in Redis, then every node's view of the others.
        async fn settle(nodes: &[&Node]) {
            for node in nodes {
                node.backend.sync().await.expect("sync");
            }
            for node in nodes {
                node.backend.sync().await.expect("sync");
            }
        }

        async fn next_data(events: &mut Events) -> String {
            events.next().await.data
        }

        fn numsub(server: &RedisServer, channel: &str) -> i64 {
            match server.command(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()]) {
                Ok(Reply::Array(Some(items))) => match items.get(1) {
                    Some(Reply::Integer(n)) => *n,
                    other => panic!("PUBSUB NUMSUB answered {other:?}"),
                },
                other => panic!("PUBSUB NUMSUB answered {other:?}"),
            }
        }

        #[test]
        fn rooms_and_broadcasts_cross_nodes() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("rooms");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let mut x = a.member("x", &["r"]);
                let mut y = b.member("y", &["r"]);
                let mut z = b.member("z", &["s"]);
                settle(&[&a, &b]).await;

                assert_eq!(a.hub.to_room("r").text("to r").expect("publish"), 1);
                assert_eq!(next_data(&mut x).await, "to r");
                assert_eq!(next_data(&mut y).await, "to r");
                a.hub.to_all().text("to all").expect("publish");
                a.hub
                    .to_rooms(["r", "s"])
                    .text("to r and s")
                    .expect("publish");
                for (who, events) in [("x", &mut x), ("y", &mut y), ("z", &mut z)] {
                    assert_eq!(next_data(events).await, "to all", "{who}");
                    assert_eq!(next_data(events).await, "to r and s", "{who}");
                }
                // The broadcast to r did not reach z, and each copy came once: the fence is next.
                a.hub.to_all().text("fence").expect("publish");
                for events in [&mut x, &mut y, &mut z] {
                    assert_eq!(next_data(events).await, "fence");
                }
                b.hub.to_room("s").text("from b").expect("publish");
                assert_eq!(next_data(&mut z).await, "from b");
                a.hub.to_all().text("fence 2").expect("publish");
                assert_eq!(next_data(&mut x).await, "fence 2", "x is not in s");
                assert_eq!(a.backend.stats().malformed, 0);
            });
        }

        #[test]
        fn each_publishers_order_holds_across_channels() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("order");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let mut y = b.member("y", &["r"]);
                settle(&[&a, &b]).await;
                const N: usize = 500;
                for i in 0..N {
                    // Alternating the room's channel and the `all` channel.
                    if i % 2 == 0 {
                        a.hub.to_room("r").text(format!("{i}")).expect("publish");
                    } else {
                        a.hub.to_all().text(format!("{i}")).expect("publish");
                    }
                }
                for i in 0..N {
                    assert_eq!(next_data(&mut y).await, format!("{i}"));
                }
            });
        }

        #[test]
        fn except_sender_holds_across_nodes() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("except");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let mut alice = b.member("alice", &["r"]);
                let mut bob = b.member("bob", &["r"]);
                settle(&[&a, &b]).await;
                let sender = ClientId::new("alice");
                a.hub
                    .to_room("r")
                    .except(&sender)
                    .text("not alice")
                    .expect("publish");
                a.hub
                    .to_all()
                    .except(&sender)
                    .text("not alice either")
                    .expect("publish");
                a.hub.to_room("r").text("fence").expect("publish");
                assert_eq!(next_data(&mut bob).await, "not alice");
                assert_eq!(next_data(&mut bob).await, "not alice either");
                assert_eq!(next_data(&mut bob).await, "fence");
                assert_eq!(next_data(&mut alice).await, "fence");
            });
        }

        #[test]
        fn a_node_subscribes_to_a_room_only_while_it_has_members() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("subs");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let channel = format!("{p}:room:r");
                settle(&[&a, &b]).await;
                assert_eq!(numsub(&server, &channel), 0);
                let x = a.member("x", &["r"]);
                let y = b.member("y", &["r"]);
                settle(&[&a, &b]).await;
                assert_eq!(numsub(&server, &channel), 2);
                drop(y);
                settle(&[&a, &b]).await;
                assert_eq!(numsub(&server, &channel), 1);
                drop(x);
                settle(&[&a, &b]).await;
                assert_eq!(numsub(&server, &channel), 0);
                // The `all` channel stays: every node hears broadcasts to all.
                assert_eq!(numsub(&server, &format!("{p}:all")), 2);
            });
        }

        #[test]
        fn presence_counts_across_nodes() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("presence");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let x1 = a.member("x1", &["r"]);
                let _x2 = a.member("x2", &["r", "t"]);
                let y1 = b.member("y1", &["r"]);
                let _y2 = b.member("y2", &["s"]);
                settle(&[&a, &b]).await;
                for node in [&a, &b] {
                    assert_eq!(node.hub.client_count(), 4);
                    assert_eq!(node.hub.room_size("r"), 3);
                    assert_eq!(node.hub.room_size("s"), 1);
                    assert_eq!(node.hub.room_size("t"), 1);
                    assert_eq!(node.hub.rooms(), ["r", "s", "t"]);
                }
                drop(x1);
                drop(y1);
                settle(&[&a, &b]).await;
                for node in [&a, &b] {
                    assert_eq!(node.hub.client_count(), 2);
                    assert_eq!(node.hub.room_size("r"), 1);
                }
                // A closed hub takes its presence away at once.
                b.hub.close();
                settle(&[&a]).await;
                assert_eq!(a.hub.client_count(), 1);
                assert_eq!(a.hub.rooms(), ["r", "t"]);
            });
        }

        #[test]
        fn a_dead_node_drops_out_within_the_presence_timeout() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("dead");
                let timeout = Duration::from_millis(1000);
                let config = || RedisConfig::default().prefix(&p).presence_timeout(timeout);
                let a = node_with(&server.url(), config(), 0).await;
                let relay = Relay::start(server.port());
                let b = node_with(&relay.url(), config(), 0).await;
                let _x = a.member("x", &["r"]);
                let _y = b.member("y", &["r"]);
                settle(&[&a, &b]).await;
                assert_eq!(a.hub.room_size("r"), 2);
                // B is cut off without a word: no cleanup reaches Redis.
                relay.cut();
                let cut_at = Instant::now();
                let deadline = cut_at + timeout * 5;
                loop {
                    a.backend.sync().await.expect("sync");
                    if a.hub.client_count() == 1 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "the dead node still counts");
                    rt::sleep(Duration::from_millis(50)).await;
                }
                let gone_after = cut_at.elapsed();
                assert!(
                    gone_after <= timeout + Duration::from_millis(300),
                    "{gone_after:?}"
                );
                assert_eq!(a.hub.room_size("r"), 1);
                println!(
                    "{}: a dead node dropped out after {gone_after:?} (timeout {timeout:?})",
                    rt::NAME
                );
            });
        }

        #[test]
        fn last_event_id_replays_across_nodes() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("history");
                let (a, b) = (node(&server, &p, 10).await, node(&server, &p, 10).await);
                let mut x = a.member("x", &["feed"]);
                settle(&[&a, &b]).await;
                let mut ids = Vec::new();
                for text in ["e1", "e2", "e3"] {
                    b.hub.to_room("feed").text(text).expect("publish");
                }
                for text in ["e1", "e2", "e3"] {
                    let event = x.next().await;
                    assert_eq!(event.data, text);
                    let id: u64 = event.id.expect("an id").parse().expect("a numeric id");
                    ids.push(id);
                }
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
                drop(x);
                // Missed while away, on both nodes; one to several rooms, once.
                a.hub.to_room("feed").text("e4").expect("publish");
                // Publishers' broadcasts are ordered each on its own: e4 is in Redis first.
                a.backend.sync().await.expect("sync");
                b.hub
                    .to_rooms(["feed", "other"])
                    .text("e5")
                    .expect("publish");
                a.hub.to_room("other").text("not feed").expect("publish");
                settle(&[&a, &b]).await;
                // Back on the other node, with the last id it saw.
                let subscription = SseSubscription::new()
                    .room("feed")
                    .id("x")
                    .last_event_id(Some(&ids[2].to_string()));
                let mut back = Events::new(
                    b.hub
                        .subscribe_sse(rt::ws::runtime(), subscription)
                        .expect("subscribe"),
                );
                assert_eq!(next_data(&mut back).await, "e4");
                assert_eq!(next_data(&mut back).await, "e5");
                a.hub.to_room("feed").text("e6").expect("publish");
                let e6 = back.next().await;
                assert_eq!(e6.data, "e6");
                let e6_id: u64 = e6.id.expect("an id").parse().expect("numeric");
                assert!(e6_id > ids[2]);
                // Nothing twice: the fence is next.
                a.hub.to_room("feed").text("fence").expect("publish");
                assert_eq!(next_data(&mut back).await, "fence");
                // The stream keeps the history length.
                let len = server
                    .command(&[b"XLEN", format!("{p}:history:feed").as_bytes()])
                    .expect("XLEN");
                // e1 to e6 and the fence.
                assert_eq!(len, Reply::Integer(7));
            });
        }

        #[test]
        fn history_is_trimmed_to_its_length() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("trim");
                let a = node(&server, &p, 3).await;
                let mut x = a.member("x", &["feed"]);
                a.backend.sync().await.expect("sync");
                for i in 0..10 {
                    a.hub.to_room("feed").text(format!("{i}")).expect("publish");
                }
                let mut first = None;
                for i in 0..10 {
                    let event = x.next().await;
                    assert_eq!(event.data, format!("{i}"));
                    first.get_or_insert(event.id);
                }
                let key = format!("{p}:history:feed");
                assert_eq!(
                    server.command(&[b"XLEN", key.as_bytes()]).expect("XLEN"),
                    Reply::Integer(3)
                );
                let subscription = SseSubscription::new()
                    .room("feed")
                    .last_event_id(first.flatten().as_deref());
                let mut back = Events::new(
                    a.hub
                        .subscribe_sse(rt::ws::runtime(), subscription)
                        .expect("subscribe"),
                );
                for i in 7..10 {
                    assert_eq!(next_data(&mut back).await, format!("{i}"));
                }
            });
        }

        #[test]
        fn delivery_resumes_after_a_redis_restart() {
            let Some(mut server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("restart");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let mut x = a.member("x", &["r"]);
                let mut y = b.member("y", &["r"]);
                settle(&[&a, &b]).await;
                a.hub.to_room("r").text("before").expect("publish");
                assert_eq!(next_data(&mut y).await, "before");

                server.kill();
                // Made during the outage: the publishing node's own members still get it.
                a.hub.to_room("r").text("during").expect("publish");
                assert_eq!(next_data(&mut x).await, "before");
                assert_eq!(next_data(&mut x).await, "during");
                server.restart();
                let restarted = Instant::now();
                settle(&[&a, &b]).await;
                let resumed_after = restarted.elapsed();
                a.hub.to_room("r").text("after").expect("publish");
                // `during` never reached the other node; `after` does.
                assert_eq!(next_data(&mut y).await, "after");
                assert_eq!(next_data(&mut x).await, "after");
                for node in [&a, &b] {
                    let stats = node.backend.stats();
                    assert!(stats.connected);
                    assert!(stats.reconnects >= 1, "{stats:?}");
                }
                assert!(a.backend.stats().dropped >= 1, "{:?}", a.backend.stats());
                // Presence was written again.
                assert_eq!(a.hub.client_count(), 2);
                println!(
                    "{}: delivery resumed {resumed_after:?} after the restart",
                    rt::NAME
                );
            });
        }

        #[test]
        fn numbered_broadcasts_survive_a_restart_locally() {
            let Some(mut server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("restart-history");
                let a = node(&server, &p, 5).await;
                let mut x = a.member("x", &["feed"]);
                a.backend.sync().await.expect("sync");
                a.hub.to_room("feed").text("one").expect("publish");
                let one = x.next().await;
                server.kill();
                a.hub.to_room("feed").text("two").expect("publish");
                let two = x.next().await;
                assert_eq!(two.data, "two");
                let id = |e: &crate::http_sse::SseEvent| -> u64 {
                    e.id.as_deref().expect("id").parse().expect("numeric")
                };
                assert!(id(&two) > id(&one));
                server.restart();
                a.backend.sync().await.expect("sync");
                a.hub.to_room("feed").text("three").expect("publish");
                let three = x.next().await;
                assert_eq!(three.data, "three");
                assert!(id(&three) > id(&two));
            });
        }

        #[test]
        fn a_node_cut_off_catches_up_from_the_history() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("catch-up");
                let a = node(&server, &p, 10).await;
                let relay = Relay::start(server.port());
                let config = RedisConfig::default()
                    .prefix(&p)
                    .max_reconnect_delay(Duration::from_millis(100));
                let b = node_with(&relay.url(), config, 10).await;
                let mut y = b.member("y", &["feed"]);
                let mut z = b.member("z", &["quiet"]);
                settle(&[&a, &b]).await;
                a.hub.to_room("feed").text("e1").expect("publish");
                assert_eq!(next_data(&mut y).await, "e1");
                relay.cut();
                // Redis is up: these are numbered and kept in the stream, but B does not hear
                // them. (A's sync: they are in Redis before B comes back.)
                a.hub.to_room("feed").text("e2").expect("publish");
                a.hub.to_room("feed").text("e3").expect("publish");
                a.backend.sync().await.expect("sync");
                relay.resume();
                b.backend.sync().await.expect("sync after the reconnection");
                assert_eq!(next_data(&mut y).await, "e2");
                assert_eq!(next_data(&mut y).await, "e3");
                a.hub.to_room("feed").text("e4").expect("publish");
                a.hub.to_room("quiet").text("q").expect("publish");
                assert_eq!(next_data(&mut y).await, "e4");
                assert_eq!(next_data(&mut z).await, "q");
                let stats = b.backend.stats();
                assert_eq!((stats.replayed, stats.reconnects), (2, 1), "{stats:?}");
            });
        }

        /// The outage figures of the closing note, measured, not asserted: a publisher on A
        /// sends to room r every millisecond; Redis is killed after 1 s and started again 0.5 s
        /// later; the publisher stops at 3 s. Prints what B's member got, what was lost, and
        /// how long after the restart B's first delivery came, without and with a history.
        /// `cargo test -p tidings-tests --test hub_redis -- --ignored --nocapture outage`
        #[test]
        #[ignore = "a measurement; prints the outage figures"]
        fn outage_figures() {
            let Some(mut server) = redis_server::start() else { return };
            for history in [0, 100] {
                rt::run(GUARD, async {
                    let p = prefix("outage");
                    let a = node(&server, &p, history).await;
                    let b = node(&server, &p, history).await;
                    let mut x = a.member("x", &["r"]);
                    let mut y = b.member("y", &["r"]);
                    settle(&[&a, &b]).await;
                    let start = Instant::now();
                    let collect = |mut events: Events| {
                        rt::spawn(async move {
                            let mut got = Vec::new();
                            loop {
                                match rt::timeout(Duration::from_secs(3), events.next()).await {
                                    Some(e) => {
                                        let n: u64 = e.data.parse().expect("a number");
                                        got.push((n, start.elapsed()));
                                    }
                                    None => return got,
                                }
                            }
                        })
                    };
                    let (xs, ys) = (
                        collect(std::mem::replace(&mut x, a.member("x2", &[]))),
                        collect(std::mem::replace(&mut y, b.member("y2", &[]))),
                    );
                    let mut sent = 0u64;
                    let (mut killed_at, mut restarted_at) = (None, None);
                    while start.elapsed() < Duration::from_secs(3) {
                        a.hub.to_room("r").text(sent.to_string()).expect("publish");
                        sent += 1;
                        let now = start.elapsed();
                        if killed_at.is_none() && now >= Duration::from_secs(1) {
                            server.kill();
                            killed_at = Some(now);
                        }
                        if restarted_at.is_none() && now >= Duration::from_millis(1500) {
                            server.restart();
                            restarted_at = Some(start.elapsed());
                        }
                        rt::sleep(Duration::from_millis(1)).await;
                    }
                    let (xs, ys) = (xs.await, ys.await);
                    let restarted = restarted_at.expect("restarted");
                    let first_after = ys
                        .iter()
                        .find(|(_, at)| *at > restarted)
                        .map(|(_, at)| *at - restarted);
                    let lost: Vec<u64> = {
                        let got: std::collections::HashSet<u64> =
                            ys.iter().map(|(n, _)| *n).collect();
                        (0..sent).filter(|n| !got.contains(n)).collect()
                    };
                    println!(
                        "{} history {history}: sent {sent} (1/ms); killed at {:?}, restarted at {restarted:?}; \
                         A's own member got {}; B's member got {}, lost {} ({:?}..={:?}); \
                         B's first delivery {:?} after the restart; A {:?}; B {:?}",
                        rt::NAME,
                        killed_at.expect("killed"),
                        xs.len(),
                        ys.len(),
                        lost.len(),
                        lost.first(),
                        lost.last(),
                        first_after,
                        a.backend.stats(),
                        b.backend.stats(),
                    );
                });
            }
        }

        #[test]
        fn foreign_messages_on_our_channels_are_dropped() {
            let Some(server) = redis_server::start() else {
                return;
            };
            rt::run(GUARD, async {
                let p = prefix("foreign");
                let (a, b) = (node(&server, &p, 0).await, node(&server, &p, 0).await);
                let mut x = a.member("x", &["s"]);
                let mut y = b.member("y", &["r"]);
                settle(&[&a, &b]).await;
                let room = format!("{p}:room:r");
                let all = format!("{p}:all");
                let junk: [&[u8]; 4] = [
                    b"hello",
                    b"tdg1 12 \x07",
                    b"tdg1 x ",
                    b"tdg1 0 \x00\x01\xff",
                ];
                for message in junk {
                    for channel in [&room, &all] {
                        let reply = server
                            .command(&[b"PUBLISH", channel.as_bytes(), message])
                            .expect("PUBLISH");
                        assert_eq!(reply, Reply::Integer(if channel == &all { 2 } else { 1 }));
                    }
                }
                a.hub.to_room("r").text("still fine").expect("publish");
                assert_eq!(next_data(&mut y).await, "still fine");
                b.hub.to_all().text("fence").expect("publish");
                assert_eq!(next_data(&mut x).await, "fence");
                assert_eq!(b.backend.stats().malformed, 8);
                assert_eq!(a.backend.stats().malformed, 4);
            });
        }

        #[test]
        fn unreachable_redis_at_start_is_an_error() {
            rt::run(GUARD, async {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                let url = format!("redis://127.0.0.1:{port}");
                let error = RedisBackend::connect(&url, RedisConfig::default(), rt::ws::runtime())
                    .await
                    .expect_err("nothing listens there");
                assert!(matches!(error, RedisBackendError::Connect(_)), "{error:?}");
                assert!(
                    error.to_string().starts_with("cannot connect to Redis"),
                    "{error}"
                );
                let error =
                    RedisBackend::connect("http://nope", RedisConfig::default(), rt::ws::runtime())
                        .await
                        .expect_err("not a Redis URL");
                assert!(matches!(error, RedisBackendError::Url(_)), "{error:?}");
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
