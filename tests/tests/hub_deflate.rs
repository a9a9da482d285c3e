//! Broadcasts compressed once (`HubConfig::deflate`), on both runtimes: what each kind of client
//! gets on the wire. A client that negotiated permessage-deflate without server context takeover
//! gets the frame compressed once for everyone (RSV1 set, fewer bytes); one with context takeover
//! and one without the extension get the plain frame; our own client decodes it.

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::time::Duration;

        use rt::ws::hub::{Admission, Client, Hub, HubConfig, Message, handler_fn};
        use rt::ws::server::Server;
        use rt::ws::{Config, ConnectOptions, DeflateConfig, UpgradeRequest};
        use tidings_core::{OpCode, RSV1};

        const GUARD: Duration = Duration::from_secs(30);

        /// A repetitive text well over the deflate threshold.
        fn big_text() -> String {
            "{\"type\":\"chat\",\"text\":\"the same words again and again\"}".repeat(40)
        }

        #[test]
        fn a_broadcast_is_compressed_once_for_no_context_takeover_clients_only() {
            rt::run(GUARD, async {
                let hub = Hub::builder()
                    .config(HubConfig::default().deflate(Some(DeflateConfig::new())))
                    .on_connect(|client| {
                        let _ = client.send_text("welcome");
                    })
                    .build();
                let route = hub.route(|_req: &UpgradeRequest<'_>| {
                    Ok(Admission::new(handler_fn(
                        |_c: Client, _m: Message| async { Ok(()) },
                    )))
                });
                let listening = Server::new()
                    .config(Config::default().deflate(Some(DeflateConfig::new())))
                    .route("/", route)
                    .bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let port = listening.local_addr().port();
                let _server = rt::spawn(listening.serve());

                let ext = "Sec-WebSocket-Extensions";
                let nct =
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
                let (mut shared, answer) = rt::Raw::client(port, "/", &[(ext, nct)]).await;
                let answer = answer.expect("101");
                assert!(!answer.extensions.is_empty(), "deflate agreed");
                let (mut takeover, answer) =
                    rt::Raw::client(port, "/", &[(ext, "permessage-deflate")]).await;
                assert!(!answer.expect("101").extensions.is_empty());
                let (mut plain, answer) = rt::Raw::client(port, "/", &[]).await;
                assert!(answer.expect("101").extensions.is_empty());
                let options = ConnectOptions::new()
                    .config(Config::default().deflate(Some(DeflateConfig::no_context_takeover())));
                let (mut ours, _) =
                    rt::ws::connect_with(&format!("ws://127.0.0.1:{port}/"), &options)
                        .await
                        .expect("connect");

                // Each is registered once it has its welcome (below the threshold: plain).
                for raw in [&mut shared, &mut takeover, &mut plain] {
                    let welcome = raw.expect_frame().await;
                    assert_eq!(welcome.payload, b"welcome");
                    assert_eq!(welcome.header.rsv, 0);
                }
                let welcome = ours.recv().await.expect("open").expect("message");
                assert_eq!(welcome.as_text(), Some("welcome"));
                assert_eq!(hub.client_count(), 4);

                let text = big_text();
                assert_eq!(hub.to_all().text(text.clone()).expect("broadcast"), 4);
                let compressed = shared.expect_frame().await;
                assert_eq!(compressed.header.opcode, OpCode::Text);
                assert_eq!(compressed.header.rsv, RSV1, "compressed for the nct client");
                assert!(
                    compressed.payload.len() < text.len() / 4,
                    "{} compressed bytes for {}",
                    compressed.payload.len(),
                    text.len()
                );
                for raw in [&mut takeover, &mut plain] {
                    let frame = raw.expect_frame().await;
                    assert_eq!(frame.header.rsv, 0, "plain for the others");
                    assert_eq!(frame.payload, text.as_bytes());
                }
                let got = ours.recv().await.expect("open").expect("message");
                assert_eq!(got.as_text(), Some(text.as_str()), "decoded by our client");

                // A second compressed broadcast decodes independently of the first (no context
                // is carried between them): our client checks it.
                let second = format!("{}{}", big_text(), "tail");
                hub.to_all().text(second.clone()).expect("broadcast");
                let frame = shared.expect_frame().await;
                assert_eq!(frame.header.rsv, RSV1);
                let got = ours.recv().await.expect("open").expect("message");
                assert_eq!(got.as_text(), Some(second.as_str()));
                hub.close();
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
