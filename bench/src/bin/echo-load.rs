//! WebSocket echo load generator, for `scripts/bench-echo.sh`.
//!
//! ```text
//! echo-load --addr 127.0.0.1:PORT --conns N --inflight K --size BYTES --kind text|binary
//!           --secs S [--warmup-secs W] [--server-pid PID] [--payload pattern|json]
//!           [--deflate | --deflate-no-context]
//! ```
//!
//! One tokio current-thread runtime, one task per connection. Each connection keeps exactly K
//! messages in flight: it sends K, then one more per echo received. Every echo is checked for its
//! opcode and length, the first one of each connection for its exact payload. Round trips completed
//! between the end of the warmup and the end of the run are counted, and one line of JSON is
//! printed: `msgs_per_sec`, `mib_per_sec` (payload bytes one way), the parameters, and the CPU
//! time over the measured window, in cores, of the generator (`load_cpu`), of the whole machine
//! (`machine_cpu`) and, with `--server-pid`, of the server (`server_cpu`) and of everything else
//! (`other_cpu`: work that competed with the measurement). A server near 1.0 is what a valid
//! measurement of a server pinned to one core looks like. It also reports the bytes actually
//! written to and read from the sockets over the window, per round trip (`wire_out_per_msg`,
//! client to server, and `wire_in_per_msg`, server to client: frame headers, masking keys and
//! compressed payloads included, TCP/IP headers not).
//!
//! Payloads (`--payload`): `pattern` (the default) is one message of ASCII bytes, sent again and
//! again; `json` is a cycle of distinct JSON-like texts of exactly `--size` bytes each (an object
//! with an array of small event records: increasing ids, user names, event types, timestamps,
//! amounts), [`JSON_POOL_BYTES`] of them in all, so that a compressor with context takeover (32 KiB
//! window) never finds the previous copy of a message in its window, only similar records.
//!
//! `--deflate` offers permessage-deflate (RFC 7692) with context takeover, `--deflate-no-context`
//! offers it with `server_no_context_takeover` and `client_no_context_takeover`; the run fails if
//! the server does not accept the offer as made.
//!
//! The client is the sans-IO `tidings-core` engine driven straight over a non-blocking
//! `TcpStream` (`try_read_buf` into the engine's input buffer, `try_write_vectored` of the queued
//! frames), so one wakeup costs one read and one write whatever the number of echoes it carries:
//! the server under test, not the generator, should be the bottleneck. Each connection's messages
//! are encoded (masked and, with deflate, compressed) once, in order, by its own engine, and the
//! frames are written again and again in the same cyclic order (see [`encode_frames`]).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidings_bench::procfs::{cpu_seconds, machine_cpu_seconds};
use tidings_core::ext::deflate::DeflateConfig;
use tidings_core::ext::{ExtensionConfig, negotiate_client};
use tidings_core::handshake::{
    self, ClientRequest, Limits, Status, generate_key, render_extensions,
};
use tidings_core::{Config, Connection, Event, Message, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Round trips completed by all connections (the runtime is single-threaded: never contended).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
/// Set once the measurement is over: connection errors after that are not failures.
static DONE: AtomicBool = AtomicBool::new(false);
/// Bytes written to all sockets (client to server), handshakes included.
static WIRE_OUT: AtomicU64 = AtomicU64::new(0);
/// Bytes read from all sockets (server to client), handshakes included.
static WIRE_IN: AtomicU64 = AtomicU64::new(0);

/// Distinct payload bytes of `--payload json`: four times the largest DEFLATE window, so a copy of
/// a message is always far out of the window when it comes round again.
const JSON_POOL_BYTES: usize = 128 * 1024;

/// Bytes reserved in the input buffer before each read.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Clone, Debug)]
struct Args {
    addr: SocketAddr,
    conns: usize,
    inflight: usize,
    size: usize,
    kind: MessageKind,
    secs: f64,
    warmup_secs: f64,
    server_pid: Option<u32>,
    payload: PayloadKind,
    deflate: Deflate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PayloadKind {
    /// One message of ASCII bytes, repeated.
    Pattern,
    /// A cycle of distinct JSON-like texts.
    Json,
}

/// Whether and how permessage-deflate is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deflate {
    Off,
    /// Context takeover both ways (`DeflateConfig::new()`).
    Context,
    /// No context takeover either way (`DeflateConfig::no_context_takeover()`).
    NoContext,
}

impl Deflate {
    fn config(self) -> Option<DeflateConfig> {
        match self {
            Deflate::Off => None,
            Deflate::Context => Some(DeflateConfig::new()),
            Deflate::NoContext => Some(DeflateConfig::no_context_takeover()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Deflate::Off => "off",
            Deflate::Context => "context",
            Deflate::NoContext => "no-context",
        }
    }
}

const USAGE: &str = "usage: echo-load --addr HOST:PORT --conns N --inflight K --size BYTES \
                     --kind text|binary --secs S [--warmup-secs W] [--server-pid PID] \
                     [--payload pattern|json] [--deflate | --deflate-no-context]";

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut conns = None;
    let mut inflight = None;
    let mut size = None;
    let mut kind = None;
    let mut secs = None;
    let mut warmup_secs = 1.0;
    let mut server_pid = None;
    let mut payload = PayloadKind::Pattern;
    let mut deflate = Deflate::Off;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let switch = match flag.as_str() {
            "--deflate" => Some(Deflate::Context),
            "--deflate-no-context" => Some(Deflate::NoContext),
            _ => None,
        };
        if let Some(mode) = switch {
            if deflate != Deflate::Off && deflate != mode {
                return Err("--deflate and --deflate-no-context exclude each other".into());
            }
            deflate = mode;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--conns" => conns = Some(value.parse().map_err(|e| bad(&e))?),
            "--inflight" => inflight = Some(value.parse().map_err(|e| bad(&e))?),
            "--size" => size = Some(value.parse().map_err(|e| bad(&e))?),
            "--kind" => {
                kind = Some(match value.as_str() {
                    "text" => MessageKind::Text,
                    "binary" => MessageKind::Binary,
                    _ => return Err(bad(&"expected text or binary")),
                })
            }
            "--secs" => secs = Some(value.parse().map_err(|e| bad(&e))?),
            "--warmup-secs" => warmup_secs = value.parse().map_err(|e| bad(&e))?,
            "--server-pid" => server_pid = Some(value.parse().map_err(|e| bad(&e))?),
            "--payload" => {
                payload = match value.as_str() {
                    "pattern" => PayloadKind::Pattern,
                    "json" => PayloadKind::Json,
                    _ => return Err(bad(&"expected pattern or json")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let missing = |name: &str| format!("{name} is required");
    let args = Args {
        addr: addr.ok_or_else(|| missing("--addr"))?,
        conns: conns.ok_or_else(|| missing("--conns"))?,
        inflight: inflight.ok_or_else(|| missing("--inflight"))?,
        size: size.ok_or_else(|| missing("--size"))?,
        kind: kind.ok_or_else(|| missing("--kind"))?,
        secs: secs.ok_or_else(|| missing("--secs"))?,
        warmup_secs,
        server_pid,
        payload,
        deflate,
    };
    if args.conns == 0 || args.inflight == 0 {
        return Err("--conns and --inflight must be at least 1".into());
    }
    if !(args.secs > 0.0 && args.warmup_secs >= 0.0) {
        return Err("--secs must be positive and --warmup-secs not negative".into());
    }
    if args.payload == PayloadKind::Json && args.size < JSON_MIN_SIZE {
        return Err(format!(
            "--payload json needs --size {JSON_MIN_SIZE} or more"
        ));
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let measured = rt.block_on(run(&args));
    let mib_per_sec = measured.msgs_per_sec * args.size as f64 / (1024.0 * 1024.0);
    let kind = match args.kind {
        MessageKind::Text => "text",
        MessageKind::Binary => "binary",
    };
    let mut cpu = format!(
        ",\"load_cpu\":{},\"machine_cpu\":{}",
        json_opt(measured.load_cpu),
        json_opt(measured.machine_cpu)
    );
    if args.server_pid.is_some() {
        let other = (|| {
            Some((measured.machine_cpu? - measured.load_cpu? - measured.server_cpu?).max(0.0))
        })();
        cpu += &format!(
            ",\"server_cpu\":{},\"other_cpu\":{}",
            json_opt(measured.server_cpu),
            json_opt(other)
        );
    }
    let payload = match args.payload {
        PayloadKind::Pattern => "pattern",
        PayloadKind::Json => "json",
    };
    println!(
        "{{\"msgs_per_sec\":{:.1},\"mib_per_sec\":{mib_per_sec:.3},\"conns\":{},\
         \"inflight\":{},\"size\":{},\"kind\":\"{kind}\",\"payload\":\"{payload}\",\
         \"deflate\":\"{}\",\"wire_out_per_msg\":{},\"wire_in_per_msg\":{}{cpu}}}",
        measured.msgs_per_sec,
        args.conns,
        args.inflight,
        args.size,
        args.deflate.name(),
        json_opt(measured.wire_out_per_msg),
        json_opt(measured.wire_in_per_msg),
    );
    // Leave without tearing the connections down one by one: the server is killed next anyway.
    std::process::exit(0)
}

fn json_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |v| format!("{v:.3}"))
}

/// The outcome of the measured window.
struct Measured {
    msgs_per_sec: f64,
    /// Bytes written to the sockets over the window, per round trip (`None` without round trips).
    wire_out_per_msg: Option<f64>,
    /// Bytes read from the sockets over the window, per round trip.
    wire_in_per_msg: Option<f64>,
    /// CPU time of this process over the window, in cores (1.0 = one core busy all the time).
    load_cpu: Option<f64>,
    /// The same for `--server-pid`.
    server_cpu: Option<f64>,
    /// CPU time of the whole machine over the window (all processes, interrupts and time stolen
    /// by the hypervisor), in cores: what exceeds `load_cpu + server_cpu` is other work that
    /// competed with the measurement.
    machine_cpu: Option<f64>,
}

/// Starts the connections, waits out the warmup, measures.
async fn run(args: &Args) -> Measured {
    let payloads: Vec<Vec<u8>> = match args.payload {
        PayloadKind::Pattern => vec![make_payload(args.size)],
        PayloadKind::Json => make_json_payloads(args.size, JSON_POOL_BYTES.div_ceil(args.size)),
    };
    let payloads: &'static [Vec<u8>] = Box::leak(payloads.into_boxed_slice());
    for i in 0..args.conns {
        let args = args.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&args, payloads).await
                && !DONE.load(Ordering::Relaxed)
            {
                eprintln!("echo-load: connection {i} to {}: {e}", args.addr);
                std::process::exit(1);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup_secs)).await;
    let sample = || {
        (
            Instant::now(),
            ROUND_TRIPS.load(Ordering::Relaxed),
            cpu_seconds(None),
            args.server_pid.and_then(|pid| cpu_seconds(Some(pid))),
            machine_cpu_seconds(),
            WIRE_OUT.load(Ordering::Relaxed),
            WIRE_IN.load(Ordering::Relaxed),
        )
    };
    let (start, before, load0, server0, machine0, out0, in0) = sample();
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    let (end, after, load1, server1, machine1, out1, in1) = sample();
    DONE.store(true, Ordering::Relaxed);
    let elapsed = (end - start).as_secs_f64();
    let share = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / elapsed);
    let msgs = after - before;
    let per_msg = |bytes: u64| (msgs > 0).then(|| bytes as f64 / msgs as f64);
    Measured {
        msgs_per_sec: msgs as f64 / elapsed,
        wire_out_per_msg: per_msg(out1 - out0),
        wire_in_per_msg: per_msg(in1 - in0),
        load_cpu: share(load0, load1),
        server_cpu: share(server0, server1),
        machine_cpu: share(machine0, machine1),
    }
}

/// ASCII bytes (valid as text and as binary) that are not all alike, so a corrupted echo shows.
fn make_payload(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    (0..size)
        .map(|i| ALPHABET[(i * 7 + i / 64) % ALPHABET.len()])
        .collect()
}

/// Smallest `--size` for `--payload json`: room for the envelope and a short note.
const JSON_MIN_SIZE: usize = 64;

/// `count` distinct JSON-like texts of exactly `size` bytes each, the kind of message a feed or an
/// API pushes: `{"seq":N,"events":[record,...],"note":"..."}`, with as many event records as fit
/// and a note of words filling the rest. Records carry increasing ids and timestamps, and user
/// names, event types, amounts and flags drawn from a fixed seed: keys and vocabulary repeat, as in
/// real JSON, values mostly do not.
fn make_json_payloads(size: usize, count: usize) -> Vec<Vec<u8>> {
    const CLOSE: &str = "],\"note\":\"\"}";
    let mut rng = Rng(0x7469_6469_6e67_7321);
    let mut id: u64 = 4_812_000;
    let mut ts_ms: u64 = 1_795_000_000_000; // 2026-11-18
    (0..count)
        .map(|seq| {
            let mut s = format!("{{\"seq\":{seq},\"events\":[");
            let mut records = 0;
            loop {
                id += 1 + rng.below(3);
                ts_ms += 1 + rng.below(2500);
                let record = json_record(&mut rng, id, ts_ms);
                let sep = usize::from(records > 0);
                if s.len() + sep + record.len() + CLOSE.len() > size {
                    break;
                }
                if sep == 1 {
                    s.push(',');
                }
                s.push_str(&record);
                records += 1;
            }
            s.push_str("],\"note\":\"");
            let room = size.saturating_sub(s.len() + 2);
            s.push_str(&filler(&mut rng, room));
            s.push_str("\"}");
            debug_assert_eq!(s.len(), size);
            s.into_bytes()
        })
        .collect()
}

fn json_record(rng: &mut Rng, id: u64, ts_ms: u64) -> String {
    const FIRST: &[&str] = &[
        "alice", "bruno", "chloe", "dmitri", "emma", "farid", "grace", "hiro", "ines", "jonas",
        "kemal", "lea", "mateo", "nora", "oskar", "priya",
    ];
    const LAST: &[&str] = &[
        "moreau", "schmidt", "tanaka", "okafor", "silva", "nguyen", "larsen", "rossi", "kowalski",
        "haddad", "novak", "fischer", "ito", "mendes", "byrne", "weber",
    ];
    const EVENTS: &[&str] = &[
        "order.created",
        "order.paid",
        "order.shipped",
        "cart.updated",
        "session.started",
        "payment.failed",
        "refund.issued",
        "profile.updated",
    ];
    const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "JPY"];
    const REGIONS: &[&str] = &["eu-west-1", "eu-central-1", "us-east-1", "ap-northeast-1"];
    let user = format!("{}.{}", rng.pick(FIRST), rng.pick(LAST));
    let event = rng.pick(EVENTS);
    let cents = 100 + rng.below(250_000);
    let mut record = format!(
        "{{\"id\":{id},\"ts\":\"{}\",\"user\":\"{user}\",\"event\":\"{event}\",\
         \"amount\":{}.{:02},\"currency\":\"{}\",\"items\":{},\"region\":\"{}\",\"ok\":{}",
        iso8601(ts_ms),
        cents / 100,
        cents % 100,
        rng.pick(CURRENCIES),
        1 + rng.below(12),
        rng.pick(REGIONS),
        rng.below(10) != 0,
    );
    if rng.below(3) == 0 {
        record += &format!(",\"ref\":\"{:08x}\"", rng.next() as u32);
    }
    record.push('}');
    record
}

/// `len` bytes of words from a small vocabulary, separated by spaces.
fn filler(rng: &mut Rng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "delivery",
        "window",
        "confirmed",
        "by",
        "the",
        "warehouse",
        "customer",
        "requested",
        "invoice",
        "pending",
        "review",
        "next",
        "batch",
        "priority",
        "standard",
        "express",
        "note",
        "retry",
        "after",
        "timeout",
    ];
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s.truncate(len);
    s
}

/// `2026-11-18T08:53:20.123Z` for milliseconds since the Unix epoch.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ms % 1000
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// SplitMix64: a fixed seed makes every run send the same texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Opens the WebSocket and runs the echo loop until the process exits.
async fn connection(args: &Args, payloads: &'static [Vec<u8>]) -> io::Result<()> {
    let (stream, mut conn) = connect(args.addr, args.deflate).await?;
    let frames = encode_frames(&mut conn, args.kind, payloads)?;
    let largest = frames.iter().map(Vec::len).max().unwrap_or(0);
    // Room for a few whole messages plus one read: reclaiming it moves a partial frame seldom.
    conn.input_buffer().reserve(4 * largest + 2 * READ_CHUNK);
    let mut out = Outgoing {
        frames: &frames,
        next: 0,
        pending: args.inflight,
        offset: 0,
    };
    // Echoes received so far: the next one echoes payloads[echoed % payloads.len()].
    let mut echoed = 0;
    loop {
        // Write everything queued (normally in one vectored write), then wait for input, or for
        // room to write if the socket is full; reading never waits on writing, so large messages
        // in flight both ways cannot deadlock.
        out.flush(&stream, &mut conn)?;
        let interest = if out.pending > 0 || conn.queued_bytes() > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = stream.ready(interest).await?;
        if !ready.is_readable() && !ready.is_read_closed() {
            continue;
        }
        let buf = conn.input_buffer();
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        let room = buf.capacity() - buf.len();
        match stream.try_read_buf(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                WIRE_IN.fetch_add(n as u64, Ordering::Relaxed);
                conn.received(Instant::now());
                if n < room {
                    // A short read drained the socket: forget its readiness now rather than
                    // learn it from one more read failing with WouldBlock. (Readiness that a
                    // later arrival sets is not lost: tokio only clears the event it returned.)
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        let mut echoes = 0;
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(msg) => {
                    check_echo(&msg, args.kind, payloads, echoed)?;
                    echoed += 1;
                    echoes += 1;
                }
                Event::Ping(_) | Event::Pong(_) => {}
                other => return Err(invalid(format!("unexpected event {other:?}"))),
            }
        }
        out.pending += echoes;
        ROUND_TRIPS.fetch_add(echoes as u64, Ordering::Relaxed);
    }
}

/// The connection's messages as its engine encodes them, one frame per payload, in order: masked
/// and, with deflate, compressed (messages below the extension's threshold are not). They are then
/// written again and again in the same cyclic order, without copying, masking or compressing them
/// each time.
///
/// This is sound with context takeover too: the first message was compressed with an empty window,
/// so no message refers back beyond the start of the cycle, and every time round the server's
/// decompressor holds the same preceding bytes at the same distances. (Each frame keeps its one
/// masking key for all its repetitions; a server cannot tell, and unmasks each frame all the same.)
fn encode_frames(
    conn: &mut Connection,
    kind: MessageKind,
    payloads: &[Vec<u8>],
) -> io::Result<Vec<Vec<u8>>> {
    payloads
        .iter()
        .map(|payload| {
            let sent = match kind {
                MessageKind::Text => {
                    let text = std::str::from_utf8(payload).map_err(|e| invalid(e.to_string()))?;
                    conn.send_text(text)
                }
                MessageKind::Binary => conn.send_binary(payload),
            };
            sent.map_err(|e| invalid(e.to_string()))?;
            let mut frame = Vec::with_capacity(conn.queued_bytes());
            conn.poll_transmit(&mut frame);
            Ok(frame)
        })
        .collect()
}

/// Messages waiting to be written: the next `pending` frames of the cycle `frames`, the first one,
/// `frames[next]`, from `offset` on.
struct Outgoing<'a> {
    frames: &'a [Vec<u8>],
    next: usize,
    pending: usize,
    offset: usize,
}

impl Outgoing<'_> {
    /// Writes what is queued until it is all written or the socket is full: the engine's own
    /// output first (a pong or close reply, not expected here), at a frame boundary, then the
    /// messages.
    fn flush(&mut self, stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
        loop {
            let mut slices = [IoSlice::new(&[]); 64];
            let from_conn = self.offset == 0 && conn.queued_bytes() > 0;
            let n = if from_conn {
                conn.transmit_slices(&mut slices)
            } else if self.pending > 0 {
                let n = self.pending.min(slices.len());
                let mut i = self.next;
                slices[0] = IoSlice::new(&self.frames[i][self.offset..]);
                for slice in &mut slices[1..n] {
                    i = if i + 1 == self.frames.len() { 0 } else { i + 1 };
                    *slice = IoSlice::new(&self.frames[i]);
                }
                n
            } else {
                return Ok(());
            };
            match stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    WIRE_OUT.fetch_add(written as u64, Ordering::Relaxed);
                    if from_conn {
                        conn.advance_transmit(written);
                    } else {
                        self.advance(written);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Accounts for `written` bytes of the pending frames.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let rest = self.frames[self.next].len() - self.offset;
            if written < rest {
                self.offset += written;
                return;
            }
            written -= rest;
            self.offset = 0;
            self.pending -= 1;
            self.next = if self.next + 1 == self.frames.len() {
                0
            } else {
                self.next + 1
            };
        }
    }
}

/// Checks echo number `n` of a connection (echoes come back in the order sent): its opcode and
/// length, and its exact payload the first time round the cycle.
fn check_echo(msg: &Message, kind: MessageKind, payloads: &[Vec<u8>], n: usize) -> io::Result<()> {
    if msg.kind() != kind {
        return Err(invalid(format!(
            "echo has kind {:?}, sent {kind:?}",
            msg.kind()
        )));
    }
    let sent = &payloads[n % payloads.len()];
    let got = msg.as_bytes();
    if got.len() != sent.len() {
        return Err(invalid(format!(
            "echo has {} bytes, sent {}",
            got.len(),
            sent.len()
        )));
    }
    if n < payloads.len() && got != &sent[..] {
        return Err(invalid("echo payload differs from the message sent".into()));
    }
    Ok(())
}

/// TCP connect and the client handshake, offering permessage-deflate as `deflate` says; returns
/// the stream and the open connection (with the negotiated extension installed), fed with any
/// bytes that followed the server's HTTP response. Fails if the server does not accept the offer.
async fn connect(addr: SocketAddr, deflate: Deflate) -> io::Result<(TcpStream, Connection)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let host = addr.to_string();
    let mut request = ClientRequest::new(&host, "/", generate_key())
        .map_err(|e| invalid(format!("handshake request: {e}")))?;
    let config = deflate.config();
    if let Some(config) = &config {
        request = request
            .extension_offer(&render_extensions(&config.offers()))
            .map_err(|e| invalid(format!("handshake request: {e}")))?;
    }
    let encoded = request.encode();
    stream.write_all(&encoded).await?;
    WIRE_OUT.fetch_add(encoded.len() as u64, Ordering::Relaxed);
    let limits = Limits::default();
    let mut head = Vec::with_capacity(1024);
    let (response, leftover) = loop {
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Err(invalid("connection closed during the handshake".into()));
        }
        WIRE_IN.fetch_add(n as u64, Ordering::Relaxed);
        match handshake::parse_response(&head, &request, &limits) {
            Ok(Status::Partial) => head.reserve(1024),
            Ok(Status::Complete((response, consumed))) => {
                break (response, head.split_off(consumed));
            }
            Err(e) => return Err(invalid(format!("handshake response: {e}"))),
        }
    };
    let mut conn = Connection::client(Config::default(), Instant::now());
    if let Some(config) = &config {
        let configs: [&dyn ExtensionConfig; 1] = [config];
        match negotiate_client(&configs, &response.extensions) {
            Ok(Some(extension)) => conn.set_extension(extension),
            Ok(None) => {
                return Err(invalid(format!(
                    "the server did not accept permessage-deflate (offered {:?}); \
                     --deflate needs a server with permessage-deflate",
                    request.extension_offers()
                )));
            }
            Err(e) => return Err(invalid(format!("permessage-deflate negotiation: {e}"))),
        }
    }
    conn.receive(Instant::now(), &leftover);
    Ok((stream, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_have_the_size_and_differ() {
        for size in [JSON_MIN_SIZE, 200, 1024, 4096] {
            let payloads = make_json_payloads(size, JSON_POOL_BYTES.div_ceil(size));
            assert!(payloads.len() * size >= JSON_POOL_BYTES);
            for (i, p) in payloads.iter().enumerate() {
                assert_eq!(p.len(), size);
                assert!(p.is_ascii());
                assert!(p.starts_with(format!("{{\"seq\":{i},\"events\":[").as_bytes()));
                assert!(p.ends_with(b"\"}"));
            }
            let distinct: std::collections::HashSet<_> = payloads.iter().collect();
            assert_eq!(distinct.len(), payloads.len());
        }
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
