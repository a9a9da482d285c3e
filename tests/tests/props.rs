//! Property tests: chunking independence, header encode/decode identity, masking, and random
//! conversations between a client and a server.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use tidings_core::{
    CloseCode, Config, Connection, ConnectionError, Error, Event, FrameHeader, Message,
    MessageKind, OpCode, Role,
};
use tidings_tests::{
    Pair, SeqMasks, client, decode_frames, drain_events, feed, reassemble, server, take_output,
};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Out {
    Text(String),
    Binary(Vec<u8>),
    Fragments(MessageKind, Vec<Vec<u8>>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..max),
    ]
}

fn out_strategy() -> impl Strategy<Value = Out> {
    prop_oneof![
        3 => ".{0,40}".prop_map(Out::Text),
        3 => payload(3000).prop_map(Out::Binary),
        2 => prop::collection::vec(".{0,10}", 1..5).prop_map(|parts| {
            Out::Fragments(MessageKind::Text, parts.into_iter().map(String::into_bytes).collect())
        }),
        2 => prop::collection::vec(payload(300), 1..5)
            .prop_map(|parts| Out::Fragments(MessageKind::Binary, parts)),
        1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(Out::Ping),
        1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(Out::Pong),
    ]
}

/// Queues `out` on `conn`; returns the whole message it sends, if any.
fn queue(conn: &mut Connection, now: Instant, out: &Out) -> Result<Option<Message>, Error> {
    Ok(match out {
        Out::Text(t) => {
            conn.send_text(t)?;
            Some(Message::text(t.as_str()))
        }
        Out::Binary(b) => {
            conn.send_binary(b)?;
            Some(Message::binary(b.clone()))
        }
        Out::Fragments(kind, parts) => {
            let last = parts.len() - 1;
            let mut all = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                conn.send_fragment(*kind, p, i == last)?;
                all.extend_from_slice(p);
            }
            Some(match kind {
                MessageKind::Text => Message::text(String::from_utf8(all).expect("utf8 parts")),
                MessageKind::Binary => Message::binary(all),
            })
        }
        Out::Ping(p) => {
            conn.send_ping(now, p)?;
            None
        }
        Out::Pong(p) => {
            conn.send_pong(p)?;
            None
        }
    })
}

/// Split points: a list of chunk sizes cycled over the input.
fn feed_split(conn: &mut Connection, now: Instant, bytes: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = sizes[i % sizes.len()].max(1).min(bytes.len() - pos);
        conn.receive(now, &bytes[pos..pos + n]);
        events.extend(drain_events(conn));
        pos += n;
        i += 1;
    }
    events
}

// ---------------------------------------------------------------------------------------------
// Chunking independence
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any split of a client's output into reads gives the server the same events.
    #[test]
    fn any_chunking_of_client_output_gives_the_same_events(
        outs in prop::collection::vec(out_strategy(), 0..12),
        close in any::<bool>(),
        sizes in prop::collection::vec(1usize..200, 1..8),
        seed in any::<u64>(),
    ) {
        let now = Instant::now();
        let mut c = Connection::client_with_masks(Config::default(), SeqMasks::new(seed), now);
        for o in &outs {
            queue(&mut c, now, o).expect("queue");
        }
        if close {
            c.close(now, CloseCode::NORMAL, "done").expect("close");
        }
        let wire = take_output(&mut c);
        let mut whole = server(Config::default(), now);
        let expect = feed(&mut whole, now, &wire, None);
        let mut split = server(Config::default(), now);
        let got = feed_split(&mut split, now, &wire, &sizes);
        prop_assert_eq!(&got, &expect);
        let mut bytewise = server(Config::default(), now);
        prop_assert_eq!(&feed(&mut bytewise, now, &wire, Some(1)), &expect);
        // And the events are what was sent.
        let mut sent = Vec::new();
        let mut c2 = Connection::client_with_masks(Config::default(), SeqMasks::new(seed), now);
        for o in &outs {
            sent.extend(queue(&mut c2, now, o).expect("queue"));
        }
        prop_assert_eq!(tidings_tests::messages(&expect), sent);
        prop_assert_eq!(tidings_tests::closed(&expect).is_some(), close);
    }

    /// The same holds for corrupted input: one byte changed anywhere gives the same events (and
    /// the same failure) however the bytes are split.
    #[test]
    fn any_chunking_of_corrupted_input_gives_the_same_events(
        outs in prop::collection::vec(out_strategy(), 1..6),
        flip_at in any::<prop::sample::Index>(),
        flip_to in any::<u8>(),
        sizes in prop::collection::vec(1usize..50, 1..6),
        stream in any::<bool>(),
    ) {
        let now = Instant::now();
        let mut c = client(Config::default(), now);
        for o in &outs {
            queue(&mut c, now, o).expect("queue");
        }
        let mut wire = take_output(&mut c);
        let i = flip_at.index(wire.len());
        wire[i] = flip_to;
        let cfg = Config::default().max_frame_size(Some(1 << 16)).stream_incoming(stream);
        let mut whole = server(cfg.clone(), now);
        let expect = feed(&mut whole, now, &wire, None);
        let mut split = server(cfg, now);
        let got = feed_split(&mut split, now, &wire, &sizes);
        if stream {
            // Streaming fragments follow the reads: compare whole messages, and drop the
            // delivered part of a message the failure cut short (how much of it was delivered
            // depends on where the reads ended).
            prop_assert_eq!(summarize(&got), summarize(&expect));
        } else {
            prop_assert_eq!(got, expect);
        }
    }
}

/// Events with adjacent fragments of one message merged.
fn summarize(events: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut open = false;
    for e in events {
        if let Event::Fragment(f) = e
            && open
            && let Some(Event::Fragment(prev)) = out.last_mut()
        {
            let mut data = prev.data.to_vec();
            data.extend_from_slice(&f.data);
            prev.data = data.into();
            prev.fin = f.fin;
            open = !f.fin;
            continue;
        }
        if let Event::Fragment(f) = e {
            open = !f.fin;
        }
        out.push(e.clone());
    }
    out.retain(|e| !matches!(e, Event::Fragment(f) if !f.fin));
    out
}

// ---------------------------------------------------------------------------------------------
// Header encode/decode and masking
// ---------------------------------------------------------------------------------------------

fn header_strategy() -> impl Strategy<Value = FrameHeader> {
    let opcode = prop::sample::select(vec![
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ]);
    let len = prop_oneof![
        0u64..=130,
        120u64..=140,
        65530u64..=65540,
        0u64..(1 << 63),
        Just((1u64 << 63) - 1),
    ];
    (any::<bool>(), 0u8..8, opcode, any::<Option<[u8; 4]>>(), len).prop_map(
        |(fin, rsv, opcode, mask, len)| {
            let (fin, len) = if opcode.is_control() {
                (true, len % 126)
            } else {
                (fin, len)
            };
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                len,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// encode → decode is the identity for every valid header, uses the minimal length form, and
    /// every strict prefix of the encoding asks for more bytes.
    #[test]
    fn header_encode_decode_is_identity(h in header_strategy(), trailing in payload(8)) {
        let (bytes, n) = h.encode();
        let expect_len = 2
            + match h.len { 0..=125 => 0, 126..=65535 => 2, _ => 8 }
            + if h.mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(n, expect_len);
        let mut buf = bytes[..n].to_vec();
        buf.extend_from_slice(&trailing);
        prop_assert_eq!(FrameHeader::decode(&buf), Ok(Some((h, n))));
        for cut in 0..n {
            prop_assert_eq!(FrameHeader::decode(&bytes[..cut]), Ok(None));
        }
    }

    /// Masking twice with the same key is the identity and equals the naive XOR at any offset.
    #[test]
    fn masking_is_the_naive_xor(data in payload(100), key in any::<[u8; 4]>()) {
        let mut masked = data.clone();
        tidings_core::mask::apply_mask(&mut masked, key);
        for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
            prop_assert_eq!(*m, d ^ key[i % 4]);
        }
        tidings_core::mask::apply_mask(&mut masked, key);
        prop_assert_eq!(masked, data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// A client's output, decoded and unmasked, is exactly the payloads it was given; every frame
    /// is masked (RFC 6455 §5.3).
    #[test]
    fn client_masked_output_unmasks_to_the_payloads_sent(
        outs in prop::collection::vec(out_strategy(), 0..10),
        big in prop::option::of(0usize..70_000),
        seed in any::<u64>(),
    ) {
        let now = Instant::now();
        let mut c = Connection::client_with_masks(Config::default(), SeqMasks::new(seed), now);
        let mut sent = Vec::new();
        let mut controls = Vec::new();
        for o in &outs {
            sent.extend(queue(&mut c, now, o).expect("queue"));
            if let Out::Ping(p) | Out::Pong(p) = o {
                controls.push(p.clone());
            }
        }
        if let Some(n) = big {
            let b: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
            c.send_binary(&b).expect("big");
            sent.push(Message::binary(b));
        }
        let frames = decode_frames(&take_output(&mut c)).expect("client output decodes");
        prop_assert!(frames.iter().all(|f| f.header.mask.is_some()));
        let got: Vec<Vec<u8>> = reassemble(&frames)
            .expect("well-formed fragmentation")
            .into_iter()
            .map(|m| m.payload)
            .collect();
        let want: Vec<Vec<u8>> = sent.iter().map(|m| m.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
        let got_controls: Vec<Vec<u8>> = frames
            .iter()
            .filter(|f| f.header.opcode.is_control())
            .map(|f| f.payload.clone())
            .collect();
        prop_assert_eq!(got_controls, controls);
    }
}

// ---------------------------------------------------------------------------------------------
// Random conversations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Cmd {
    Send(Role, Out),
    /// A too-large message for the peer's limit.
    SendHuge(Role),
    /// One fragment of a streamed message, left open.
    OpenFragment(Role, MessageKind, Vec<u8>),
    Close(Role, u16, String),
    Advance(u64),
    Drive,
    /// The transport drops, `Role` reads EOF first.
    Eof(Role),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Client), Just(Role::Server)]
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        8 => (role(), out_strategy()).prop_map(|(r, o)| Cmd::Send(r, o)),
        1 => role().prop_map(Cmd::SendHuge),
        1 => (role(), prop_oneof![Just(MessageKind::Text), Just(MessageKind::Binary)], payload(20))
            .prop_map(|(r, k, p)| {
                let p = if k == MessageKind::Text { p.iter().map(|b| b'a' + b % 26).collect() } else { p };
                Cmd::OpenFragment(r, k, p)
            }),
        1 => (role(), prop::sample::select(vec![1000u16, 1001, 1003, 1005, 3000, 4999, 999]), "[a-z]{0,10}")
            .prop_map(|(r, c, s)| Cmd::Close(r, c, s)),
        3 => (0u64..12_000).prop_map(Cmd::Advance),
        4 => Just(Cmd::Drive),
        1 => role().prop_map(Cmd::Eof),
    ]
}

fn conversation_config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(keepalive, pong, idle, stream, auto_pong)| {
            Config::default()
                .max_message_size(Some(8192))
                .max_frame_size(Some(4096))
                .ping_interval(keepalive.then(|| Duration::from_secs(5)))
                .pong_timeout(pong.then(|| Duration::from_secs(3)))
                .idle_timeout(idle.then(|| Duration::from_secs(20)))
                .close_timeout(Some(Duration::from_secs(2)))
                .stream_incoming(stream)
                .auto_pong(auto_pong)
        })
}

fn conn(pair: &mut Pair, r: Role) -> &mut Connection {
    match r {
        Role::Client => &mut pair.client,
        Role::Server => &mut pair.server,
    }
}

fn check_side(name: &str, events: &[Event]) -> Result<(), TestCaseError> {
    let closed_at = events.iter().position(|e| matches!(e, Event::Closed(_)));
    if let Some(i) = closed_at {
        prop_assert_eq!(
            i,
            events.len() - 1,
            "{}: events after Closed: {:?}",
            name,
            events
        );
        let Event::Closed(o) = &events[i] else {
            unreachable!()
        };
        if o.clean {
            prop_assert!(o.error.is_none(), "{}: clean with an error: {:?}", name, o);
        } else {
            prop_assert!(
                [1000, 1002, 1007, 1009, 1006].contains(&o.code.as_u16()),
                "{}: unexpected close code: {:?}",
                name,
                o
            );
        }
        match &o.error {
            // A failed connection received no close frame: its close code is 1006
            // (RFC 6455 §7.1.5). The frame it sent carries the failure code, unless its own
            // close frame had already gone out before the fault.
            Some(ConnectionError::Protocol(e)) => {
                prop_assert_eq!(o.code, CloseCode::ABNORMAL);
                let sent = o.sent.as_ref().map(|f| f.code);
                prop_assert!(
                    sent.is_some(),
                    "{}: failed without a close frame: {:?}",
                    name,
                    o
                );
                // (The exact failure code per fault is checked in `pair.rs`; here an earlier
                // close command may have sent any sendable code.)
                prop_assert!(
                    sent == Some(e.close_code()) || sent.is_some_and(|c| c.is_sendable()),
                    "{}: sent {:?} for {:?}",
                    name,
                    sent,
                    e
                );
            }
            Some(_) => prop_assert_eq!(o.code, CloseCode::ABNORMAL),
            None => {}
        }
    }
    let close_received = events
        .iter()
        .filter(|e| matches!(e, Event::CloseReceived(_)))
        .count();
    prop_assert!(
        close_received <= 1,
        "{}: {} CloseReceived",
        name,
        close_received
    );
    if close_received == 1 {
        prop_assert!(
            matches!(
                events.get(events.len().wrapping_sub(2)),
                Some(Event::CloseReceived(_))
            ),
            "{}: CloseReceived not directly before Closed: {:?}",
            name,
            events
        );
    }
    Ok(())
}

/// Whole messages received, with streamed fragments reassembled.
fn received(events: &[Event]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cur: Option<(MessageKind, Vec<u8>)> = None;
    for e in events {
        match e {
            Event::Message(m) => out.push(m.clone()),
            Event::Fragment(f) => {
                let c = cur.get_or_insert_with(|| (f.kind, Vec::new()));
                c.1.extend_from_slice(&f.data);
                if f.fin {
                    let (kind, data) = cur.take().expect("fragment in progress");
                    out.push(match kind {
                        MessageKind::Text => {
                            Message::text(String::from_utf8(data).expect("validated text"))
                        }
                        MessageKind::Binary => Message::binary(data),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// A random conversation never panics; each side ends open, closed cleanly, or closed with
    /// 1000/1002/1007/1009/1006; once the dust settles both sides agree on being open or closed;
    /// and each side received a prefix of what the other sent, in order.
    #[test]
    fn random_conversation_ends_open_clean_or_with_a_legal_code(
        client_cfg in conversation_config(),
        server_cfg in conversation_config(),
        cmds in prop::collection::vec(cmd_strategy(), 0..40),
        chunk in prop::option::of(1usize..300),
        write in prop::option::of(1usize..300),
    ) {
        let mut pair = Pair::with_configs(client_cfg, server_cfg);
        pair.chunk_size = chunk;
        pair.write_limit = write;
        let mut sent_by_client = Vec::new();
        let mut sent_by_server = Vec::new();
        // A streamed message left open by `OpenFragment`, per side (client, server).
        let mut open: [Option<(MessageKind, Vec<u8>)>; 2] = [None, None];
        let idx = |r: &Role| usize::from(*r == Role::Server);
        for cmd in &cmds {
            let now = pair.now;
            match cmd {
                Cmd::Send(r, o) => {
                    let res = queue(conn(&mut pair, *r), now, o);
                    match res {
                        Ok(Some(m)) => {
                            // Fragments continue a message left open by `OpenFragment`.
                            let m = match (open[idx(r)].take(), &m) {
                                (Some((kind, mut pre)), Message::Text(_) | Message::Binary(_))
                                    if matches!(o, Out::Fragments(..)) =>
                                {
                                    pre.extend_from_slice(m.as_bytes());
                                    match kind {
                                        MessageKind::Text => Message::text(
                                            String::from_utf8(pre).expect("ascii + utf8"),
                                        ),
                                        MessageKind::Binary => Message::binary(pre),
                                    }
                                }
                                (other, _) => {
                                    open[idx(r)] = other;
                                    m
                                }
                            };
                            match r {
                                Role::Client => sent_by_client.push(m),
                                Role::Server => sent_by_server.push(m),
                            }
                        }
                        Ok(None) => {}
                        Err(Error::Closed | Error::Closing | Error::MessageInProgress) => {}
                        Err(e) => prop_assert!(false, "unexpected local error {:?}", e),
                    }
                }
                Cmd::SendHuge(r) => {
                    let res = conn(&mut pair, *r).send_binary(&[0u8; 9000]);
                    if let Ok(()) = res {
                        match r {
                            Role::Client => sent_by_client.push(Message::binary(vec![0u8; 9000])),
                            Role::Server => sent_by_server.push(Message::binary(vec![0u8; 9000])),
                        }
                    }
                }
                Cmd::OpenFragment(r, k, p) => {
                    if conn(&mut pair, *r).send_fragment(*k, p, false).is_ok() {
                        open[idx(r)].get_or_insert_with(|| (*k, Vec::new())).1.extend_from_slice(p);
                    }
                }
                Cmd::Close(r, code, reason) => {
                    let res = conn(&mut pair, *r).close(now, CloseCode::new(*code), reason);
                    if !CloseCode::new(*code).is_sendable() {
                        prop_assert!(
                            matches!(res, Err(Error::InvalidCloseCode(_) | Error::Closed | Error::Closing)),
                            "close({}) gave {:?}", code, res
                        );
                    }
                }
                Cmd::Advance(ms) => pair.run_for(Duration::from_millis(*ms)),
                Cmd::Drive => pair.drive(),
                Cmd::Eof(r) => {
                    // The network drops the connection: this side reads EOF first, then the
                    // other one.
                    pair.client_transport_closed = true;
                    pair.server_transport_closed = true;
                    let other = match r {
                        Role::Client => Role::Server,
                        Role::Server => Role::Client,
                    };
                    conn(&mut pair, *r).receive_eof(now);
                    pair.drive();
                    conn(&mut pair, other).receive_eof(now);
                    pair.drive();
                }
            }
        }
        pair.drive();
        check_side("client", &pair.client_events)?;
        check_side("server", &pair.server_events)?;
        // Received messages are a prefix of what the peer sent (a too-large one fails the
        // receiver instead of being delivered).
        let got = received(&pair.server_events);
        prop_assert!(sent_by_client.starts_with(&got), "server got {:?}", got);
        let got = received(&pair.client_events);
        prop_assert!(sent_by_server.starts_with(&got), "client got {:?}", got);
        // Let every handshake and timer run out.
        pair.run_for(Duration::from_secs(120));
        check_side("client", &pair.client_events)?;
        check_side("server", &pair.server_events)?;
        let closed = (pair.client.is_closed(), pair.server.is_closed());
        prop_assert!(
            closed.0 == closed.1,
            "one side open, the other closed: {:?}\nclient {:?}\nserver {:?}",
            closed, pair.client_events, pair.server_events
        );
        for r in [Role::Client, Role::Server] {
            let c = conn(&mut pair, r);
            if c.is_closed() {
                prop_assert_eq!(c.poll_event(), None);
            }
        }
    }
}
