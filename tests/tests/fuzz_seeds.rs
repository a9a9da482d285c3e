//! The fuzz targets as normal tests (habit 9): each target's body runs over every file of its
//! committed seed corpus `fuzz/corpus/<target>/`, so CI exercises the targets without libFuzzer.
//!
//! `generate_fuzz_seeds` (ignored) writes the hand-made seeds (`seed-*` files) from the RFC 6455
//! examples and the frame vectors; run it with
//! `cargo test -p tidings-tests --test fuzz_seeds -- --ignored generate_fuzz_seeds`, then grow
//! and minimise the corpora with cargo-fuzz (see `fuzz/README.md`).

use std::path::{Path, PathBuf};

use tidings_tests::fuzz;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `body` over every file of the target's corpus; reports every failing file.
fn run_corpus(target: &str, body: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read seed");
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} seeds fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_seeds_frame_server() {
    run_corpus("frame_server", fuzz::frame_server);
}

#[test]
fn fuzz_seeds_frame_client() {
    run_corpus("frame_client", fuzz::frame_client);
}

#[test]
fn fuzz_seeds_handshake_request() {
    run_corpus("handshake_request", fuzz::handshake_request);
}

#[test]
fn fuzz_seeds_handshake_response() {
    run_corpus("handshake_response", fuzz::handshake_response);
}

#[test]
fn fuzz_seeds_stateful() {
    run_corpus("stateful", fuzz::stateful);
}

#[test]
fn fuzz_seeds_utf8_incremental() {
    run_corpus("utf8_incremental", fuzz::utf8_incremental);
}

#[test]
fn fuzz_seeds_deflate_inflate() {
    run_corpus("deflate_inflate", fuzz::deflate_inflate);
}

#[test]
fn fuzz_seeds_hub_envelope() {
    run_corpus("hub_envelope", fuzz::hub_envelope);
}

#[test]
fn fuzz_seeds_hub_admission() {
    run_corpus("hub_admission", fuzz::hub_admission);
}

#[test]
fn fuzz_seeds_redis_frame() {
    run_corpus("redis_frame", fuzz::redis_frame);
}

// ---------------------------------------------------------------------------------------------
// Seed generator
// ---------------------------------------------------------------------------------------------

/// The example request of RFC 6455 §1.3 (with the resource of §1.2).
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// The example response of RFC 6455 §1.3.
const RFC_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
    Sec-WebSocket-Protocol: chat\r\n\r\n";

/// Frame-target headers `[flags, limits, chunk_param, mode]`, see `fuzz::frame_server`.
const FRAME_HEADERS: [[u8; 4]; 8] = [
    [0x02, 0xEE, 0, 0],          // auto pong, default-ish limits, whole input
    [0x03, 0x77, 6, 1],          // streaming, 7-byte reads
    [0x06, 0x55, 0, 2],          // send(), 125/128 limits, single bytes
    [0x0A, 0xAA, 30, 3],         // send_encoded, random reads
    [0x0E, 0x99, 9, 6],          // two-fragment echo, input_buffer path
    [0x32, 0x44, 3, 7 | 2 << 3], // EOF + timeout, close after 2 events
    [0x00, 0x00, 0, 4],          // manual pongs, zero limits
    [0x13, 0xFF, 2, 5],          // streaming, no limits, EOF
];

/// Expands the vector file's hex (`xx*N` repeats).
fn parse_hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for token in s.split_whitespace() {
        let (hex, n) = match token.split_once('*') {
            Some((h, n)) => (h, n.parse::<usize>().expect("repeat count")),
            None => (token, 1),
        };
        let hex = hex.as_bytes();
        for _ in 0..n {
            for pair in hex.chunks(2) {
                let s = std::str::from_utf8(pair).expect("ascii");
                out.push(u8::from_str_radix(s, 16).expect("hex byte"));
            }
        }
    }
    out
}

/// A frame with the minimal length encoding, masked with `mask` if given.
fn frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

struct Writer {
    target: &'static str,
    count: usize,
}

impl Writer {
    fn new(target: &'static str) -> Self {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        Writer { target, count: 0 }
    }

    fn write(&mut self, name: &str, data: &[u8]) {
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = corpus_dir(self.target).join(format!("seed-{name}"));
        std::fs::write(path, data).expect("write seed");
        self.count += 1;
    }
}

fn frame_seeds() {
    let vectors = include_str!("../vectors/frames.txt");
    let mut server = Writer::new("frame_server");
    let mut client = Writer::new("frame_client");
    let mut extra_server: Vec<(String, Vec<u8>)> = Vec::new();
    let mut extra_client: Vec<(String, Vec<u8>)> = Vec::new();
    for line in vectors.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [name, receiver, hex, ..] = fields[..] else {
            continue;
        };
        let wire = parse_hex(hex);
        match receiver {
            "server" => extra_server.push((name.to_owned(), wire)),
            _ => extra_client.push((name.to_owned(), wire)),
        }
    }
    // Hand-made streams beyond the vector file.
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let masked = |op: u8, payload: &[u8]| frame(true, op, Some(key), payload);
    let mut conversation = masked(0x1, b"Hello");
    conversation.extend(masked(0x9, b"ping"));
    conversation.extend(frame(false, 0x2, Some(key), &[1, 2, 3]));
    conversation.extend(masked(0xA, b""));
    conversation.extend(frame(true, 0x0, Some(key), &[4, 5]));
    conversation.extend(masked(0x8, &[0x03, 0xe8, b'o', b'k']));
    extra_server.push(("conversation".into(), conversation));
    let mut big = masked(0x2, &[0xAB; 70_000]);
    big.extend(masked(0x1, "\u{1d11e}".repeat(40).as_bytes()));
    extra_server.push(("big-binary-then-text".into(), big));
    let mut conversation = frame(true, 0x1, None, "h\u{e9}llo".as_bytes());
    conversation.extend(frame(true, 0x9, None, b"p"));
    conversation.extend(frame(false, 0x1, None, &[0xf0, 0x9f]));
    conversation.extend(frame(true, 0x0, None, &[0x98, 0x80]));
    conversation.extend(frame(true, 0x8, None, &[]));
    extra_client.push(("conversation".into(), conversation));

    for (writer, list) in [(&mut server, extra_server), (&mut client, extra_client)] {
        for (i, (name, wire)) in list.iter().enumerate() {
            // Each stream with all the headers; short and big ones with two (rotating).
            let picks: Vec<usize> = if wire.len() <= 16 || wire.len() > 4096 {
                vec![i % 8, (i + 3) % 8]
            } else {
                (0..8).collect()
            };
            for h in picks {
                let mut data = FRAME_HEADERS[h].to_vec();
                data.extend_from_slice(wire);
                writer.write(&format!("{name}-h{h}"), &data);
            }
        }
    }
    assert!(server.count > 10 && client.count > 10);
}

fn handshake_seeds() {
    let mut req = Writer::new("handshake_request");
    let with = |from: &str, to: &str| RFC_REQUEST.replace(from, to);
    let cases: Vec<(&str, String)> = vec![
        ("rfc", RFC_REQUEST.to_owned()),
        (
            "rfc-with-frame",
            format!("{RFC_REQUEST}\u{81}\u{85}7\u{fa}!=\u{7f}\u{9f}MQX"),
        ),
        ("post", with("GET", "POST")),
        ("http10", with("HTTP/1.1", "HTTP/1.0")),
        (
            "absolute-target",
            with("GET /chat ", "GET ws://server.example.com/a?q "),
        ),
        ("query", with("GET /chat ", "GET /chat?room=1&x=%20 ")),
        ("fragment", with("GET /chat", "GET /chat#x")),
        ("no-host", with("Host: server.example.com\r\n", "")),
        (
            "dup-host",
            with("Host: server.example.com", "Host: a\r\nhost: b"),
        ),
        ("host-port-v6", with("server.example.com", "[::1]:9001")),
        ("upgrade-h2c", with("Upgrade: websocket", "Upgrade: h2c")),
        (
            "connection-list",
            with("Connection: Upgrade", "connection: keep-alive, UPGRADE"),
        ),
        ("key-short", with("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
        ("version-8", with("Version: 13", "Version: 8")),
        ("no-version", with("Sec-WebSocket-Version: 13\r\n", "")),
        (
            "extensions",
            with(
                "Origin: http://example.com",
                "Origin: http://server.example.com\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a=\"b\"",
            ),
        ),
        (
            "body",
            with("Origin: http://example.com", "Content-Length: 5"),
        ),
        (
            "chunked",
            with("Origin: http://example.com", "Transfer-Encoding: chunked"),
        ),
        (
            "bad-header-name",
            with("Origin: http://example.com", "Bad Header: x"),
        ),
        ("lf-only", RFC_REQUEST.replace("\r\n", "\n")),
        ("garbage", "G@T / HTTP/1.1\r\n\r\n".to_owned()),
    ];
    for (name, text) in &cases {
        let mut data = vec![0u8];
        data.extend_from_slice(text.as_bytes());
        req.write(name, &data);
    }
    // Limits: too many headers, too large.
    for (name, sel) in [("max-headers-4", 2 | 4 << 2), ("max-bytes-200", 3 | 4 << 2)] {
        let mut data = vec![sel];
        data.extend_from_slice(RFC_REQUEST.as_bytes());
        req.write(name, &data);
    }

    let mut resp = Writer::new("handshake_response");
    let with = |from: &str, to: &str| RFC_RESPONSE.replace(from, to);
    let cases: Vec<(&str, String)> = vec![
        ("rfc", RFC_RESPONSE.to_owned()),
        ("rfc-with-frame", format!("{RFC_RESPONSE}\u{1}\u{3}Hel")),
        ("no-protocol", with("Sec-WebSocket-Protocol: chat\r\n", "")),
        ("protocol-graphql", with("Protocol: chat", "Protocol: graphql")),
        (
            "deflate",
            with(
                "Sec-WebSocket-Protocol: chat\r\n",
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            ),
        ),
        (
            "ext-not-offered",
            with("Sec-WebSocket-Protocol: chat\r\n", "Sec-WebSocket-Extensions: x-foo\r\n"),
        ),
        ("accept-mismatch", with("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        ("no-upgrade", with("Upgrade: websocket\r\n", "")),
        ("http10", with("HTTP/1.1", "HTTP/1.0")),
        (
            "401",
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 3\r\n\r\nno!"
                .to_owned(),
        ),
        (
            "426",
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_owned(),
        ),
        ("bad-status", "HTTP/1.1 10x Oops\r\n\r\n".to_owned()),
    ];
    for (name, text) in &cases {
        let mut data = vec![0u8];
        data.extend_from_slice(text.as_bytes());
        resp.write(name, &data);
    }
    let mut data = vec![3u8 | 2 << 2];
    data.extend_from_slice(RFC_RESPONSE.as_bytes());
    resp.write("max-bytes-64", &data);
}

fn stateful_seeds() {
    let mut w = Writer::new("stateful");
    // Ops: byte = (command << 1) | side, side 0 = client, 1 = server. Commands: 0 text, 1 binary,
    // 2 fragment, 3 ping, 4 pong, 5 close, 6 deliver, 7 flip, 8 clock, 9 EOF, 10 deliver all.
    let op = |cmd: u8, side: u8| (cmd << 1) | side;
    let scripts: Vec<(&str, Vec<u8>)> = vec![
        (
            "echo-and-close",
            [
                vec![0x0C, 0x55],
                vec![op(0, 0), 5, b'h', b'e', b'l', b'l', b'o', 0],
                vec![op(6, 0), 0, 0],
                vec![op(1, 1), 3, 1, 2, 3, 1],
                vec![op(6, 1), 0, 3],
                vec![op(5, 0), 0, 3],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "fragments-with-ping",
            [
                vec![0x0F, 0x00],
                vec![op(2, 0), 0x05, 4, 1, 2, 3, 4],
                vec![op(3, 0), 4],
                vec![op(2, 0), 0x07, 3, 5, 6, 7],
                vec![op(6, 0), 0, 1],
                vec![op(10, 1)],
                vec![op(5, 1), 1, 10],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "keepalive-and-pong-timeout",
            [
                vec![0x00, 0x00],
                vec![op(8, 0), 40],
                vec![op(8, 0), 40],
                vec![op(6, 0), 0, 0],
                vec![op(8, 1), 200],
            ]
            .concat(),
        ),
        (
            "big-messages",
            [
                vec![0xAC, 0xFF],
                vec![op(1, 0), 0xFB, 7, 2],
                vec![op(0, 1), 0xFD, 9, 1],
                vec![op(6, 0), 0, 200],
                vec![op(6, 1), 0, 0],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "flip-in-transit",
            [
                vec![0x0C, 0x11],
                vec![op(0, 0), 3, 1, 2, 3, 0],
                vec![op(7, 0), 0, 1, 0x40],
                vec![op(6, 0), 0, 0],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "eof-mid-message",
            [
                vec![0x0C, 0x22],
                vec![op(1, 1), 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0],
                vec![op(9, 1)],
                vec![op(1, 1), 2, 1, 2, 0],
                vec![op(6, 1), 1, 3],
            ]
            .concat(),
        ),
        (
            "invalid-commands",
            [
                vec![0x0C, 0x33],
                vec![op(5, 0), 4, 0],                // close 1005: invalid code
                vec![op(5, 0), 0, 129],              // reason too long
                vec![op(3, 1), 128],                 // ping too long
                vec![op(2, 0), 0x01, 2, 0xC3, 0x28], // invalid UTF-8 fragment
                vec![op(2, 0), 0x00, 1, 9],          // binary fragment in progress
                vec![op(0, 0), 1, 0, 0],             // whole message while streaming
                vec![op(5, 0), 0, 0],
                vec![op(0, 0), 1, 0, 0], // after close
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "simultaneous-close",
            [
                vec![0x0C, 0xFF],
                vec![op(5, 0), 0, 2],
                vec![op(5, 1), 1, 2],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "too-large-for-server",
            [
                vec![0x00, 0x00],
                vec![op(1, 0), 0xF7, 0, 0],
                vec![op(0, 0), 2, 1, 2, 1],
                vec![op(6, 0), 0, 5],
                vec![op(10, 0)],
            ]
            .concat(),
        ),
        (
            "idle-timeout",
            [
                vec![0x0C, 0x3F],
                vec![op(8, 0), 255],
                vec![op(10, 0)],
                vec![op(8, 1), 255],
            ]
            .concat(),
        ),
    ];
    for (name, data) in &scripts {
        w.write(name, data);
    }
}

fn utf8_seeds() {
    let mut w = Writer::new("utf8_incremental");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ascii", b"\x03hello world".to_vec()),
        (
            "mixed",
            [&[7u8][..], "h\u{e9}llo \u{20ac} \u{1d11e}".as_bytes()].concat(),
        ),
        ("truncated", vec![1, b'a', 0xf0, 0x9f, 0x98]),
        ("overlong", vec![2, 0xc0, 0x80]),
        ("surrogate", vec![0, 0xed, 0xa0, 0x80]),
        ("e0-80", vec![5, b'x', 0xe0, 0x80, b'y']),
        ("above-max", vec![4, 0xf4, 0x90, 0x80, 0x80]),
        ("ff", vec![6, b'a', b'b', 0xff]),
    ];
    for (name, data) in &cases {
        w.write(name, data);
    }
}

/// `deflate_inflate` header: `[flags, limit (u16), params, params, chunk_param]`, see
/// `fuzz::deflate_inflate`.
fn deflate_header(flags: u8, limit: u16, params: [u8; 2], chunk_param: u8) -> Vec<u8> {
    let [hi, lo] = limit.to_be_bytes();
    vec![flags, hi, lo, params[0], params[1], chunk_param]
}

/// Frame kinds of a `deflate_inflate` body (a continuation inside a message).
const BIN: u8 = 0;
const TEXT: u8 = 2;
const PING: u8 = 3;

/// One frame of a `deflate_inflate` body: control byte (FIN, RSV1, kind, length) and payload.
fn deflate_frame(fin: bool, rsv1: bool, kind: u8, payload: &[u8]) -> Vec<u8> {
    let ctl = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (kind << 4);
    let mut out = match payload.len() {
        n if n <= 13 => vec![ctl | n as u8],
        n if n <= 255 => vec![ctl | 14, n as u8],
        n => {
            let [hi, lo] = u16::try_from(n).expect("frame under 64 KiB").to_be_bytes();
            vec![ctl | 15, hi, lo]
        }
    };
    out.extend_from_slice(payload);
    out
}

/// One message of a `deflate_inflate` round trip: `[len, shape, bytes…]`.
fn round_trip_message(shape: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = match bytes.len() {
        n if n < 0xF0 => vec![n as u8],
        n => {
            assert!(n < 1 << 12, "round-trip message under 4 KiB");
            vec![0xF0 | (n >> 8) as u8, n as u8]
        }
    };
    out.push(shape);
    out.extend_from_slice(bytes);
    out
}

/// `data` compressed as one message by a fresh permessage-deflate instance (no tail).
fn deflated(level: u32, data: &[u8]) -> Vec<u8> {
    use tidings_core::ext::ExtensionConfig;
    let response = tidings_core::handshake::parse_extensions([b"permessage-deflate".as_slice()])
        .expect("response parses");
    let mut ext = tidings_core::ext::deflate::DeflateConfig::new()
        .threshold(0)
        .level(level)
        .confirm(&response[0])
        .expect("response accepted");
    let mut out = bytes::BytesMut::new();
    let rsv = ext
        .encode(tidings_core::MessageKind::Binary, data, &mut out)
        .expect("compresses");
    assert_eq!(rsv, Some(tidings_core::RSV1));
    out.to_vec()
}

/// Text with repeats near and far (distances past small windows).
fn varied_text(words: usize, seed: u32) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "deflate",
        "window",
        "the",
        "message",
        "frame",
        "context",
        "takeover",
        "{\"id\":",
        "42,",
        "\"ok\":true}",
        "zlib",
        "\u{e9}t\u{e9}",
    ];
    let mut x = seed | 1;
    let mut out = Vec::new();
    for _ in 0..words {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(WORDS[x as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out
}

fn deflate_seeds() {
    let mut w = Writer::new("deflate_inflate");
    // RFC 7692 §7.2.3 payloads.
    let hello: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let hello_again: &[u8] = &[0xf2, 0x00, 0x11, 0x00, 0x00];
    let stored: &[u8] = &[
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    let bfinal: &[u8] = &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let two_blocks: &[u8] = &[
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let f = deflate_frame;
    let zeros_64k = deflated(9, &vec![0u8; 1 << 16]);
    let zeros_4k = deflated(9, &[0u8; 4096]);
    let (bomb_a, bomb_b) = zeros_64k.split_at(zeros_64k.len() / 2);
    let bad_utf8 = deflated(6, &[0xce, 0xba, 0xe1, 0xbd, 0xc0]);
    let text = varied_text(300, 7);
    let text_deflated = deflated(6, &text);
    let (text_a, text_b) = text_deflated.split_at(text_deflated.len() / 3);
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("hello", f(true, true, TEXT, hello)),
        (
            "hello-fragmented",
            [
                f(false, true, TEXT, &hello[..3]),
                f(true, false, TEXT, &hello[3..]),
            ]
            .concat(),
        ),
        (
            "shared-window",
            [f(true, true, TEXT, hello), f(true, true, TEXT, hello_again)].concat(),
        ),
        ("stored-block", f(true, true, TEXT, stored)),
        (
            "bfinal-then-hello",
            [f(true, true, TEXT, bfinal), f(true, true, TEXT, hello)].concat(),
        ),
        ("two-blocks", f(true, true, TEXT, two_blocks)),
        (
            "uncompressed-between",
            [
                f(true, true, TEXT, hello),
                f(true, false, TEXT, b"Hello"),
                f(true, true, TEXT, hello_again),
            ]
            .concat(),
        ),
        ("empty-message", f(true, true, BIN, &[0x00])),
        (
            "ping-between-fragments",
            [
                f(false, true, TEXT, &hello[..3]),
                f(true, false, PING, b"p"),
                f(true, false, TEXT, &hello[3..]),
            ]
            .concat(),
        ),
        // A final block whose end-of-block code comes in a later frame, after exactly 5 bytes
        // (header `limit5`: frames of at most 5 bytes), then a second message.
        (
            "bfinal-split-then-hello",
            [
                f(false, true, BIN, &bfinal[..5]),
                f(false, false, BIN, &bfinal[5..6]),
                f(true, false, BIN, &bfinal[6..]),
                f(false, true, BIN, &hello[..5]),
                f(true, false, BIN, &hello[5..]),
            ]
            .concat(),
        ),
        ("zeros-4k", f(true, true, BIN, &zeros_4k)),
        (
            "zeros-64k-bomb",
            [f(false, true, BIN, bomb_a), f(true, false, BIN, bomb_b)].concat(),
        ),
        (
            "text-3-frames",
            [
                f(false, true, TEXT, text_a),
                f(false, false, TEXT, &text_b[..text_b.len() / 2]),
                f(true, false, TEXT, &text_b[text_b.len() / 2..]),
            ]
            .concat(),
        ),
        // Invalid data: a reserved block type, a distance before the start, bad UTF-8 inside.
        ("bad-block-type", f(true, true, BIN, &[0xff, 0xff, 0xff])),
        ("too-far-back", f(true, true, TEXT, hello_again)),
        ("bad-utf8", f(true, true, TEXT, &bad_utf8)),
        (
            "rsv1-on-continuation",
            [
                f(false, true, TEXT, &hello[..3]),
                f(true, true, TEXT, &hello[3..]),
            ]
            .concat(),
        ),
        ("rsv1-on-ping", f(true, true, PING, b"")),
    ];
    // [flags, limit, params, chunk_param]: flags bit 1 streaming, bits 2–4 the chunking.
    let headers: [(&str, Vec<u8>); 6] = [
        ("whole", deflate_header(0, 256, [0, 0], 0)),
        ("limit5", deflate_header(2 << 2, 5, [0, 0], 0)),
        ("stream-3", deflate_header(2 | 1 << 2, 64, [0, 0], 2)),
        (
            "stream-random-4",
            deflate_header(2 | 3 << 2, 4, [0x01, 0], 9),
        ),
        (
            "nct-input-buffer",
            deflate_header(7 << 2, 4096, [0x0F, 0x70], 30),
        ),
        ("max", deflate_header(2 | 4 << 2, u16::MAX, [0x04, 0x07], 0)),
    ];
    for (i, (name, body)) in streams.iter().enumerate() {
        // Two headers each, rotating; the limit-5 one always for the split final block.
        let picks = if *name == "bfinal-split-then-hello" {
            vec![1, 2]
        } else {
            vec![i % 6, (i + 2) % 6]
        };
        for h in picks {
            let (hname, header) = &headers[h];
            w.write(
                &format!("{name}-{hname}"),
                &[header.clone(), body.clone()].concat(),
            );
        }
    }
    // The same "Hello" twice without context takeover: the second refers to nothing (1002).
    let nct = deflate_header(0, 256, [0x01, 0], 0);
    let body = [f(true, true, TEXT, hello), f(true, true, TEXT, hello_again)].concat();
    w.write("nct-shared-window", &[nct, body].concat());
    // Exactly at, and one under, the decoded size.
    for (name, limit) in [("zeros-4k-at-limit", 4096), ("zeros-4k-over-limit", 4095)] {
        let header = deflate_header(1 << 2, limit, [0, 0], 100);
        w.write(name, &[header, f(true, true, BIN, &zeros_4k)].concat());
    }

    // Round trips: flags bit 0; params bit 0/1 no context takeover, bits 2–4 / 5–7 windows − 8;
    // chunk_param level | threshold << 4.
    let json = br#"{"id":1,"name":"tidings","tags":["ws","deflate"],"ok":true}"#;
    let long = varied_text(600, 3);
    let trips: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "rt-hello-takeover-15",
            deflate_header(1, u16::MAX, [0xFC, 0xFC], 6),
            [
                round_trip_message(0x00, b"Hello"),
                round_trip_message(0x10, b"Hello"),
                round_trip_message(0x2F, json),
            ]
            .concat(),
        ),
        (
            "rt-window-8",
            deflate_header(1 | 0x20, 0, [0x00, 0x00], 9),
            [
                round_trip_message(0x31, &long[..3000]),
                round_trip_message(0x13, &long[1000..]),
            ]
            .concat(),
        ),
        (
            "rt-nct-window-9-client-to-server",
            deflate_header(1 | 2 | 0x20, 0, [0x27, 0x27], 6),
            [
                round_trip_message(0x20, &long[..2000]),
                round_trip_message(0x20, b"short"),
                round_trip_message(0x3F, json),
            ]
            .concat(),
        ),
        (
            "rt-level-0-stored",
            deflate_header(1, 20_000, [0xFC, 0x00], 0),
            [
                round_trip_message(0x12, &long[..500]),
                round_trip_message(0x00, b""),
            ]
            .concat(),
        ),
        (
            "rt-over-limit",
            deflate_header(1, 1000, [0xFC, 0xFC], 1),
            round_trip_message(0x1F, &long[..200]),
        ),
        (
            "rt-exact-limit",
            deflate_header(1, json.len() as u16 * 4, [0x02, 0x01], 6),
            [
                round_trip_message(0x03, json),
                round_trip_message(0x23, json),
            ]
            .concat(),
        ),
        (
            "rt-threshold-512",
            deflate_header(1, u16::MAX, [0xFC, 0xFC], 0x76),
            [
                round_trip_message(0x00, json),
                round_trip_message(0x10, &long[..700]),
            ]
            .concat(),
        ),
    ];
    for (name, header, body) in &trips {
        w.write(name, &[header.clone(), body.clone()].concat());
    }
}

#[test]
#[ignore = "writes the hand-made seeds into fuzz/corpus; run on purpose"]
fn generate_fuzz_seeds() {
    frame_seeds();
    handshake_seeds();
    stateful_seeds();
    utf8_seeds();
    deflate_seeds();
    hub_envelope_seeds();
    hub_admission_seeds();
    redis_frame_seeds();
}

/// The chat and game-lobby messages of the examples' docs, and envelopes at the edges of the
/// format (optional fields, `null`, duplicate keys, escapes, non-string types, not objects).
fn hub_envelope_seeds() {
    let mut w = Writer::new("hub_envelope");
    let seeds: [(&str, &str); 16] = [
        (
            "chat",
            r#"{"type":"chat","payload":{"room":"r","text":"hi"},"id":"req-1"}"#,
        ),
        (
            "join-room",
            r#"{"type":"join_room","payload":{"room":"general"}}"#,
        ),
        (
            "game-action",
            r#"{"type":"game_action", "payload":{"move":[1, 2]},"id":"m-1"}"#,
        ),
        ("bare", r#"{"type":"leave_game"}"#),
        (
            "null-payload-and-id",
            r#"{"type":"x","payload":null,"id":null}"#,
        ),
        (
            "numeric-id",
            r#"{"id":7,"type":"x","payload":[1,2.5e3,true]}"#,
        ),
        ("duplicate-type", r#"{"type":"a","type":"b"}"#),
        ("unknown-field", r#"{"type":"a","extra":{"k":"v"}}"#),
        (
            "escapes",
            r#"{"type":"\u00e9\"\\\n","payload":"\ud83d\ude00"}"#,
        ),
        ("type-not-string", r#"{"type":3}"#),
        ("not-object", r#"["type","chat"]"#),
        ("malformed", r#"{"type":"chat","payload":{"#),
        ("empty", ""),
        (
            "nested-deep",
            r#"{"type":"d","payload":[[[[[[[[[[{"a":{"b":{"c":[]}}}]]]]]]]]]]}"#,
        ),
        (
            "event-shape",
            r#"{"type":"user_joined","data":{"user":"alice","room":"r"}}"#,
        ),
        (
            "whitespace",
            " \t\n{ \"type\" : \"x\" , \"payload\" : { } } \n",
        ),
    ];
    for (name, text) in seeds {
        w.write(name, text.as_bytes());
    }
}

/// `[tickets, bucket, limiter]` of `fuzz::hub_admission`: lifetime and capacity indices, bucket
/// capacity and rate index, limiter `max_keys`, capacity index and rate index.
fn admission_header(lifetime: u8, max: u8, bucket: (u8, u8), limiter: (u8, u8, u8)) -> Vec<u8> {
    vec![
        lifetime | max << 3,
        bucket.0 | bucket.1 << 4,
        (limiter.0 - 1) | limiter.1 << 3 | limiter.2 << 5,
    ]
}

/// A length-prefixed text operand.
fn admission_text(text: &str) -> Vec<u8> {
    [&[text.len() as u8][..], text.as_bytes()].concat()
}

/// Scripts for the admission target (op bytes as documented on `fuzz::hub_admission`): a
/// ticket's one use, its expiry and forget boundaries, a full store, tickets in queries among
/// other parameters, unknown and altered tickets, time going back, bearer tokens in queries and
/// headers, token buckets at their limits and a keyed limiter evicting full buckets.
fn hub_admission_seeds() {
    let mut w = Writer::new("hub_admission");
    // Ops.
    const FWD: u8 = 0;
    const FWD_LONG: u8 = 1;
    const BACK: u8 = 2;
    const AT: u8 = 3;
    const ISSUE: u8 = 4;
    const REDEEM: u8 = 5;
    const QUERY: u8 = 6;
    const TEXT: u8 = 7;
    const ALTERED: u8 = 8;
    const LEN: u8 = 9;
    const BEARER: u8 = 10;
    const BEARER_MADE: u8 = 11;
    const TAKE: u8 = 12;
    const PROBE: u8 = 13;
    const CHECK: u8 = 14;
    const QUERY_TEXT: u8 = 15;
    // 5 s tickets, 8 outstanding; a 3-token bucket at 0.5/s; 4 keys of 1 token at 0.5/s.
    let plain = admission_header(4, 5, (3, 1), (4, 1, 1));
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "ticket-once",
            vec![ISSUE, REDEEM, 0, REDEEM, 0, FWD, 100, REDEEM, 0, LEN],
        ),
        (
            "ticket-expiry-boundaries",
            vec![
                ISSUE, ISSUE, AT, 0, 0, REDEEM, 0, LEN, AT, 1, 1, REDEEM, 1, REDEEM, 1, AT, 0x81,
                0, REDEEM, 1, AT, 0x81, 1, REDEEM, 1, REDEEM, 0, LEN,
            ],
        ),
        (
            "ticket-unknown-and-altered",
            [
                &[ISSUE][..],
                &[TEXT],
                &admission_text(""),
                &[TEXT],
                &admission_text("abc"),
                &[TEXT],
                &admission_text(&"A".repeat(43)),
                &[ALTERED, 0, 5, 9, ALTERED, 0, 42, 0, REDEEM, 0, LEN],
            ]
            .concat(),
        ),
        (
            "ticket-in-query",
            [
                &[ISSUE, ISSUE, QUERY, 0, 0, 0x12, 0x34][..],
                &admission_text("a=1&b&=x"),
                &admission_text("ticket=other"),
                &[QUERY, 0, 1, 0, 7],
                &admission_text(""),
                &admission_text(""),
                &[QUERY, 1, 2, 0xAB, 0xCD],
                &admission_text("access+ticket=first&t=2"),
                &admission_text("x"),
                &[QUERY, 1, 3 | 4, 0, 1],
                &admission_text(""),
                &admission_text(""),
                &[QUERY, 1, 3, 0x55, 0xAA],
                &admission_text("%"),
                &admission_text("ticket%25="),
                &[LEN],
            ]
            .concat(),
        ),
        (
            "query-text",
            [
                &[QUERY_TEXT][..],
                &admission_text("ticket=%41%4&t=+&ticket%25=x"),
                &[0, QUERY_TEXT],
                &admission_text("tick%65t=%FF"),
                &[0, QUERY_TEXT],
                &admission_text("t=&t=x"),
                &[1, QUERY_TEXT],
                &admission_text("access%20ticket=%e2%98%83"),
                &[2],
            ]
            .concat(),
        ),
        (
            "time-backwards",
            vec![
                FWD_LONG, 1, ISSUE, BACK, 200, ISSUE, FWD, 250, LEN, REDEEM, 0, REDEEM, 1, BACK,
                255, REDEEM, 1, FWD_LONG, 3, LEN, ISSUE, REDEEM, 2, TAKE, 1, BACK, 100, TAKE, 1,
                PROBE, CHECK, 1, BACK, 50, CHECK, 1, PROBE,
            ],
        ),
        (
            "bearer-arbitrary",
            [
                &[BEARER, 2 << 1][..],
                &admission_text("token=a%20b&token=c"),
                &admission_text("Bearer  xyz "),
                &admission_text("bearer\tq"),
                &[BEARER, 3 << 1 | 1],
                &admission_text("tok%65n=x"),
                &admission_text("Basic abc"),
                &admission_text("Bearer"),
                &admission_text(" BEARER\t\tt0k3n=="),
                &[BEARER, 1 << 1],
                &admission_text("token="),
                &admission_text("Bearer \u{e9}"),
            ]
            .concat(),
        ),
        (
            "bearer-constructed",
            [
                &[BEARER_MADE, 0, 5, 0, 1][..],
                b"hello",
                &[BEARER_MADE, 2 | 1 | 0x80, 12, 0x12, 0x34],
                b"abcdefghijkl",
                &[BEARER_MADE, 2 << 2 | 16 | 32, 8, 0xBE, 0xEF],
                b"\x00\x01\x02\x03\x04\x05\x06\x07",
                &[BEARER_MADE, 2 | 1 << 2, 3, 0, 9],
                b"xyz",
                &[BEARER_MADE, 2 | 3 << 2 | 0x40, 20, 0x77, 0x01],
                b"01234567890123456789",
            ]
            .concat(),
        ),
        (
            "bucket-burst-and-refill",
            vec![
                TAKE, 1, TAKE, 1, TAKE, 1, TAKE, 1, PROBE, FWD, 199, PROBE, TAKE, 1, FWD, 1, TAKE,
                1, PROBE, TAKE, 0, TAKE, 4, FWD_LONG, 10, PROBE, TAKE, 3, TAKE, 1, PROBE,
            ],
        ),
        (
            "limiter-forgets-full-buckets",
            vec![
                CHECK, 1, CHECK, 1, CHECK, 2, CHECK, 3, CHECK, 4, FWD, 250, CHECK, 5, CHECK, 5,
                CHECK, 1, FWD_LONG, 2, CHECK, 6, CHECK, 7, CHECK, 8, CHECK, 9, CHECK, 9, LEN,
            ],
        ),
    ];
    for (name, ops) in seeds {
        w.write(name, &[plain.clone(), ops].concat());
    }
    // Other configurations.
    let configured: [(&str, Vec<u8>, Vec<u8>); 5] = [
        (
            "ticket-store-full",
            // 1 s tickets, 2 outstanding.
            admission_header(3, 2, (0, 0), (1, 0, 0)),
            vec![
                ISSUE, ISSUE, ISSUE, LEN, REDEEM, 0, ISSUE, LEN, ISSUE, FWD, 100, ISSUE, ISSUE,
                LEN, FWD_LONG, 1, ISSUE, REDEEM, 0, REDEEM, 4, LEN,
            ],
        ),
        (
            "ticket-lifetime-zero-capacity-zero",
            admission_header(0, 0, (1, 9), (1, 0, 0)),
            vec![
                ISSUE, LEN, TAKE, 1, TAKE, 1, PROBE, FWD_LONG, 255, PROBE, CHECK, 0,
            ],
        ),
        (
            "ticket-long-lifetime",
            // Two days, capped to one; 64 outstanding.
            admission_header(7, 7, (15, 8), (8, 3, 4)),
            vec![
                ISSUE, FWD_LONG, 255, ISSUE, AT, 0, 0, REDEEM, 0, AT, 0x80, 2, REDEEM, 0, REDEEM,
                1, LEN, TAKE, 4, TAKE, 4, TAKE, 4, TAKE, 4, PROBE, FWD, 1, PROBE, TAKE, 4,
            ],
        ),
        (
            "bucket-slow-refill",
            // 1 token at 1e-3/s; limiter of 1 key, 2 tokens at 1e-3/s.
            admission_header(1, 1, (1, 5), (1, 2, 5)),
            vec![
                TAKE, 1, PROBE, FWD_LONG, 27, PROBE, TAKE, 1, CHECK, 3, CHECK, 3, CHECK, 3,
                FWD_LONG, 28, CHECK, 3, CHECK, 4, ISSUE, FWD, 1, REDEEM, 0,
            ],
        ),
        (
            "bucket-odd-rates",
            // 0.3/s bucket; limiter at 0.1/s.
            admission_header(2, 3, (7, 12), (3, 1, 6)),
            vec![
                TAKE, 4, TAKE, 3, TAKE, 1, PROBE, FWD, 33, PROBE, FWD, 34, TAKE, 1, PROBE, CHECK,
                0, CHECK, 0, FWD, 100, CHECK, 0, PROBE,
            ],
        ),
    ];
    for (name, header, ops) in configured {
        w.write(name, &[header, ops].concat());
    }
}

/// A broadcast from `node-a` for the redis_frame seeds.
fn redis_broadcast(
    target: tidings_hub::Target,
    payload: tidings_hub::Payload,
    except: Option<&str>,
) -> tidings_hub::Broadcast {
    tidings_hub::Broadcast::new(target, payload, "node-a".into())
        .except(except.map(tidings_hub::ClientId::new))
}

/// Messages of the Redis backend's wire (`tidings_hub_redis::frame`): channel messages of every
/// target and payload kind, numbered or not, with and without an excepted client; bare bodies
/// (history entries); truncated, inconsistent and foreign messages; and structured-part inputs
/// (`[shape, ids, seq, …]`, see `fuzz::redis_frame`) with ids at the wire's 65535-byte limit.
fn redis_frame_seeds() {
    use tidings_hub::{Message, Payload, Target};
    use tidings_hub_redis::frame::{encode, encode_body};

    let mut w = Writer::new("redis_frame");
    let text = |t: &str| Payload::Message(Message::text(t.to_owned()));
    let binary = |b: &[u8]| Payload::Message(Message::binary(b.to_vec()));
    let event = |name: &str, data: &str| Payload::Event {
        name: name.to_owned(),
        data: data.to_owned(),
    };
    let rooms = |names: &[&str]| Target::Rooms(names.iter().map(|r| (*r).to_owned()).collect());
    let lobby = || Target::Room("lobby".to_owned());
    // (name, broadcast, seq, event id; 0: not numbered)
    let messages = [
        (
            "all-text",
            redis_broadcast(Target::All, text("hello"), None),
            1,
            0,
        ),
        (
            "room-text-except-numbered",
            redis_broadcast(lobby(), text("h\u{e9}llo \u{2603}"), Some("c1")),
            2,
            1_733_440_000_123_456,
        ),
        (
            "rooms-binary-numbered",
            redis_broadcast(rooms(&["a", "b:c", ""]), binary(&[0, 255, 1]), None),
            3,
            42,
        ),
        (
            "rooms-none-event-except",
            redis_broadcast(rooms(&[]), event("chat", r#"{"x":1}"#), Some("c2")),
            u64::MAX,
            0,
        ),
        (
            "room-event-max-id",
            redis_broadcast(lobby(), event("user_joined", r#"{"user":"al"}"#), None),
            9,
            u64::MAX,
        ),
        (
            "all-binary-empty-except",
            redis_broadcast(
                Target::All,
                binary(&[]),
                Some("0123456789abcdef0123456789abcdef"),
            ),
            0,
            7,
        ),
    ];
    for (name, broadcast, seq, id) in &messages {
        w.write(name, &encode(*id, &encode_body(broadcast, *seq)));
    }
    // Bodies alone, as a history stream keeps them.
    let bodies = [
        (
            "body-room-text",
            redis_broadcast(lobby(), text("hi"), None),
            5,
        ),
        (
            "body-rooms-event-except",
            redis_broadcast(rooms(&["r1", "r2"]), event("", "null"), Some("me")),
            6,
        ),
        (
            "body-all-binary",
            redis_broadcast(Target::All, binary(b"\xff\xfe tdg1 "), None),
            1,
        ),
    ];
    for (name, broadcast, seq) in &bodies {
        w.write(name, &encode_body(broadcast, *seq));
    }
    // Broken and foreign messages.
    let room_body = encode_body(&redis_broadcast(lobby(), text("hi"), Some("c1")), 1);
    let mut huge_count = room_body.to_vec();
    // kind, target, seq, origin, except: the room count.
    let at = 2 + 8 + 2 + "node-a".len() + 2 + "c1".len();
    huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut bad_target = room_body.to_vec();
    bad_target[1] = 0;
    let broken: [(&str, Vec<u8>); 6] = [
        (
            "truncated-message",
            encode(3, &room_body[..room_body.len() - 5]),
        ),
        ("leading-zero-id", [&b"tdg1 007 "[..], &room_body].concat()),
        (
            "id-overflow",
            [&b"tdg1 18446744073709551616 "[..], &room_body].concat(),
        ),
        ("huge-room-count", encode(0, &huge_count)),
        ("target-count-mismatch", encode(1, &bad_target)),
        (
            "foreign",
            br#"{"type":"chat","payload":"tdg1 1 "}"#.to_vec(),
        ),
    ];
    for (name, data) in &broken {
        w.write(name, data);
    }
    // Structured part: Rooms, event, except, numbered, u64 seq; origin and except repeated to
    // 65538 bytes, which the wire cuts to 65535 (ASCII: on a character boundary).
    let structured = [0x02 | 2 << 2 | 0x10 | 0x20 | 0x40, 0x02 | 2 << 2 | 6 << 4];
    let long_ids = [
        &structured[..],
        &1u64.to_be_bytes(),
        &99u64.to_be_bytes(),
        &[5],
        b"node-",
        &[2],
        b"c1",
        &[2, 1],
        b"a",
        &[0],
        &[4],
        b"chat",
        br#"{"x":[1,2]}"#,
    ]
    .concat();
    w.write("structured-long-ids", &long_ids);
    w.write("empty", b"");
}
