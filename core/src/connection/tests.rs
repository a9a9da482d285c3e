//! Unit tests of the connection's extension hook and internal invariants. The full scenario and
//! property suites live in the `tidings-tests` crate.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::*;
use crate::frame::header::RSV1;

/// XORs every byte with 0x55 and marks messages with RSV1.
struct XorExt;

impl Extension for XorExt {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn encode(
        &mut self,
        _kind: MessageKind,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        out.extend(payload.iter().map(|b| b ^ 0x55));
        Ok(Some(RSV1))
    }
    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        _fin: bool,
        out: &mut BytesMut,
        budget: usize,
    ) -> Result<(), ExtensionError> {
        if payload.len() > budget {
            return Err(ExtensionError::TooLarge);
        }
        if payload.first() == Some(&0xFF) {
            return Err(ExtensionError::Invalid("0xFF is not allowed".into()));
        }
        out.extend(payload.iter().map(|b| b ^ 0x55));
        Ok(())
    }
}

/// Expands every input byte into 1 KiB, like a decompression bomb; honours its budget.
struct BombExt {
    produced: usize,
}

impl Extension for BombExt {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn encode(
        &mut self,
        _kind: MessageKind,
        _payload: &[u8],
        _out: &mut BytesMut,
    ) -> Result<Option<u8>, ExtensionError> {
        Ok(None)
    }
    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        _fin: bool,
        out: &mut BytesMut,
        budget: usize,
    ) -> Result<(), ExtensionError> {
        let mut left = budget;
        for _ in payload {
            let n = 1024.min(left);
            out.extend(std::iter::repeat_n(0u8, n));
            self.produced += n;
            left -= n;
            if left == 0 {
                return Err(ExtensionError::TooLarge);
            }
        }
        Ok(())
    }
}

fn pair(now: Instant) -> (Connection, Connection) {
    let client = Connection::client_with_masks(Config::default(), || [9, 8, 7, 6], now);
    let server = Connection::server(Config::default(), now);
    (client, server)
}

fn transfer(from: &mut Connection, to: &mut Connection, now: Instant) -> Vec<u8> {
    let mut wire = Vec::new();
    from.poll_transmit(&mut wire);
    to.receive(now, &wire);
    wire
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// A masked frame from a client, built by hand.
fn client_frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let (head, n) = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(key),
        len: payload.len() as u64,
    }
    .encode();
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    crate::frame::mask::apply_mask(&mut out[start..], key);
    out
}

/// A server connection with the XOR extension installed.
fn xor_server(now: Instant) -> Connection {
    let mut server = Connection::server(Config::default(), now);
    server.set_extension(Box::new(XorExt));
    server
}

/// A server with the XOR extension reads `wire`; returns how it closed (it must close).
fn xor_server_closes_on(wire: &[u8]) -> CloseOutcome {
    let now = Instant::now();
    let mut server = xor_server(now);
    server.receive(now, wire);
    let evs = events(&mut server);
    match evs.last() {
        Some(Event::Closed(outcome)) => outcome.clone(),
        _ => panic!("no Closed: {evs:?}"),
    }
}

/// The code of the close frame this endpoint sent.
fn sent_code(outcome: &CloseOutcome) -> Option<CloseCode> {
    outcome.sent.as_ref().map(|f| f.code)
}

fn close_code_on_wire(wire: &[u8]) -> Option<u16> {
    let (h, n) = FrameHeader::decode(wire).ok()??;
    (h.opcode == OpCode::Close && h.len >= 2).then(|| u16::from_be_bytes([wire[n], wire[n + 1]]))
}

#[test]
fn extension_transforms_messages_both_ways_and_sets_rsv1() {
    let now = Instant::now();
    let (mut client, mut server) = pair(now);
    client.set_extension(Box::new(XorExt));
    server.set_extension(Box::new(XorExt));
    client.send_text("héllo").unwrap();
    let wire = transfer(&mut client, &mut server, now);
    assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set on the first frame");
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("héllo"))]
    );
    server.send_binary(&[1, 2, 3]).unwrap();
    transfer(&mut server, &mut client, now);
    assert_eq!(
        events(&mut client),
        vec![Event::Message(Message::binary(vec![1u8, 2, 3]))]
    );
}

#[test]
fn extension_applies_to_fragmented_messages_with_rsv1_on_first_frame_only() {
    let now = Instant::now();
    let mut server = xor_server(now);
    let a: Vec<u8> = b"ab".iter().map(|b| b ^ 0x55).collect();
    let c: Vec<u8> = b"cd".iter().map(|b| b ^ 0x55).collect();
    let mut wire = client_frame(false, RSV1, OpCode::Text, &a);
    wire.extend(client_frame(true, 0, OpCode::Continuation, &c));
    server.receive(now, &wire);
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("abcd"))]
    );
}

#[test]
fn rsv1_on_a_continuation_frame_is_a_protocol_error() {
    let now = Instant::now();
    let mut server = xor_server(now);
    let mut wire = client_frame(false, RSV1, OpCode::Text, b"a");
    wire.extend(client_frame(true, RSV1, OpCode::Continuation, b"b"));
    server.receive(now, &wire);
    let evs = events(&mut server);
    let Some(Event::Closed(outcome)) = evs.last() else {
        panic!("no Closed: {evs:?}")
    };
    assert_eq!(
        outcome.error,
        Some(ConnectionError::Protocol(ProtocolError::ReservedBits(RSV1)))
    );
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert_eq!(close_code_on_wire(&out), Some(1002));
}

#[test]
fn rsv1_on_a_control_frame_is_a_protocol_error_even_with_an_extension() {
    let outcome = xor_server_closes_on(&client_frame(true, RSV1, OpCode::Ping, b"x"));
    assert_eq!(sent_code(&outcome), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn expanding_extension_stops_at_the_message_limit_with_1009() {
    let now = Instant::now();
    let limit = 64 * 1024;
    let mut server = Connection::server(Config::default().max_message_size(Some(limit)), now);
    server.set_extension(Box::new(BombExt { produced: 0 }));
    // 1000 bytes that would expand to ~1 MB.
    server.receive(now, &client_frame(true, RSV1, OpCode::Binary, &[0u8; 1000]));
    let evs = events(&mut server);
    let Some(Event::Closed(outcome)) = evs.last() else {
        panic!("no Closed: {evs:?}")
    };
    assert_eq!(sent_code(outcome), Some(CloseCode::MESSAGE_TOO_BIG));
    assert_eq!(
        outcome.code,
        CloseCode::ABNORMAL,
        "no close frame was received"
    );
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert_eq!(close_code_on_wire(&out), Some(1009));
}

#[test]
fn extension_decode_error_fails_with_1002() {
    let outcome = xor_server_closes_on(&client_frame(true, RSV1, OpCode::Binary, &[0xFF, 1]));
    assert_eq!(sent_code(&outcome), Some(CloseCode::PROTOCOL_ERROR));
    assert!(matches!(
        outcome.error,
        Some(ConnectionError::Protocol(ProtocolError::Extension(_)))
    ));
}

#[test]
fn decoded_text_from_an_extension_is_utf8_checked() {
    // 0xC0 0xAF after decoding: an overlong encoding.
    let payload = [0xC0 ^ 0x55, 0xAF ^ 0x55];
    let outcome = xor_server_closes_on(&client_frame(true, RSV1, OpCode::Text, &payload));
    assert_eq!(sent_code(&outcome), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn messages_without_rsv1_bypass_the_extension() {
    let now = Instant::now();
    let mut server = xor_server(now);
    server.receive(now, &client_frame(true, 0, OpCode::Text, b"plain"));
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("plain"))]
    );
}

#[test]
fn streaming_mode_runs_the_extension_per_frame() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default().stream_incoming(true), now);
    server.set_extension(Box::new(XorExt));
    let a: Vec<u8> = b"ab".iter().map(|b| b ^ 0x55).collect();
    let c: Vec<u8> = b"cd".iter().map(|b| b ^ 0x55).collect();
    let mut wire = client_frame(false, RSV1, OpCode::Binary, &a);
    wire.extend(client_frame(true, 0, OpCode::Continuation, &c));
    server.receive(now, &wire);
    let data: Vec<u8> = events(&mut server)
        .into_iter()
        .flat_map(|e| match e {
            Event::Fragment(f) => f.data.to_vec(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(data, b"abcd");
}

struct XorConfig;

impl crate::ext::ExtensionConfig for XorConfig {
    fn name(&self) -> &str {
        "x-xor"
    }
    fn offers(&self) -> Vec<crate::handshake::ExtensionOffer> {
        vec![crate::handshake::ExtensionOffer::new("x-xor").with_param("key", Some("85"))]
    }
    fn accept(
        &self,
        offer: &crate::handshake::ExtensionOffer,
    ) -> Option<(crate::handshake::ExtensionOffer, Box<dyn Extension>)> {
        // Decline offers with a parameter we do not know.
        if offer.params.iter().any(|(k, _)| k != "key") {
            return None;
        }
        Some((offer.clone(), Box::new(XorExt)))
    }
    fn confirm(
        &self,
        _response: &crate::handshake::ExtensionOffer,
    ) -> Result<Box<dyn Extension>, ExtensionError> {
        Ok(Box::new(XorExt))
    }
}

#[test]
fn extension_negotiated_through_the_handshake_declines_bad_offer_and_falls_back() {
    use crate::handshake::{self, AcceptOptions, ClientRequest, Limits, Status};
    let now = Instant::now();
    let config = XorConfig;
    let configs: [&dyn crate::ext::ExtensionConfig; 1] = [&config];
    // The client's first offer carries an unknown parameter; the second is acceptable.
    let request = ClientRequest::new("example.com", "/chat", [7; 16])
        .unwrap()
        .extension_offer("x-xor; bogus, x-xor; key=85")
        .unwrap();
    let wire = request.encode();
    let Status::Complete((req, _)) = handshake::parse_request(&wire, &Limits::default()).unwrap()
    else {
        panic!("partial")
    };
    let (value, server_ext) = crate::ext::negotiate_server(&configs, &req.extensions()).unwrap();
    assert_eq!(value, "x-xor; key=85");
    let response = req.accept(&AcceptOptions::new().extensions(value)).unwrap();
    let Status::Complete((resp, _)) =
        handshake::parse_response(&response, &request, &Limits::default()).unwrap()
    else {
        panic!("partial")
    };
    let client_ext = crate::ext::negotiate_client(&configs, &resp.extensions)
        .unwrap()
        .unwrap();
    let (mut client, mut server) = pair(now);
    client.set_extension(client_ext);
    server.set_extension(server_ext);
    client.send_text("over the hook").unwrap();
    let wire = transfer(&mut client, &mut server, now);
    assert_eq!(wire[0] & 0x40, 0x40);
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("over the hook"))]
    );
}

#[test]
fn client_refuses_an_extension_response_it_did_not_offer_or_twice() {
    use crate::handshake::ExtensionOffer;
    let config = XorConfig;
    let configs: [&dyn crate::ext::ExtensionConfig; 1] = [&config];
    assert!(crate::ext::negotiate_client(&configs, &[ExtensionOffer::new("x-other")]).is_err());
    assert!(
        crate::ext::negotiate_client(
            &configs,
            &[ExtensionOffer::new("x-xor"), ExtensionOffer::new("x-xor")]
        )
        .is_err()
    );
    assert!(
        crate::ext::negotiate_client(&configs, &[])
            .unwrap()
            .is_none()
    );
}

#[test]
fn connection_is_send_so_adapters_can_move_it_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Connection>();
    assert_send::<Event>();
}

#[test]
fn reading_straight_into_the_input_buffer_decodes_like_receive() {
    let now = Instant::now();
    let (mut client, mut server) = pair(now);
    client.send_text("zero copy read").unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    server.input_buffer().extend_from_slice(&wire);
    server.received(now);
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::text("zero copy read"))]
    );
}

#[test]
fn large_server_payloads_are_queued_by_reference_and_written_in_order() {
    let now = Instant::now();
    let (mut client, mut server) = pair(now);
    let big = bytes::Bytes::from(vec![42u8; 100_000]);
    server.send_text("before").unwrap();
    server.send(Message::Binary(big.clone())).unwrap();
    server.send_text("after").unwrap();
    // Header+small frames, the shared payload, then the rest: three slices.
    let mut slices = [IoSlice::new(&[]); 8];
    let n = server.transmit_slices(&mut slices);
    assert_eq!(n, 3);
    assert_eq!(slices[1].as_ptr(), big.as_ptr(), "payload not copied");
    transfer(&mut server, &mut client, now);
    assert_eq!(
        events(&mut client),
        vec![
            Event::Message(Message::text("before")),
            Event::Message(Message::Binary(big)),
            Event::Message(Message::text("after")),
        ]
    );
}

#[test]
fn input_needed_counts_down_the_rest_of_a_buffered_frame() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    assert_eq!(server.input_needed(), 0);
    let wire = client_frame(true, 0, OpCode::Binary, &[7u8; 1000]);
    // Header (2 + 2 length + 4 mask = 8 bytes) and 100 payload bytes.
    server.receive(now, &wire[..108]);
    assert!(server.poll_event().is_none());
    assert_eq!(server.input_needed(), 900);
    server.receive(now, &wire[108..600]);
    assert!(server.poll_event().is_none());
    assert_eq!(server.input_needed(), 408);
    server.receive(now, &wire[600..]);
    assert!(matches!(server.poll_event(), Some(Event::Message(m)) if m.len() == 1000));
    assert_eq!(server.input_needed(), 0);

    // Streaming mode never asks for a whole frame's room.
    let mut streaming = Connection::server(Config::default().stream_incoming(true), now);
    streaming.receive(now, &wire[..108]);
    while streaming.poll_event().is_some() {}
    assert_eq!(streaming.input_needed(), 0);
}

#[test]
fn set_config_restarts_keepalive_and_applies_new_limits() {
    let t0 = Instant::now();
    let mut conn = Connection::server(Config::default(), t0);
    assert_eq!(conn.poll_timeout(), None, "no timers by default");
    let t1 = t0 + Duration::from_secs(3);
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_message_size(Some(4));
    conn.set_config(config, t1);
    assert_eq!(conn.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    // The keepalive fires from the new interval.
    conn.handle_timeout(t1 + Duration::from_secs(10));
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    assert_eq!(out[0], 0x89, "a ping was sent: {out:02x?}");
    // The new message limit applies: a 5-byte masked text fails with 1009.
    conn.receive(t1, &[0x81, 0x85, 0, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']);
    match conn.poll_event() {
        Some(Event::Closed(outcome)) => {
            let error = outcome.error.expect("an error");
            assert_eq!(error.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
        }
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    // Removing the timers removes the deadlines.
    let mut conn = Connection::server(
        Config::default().ping_interval(Some(Duration::from_secs(1))),
        t0,
    );
    assert!(conn.poll_timeout().is_some());
    conn.set_config(Config::default(), t1);
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn lookahead_sees_a_whole_ping_or_pong_and_nothing_else() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    assert_eq!(server.lookahead(), Lookahead::Incomplete, "nothing yet");
    let ping = client_frame(true, 0, OpCode::Ping, b"p");
    server.receive(now, &ping[..3]);
    assert_eq!(
        server.lookahead(),
        Lookahead::Incomplete,
        "a ping's first bytes"
    );
    server.receive(now, &ping[3..]);
    server.receive(now, &client_frame(true, 0, OpCode::Text, b"a"));
    assert_eq!(server.lookahead(), Lookahead::Control);
    assert!(matches!(server.poll_event(), Some(Event::Ping(p)) if &p[..] == b"p"));
    assert!(server.queued_bytes() > 0, "the pong is queued");
    assert_eq!(server.lookahead(), Lookahead::Other, "a text frame is next");
    assert!(matches!(server.poll_event(), Some(Event::Message(_))));

    for wire in [
        client_frame(true, 0, OpCode::Close, &[0x03, 0xE8]),
        client_frame(true, RSV1, OpCode::Ping, b"x"),
        client_frame(true, 0, OpCode::Continuation, b"x"),
        vec![0x8F, 0x80, 0, 0, 0, 0], // reserved opcode
    ] {
        let mut server = Connection::server(Config::default(), now);
        server.receive(now, &wire);
        assert_eq!(server.lookahead(), Lookahead::Other, "{wire:?}");
        assert!(server.is_open(), "looking ahead acts on nothing");
        assert_eq!(server.queued_bytes(), 0);
    }

    // An unmasked ping to a server is malformed: left to `poll_event`, which fails it.
    let mut server = Connection::server(Config::default(), now);
    server.receive(now, &[0x89, 0x00]);
    assert_eq!(server.lookahead(), Lookahead::Other);

    // The end of the input: nothing more can complete a frame.
    let mut server = Connection::server(Config::default(), now);
    server.receive(now, &ping[..3]);
    server.receive_eof(now);
    assert_eq!(server.lookahead(), Lookahead::Other);
}

#[test]
fn idle_buffers_are_released_and_partial_input_is_kept() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let wire = client_frame(true, 0, OpCode::Text, b"hello");
    server.input_buffer().reserve(64 * 1024);
    server.input_buffer().extend_from_slice(&wire);
    server.received(now);
    assert!(matches!(server.poll_event(), Some(Event::Message(m)) if m.as_text() == Some("hello")));
    server.send_text("answer").unwrap();
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    server.release_idle_buffers();
    assert_eq!(server.input_buffer().capacity(), 0);
    // Input not yet decoded stays, and decodes the same afterwards.
    server.input_buffer().extend_from_slice(&wire[..4]);
    server.received(now);
    assert!(server.poll_event().is_none());
    server.release_idle_buffers();
    assert_eq!(server.buffered_input(), 4);
    server.receive(now, &wire[4..]);
    assert!(matches!(server.poll_event(), Some(Event::Message(m)) if m.as_text() == Some("hello")));
    // Output still queued stays too.
    server.send_text("queued").unwrap();
    server.release_idle_buffers();
    assert!(server.queued_bytes() > 0);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(out.ends_with(b"queued"));
}
