//! Memory of permessage-deflate, measured: decompression bombs (a frame of a few MiB that
//! inflates to 4 GiB ends the connection with 1009, and the memory used on the way stays near the
//! message-size limit), and what one connection's compression state costs in each mode. A counting global allocator (`peak_alloc`, this test binary only)
//! measures the peak.

use std::sync::Mutex;
use std::time::Instant;

use peak_alloc::PeakAlloc;
use tidings_core::ext::ExtensionConfig;
use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};
use tidings_core::handshake::ExtensionOffer;
use tidings_core::{CloseCode, Config, Connection, ConnectionError, Event, ProtocolError};
use tidings_tests::{deflate_bomb, op, raw_frame};

/// Counts live heap bytes and their high-water mark.
#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Tests in this binary measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Feeds a 4 GiB bomb to a client connection with `config` and returns the heap growth at its
/// peak while the connection decoded it, and the events.
fn swallow_bomb(config: Config, stream: bool) -> (usize, Vec<Event>) {
    let bomb = deflate_bomb(4096);
    assert!(bomb.len() < 8 << 20, "the bomb is {} bytes", bomb.len());
    // In 64 KiB frames (RSV1 on the first), each well under any frame or message limit on the
    // wire, so the decoded size is what trips the limit.
    let pieces: Vec<&[u8]> = bomb.chunks(64 << 10).collect();
    let mut wire = Vec::with_capacity(bomb.len() + 16 * pieces.len());
    for (i, piece) in pieces.iter().enumerate() {
        let (rsv, opcode) = if i == 0 {
            (0b100, op::BINARY)
        } else {
            (0, op::CONT)
        };
        wire.extend(raw_frame(i + 1 == pieces.len(), rsv, opcode, None, piece));
    }
    drop(bomb);
    let now = Instant::now();
    let mut conn = Connection::client(config.stream_incoming(stream), now);
    let ext = DeflateConfig::new()
        .confirm(&ExtensionOffer::new("permessage-deflate"))
        .expect("plain answer accepted");
    conn.set_extension(ext);

    let base = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    // As an adapter reads: in 64 KiB pieces, polling events in between.
    let mut events = Vec::new();
    for piece in wire.chunks(64 << 10) {
        conn.receive(now, piece);
        while let Some(event) = conn.poll_event() {
            let closed = matches!(event, Event::Closed(_));
            events.push(event);
            if closed {
                break;
            }
        }
        if events.iter().any(|e| matches!(e, Event::Closed(_))) {
            break;
        }
    }
    let peak = ALLOCATOR.peak_usage().saturating_sub(base);
    (peak, events)
}

fn assert_1009(events: &[Event]) {
    let outcome = events
        .iter()
        .find_map(|e| match e {
            Event::Closed(o) => Some(o),
            _ => None,
        })
        .expect("the connection closed");
    assert_eq!(
        outcome.sent.as_ref().map(|f| f.code),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
    assert!(matches!(
        outcome.error,
        Some(ConnectionError::Protocol(
            ProtocolError::MessageTooLarge { .. }
        ))
    ));
}

#[test]
fn bomb_under_a_1_mib_limit_closes_with_1009_using_a_few_mib() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for stream in [false, true] {
        let (peak, events) =
            swallow_bomb(Config::default().max_message_size(Some(1 << 20)), stream);
        assert_1009(&events);
        eprintln!("1 MiB limit, streaming {stream}: peak heap growth {peak} bytes");
        // The decoded message (≤ 1 MiB, ≤ 2 MiB of capacity), the decompressor (~40 KiB) and one
        // read's worth of input; far from the 4 GiB the frame describes.
        assert!(
            peak < 4 << 20,
            "stream {stream}: peak heap growth {peak} bytes"
        );
    }
}

#[test]
fn bomb_under_the_default_limit_stays_near_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limit = tidings_core::DEFAULT_MAX_MESSAGE_SIZE;
    let (peak, events) = swallow_bomb(Config::default(), false);
    assert_1009(&events);
    eprintln!("default {limit}-byte limit: peak heap growth {peak} bytes");
    // At most twice the limit (the output buffer's growth) plus slack for the input and state.
    assert!(
        peak < 2 * limit + (8 << 20),
        "peak heap growth {peak} bytes for a {limit}-byte limit"
    );
}

/// Heap held by one more connection's permessage-deflate state after it compressed and inflated
/// one 1 KiB message, for `config` on both sides.
fn connection_cost(config: &DeflateConfig) -> usize {
    use tidings_core::MessageKind;
    use tidings_core::ext::{negotiate_client, negotiate_server};
    let message: Vec<u8> = (0..200)
        .flat_map(|i| format!("{{\"id\":{i},\"user\":\"u{}\"}},", i % 7).into_bytes())
        .take(1024)
        .collect();
    let config = config.clone().threshold(0);
    let (response, _) = negotiate_server(&[&config], &config.offers()).expect("accepted");
    let offers = tidings_core::handshake::parse_extensions([response.as_bytes()]).expect("parses");
    let mut wire = bytes::BytesMut::with_capacity(4096);
    let mut back = bytes::BytesMut::with_capacity(4096);
    let base = ALLOCATOR.current_usage();
    let mut ext = negotiate_client(&[&config], &offers)
        .expect("acceptable")
        .expect("agreed");
    ext.encode(MessageKind::Text, &message, &mut wire)
        .expect("compresses")
        .expect("compressed");
    ext.decode(0b100, &wire, true, &mut back, usize::MAX)
        .expect("inflates");
    assert_eq!(&back[..], &message[..]);
    let cost = ALLOCATOR.current_usage() - base;
    drop(ext);
    cost
}

#[test]
fn memory_per_connection_in_each_mode() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = CompressorPool::new();
    let modes = [
        ("context takeover, 15-bit windows", DeflateConfig::new()),
        (
            "context takeover, 10-bit windows",
            DeflateConfig::new()
                .client_max_window_bits(10)
                .server_max_window_bits(10),
        ),
        (
            "no context takeover, no pool",
            DeflateConfig::no_context_takeover(),
        ),
        (
            "no context takeover, shared compressor pool",
            DeflateConfig::no_context_takeover().compressor_pool(pool.clone()),
        ),
    ];
    let mut costs = Vec::new();
    for (name, config) in &modes {
        connection_cost(config); // the first one may fill the pool
        let cost = connection_cost(config);
        eprintln!("{name}: {cost} bytes per connection");
        costs.push(cost);
    }
    // Without a pool a connection keeps its own compressor, as with context takeover; with one,
    // the compressor is the pool's, not the connection's.
    assert!(costs[2] > costs[0] / 2, "{costs:?}");
    assert!(costs[3] < costs[0] / 4, "{costs:?}");
    assert!(costs[1] < costs[0], "{costs:?}");
    assert_eq!(pool.idle(), 1);
}

/// Heap held by one idle compressor in a pool (level 1, 15-bit window), and by a pool that reached
/// its bound.
#[test]
fn memory_of_a_compressor_pool() {
    use tidings_core::MessageKind;
    use tidings_core::ext::{negotiate_client, negotiate_server};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let message = vec![b'a'; 1024];
    let base = ALLOCATOR.current_usage();
    let pool = CompressorPool::with_max_idle(4);
    let config = DeflateConfig::no_context_takeover()
        .threshold(0)
        .compressor_pool(pool.clone());
    let (response, _) = negotiate_server(&[&config], &config.offers()).expect("accepted");
    let offers = tidings_core::handshake::parse_extensions([response.as_bytes()]).expect("parses");
    // Up to 8 connections each compress one message while holding none: one compressor serves
    // them all, one at a time.
    for _ in 0..8 {
        let mut ext = negotiate_client(&[&config], &offers)
            .expect("acceptable")
            .expect("agreed");
        let mut wire = bytes::BytesMut::with_capacity(4096);
        ext.encode(MessageKind::Text, &message, &mut wire)
            .expect("compresses")
            .expect("compressed");
    }
    let one = ALLOCATOR.current_usage() - base;
    assert_eq!(pool.idle(), 1);
    eprintln!("pool with one idle compressor (level 1, 15-bit window): {one} bytes");
    assert!(one < 512 << 10, "{one} bytes");
    drop((config, pool));
    assert!(
        ALLOCATOR.current_usage() <= base + (4 << 10),
        "freed with the pool"
    );
}
