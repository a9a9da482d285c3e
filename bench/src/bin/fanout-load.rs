//! WebSocket fan-out load generator, for `scripts/bench-fanout.sh` (and `bench-sse.sh`,
//! `bench-redis.sh`).
//!
//! ```text
//! fanout-load --addr HOST:PORT[,HOST:PORT...] --subs N --size BYTES --kind text|binary --secs S
//!             [--warmup-secs W] [--window K] [--server-pid PID[,PID...]] [--slow M]
//!             [--connect-concurrency C] [--sse] [--extra-pid PID[,PID...]]
//! ```
//!
//! Against a server that broadcasts every message it receives to every *other* client: connects N
//! subscribers (at most C handshakes at a time, default 100: below the listen backlog of 128 that
//! std and mio (so tokio) use, which more connections at once overflow, costing 1 s SYN
//! retransmissions), then one publisher, which sends
//! messages of exactly `--size` bytes; every subscriber receives every message. One line of JSON
//! reports the deliveries per second (messages received by subscribers), the publisher's messages
//! per second, the latency from the publisher's send to each delivery (p50, p99, p99.9, max), lost
//! messages, disconnected subscribers, the server's memory and the CPU use of the generator, the
//! server and the rest of the machine over the measured window.
//!
//! **Several nodes.** `--addr` takes a comma-separated list: the subscribers (and the slow
//! consumers) are spread over the addresses round-robin (subscriber `i` connects to address
//! `i % n`, so 1,000 over two nodes are 500 each), and the publisher connects to the first. For
//! servers that share one room across processes (`examples/hub_fanout_server.rs --redis URL`):
//! every subscriber still has to get every message. The subscribers are all connected (and 200
//! ms have passed) before the publisher connects, so a node that subscribes to the room's
//! channel when its first member joins has long done so; a node that had not would show as
//! `lost` messages at its subscribers. `nodes` in the report is the number of addresses.
//!
//! **Flow control.** A closed loop with a window of K messages (default 16): message `s + K` is
//! sent only once message `s` has reached every live subscriber. Each in-flight sequence number has
//! a counter of the subscribers that received it (a ring of K counters: the generator is one
//! current-thread runtime, so plain cells); when the oldest one reaches the number of live
//! subscribers it completes and the publisher may send one more. So at most K messages are in
//! flight, nothing is expected to be lost, and the rate is that of the slowest path through the
//! server. A subscriber that finds a gap in the sequence numbers counts the missing messages as
//! lost and accounts them as received, so losses do not stall the window; a subscriber the server
//! closes is counted as disconnected and leaves the set of live subscribers (its share of the
//! in-flight counters is taken back). If the oldest message does not complete for 5 s the run
//! stops and reports `stalled: true`.
//!
//! **Messages.** The first bytes of each message carry its sequence number and its send time
//! (nanoseconds since a process-wide origin): 8 + 8 bytes little-endian for `binary`, 16 + 16
//! lowercase hex digits for `text` (so text stays ASCII); the rest is an ASCII pattern. Every
//! delivery is checked for its opcode, its length and the continuity of the sequence numbers
//! (a duplicate or a message out of order fails the run). Latencies are recorded, during the
//! measured window only, in a log-bucketed histogram (exact below 256 ns, then 128 buckets per
//! power of two: under 0.4 % error).
//!
//! **Memory.** With `--server-pid` (a comma-separated list for several nodes: their figures are
//! summed, CPU as memory), the server's `VmRSS` is read before the subscribers connect,
//! after they all have (and 200 ms of settling), and at the end: `rss_per_sub_bytes` is the
//! growth over the connections divided by N. During the run it is sampled every 500 ms from the
//! publisher's start (`rss_series_kb`), and at the start and end of the measured window
//! (`rss_growth_kb` is end minus start).
//!
//! **Other processes of the system under test.** `--extra-pid` (a comma-separated list) names
//! processes, such as the Redis server between the nodes, whose CPU use over the measured window
//! is reported as `extra_cpu` (cores, summed) and not counted in `other_cpu`. It is read from the
//! threads' `schedstat` (nanoseconds on a CPU) rather than `utime + stime` (10 ms ticks): a
//! process that uses a few milliseconds per second is measured to better than a tick.
//!
//! **Slow consumers.** `--slow M` connects M more subscribers (after the others, before the
//! publisher) with a 4 KiB receive buffer; they complete the handshake and then never read, so
//! the server's side of them fills up. They are outside the flow-control window. After the
//! measured window they are read out: `slow_disconnected` counts those the server had closed
//! (a close frame, end of stream or a reset), `slow_received` the messages they got in all, to
//! compare with `sent_total`, the messages the publisher sent over the whole run. (The server's
//! socket send buffer, up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default, takes in what a
//! slow consumer does not read before the server itself has to hold anything: at a few tens of
//! KiB per second, as with 64 B messages to 1,000 subscribers, that takes minutes.)
//!
//! **Server-Sent Events.** With `--sse` (and `--kind text`, no `--slow`), the N subscribers are
//! SSE clients instead: each sends `GET /events HTTP/1.1` over a raw TCP connection, checks the
//! `200` and `text/event-stream` head, and decodes the body incrementally as it arrives — the
//! HTTP/1.1 chunked transfer coding (or none) and the event lines, `data:` fields collected, the
//! `id:` and other fields and comments skipped, an empty line delivering the event — into
//! nothing but a partial line and the current event's data. Each event's data is checked and
//! timed as a WebSocket text message is. The publisher is still a WebSocket client; the server
//! must send what its WebSocket clients send to its SSE subscribers (examples/hub_fanout_server.rs
//! does, for a room of both). The report has the same fields, and `mode` says which it was.
//!
//! The client is the sans-IO `tidings-core` engine over non-blocking tokio `TcpStream`s, on one
//! current-thread runtime (one core): each subscriber wakeup is one `try_read_buf` into the
//! engine's input buffer, sized to hold the whole window, and every frame in it is decoded.
//! Everything is bounded: a hard timeout for the whole run, a budget for the connections, the
//! stall detection. The exit code is 0 for a complete run, 1 for a failed one (the JSON line
//! still says what happened: `ok`, `error`, `stalled`), 2 for bad arguments.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tidings_bench::procfs::{cpu_seconds, machine_cpu_seconds, open_files_limit, rss_kb};
use tidings_core::handshake::{self, ClientRequest, Limits, Status, generate_key};
use tidings_core::{Config, Connection, Event, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

/// No progress of the oldest in-flight message for this long: the run has stalled.
const STALL_AFTER: Duration = Duration::from_secs(5);
/// Budget for connecting all the subscribers.
const CONNECT_PHASE: Duration = Duration::from_secs(120);
/// Budget for one connection (TCP connect and handshake).
const CONNECT_ONE: Duration = Duration::from_secs(15);
/// Pause between the last handshake and the memory reading, so the server is done registering.
const SETTLE: Duration = Duration::from_millis(200);
/// Interval of the server memory samples.
const RSS_EVERY: Duration = Duration::from_millis(500);
/// Receive buffer of the slow consumers (`SO_RCVBUF`; Linux doubles it for its bookkeeping).
const SLOW_RCVBUF: u32 = 4096;
/// Time allowed for reading out the slow consumers at the end, all of them together.
const SLOW_DRAIN: Duration = Duration::from_secs(5);
/// A slow consumer with nothing to read for this long (and no end of stream) is still open.
const SLOW_IDLE: Duration = Duration::from_millis(300);
/// The hard limit on a run is the warmup and the measurement plus this much.
const HARD_TIMEOUT_SLACK: Duration = Duration::from_secs(180);
/// How many disconnections are described on stderr (the rest are only counted).
const DISCONNECTS_LOGGED: u64 = 5;
/// Bytes of sequence number and timestamp at the start of each message, per kind.
const HEADER_BINARY: usize = 16;
const HEADER_TEXT: usize = 32;
/// The path of the Server-Sent Events subscribers (`--sse`).
const SSE_PATH: &str = "/events";
/// Bytes an SSE event takes beyond its data, at most: `id: ` with up to 20 digits and LF, `data: `
/// and LF, the empty line, and the chunk's size line and CRLF.
const SSE_OVERHEAD: usize = 64;

/// The process-wide origin of the timestamps carried by messages.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds from [`ORIGIN`] to `t`.
fn nanos(t: Instant) -> u64 {
    t.saturating_duration_since(*ORIGIN.get_or_init(Instant::now))
        .as_nanos() as u64
}

#[derive(Clone, Debug)]
struct Args {
    /// The servers' addresses: subscribers round-robin, the publisher on the first.
    addrs: Vec<SocketAddr>,
    subs: usize,
    size: usize,
    kind: MessageKind,
    secs: f64,
    warmup_secs: f64,
    window: usize,
    /// The server processes (several nodes: summed).
    server_pids: Vec<u32>,
    /// Other processes whose CPU is reported apart (`extra_cpu`).
    extra_pids: Vec<u32>,
    slow: usize,
    connect_concurrency: usize,
    /// Subscribers are Server-Sent Events clients of [`SSE_PATH`] instead of WebSockets.
    sse: bool,
}

const USAGE: &str = "usage: fanout-load --addr HOST:PORT[,HOST:PORT...] --subs N --size BYTES \
                     --kind text|binary --secs S [--warmup-secs W] [--window K] \
                     [--server-pid PID[,PID...]] [--slow N] [--connect-concurrency C] [--sse] \
                     [--extra-pid PID[,PID...]]";

/// A comma-separated list of at least one value.
fn parse_list<T: std::str::FromStr>(value: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    value
        .split(',')
        .map(|v| v.trim().parse().map_err(|e: T::Err| format!("{v:?}: {e}")))
        .collect()
}

/// CPU time a process has used so far, in seconds, to the nanosecond: the sum over its threads
/// of their time on a CPU (the first field of `/proc/PID/task/TID/schedstat`), so that a process
/// using little CPU, such as Redis between the nodes, is measured over a few seconds without the
/// 10 ms ticks of `utime + stime`; those where schedstat is missing.
fn cpu_seconds_fine(pid: u32) -> Option<f64> {
    let fine = (|| {
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    })();
    fine.or_else(|| cpu_seconds(Some(pid)))
}

/// The sum of `read` over `pids`; `None` if there are none or one is unreadable.
fn sum_over<T: std::iter::Sum<T>>(pids: &[u32], read: impl Fn(u32) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| read(pid)).sum()
}

fn parse_args() -> Result<Args, String> {
    let mut addrs = None;
    let mut subs = None;
    let mut size = None;
    let mut kind = None;
    let mut secs = None;
    let mut warmup_secs = 1.0;
    let mut window = 16;
    let mut server_pids = Vec::new();
    let mut extra_pids = Vec::new();
    let mut slow = 0;
    let mut connect_concurrency = 100;
    let mut sse = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--sse" {
            sse = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--addr" => addrs = Some(parse_list(&value).map_err(|e| bad(&e))?),
            "--subs" => subs = Some(value.parse().map_err(|e| bad(&e))?),
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
            "--window" => window = value.parse().map_err(|e| bad(&e))?,
            "--server-pid" => server_pids = parse_list(&value).map_err(|e| bad(&e))?,
            "--extra-pid" => extra_pids = parse_list(&value).map_err(|e| bad(&e))?,
            "--slow" => slow = value.parse().map_err(|e| bad(&e))?,
            "--connect-concurrency" => connect_concurrency = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let missing = |name: &str| format!("{name} is required");
    let args = Args {
        addrs: addrs.ok_or_else(|| missing("--addr"))?,
        subs: subs.ok_or_else(|| missing("--subs"))?,
        size: size.ok_or_else(|| missing("--size"))?,
        kind: kind.ok_or_else(|| missing("--kind"))?,
        secs: secs.ok_or_else(|| missing("--secs"))?,
        warmup_secs,
        window,
        server_pids,
        extra_pids,
        slow,
        connect_concurrency,
        sse,
    };
    if args.subs == 0 || args.window == 0 || args.connect_concurrency == 0 {
        return Err("--subs, --window and --connect-concurrency must be at least 1".into());
    }
    if !(args.secs > 0.0 && args.warmup_secs >= 0.0 && args.secs + args.warmup_secs < 86_400.0) {
        return Err("--secs must be positive and --warmup-secs not negative".into());
    }
    let header = header_len(args.kind);
    if args.size < header {
        return Err(format!(
            "--size must be at least {header} for --kind {} (sequence number and timestamp)",
            kind_name(args.kind)
        ));
    }
    if args.sse && (args.kind != MessageKind::Text || args.slow > 0) {
        return Err(
            "--sse needs --kind text (binary messages do not go over Server-Sent \
                    Events) and no --slow"
                .into(),
        );
    }
    Ok(args)
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Binary => "binary",
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    ORIGIN.get_or_init(Instant::now);
    let mut report = Report::default();
    // Every connection is a file descriptor here and in the server: fail early and clearly.
    let needed = (args.subs + args.slow + 64) as u64;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        report.error = Some(format!(
            "{} connections need about {needed} file descriptors; the limit is {limit}: \
             raise it (ulimit -n) before running",
            args.subs + args.slow
        ));
        println!("{}", report.json(&args));
        return ExitCode::FAILURE;
    }
    spawn_watchdog(&args);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanout-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(&args, &mut report));
    println!("{}", report.json(&args));
    if let Some(e) = &report.error {
        eprintln!("fanout-load: {e}");
    }
    // Leave without tearing the connections down one by one: the server is killed next anyway.
    std::process::exit(if report.ok() { 0 } else { 1 })
}

/// A thread that ends the process if the run overruns its bounds by far, whatever the runtime
/// is doing.
fn spawn_watchdog(args: &Args) {
    let limit =
        CONNECT_PHASE + Duration::from_secs_f64(args.warmup_secs + args.secs) + HARD_TIMEOUT_SLACK;
    let args = args.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let report = Report {
            error: Some(format!("hard timeout: the run took more than {limit:?}")),
            ..Report::default()
        };
        println!("{}", report.json(&args));
        eprintln!("fanout-load: hard timeout after {limit:?}");
        std::process::exit(1);
    });
}

/// What a run found; `None` where it was not measured (or the run ended before).
#[derive(Default)]
struct Report {
    error: Option<String>,
    stalled: bool,
    deliveries_per_sec: Option<f64>,
    msgs_per_sec: Option<f64>,
    /// Latency percentiles and maximum, in microseconds, and the number of samples.
    latency: Option<[f64; 4]>,
    latency_samples: u64,
    lost: u64,
    disconnected: u64,
    slow_disconnected: Option<usize>,
    /// Messages the slow consumers received in all (read out at the end).
    slow_received: Option<u64>,
    /// Messages the publisher sent over the whole run.
    sent_total: u64,
    connect_secs: Option<f64>,
    rss_before_kb: Option<u64>,
    rss_after_connect_kb: Option<u64>,
    rss_end_kb: Option<u64>,
    rss_series_kb: Vec<u64>,
    rss_window_kb: Option<(u64, u64)>,
    load_cpu: Option<f64>,
    server_cpu: Option<f64>,
    /// CPU of the `--extra-pid` processes.
    extra_cpu: Option<f64>,
    machine_cpu: Option<f64>,
}

impl Report {
    fn ok(&self) -> bool {
        self.error.is_none() && !self.stalled
    }

    fn json(&self, args: &Args) -> String {
        let f = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "null".into(), |v| format!("{v:.digits$}"))
        };
        let u = |v: Option<u64>| v.map_or_else(|| "null".into(), |v| v.to_string());
        let rss_per_sub = (|| {
            let grown = self.rss_after_connect_kb? as f64 - self.rss_before_kb? as f64;
            Some(grown * 1024.0 / args.subs as f64)
        })();
        let rss_max = self
            .rss_series_kb
            .iter()
            .copied()
            .chain(self.rss_window_kb.map(|(a, b)| a.max(b)))
            .max();
        let growth = self.rss_window_kb.map(|(a, b)| b as i64 - a as i64);
        let other = (|| {
            let extra = self.extra_cpu.unwrap_or(0.0);
            Some((self.machine_cpu? - self.load_cpu? - self.server_cpu? - extra).max(0.0))
        })();
        let latency = |i: usize| f(self.latency.map(|l| l[i]), 1);
        let error = self.error.as_ref().map_or_else(
            || "null".into(),
            |e| format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
        );
        let series = self
            .rss_series_kb
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{{\"ok\":{},\"error\":{error},\"stalled\":{},\"deliveries_per_sec\":{},\
             \"msgs_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\
             \"latency_samples\":{},\"lost\":{},\"disconnected\":{},\"subs\":{},\"slow\":{},\
             \"slow_disconnected\":{},\"slow_received\":{},\"sent_total\":{},\"size\":{},\"kind\":\"{}\",\"mode\":\"{}\",\"window\":{},\
             \"connect_secs\":{},\"rss_before_kb\":{},\"rss_after_connect_kb\":{},\
             \"rss_end_kb\":{},\"rss_per_sub_bytes\":{},\"rss_series_kb\":[{series}],\
             \"rss_max_kb\":{},\"rss_growth_kb\":{},\"load_cpu\":{},\"machine_cpu\":{},\
             \"server_cpu\":{},\"other_cpu\":{},\"extra_cpu\":{},\"nodes\":{}}}",
            self.ok(),
            self.stalled,
            f(self.deliveries_per_sec, 1),
            f(self.msgs_per_sec, 1),
            latency(0),
            latency(1),
            latency(2),
            latency(3),
            self.latency_samples,
            self.lost,
            self.disconnected,
            args.subs,
            args.slow,
            u(self.slow_disconnected.map(|n| n as u64)),
            u(self.slow_received),
            self.sent_total,
            args.size,
            kind_name(args.kind),
            if args.sse { "sse" } else { "websocket" },
            args.window,
            f(self.connect_secs, 3),
            u(self.rss_before_kb),
            u(self.rss_after_connect_kb),
            u(self.rss_end_kb),
            f(rss_per_sub, 0),
            u(rss_max),
            growth.map_or_else(|| "null".into(), |g| g.to_string()),
            f(self.load_cpu, 3),
            f(self.machine_cpu, 3),
            f(self.server_cpu, 3),
            f(other, 3),
            f(self.extra_cpu, 3),
            args.addrs.len(),
        )
    }
}

/// State shared by all the tasks of the (single-threaded) runtime.
struct Shared {
    kind: MessageKind,
    size: usize,
    window: u64,
    /// For each in-flight sequence number `s`, at `s % window`: how many live subscribers have
    /// received it (or know they lost it).
    counts: Vec<Cell<u32>>,
    /// Messages the publisher has queued: the next sequence number.
    sent: Cell<u64>,
    /// Messages every live subscriber has received: the oldest in-flight sequence number.
    acked: Cell<u64>,
    /// When `acked` last moved.
    last_progress: Cell<Instant>,
    /// Subscribers connected and not closed by the server (slow consumers excluded).
    live: Cell<u32>,
    /// Subscribers whose handshake completed.
    connected: Cell<usize>,
    deliveries: Cell<u64>,
    lost: Cell<u64>,
    disconnected: Cell<u64>,
    /// Latencies are recorded only while this is set.
    measuring: Cell<bool>,
    /// The measurement is over: the publisher stops, connection failures no longer matter.
    done: Cell<bool>,
    latencies: RefCell<Histogram>,
    /// The first failure of a task, which ends the run.
    error: RefCell<Option<String>>,
    /// The publisher's connection, once it is open. Messages are queued and written straight from
    /// [`advance`](Self::advance), by whichever subscriber completes a message, so the window
    /// refills without waiting for the publisher's task to be scheduled behind the subscribers'.
    publisher: RefCell<Option<Publisher>>,
    /// Wakes the publisher's task: its socket is full (it waits until it is writable), or the run
    /// is over.
    publisher_wake: Notify,
}

impl Shared {
    fn new(args: &Args) -> Self {
        Shared {
            kind: args.kind,
            size: args.size,
            window: args.window as u64,
            counts: (0..args.window).map(|_| Cell::new(0)).collect(),
            sent: Cell::new(0),
            acked: Cell::new(0),
            last_progress: Cell::new(Instant::now()),
            live: Cell::new(0),
            connected: Cell::new(0),
            deliveries: Cell::new(0),
            lost: Cell::new(0),
            disconnected: Cell::new(0),
            measuring: Cell::new(false),
            done: Cell::new(false),
            latencies: RefCell::new(Histogram::new()),
            error: RefCell::new(None),
            publisher: RefCell::new(None),
            publisher_wake: Notify::new(),
        }
    }

    /// Records the first failure (before the end of the measurement).
    fn fail(&self, error: String) {
        let mut slot = self.error.borrow_mut();
        if !self.done.get() && slot.is_none() {
            *slot = Some(error);
        }
    }

    fn slot(&self, seq: u64) -> &Cell<u32> {
        &self.counts[(seq % self.window) as usize]
    }

    /// Counts sequence number `seq` as received (or lost) by one more subscriber, if it is still
    /// in flight.
    fn account(&self, seq: u64) {
        if seq >= self.acked.get() {
            let slot = self.slot(seq);
            slot.set(slot.get() + 1);
        }
    }

    /// One message received by a subscriber that expects sequence number `*expected` next, read
    /// at `now_ns`.
    fn deliver(
        &self,
        expected: &mut u64,
        kind: MessageKind,
        payload: &[u8],
        now_ns: u64,
    ) -> Result<(), String> {
        if kind != self.kind {
            return Err(format!("received a {} message", kind_name(kind)));
        }
        if payload.len() != self.size {
            return Err(format!(
                "received {} bytes, expected {}",
                payload.len(),
                self.size
            ));
        }
        let (seq, stamp) =
            read_header(kind, payload).ok_or("malformed sequence number or timestamp")?;
        if seq < *expected {
            return Err(format!(
                "message {seq} after message {}: duplicated or out of order",
                *expected - 1
            ));
        }
        if seq >= self.sent.get() {
            return Err(format!("message {seq} was never sent"));
        }
        if seq > *expected {
            // Messages the server dropped for this subscriber: lost, and accounted for so that
            // the window moves on.
            self.lost.set(self.lost.get() + (seq - *expected));
            for s in (*expected).max(self.acked.get())..seq {
                self.account(s);
            }
        }
        self.account(seq);
        *expected = seq + 1;
        self.deliveries.set(self.deliveries.get() + 1);
        if self.measuring.get() {
            self.latencies
                .borrow_mut()
                .record(now_ns.saturating_sub(stamp));
        }
        Ok(())
    }

    /// Completes the oldest in-flight messages that every live subscriber has, and wakes the
    /// publisher if that opened the window.
    fn advance(&self) {
        let start = self.acked.get();
        let sent = self.sent.get();
        let live = self.live.get();
        let mut acked = start;
        while acked < sent {
            let slot = self.slot(acked);
            if slot.get() < live {
                break;
            }
            slot.set(0);
            acked += 1;
        }
        if acked != start {
            self.acked.set(acked);
            self.last_progress.set(Instant::now());
            self.publish();
        }
    }

    /// Queues the messages the window allows and writes what the socket takes; if the socket is
    /// full, the publisher's task waits until it is writable. Never waits itself.
    fn publish(&self) {
        if self.done.get() {
            return;
        }
        let mut slot = self.publisher.borrow_mut();
        let Some(publisher) = slot.as_mut() else {
            return;
        };
        let mut sent = self.sent.get();
        let queued = (|| {
            while sent < self.acked.get() + self.window {
                publisher.queue(self.kind, sent)?;
                sent += 1;
            }
            flush(&publisher.stream, &mut publisher.conn)
        })();
        self.sent.set(sent);
        let backlog = publisher.conn.queued_bytes() > 0;
        drop(slot);
        match queued {
            Err(e) => self.fail(format!("publisher: {e}")),
            Ok(()) if backlog => self.publisher_wake.notify_one(),
            Ok(()) => {}
        }
    }

    /// The server closed a subscriber that had received everything before `expected`: it leaves
    /// the live set, and its deliveries of the messages still in flight are taken back.
    fn disconnect(&self, index: usize, expected: u64, why: &str) {
        if self.done.get() {
            return;
        }
        let n = self.disconnected.get() + 1;
        self.disconnected.set(n);
        if n <= DISCONNECTS_LOGGED {
            eprintln!("fanout-load: subscriber {index} disconnected: {why}");
        }
        self.live.set(self.live.get() - 1);
        for s in self.acked.get()..expected {
            let slot = self.slot(s);
            slot.set(slot.get() - 1);
        }
        self.advance();
    }
}

/// How long the header of a message is.
fn header_len(kind: MessageKind) -> usize {
    match kind {
        MessageKind::Binary => HEADER_BINARY,
        MessageKind::Text => HEADER_TEXT,
    }
}

/// Writes the sequence number and the timestamp at the start of `payload`.
fn write_header(kind: MessageKind, payload: &mut [u8], seq: u64, stamp: u64) {
    match kind {
        MessageKind::Binary => {
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            payload[8..16].copy_from_slice(&stamp.to_le_bytes());
        }
        MessageKind::Text => {
            write_hex(&mut payload[..16], seq);
            write_hex(&mut payload[16..32], stamp);
        }
    }
}

/// The sequence number and the timestamp at the start of `payload`.
fn read_header(kind: MessageKind, payload: &[u8]) -> Option<(u64, u64)> {
    match kind {
        MessageKind::Binary => Some((
            u64::from_le_bytes(payload.get(..8)?.try_into().ok()?),
            u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?),
        )),
        MessageKind::Text => Some((
            read_hex(payload.get(..16)?)?,
            read_hex(payload.get(16..32)?)?,
        )),
    }
}

/// `v` as 16 lowercase hex digits.
fn write_hex(dst: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in dst.iter_mut().enumerate() {
        *d = DIGITS[(v >> (60 - 4 * i) & 0xf) as usize];
    }
}

fn read_hex(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

/// ASCII bytes (valid as text and as binary), the body of every message.
fn make_payload(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    (0..size)
        .map(|i| ALPHABET[(i * 7 + i / 64) % ALPHABET.len()])
        .collect()
}

/// Latencies in nanoseconds, log-bucketed: exact below 2^[`SUB_BITS`], then 2^(SUB_BITS - 1)
/// buckets per power of two, so a bucket is at most 1/128 of its values wide and its midpoint
/// within 0.4 % of any of them.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 8;

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; Self::index(u64::MAX) + 1],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 1 << SUB_BITS {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - (SUB_BITS - 1);
        ((shift as usize) << (SUB_BITS - 1)) + (v >> shift) as usize
    }

    /// The smallest value of bucket `index` and the bucket's width.
    fn bucket(index: usize) -> (u64, u64) {
        if index < 1 << SUB_BITS {
            return (index as u64, 1);
        }
        let shift = (index >> (SUB_BITS - 1)) - 1;
        let q = (index - (shift << (SUB_BITS - 1))) as u64;
        (q << shift, 1 << shift)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0 < q ≤ 1): the midpoint of its bucket, at most the maximum (the
    /// maximum itself for the last rank).
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return Some(self.max);
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = Self::bucket(i);
                return Some((low + width / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// The run: connections, warmup, measurement, slow consumers read out. Fills `report` as it goes,
/// so a failed run still reports what it got.
async fn run(args: &Args, report: &mut Report) {
    let shared = Rc::new(Shared::new(args));
    let server_rss = || sum_over(&args.server_pids, rss_kb);
    // Subscriber `i` (and slow consumer `i`) connects to address `i % n`; the publisher to the
    // first.
    let addr_of = |i: usize| args.addrs[i % args.addrs.len()];
    report.rss_before_kb = server_rss();

    // The subscribers, at most `connect_concurrency` handshakes at a time.
    let permits = Rc::new(Semaphore::new(args.connect_concurrency));
    let begin = Instant::now();
    for index in 0..args.subs {
        if args.sse {
            tokio::task::spawn_local(sse_subscriber(
                shared.clone(),
                permits.clone(),
                addr_of(index),
                index,
            ));
        } else {
            tokio::task::spawn_local(subscriber(
                shared.clone(),
                permits.clone(),
                addr_of(index),
                index,
            ));
        }
    }
    while shared.connected.get() < args.subs {
        let connected = shared.connected.get();
        if let Some(e) = shared.error.borrow().clone() {
            report.error = Some(format!(
                "could not connect all subscribers ({connected} of {}): {e}",
                args.subs
            ));
            return;
        }
        if begin.elapsed() > CONNECT_PHASE {
            report.error = Some(format!(
                "could not connect all subscribers: {connected} of {} after {CONNECT_PHASE:?}",
                args.subs
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_secs = begin.elapsed().as_secs_f64();
    report.connect_secs = Some(connect_secs);
    eprintln!(
        "fanout-load: {} subscribers connected in {connect_secs:.2} s",
        args.subs
    );
    tokio::time::sleep(SETTLE).await;
    report.rss_after_connect_kb = server_rss();

    // Slow consumers: handshake, then never read.
    let mut slow = Vec::with_capacity(args.slow);
    for i in 0..args.slow {
        match tokio::time::timeout(CONNECT_ONE, connect(addr_of(i), Some(SLOW_RCVBUF))).await {
            Ok(Ok(connection)) => slow.push(connection),
            Ok(Err(e)) => {
                report.error = Some(format!("slow consumer {i}: {e}"));
                return;
            }
            Err(_) => {
                report.error = Some(format!(
                    "slow consumer {i}: no handshake in {CONNECT_ONE:?}"
                ));
                return;
            }
        }
    }

    // The publisher, and the memory samples.
    let (stream, conn) = match tokio::time::timeout(CONNECT_ONE, connect(args.addrs[0], None)).await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            report.error = Some(format!("publisher: {e}"));
            return;
        }
        Err(_) => {
            report.error = Some(format!("publisher: no handshake in {CONNECT_ONE:?}"));
            return;
        }
    };
    let series = Rc::new(RefCell::new(Vec::new()));
    if !args.server_pids.is_empty() {
        tokio::task::spawn_local(sample_rss(
            shared.clone(),
            args.server_pids.clone(),
            series.clone(),
        ));
    }
    shared.last_progress.set(Instant::now());
    tokio::task::spawn_local(publisher(shared.clone(), stream, conn));

    let finish = |report: &mut Report, shared: &Shared| {
        shared.done.set(true);
        shared.measuring.set(false);
        shared.publisher_wake.notify_one();
        report.lost = shared.lost.get();
        report.sent_total = shared.sent.get();
        report.disconnected = shared.disconnected.get();
        report.rss_end_kb = server_rss();
        report.rss_series_kb = series.borrow().clone();
    };

    // Warmup, then the measured window.
    let mut result = watch(&shared, Duration::from_secs_f64(args.warmup_secs)).await;
    if result.is_ok() {
        let sample = || {
            (
                Instant::now(),
                shared.deliveries.get(),
                shared.sent.get(),
                cpu_seconds(None),
                sum_over(&args.server_pids, |pid| cpu_seconds(Some(pid))),
                sum_over(&args.extra_pids, cpu_seconds_fine),
                machine_cpu_seconds(),
                server_rss(),
            )
        };
        let (start, deliveries0, sent0, load0, server0, extra0, machine0, rss0) = sample();
        shared.measuring.set(true);
        result = watch(&shared, Duration::from_secs_f64(args.secs)).await;
        let (end, deliveries1, sent1, load1, server1, extra1, machine1, rss1) = sample();
        shared.measuring.set(false);
        let elapsed = (end - start).as_secs_f64();
        let share = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / elapsed);
        report.deliveries_per_sec = Some((deliveries1 - deliveries0) as f64 / elapsed);
        report.msgs_per_sec = Some((sent1 - sent0) as f64 / elapsed);
        report.load_cpu = share(load0, load1);
        report.server_cpu = share(server0, server1);
        report.extra_cpu = share(extra0, extra1);
        report.machine_cpu = share(machine0, machine1);
        report.rss_window_kb = rss0.zip(rss1);
        let latencies = shared.latencies.borrow();
        report.latency_samples = latencies.total;
        report.latency = (|| {
            let us = |ns: u64| ns as f64 / 1000.0;
            Some([
                us(latencies.quantile(0.50)?),
                us(latencies.quantile(0.99)?),
                us(latencies.quantile(0.999)?),
                us(latencies.max),
            ])
        })();
    }
    finish(report, &shared);
    match result {
        Ok(()) => {}
        Err(Failure::Stalled) => {
            report.stalled = true;
            report.error = Some(format!(
                "stalled: message {} reached only {} of {} live subscribers in {STALL_AFTER:?} \
                 ({} sent)",
                shared.acked.get(),
                shared.slot(shared.acked.get()).get(),
                shared.live.get(),
                shared.sent.get()
            ));
            return;
        }
        Err(Failure::Error(e)) => {
            report.error = Some(e);
            return;
        }
    }
    if shared.live.get() == 0 {
        report.error = Some("the server disconnected every subscriber".into());
    }
    if args.slow > 0 {
        let drained = drain_slow(slow).await;
        report.slow_disconnected = Some(drained.closed);
        report.slow_received = Some(drained.messages);
    }
}

enum Failure {
    Stalled,
    Error(String),
}

/// Waits for `duration`, watching for failures and stalls.
async fn watch(shared: &Shared, duration: Duration) -> Result<(), Failure> {
    let end = Instant::now() + duration;
    loop {
        if let Some(e) = shared.error.borrow().clone() {
            return Err(Failure::Error(e));
        }
        if shared.last_progress.get().elapsed() > STALL_AFTER {
            return Err(Failure::Stalled);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(50))).await;
    }
}

/// Samples the servers' memory (summed) every [`RSS_EVERY`] until the run is over.
async fn sample_rss(shared: Rc<Shared>, pids: Vec<u32>, series: Rc<RefCell<Vec<u64>>>) {
    let mut every = tokio::time::interval(RSS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.done.get() {
        every.tick().await;
        if let Some(kb) = sum_over(&pids, rss_kb) {
            series.borrow_mut().push(kb);
        }
    }
}

/// One subscriber: connects (holding one of the permits for the handshake), then receives until
/// the server closes it or the process exits.
async fn subscriber(shared: Rc<Shared>, permits: Rc<Semaphore>, addr: SocketAddr, index: usize) {
    let connected = {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        tokio::time::timeout(CONNECT_ONE, connect(addr, None)).await
    };
    let (stream, mut conn) = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return shared.fail(format!("subscriber {index}: {e}")),
        Err(_) => {
            return shared.fail(format!(
                "subscriber {index}: no handshake in {CONNECT_ONE:?}"
            ));
        }
    };
    shared.connected.set(shared.connected.get() + 1);
    shared.live.set(shared.live.get() + 1);
    // Room for the whole window in one read, frame headers included.
    let read_chunk = (shared.window as usize * (shared.size + 14)).clamp(4096, 256 * 1024);
    let mut expected = 0;
    match receive(&shared, &stream, &mut conn, &mut expected, read_chunk).await {
        End::Gone(why) => shared.disconnect(index, expected, &why),
        End::Invalid(e) => shared.fail(format!("subscriber {index}: {e}")),
    }
}

/// One Server-Sent Events subscriber: sends `GET /events` (holding one of the permits until the
/// response head is in), then receives until the server ends the stream or the process exits.
async fn sse_subscriber(
    shared: Rc<Shared>,
    permits: Rc<Semaphore>,
    addr: SocketAddr,
    index: usize,
) {
    let connected = {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        tokio::time::timeout(CONNECT_ONE, connect_sse(addr)).await
    };
    let (stream, mut parser, leftover) = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return shared.fail(format!("subscriber {index}: {e}")),
        Err(_) => {
            return shared.fail(format!(
                "subscriber {index}: no response head in {CONNECT_ONE:?}"
            ));
        }
    };
    shared.connected.set(shared.connected.get() + 1);
    shared.live.set(shared.live.get() + 1);
    // Room for the whole window in one read, event fields and chunk framing included.
    let read_chunk =
        (shared.window as usize * (shared.size + SSE_OVERHEAD)).clamp(4096, 256 * 1024);
    let mut expected = 0;
    let end = receive_sse(
        &shared,
        &stream,
        &mut parser,
        &leftover,
        &mut expected,
        read_chunk,
    )
    .await;
    match end {
        End::Gone(why) => shared.disconnect(index, expected, &why),
        End::Invalid(e) => shared.fail(format!("subscriber {index}: {e}")),
    }
}

/// How a subscriber's connection ended.
enum End {
    /// The server closed it (close frame, end of stream, reset).
    Gone(String),
    /// The server sent something it should not have.
    Invalid(String),
}

/// A subscriber's receive loop: one read per wakeup, every frame in it decoded and delivered.
async fn receive(
    shared: &Shared,
    stream: &TcpStream,
    conn: &mut Connection,
    expected: &mut u64,
    read_chunk: usize,
) -> End {
    loop {
        let ready = match stream.ready(Interest::READABLE).await {
            Ok(ready) => ready,
            Err(e) => return End::Gone(format!("poll: {e}")),
        };
        if !ready.is_readable() && !ready.is_read_closed() {
            continue;
        }
        let buf = conn.input_buffer();
        if buf.capacity() - buf.len() < read_chunk {
            buf.reserve(read_chunk);
        }
        let room = buf.capacity() - buf.len();
        let now = Instant::now();
        match stream.try_read_buf(buf) {
            Ok(0) => conn.receive_eof(now),
            Ok(n) => {
                conn.received(now);
                if n < room {
                    // A short read drained the socket: forget its readiness now rather than
                    // learn it from one more read failing with WouldBlock (as in echo-load).
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return End::Gone(format!("read: {e}")),
        }
        let now_ns = nanos(now);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(msg) => {
                    if let Err(e) = shared.deliver(expected, msg.kind(), msg.as_bytes(), now_ns) {
                        return End::Invalid(e);
                    }
                }
                Event::Ping(_) | Event::Pong(_) => {}
                Event::CloseReceived(frame) => return End::Gone(format!("close frame {frame:?}")),
                Event::Closed(outcome) => return End::Gone(format!("closed: {outcome:?}")),
                Event::Fragment(_) => return End::Invalid("unexpected fragment event".into()),
            }
        }
        shared.advance();
        if conn.queued_bytes() > 0 {
            // A pong the engine queued for a ping: best effort, the server does not ping here.
            let mut out = Vec::new();
            conn.poll_transmit(&mut out);
            let _ = stream.try_write(&out);
        }
    }
}

/// An SSE subscriber's receive loop: one read per wakeup into a buffer of its own, parsed at once
/// (chunked framing and event lines, nothing kept but a partial line), every event delivered.
async fn receive_sse(
    shared: &Shared,
    stream: &TcpStream,
    parser: &mut SseParser,
    leftover: &[u8],
    expected: &mut u64,
    read_chunk: usize,
) -> End {
    let mut buf = vec![0; read_chunk.max(leftover.len())];
    let mut input = leftover.len();
    buf[..input].copy_from_slice(leftover);
    let mut now = Instant::now();
    loop {
        if input > 0 {
            let now_ns = nanos(now);
            let fed = parser.feed(&buf[..input], &mut |data: &[u8]| {
                shared.deliver(expected, MessageKind::Text, data, now_ns)
            });
            match fed {
                Ok(Stream::Open) => {}
                Ok(Stream::Ended) => return End::Gone("the server ended the event stream".into()),
                Err(e) => return End::Invalid(e),
            }
            shared.advance();
        }
        let ready = match stream.ready(Interest::READABLE).await {
            Ok(ready) => ready,
            Err(e) => return End::Gone(format!("poll: {e}")),
        };
        if !ready.is_readable() && !ready.is_read_closed() {
            input = 0;
            continue;
        }
        now = Instant::now();
        input = match stream.try_read(&mut buf) {
            Ok(0) => return End::Gone("end of stream".into()),
            Ok(n) => {
                if n < buf.len() {
                    // A short read drained the socket (as in `receive`).
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                n
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return End::Gone(format!("read: {e}")),
        };
    }
}

/// The publisher's connection and the message it stamps and sends again and again.
struct Publisher {
    stream: Rc<TcpStream>,
    conn: Connection,
    payload: Vec<u8>,
}

impl Publisher {
    /// Queues message `seq`, stamped with the time now.
    fn queue(&mut self, kind: MessageKind, seq: u64) -> io::Result<()> {
        write_header(kind, &mut self.payload, seq, nanos(Instant::now()));
        let queued = match kind {
            MessageKind::Text => {
                let text =
                    std::str::from_utf8(&self.payload).map_err(|e| invalid(e.to_string()))?;
                self.conn.send_text(text)
            }
            MessageKind::Binary => self.conn.send_binary(&self.payload),
        };
        queued.map_err(|e| invalid(e.to_string()))
    }
}

/// The publisher's task: installs the connection, sends the first window, then writes what a
/// full socket held back and reads what the server sends (nothing is expected), until the run is
/// over. The window is refilled by [`Shared::advance`].
async fn publisher(shared: Rc<Shared>, stream: TcpStream, conn: Connection) {
    let stream = Rc::new(stream);
    *shared.publisher.borrow_mut() = Some(Publisher {
        stream: stream.clone(),
        conn,
        payload: make_payload(shared.size),
    });
    if let Err(e) = drive_publisher(&shared, &stream).await {
        shared.fail(format!("publisher: {e}"));
    }
}

async fn drive_publisher(shared: &Shared, stream: &TcpStream) -> io::Result<()> {
    loop {
        if shared.done.get() {
            return Ok(());
        }
        shared.publish();
        let backlog = shared
            .publisher
            .borrow()
            .as_ref()
            .is_some_and(|p| p.conn.queued_bytes() > 0);
        let interest = if backlog {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // No borrow of the publisher is held across the wait: `publish` may run meanwhile.
        tokio::select! {
            ready = stream.ready(interest) => {
                let ready = ready?;
                if ready.is_readable() || ready.is_read_closed() {
                    let mut slot = shared.publisher.borrow_mut();
                    if let Some(publisher) = slot.as_mut() {
                        read_publisher(stream, &mut publisher.conn)?;
                    }
                }
            }
            _ = shared.publisher_wake.notified() => {}
        }
    }
}

/// Writes the publisher's queued frames until they are all written or the socket is full.
fn flush(stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    while conn.queued_bytes() > 0 {
        let mut slices = [io::IoSlice::new(&[]); 64];
        let n = conn.transmit_slices(&mut slices);
        match stream.try_write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => conn.advance_transmit(written),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what the server sent the publisher: nothing is expected but pings.
fn read_publisher(stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    let buf = conn.input_buffer();
    buf.reserve(16 * 1024);
    match stream.try_read_buf(buf) {
        Ok(0) => conn.receive_eof(Instant::now()),
        Ok(_) => conn.received(Instant::now()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) => return Err(e),
    }
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Message(_) | Event::Ping(_) | Event::Pong(_) => {}
            Event::CloseReceived(frame) => {
                return Err(invalid(format!("the server closed it: {frame:?}")));
            }
            other => return Err(invalid(format!("the connection ended: {other:?}"))),
        }
    }
    Ok(())
}

/// What reading out the slow consumers found.
#[derive(Default)]
struct Drained {
    /// Slow consumers the server had closed (a close frame, end of stream, or a reset).
    closed: usize,
    /// Messages they received in all: what the server had delivered to them, or queued in
    /// their sockets.
    messages: u64,
}

/// Reads out the slow consumers, all within [`SLOW_DRAIN`].
async fn drain_slow(slow: Vec<(TcpStream, Connection)>) -> Drained {
    let deadline = Instant::now() + SLOW_DRAIN;
    let mut drained = Drained::default();
    let mut buf = vec![0; 256 * 1024];
    for (stream, mut conn) in slow {
        if drain_one(
            &stream,
            &mut conn,
            &mut buf,
            deadline,
            &mut drained.messages,
        )
        .await
        {
            drained.closed += 1;
        }
    }
    drained
}

/// Whether the server closed this slow consumer: reads what is there (counting the messages)
/// until a close frame, the end of the stream, an error, or [`SLOW_IDLE`] without data (still
/// open).
async fn drain_one(
    stream: &TcpStream,
    conn: &mut Connection,
    buf: &mut [u8],
    deadline: Instant,
    messages: &mut u64,
) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match tokio::time::timeout(SLOW_IDLE.min(deadline - now), stream.readable()).await {
            Err(_) => return false,
            Ok(Err(_)) => return true,
            Ok(Ok(())) => {}
        }
        match stream.try_read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                conn.receive(Instant::now(), &buf[..n]);
                while let Some(event) = conn.poll_event() {
                    match event {
                        Event::Message(_) => *messages += 1,
                        Event::CloseReceived(_) | Event::Closed(_) => return true,
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// TCP connect (with `recv_buffer` as `SO_RCVBUF` if given) and the client handshake; returns the
/// stream and the open connection, fed with any bytes that followed the server's HTTP response.
async fn connect(
    addr: SocketAddr,
    recv_buffer: Option<u32>,
) -> io::Result<(TcpStream, Connection)> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let host = addr.to_string();
    let request = ClientRequest::new(&host, "/", generate_key())
        .map_err(|e| invalid(format!("handshake request: {e}")))?;
    stream.write_all(&request.encode()).await?;
    let limits = Limits::default();
    let mut head = Vec::with_capacity(1024);
    let leftover = loop {
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Err(invalid("connection closed during the handshake".into()));
        }
        match handshake::parse_response(&head, &request, &limits) {
            Ok(Status::Partial) => head.reserve(1024),
            Ok(Status::Complete((_response, consumed))) => break head.split_off(consumed),
            Err(e) => return Err(invalid(format!("handshake response: {e}"))),
        }
    };
    let mut conn = Connection::client(Config::default(), Instant::now());
    conn.receive(Instant::now(), &leftover);
    Ok((stream, conn))
}

/// Sends `GET` [`SSE_PATH`] and reads the response head; returns the stream, a parser for the
/// body's framing, and any body bytes that came with the head.
async fn connect_sse(addr: SocketAddr) -> io::Result<(TcpStream, SseParser, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {SSE_PATH} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    loop {
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Err(invalid("connection closed before the response head".into()));
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let chunked = parse_sse_head(&head[..end]).map_err(invalid)?;
            let body = head.split_off(end + 4);
            return Ok((stream, SseParser::new(chunked), body));
        }
        if head.len() > 16 * 1024 {
            return Err(invalid("response head over 16 KiB".into()));
        }
        head.reserve(1024);
    }
}

/// Checks the head of the response to `GET /events` (`200`, `text/event-stream`, no length);
/// returns whether the body is chunked (else it runs until the connection closes).
fn parse_sse_head(head: &[u8]) -> Result<bool, String> {
    let head = std::str::from_utf8(head).map_err(|_| "response head not UTF-8".to_owned())?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || parts.next() != Some("200") {
        return Err(format!("unexpected status line {status:?}"));
    }
    let (mut chunked, mut event_stream) = (false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.split(',').any(|c| c.trim() == "chunked"),
            "content-type" => event_stream = value.starts_with("text/event-stream"),
            "content-length" => return Err(format!("an event stream with a length: {value}")),
            _ => {}
        }
    }
    if !event_stream {
        return Err("the response is not text/event-stream".into());
    }
    Ok(chunked)
}

/// Whether an event stream goes on after what was fed.
#[derive(Debug, PartialEq, Eq)]
enum Stream {
    Open,
    Ended,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the size so far, its digits, and whether the rest of the line (an
    /// extension, or the CR) is skipped.
    Size { size: u64, digits: u8, skip: bool },
    /// In a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF (a CR is optional).
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; whether at a line's start.
    Trailer { line_start: bool },
    /// The body is over.
    Done,
}

/// An incremental decoder of an event stream's body: HTTP/1.1 chunked transfer coding (or
/// none), then the `text/event-stream` lines (`data:` fields are collected, the other fields and
/// comments are skipped; an empty line dispatches the event). Lines end with LF or CRLF. It
/// keeps only a partial line and the current event's data between calls, and copies nothing
/// else: the chunk framing is a few bytes stepped over per event, data lines are sliced from
/// the input.
struct SseParser {
    /// `None` for a body without transfer coding.
    chunk: Option<Chunk>,
    /// A line not ended yet at the end of the last input.
    line: Vec<u8>,
    /// The current event's data (its `data:` lines joined with LF).
    data: Vec<u8>,
    /// Whether the current event has a `data` field.
    has_data: bool,
}

/// The longest line kept across reads.
const SSE_MAX_LINE: usize = 1 << 20;

impl SseParser {
    fn new(chunked: bool) -> Self {
        SseParser {
            chunk: chunked.then_some(Chunk::Size {
                size: 0,
                digits: 0,
                skip: false,
            }),
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
        }
    }

    /// Decodes `input`, calling `event` with the data of each complete event.
    fn feed(
        &mut self,
        mut input: &[u8],
        event: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Stream, String> {
        let Some(mut state) = self.chunk else {
            self.lines(input, event)?;
            return Ok(Stream::Open);
        };
        let result = loop {
            let Some((&byte, rest)) = input.split_first() else {
                break Ok(Stream::Open);
            };
            state = match state {
                Chunk::Data(left) => {
                    let take = left.min(input.len() as u64) as usize;
                    if let Err(e) = self.lines(&input[..take], event) {
                        break Err(e);
                    }
                    input = &input[take..];
                    match left - take as u64 {
                        0 => Chunk::DataEnd,
                        left => Chunk::Data(left),
                    }
                }
                state => {
                    input = rest;
                    match Self::step(state, byte) {
                        Ok(next) => next,
                        Err(e) => break Err(e),
                    }
                }
            };
            if state == Chunk::Done {
                break if input.is_empty() {
                    Ok(Stream::Ended)
                } else {
                    Err("bytes after the end of the chunked body".into())
                };
            }
        };
        self.chunk = Some(state);
        result
    }

    /// One byte of chunk framing (any state but `Data`).
    fn step(state: Chunk, byte: u8) -> Result<Chunk, String> {
        Ok(match (state, byte) {
            (Chunk::Size { size, digits, .. }, b'\n') => match (digits, size) {
                (0, _) => return Err("empty chunk-size line".into()),
                (_, 0) => Chunk::Trailer { line_start: true },
                (_, size) => Chunk::Data(size),
            },
            (Chunk::Size { skip: true, .. }, _) => state,
            (Chunk::Size { size, digits, .. }, _) => match (byte as char).to_digit(16) {
                Some(_) if digits >= 15 => return Err("chunk size too large".into()),
                Some(d) => Chunk::Size {
                    size: size << 4 | u64::from(d),
                    digits: digits + 1,
                    skip: false,
                },
                None if matches!(byte, b';' | b'\r' | b' ' | b'\t') => Chunk::Size {
                    size,
                    digits,
                    skip: true,
                },
                None => return Err(format!("bad byte {byte:#04x} in a chunk size")),
            },
            (Chunk::DataEnd, b'\r') => Chunk::DataEnd,
            (Chunk::DataEnd, b'\n') => Chunk::Size {
                size: 0,
                digits: 0,
                skip: false,
            },
            (Chunk::DataEnd, _) => return Err(format!("bad byte {byte:#04x} after a chunk")),
            (Chunk::Trailer { line_start: true }, b'\n') => Chunk::Done,
            (Chunk::Trailer { .. }, b'\n') => Chunk::Trailer { line_start: true },
            (Chunk::Trailer { line_start }, b'\r') => Chunk::Trailer { line_start },
            (Chunk::Trailer { .. }, _) => Chunk::Trailer { line_start: false },
            (Chunk::Data(_) | Chunk::Done, _) => unreachable!("not framing"),
        })
    }

    /// Event-stream bytes: every complete line is handled, the rest kept for the next call.
    fn lines(
        &mut self,
        mut input: &[u8],
        event: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&input[..end], &input[end + 1..]);
            if self.line.is_empty() {
                Self::field(&mut self.data, &mut self.has_data, line, event)?;
            } else {
                self.line.extend_from_slice(line);
                let result = Self::field(&mut self.data, &mut self.has_data, &self.line, event);
                self.line.clear();
                result?;
            }
            input = rest;
        }
        if self.line.len() + input.len() > SSE_MAX_LINE {
            return Err(format!("a line over {SSE_MAX_LINE} bytes"));
        }
        self.line.extend_from_slice(input);
        Ok(())
    }

    /// One line (without its LF): a `data` field is collected, an empty line dispatches the
    /// event, anything else (`id`, `event`, `retry`, comments) is skipped.
    fn field(
        data: &mut Vec<u8>,
        has_data: &mut bool,
        line: &[u8],
        event: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if *has_data {
                *has_data = false;
                let result = event(data);
                data.clear();
                return result;
            }
            return Ok(());
        }
        let value = match line.strip_prefix(b"data") {
            Some([]) => &[][..],
            Some([b':', value @ ..]) => value.strip_prefix(b" ").unwrap_or(value),
            _ => return Ok(()),
        };
        if *has_data {
            data.push(b'\n');
        }
        data.extend_from_slice(value);
        *has_data = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for kind in [MessageKind::Binary, MessageKind::Text] {
            let mut payload = make_payload(64);
            for (seq, stamp) in [(0, 0), (1, 2), (u64::MAX, 0x0123_4567_89ab_cdef)] {
                write_header(kind, &mut payload, seq, stamp);
                assert_eq!(read_header(kind, &payload), Some((seq, stamp)));
            }
            if kind == MessageKind::Text {
                assert!(payload.is_ascii());
            }
        }
        assert_eq!(read_hex(b"000000000000000g"), None);
    }

    /// Runs `body` through a parser in pieces of `step` bytes; the events' data and the end.
    fn parse_sse(chunked: bool, body: &[u8], step: usize) -> Result<(Vec<String>, Stream), String> {
        let mut parser = SseParser::new(chunked);
        let mut events = Vec::new();
        let mut state = Stream::Open;
        for piece in body.chunks(step) {
            assert_eq!(state, Stream::Open, "input after the end");
            state = parser.feed(piece, &mut |data: &[u8]| {
                events.push(String::from_utf8(data.to_vec()).unwrap());
                Ok(())
            })?;
        }
        Ok((events, state))
    }

    #[test]
    fn sse_parser_decodes_chunked_events_in_any_split() {
        // What hyper sends for the hub's events: one chunk per event, a heartbeat comment, a
        // chunk with an extension and CRLF line ends, a multi-line event, then the last chunk.
        let events = [
            "data: 0000000000000001 hello\nid: 1\n\n",
            ": heartbeat\n\n",
            "data: second\r\nid: 2\r\n\r\n",
            "event: tick\ndata: a\ndata:b\ndata\nretry: 10\n\n",
        ];
        let mut body = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let ext = if i == 2 { ";name=value" } else { "" };
            body.extend_from_slice(format!("{:X}{ext}\r\n{event}\r\n", event.len()).as_bytes());
        }
        body.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
        let want = vec![
            "0000000000000001 hello".to_owned(),
            "second".to_owned(),
            "a\nb\n".to_owned(),
        ];
        for step in 1..=body.len() {
            assert_eq!(
                parse_sse(true, &body, step),
                Ok((want.clone(), Stream::Ended)),
                "step {step}"
            );
        }
        // An event split across two chunks.
        let split = b"5\r\ndata:\r\n5\r\n x\n\n\n\r\n";
        assert_eq!(
            parse_sse(true, split, 3),
            Ok((vec!["x".to_owned()], Stream::Open))
        );
    }

    #[test]
    fn sse_parser_without_chunks_and_malformed_framing() {
        assert_eq!(
            parse_sse(false, b"data: a\n\ndata: b\n", 2),
            Ok((vec!["a".to_owned()], Stream::Open))
        );
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"1\r\nabc",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(parse_sse(true, bad, 1).is_err(), "{bad:?}");
        }
        assert!(parse_sse(true, b"0\r\n\r\nmore", 100).is_err());
        assert_eq!(
            parse_sse_head(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                                    transfer-encoding: chunked"
            ),
            Ok(true)
        );
        assert_eq!(
            parse_sse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"),
            Ok(false)
        );
        assert!(parse_sse_head(b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain").is_err());
        assert!(parse_sse_head(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain").is_err());
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut expected_low = 0;
        for i in 0..Histogram::index(1 << 40) {
            let (low, width) = Histogram::bucket(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(Histogram::index(low), i);
            assert_eq!(Histogram::index(low + width - 1), i);
            assert!(width == 1 || width * 128 <= low, "bucket {i} too wide");
            expected_low = low + width;
        }
        assert!(Histogram::index(u64::MAX) < Histogram::new().counts.len());
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [
            (0.5, 50_000_000.0),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact < 0.01,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(100_000_000));
        assert_eq!(h.max, 100_000_000);
    }

    fn shared(window: usize) -> Shared {
        let args = Args {
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            subs: 2,
            size: 64,
            kind: MessageKind::Binary,
            secs: 1.0,
            warmup_secs: 0.0,
            window,
            server_pids: Vec::new(),
            extra_pids: Vec::new(),
            slow: 0,
            connect_concurrency: 1,
            sse: false,
        };
        Shared::new(&args)
    }

    fn message(seq: u64) -> Vec<u8> {
        let mut payload = make_payload(64);
        write_header(MessageKind::Binary, &mut payload, seq, 0);
        payload
    }

    #[test]
    fn window_completes_in_order_and_survives_gaps_and_disconnects() {
        let s = shared(4);
        s.live.set(2);
        s.sent.set(4);
        let (mut a, mut b) = (0, 0);
        let deliver = |s: &Shared, e: &mut u64, seq| {
            s.deliver(e, MessageKind::Binary, &message(seq), 0).unwrap();
            s.advance();
        };
        deliver(&s, &mut a, 0);
        assert_eq!(s.acked.get(), 0);
        deliver(&s, &mut b, 0);
        assert_eq!(s.acked.get(), 1);
        // b misses 1 and 2: lost, but accounted for.
        deliver(&s, &mut b, 3);
        assert_eq!(s.lost.get(), 2);
        deliver(&s, &mut a, 1);
        deliver(&s, &mut a, 2);
        assert_eq!(s.acked.get(), 3);
        // a leaves before 3: 3 completes with b alone.
        s.disconnect(0, a, "test");
        assert_eq!(s.acked.get(), 4);
        assert_eq!(s.live.get(), 1);
        assert!(s.counts.iter().all(|c| c.get() == 0));
        // Out of order and unsent messages are errors.
        assert!(
            s.deliver(&mut b, MessageKind::Binary, &message(2), 0)
                .is_err()
        );
        assert!(
            s.deliver(&mut b, MessageKind::Binary, &message(9), 0)
                .is_err()
        );
        assert!(
            s.deliver(&mut b, MessageKind::Text, &message(4), 0)
                .is_err()
        );
    }

    #[test]
    fn disconnect_takes_back_in_flight_deliveries() {
        let s = shared(4);
        s.live.set(2);
        s.sent.set(3);
        let (mut a, mut b) = (0, 0);
        for seq in 0..3 {
            s.deliver(&mut a, MessageKind::Binary, &message(seq), 0)
                .unwrap();
        }
        s.advance();
        assert_eq!(s.acked.get(), 0);
        s.disconnect(0, a, "test");
        assert_eq!(s.acked.get(), 0);
        s.deliver(&mut b, MessageKind::Binary, &message(0), 0)
            .unwrap();
        s.advance();
        assert_eq!(s.acked.get(), 1);
    }
}
