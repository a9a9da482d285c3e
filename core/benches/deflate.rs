//! permessage-deflate cost per message: an in-memory round trip of 1 KiB JSON-like texts (client
//! sends, server echoes, client receives; both sides compress and inflate), uncompressed as the
//! reference measured in the same run, then with deflate at levels 1 and 6, with and without
//! context takeover. Prints the payload bytes per message of each mode once.
//!
//! `cargo bench -p tidings-core --bench deflate`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidings_core::ext::deflate::DeflateConfig;
use tidings_core::ext::{ExtensionConfig, negotiate_client, negotiate_server};
use tidings_core::handshake::parse_extensions;
use tidings_core::{Config, Connection, Event, Message};

/// 128 distinct JSON-like texts of 1 KiB (ids, names, amounts, timestamps).
fn messages() -> Vec<Message> {
    (0..128)
        .map(|k| {
            let mut s = String::from("[");
            let mut i = 0;
            while s.len() < 1024 {
                s.push_str(&format!(
                    "{{\"id\":{},\"user\":\"user-{}\",\"type\":\"trade\",\"amount\":{}.{:02},\"ts\":\"2026-11-25T17:{:02}:{:02}Z\"}},",
                    k * 10 + i,
                    (k * 7 + i) % 97,
                    (k * 31 + i * 17) % 1000,
                    (k + i) % 100,
                    i % 60,
                    (k * 3 + i) % 60
                ));
                i += 1;
            }
            s.truncate(1024);
            Message::text(s)
        })
        .collect()
}

/// A connected client/server pair, with permessage-deflate `deflate` negotiated if given.
fn pair(deflate: Option<&DeflateConfig>) -> (Connection, Connection) {
    let now = Instant::now();
    let mut client = Connection::client_with_masks(Config::default(), || [1, 2, 3, 4], now);
    let mut server = Connection::server(Config::default(), now);
    if let Some(config) = deflate {
        let (response, server_ext) =
            negotiate_server(&[config], &config.offers()).expect("accepted");
        let answer = parse_extensions([response.as_bytes()]).expect("parses");
        let client_ext = negotiate_client(&[config], &answer)
            .expect("acceptable")
            .expect("agreed");
        client.set_extension(client_ext);
        server.set_extension(server_ext);
    }
    (client, server)
}

/// One round trip of `message`; returns the wire bytes client→server.
fn round_trip(client: &mut Connection, server: &mut Connection, message: &Message) -> usize {
    let now = Instant::now();
    let mut wire = Vec::new();
    client.send(message.clone()).expect("send");
    client.poll_transmit(&mut wire);
    let sent = wire.len();
    server.receive(now, &wire);
    while let Some(event) = server.poll_event() {
        if let Event::Message(m) = event {
            server.send(m).expect("echo");
        }
    }
    wire.clear();
    server.poll_transmit(&mut wire);
    client.receive(now, &wire);
    match client.poll_event() {
        Some(Event::Message(m)) => assert_eq!(m.len(), message.len()),
        other => panic!("expected the echo, got {other:?}"),
    }
    sent
}

fn modes() -> Vec<(&'static str, Option<DeflateConfig>)> {
    vec![
        ("plain", None),
        ("deflate_l1", Some(DeflateConfig::new().level(1))),
        ("deflate_l6", Some(DeflateConfig::new().level(6))),
        (
            "deflate_l1_no_context",
            Some(DeflateConfig::no_context_takeover().level(1)),
        ),
    ]
}

fn echo_1kib_json(c: &mut Criterion) {
    let messages = messages();
    for (name, config) in modes() {
        let (mut client, mut server) = pair(config.as_ref());
        let wire: usize = messages
            .iter()
            .map(|m| round_trip(&mut client, &mut server, m))
            .sum();
        eprintln!(
            "{name}: {} wire bytes per 1024-byte message, client to server",
            wire / messages.len()
        );
    }
    let mut group = c.benchmark_group("roundtrip_1KiB_json");
    group.throughput(Throughput::Elements(1));
    for (name, config) in modes() {
        let (mut client, mut server) = pair(config.as_ref());
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % messages.len();
                black_box(round_trip(&mut client, &mut server, &messages[i]))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, echo_1kib_json);
criterion_main!(benches);
