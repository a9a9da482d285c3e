//! One behavioural suite over real loopback sockets, run against both adapters: every test is
//! written once in `suite!` and expanded into `mod tokio_suite` and `mod smol_suite`, each with
//! its runtime's shims (`tidings_tests::runtime_shims!`).
//!
//! The other end is either our own adapter (client ↔ server) or a raw peer that writes hand-made
//! frames and reads the wire back frame by frame, so that what went over the wire (a pong's
//! payload, a close frame's code) is checked, not just what the API reports. Tests that take a
//! `role` run with our side as the server and as the client.
//!
//! Nothing sleeps to synchronise: every wait is on an event (a frame, a message, EOF), bounded by
//! the test's overall timeout. Timers appear only as cancellation triggers and as the keepalive
//! under test (on tokio, a paused clock).

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::future::Future;
        use std::pin::{Pin, pin};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::task::{Context, Poll, Waker};
        use std::time::Duration;

        use futures_util::future::{Either, join, select};
        use futures_util::{SinkExt, StreamExt};
        use serde::{Deserialize, Serialize};
        use tidings_core::OpCode;
        use tidings_tests::adapter_suite::{ECHO_SIZES, binary_payload, raw_request, text_payload};
        use tidings_tests::{WireFrame, op};

        use rt::ws::core::ConnectionError;
        use rt::ws::core::Initiator;
        use rt::ws::core::handshake::HandshakeError;
        use rt::ws::{
            self, AcceptOptions, CloseCode, CloseFrame, CloseOutcome, Config, ConnectOptions,
            Error, Event, Message, MessageKind, Rejection, Role, UpgradeRequest, WebSocket,
        };

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(20);
        const ROLES: [Role; 2] = [Role::Server, Role::Client];

        fn url(port: u16) -> String {
            format!("ws://127.0.0.1:{port}/")
        }

        /// Polls `fut` once with a waker that does nothing.
        fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
            fut.poll(&mut Context::from_waker(Waker::noop()))
        }

        /// Our server accepting one connection with `config` and `callback`.
        fn serve_once<F>(
            listener: rt::Listener,
            config: Config,
            callback: F,
        ) -> rt::Join<Result<WebSocket, Error>>
        where
            F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection> + Send + 'static,
        {
            rt::spawn(async move {
                let tcp = listener.accept().await;
                ws::accept_with(tcp, &config, callback).await
            })
        }

        /// Our client and our server, connected over loopback.
        async fn ours(server_config: Config, options: ConnectOptions) -> (WebSocket, WebSocket) {
            let (listener, port) = rt::bind().await;
            let server = serve_once(listener, server_config, |_| Ok(AcceptOptions::new()));
            let (client, _) = ws::connect_with(&url(port), &options)
                .await
                .expect("connect");
            (client, server.await.expect("accept"))
        }

        /// Our side in `role` with `config`, facing a raw peer.
        async fn facing_raw(role: Role, config: Config) -> (WebSocket, rt::Raw) {
            let (listener, port) = rt::bind().await;
            match role {
                Role::Server => {
                    let server = serve_once(listener, config, |_| Ok(AcceptOptions::new()));
                    let (raw, answer) = rt::Raw::client(port, "/", &[]).await;
                    answer.expect("101");
                    (server.await.expect("accept"), raw)
                }
                Role::Client => {
                    let client = rt::spawn(async move {
                        let options = ConnectOptions::new().config(config);
                        ws::connect_with(&url(port), &options)
                            .await
                            .expect("connect")
                            .0
                    });
                    let raw = rt::Raw::server(&listener, &[]).await;
                    (client.await, raw)
                }
            }
        }

        /// The application's last `recv`: returns what it gave and how the connection ended, and
        /// lets go of the socket, as a handler that returns does.
        async fn last_recv(
            mut ws: WebSocket,
        ) -> (Option<Result<Message, Error>>, Option<CloseOutcome>) {
            let end = ws.recv().await;
            (end, ws.close_outcome())
        }

        /// Reunites halves that must belong together (the error side is not `Debug`).
        fn reunite(read: rt::ws::ReadHalf, write: rt::ws::WriteHalf) -> WebSocket {
            match WebSocket::reunite(read, write) {
                Ok(ws) => ws,
                Err(_) => panic!("halves of one connection did not reunite"),
            }
        }

        /// Echoes every message until the connection ends; returns how it ended.
        async fn echo(mut ws: WebSocket) -> Option<CloseOutcome> {
            while let Some(Ok(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            ws.close_outcome()
        }

        /// The end of the TCP connection for a raw peer whose close handshake is done: a raw
        /// server closes first (RFC 6455 §7.1.1), a raw client waits for the server to; nothing
        /// may follow the close frame.
        async fn raw_finish(raw: &mut rt::Raw) {
            if !raw.masks {
                raw.shutdown().await;
            }
            let rest = raw.until_eof().await;
            assert!(rest.is_empty(), "frames after the close frame: {rest:?}");
        }

        /// The next close frame from the other side, skipping anything before it.
        async fn raw_close_frame(raw: &mut rt::Raw) -> WireFrame {
            loop {
                let frame = raw.expect_frame().await;
                if frame.header.opcode == OpCode::Close {
                    return frame;
                }
            }
        }

        /// Waits (bounded) for our close frame with `code` and then for TCP to close; the
        /// failure, if either does not come.
        async fn close_then_tcp_end(raw: &mut rt::Raw, code: u16) -> Result<(), String> {
            let wait = Duration::from_secs(2);
            let Some(close) = rt::timeout(wait, raw_close_frame(raw)).await else {
                return Err(format!("no {code} close frame"));
            };
            assert_eq!(close.close_code(), Some(code));
            match rt::timeout(wait, raw_finish(raw)).await {
                Some(()) => Ok(()),
                None => Err("TCP not closed".into()),
            }
        }

        /// The raw peer's part of a close our side started: echoes its close frame, ends TCP;
        /// returns the close frame our side sent.
        async fn raw_answer_close(raw: &mut rt::Raw) -> WireFrame {
            let close = raw_close_frame(raw).await;
            raw.send_frame(true, op::CLOSE, &close.payload).await;
            raw_finish(raw).await;
            close
        }

        /// The raw peer's part when our side failed the connection: reads the close frame (which
        /// is not answered) and the end of TCP; returns the close frame.
        async fn raw_failure_close(raw: &mut rt::Raw) -> WireFrame {
            let close = raw_close_frame(raw).await;
            raw_finish(raw).await;
            close
        }

        /// The raw peer closes with `code` and `reason`; returns our side's answer.
        async fn raw_close(raw: &mut rt::Raw, code: u16, reason: &str) -> WireFrame {
            raw.send_close(code, reason).await;
            let reply = raw_close_frame(raw).await;
            raw_finish(raw).await;
            reply
        }

        fn assert_clean(outcome: &CloseOutcome, code: u16, reason: &str, initiator: Initiator) {
            assert!(outcome.clean, "not clean: {outcome:?}");
            assert_eq!(outcome.error, None, "{outcome:?}");
            assert_eq!(outcome.code, CloseCode::new(code), "{outcome:?}");
            assert_eq!(outcome.reason, reason, "{outcome:?}");
            assert_eq!(outcome.initiator, initiator, "{outcome:?}");
        }

        // ---- echo -----------------------------------------------------------------------

        #[test]
        fn echo_text_and_binary_at_every_length_encoding_boundary() {
            rt::run(GUARD, async {
                let (mut client, server) = ours(Config::default(), ConnectOptions::new()).await;
                let server = rt::spawn(echo(server));
                for n in ECHO_SIZES {
                    let text = text_payload(n);
                    client.send_text(text.clone()).await.expect("send text");
                    let back = client.recv().await.expect("open").expect("echo");
                    assert_eq!(back.kind(), MessageKind::Text, "size {n}");
                    assert_eq!(back.as_text(), Some(text.as_str()), "text of {n} bytes");

                    let data = binary_payload(n, n as u8);
                    client.send_binary(data.clone()).await.expect("send binary");
                    let back = client.recv().await.expect("open").expect("echo");
                    assert_eq!(back.kind(), MessageKind::Binary, "size {n}");
                    assert!(
                        back.as_bytes() == data.as_slice(),
                        "binary of {n} bytes differs"
                    );
                }
                let outcome = client
                    .close(CloseCode::NORMAL, "done")
                    .await
                    .expect("close");
                // Our server echoes the code, without a reason.
                assert_clean(&outcome, 1000, "", Initiator::Local);
                let server_outcome = server.await.expect("server outcome");
                assert_clean(&server_outcome, 1000, "done", Initiator::Remote);
            });
        }

        // ---- fragmentation --------------------------------------------------------------

        #[test]
        fn fragmented_messages_from_the_peer_are_reassembled() {
            rt::run(GUARD, async {
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    // "héllo wörld", split inside both two-byte characters, with a ping between
                    // fragments (RFC 6455 §5.4 allows control frames there).
                    let text = "héllo wörld".as_bytes();
                    raw.send_frame(false, op::TEXT, &text[..2]).await;
                    raw.send_frame(true, op::PING, b"mid-message").await;
                    raw.send_frame(false, op::CONT, &text[2..9]).await;
                    raw.send_frame(true, op::CONT, &text[9..]).await;
                    // A large binary message in uneven pieces, the last one empty.
                    let data = binary_payload(150_001, 7);
                    raw.send_frame(false, op::BINARY, &data[..70_000]).await;
                    raw.send_frame(false, op::CONT, &data[70_000..70_001]).await;
                    raw.send_frame(false, op::CONT, &data[70_001..]).await;
                    raw.send_frame(true, op::CONT, &[]).await;

                    let m = ws.recv().await.expect("open").expect("text");
                    assert_eq!(m.as_text(), Some("héllo wörld"), "{role:?}");
                    let m = ws.recv().await.expect("open").expect("binary");
                    assert_eq!(m.kind(), MessageKind::Binary);
                    assert!(m.as_bytes() == data.as_slice(), "{role:?}: binary differs");

                    // The pong was queued while recv decoded; recv flushes it before it waits
                    // again (see `pong_for_a_ping_read_with_a_message_is_sent_while_the_app_holds_it`
                    // for the case where the application does not come back).
                    let peer = async {
                        let pong = raw.expect_frame().await;
                        assert_eq!(pong.header.opcode, OpCode::Pong, "{role:?}");
                        assert_eq!(pong.payload, b"mid-message");
                        raw_close(&mut raw, 1000, "").await
                    };
                    let ((end, _), reply) = join(last_recv(ws), peer).await;
                    assert!(end.is_none(), "{role:?}: {end:?}");
                    assert_eq!(reply.close_code(), Some(1000));
                }
            });
        }

        // ---- ping / pong ----------------------------------------------------------------

        #[test]
        fn ping_resolves_when_the_pong_arrives() {
            rt::run(GUARD, async {
                // Between our own ends: the echo server is in recv, so it answers.
                let (mut client, server) = ours(Config::default(), ConnectOptions::new()).await;
                let server = rt::spawn(echo(server));
                for _ in 0..3 {
                    client.ping().await.expect("rtt");
                }
                client.close(CloseCode::NORMAL, "").await.expect("close");
                server.await.expect("server outcome");

                // Against a raw peer that answers by hand: the pong carries the ping's payload.
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    let peer = async {
                        let ping = raw.expect_frame().await;
                        assert_eq!(ping.header.opcode, OpCode::Ping);
                        raw.send_frame(true, op::PONG, &ping.payload).await;
                        ping.payload
                    };
                    let (rtt, _) = join(ws.ping(), peer).await;
                    rtt.expect("ping resolves");
                    let (outcome, _) =
                        join(ws.close(CloseCode::NORMAL, ""), raw_answer_close(&mut raw)).await;
                    assert_clean(&outcome.expect("close"), 1000, "", Initiator::Local);
                }
            });
        }

        /// A ping from the write half resolves whether the read half is in `recv` in another
        /// task (which then decodes the pong) or nobody reads (the driver does).
        #[test]
        fn ping_resolves_while_another_task_is_in_recv() {
            rt::run(GUARD, async {
                let (client, server) = ours(Config::default(), ConnectOptions::new()).await;
                let server = rt::spawn(echo(server));
                let (mut read, mut write) = client.split();
                let reader = rt::spawn(async move {
                    let m = read.recv().await.expect("open").expect("echo");
                    (read, m)
                });
                for _ in 0..5 {
                    write.ping().await.expect("rtt");
                }
                write.send_text("done").await.expect("send");
                let (read, m) = reader.await;
                assert_eq!(m.as_text(), Some("done"));
                write.ping().await.expect("rtt with nobody in recv");
                let mut client = reunite(read, write);
                client.close(CloseCode::NORMAL, "").await.expect("close");
                server.await.expect("server outcome");
            });
        }

        /// The driver task answers pings while the application is elsewhere: idle, holding a
        /// message it received, or only sending.
        #[test]
        fn peer_ping_is_answered_while_the_app_is_not_in_recv() {
            rt::run(GUARD, async {
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;

                    // 1. The application never called recv: it awaits this exchange.
                    raw.send_frame(true, op::PING, b"are you there?").await;
                    let pong = raw.expect_frame().await;
                    assert_eq!(pong.header.opcode, OpCode::Pong, "{role:?}: idle");
                    assert_eq!(pong.payload, b"are you there?");

                    // 2. The application holds a message it received and does not come back.
                    raw.send_frame(true, op::TEXT, b"first").await;
                    let first = ws.recv().await.expect("open").expect("first");
                    assert_eq!(first.as_text(), Some("first"));
                    raw.send_frame(true, op::PING, b"still there?").await;
                    raw.send_frame(true, op::TEXT, b"second").await;
                    let pong = raw.expect_frame().await;
                    assert_eq!(pong.header.opcode, OpCode::Pong, "{role:?}: holding");
                    assert_eq!(pong.payload, b"still there?");
                    let second = ws.recv().await.expect("open").expect("second");
                    assert_eq!(second.as_text(), Some("second"));

                    // 3. The application only sends, from another task, until the pong is seen.
                    let pong_seen = Arc::new(AtomicBool::new(false));
                    let seen = pong_seen.clone();
                    let sender = rt::spawn(async move {
                        let mut sent = 0usize;
                        while !seen.load(Ordering::Acquire) {
                            assert!(sent < 200_000, "no pong while only sending");
                            ws.send_text(format!("s{sent}")).await.expect("send");
                            sent += 1;
                            rt::yield_now().await;
                        }
                        (ws, sent)
                    });
                    raw.send_frame(true, op::PING, b"busy?").await;
                    let mut texts = 0usize;
                    loop {
                        let frame = raw.expect_frame().await;
                        match frame.header.opcode {
                            OpCode::Text => {
                                assert_eq!(frame.payload, format!("s{texts}").as_bytes());
                                texts += 1;
                            }
                            OpCode::Pong => {
                                assert_eq!(frame.payload, b"busy?");
                                break;
                            }
                            other => panic!("{role:?}: unexpected {other:?}"),
                        }
                    }
                    pong_seen.store(true, Ordering::Release);
                    let (mut ws, sent) = sender.await;
                    while texts < sent {
                        let frame = raw.expect_frame().await;
                        assert_eq!(frame.header.opcode, OpCode::Text);
                        assert_eq!(frame.payload, format!("s{texts}").as_bytes());
                        texts += 1;
                    }
                    let (outcome, _) =
                        join(ws.close(CloseCode::NORMAL, ""), raw_answer_close(&mut raw)).await;
                    assert_clean(&outcome.expect("close"), 1000, "", Initiator::Local);
                }
            });
        }

        /// Regression guard: a ping that arrives in the same read as a message is decoded by
        /// `recv` (which queues the pong) before it returns the message; the pong must then go out
        /// even though the application holds the message and does not call `recv` again.
        #[test]
        fn pong_for_a_ping_read_with_a_message_is_sent_while_the_app_holds_it() {
            rt::run(GUARD, async {
                let mut failures = Vec::new();
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    let mut batch = raw.frame(true, op::PING, b"with a message");
                    batch.extend(raw.frame(true, op::TEXT, b"hello"));
                    raw.send(&batch).await;
                    let m = ws.recv().await.expect("open").expect("message");
                    assert_eq!(m.as_text(), Some("hello"));
                    // The application now works on the message; it does not call recv.
                    match rt::timeout(Duration::from_secs(2), raw.expect_frame()).await {
                        None => failures.push(format!("{role:?}: no pong")),
                        Some(pong) => {
                            assert_eq!(pong.header.opcode, OpCode::Pong);
                            assert_eq!(pong.payload, b"with a message");
                        }
                    }
                    let ((end, _), _) = join(last_recv(ws), raw_close(&mut raw, 1000, "")).await;
                    assert!(end.is_none(), "{role:?}: {end:?}");
                }
                assert!(
                    failures.is_empty(),
                    "while the application holds a message: {failures:?}"
                );
            });
        }

        #[test]
        fn recv_event_reports_control_frames_and_the_close_in_order() {
            rt::run(GUARD, async {
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    let mut batch = raw.frame(true, op::PING, b"p");
                    batch.extend(raw.frame(true, op::TEXT, b"t"));
                    batch.extend(raw.frame(true, op::PONG, b"unsolicited"));
                    raw.send(&batch).await;
                    let ours = async move {
                        let mut events = Vec::new();
                        while let Some(event) = ws.recv_event().await {
                            events.push(event);
                        }
                        events
                    };
                    let peer = async {
                        let pong = raw.expect_frame().await;
                        assert_eq!(pong.header.opcode, OpCode::Pong);
                        assert_eq!(pong.payload, b"p");
                        raw_close(&mut raw, 4005, "done").await
                    };
                    let (events, reply) = join(ours, peer).await;
                    assert_eq!(reply.close_code(), Some(4005), "{role:?}");
                    assert_eq!(events.len(), 5, "{role:?}: {events:?}");
                    assert_eq!(events[0], Event::Ping("p".into()), "{role:?}");
                    assert_eq!(events[1], Event::Message(Message::text("t")), "{role:?}");
                    assert_eq!(events[2], Event::Pong("unsolicited".into()), "{role:?}");
                    assert_eq!(
                        events[3],
                        Event::CloseReceived(Some(CloseFrame::new(CloseCode::new(4005), "done"))),
                        "{role:?}"
                    );
                    match &events[4] {
                        Event::Closed(outcome) => {
                            assert_clean(outcome, 4005, "done", Initiator::Remote)
                        }
                        other => panic!("{role:?}: expected Closed, got {other:?}"),
                    }
                }
            });
        }

        /// With a small read high-water mark the driver stops reading while the application is
        /// away; nothing is lost, and everything arrives in order once it reads.
        #[test]
        fn messages_beyond_the_read_high_water_mark_wait_in_order() {
            // About 100 KB: within the kernel's default loopback buffers, so the peer's write
            // completes while the application is away.
            const N: usize = 100;
            rt::run(GUARD, async {
                let config = Config::default().read_high_water(4096);
                let (mut ws, mut raw) = facing_raw(Role::Server, config).await;
                let mut wire = Vec::new();
                for i in 0..N {
                    let mut payload = vec![i as u8; 1000];
                    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    wire.extend(raw.frame(true, op::BINARY, &payload));
                }
                raw.send(&wire).await;
                raw.send_frame(true, op::PING, b"after the flood").await;
                for i in 0..N {
                    let m = ws.recv().await.expect("open").expect("message");
                    assert_eq!(m.len(), 1000);
                    assert_eq!(m.as_bytes()[..8], (i as u64).to_be_bytes(), "message {i}");
                }
                let peer = async {
                    let pong = raw.expect_frame().await;
                    assert_eq!(pong.payload, b"after the flood");
                    raw_close(&mut raw, 1000, "").await
                };
                let ((end, _), _) = join(last_recv(ws), peer).await;
                assert!(end.is_none(), "{end:?}");
            });
        }

        // ---- close ----------------------------------------------------------------------

        #[test]
        fn close_codes_travel_both_ways() {
            rt::run(GUARD, async {
                for role in ROLES {
                    // Our side closes with 4000 "bye".
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    let (outcome, seen) = join(
                        ws.close(CloseCode::new(4000), "bye"),
                        raw_answer_close(&mut raw),
                    )
                    .await;
                    assert_eq!(seen.close_code(), Some(4000), "{role:?}");
                    assert_eq!(seen.close_reason().as_deref(), Some("bye"));
                    let outcome = outcome.expect("close");
                    assert_clean(&outcome, 4000, "bye", Initiator::Local);
                    assert_eq!(
                        outcome.sent,
                        Some(CloseFrame::new(CloseCode::new(4000), "bye"))
                    );
                    assert!(ws.is_closed());
                    assert!(ws.recv().await.is_none(), "{role:?}: recv after close");
                    let err = ws.send_text("late").await.expect_err("send after close");
                    assert!(err.is_closed(), "{role:?}: {err:?}");

                    // The peer closes with 1001.
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    // The application keeps the socket after recv ended.
                    let (end, reply) = join(ws.recv(), raw_close(&mut raw, 1001, "away")).await;
                    assert!(end.is_none(), "{role:?}: {end:?}");
                    assert_eq!(reply.close_code(), Some(1001), "{role:?}: echoed code");
                    let outcome = ws.close_outcome().expect("outcome");
                    assert_clean(&outcome, 1001, "away", Initiator::Remote);
                    assert!(ws.is_closed());
                    assert!(ws.recv().await.is_none(), "{role:?}: recv after the end");
                }

                // Between our own ends.
                let (mut client, mut server) = ours(Config::default(), ConnectOptions::new()).await;
                let (outcome, end) =
                    join(client.close(CloseCode::new(4000), "bye"), server.recv()).await;
                let server_outcome = server.close_outcome();
                assert!(end.is_none(), "{end:?}");
                // Our server echoes the code, without a reason.
                assert_clean(&outcome.expect("close"), 4000, "", Initiator::Local);
                assert_clean(
                    &server_outcome.expect("outcome"),
                    4000,
                    "bye",
                    Initiator::Remote,
                );
            });
        }

        /// Messages queued before `close` leave before the close frame; a message the peer
        /// sends before its close reply stays readable after `close` returned.
        #[test]
        fn close_keeps_message_order_in_both_directions() {
            rt::run(GUARD, async {
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    ws.send_text("before close").await.expect("send");
                    let peer = async {
                        let first = raw.expect_frame().await;
                        assert_eq!(first.header.opcode, OpCode::Text);
                        assert_eq!(first.payload, b"before close");
                        let close = raw.expect_frame().await;
                        assert_eq!(close.close_code(), Some(4000), "{role:?}");
                        // Still open in this direction: one more message, then the reply.
                        raw.send_frame(true, op::TEXT, b"in flight").await;
                        raw.send_frame(true, op::CLOSE, &close.payload).await;
                        raw_finish(&mut raw).await;
                    };
                    let (outcome, ()) = join(ws.close(CloseCode::new(4000), "bye"), peer).await;
                    assert_clean(&outcome.expect("close"), 4000, "bye", Initiator::Local);
                    let m = ws.recv().await.expect("still readable").expect("message");
                    assert_eq!(m.as_text(), Some("in flight"), "{role:?}");
                    assert!(ws.recv().await.is_none(), "{role:?}");
                }
            });
        }

        /// `from_upgraded`: a stream whose handshake was done elsewhere.
        #[test]
        fn from_upgraded_speaks_websocket_over_a_stream_upgraded_elsewhere() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = rt::spawn(async move {
                    // The handshake, by hand; then the adapter takes the stream over.
                    let raw = rt::Raw::server(&listener, &[]).await;
                    let ws = ws::from_upgraded(raw.tcp, &Config::default(), tidings_core::handshake::Agreed::new(Role::Server, None));
                    echo(ws).await
                });
                let mut client = ws::connect(&url(port)).await.expect("connect");
                client.send_text("upgraded").await.expect("send");
                let m = client.recv().await.expect("open").expect("echo");
                assert_eq!(m.as_text(), Some("upgraded"));
                client.close(CloseCode::NORMAL, "").await.expect("close");
                assert_clean(&server.await.expect("outcome"), 1000, "", Initiator::Remote);
            });
        }

        #[test]
        fn dropping_every_handle_closes_with_going_away() {
            rt::run(GUARD, async {
                for role in ROLES {
                    let (ws, mut raw) = facing_raw(role, Config::default()).await;
                    drop(ws);
                    let close = raw_answer_close(&mut raw).await;
                    assert_eq!(close.close_code(), Some(1001), "{role:?}");
                }
            });
        }

        #[test]
        fn closer_closes_from_another_task() {
            rt::run(GUARD, async {
                let (mut client, server) = ours(Config::default(), ConnectOptions::new()).await;
                let server = rt::spawn(echo(server));
                let closer = client.closer();
                let reader = rt::spawn(async move {
                    let end = client.recv().await;
                    (client, end)
                });
                assert!(closer.close(CloseCode::new(4002), "kick").expect("close"));
                let (client, end) = reader.await;
                assert!(end.is_none(), "{end:?}");
                assert_clean(
                    &client.close_outcome().expect("outcome"),
                    4002,
                    "",
                    Initiator::Local,
                );
                assert!(closer.is_closed());
                assert!(!closer.close(CloseCode::NORMAL, "").expect("second close"));
                let server_outcome = server.await.expect("server outcome");
                assert_clean(&server_outcome, 4002, "kick", Initiator::Remote);
            });
        }

        /// Regression guard: once `recv` returned `None` after the peer's close frame, the close
        /// reply must still go out (and a server must close TCP) while the application keeps the
        /// `WebSocket`, e.g. to read `close_outcome()` or because it awaits something else.
        #[test]
        fn close_reply_is_sent_while_the_app_still_holds_the_socket() {
            rt::run(GUARD, async {
                let mut failures = Vec::new();
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, Config::default()).await;
                    raw.send_close(1001, "away").await;
                    assert!(ws.recv().await.is_none(), "{role:?}");
                    if let Err(e) = close_then_tcp_end(&mut raw, 1001).await {
                        failures.push(format!("{role:?}: {e}"));
                    }
                    drop(ws);
                }
                assert!(
                    failures.is_empty(),
                    "while the application holds the socket: {failures:?}"
                );
            });
        }

        /// Regression guard: a connection failed for a protocol violation (here 1009) must send
        /// its close frame and close TCP even if the application keeps the `WebSocket` after
        /// `recv` returned the error.
        #[test]
        fn close_frame_of_a_failed_connection_is_sent_while_the_app_holds_the_socket() {
            rt::run(GUARD, async {
                let mut failures = Vec::new();
                for role in ROLES {
                    let config = Config::default().max_message_size(Some(10));
                    let (mut ws, mut raw) = facing_raw(role, config).await;
                    raw.send_frame(true, op::BINARY, &[0; 11]).await;
                    let got = ws.recv().await;
                    assert!(
                        matches!(got, Some(Err(Error::Connection(_)))),
                        "{role:?}: {got:?}"
                    );
                    if let Err(e) = close_then_tcp_end(&mut raw, 1009).await {
                        failures.push(format!("{role:?}: {e}"));
                    }
                    drop(ws);
                }
                assert!(
                    failures.is_empty(),
                    "while the application holds the socket: {failures:?}"
                );
            });
        }

        // ---- limits ---------------------------------------------------------------------

        #[test]
        fn message_above_max_message_size_fails_with_1009() {
            rt::run(GUARD, async {
                let config = || Config::default().max_message_size(Some(1000));
                for role in ROLES {
                    for fragmented in [false, true] {
                        let (mut ws, mut raw) = facing_raw(role, config()).await;
                        // At the limit: fine.
                        raw.send_frame(true, op::BINARY, &[1; 1000]).await;
                        let m = ws.recv().await.expect("open").expect("1000 bytes");
                        assert_eq!(m.len(), 1000);
                        if fragmented {
                            raw.send_frame(false, op::BINARY, &[2; 600]).await;
                            raw.send_frame(true, op::CONT, &[2; 600]).await;
                        } else {
                            raw.send_frame(true, op::BINARY, &[2; 1001]).await;
                        }
                        let ours = async {
                            let got = ws.recv().await;
                            let after = ws.recv().await;
                            (got, after, ws.close_outcome())
                        };
                        let ((got, after, outcome), close) =
                            join(ours, raw_failure_close(&mut raw)).await;
                        let ctx = format!("{role:?}, fragmented: {fragmented}");
                        assert_eq!(close.close_code(), Some(1009), "{ctx}: peer sees 1009");
                        match got {
                            Some(Err(Error::Connection(e))) => {
                                assert_eq!(
                                    e.close_code(),
                                    Some(CloseCode::MESSAGE_TOO_BIG),
                                    "{ctx}"
                                );
                            }
                            other => panic!("{ctx}: expected a connection error, got {other:?}"),
                        }
                        assert!(after.is_none(), "{ctx}: one error, then None: {after:?}");
                        let outcome = outcome.expect("outcome");
                        assert!(outcome.error.is_some(), "{ctx}: {outcome:?}");
                    }
                }

                // Between our own ends: the server fails the connection, the client sees 1009.
                let (mut client, mut server) = ours(config(), ConnectOptions::new()).await;
                client.send_binary(vec![0u8; 2000]).await.expect("send");
                let (server_got, client_got) = join(server.recv(), client.recv()).await;
                match server_got {
                    Some(Err(Error::Connection(e))) => {
                        assert_eq!(e.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
                    }
                    other => panic!("expected a connection error, got {other:?}"),
                }
                assert!(client_got.is_none(), "{client_got:?}");
                let outcome = client.close_outcome().expect("client outcome");
                assert_eq!(outcome.code, CloseCode::MESSAGE_TOO_BIG, "{outcome:?}");
            });
        }

        // ---- handshake ------------------------------------------------------------------

        #[test]
        fn callback_rejection_reaches_the_client_with_its_status() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, Config::default(), |_| {
                    Err(Rejection::new(403).header("X-Why", "no entry"))
                });
                let err = ws::connect(&url(port)).await.expect_err("refused");
                assert_eq!(err.rejected_status(), Some(403), "{err:?}");
                match &err {
                    Error::Handshake(HandshakeError::Rejected {
                        status, headers, ..
                    }) => {
                        assert_eq!(*status, 403);
                        assert!(
                            headers
                                .iter()
                                .any(|(n, v)| n.eq_ignore_ascii_case("x-why") && v == b"no entry"),
                            "{headers:?}"
                        );
                    }
                    other => panic!("expected Rejected, got {other:?}"),
                }
                match server.await {
                    Err(Error::Refused(403)) => {}
                    other => panic!("server: expected Refused(403), got {other:?}"),
                }
            });
        }

        #[test]
        fn foreign_origin_is_refused_under_the_default_same_origin_policy() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, Config::default(), |_| Ok(AcceptOptions::new()));
                let options = ConnectOptions::new().header("Origin", "http://evil.example");
                let err = ws::connect_with(&url(port), &options)
                    .await
                    .expect_err("refused");
                assert!(
                    matches!(
                        err,
                        Error::Handshake(HandshakeError::Rejected { status: 403, .. })
                    ),
                    "{err:?}"
                );
                match server.await {
                    Err(Error::Handshake(HandshakeError::OriginRefused)) => {}
                    other => panic!("server: expected OriginRefused, got {other:?}"),
                }

                // The same origin passes.
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, Config::default(), |_| Ok(AcceptOptions::new()));
                let options =
                    ConnectOptions::new().header("Origin", format!("http://127.0.0.1:{port}"));
                let (mut client, _) = ws::connect_with(&url(port), &options)
                    .await
                    .expect("same origin");
                let server = rt::spawn(echo(server.await.expect("accept")));
                client.close(CloseCode::NORMAL, "").await.expect("close");
                server.await.expect("server outcome");
            });
        }

        #[test]
        fn subprotocol_is_negotiated_and_seen_by_both_sides() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, Config::default(), |req| {
                    assert_eq!(req.protocols(), vec!["a", "b"]);
                    Ok(AcceptOptions::new().protocol("b"))
                });
                let options = ConnectOptions::new().protocol("a").protocol("b");
                let (mut client, response) = ws::connect_with(&url(port), &options)
                    .await
                    .expect("connect");
                let server = server.await.expect("accept");
                assert_eq!(response.protocol.as_deref(), Some("b"));
                assert_eq!(client.subprotocol(), Some("b"));
                assert_eq!(server.subprotocol(), Some("b"));
                let server = rt::spawn(echo(server));
                client.close(CloseCode::NORMAL, "").await.expect("close");
                server.await.expect("server outcome");
            });
        }

        #[test]
        fn extra_headers_path_and_query_reach_the_accept_callback() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let seen = Arc::new(std::sync::Mutex::new(None));
                let record = seen.clone();
                let server = serve_once(listener, Config::default(), move |req| {
                    let auth = req.header("authorization").map(|v| v.to_vec());
                    *record.lock().expect("lock") =
                        Some((req.path().to_owned(), req.query().map(str::to_owned), auth));
                    Ok(AcceptOptions::new())
                });
                let options = ConnectOptions::new().header("Authorization", "Bearer s3cret");
                let target = format!("ws://127.0.0.1:{port}/chat?room=7");
                let (mut client, _) = ws::connect_with(&target, &options).await.expect("connect");
                let server = rt::spawn(echo(server.await.expect("accept")));
                let seen = seen.lock().expect("lock").take().expect("callback ran");
                assert_eq!(seen.0, "/chat");
                assert_eq!(seen.1.as_deref(), Some("room=7"));
                assert_eq!(seen.2.as_deref(), Some(&b"Bearer s3cret"[..]));
                client.close(CloseCode::NORMAL, "").await.expect("close");
                server.await.expect("server outcome");
            });
        }

        #[test]
        fn bytes_sent_with_the_handshake_are_not_lost() {
            rt::run(GUARD, async {
                // A client that writes its request and a frame in one write.
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, Config::default(), |_| Ok(AcceptOptions::new()));
                let tcp = rt::connect(port).await;
                let request = raw_request(&format!("127.0.0.1:{port}"), "/", &[]);
                let frame = tidings_tests::client_frame(op::TEXT, b"early bird");
                let (mut raw, answer) = rt::Raw::client_over(tcp, &request, &frame).await;
                answer.expect("101");
                let server = rt::spawn(echo(server.await.expect("accept")));
                let back = raw.expect_frame().await;
                assert_eq!(back.header.opcode, OpCode::Text);
                assert_eq!(back.payload, b"early bird");
                raw_close(&mut raw, 1000, "").await;
                server.await.expect("server outcome");

                // A server that writes its 101 and a frame in one write.
                let (listener, port) = rt::bind().await;
                let client =
                    rt::spawn(async move { ws::connect(&url(port)).await.expect("connect") });
                let frame = tidings_tests::server_frame(op::TEXT, b"welcome");
                let mut raw = rt::Raw::server(&listener, &frame).await;
                let mut client = client.await;
                let m = client.recv().await.expect("open").expect("welcome");
                assert_eq!(m.as_text(), Some("welcome"));
                let (outcome, _) = join(
                    client.close(CloseCode::NORMAL, ""),
                    raw_answer_close(&mut raw),
                )
                .await;
                assert_clean(&outcome.expect("close"), 1000, "", Initiator::Local);
            });
        }

        // ---- cancellation, split, Stream/Sink ------------------------------------------

        /// Recv futures are dropped before completion over and over (polled once with a waker
        /// that does nothing, raced against a yield, raced against a timer) while the peer's
        /// messages arrive in uneven chunks: every message still arrives once, in order.
        #[test]
        fn recv_is_cancellation_safe() {
            const N: usize = 300;
            rt::run(GUARD, async {
                let (mut ws, mut raw) = facing_raw(Role::Server, Config::default()).await;
                let expected: Vec<Message> = (0..N)
                    .map(|i| {
                        if i % 10 == 3 {
                            let mut data = binary_payload(20_000, i as u8);
                            data[..8].copy_from_slice(&(i as u64).to_be_bytes());
                            Message::binary(data)
                        } else {
                            Message::text(format!("msg-{i}"))
                        }
                    })
                    .collect();
                // The wire, and where each message ends on it.
                let (mut wire, mut ends) = (Vec::new(), Vec::new());
                for m in &expected {
                    let opcode = if m.kind() == MessageKind::Text {
                        op::TEXT
                    } else {
                        op::BINARY
                    };
                    wire.extend(raw.frame(true, opcode, m.as_bytes()));
                    ends.push(wire.len());
                }

                let (mut pos, mut step) = (0usize, 1usize);
                let mut got = Vec::with_capacity(N);
                let (mut round, mut cancelled) = (0usize, 0usize);
                while got.len() < N {
                    round += 1;
                    assert!(round < 100_000, "stuck after {} messages", got.len());
                    // The peer writes the next uneven chunk (frames straddle reads), keeping at
                    // most three whole messages ahead of the reader.
                    let complete = ends.partition_point(|&end| end <= pos);
                    if pos < wire.len() && complete < got.len() + 3 {
                        let end = (pos + step).min(wire.len());
                        raw.send(&wire[pos..end]).await;
                        pos = end;
                        step = step * 7 % 2039 + 1;
                    }
                    let result = match round % 3 {
                        // Poll once with a waker that does nothing, then drop.
                        0 => {
                            let mut fut = pin!(ws.recv());
                            match poll_once(fut.as_mut()) {
                                Poll::Ready(r) => Some(r),
                                Poll::Pending => None,
                            }
                        }
                        // Race against a future that is ready on its second poll.
                        1 => match select(pin!(ws.recv()), pin!(rt::yield_now())).await {
                            Either::Left((r, _)) => Some(r),
                            Either::Right(_) => None,
                        },
                        // Race against a short timer.
                        _ => rt::timeout(Duration::from_millis(1), ws.recv()).await,
                    };
                    match result {
                        Some(r) => got.push(r.expect("open").expect("message")),
                        None => cancelled += 1,
                    }
                }
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert!(
                        g == e,
                        "message {i} differs (lost, duplicated or reordered)"
                    );
                }
                assert!(
                    cancelled >= 100,
                    "only {cancelled} recv futures were cancelled"
                );
                let ((end, _), _) = join(last_recv(ws), raw_close(&mut raw, 1000, "")).await;
                assert!(end.is_none(), "{end:?}");
            });
        }

        #[test]
        fn split_halves_work_from_two_tasks_and_reunite() {
            const N: usize = 1000;
            rt::run(GUARD, async {
                let (client, server) = ours(Config::default(), ConnectOptions::new()).await;
                let server = rt::spawn(echo(server));
                let (mut read, mut write) = client.split();
                assert!(read.is_pair_of(&write));
                let sender = rt::spawn(async move {
                    for i in 0..N {
                        if i % 2 == 0 {
                            write.send_text(format!("m{i}")).await.expect("send");
                        } else {
                            write
                                .send_binary(i.to_be_bytes().to_vec())
                                .await
                                .expect("send");
                        }
                    }
                    write
                });
                let receiver = rt::spawn(async move {
                    for i in 0..N {
                        let m = read.recv().await.expect("open").expect("echo");
                        if i % 2 == 0 {
                            assert_eq!(m.as_text(), Some(format!("m{i}").as_str()));
                        } else {
                            assert_eq!(m.as_bytes(), i.to_be_bytes());
                        }
                    }
                    read
                });
                let (write, read) = join(sender, receiver).await;

                // Halves of different connections do not reunite.
                let (other, other_server) = ours(Config::default(), ConnectOptions::new()).await;
                let other_server = rt::spawn(echo(other_server));
                let (other_read, other_write) = other.split();
                assert!(!read.is_pair_of(&other_write));
                let (read, other_write) = match WebSocket::reunite(read, other_write) {
                    Ok(_) => panic!("halves of two connections reunited"),
                    Err(halves) => halves,
                };
                let mut other = reunite(other_read, other_write);
                let mut client = reunite(read, write);

                client.send_text("after reunite").await.expect("send");
                let m = client.recv().await.expect("open").expect("echo");
                assert_eq!(m.as_text(), Some("after reunite"));
                client.close(CloseCode::NORMAL, "").await.expect("close");
                other
                    .close(CloseCode::NORMAL, "")
                    .await
                    .expect("close other");
                assert_clean(&server.await.expect("outcome"), 1000, "", Initiator::Remote);
                assert_clean(
                    &other_server.await.expect("outcome"),
                    1000,
                    "",
                    Initiator::Remote,
                );
            });
        }

        #[test]
        fn stream_and_sink_work_with_forward_and_send_all() {
            const N: usize = 100;
            rt::run(GUARD, async {
                let (client, server) = ours(Config::default(), ConnectOptions::new()).await;
                // The server echoes with `forward` from its read half into its write half.
                let server = rt::spawn(async move {
                    let (read, write) = server.split();
                    read.forward(write).await
                });
                let (mut read, mut write) = client.split();
                let messages: Vec<Message> =
                    (0..N).map(|i| Message::text(format!("item {i}"))).collect();
                let mut items = futures_util::stream::iter(messages.clone().into_iter().map(Ok));
                write.send_all(&mut items).await.expect("send_all");
                let back: Vec<Message> = (&mut read)
                    .take(N)
                    .map(|r| r.expect("message"))
                    .collect()
                    .await;
                assert_eq!(back, messages);

                // Sink::send and Stream::next on the whole WebSocket.
                let mut client = reunite(read, write);
                SinkExt::send(&mut client, Message::binary(vec![9u8; 300]))
                    .await
                    .expect("sink send");
                let m = client.next().await.expect("open").expect("echo");
                assert_eq!(m.as_bytes(), &[9u8; 300][..]);
                // Sink::close starts the close handshake (1000); the stream then ends.
                SinkExt::close(&mut client).await.expect("sink close");
                assert!(client.next().await.is_none());
                assert_clean(
                    &client.close_outcome().expect("outcome"),
                    1000,
                    "",
                    Initiator::Local,
                );
                server.await.expect("forward ends cleanly");
            });
        }

        // ---- keepalive and backpressure -------------------------------------------------

        /// Keepalive timings: on tokio's paused clock realistic ones cost nothing; on smol
        /// (a real clock) short ones.
        fn keepalive_config() -> Config {
            let (every, timeout) = if rt::PAUSED {
                (Duration::from_secs(2), Duration::from_secs(3))
            } else {
                (Duration::from_millis(50), Duration::from_millis(100))
            };
            Config::default()
                .ping_interval(Some(every))
                .pong_timeout(Some(timeout))
                // On a paused clock an idle runtime jumps to the next timer: no handshake timer.
                .handshake_timeout(None)
        }

        #[test]
        fn keepalive_fails_a_silent_peer_with_pong_timeout() {
            rt::run_paused(GUARD, async {
                for role in ROLES {
                    let (mut ws, mut raw) = facing_raw(role, keepalive_config()).await;
                    // The peer reads and discards everything, never answering a ping.
                    let (got, frames) = join(ws.recv(), raw.until_eof()).await;
                    match got {
                        Some(Err(Error::Connection(ConnectionError::PongTimeout))) => {}
                        other => panic!("{role:?}: expected PongTimeout, got {other:?}"),
                    }
                    assert!(
                        frames.iter().any(|f| f.header.opcode == OpCode::Ping),
                        "{role:?}: no keepalive ping on the wire: {frames:?}"
                    );
                    assert!(ws.is_closed());
                    let outcome = ws.close_outcome().expect("outcome");
                    assert_eq!(outcome.error, Some(ConnectionError::PongTimeout));
                }
            });
        }

        #[test]
        fn keepalive_pings_that_are_answered_keep_the_connection_open() {
            rt::run_paused(GUARD, async {
                for role in ROLES {
                    let (ws, mut raw) = facing_raw(role, keepalive_config()).await;
                    let peer = async {
                        // Answer three keepalive pings, then close.
                        for _ in 0..3 {
                            let ping = raw.expect_frame().await;
                            assert_eq!(ping.header.opcode, OpCode::Ping, "{role:?}");
                            raw.send_frame(true, op::PONG, &ping.payload).await;
                        }
                        raw_close(&mut raw, 1000, "enough").await
                    };
                    let ((end, outcome), reply) = join(last_recv(ws), peer).await;
                    assert!(end.is_none(), "{role:?}: {end:?}");
                    assert_eq!(reply.close_code(), Some(1000));
                    assert_clean(
                        &outcome.expect("outcome"),
                        1000,
                        "enough",
                        Initiator::Remote,
                    );
                }
            });
        }

        #[test]
        fn send_waits_at_the_write_high_water_mark_until_the_peer_reads() {
            const HIGH_WATER: usize = 64 * 1024;
            const SIZE: usize = 16 * 1024;
            rt::run(GUARD, async {
                let config = Config::default().write_high_water(HIGH_WATER);
                let (mut ws, raw) = facing_raw(Role::Server, config).await;
                let message = Message::binary(binary_payload(SIZE, 3));
                let mut sent = 0usize;
                // The peer reads nothing: the socket buffers fill, then `send` must wait.
                let pending = loop {
                    assert!(
                        sent < 16 * 1024,
                        "send never waited ({sent} messages queued)"
                    );
                    let queued = ws.queued_bytes();
                    assert!(
                        queued <= HIGH_WATER + SIZE + 14,
                        "{queued} bytes queued: above the high-water mark plus one message"
                    );
                    let mut send = Box::pin(ws.send(message.clone()));
                    // Pending may be transient while the kernel still frees buffer space for
                    // bytes it is acknowledging; a send that stays pending across many polls
                    // is waiting for the peer.
                    let mut polls = 0;
                    let stalled = loop {
                        match poll_once(send.as_mut()) {
                            Poll::Ready(r) => {
                                r.expect("send");
                                break false;
                            }
                            Poll::Pending if polls == 50 => break true,
                            Poll::Pending => {
                                polls += 1;
                                rt::yield_now().await;
                            }
                        }
                    };
                    if stalled {
                        break send;
                    }
                    sent += 1;
                };
                // Now the peer reads: every message arrives, the pending send completes.
                let reader = rt::spawn(async move {
                    let mut raw = raw;
                    let mut count = 0usize;
                    loop {
                        let frame = raw.expect_frame().await;
                        match frame.header.opcode {
                            OpCode::Binary => {
                                assert_eq!(frame.payload.len(), SIZE);
                                count += 1;
                            }
                            OpCode::Close => {
                                raw.send_frame(true, op::CLOSE, &frame.payload).await;
                                raw_finish(&mut raw).await;
                                return count;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                });
                pending
                    .await
                    .expect("the waiting send completes once the peer reads");
                sent += 1;
                for _ in 0..10 {
                    ws.send(message.clone()).await.expect("send");
                    sent += 1;
                }
                let outcome = ws.close(CloseCode::NORMAL, "").await.expect("close");
                assert_clean(&outcome, 1000, "", Initiator::Local);
                assert_eq!(reader.await, sent, "every message sent arrived");
            });
        }

        /// A timer setting for the timeout tests: seconds on tokio's paused clock, a tenth of a
        /// second on smol's real one.
        fn timer(paused_secs: u64) -> Option<Duration> {
            Some(if rt::PAUSED {
                Duration::from_secs(paused_secs)
            } else {
                Duration::from_millis(100)
            })
        }

        /// No handshake timer on a paused clock unless a test wants one (see `keepalive_config`).
        fn timeouts_config() -> Config {
            Config::default().handshake_timeout(None)
        }

        #[test]
        fn read_timeout_closes_an_idle_connection_with_1000() {
            rt::run_paused(GUARD, async {
                for role in ROLES {
                    let config = timeouts_config().idle_timeout(timer(5));
                    let (ws, mut raw) = facing_raw(role, config).await;
                    let ((end, outcome), close) =
                        join(last_recv(ws), raw_answer_close(&mut raw)).await;
                    assert!(end.is_none(), "{role:?}: {end:?}");
                    assert_eq!(close.close_code(), Some(1000), "{role:?}");
                    let outcome = outcome.expect("outcome");
                    assert!(
                        outcome.clean && outcome.error.is_none(),
                        "{role:?}: {outcome:?}"
                    );
                    assert_eq!(outcome.initiator, Initiator::Local);
                }
            });
        }

        #[test]
        fn close_timeout_ends_a_close_the_peer_never_answers() {
            rt::run_paused(GUARD, async {
                for role in ROLES {
                    let config = timeouts_config().close_timeout(timer(5));
                    let (mut ws, mut raw) = facing_raw(role, config).await;
                    // The peer reads everything and answers nothing.
                    let (outcome, frames) =
                        join(ws.close(CloseCode::new(4000), "bye"), raw.until_eof()).await;
                    let outcome = outcome.expect("close resolves");
                    assert!(!outcome.clean, "{role:?}: {outcome:?}");
                    assert_eq!(
                        outcome.error,
                        Some(ConnectionError::CloseTimeout),
                        "{role:?}"
                    );
                    assert_eq!(outcome.code, CloseCode::ABNORMAL);
                    assert!(
                        frames.iter().any(|f| f.close_code() == Some(4000)),
                        "{role:?}: our close frame: {frames:?}"
                    );
                    assert!(ws.is_closed());
                }
            });
        }

        #[test]
        fn handshake_timeout_ends_a_silent_peer() {
            rt::run_paused(GUARD, async {
                let config = Config::default().handshake_timeout(timer(5));

                // A client that connects and says nothing.
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, config.clone(), |_| Ok(AcceptOptions::new()));
                let tcp = rt::connect(port).await;
                match server.await {
                    Err(Error::HandshakeTimeout) => {}
                    other => panic!("server: expected HandshakeTimeout, got {other:?}"),
                }
                drop(tcp);

                // A server that accepts TCP and never answers the upgrade request.
                let (listener, port) = rt::bind().await;
                let silent = rt::spawn(async move {
                    let mut raw = rt::Raw::new(listener.accept().await, false, Vec::new());
                    while raw.fill().await {}
                });
                let options = ConnectOptions::new().config(config);
                match ws::connect_with(&url(port), &options).await {
                    Err(Error::HandshakeTimeout) => {}
                    other => panic!("client: expected HandshakeTimeout, got {other:?}"),
                }
                silent.await;
            });
        }

        #[test]
        fn write_timeout_fails_a_peer_that_stops_reading() {
            const SIZE: usize = 16 * 1024;
            rt::run_paused(GUARD, async {
                let config = timeouts_config()
                    .write_timeout(timer(5))
                    .write_high_water(64 * 1024);
                let (mut ws, raw) = facing_raw(Role::Server, config).await;
                let message = Message::binary(vec![7u8; SIZE]);
                let mut sent = 0usize;
                let err = loop {
                    assert!(sent < 16 * 1024, "no write timeout after {sent} messages");
                    match ws.send(message.clone()).await {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                };
                match &err {
                    Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
                    other => panic!("expected a timed-out I/O error, got {other:?}"),
                }
                assert!(ws.is_closed());
                drop(raw);
            });
        }

        // ---- json -----------------------------------------------------------------------

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        struct Move {
            player: String,
            x: i32,
            y: i32,
            tags: Vec<String>,
        }

        #[test]
        fn json_round_trip() {
            rt::run(GUARD, async {
                let (mut client, mut server) = ours(Config::default(), ConnectOptions::new()).await;
                let sent = Move {
                    player: "ünïcode".into(),
                    x: -3,
                    y: 7,
                    tags: vec!["a".into(), "b".into()],
                };
                client.send_json(&sent).await.expect("send_json");
                let got: Move = server.recv_json().await.expect("open").expect("json");
                assert_eq!(got, sent);
                let reply = Move { x: 4, ..got };
                server.send_json(&reply).await.expect("send_json");
                let back: Move = client.recv_json().await.expect("open").expect("json");
                assert_eq!(back, reply);

                // Invalid JSON is an error for that message only.
                client.send_text("{not json").await.expect("send");
                client.send_json(&sent).await.expect("send_json");
                match server.recv_json::<Move>().await {
                    Some(Err(Error::Json(_))) => {}
                    other => panic!("expected a JSON error, got {other:?}"),
                }
                let again: Move = server.recv_json().await.expect("open").expect("json");
                assert_eq!(again, sent);

                let server = rt::spawn(echo(server));
                let outcome = client.close(CloseCode::NORMAL, "").await.expect("close");
                assert_clean(&outcome, 1000, "", Initiator::Local);
                assert_clean(&server.await.expect("outcome"), 1000, "", Initiator::Remote);
            });
        }

        // ---- permessage-deflate -------------------------------------------------------------

        fn deflate(config: ws::DeflateConfig) -> Config {
            Config::default().deflate(Some(config))
        }

        /// A JSON-like text of about `n` bytes that compresses well but not trivially.
        fn json_text(n: usize, seed: usize) -> String {
            let mut s = String::from("[");
            let mut i = 0;
            while s.len() < n {
                s.push_str(&format!(
                    "{{\"id\":{},\"user\":\"user-{}\",\"text\":\"message {} of the feed\",\"ts\":{}}},",
                    seed * 1000 + i,
                    (seed + i) % 17,
                    i,
                    1_700_000_000 + i * 37
                ));
                i += 1;
            }
            s.push(']');
            s
        }

        /// `text` through `server`'s echo and back, then a clean close.
        async fn echo_text_and_close(mut client: WebSocket, server: WebSocket, text: &str) {
            let server = rt::spawn(echo(server));
            client.send_text(text).await.expect("send");
            let got = client.recv().await.expect("open").expect("echo");
            assert_eq!(got.as_text(), Some(text));
            client.close(CloseCode::NORMAL, "").await.expect("close");
            server.await.expect("outcome");
        }

        #[test]
        fn deflate_is_negotiated_and_messages_round_trip() {
            rt::run(GUARD, async {
                let cases = [
                    (ws::DeflateConfig::new(), ws::DeflateConfig::new()),
                    (ws::DeflateConfig::no_context_takeover(), ws::DeflateConfig::new()),
                    (
                        ws::DeflateConfig::new().client_max_window_bits(9),
                        ws::DeflateConfig::no_context_takeover().server_max_window_bits(10),
                    ),
                ];
                for (server_config, client_config) in cases {
                    let (mut client, server) = ours(
                        deflate(server_config.clone()),
                        ConnectOptions::new().config(deflate(client_config.clone())),
                    )
                    .await;
                    let agreed = client.extensions().map(str::to_owned);
                    assert!(
                        agreed.as_deref().is_some_and(|e| e.starts_with("permessage-deflate")),
                        "{agreed:?}"
                    );
                    assert_eq!(server.extensions(), agreed.as_deref());
                    let server = rt::spawn(echo(server));
                    let mut sent: Vec<Message> = (0..40)
                        .map(|i| Message::text(json_text(1024, i)))
                        .collect();
                    sent.push(Message::text("small, below the threshold"));
                    sent.push(Message::text(""));
                    sent.push(Message::text(text_payload(256 << 10)));
                    sent.push(Message::binary(binary_payload(64 << 10, 3)));
                    for message in &sent {
                        client.send(message.clone()).await.expect("send");
                    }
                    for message in &sent {
                        let got = client.recv().await.expect("open").expect("echo");
                        assert_eq!(&got, message, "{server_config:?} / {client_config:?}");
                    }
                    let outcome = client.close(CloseCode::NORMAL, "").await.expect("close");
                    assert_clean(&outcome, 1000, "", Initiator::Local);
                    assert_clean(&server.await.expect("outcome"), 1000, "", Initiator::Remote);
                }
            });
        }

        #[test]
        fn deflate_off_on_either_side_falls_back_to_plain_frames() {
            rt::run(GUARD, async {
                let on = deflate(ws::DeflateConfig::new());
                for (server_config, client_config) in
                    [(Config::default(), on.clone()), (on, Config::default())]
                {
                    let (client, server) =
                        ours(server_config, ConnectOptions::new().config(client_config)).await;
                    assert_eq!((client.extensions(), server.extensions()), (None, None));
                    echo_text_and_close(client, server, &json_text(4096, 1)).await;
                }
            });
        }

        #[test]
        fn the_accept_callback_can_decline_deflate_for_one_request() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                let server = serve_once(listener, deflate(ws::DeflateConfig::new()), |req| {
                    assert!(!req.extensions().is_empty(), "the client offered deflate");
                    Ok(AcceptOptions::new().extensions(""))
                });
                let options = ConnectOptions::new().config(deflate(ws::DeflateConfig::new()));
                let (client, response) =
                    ws::connect_with(&url(port), &options).await.expect("connect");
                let server = server.await.expect("accept");
                assert!(response.extensions.is_empty());
                assert_eq!((client.extensions(), server.extensions()), (None, None));
                echo_text_and_close(client, server, &json_text(2048, 4)).await;
            });
        }

        #[test]
        fn an_extension_named_by_the_accept_callback_is_refused() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                // The engine runs only what `Config::deflate` negotiates.
                let server = serve_once(listener, Config::default(), |_| {
                    Ok(AcceptOptions::new().extensions("permessage-deflate"))
                });
                let options = ConnectOptions::new().config(deflate(ws::DeflateConfig::new()));
                match ws::connect_with(&url(port), &options).await {
                    Err(Error::Handshake(HandshakeError::Rejected { status, .. })) => {
                        assert_eq!(status, 500);
                    }
                    other => panic!("expected a 500, got {:?}", other.map(|_| ())),
                }
                match server.await {
                    Err(Error::Handshake(HandshakeError::InvalidExtension(why))) => {
                        assert!(why.contains("permessage-deflate"), "{why}");
                    }
                    other => panic!("expected InvalidExtension, got {:?}", other.map(|_| ())),
                }
            });
        }

        /// The raw peer's view: our messages leave as RSV1 frames much smaller than the text,
        /// and a compressed frame the peer sends arrives as the original text.
        #[test]
        fn deflated_frames_on_the_wire_in_both_roles() {
            use tidings_core::ext::{ExtensionConfig, negotiate_client, negotiate_server};
            rt::run(GUARD, async {
                for role in ROLES {
                    let (listener, port) = rt::bind().await;
                    let config = deflate(ws::DeflateConfig::new());
                    // The raw peer's own permessage-deflate state, from its side of the handshake.
                    let peer = ws::DeflateConfig::new().threshold(0);
                    let (ours_ws, mut raw, mut ext) = match role {
                        Role::Server => {
                            let server = serve_once(listener, config, |_| Ok(AcceptOptions::new()));
                            let offer = ws::core::handshake::render_extensions(&peer.offers());
                            let (raw, answer) = rt::Raw::client(
                                port,
                                "/",
                                &[("Sec-WebSocket-Extensions", offer.as_str())],
                            )
                            .await;
                            let answer = answer.expect("101");
                            let ext = negotiate_client(&[&peer], &answer.extensions)
                                .expect("acceptable answer")
                                .expect("deflate agreed");
                            (server.await.expect("accept"), raw, ext)
                        }
                        Role::Client => {
                            let client = rt::spawn(async move {
                                let options = ConnectOptions::new().config(config);
                                ws::connect_with(&url(port), &options).await.expect("connect").0
                            });
                            let tcp = listener.accept().await;
                            let mut ext = None;
                            let raw = rt::Raw::server_over(tcp, &[], |req| {
                                let (value, instance) =
                                    negotiate_server(&[&peer], &req.extensions())
                                        .expect("our client offers deflate");
                                ext = Some(instance);
                                AcceptOptions::new().extensions(value)
                            })
                            .await;
                            (client.await, raw, ext.expect("negotiated"))
                        }
                    };
                    assert!(ours_ws.extensions().is_some());
                    let mut ours_ws = ours_ws;
                    let text = json_text(8192, 2);
                    ours_ws.send_text(&text).await.expect("send");
                    let frame = raw.expect_frame().await;
                    assert_eq!(frame.header.rsv, 0b100, "{role:?}: RSV1 on a compressed message");
                    assert!(frame.payload.len() < text.len() / 3, "{}", frame.payload.len());
                    let mut out = bytes::BytesMut::new();
                    ext.decode(0b100, &frame.payload, true, &mut out, usize::MAX)
                        .expect("inflates");
                    assert_eq!(&out[..], text.as_bytes());
                    // A small message goes uncompressed.
                    ours_ws.send_text("hi").await.expect("send");
                    let small = raw.expect_frame().await;
                    assert_eq!((small.header.rsv, &small.payload[..]), (0, &b"hi"[..]));
                    // The peer's compressed message, in two fragments (RSV1 on the first).
                    let reply = json_text(3000, 3);
                    let mut wire = bytes::BytesMut::new();
                    ext.encode(MessageKind::Text, reply.as_bytes(), &mut wire)
                        .expect("compresses")
                        .expect("compressed");
                    let mask = raw.masks.then_some(tidings_tests::TEST_KEY);
                    let half = wire.len() / 2;
                    let mut bytes = tidings_tests::raw_frame(false, 0b100, op::TEXT, mask, &wire[..half]);
                    bytes.extend(tidings_tests::raw_frame(true, 0, op::CONT, mask, &wire[half..]));
                    raw.send(&bytes).await;
                    let got = ours_ws.recv().await.expect("open").expect("message");
                    assert_eq!(got.as_text(), Some(reply.as_str()), "{role:?}");
                    let outcome = rt::spawn(last_recv(ours_ws));
                    raw_close(&mut raw, 1000, "").await;
                    outcome.await;
                }
            });
        }

        #[test]
        fn a_deflate_answer_the_client_did_not_ask_for_fails_the_handshake() {
            rt::run(GUARD, async {
                let (listener, port) = rt::bind().await;
                // We ask for a 10-bit server window; the server answers without it.
                let config = deflate(ws::DeflateConfig::new().server_max_window_bits(10));
                let client = rt::spawn(async move {
                    let options = ConnectOptions::new().config(config);
                    ws::connect_with(&url(port), &options).await.map(|_| ())
                });
                let tcp = listener.accept().await;
                let _raw = rt::Raw::server_over(tcp, &[], |req| {
                    assert!(req.extensions().iter().any(|e| e.name == "permessage-deflate"));
                    AcceptOptions::new().extensions("permessage-deflate")
                })
                .await;
                match client.await {
                    Err(Error::Handshake(HandshakeError::ExtensionRefused(why))) => {
                        assert!(why.contains("server_max_window_bits"), "{why}");
                    }
                    other => panic!("expected ExtensionRefused, got {other:?}"),
                }
            });
        }

        /// A frame of a few MiB that would inflate to 4 GiB ends the connection with 1009 at
        /// the message-size limit, in both roles.
        #[test]
        fn decompression_bomb_is_closed_with_1009() {
            rt::run(GUARD, async {
                let bomb = tidings_tests::deflate_bomb(4096);
                for role in ROLES {
                    let config = deflate(ws::DeflateConfig::new()).max_message_size(Some(1 << 20));
                    let (ours_ws, mut raw) = match role {
                        Role::Server => {
                            let (listener, port) = rt::bind().await;
                            let server = serve_once(listener, config, |_| Ok(AcceptOptions::new()));
                            let (raw, answer) = rt::Raw::client(
                                port,
                                "/",
                                &[("Sec-WebSocket-Extensions", "permessage-deflate")],
                            )
                            .await;
                            assert!(!answer.expect("101").extensions.is_empty());
                            (server.await.expect("accept"), raw)
                        }
                        Role::Client => {
                            let (listener, port) = rt::bind().await;
                            let client = rt::spawn(async move {
                                let options = ConnectOptions::new().config(config);
                                ws::connect_with(&url(port), &options).await.expect("connect").0
                            });
                            let tcp = listener.accept().await;
                            let raw = rt::Raw::server_over(tcp, &[], |_| {
                                AcceptOptions::new().extensions("permessage-deflate")
                            })
                            .await;
                            (client.await, raw)
                        }
                    };
                    // 64 KiB frames, RSV1 on the first: each passes the wire-size checks, so
                    // the decoded size is what trips the limit.
                    let mask = raw.masks.then_some(tidings_tests::TEST_KEY);
                    let pieces: Vec<&[u8]> = bomb.chunks(64 << 10).collect();
                    let mut frame = Vec::new();
                    for (i, piece) in pieces.iter().enumerate() {
                        let (rsv, opcode) = if i == 0 { (0b100, op::BINARY) } else { (0, op::CONT) };
                        let fin = i + 1 == pieces.len();
                        frame.extend(tidings_tests::raw_frame(fin, rsv, opcode, mask, piece));
                    }
                    let app = rt::spawn(last_recv(ours_ws));
                    // The peer may stop reading once it failed: the write's result is moot.
                    let _ = rt::write_all(&mut raw.tcp, &frame).await;
                    let close = raw_failure_close(&mut raw).await;
                    assert_eq!(close.close_code(), Some(1009), "{role:?}");
                    let (end, outcome) = app.await;
                    assert!(!matches!(end, Some(Ok(_))), "{role:?}: {end:?}");
                    let outcome = outcome.expect("ended");
                    assert_eq!(outcome.sent.map(|f| f.code), Some(CloseCode::MESSAGE_TOO_BIG));
                }
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
