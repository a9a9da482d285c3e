//! What users of tokio-tungstenite and axum expect to find, over real loopback sockets on both
//! runtimes: messages made with `.into()`, and — once `recv` has ended — the close code and
//! reason, who closed, and whether it was clean, from the error (`Error::close_code`) and from
//! every handle (`WebSocket`, `ReadHalf`, `WriteHalf`: `close_outcome`).
//!
//! Every test is written once in `suite!` and expanded for tokio and smol. Nothing sleeps: each
//! wait is on an event (a message, the end of `recv`, EOF), bounded by the test's overall timeout.

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::time::Duration;

        use futures_util::future::join;
        use tidings_tests::op;

        use rt::ws::core::{ConnectionError, Initiator, ProtocolError};
        use rt::ws::{
            self, AcceptOptions, CloseCode, CloseFrame, Config, ConnectOptions, Error, Message,
            WebSocket,
        };

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(20);

        /// Our client and our server over loopback; the server runs with `server_config`.
        async fn ours(server_config: Config) -> (WebSocket, WebSocket) {
            let (listener, port) = rt::bind().await;
            let server = rt::spawn(async move {
                let tcp = listener.accept().await;
                ws::accept_with(tcp, &server_config, |_| Ok(AcceptOptions::new())).await
            });
            let url = format!("ws://127.0.0.1:{port}/");
            let (client, _) = ws::connect_with(&url, &ConnectOptions::new())
                .await
                .expect("connect");
            (client, server.await.expect("accept"))
        }

        /// Our server facing a hand-made client over plain TCP.
        async fn ours_facing_raw_client() -> (WebSocket, rt::Raw) {
            let (listener, port) = rt::bind().await;
            let server = rt::spawn(async move {
                let tcp = listener.accept().await;
                ws::accept(tcp).await
            });
            let (raw, answer) = rt::Raw::client(port, "/", &[]).await;
            answer.expect("101");
            (server.await.expect("accept"), raw)
        }

        #[test]
        fn messages_made_with_into_arrive_as_their_kind() {
            rt::run(GUARD, async {
                let (mut client, mut server) = ours(Config::default()).await;
                client.send("text from &str".into()).await.expect("send");
                client
                    .send(String::from("text from String").into())
                    .await
                    .expect("send");
                client.send(vec![1u8, 2, 3].into()).await.expect("send");
                client.send((&[4u8, 5][..]).into()).await.expect("send");
                client
                    .send(bytes::Bytes::from_static(b"\xff").into())
                    .await
                    .expect("send");

                let mut got = Vec::new();
                for _ in 0..5 {
                    got.push(server.recv().await.expect("open").expect("message"));
                }
                assert!(got[0].is_text() && got[1].is_text(), "{got:?}");
                assert_eq!(got[0].as_text(), Some("text from &str"));
                assert_eq!(got[1].as_text(), Some("text from String"));
                assert!(got[2..].iter().all(Message::is_binary), "{got:?}");
                assert_eq!(got[2].as_bytes(), [1, 2, 3]);
                assert_eq!(got[3].as_bytes(), [4, 5]);
                assert_eq!(got[4].as_bytes(), [0xff]);
                // A binary message whose payload is UTF-8 reads as text on request.
                let echoed = Message::from(b"caf\xc3\xa9".to_vec());
                assert_eq!(echoed.into_text().map(|t| t.to_string()), Ok("café".into()));
            });
        }

        /// A clean close with an application code is not an error: `recv` ends with `None`, and
        /// the reader — whole or split — learns the code, the reason, that the peer started it
        /// and that it was clean.
        #[test]
        fn reader_learns_the_peers_close_code_and_reason_after_a_clean_close() {
            rt::run(GUARD, async {
                let (client, mut server) = ours(Config::default()).await;
                let (mut read, write) = client.split();
                let closing = server.close(CloseCode::new(4001), "room closed");
                let (outcome, end) = join(closing, read.recv()).await;
                assert!(end.is_none(), "a clean close ends recv with None: {end:?}");

                let ours = outcome.expect("server close");
                assert_eq!(ours.initiator, Initiator::Local);
                assert!(ours.clean && ours.error.is_none(), "{ours:?}");
                assert_eq!(
                    ours.code,
                    CloseCode::new(4001),
                    "the client echoed the code"
                );

                let theirs = read.close_outcome().expect("the reader knows the outcome");
                assert_eq!(theirs.code, CloseCode::new(4001));
                assert_eq!(theirs.reason, "room closed");
                assert_eq!(theirs.initiator, Initiator::Remote);
                assert!(theirs.clean && theirs.error.is_none(), "{theirs:?}");
                assert!(!theirs.is_normal(), "4001 is not a normal close");
                assert_eq!(theirs.sent, Some(CloseFrame::new(CloseCode::new(4001), "")));
                assert_eq!(write.close_outcome(), Some(theirs.clone()));

                // The writer's next send says the connection is closed; its outcome is the same.
                let mut write = write;
                let err = write.send("late".into()).await.expect_err("closed");
                assert!(err.is_closed(), "{err:?}");
                assert_eq!(err.close_code(), None, "misuse carries no close code");
                let client = WebSocket::reunite(read, write).expect("same connection");
                assert_eq!(client.close_outcome(), Some(theirs));
            });
        }

        /// A protocol violation: the failing side's `recv` returns the error once, carrying
        /// the code it closed with; the other side sees a clean close with that code.
        #[test]
        fn recv_error_of_a_protocol_violation_carries_the_code_sent() {
            rt::run(GUARD, async {
                let config = Config::default().max_message_size(Some(10));
                let (mut client, server) = ours(config).await;
                let (mut read, _write) = server.split();
                client.send(vec![0u8; 11].into()).await.expect("send");
                let (server_end, client_end) = join(read.recv(), client.recv()).await;

                let err = match server_end {
                    Some(Err(err)) => err,
                    other => panic!("expected the connection's error, got {other:?}"),
                };
                assert_eq!(err.close_code(), Some(CloseCode::MESSAGE_TOO_BIG), "{err}");
                assert!(
                    matches!(
                        &err,
                        Error::Connection(ConnectionError::Protocol(
                            ProtocolError::MessageTooLarge { .. }
                        ))
                    ),
                    "{err:?}"
                );
                assert!(read.recv().await.is_none(), "one error, then None");
                let failed = read.close_outcome().expect("outcome");
                assert_eq!(failed.initiator, Initiator::Local);
                assert!(!failed.clean && failed.is_error(), "{failed:?}");
                assert_eq!(
                    failed.sent.map(|f| f.code),
                    Some(CloseCode::MESSAGE_TOO_BIG)
                );

                assert!(client_end.is_none(), "{client_end:?}");
                let told = client.close_outcome().expect("client outcome");
                assert_eq!(told.code, CloseCode::MESSAGE_TOO_BIG);
                assert_eq!(told.initiator, Initiator::Remote);
                assert!(told.error.is_none(), "{told:?}");
            });
        }

        /// The peer's TCP connection ends without a close frame: the error and the outcome say
        /// 1006 (abnormal closure), the peer gone, nothing clean.
        #[test]
        fn recv_error_of_a_vanished_peer_is_1006() {
            rt::run(GUARD, async {
                let (server, mut raw) = ours_facing_raw_client().await;
                let (mut read, _write) = server.split();
                raw.send_frame(true, op::TEXT, b"last words").await;
                raw.shutdown().await;
                let last = read.recv().await.expect("open").expect("message");
                assert_eq!(last.as_text(), Some("last words"));

                let err = match read.recv().await {
                    Some(Err(err)) => err,
                    other => panic!("expected the connection's error, got {other:?}"),
                };
                assert_eq!(err.close_code(), Some(CloseCode::ABNORMAL), "{err}");
                assert!(
                    matches!(err, Error::Connection(ConnectionError::UnexpectedEof)),
                    "{err:?}"
                );
                let outcome = read.close_outcome().expect("outcome");
                assert_eq!(outcome.code, CloseCode::ABNORMAL);
                assert_eq!(outcome.initiator, Initiator::Remote);
                assert!(!outcome.clean, "{outcome:?}");
                assert_eq!(outcome.error, Some(ConnectionError::UnexpectedEof));
            });
        }

        /// The peer's close frame without a status code: recv ends cleanly and the outcome says
        /// 1005 (no status), as RFC 6455 §7.1.5 defines it.
        #[test]
        fn close_without_a_code_is_reported_as_1005() {
            rt::run(GUARD, async {
                let (mut server, mut raw) = ours_facing_raw_client().await;
                raw.send_frame(true, op::CLOSE, &[]).await;
                let (end, reply) = join(server.recv(), raw.next_frame()).await;
                assert!(end.is_none(), "{end:?}");
                let reply = reply.expect("the close reply");
                assert_eq!(reply.header.opcode, rt::ws::core::OpCode::Close);
                let outcome = server.close_outcome().expect("outcome");
                assert_eq!(outcome.code, CloseCode::NO_STATUS);
                assert_eq!(outcome.initiator, Initiator::Remote);
                assert!(outcome.clean, "{outcome:?}");
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
