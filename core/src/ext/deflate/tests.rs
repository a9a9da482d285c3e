//! permessage-deflate: negotiation tables (RFC 7692 §5, §7.1), the §7.2.3 examples, round trips
//! over every window size and takeover mode (property tests), and the size budget.

use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::ext::{negotiate_client, negotiate_server};
use crate::frame::header::{FrameHeader, OpCode};
use crate::handshake::parse_extensions;
use crate::{CloseCode, Config, Connection, ConnectionError, Event, Message, ProtocolError};

fn offers(value: &str) -> Vec<ExtensionOffer> {
    parse_extensions([value.as_bytes()]).expect("test offer parses")
}

fn one(value: &str) -> ExtensionOffer {
    offers(value).remove(0)
}

/// The server's response value for `offer` under `config`, or `None` when nothing was accepted.
fn respond(config: &DeflateConfig, offer: &str) -> Option<String> {
    negotiate_server(&[config], &offers(offer)).map(|(value, _)| value)
}

// ---- negotiation, server side ----------------------------------------------------------------

#[test]
fn server_answers_offers_as_in_rfc_7692() {
    let default = DeflateConfig::new();
    let table: &[(&DeflateConfig, &str, Option<&str>)] = &[
        // §5.2: the plain offer, accepted as is.
        (&default, "permessage-deflate", Some("permessage-deflate")),
        // §7.1.2.2: client_max_window_bits without a value; the server need not answer it.
        (
            &default,
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate"),
        ),
        // §7.1.2.1: a limit on the server's window is met and answered.
        (
            &default,
            "permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        // §7.1.1.1: server_no_context_takeover must be answered.
        (
            &default,
            "permessage-deflate; server_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // §7.1.1.2: the client's hint needs no answer.
        (
            &default,
            "permessage-deflate; client_no_context_takeover",
            Some("permessage-deflate"),
        ),
        // §5.2: the first acceptable offer wins; a malformed one is declined and the next tried.
        (
            &default,
            "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits",
            Some("permessage-deflate"),
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        // Declined: unknown, repeated, valueless, out-of-range or badly written parameters.
        (&default, "permessage-deflate; foo", None),
        (
            &default,
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            None,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
            None,
        ),
        (&default, "permessage-deflate; server_max_window_bits", None),
        (
            &default,
            "permessage-deflate; server_max_window_bits=7",
            None,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=16",
            None,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=010",
            None,
        ),
        (
            &default,
            "permessage-deflate; server_no_context_takeover=1",
            None,
        ),
        // A quoted value is the same value (RFC 6455 §9.1).
        (
            &default,
            "permessage-deflate; server_max_window_bits=\"9\"",
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        // Names are case-insensitive; the answer uses the registered spelling.
        (
            &default,
            "Permessage-Deflate; Server_No_Context_Takeover",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // Another extension is not ours.
        (&default, "x-webkit-deflate-frame", None),
    ];
    for (config, offer, expected) in table {
        assert_eq!(
            respond(config, offer).as_deref(),
            *expected,
            "offer {offer:?}"
        );
    }
}

#[test]
fn server_settings_shape_the_answer() {
    let no_ctx = DeflateConfig::no_context_takeover();
    assert_eq!(
        respond(&no_ctx, "permessage-deflate").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let small = DeflateConfig::new()
        .server_max_window_bits(10)
        .client_max_window_bits(11);
    // The server announces its smaller window; it asks for a smaller client window only when the
    // client offered client_max_window_bits (§7.1.2.2).
    assert_eq!(
        respond(&small, "permessage-deflate").as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(
        respond(&small, "permessage-deflate; client_max_window_bits").as_deref(),
        Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11")
    );
    // The stricter of the two sides wins.
    assert_eq!(
        respond(
            &small,
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8"
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=8")
    );
    // Clamped settings.
    assert_eq!(
        DeflateConfig::new().server_max_window_bits(3),
        DeflateConfig::new().server_max_window_bits(8)
    );
}

// ---- negotiation, client side ----------------------------------------------------------------

#[test]
fn client_offers_follow_its_settings() {
    let render = |c: &DeflateConfig| crate::handshake::render_extensions(&c.offers());
    assert_eq!(
        render(&DeflateConfig::new()),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(
        render(&DeflateConfig::no_context_takeover()),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    );
    assert_eq!(
        render(
            &DeflateConfig::new()
                .server_max_window_bits(10)
                .client_max_window_bits(12)
        ),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
    );
}

#[test]
fn client_checks_the_answer() {
    let default = DeflateConfig::new();
    let strict = DeflateConfig::new()
        .server_no_context_takeover(true)
        .server_max_window_bits(10);
    let table: &[(&DeflateConfig, &str, bool)] = &[
        (&default, "permessage-deflate", true),
        (
            &default,
            "permessage-deflate; client_max_window_bits=9",
            true,
        ),
        (
            &default,
            "permessage-deflate; client_no_context_takeover",
            true,
        ),
        // The server may volunteer these (§7.1.1.1, §7.1.2.1).
        (
            &default,
            "permessage-deflate; server_no_context_takeover",
            true,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=12",
            true,
        ),
        // A response must give client_max_window_bits a value (§7.1.2.2).
        (
            &default,
            "permessage-deflate; client_max_window_bits",
            false,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=16",
            false,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits",
            false,
        ),
        (&default, "permessage-deflate; mystery", false),
        (
            &default,
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            false,
        ),
        // What we asked for must be granted.
        (
            &strict,
            "permessage-deflate; server_max_window_bits=10",
            false,
        ),
        (
            &strict,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            false,
        ),
        (
            &strict,
            "permessage-deflate; server_no_context_takeover",
            false,
        ),
        (
            &strict,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            true,
        ),
    ];
    for (config, response, ok) in table {
        let result = negotiate_client(&[*config], &offers(response));
        assert_eq!(
            result.is_ok(),
            *ok,
            "response {response:?}: {:?}",
            result.err()
        );
    }
    // More than one accepted element, or another extension, is an error too.
    assert!(
        negotiate_client(
            &[&default],
            &offers("permessage-deflate, permessage-deflate")
        )
        .is_err()
    );
    assert!(negotiate_client(&[&default], &offers("x-foo")).is_err());
    assert!(matches!(negotiate_client(&[&default], &[]), Ok(None)));
}

// ---- data: the RFC 7692 §7.2.3 examples ------------------------------------------------------

/// A client connection with permessage-deflate negotiated by `response`.
fn client(config: &DeflateConfig, response: &str, conn_config: Config) -> Connection {
    let mut conn = Connection::client_with_masks(conn_config, || [7, 7, 7, 7], Instant::now());
    let ext = config.confirm(&one(response)).expect("response accepted");
    conn.set_extension(ext);
    conn
}

/// One unmasked frame, as a server sends it.
fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let (header, n) = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: None,
        len: payload.len() as u64,
    }
    .encode();
    let mut out = header[..n].to_vec();
    out.extend_from_slice(payload);
    out
}

fn events(conn: &mut Connection, wire: &[u8]) -> Vec<Event> {
    conn.receive(Instant::now(), wire);
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn closed_code(events: &[Event]) -> Option<CloseCode> {
    events.iter().find_map(|e| match e {
        Event::Closed(outcome) => outcome.error.as_ref().and_then(ConnectionError::close_code),
        _ => None,
    })
}

#[test]
fn rfc_7692_examples_decode() {
    let hello = Event::Message(Message::text("Hello"));
    let cases: &[(&str, Vec<Vec<u8>>, usize)] = &[
        // §7.2.3.1: one compressed frame.
        (
            "single frame",
            vec![frame(
                true,
                RSV1,
                OpCode::Text,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            )],
            1,
        ),
        // §7.2.3.1: the same message in two fragments; RSV1 on the first only.
        (
            "fragmented",
            vec![
                frame(false, RSV1, OpCode::Text, &[0xf2, 0x48, 0xcd]),
                frame(true, 0, OpCode::Continuation, &[0xc9, 0xc9, 0x07, 0x00]),
            ],
            1,
        ),
        // §7.2.3.2: the second message refers to the first (context takeover).
        (
            "shared window",
            vec![
                frame(
                    true,
                    RSV1,
                    OpCode::Text,
                    &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                ),
                frame(true, RSV1, OpCode::Text, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            ],
            2,
        ),
        // §7.2.3.3: a stored (uncompressed) DEFLATE block.
        (
            "stored block",
            vec![frame(
                true,
                RSV1,
                OpCode::Text,
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            )],
            1,
        ),
        // §7.2.3.4: a final block (BFINAL); the next message starts a new stream.
        (
            "bfinal",
            vec![
                frame(
                    true,
                    RSV1,
                    OpCode::Text,
                    &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                ),
                frame(
                    true,
                    RSV1,
                    OpCode::Text,
                    &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                ),
            ],
            2,
        ),
        // §7.2.3.5: two DEFLATE blocks in one message.
        (
            "two blocks",
            vec![frame(
                true,
                RSV1,
                OpCode::Text,
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
            )],
            1,
        ),
        // An uncompressed message (RSV1 clear) between compressed ones is fine.
        (
            "uncompressed",
            vec![frame(true, 0, OpCode::Text, b"Hello")],
            1,
        ),
    ];
    for (name, frames, count) in cases {
        let mut conn = client(
            &DeflateConfig::new(),
            "permessage-deflate",
            Config::default(),
        );
        let got = events(&mut conn, &frames.concat());
        assert_eq!(got, vec![hello.clone(); *count], "{name}");
    }
}

/// A client-side instance after a plain `permessage-deflate` answer, compressing everything.
fn compressing_ext() -> Box<dyn Extension> {
    DeflateConfig::new()
        .threshold(0)
        .confirm(&one("permessage-deflate"))
        .expect("accepted")
}

#[test]
fn rfc_7692_example_encodes() {
    // §7.2.3.1 was made by zlib; zlib-rs gives the same bytes.
    let mut ext = compressing_ext();
    let mut out = BytesMut::new();
    assert_eq!(
        ext.encode(MessageKind::Text, b"Hello", &mut out),
        Ok(Some(RSV1))
    );
    assert_eq!(&out[..], &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    // An empty message compresses to a lone 0x00 (§7.2.3.6).
    out.clear();
    assert_eq!(ext.encode(MessageKind::Text, b"", &mut out), Ok(Some(RSV1)));
    assert_eq!(&out[..], &[0x00]);
}

#[test]
fn violations_fail_with_the_right_code() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let cases: &[(&str, Vec<u8>, CloseCode)] = &[
        // RSV1 belongs to the first frame of a message only (RFC 7692 §6.1).
        (
            "rsv1 on a continuation",
            [
                frame(false, RSV1, OpCode::Text, &hello[..3]),
                frame(true, RSV1, OpCode::Continuation, &hello[3..]),
            ]
            .concat(),
            CloseCode::PROTOCOL_ERROR,
        ),
        // Control frames are never compressed (RFC 7692 §6.1).
        (
            "rsv1 on a ping",
            frame(true, RSV1, OpCode::Ping, b""),
            CloseCode::PROTOCOL_ERROR,
        ),
        // RSV2/RSV3 stay reserved (RFC 6455 §5.2).
        (
            "rsv2",
            frame(true, 0b010, OpCode::Text, b"x"),
            CloseCode::PROTOCOL_ERROR,
        ),
        // Corrupt DEFLATE data (a reserved block type).
        (
            "bad block type",
            frame(true, RSV1, OpCode::Binary, &[0xff, 0xff, 0xff]),
            CloseCode::PROTOCOL_ERROR,
        ),
        // Invalid UTF-8 inside a compressed text message is 1007.
        (
            "bad utf-8",
            frame(
                true,
                RSV1,
                OpCode::Text,
                &compress_once(&[0xce, 0xba, 0xe1, 0xbd, 0xc0]),
            ),
            CloseCode::INVALID_PAYLOAD,
        ),
    ];
    for (name, wire, code) in cases {
        let mut conn = client(
            &DeflateConfig::new(),
            "permessage-deflate",
            Config::default(),
        );
        let got = events(&mut conn, wire);
        assert_eq!(closed_code(&got), Some(*code), "{name}: {got:?}");
    }
}

fn compress_once(data: &[u8]) -> Vec<u8> {
    let mut ext = compressing_ext();
    let mut out = BytesMut::new();
    assert_eq!(
        ext.encode(MessageKind::Binary, data, &mut out),
        Ok(Some(RSV1))
    );
    out.to_vec()
}

// ---- size budget (decompression bombs) -------------------------------------------------------

/// A DEFLATE stream (no tail) that inflates to `mib` MiB of zeros, built from one compressed
/// MiB and a second compressed MiB that only refers back (so it can be repeated): a few KiB of
/// input per MiB of output.
pub(crate) fn zeros_bomb(mib: usize) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::best(), false, 15);
    let zeros = vec![0u8; 1 << 20];
    let mut first = BytesMut::new();
    deflate_message(&mut c, &zeros, &mut first).expect("compresses");
    let mut next = BytesMut::new();
    deflate_message(&mut c, &zeros, &mut next).expect("compresses");
    // Each segment ended with a sync flush whose tail was removed; put it back between them.
    let mut out = first.to_vec();
    for _ in 1..mib {
        out.extend_from_slice(&TAIL);
        out.extend_from_slice(&next);
    }
    out
}

#[test]
fn inflation_stops_at_the_budget() {
    let bomb = zeros_bomb(4096); // 4 GiB of zeros
    assert!(bomb.len() < 8 << 20, "bomb is {} bytes", bomb.len());
    let mut ext = DeflateConfig::new()
        .confirm(&one("permessage-deflate"))
        .expect("accepted");
    let mut out = BytesMut::new();
    let budget = 1 << 20;
    assert_eq!(
        ext.decode(RSV1, &bomb, true, &mut out, budget),
        Err(ExtensionError::TooLarge)
    );
    assert_eq!(out.len(), budget, "wrote exactly the budget");
    assert!(out.capacity() <= 2 * budget, "capacity {}", out.capacity());
    // Exactly at the budget is fine: the same 1 MiB message fits a 1 MiB budget.
    let one_mib = zeros_bomb(1);
    let mut ext = DeflateConfig::new()
        .confirm(&one("permessage-deflate"))
        .expect("accepted");
    out.clear();
    assert_eq!(ext.decode(RSV1, &one_mib, true, &mut out, 1 << 20), Ok(()));
    assert_eq!(out.len(), 1 << 20);
}

#[test]
fn bomb_closes_the_connection_with_1009() {
    let bomb = zeros_bomb(4096);
    for streaming in [false, true] {
        let config = Config::default()
            .max_message_size(Some(1 << 20))
            .stream_incoming(streaming);
        let mut conn = client(&DeflateConfig::new(), "permessage-deflate", config);
        // Sent in 64 KiB fragments, the first with RSV1.
        let mut wire = Vec::new();
        let chunks: Vec<&[u8]> = bomb.chunks(64 << 10).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let (rsv, op) = if i == 0 {
                (RSV1, OpCode::Binary)
            } else {
                (0, OpCode::Continuation)
            };
            wire.extend(frame(i + 1 == chunks.len(), rsv, op, chunk));
        }
        let got = events(&mut conn, &wire);
        let delivered: usize = got
            .iter()
            .map(|e| match e {
                Event::Fragment(f) => f.data.len(),
                Event::Message(m) => m.as_bytes().len(),
                _ => 0,
            })
            .sum();
        assert!(delivered <= 1 << 20, "delivered {delivered}");
        assert_eq!(
            closed_code(&got),
            Some(CloseCode::MESSAGE_TOO_BIG),
            "streaming {streaming}"
        );
        assert!(got.iter().any(|e| matches!(
            e,
            Event::Closed(o) if matches!(
                o.error,
                Some(ConnectionError::Protocol(ProtocolError::MessageTooLarge { .. }))
            )
        )));
    }
}

// ---- round trips ------------------------------------------------------------------------------

/// A negotiated pair: what the client compresses, the server inflates, and back.
fn pair(
    server: &DeflateConfig,
    client: &DeflateConfig,
) -> (Box<dyn Extension>, Box<dyn Extension>) {
    let offered = client.offers();
    let (response, server_ext) =
        negotiate_server(&[server], &offered).expect("server accepts the client's offer");
    let client_ext = negotiate_client(&[client], &offers(&response))
        .expect("client accepts the answer")
        .expect("an extension");
    (server_ext, client_ext)
}

/// Sends `messages` through `tx` → `rx`, each compressed payload cut at `cuts` (fractions of its
/// length) into fragments, and checks every message arrives intact.
fn round_trip(
    tx: &mut dyn Extension,
    rx: &mut dyn Extension,
    messages: &[Vec<u8>],
    cuts: &[f64],
) -> Result<(), TestCaseError> {
    for message in messages {
        let mut wire = BytesMut::new();
        match tx.encode(MessageKind::Binary, message, &mut wire) {
            Ok(Some(rsv)) => prop_assert_eq!(rsv, RSV1),
            Ok(None) => continue, // sent as it is
            Err(e) => return Err(TestCaseError::fail(format!("encode: {e}"))),
        }
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|f| (f * wire.len() as f64) as usize)
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut out = BytesMut::new();
        let mut start = 0;
        for (i, end) in points.iter().copied().chain([wire.len()]).enumerate() {
            let end = end.max(start);
            let fin = i == points.len();
            let r = rx.decode(RSV1, &wire[start..end], fin, &mut out, usize::MAX);
            prop_assert!(r.is_ok(), "decode: {:?}", r);
            start = end;
        }
        prop_assert_eq!(&out[..], &message[..]);
    }
    Ok(())
}

fn config_strategy() -> impl Strategy<Value = DeflateConfig> {
    (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15, 0u32..=9).prop_map(
        |(snct, cnct, sbits, cbits, level)| {
            DeflateConfig::new()
                .server_no_context_takeover(snct)
                .client_no_context_takeover(cnct)
                .server_max_window_bits(sbits)
                .client_max_window_bits(cbits)
                .threshold(0)
                .level(level)
        },
    )
}

/// Messages that share content (so context takeover and long distances matter), of sizes around
/// the window sizes.
fn messages_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let word = prop::sample::select(vec![
        &b"{\"user\":\"ada\",\"text\":\"hello\"}"[..],
        b"lorem ipsum dolor sit amet ",
        b"\x00\x01\x02\x03",
        b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ]);
    let noise = prop::collection::vec(any::<u8>(), 0..64);
    let piece = prop_oneof![word.prop_map(<[u8]>::to_vec), noise];
    let message = prop::collection::vec(piece, 0..200).prop_map(|p| p.concat());
    prop::collection::vec(message, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// compress → decompress is the identity in both directions, for every window size and
    /// takeover mode, however the compressed payload is fragmented.
    #[test]
    fn compress_decompress_identity(
        server in config_strategy(),
        client in config_strategy(),
        messages in messages_strategy(),
        cuts in prop::collection::vec(0.0f64..1.0, 0..4),
    ) {
        let (mut server_ext, mut client_ext) = pair(&server, &client);
        round_trip(&mut *client_ext, &mut *server_ext, &messages, &cuts)?;
        round_trip(&mut *server_ext, &mut *client_ext, &messages, &cuts)?;
    }

    /// A whole conversation through two connections, with thresholds: text arrives intact
    /// whether or not each message was compressed.
    #[test]
    fn connections_exchange_messages(
        texts in prop::collection::vec("[a-z ]{0,900}", 1..8),
        threshold in 0usize..600,
        no_ctx in any::<bool>(),
    ) {
        let base = if no_ctx { DeflateConfig::no_context_takeover() } else { DeflateConfig::new() };
        let config = base.threshold(threshold);
        let (server_ext, client_ext) = pair(&config, &config);
        let now = Instant::now();
        let mut server = Connection::server(Config::default(), now);
        let mut client = Connection::client_with_masks(Config::default(), || [1, 2, 3, 4], now);
        server.set_extension(server_ext);
        client.set_extension(client_ext);
        for text in &texts {
            client.send_text(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut wire = Vec::new();
            client.poll_transmit(&mut wire);
            let compressed = wire.first().is_some_and(|b| b & 0x40 != 0);
            if text.len() < threshold {
                prop_assert!(!compressed, "below the threshold");
            } else if no_ctx {
                // Sent compressed only when that shrank it (the header is the same size).
                let (header, _) = FrameHeader::decode(&wire)
                    .ok()
                    .flatten()
                    .ok_or_else(|| TestCaseError::fail("a frame header"))?;
                prop_assert!(!compressed || header.len < text.len() as u64);
            } else {
                prop_assert!(compressed, "context takeover compresses everything");
            }
            server.receive(now, &wire);
            let got = server.poll_event();
            prop_assert_eq!(got, Some(Event::Message(Message::text(text.as_str()))));
        }
    }
}

#[test]
fn window_bits_8_round_trips() {
    // The zlib quirk: an 8-bit window is run as 9, which still fits an 8-bit decoder. Inflate with
    // a real 8-bit window (zlib-rs allows it for inflate) to prove the distances fit.
    let config = DeflateConfig::new()
        .server_max_window_bits(8)
        .client_max_window_bits(8)
        .threshold(0);
    let (mut server_ext, _) = pair(&config, &config);
    let text: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("{} {} ", i % 97, i % 13).into_bytes())
        .collect();
    let mut wire = BytesMut::new();
    assert_eq!(
        server_ext.encode(MessageKind::Binary, &text, &mut wire),
        Ok(Some(RSV1))
    );
    wire.extend_from_slice(&TAIL);
    let mut inflate = zlib_rs::Inflate::new(false, 8);
    let mut out = vec![0u8; text.len() + 64];
    let status = inflate.decompress(&wire, &mut out, zlib_rs::InflateFlush::SyncFlush);
    assert!(status.is_ok(), "{status:?}");
    assert_eq!(&out[..inflate.total_out() as usize], &text[..]);
}

#[test]
fn no_context_takeover_skips_what_does_not_shrink() {
    let config = DeflateConfig::no_context_takeover().threshold(0);
    let (mut server_ext, _) = pair(&config, &config);
    // Random-looking bytes do not compress.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut out = BytesMut::new();
    assert_eq!(
        server_ext.encode(MessageKind::Binary, &noise, &mut out),
        Ok(None)
    );
    assert!(out.is_empty());
}

#[test]
fn encode_once_frames_reach_only_connections_that_can_take_them() {
    let message = Message::text("tick ".repeat(400));
    let config = DeflateConfig::no_context_takeover();
    let frame = crate::EncodedFrame::with_deflate(&message, &config);
    let (compressed, bits) = frame.deflated().expect("compressible");
    assert_eq!(bits, 15);
    assert!(compressed.len() < frame.wire().len() / 4);
    let now = Instant::now();
    let cases = [
        // (server config, client config, expect the shared compressed frame)
        (
            DeflateConfig::no_context_takeover(),
            DeflateConfig::new(),
            true,
        ),
        (DeflateConfig::new(), DeflateConfig::new(), false),
        (
            DeflateConfig::no_context_takeover(),
            DeflateConfig::new().server_max_window_bits(10),
            false,
        ),
    ];
    for (server_config, client_config, shared) in cases {
        let (server_ext, client_ext) = pair(&server_config, &client_config);
        let mut server = Connection::server(Config::default(), now);
        let mut client = Connection::client_with_masks(Config::default(), || [1, 2, 3, 4], now);
        server.set_extension(server_ext);
        client.set_extension(client_ext);
        server.send_encoded(&frame).expect("open");
        let mut wire = Vec::new();
        server.poll_transmit(&mut wire);
        assert_eq!(
            wire == compressed[..],
            shared,
            "{server_config:?} / {client_config:?}"
        );
        if !shared {
            assert_eq!(wire, frame.wire()[..]);
        }
        client.receive(now, &wire);
        assert_eq!(client.poll_event(), Some(Event::Message(message.clone())));
    }
}

// ---- the compressor pool ----------------------------------------------------------------------

/// Text that compresses well, `n` bytes or so.
fn chatty(n: usize) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| format!("{{\"id\":{},\"user\":\"u{}\"}},", i % 101, i % 7).into_bytes())
        .take(n)
        .collect()
}

/// Compresses `payload` with `ext` and returns the compressed bytes.
fn encoded(ext: &mut dyn Extension, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    assert_eq!(
        ext.encode(MessageKind::Text, payload, &mut out),
        Ok(Some(RSV1))
    );
    out.to_vec()
}

#[test]
fn pool_lends_one_compressor_and_gets_it_back() {
    let pool = CompressorPool::new();
    assert_eq!((pool.idle(), pool.max_idle()), (0, DEFAULT_MAX_IDLE));
    let config = DeflateConfig::no_context_takeover()
        .threshold(0)
        .compressor_pool(pool.clone());
    let (mut server_ext, mut client_ext) = pair(&config, &config);
    let text = chatty(4096);
    for _ in 0..3 {
        encoded(&mut *server_ext, &text);
        encoded(&mut *client_ext, &text);
    }
    // Six messages, one at a time: one compressor made, lent and returned each time.
    assert_eq!(pool.idle(), 1);
    // A different window is a different compressor.
    let small = DeflateConfig::no_context_takeover()
        .threshold(0)
        .server_max_window_bits(10)
        .compressor_pool(pool.clone());
    let (mut small_ext, _) = pair(&small, &small);
    encoded(&mut *small_ext, &text);
    encoded(&mut *small_ext, &text);
    assert_eq!(pool.idle(), 2);
    // 8 bits runs as 9 (module docs), so both share one compressor.
    for bits in [8, 9] {
        let c = DeflateConfig::no_context_takeover()
            .threshold(0)
            .server_max_window_bits(bits)
            .compressor_pool(pool.clone());
        let (mut ext, _) = pair(&c, &c);
        encoded(&mut *ext, &text);
    }
    assert_eq!(pool.idle(), 3);
}

#[test]
fn pool_keeps_at_most_max_idle_compressors() {
    let pool = CompressorPool::with_max_idle(2);
    // Borrowed at the same time, five compressors exist; two stay once they are back.
    let taken: Vec<Compress> = (0..5).map(|_| pool.take(1, 15)).collect();
    assert_eq!(pool.idle(), 0);
    for c in taken {
        pool.give_back(1, 15, c);
    }
    assert_eq!(pool.idle(), 2);
    // Full: the least recently returned goes first, whatever its key. Both kinds can then be
    // taken from the pool (each take empties a slot), so the one dropped was an older one.
    pool.give_back(6, 12, new_compress(6, 12));
    assert_eq!(pool.idle(), 2);
    let newest = pool.take(6, 12);
    assert_eq!(pool.idle(), 1);
    let older = pool.take(1, 15);
    assert_eq!(pool.idle(), 0);
    pool.give_back(6, 12, newest);
    pool.give_back(1, 15, older);
    assert_eq!(pool.idle(), 2);
    // A pool of 0 keeps nothing: each message gets a fresh compressor, output unchanged.
    let none = CompressorPool::with_max_idle(0);
    let config = DeflateConfig::no_context_takeover()
        .threshold(0)
        .compressor_pool(none.clone());
    let (mut ext, _) = pair(&config, &config);
    let text = chatty(2048);
    let first = encoded(&mut *ext, &text);
    assert_eq!(encoded(&mut *ext, &text), first);
    assert_eq!(none.idle(), 0);
}

#[test]
fn connections_sharing_a_pool_round_trip() {
    let pool = CompressorPool::with_max_idle(4);
    let server = DeflateConfig::no_context_takeover()
        .threshold(0)
        .compressor_pool(pool.clone());
    let client = DeflateConfig::no_context_takeover().threshold(0);
    let mut pairs: Vec<_> = (0..8).map(|_| pair(&server, &client)).collect();
    let messages: Vec<Vec<u8>> = (1..6).map(|i| chatty(i * 700)).collect();
    // Interleaved: each server connection sends each message in turn, its client inflates it.
    for message in &messages {
        for (server_ext, client_ext) in &mut pairs {
            round_trip(
                &mut **server_ext,
                &mut **client_ext,
                std::slice::from_ref(message),
                &[0.5],
            )
            .expect("round trip");
        }
    }
    assert_eq!(pool.idle(), 1);
    // From several threads at once, each with its own connections.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let server = &server;
            let client = &client;
            scope.spawn(move || {
                let (mut server_ext, mut client_ext) = pair(server, client);
                let messages: Vec<Vec<u8>> = (0..20).map(|i| chatty(600 + 97 * (i + t))).collect();
                round_trip(&mut *server_ext, &mut *client_ext, &messages, &[0.3])
                    .expect("round trip");
            });
        }
    });
    assert!((1..=4).contains(&pool.idle()), "{:?}", pool);
}

#[test]
fn pool_does_not_change_the_output() {
    let pool = CompressorPool::new();
    let messages: Vec<Vec<u8>> = (0..6).map(|i| chatty(300 + 900 * i)).collect();
    for (level, bits) in [(1, 15), (6, 15), (9, 8), (1, 10)] {
        let plain = DeflateConfig::no_context_takeover()
            .threshold(0)
            .level(level)
            .server_max_window_bits(bits);
        let pooled = plain.clone().compressor_pool(pool.clone());
        assert_ne!(plain, pooled);
        let (mut plain_ext, _) = pair(&plain, &plain);
        let (mut pooled_ext, _) = pair(&pooled, &pooled);
        for message in &messages {
            assert_eq!(
                encoded(&mut *plain_ext, message),
                encoded(&mut *pooled_ext, message),
                "level {level}, {bits} bits"
            );
        }
        // Encode-once broadcast frames too.
        let message = Message::text(String::from_utf8(messages[3].clone()).expect("ascii"));
        assert_eq!(
            crate::EncodedFrame::with_deflate(&message, &plain),
            crate::EncodedFrame::with_deflate(&message, &pooled)
        );
    }
    // One compressor per (level, window), 8 bits counting as 9.
    assert_eq!(pool.idle(), 4, "{pool:?}");
}

#[test]
fn context_takeover_ignores_the_pool() {
    let pool = CompressorPool::new();
    let config = DeflateConfig::new()
        .threshold(0)
        .compressor_pool(pool.clone());
    let (mut server_ext, mut client_ext) = pair(&config, &config);
    let text = chatty(2048);
    let first = encoded(&mut *server_ext, &text);
    // The second message refers to the first, so it is much smaller: the stream was kept.
    let second = encoded(&mut *server_ext, &text);
    assert!(
        second.len() < first.len() / 4,
        "{} / {}",
        second.len(),
        first.len()
    );
    encoded(&mut *client_ext, &text);
    assert_eq!(pool.idle(), 0);
}

#[test]
fn pool_handles_compare_by_identity() {
    let pool = CompressorPool::new();
    assert_eq!(pool, pool.clone());
    assert_ne!(pool, CompressorPool::new());
    let config = DeflateConfig::new().compressor_pool(pool.clone());
    assert_eq!(config, DeflateConfig::new().compressor_pool(pool));
    assert_ne!(config, DeflateConfig::new());
    assert!(format!("{config:?}").contains("CompressorPool"));
}

#[test]
fn no_thread_local_state_in_the_core() {
    // Compressors live in the pool the caller passes or in the connection, nowhere else.
    fn walk(dir: &std::path::Path, hits: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("core/src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, hits);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source readable");
                if text.contains(concat!("thread", "_local!")) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut hits,
    );
    assert!(hits.is_empty(), "thread-local state in {hits:?}");
}
