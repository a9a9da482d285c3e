//! In-memory server-side echo: decode a batch of masked client frames and encode the echoes,
//! for tidings-core and for tungstenite (the most used Rust WebSocket crate) in the same run.
//! No sockets: this measures protocol work per message, not I/O.
//!
//! `cargo bench -p tidings-core --bench echo`
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidings_core::{Config, Connection, Event, FrameHeader, OpCode, mask::apply_mask};

/// `count` masked client frames of `size` bytes each.
fn client_frames(opcode: OpCode, size: usize, count: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        let key = (i as u32).wrapping_mul(0x9E37_79B9).to_be_bytes();
        let (head, n) = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(key),
            len: size as u64,
        }
        .encode();
        wire.extend_from_slice(&head[..n]);
        let start = wire.len();
        wire.extend_from_slice(&payload);
        apply_mask(&mut wire[start..], key);
    }
    wire
}

/// Bytes handed over per read, as an adapter with a 64 KiB read buffer would.
const READ: usize = 64 * 1024;

fn tidings_echo(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut conn = Connection::server(Config::default(), Instant::now());
    out.clear();
    let mut n = 0;
    for read in input.chunks(READ) {
        conn.receive(Instant::now(), read);
        while let Some(event) = conn.poll_event() {
            if let Event::Message(m) = event {
                conn.send(m).expect("send");
                n += 1;
            }
        }
        conn.poll_transmit(out);
    }
    n
}

/// A stream whose reads come from a buffer (then `WouldBlock`) and whose writes go to a Vec.
struct Mock<'a> {
    input: &'a [u8],
    output: &'a mut Vec<u8>,
}

impl Read for Mock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(READ);
        self.input.read(&mut buf[..n])
    }
}

impl Write for Mock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tungstenite_echo(input: &[u8], out: &mut Vec<u8>) -> usize {
    use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
    out.clear();
    let mock = Mock { input, output: out };
    let config = WebSocketConfig::default();
    let mut ws = WebSocket::from_raw_socket(mock, Role::Server, Some(config));
    let mut n = 0;
    loop {
        match ws.read() {
            Ok(m) if m.is_text() || m.is_binary() => {
                ws.write(m).expect("write");
                n += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = ws.flush();
    n
}

fn bench(c: &mut Criterion) {
    for (name, opcode, size, count) in [
        ("text_20B_x1000", OpCode::Text, 20, 1000),
        ("text_1KiB_x1000", OpCode::Text, 1024, 1000),
        ("binary_64KiB_x16", OpCode::Binary, 64 * 1024, 16),
    ] {
        let input = client_frames(opcode, size, count);
        let mut out = Vec::with_capacity(input.len());
        assert_eq!(tidings_echo(&input, &mut out), count);
        let ours = out.clone();
        assert_eq!(tungstenite_echo(&input, &mut out), count);
        assert_eq!(ours, out, "both produce the same echo bytes");
        let mut group = c.benchmark_group(format!("echo_{name}"));
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function("tidings", |b| {
            b.iter(|| tidings_echo(black_box(&input), &mut out))
        });
        group.bench_function("tungstenite", |b| {
            b.iter(|| tungstenite_echo(black_box(&input), &mut out))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
