//! The hub (`tidings-hub`) over real loopback sockets, on both runtimes: every test is written
//! once in `suite!` and expanded into `mod tokio_suite` and `mod smol_suite`.
//!
//! Nothing sleeps to synchronise: tests wait on events (a message, the hub going idle, a hook
//! firing), each bounded by the test's overall timeout.

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::time::Duration;

        use rt::ws::hub::{Admission, Client, Hub, HubConfig, Message, handler_fn};
        use rt::ws::server::{Listening, Server};
        use rt::ws::{UpgradeRequest, WebSocket};

        const GUARD: Duration = Duration::from_secs(30);

        /// A server helper on a free loopback port with `hub` at `/ws`, every message of a
        /// client broadcast to the others; its address.
        async fn fanout_server(hub: &Hub) -> (Listening, String) {
            let fanout = hub.clone();
            let route = hub.route(move |_req: &UpgradeRequest<'_>| {
                let hub = fanout.clone();
                Ok(Admission::new(handler_fn(
                    move |client: Client, message: Message| {
                        let sent = hub.to_all().except(client.id()).send(message);
                        async move {
                            sent?;
                            Ok(())
                        }
                    },
                )))
            });
            let listening = Server::new()
                .route("/ws", route)
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("ws://{}/ws", listening.local_addr());
            (listening, url)
        }

        async fn connect(url: &str) -> WebSocket {
            rt::ws::connect(url).await.expect("connect")
        }

        async fn recv_text(ws: &mut WebSocket) -> String {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) => text.to_string(),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        #[test]
        fn broadcast_reaches_every_other_client_and_disconnects_clean_up() {
            rt::run(GUARD, async {
                let hub = Hub::with_config(HubConfig::default());
                let (listening, url) = fanout_server(&hub).await;
                let _server = rt::spawn(listening.serve());
                let mut a = connect(&url).await;
                let mut b = connect(&url).await;
                let mut c = connect(&url).await;
                // The hub counts a client once its route ran; a round trip through each proves
                // all three are registered.
                for ws in [&mut a, &mut b, &mut c] {
                    ws.send_text("hello").await.expect("send");
                }
                // Each receives the other two's "hello".
                for ws in [&mut a, &mut b, &mut c] {
                    assert_eq!(recv_text(ws).await, "hello");
                    assert_eq!(recv_text(ws).await, "hello");
                }
                assert_eq!(hub.client_count(), 3);
                a.send_text("from a").await.expect("send");
                assert_eq!(recv_text(&mut b).await, "from a");
                assert_eq!(recv_text(&mut c).await, "from a");
                for mut ws in [a, b, c] {
                    ws.close(rt::ws::CloseCode::NORMAL, "")
                        .await
                        .expect("close");
                }
                hub.idle().await;
                assert_eq!(hub.client_count(), 0);
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
