//! Interop with an independent implementation, async-tungstenite, in both directions on both
//! runtimes: our client against its server, its client against our server. Text, binary, 1 MiB
//! messages, fragmented messages (its client writes raw frames; towards its server our sans-IO
//! core streams fragments over a plain TCP stream), pings, and close codes from either side; and,
//! as it has no permessage-deflate, the fallback to plain frames when ours has compression on.
//!
//! Each test is written once in `suite!` and expanded for tokio and smol.

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::time::{Duration, Instant};

        use async_tungstenite::tungstenite;
        use futures_util::future::join;
        use futures_util::{SinkExt, StreamExt};
        use tidings_tests::adapter_suite::{binary_payload, raw_request, text_payload};
        use tungstenite::Message as TheirMessage;
        use tungstenite::protocol::CloseFrame as TheirCloseFrame;
        use tungstenite::protocol::frame::Frame;
        use tungstenite::protocol::frame::coding::{CloseCode as TheirCloseCode, Data, OpCode};

        use rt::ws::core::Initiator;
        use rt::ws::{self, CloseCode, CloseOutcome, Message, MessageKind, WebSocket};

        const GUARD: Duration = Duration::from_secs(20);
        const MIB: usize = 1 << 20;

        fn url(port: u16) -> String {
            format!("ws://127.0.0.1:{port}/")
        }

        fn their_close(code: u16, reason: &'static str) -> TheirCloseFrame {
            TheirCloseFrame {
                code: TheirCloseCode::from(code),
                reason: reason.into(),
            }
        }

        /// Our echo: every message back until the connection ends; returns how it ended.
        async fn our_echo(mut ws: WebSocket) -> Option<CloseOutcome> {
            while let Some(Ok(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            ws.close_outcome()
        }

        /// Messages we send and expect back, as (kind, bytes).
        fn samples() -> Vec<Message> {
            vec![
                Message::text("hello"),
                Message::text(""),
                Message::binary(vec![0u8, 1, 2, 255]),
                Message::text("ünïcödé ✓"),
                Message::binary(binary_payload(MIB, 5)),
                Message::text(text_payload(MIB)),
            ]
        }

        fn to_theirs(m: &Message) -> TheirMessage {
            match m.kind() {
                MessageKind::Text => TheirMessage::text(m.as_text().expect("text").to_owned()),
                MessageKind::Binary => TheirMessage::binary(m.as_bytes().to_vec()),
            }
        }

        fn from_theirs(m: TheirMessage) -> Message {
            match m {
                TheirMessage::Text(t) => Message::text(t.as_str().to_owned()),
                TheirMessage::Binary(b) => Message::binary(b),
                other => panic!("expected a data message, got {other:?}"),
            }
        }

        /// Their server: accepts one connection and echoes data messages until the connection
        /// ends; returns the close frame it received, if any.
        /// Sends every sample from our side and checks each echo.
        async fn our_samples_echoed(ours: &mut WebSocket) {
            for m in samples() {
                ours.send(m.clone()).await.expect("send");
                let back = ours.recv().await.expect("open").expect("echo");
                assert!(
                    back == m,
                    "{:?} message of {} bytes differs",
                    m.kind(),
                    m.len()
                );
            }
        }

        /// Sends every sample from their client and checks each echo.
        async fn their_samples_echoed<T>(theirs: &mut T)
        where
            T: futures_util::Sink<TheirMessage, Error = tungstenite::Error>
                + futures_util::Stream<Item = Result<TheirMessage, tungstenite::Error>>
                + Unpin,
        {
            for m in samples() {
                theirs.send(to_theirs(&m)).await.expect("send");
                let back = from_theirs(theirs.next().await.expect("open").expect("echo"));
                assert!(
                    back == m,
                    "{:?} message of {} bytes differs",
                    m.kind(),
                    m.len()
                );
            }
        }

        fn their_echo_server(listener: rt::Listener) -> rt::Join<Option<TheirCloseFrame>> {
            rt::spawn(async move {
                let mut theirs = rt::their_accept(listener.accept().await).await;
                let mut close = None;
                while let Some(Ok(message)) = theirs.next().await {
                    let data = match message {
                        TheirMessage::Close(frame) => {
                            close = frame;
                            continue;
                        }
                        data @ (TheirMessage::Text(_) | TheirMessage::Binary(_)) => data,
                        _ => continue,
                    };
                    if theirs.send(data).await.is_err() {
                        break;
                    }
                }
                close
            })
        }

        // ---- permessage-deflate ------------------------------------------------------

        /// async-tungstenite has no permessage-deflate: with compression on, our side offers
        /// or accepts it and, the other side declining or not offering, both fall back to plain
        /// frames in both directions.
        #[test]
        fn with_deflate_on_we_fall_back_to_plain_frames_with_them() {
            rt::run(GUARD, async {
                let config = ws::Config::default().deflate(Some(ws::DeflateConfig::new()));
                // Our client (offering) against their server (ignoring the offer).
                let (listener, port) = rt::bind().await;
                let server = their_echo_server(listener);
                let options = ws::ConnectOptions::new().config(config.clone());
                let (mut ours, response) = ws::connect_with(&url(port), &options)
                    .await
                    .expect("connect");
                assert!(response.extensions.is_empty());
                assert_eq!(ours.extensions(), None);
                our_samples_echoed(&mut ours).await;
                ours.close(CloseCode::NORMAL, "").await.expect("close");
                server.await;

                // Their client (not offering) against our server (compression on).
                let (listener, port) = rt::bind().await;
                let server = rt::spawn(async move {
                    let ws = ws::accept_with(listener.accept().await, &config, |_| {
                        Ok(ws::AcceptOptions::new())
                    })
                    .await
                    .expect("accept");
                    assert_eq!(ws.extensions(), None);
                    our_echo(ws).await
                });
                let mut theirs = rt::their_connect(&url(port)).await;
                their_samples_echoed(&mut theirs).await;
                theirs.close(None).await.expect("close");
                while let Some(Ok(_)) = theirs.next().await {}
                assert!(server.await.expect("outcome").clean);
            });
        }

        // ---- our client, their server -----------------------------------------------

        #[test]
        fn our_client_against_their_server_echo_and_ping() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = their_echo_server(listener);
                let mut ours = ws::connect(&url(port)).await.expect("connect");
                our_samples_echoed(&mut ours).await;
                // Their side answers our pings.
                ours.ping().await.expect("pong from async-tungstenite");

                let outcome = ours.close(CloseCode::new(4001), "x").await.expect("close");
                assert!(outcome.clean, "{outcome:?}");
                assert_eq!(outcome.code, CloseCode::new(4001), "{outcome:?}");
                assert_eq!(outcome.initiator, Initiator::Local);
                let seen = server.await.expect("their server saw a close frame");
                assert_eq!(u16::from(seen.code), 4001);
                assert_eq!(seen.reason.as_str(), "x");
            });
        }

        #[test]
        fn their_server_closing_with_a_code_reaches_our_client() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = rt::spawn(async move {
                    let mut theirs = rt::their_accept(listener.accept().await).await;
                    let hello = theirs.next().await.expect("open").expect("hello");
                    assert_eq!(hello, TheirMessage::text("hello"));
                    theirs
                        .close(Some(their_close(4001, "x")))
                        .await
                        .expect("close");
                    // Read our reply; the stream then ends.
                    while let Some(Ok(_)) = theirs.next().await {}
                });
                let mut ours = ws::connect(&url(port)).await.expect("connect");
                ours.send_text("hello").await.expect("send");
                // Our client keeps the socket after recv ended; the close reply goes out anyway.
                let end = ours.recv().await;
                assert!(end.is_none(), "{end:?}");
                let outcome = ours.close_outcome().expect("outcome");
                assert!(outcome.clean, "{outcome:?}");
                assert_eq!(outcome.code, CloseCode::new(4001));
                assert_eq!(outcome.reason, "x");
                assert_eq!(outcome.initiator, Initiator::Remote);
                server.await;
                assert!(ours.is_closed());
            });
        }

        /// Fragments towards their server, written by our sans-IO core over a plain TCP
        /// stream (the adapters send whole messages).
        #[test]
        fn fragments_from_our_core_reach_their_server() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = their_echo_server(listener);
                let tcp = rt::connect(port).await;
                let request = raw_request(&format!("127.0.0.1:{port}"), "/", &[]);
                let (mut raw, answer) = rt::Raw::client_over(tcp, &request, &[]).await;
                answer.expect("101 from async-tungstenite");

                let now = Instant::now();
                let mut core =
                    tidings_core::Connection::client(tidings_core::Config::default(), now);
                let text = "fragmented ünïcödé".as_bytes();
                // Split inside the two-byte characters.
                core.send_fragment(MessageKind::Text, &text[..12], false)
                    .expect("fragment");
                core.send_ping(now, b"between").expect("ping");
                core.send_fragment(MessageKind::Text, &text[12..14], false)
                    .expect("fragment");
                core.send_fragment(MessageKind::Text, &text[14..], true)
                    .expect("fragment");
                let data = binary_payload(MIB + 3, 9);
                for (i, piece) in data.chunks(100_000).enumerate() {
                    core.send_fragment(MessageKind::Binary, piece, false)
                        .expect("fragment");
                    if i == 3 {
                        core.send_ping(now, b"").expect("ping");
                    }
                }
                core.send_fragment(MessageKind::Binary, &[], true)
                    .expect("last fragment");
                let mut out = Vec::new();
                core.poll_transmit(&mut out);
                raw.send(&out).await;

                let mut messages = Vec::new();
                let mut pongs = 0;
                while messages.len() < 2 {
                    for e in tidings_tests::drain_events(&mut core) {
                        match e {
                            tidings_core::Event::Message(m) => messages.push(m),
                            tidings_core::Event::Pong(_) => pongs += 1,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    if messages.len() < 2 {
                        assert!(raw.fill().await, "EOF before the echoes");
                        core.receive(now, &raw.take_buffered());
                    }
                }
                assert_eq!(messages[0].as_text(), Some("fragmented ünïcödé"));
                assert!(
                    messages[1].as_bytes() == data.as_slice(),
                    "binary echo differs"
                );
                assert!(pongs <= 2);

                core.close(now, CloseCode::new(4001), "x").expect("close");
                out.clear();
                core.poll_transmit(&mut out);
                raw.send(&out).await;
                let seen = server.await.expect("their server saw a close frame");
                assert_eq!(u16::from(seen.code), 4001);
                assert_eq!(seen.reason.as_str(), "x");
            });
        }

        // ---- their client, our server -----------------------------------------------

        #[test]
        fn their_client_against_our_server_echo_and_fragments() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = rt::spawn(async move {
                    let ws = ws::accept(listener.accept().await).await.expect("accept");
                    our_echo(ws).await
                });
                let mut theirs = rt::their_connect(&url(port)).await;
                their_samples_echoed(&mut theirs).await;

                // Their client writes raw frames: a text message in three fragments (split
                // inside a character) with a ping between them, then a binary one.
                let text = "ünïcödé fragments".as_bytes();
                let frames = [
                    Frame::message(text[..1].to_vec(), OpCode::Data(Data::Text), false),
                    Frame::ping(b"ping in between".to_vec()),
                    Frame::message(text[1..5].to_vec(), OpCode::Data(Data::Continue), false),
                    Frame::message(text[5..].to_vec(), OpCode::Data(Data::Continue), true),
                    Frame::message(vec![1u8; 70_000], OpCode::Data(Data::Binary), false),
                    Frame::message(vec![2u8; 70_000], OpCode::Data(Data::Continue), true),
                ];
                for frame in frames {
                    theirs
                        .send(TheirMessage::Frame(frame))
                        .await
                        .expect("send frame");
                }
                let mut got = Vec::new();
                while got.len() < 2 {
                    match theirs.next().await.expect("open").expect("message") {
                        TheirMessage::Pong(p) => assert_eq!(&p[..], b"ping in between"),
                        m => got.push(from_theirs(m)),
                    }
                }
                assert_eq!(got[0].as_text(), Some("ünïcödé fragments"));
                let mut expected = vec![1u8; 70_000];
                expected.extend([2u8; 70_000]);
                assert!(got[1].as_bytes() == expected.as_slice(), "binary differs");

                // Their client closes with 4001 "x".
                theirs
                    .close(Some(their_close(4001, "x")))
                    .await
                    .expect("close");
                while let Some(Ok(_)) = theirs.next().await {}
                let outcome = server.await.expect("server outcome");
                assert!(outcome.clean, "{outcome:?}");
                assert_eq!(outcome.code, CloseCode::new(4001));
                assert_eq!(outcome.reason, "x");
                assert_eq!(outcome.initiator, Initiator::Remote);
            });
        }

        #[test]
        fn our_server_closing_with_a_code_reaches_their_client() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = rt::spawn(async move {
                    let mut ours = ws::accept(listener.accept().await).await.expect("accept");
                    let hello = ours.recv().await.expect("open").expect("hello");
                    assert_eq!(hello.as_text(), Some("hello"));
                    ours.close(CloseCode::new(4001), "x").await.expect("close")
                });
                let mut theirs = rt::their_connect(&url(port)).await;
                theirs
                    .send(TheirMessage::text("hello"))
                    .await
                    .expect("send");
                let their_side = async {
                    let mut close = None;
                    while let Some(Ok(m)) = theirs.next().await {
                        if let TheirMessage::Close(frame) = m {
                            close = frame;
                        }
                    }
                    close
                };
                let (seen, outcome) = join(their_side, server).await;
                let seen = seen.expect("their client saw a close frame");
                assert_eq!(u16::from(seen.code), 4001);
                assert_eq!(seen.reason.as_str(), "x");
                assert!(outcome.clean, "{outcome:?}");
                assert_eq!(outcome.code, CloseCode::new(4001));
                assert_eq!(outcome.initiator, Initiator::Local);
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
