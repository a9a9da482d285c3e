//! Scenario tests on the in-memory client/server `Pair` with simulated time, and raw-byte injection
//! of protocol violations. Each test is named for what it guards.

use std::time::{Duration, Instant};

use tidings_core::{
    CloseCode, CloseFrame, CloseOutcome, Config, Connection, ConnectionError, EncodedFrame, Error,
    Event, Initiator, Message, MessageKind, OpCode, ProtocolError, Role,
};
use tidings_tests::{
    LenForm, Pair, TEST_KEY, client, client_frame, close_payload, closed, count_pings, count_pongs,
    decode_frames, drain_events, feed, frame_to, op, raw_frame, raw_header, raw_header_with,
    reassemble, server, server_frame, take_output,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The server answers every message with the same message, before the next event is decoded.
fn echo(role: Role, conn: &mut Connection, e: &Event, _now: Instant) {
    if role == Role::Server
        && conn.is_open()
        && let Event::Message(m) = e
    {
        conn.send(m.clone()).expect("echo");
    }
}

fn text_of(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn binary_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn header_len(n: usize, masked: bool) -> usize {
    let ext = if n < 126 {
        0
    } else if n <= 65535 {
        2
    } else {
        8
    };
    2 + ext + if masked { 4 } else { 0 }
}

fn side_events(pair: &Pair, role: Role) -> &[Event] {
    match role {
        Role::Client => &pair.client_events,
        Role::Server => &pair.server_events,
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

#[test]
fn echo_text_and_binary_at_length_encoding_boundaries() {
    for n in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
        for (chunk, write) in [(None, None), (Some(4093), Some(1500))] {
            let mut pair = Pair::new();
            pair.chunk_size = chunk;
            pair.write_limit = write;
            let text = text_of(n);
            let bin = binary_of(n);
            pair.client.send_text(&text).expect("send text");
            pair.drive_with(&mut echo);
            // One masked frame with the minimal length encoding (RFC 6455 §5.2).
            assert_eq!(pair.client_wire.len(), header_len(n, true) + n, "n={n}");
            assert_eq!(pair.server_wire.len(), header_len(n, false) + n, "n={n}");
            pair.client.send_binary(&bin).expect("send binary");
            pair.drive_with(&mut echo);
            let expect = vec![Message::text(text.clone()), Message::binary(bin.clone())];
            assert_eq!(pair.server_messages(), expect, "server n={n} {chunk:?}");
            assert_eq!(pair.client_messages(), expect, "client n={n} {chunk:?}");
            assert!(pair.client_closed().is_none() && pair.server_closed().is_none());
        }
    }
}

#[test]
fn echo_is_unchanged_by_one_byte_reads_and_tiny_partial_writes() {
    let mut pair = Pair::new().chunked(1).partial_writes(3);
    let sent = vec![
        Message::text("héllo wörld ✓"),
        Message::binary(binary_of(300)),
        Message::text(""),
        Message::binary(Vec::new()),
    ];
    for m in &sent {
        pair.client.send(m.clone()).expect("send");
    }
    pair.drive_with(&mut echo);
    assert_eq!(pair.server_messages(), sent);
    assert_eq!(pair.client_messages(), sent);
}

#[test]
fn fragmented_message_with_interleaved_pings_is_reassembled_and_pings_answered() {
    let mut pair = Pair::new();
    let now = pair.now;
    pair.client
        .send_fragment(MessageKind::Text, b"Hel", false)
        .expect("f1");
    pair.client.send_ping(now, b"p1").expect("ping");
    pair.client
        .send_fragment(MessageKind::Text, b"lo ", false)
        .expect("f2");
    pair.client.send_ping(now, b"p2").expect("ping");
    pair.client
        .send_fragment(MessageKind::Text, b"world", true)
        .expect("f3");
    pair.drive();
    let ev = &pair.server_events;
    assert_eq!(
        ev.as_slice(),
        &[
            Event::Ping(b"p1"[..].into()),
            Event::Ping(b"p2"[..].into()),
            Event::Message(Message::text("Hello world")),
        ]
    );
    // Automatic pongs echo the ping payloads (RFC 6455 §5.5.3).
    assert_eq!(
        pair.client_events,
        vec![Event::Pong(b"p1"[..].into()), Event::Pong(b"p2"[..].into())]
    );
}

#[test]
fn send_fragment_streams_text_and_binary_as_continuation_frames() {
    let mut pair = Pair::new();
    // Text, with a character split across fragments ("é" = c3 a9).
    pair.server
        .send_fragment(MessageKind::Text, b"caf\xc3", false)
        .expect("t1");
    pair.server
        .send_fragment(MessageKind::Text, b"\xa9 ", false)
        .expect("t2");
    pair.server
        .send_fragment(MessageKind::Text, b"noir", true)
        .expect("t3");
    // Binary through the writer.
    let mut w = pair.server.message_writer(MessageKind::Binary);
    w.write(&[1, 2]).expect("b1");
    w.write(&[]).expect("b2");
    w.finish(&[3]).expect("b3");
    assert!(!pair.server.is_sending_fragments());
    pair.drive();
    assert_eq!(
        pair.client_messages(),
        vec![Message::text("café noir"), Message::binary(vec![1u8, 2, 3])]
    );
    let frames = decode_frames(&pair.server_wire).expect("server output decodes");
    let shape: Vec<(OpCode, bool)> = frames
        .iter()
        .map(|f| (f.header.opcode, f.header.fin))
        .collect();
    assert_eq!(
        shape,
        vec![
            (OpCode::Text, false),
            (OpCode::Continuation, false),
            (OpCode::Continuation, true),
            (OpCode::Binary, false),
            (OpCode::Continuation, false),
            (OpCode::Continuation, true),
        ]
    );
}

#[test]
fn send_fragment_rejects_mixing_kinds_whole_messages_and_bad_utf8() {
    let now = Instant::now();
    let mut c = client(Config::default(), now);
    c.send_fragment(MessageKind::Text, b"ab", false)
        .expect("start");
    assert!(c.is_sending_fragments());
    assert_eq!(c.send_text("x"), Err(Error::MessageInProgress));
    assert_eq!(c.send_binary(b"x"), Err(Error::MessageInProgress));
    assert_eq!(
        c.send_fragment(MessageKind::Binary, b"x", true),
        Err(Error::MessageInProgress)
    );
    assert_eq!(
        c.send_fragment(MessageKind::Text, b"\xff", false),
        Err(Error::InvalidUtf8)
    );
    // A message may not end inside a character.
    assert_eq!(
        c.send_fragment(MessageKind::Text, b"\xc3", true),
        Err(Error::InvalidUtf8)
    );
    // Control frames may be interleaved (RFC 6455 §5.4).
    c.send_ping(now, b"").expect("ping between fragments");
    c.send_fragment(MessageKind::Text, b"cd", true)
        .expect("finish");
    c.send_text("after")
        .expect("whole message after the stream ended");
}

#[test]
fn streaming_incoming_mode_delivers_fragments_that_concatenate_to_the_message() {
    let big = binary_of(200_000);
    let mut pair = Pair::with_configs(Config::default(), Config::default().stream_incoming(true))
        .chunked(1000);
    pair.client.send_binary(&big).expect("big");
    pair.client
        .send_fragment(MessageKind::Text, b"he", false)
        .expect("t1");
    pair.client
        .send_fragment(MessageKind::Text, b"", false)
        .expect("t2");
    pair.client
        .send_fragment(MessageKind::Text, b"llo \xe2\x9c", false)
        .expect("t3");
    pair.client
        .send_fragment(MessageKind::Text, b"\x93", true)
        .expect("t4");
    pair.drive();
    let mut got: Vec<(MessageKind, Vec<u8>)> = Vec::new();
    let mut current: Option<(MessageKind, Vec<u8>)> = None;
    let mut pieces = 0;
    for e in &pair.server_events {
        let Event::Fragment(f) = e else {
            panic!("streaming mode produced {e:?}");
        };
        pieces += 1;
        let cur = current.get_or_insert_with(|| (f.kind, Vec::new()));
        assert_eq!(cur.0, f.kind, "kind repeated on every fragment");
        cur.1.extend_from_slice(&f.data);
        if f.fin {
            got.extend(current.take());
        }
    }
    assert!(current.is_none(), "last message not finished");
    assert_eq!(
        got,
        vec![
            (MessageKind::Binary, big.clone()),
            (MessageKind::Text, "hello ✓".as_bytes().to_vec())
        ]
    );
    // Delivered as it arrived, not buffered whole.
    assert!(
        pieces > 100,
        "only {pieces} fragments for 200 kB in 1000-byte reads"
    );
}

#[test]
fn send_encoded_gives_identical_bytes_to_every_server_connection() {
    let now = Instant::now();
    for msg in [
        Message::text("broadcast"),
        Message::binary(binary_of(10_000)),
    ] {
        let frame = EncodedFrame::new(&msg);
        let mut outputs = Vec::new();
        for _ in 0..3 {
            let mut s = server(Config::default(), now);
            s.send_encoded(&frame).expect("send_encoded");
            outputs.push(take_output(&mut s));
        }
        for out in &outputs {
            assert_eq!(out, &frame.wire()[..]);
            let mut c = client(Config::default(), now);
            assert_eq!(
                feed(&mut c, now, out, None),
                vec![Event::Message(msg.clone())]
            );
        }
        // A client must mask: its copy decodes to the same message on a server.
        let mut c = client(Config::default(), now);
        c.send_encoded(&frame).expect("client send_encoded");
        let wire = take_output(&mut c);
        assert_ne!(wire, &frame.wire()[..]);
        let mut s = server(Config::default(), now);
        assert_eq!(feed(&mut s, now, &wire, None), vec![Event::Message(msg)]);
    }
}

#[test]
fn queued_bytes_grows_with_sends_and_drops_to_zero_after_transmit() {
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    assert_eq!(s.queued_bytes(), 0);
    s.send_text("0123456789").expect("text");
    assert_eq!(s.queued_bytes(), 12);
    s.send_binary(&[0u8; 200]).expect("binary");
    assert_eq!(s.queued_bytes(), 12 + 4 + 200);
    s.send(Message::binary(vec![0u8; 70_000])).expect("shared");
    let total = 12 + 204 + 10 + 70_000;
    assert_eq!(s.queued_bytes(), total);
    // A partial write drops exactly what was written.
    s.advance_transmit(5);
    assert_eq!(s.queued_bytes(), total - 5);
    let mut out = Vec::new();
    assert_eq!(s.poll_transmit(&mut out), total - 5);
    assert_eq!(s.queued_bytes(), 0);

    let mut c = client(Config::default(), now);
    c.send_text("abc").expect("text");
    assert_eq!(
        c.queued_bytes(),
        2 + 4 + 3,
        "client frames carry a 4-byte key"
    );
    c.send_ping(now, b"x").expect("ping");
    assert_eq!(c.queued_bytes(), 9 + 7);
    assert_eq!(take_output(&mut c).len(), 16);
    assert_eq!(c.queued_bytes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Close handshake
// ---------------------------------------------------------------------------------------------

#[test]
fn client_initiated_close_is_clean_on_both_sides_and_server_closes_transport_first() {
    let now = Instant::now();
    let mut c = client(Config::default(), now);
    let mut s = server(Config::default(), now);
    c.close(now, CloseCode::NORMAL, "bye").expect("close");
    assert!(!c.is_open());
    let server_events = feed(&mut s, now, &take_output(&mut c), None);
    assert_eq!(
        server_events,
        vec![
            Event::CloseReceived(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))),
            Event::Closed(CloseOutcome {
                code: CloseCode::NORMAL,
                reason: "bye".into(),
                // The server echoed the code of the client's close frame (RFC 6455 §5.5.1).
                sent: Some(CloseFrame::new(CloseCode::NORMAL, "")),
                initiator: Initiator::Remote,
                clean: true,
                error: None,
            }),
        ]
    );
    // RFC 6455 §7.1.1: the server closes the TCP connection right after the handshake.
    assert!(s.should_close_transport());
    let client_events = feed(&mut c, now, &take_output(&mut s), None);
    assert!(matches!(
        client_events.as_slice(),
        [Event::CloseReceived(Some(f)), Event::Closed(o)]
            if f.code == CloseCode::NORMAL
                // RFC 6455 §7.1.5/§7.1.6: code and reason are those received (the server's echo).
                && o.code == CloseCode::NORMAL
                && o.reason.is_empty()
                && o.sent == Some(CloseFrame::new(CloseCode::NORMAL, "bye"))
                && o.initiator == Initiator::Local
                && o.clean
                && o.error.is_none()
    ));
    // The client waits for the server's TCP close (EOF) …
    assert!(!c.should_close_transport());
    c.receive_eof(now);
    assert!(c.should_close_transport());
    assert_eq!(c.poll_event(), None);
}

#[test]
fn client_closes_transport_after_close_timeout_when_server_keeps_it_open() {
    let now = Instant::now();
    let cfg = Config::default().close_timeout(Some(SECS(2)));
    let mut c = client(cfg.clone(), now);
    let mut s = server(cfg, now);
    c.close(now, CloseCode::NORMAL, "").expect("close");
    feed(&mut s, now, &take_output(&mut c), None);
    let ev = feed(&mut c, now, &take_output(&mut s), None);
    assert!(closed(&ev).is_some_and(|o| o.clean));
    assert!(!c.should_close_transport());
    let deadline = c
        .poll_timeout()
        .expect("client waits for the TCP close with a deadline");
    assert!(deadline <= now + SECS(2));
    c.handle_timeout(now + SECS(2) - Duration::from_millis(1));
    assert!(!c.should_close_transport(), "closed before the timeout");
    c.handle_timeout(now + SECS(2));
    assert!(c.should_close_transport());
    assert_eq!(c.poll_event(), None);
}

#[test]
fn server_initiated_close_is_clean_on_both_sides() {
    let mut pair = Pair::new();
    let now = pair.now;
    pair.server
        .close(now, CloseCode::GOING_AWAY, "restart")
        .expect("close");
    pair.drive();
    assert!(matches!(
        pair.client_events.as_slice(),
        [Event::CloseReceived(Some(f)), Event::Closed(o)]
            if f.code == CloseCode::GOING_AWAY && f.reason == "restart"
                && o.code == CloseCode::GOING_AWAY
                && o.initiator == Initiator::Remote
                && o.clean
                && o.error.is_none()
    ));
    assert!(matches!(
        pair.server_events.as_slice(),
        [Event::CloseReceived(Some(f)), Event::Closed(o)]
            if f.code == CloseCode::GOING_AWAY
                && o.code == CloseCode::GOING_AWAY
                && o.reason.is_empty()
                && o.sent == Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart"))
                && o.initiator == Initiator::Local
                && o.clean
                && o.error.is_none()
    ));
    assert!(pair.server.should_close_transport());
    assert!(
        pair.server_transport_closed,
        "server closed the TCP connection"
    );
    // The client read EOF and may close its end too.
    assert!(pair.client.should_close_transport());
}

#[test]
fn simultaneous_close_is_clean_on_both_sides() {
    let mut pair = Pair::new();
    let now = pair.now;
    pair.client
        .close(now, CloseCode::NORMAL, "c")
        .expect("close");
    pair.server
        .close(now, CloseCode::GOING_AWAY, "s")
        .expect("close");
    pair.drive();
    let c = pair.client_closed().expect("client closed");
    let s = pair.server_closed().expect("server closed");
    assert!(c.clean && s.clean && c.error.is_none() && s.error.is_none());
    assert_eq!(
        (c.initiator, s.initiator),
        (Initiator::Local, Initiator::Local)
    );
    // Each reports the code it received (RFC 6455 §7.1.5) and the one it sent.
    assert_eq!((c.code, s.code), (CloseCode::GOING_AWAY, CloseCode::NORMAL));
    assert_eq!(
        (
            c.sent.as_ref().map(|f| f.code),
            s.sent.as_ref().map(|f| f.code)
        ),
        (Some(CloseCode::NORMAL), Some(CloseCode::GOING_AWAY))
    );
    // Exactly one close frame each way.
    for wire in [&pair.client_wire, &pair.server_wire] {
        let frames = decode_frames(wire).expect("decodes");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].header.opcode, OpCode::Close);
    }
}

#[test]
fn close_timeout_when_peer_never_answers_is_1006() {
    for role in [Role::Client, Role::Server] {
        let now = Instant::now();
        let cfg = Config::default().close_timeout(Some(SECS(3)));
        let mut conn = tidings_tests::connection(role, cfg, now);
        conn.close(now, CloseCode::NORMAL, "bye").expect("close");
        let frames = decode_frames(&take_output(&mut conn)).expect("decodes");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].close_code(), Some(1000));
        assert_eq!(conn.poll_timeout(), Some(now + SECS(3)));
        conn.handle_timeout(now + SECS(3) - Duration::from_millis(1));
        assert_eq!(conn.poll_event(), None, "{role:?}: closed early");
        conn.handle_timeout(now + SECS(3));
        let ev = drain_events(&mut conn);
        assert_eq!(
            ev,
            vec![Event::Closed(CloseOutcome {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                sent: Some(CloseFrame::new(CloseCode::NORMAL, "bye")),
                initiator: Initiator::Local,
                clean: false,
                error: Some(ConnectionError::CloseTimeout),
            })],
            "{role:?}"
        );
        assert!(conn.should_close_transport());
        // Nothing more goes on the wire (1006 is never sent, RFC 6455 §7.4.1).
        assert_eq!(conn.queued_bytes(), 0);
    }
}

#[test]
fn eof_before_close_is_1006_unexpected_eof() {
    for role in [Role::Client, Role::Server] {
        let now = Instant::now();
        let mut conn = tidings_tests::connection(role, Config::default(), now);
        // A complete message before the EOF is still delivered; a partial frame is not.
        let mut bytes = frame_to(role, true, op::TEXT, b"last words");
        bytes.extend_from_slice(&frame_to(role, true, op::BINARY, b"cut off")[..4]);
        conn.receive(now, &bytes);
        conn.receive_eof(now);
        let ev = drain_events(&mut conn);
        assert_eq!(ev.len(), 2, "{role:?}: {ev:?}");
        assert_eq!(ev[0], Event::Message(Message::text("last words")));
        let o = closed(&ev).expect("closed");
        assert_eq!(o.code, CloseCode::ABNORMAL);
        assert!(!o.clean);
        assert_eq!(o.error, Some(ConnectionError::UnexpectedEof));
        assert!(conn.should_close_transport());
        assert_eq!(
            conn.queued_bytes(),
            0,
            "no close frame after the transport ended"
        );
    }
}

#[test]
fn eof_after_our_close_frame_reports_the_close_as_locally_initiated() {
    // We sent a close frame; the peer dropped the TCP connection without answering.
    let now = Instant::now();
    let mut c = client(Config::default(), now);
    c.close(now, CloseCode::NORMAL, "bye").expect("close");
    let _ = take_output(&mut c);
    c.receive_eof(now);
    let ev = drain_events(&mut c);
    let o = closed(&ev).expect("closed");
    assert_eq!(o.code, CloseCode::ABNORMAL);
    assert_eq!(o.error, Some(ConnectionError::UnexpectedEof));
    assert!(!o.clean);
    // `Initiator::Local` is documented as "this endpoint (a `close` command, …)": the close was
    // started by our close command, not by the peer.
    assert_eq!(o.initiator, Initiator::Local);
}

#[test]
fn commands_after_close_return_closing_then_closed() {
    let mut pair = Pair::new();
    let now = pair.now;
    let frame = EncodedFrame::new(&Message::text("x"));
    pair.client
        .close(now, CloseCode::NORMAL, "")
        .expect("close");
    let c = &mut pair.client;
    assert_eq!(c.send_text("x"), Err(Error::Closing));
    assert_eq!(c.send_binary(b"x"), Err(Error::Closing));
    assert_eq!(c.send(Message::text("x")), Err(Error::Closing));
    assert_eq!(c.send_encoded(&frame), Err(Error::Closing));
    assert_eq!(
        c.send_fragment(MessageKind::Binary, b"x", true),
        Err(Error::Closing)
    );
    // Control frames may follow our close frame (RFC 6455 §5.5.1 forbids only data frames).
    assert_eq!(c.send_ping(now, b""), Ok(()));
    assert_eq!(c.close(now, CloseCode::NORMAL, ""), Err(Error::Closing));
    pair.drive();
    assert!(pair.client.is_closed() && pair.server.is_closed());
    for conn in [&mut pair.client, &mut pair.server] {
        assert_eq!(conn.send_text("x"), Err(Error::Closed));
        assert_eq!(conn.send_binary(b"x"), Err(Error::Closed));
        assert_eq!(conn.send_encoded(&frame), Err(Error::Closed));
        assert_eq!(
            conn.send_fragment(MessageKind::Text, b"x", true),
            Err(Error::Closed)
        );
        assert_eq!(conn.send_ping(now, b""), Err(Error::Closed));
        assert_eq!(conn.send_pong(b""), Err(Error::Closed));
        assert_eq!(conn.close(now, CloseCode::NORMAL, ""), Err(Error::Closed));
        assert_eq!(conn.queued_bytes(), 0);
    }
}

#[test]
fn control_payload_over_125_bytes_is_a_local_error() {
    let now = Instant::now();
    let mut c = client(Config::default(), now);
    assert_eq!(
        c.send_ping(now, &[0u8; 126]),
        Err(Error::ControlPayloadTooLong(126))
    );
    assert_eq!(
        c.send_pong(&[0u8; 126]),
        Err(Error::ControlPayloadTooLong(126))
    );
    assert_eq!(c.queued_bytes(), 0, "nothing queued for a rejected command");
    assert!(c.is_open());
    c.send_ping(now, &[0u8; 125]).expect("125 bytes is allowed");
    assert_eq!(c.queued_bytes(), 2 + 4 + 125);
}

#[test]
fn unsendable_close_code_or_long_reason_is_a_local_error() {
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(
            s.close(now, CloseCode::new(code), ""),
            Err(Error::InvalidCloseCode(code))
        );
    }
    let long = "x".repeat(124);
    assert_eq!(
        s.close(now, CloseCode::NORMAL, &long),
        Err(Error::CloseReasonTooLong(124))
    );
    assert!(s.is_open(), "a rejected close leaves the connection open");
    assert_eq!(s.queued_bytes(), 0);
    s.send_text("still open").expect("send");
    s.close(now, CloseCode::new(4999), &"y".repeat(123))
        .expect("4999 with a 123-byte reason");
    let frames = decode_frames(&take_output(&mut s)).expect("decodes");
    assert_eq!(frames[1].close_code(), Some(4999));
    assert_eq!(frames[1].payload.len(), 125);
}

// ---------------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------------

#[test]
fn keepalive_pings_at_the_interval_when_idle() {
    let mut pair = Pair::with_configs(
        Config::default(),
        Config::default().ping_interval(Some(SECS(10))),
    );
    pair.run_for(Duration::from_millis(9_999));
    assert_eq!(
        count_pings(&pair.client_events),
        0,
        "ping before the interval"
    );
    pair.run_for(Duration::from_millis(25_001)); // t = 35 s
    assert_eq!(count_pings(&pair.client_events), 3, "pings at 10, 20, 30 s");
    assert_eq!(count_pongs(&pair.server_events), 3);
    assert!(pair.client_closed().is_none() && pair.server_closed().is_none());
}

#[test]
fn keepalive_does_not_ping_while_data_keeps_arriving() {
    let mut pair = Pair::with_configs(
        Config::default(),
        Config::default().ping_interval(Some(SECS(10))),
    );
    for _ in 0..12 {
        pair.client.send_text("tick").expect("tick");
        pair.drive();
        pair.run_for(SECS(5));
    }
    assert_eq!(count_pings(&pair.client_events), 0);
    assert_eq!(pair.server_messages().len(), 12);
    // Once the data stops, the pings start.
    pair.run_for(SECS(10));
    assert_eq!(count_pings(&pair.client_events), 1);
}

#[test]
fn pong_timeout_fails_a_silent_peer_with_1006() {
    let mut pair = Pair::with_configs(
        Config::default().auto_pong(false),
        Config::default()
            .ping_interval(Some(SECS(10)))
            .pong_timeout(Some(SECS(5))),
    );
    pair.run_for(Duration::from_millis(14_999));
    assert_eq!(
        count_pings(&pair.client_events),
        1,
        "the client saw the ping"
    );
    assert!(
        pair.server_closed().is_none(),
        "failed before the pong timeout"
    );
    pair.run_for(Duration::from_millis(1));
    let o = pair.server_closed().expect("server closed at 15 s");
    assert_eq!(o.code, CloseCode::ABNORMAL);
    assert_eq!(o.error, Some(ConnectionError::PongTimeout));
    assert_eq!(o.initiator, Initiator::Local);
    assert!(!o.clean);
    assert!(pair.server.should_close_transport());
    // The client sees the TCP connection end.
    let c = pair.client_closed().expect("client saw EOF");
    assert_eq!(c.code, CloseCode::ABNORMAL);
    assert_eq!(c.error, Some(ConnectionError::UnexpectedEof));
}

#[test]
fn pong_timeout_does_not_fire_when_pongs_come_back() {
    let mut pair = Pair::with_configs(
        Config::default(),
        Config::default()
            .ping_interval(Some(SECS(10)))
            .pong_timeout(Some(SECS(5))),
    );
    pair.run_for(SECS(120));
    assert!(pair.server_closed().is_none() && pair.client_closed().is_none());
    assert_eq!(count_pongs(&pair.server_events), 12);
}

#[test]
fn explicit_ping_arms_the_pong_timeout() {
    let now = Instant::now();
    let mut s = server(Config::default().pong_timeout(Some(SECS(5))), now);
    s.send_ping(now, b"are you there").expect("ping");
    assert_eq!(s.poll_timeout(), Some(now + SECS(5)));
    s.handle_timeout(now + SECS(5));
    let o = closed(&drain_events(&mut s)).cloned().expect("closed");
    assert_eq!(o.error, Some(ConnectionError::PongTimeout));
    assert_eq!(o.code, CloseCode::ABNORMAL);
}

#[test]
fn idle_timeout_closes_with_1000_idle_timeout() {
    let mut pair = Pair::with_configs(
        Config::default(),
        Config::default().idle_timeout(Some(SECS(30))),
    );
    pair.run_for(Duration::from_millis(29_999));
    assert!(pair.server_closed().is_none());
    pair.run_for(Duration::from_millis(1));
    let s = pair.server_closed().expect("server closed");
    assert_eq!(
        s.sent,
        Some(CloseFrame::new(CloseCode::NORMAL, "idle timeout"))
    );
    // The client echoed the code without a reason (RFC 6455 §5.5.1, §7.1.5).
    assert_eq!(s.code, CloseCode::NORMAL);
    assert_eq!(s.initiator, Initiator::Local);
    assert!(s.clean && s.error.is_none());
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::CloseReceived(Some(f)) if f.code == CloseCode::NORMAL && f.reason == "idle timeout"
    )));
    let c = pair.client_closed().expect("client closed");
    assert_eq!(c.initiator, Initiator::Remote);
    assert!(c.clean);
}

#[test]
fn idle_timeout_is_reset_by_data_messages_but_not_by_pings() {
    let mut pair = Pair::with_configs(
        Config::default().ping_interval(Some(SECS(5))),
        Config::default().idle_timeout(Some(SECS(30))),
    );
    for _ in 0..10 {
        pair.run_for(SECS(10));
        pair.client.send_binary(b"data").expect("data");
        pair.drive();
    }
    assert!(
        pair.server_closed().is_none(),
        "closed although data kept arriving"
    );
    let t0 = pair.elapsed();
    // Now only the client's keepalive pings arrive.
    pair.run_for(SECS(31));
    let s = pair.server_closed().expect("idle close despite pings");
    assert_eq!(
        s.sent.as_ref().map(|f| f.reason.as_str()),
        Some("idle timeout")
    );
    assert!(pair.elapsed() - t0 >= SECS(30));
}

// ---------------------------------------------------------------------------------------------
// Protocol violations injected as raw bytes
// ---------------------------------------------------------------------------------------------

/// Injects `bytes` into `receiver` and checks that it fails the connection with `code`: in its
/// `Closed` event (with a protocol error matching `is_expected`), as the last frame it writes, and
/// as what the peer receives.
fn assert_peer_fault(
    receiver: Role,
    config: Config,
    bytes: &[u8],
    code: u16,
    is_expected: impl Fn(&ProtocolError) -> bool,
) {
    let mut pair = Pair::with_config(config);
    match receiver {
        Role::Server => pair.inject_to_server(bytes),
        Role::Client => pair.inject_to_client(bytes),
    }
    let events = side_events(&pair, receiver).to_vec();
    let o = closed(&events)
        .unwrap_or_else(|| panic!("{receiver:?} did not fail on {bytes:02x?}: {events:?}"));
    // The failure code is in the close frame we sent; no close frame was received, so the
    // connection close code is 1006 (RFC 6455 §7.1.5).
    assert_eq!(
        o.sent.as_ref().map(|f| f.code.as_u16()),
        Some(code),
        "{receiver:?} {bytes:02x?}: {o:?}"
    );
    assert_eq!(
        o.code,
        CloseCode::ABNORMAL,
        "{receiver:?} {bytes:02x?}: {o:?}"
    );
    assert_eq!(o.initiator, Initiator::Local);
    assert!(!o.clean);
    let err = o.error.as_ref().and_then(|e| e.protocol());
    assert!(
        err.is_some_and(&is_expected),
        "{receiver:?} {bytes:02x?}: unexpected error {:?}",
        o.error
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::CloseReceived(_))),
        "a failed close frame is not reported as received"
    );
    let conn = match receiver {
        Role::Server => &pair.server,
        Role::Client => &pair.client,
    };
    assert!(conn.should_close_transport());
    pair.drive();
    let wire = match receiver {
        Role::Server => &pair.server_wire,
        Role::Client => &pair.client_wire,
    };
    let frames = decode_frames(wire).expect("output decodes");
    assert_eq!(frames.len(), 1, "only the close frame: {frames:?}");
    assert_eq!(frames[0].close_code(), Some(code));
    let peer = side_events(
        &pair,
        match receiver {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        },
    );
    assert!(
        peer.iter()
            .any(|e| matches!(e, Event::CloseReceived(Some(f)) if f.code.as_u16() == code)),
        "peer did not receive the close code: {peer:?}"
    );
}

#[test]
fn unmasked_client_frame_fails_with_1002() {
    assert_peer_fault(
        Role::Server,
        Config::default(),
        &server_frame(op::TEXT, b"hi"),
        1002,
        |e| *e == ProtocolError::UnmaskedFrame,
    );
}

#[test]
fn masked_server_frame_fails_with_1002() {
    assert_peer_fault(
        Role::Client,
        Config::default(),
        &client_frame(op::TEXT, b"hi"),
        1002,
        |e| *e == ProtocolError::MaskedFrame,
    );
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        for receiver in [Role::Client, Role::Server] {
            let bytes = frame_to(receiver, true, opcode, b"x");
            assert_peer_fault(receiver, Config::default(), &bytes, 1002, |e| {
                *e == ProtocolError::ReservedOpcode(opcode)
            });
        }
    }
}

#[test]
fn rsv_bits_without_an_extension_fail_with_1002() {
    for rsv in [0b100u8, 0b010, 0b001, 0b111] {
        for opcode in [op::TEXT, op::BINARY, op::PING] {
            let bytes = raw_frame(true, rsv, opcode, Some(TEST_KEY), b"x");
            assert_peer_fault(Role::Server, Config::default(), &bytes, 1002, |e| {
                matches!(e, ProtocolError::ReservedBits(_))
            });
        }
    }
}

#[test]
fn fragmented_ping_fails_with_1002() {
    let bytes = raw_frame(false, 0, op::PING, Some(TEST_KEY), b"x");
    assert_peer_fault(Role::Server, Config::default(), &bytes, 1002, |e| {
        *e == ProtocolError::FragmentedControlFrame
    });
}

#[test]
fn ping_with_126_byte_payload_from_peer_fails_with_1002() {
    let bytes = raw_frame(true, 0, op::PING, None, &[0u8; 126]);
    assert_peer_fault(Role::Client, Config::default(), &bytes, 1002, |e| {
        *e == ProtocolError::ControlFrameTooLong(126)
    });
}

#[test]
fn continuation_without_a_started_message_fails_with_1002() {
    let bytes = frame_to(Role::Server, true, op::CONT, b"lo");
    assert_peer_fault(Role::Server, Config::default(), &bytes, 1002, |e| {
        *e == ProtocolError::UnexpectedContinuation
    });
}

#[test]
fn new_data_frame_during_a_fragmented_message_fails_with_1002() {
    for second in [op::TEXT, op::BINARY] {
        let mut bytes = frame_to(Role::Client, false, op::TEXT, b"Hel");
        bytes.extend(frame_to(Role::Client, true, second, b"lo"));
        assert_peer_fault(Role::Client, Config::default(), &bytes, 1002, |e| {
            *e == ProtocolError::ExpectedContinuation
        });
    }
}

#[test]
fn sixty_four_bit_length_with_msb_set_fails_with_1002() {
    let bytes = raw_header_with(true, 0, op::BINARY, Some(TEST_KEY), 1 << 63, LenForm::Long);
    assert_peer_fault(Role::Server, Config::default(), &bytes, 1002, |e| {
        *e == ProtocolError::InvalidLength
    });
}

#[test]
fn invalid_utf8_text_fails_with_1007() {
    for payload in [
        &b"\xff"[..],
        b"ok\xc3\x28",
        b"\xed\xa0\x80",
        b"\xc0\x80",
        b"trunc\xe2\x82",
    ] {
        let bytes = frame_to(Role::Server, true, op::TEXT, payload);
        assert_peer_fault(Role::Server, Config::default(), &bytes, 1007, |e| {
            *e == ProtocolError::InvalidUtf8
        });
    }
}

#[test]
fn invalid_utf8_fails_on_the_read_holding_the_bad_byte_before_the_message_completes() {
    // (valid prefix, bad bytes, valid suffix); the fault is the last byte of the bad part.
    let cases: [(&[u8], &[u8], &[u8]); 3] = [
        ("héllo ".as_bytes(), b"\xff", b" and more text after"),
        (b"abc", b"\xe0\x80", b"\x80 tail"),
        (b"x", b"\xf4\x90", b"\x80\x80 tail"),
    ];
    for stream in [false, true] {
        for fragmented in [false, true] {
            for (prefix, bad, suffix) in cases {
                let mut payload = prefix.to_vec();
                payload.extend_from_slice(bad);
                payload.extend_from_slice(suffix);
                let mut wire = Vec::new();
                if fragmented {
                    wire.extend(frame_to(Role::Server, false, op::TEXT, "ok ✓ ".as_bytes()));
                }
                let opcode = if fragmented { op::CONT } else { op::TEXT };
                // Not final when fragmented: the message can never complete.
                wire.extend(raw_frame(!fragmented, 0, opcode, Some(TEST_KEY), &payload));
                let fault_at = wire.len() - payload.len() + prefix.len() + bad.len() - 1;
                let now = Instant::now();
                let mut s = server(Config::default().stream_incoming(stream), now);
                let mut failed_at = None;
                for (i, b) in wire.iter().enumerate() {
                    s.receive(now, std::slice::from_ref(b));
                    let ev = drain_events(&mut s);
                    if let Some(o) = closed(&ev) {
                        assert_eq!(
                            o.sent.as_ref().map(|f| f.code),
                            Some(CloseCode::INVALID_PAYLOAD)
                        );
                        failed_at = Some(i);
                        break;
                    }
                    for e in &ev {
                        if let Event::Fragment(f) = e {
                            assert!(std::str::from_utf8(&f.data).is_ok() || !f.fin);
                        }
                    }
                }
                assert_eq!(
                    failed_at,
                    Some(fault_at),
                    "stream={stream} fragmented={fragmented} bad={bad:02x?}"
                );
            }
        }
    }
}

#[test]
fn close_with_one_byte_payload_fails_with_1002() {
    let bytes = frame_to(Role::Server, true, op::CLOSE, &[0x03]);
    assert_peer_fault(Role::Server, Config::default(), &bytes, 1002, |e| {
        *e == ProtocolError::InvalidClosePayload
    });
}

#[test]
fn close_with_unsendable_code_fails_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        for receiver in [Role::Client, Role::Server] {
            let bytes = frame_to(receiver, true, op::CLOSE, &close_payload(code, b""));
            assert_peer_fault(receiver, Config::default(), &bytes, 1002, |e| {
                *e == ProtocolError::InvalidCloseCode(code)
            });
        }
    }
}

#[test]
fn close_reason_with_invalid_utf8_fails_with_1007() {
    let bytes = frame_to(
        Role::Client,
        true,
        op::CLOSE,
        &close_payload(1000, b"bad \xff"),
    );
    assert_peer_fault(Role::Client, Config::default(), &bytes, 1007, |e| {
        *e == ProtocolError::InvalidUtf8
    });
}

#[test]
fn frame_over_max_frame_size_fails_with_1009_from_the_header_alone() {
    for (len, form) in [(1025u64, LenForm::Medium), (1 << 40, LenForm::Long)] {
        for receiver in [Role::Client, Role::Server] {
            let mask = (receiver == Role::Server).then_some(TEST_KEY);
            // Only the header: the decision may not wait for the payload.
            let bytes = raw_header_with(true, 0, op::BINARY, mask, len, form);
            let cfg = Config::default().max_frame_size(Some(1024));
            assert_peer_fault(receiver, cfg, &bytes, 1009, |e| {
                *e == ProtocolError::FrameTooLarge {
                    size: len,
                    limit: 1024,
                }
            });
        }
    }
    // At the limit is fine.
    let now = Instant::now();
    let mut s = server(Config::default().max_frame_size(Some(1024)), now);
    let ev = feed(&mut s, now, &client_frame(op::BINARY, &[7u8; 1024]), None);
    assert_eq!(ev, vec![Event::Message(Message::binary(vec![7u8; 1024]))]);
}

#[test]
fn message_over_max_message_size_across_fragments_fails_with_1009() {
    for stream in [false, true] {
        let cfg = Config::default()
            .max_message_size(Some(1000))
            .stream_incoming(stream);
        let mut bytes = frame_to(Role::Server, false, op::BINARY, &[1u8; 600]);
        bytes.extend(frame_to(Role::Server, false, op::CONT, &[2u8; 300]));
        // Only the header of the fragment that crosses the limit.
        bytes.extend(raw_header(true, 0, op::CONT, Some(TEST_KEY), 101));
        assert_peer_fault(Role::Server, cfg, &bytes, 1009, |e| {
            matches!(e, ProtocolError::MessageTooLarge { limit: 1000, .. })
        });
    }
    // Exactly at the limit is fine.
    let now = Instant::now();
    let mut s = server(Config::default().max_message_size(Some(1000)), now);
    let mut bytes = frame_to(Role::Server, false, op::BINARY, &[1u8; 600]);
    bytes.extend(frame_to(Role::Server, true, op::CONT, &[2u8; 400]));
    let ev = feed(&mut s, now, &bytes, None);
    assert!(matches!(ev.as_slice(), [Event::Message(m)] if m.len() == 1000));
}

#[test]
fn answer_to_a_valid_message_precedes_the_close_frame_of_a_following_violation() {
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    let mut bytes = client_frame(op::TEXT, b"question");
    bytes.extend(raw_frame(true, 0, 0x3, Some(TEST_KEY), b"")); // reserved opcode
    s.receive(now, &bytes); // one read holds both
    let first = s.poll_event().expect("message");
    assert_eq!(first, Event::Message(Message::text("question")));
    s.send_text("answer").expect("answer while still open");
    let second = s.poll_event().expect("failure");
    assert!(matches!(
        &second,
        Event::Closed(o) if o.sent.as_ref().map(|f| f.code) == Some(CloseCode::PROTOCOL_ERROR)
    ));
    let frames = decode_frames(&take_output(&mut s)).expect("decodes");
    let shape: Vec<(OpCode, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            (
                f.header.opcode,
                f.payload.get(..2).unwrap_or(&f.payload).to_vec(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (OpCode::Text, b"an".to_vec()),
            (OpCode::Close, 1002u16.to_be_bytes().to_vec()),
        ]
    );
    assert_eq!(reassemble(&frames).expect("messages")[0].payload, b"answer");
}

#[test]
fn after_closed_poll_event_is_none_forever() {
    // Four ways to end: clean close, protocol failure, close timeout, EOF.
    let mut ended: Vec<Connection> = Vec::new();
    let now = Instant::now();
    let mut pair = Pair::new();
    pair.client
        .close(pair.now, CloseCode::NORMAL, "")
        .expect("close");
    pair.drive();
    ended.push(pair.client);
    ended.push(pair.server);
    let mut s = server(Config::default(), now);
    feed(&mut s, now, &server_frame(op::TEXT, b"unmasked"), None);
    ended.push(s);
    let mut c = client(Config::default(), now);
    c.close(now, CloseCode::NORMAL, "").expect("close");
    c.handle_timeout(now + SECS(60));
    ended.push(c);
    let mut c = client(Config::default(), now);
    c.receive_eof(now);
    ended.push(c);
    for (i, mut conn) in ended.into_iter().enumerate() {
        let ev = drain_events(&mut conn);
        assert!(
            ev.last().is_none_or(|e| matches!(e, Event::Closed(_))),
            "case {i}: Closed is not last: {ev:?}"
        );
        assert!(conn.is_closed(), "case {i}");
        let later = now + SECS(3600);
        conn.receive(later, &client_frame(op::TEXT, b"late"));
        conn.receive(later, &server_frame(op::TEXT, b"late"));
        conn.receive_eof(later);
        conn.handle_timeout(later);
        for _ in 0..5 {
            assert_eq!(conn.poll_event(), None, "case {i}");
        }
    }
}

#[test]
fn data_after_our_close_frame_is_still_delivered() {
    // RFC 6455 §7.1.2/§5.5.1: after sending a close frame an endpoint may still receive data
    // until the peer's close frame arrives.
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    s.close(now, CloseCode::NORMAL, "").expect("close");
    let mut bytes = client_frame(op::TEXT, b"in flight");
    bytes.extend(client_frame(op::CLOSE, &close_payload(1000, b"")));
    let ev = feed(&mut s, now, &bytes, None);
    assert_eq!(ev[0], Event::Message(Message::text("in flight")));
    assert!(matches!(&ev[1], Event::CloseReceived(Some(_))));
    assert!(matches!(&ev[2], Event::Closed(o) if o.clean && o.initiator == Initiator::Local));
    let frames = decode_frames(&take_output(&mut s)).expect("decodes");
    assert_eq!(frames.len(), 1, "no second close frame: {frames:?}");
}

#[test]
fn violation_after_our_close_frame_fails_without_a_second_close_frame() {
    // RFC 6455 §5.5.1: an endpoint sends at most one close frame.
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    s.close(now, CloseCode::NORMAL, "bye").expect("close");
    let _ = take_output(&mut s);
    let ev = feed(&mut s, now, &server_frame(op::TEXT, b"unmasked"), None);
    let o = closed(&ev).expect("failed");
    assert!(matches!(
        o.error.as_ref().and_then(|e| e.protocol()),
        Some(ProtocolError::UnmaskedFrame)
    ));
    assert!(!o.clean);
    assert_eq!(s.queued_bytes(), 0, "a second close frame was queued");
    assert!(s.should_close_transport());
}

#[test]
fn ping_arriving_after_our_close_frame_is_still_answered_with_a_pong() {
    // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
    // response, unless it already received a Close frame." Having *sent* a close frame is no
    // exemption, and a pong is a control frame, not a data frame (§5.5.1 only forbids data).
    let now = Instant::now();
    let mut s = server(Config::default(), now);
    s.close(now, CloseCode::NORMAL, "bye").expect("close");
    let _ = take_output(&mut s);
    let ev = feed(&mut s, now, &client_frame(op::PING, b"still there?"), None);
    assert_eq!(ev, vec![Event::Ping(b"still there?"[..].into())]);
    let frames = decode_frames(&take_output(&mut s)).expect("decodes");
    assert!(
        frames
            .iter()
            .any(|f| f.header.opcode == OpCode::Pong && f.payload == b"still there?"),
        "no pong queued after our close frame: {frames:?}"
    );
}

#[test]
fn manual_pong_is_allowed_after_our_close_frame() {
    // Same rule (RFC 6455 §5.5.2) for an application that answers pings itself.
    let now = Instant::now();
    let mut s = server(Config::default().auto_pong(false), now);
    s.close(now, CloseCode::NORMAL, "bye").expect("close");
    let _ = take_output(&mut s);
    let ev = feed(&mut s, now, &client_frame(op::PING, b"p"), None);
    assert_eq!(ev, vec![Event::Ping(b"p"[..].into())]);
    assert_eq!(s.send_pong(b"p"), Ok(()));
}
