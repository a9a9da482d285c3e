//! WebSocket echo load generator, for `scripts/bench-echo.sh`.
//!
//! ```text
//! echo-load --addr 127.0.0.1:PORT --conns N --inflight K --size BYTES --kind text|binary
//!           --secs S [--warmup-secs W]
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
//! measurement of a server pinned to one core looks like.
//!
//! The client is the sans-IO `tidings-core` engine driven straight over a non-blocking
//! `TcpStream` (`try_read_buf` into the engine's input buffer, `try_write_vectored` of the queued
//! frames), so one wakeup costs one read and one write whatever the number of echoes it carries:
//! the server under test, not the generator, should be the bottleneck.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidings_core::handshake::{self, ClientRequest, Limits, Status, generate_key};
use tidings_core::{Config, Connection, Event, Message, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Round trips completed by all connections (the runtime is single-threaded: never contended).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
/// Set once the measurement is over: connection errors after that are not failures.
static DONE: AtomicBool = AtomicBool::new(false);

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
}

const USAGE: &str = "usage: echo-load --addr HOST:PORT --conns N --inflight K --size BYTES \
                     --kind text|binary --secs S [--warmup-secs W] [--server-pid PID]";

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut conns = None;
    let mut inflight = None;
    let mut size = None;
    let mut kind = None;
    let mut secs = None;
    let mut warmup_secs = 1.0;
    let mut server_pid = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
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
    };
    if args.conns == 0 || args.inflight == 0 {
        return Err("--conns and --inflight must be at least 1".into());
    }
    if !(args.secs > 0.0 && args.warmup_secs >= 0.0) {
        return Err("--secs must be positive and --warmup-secs not negative".into());
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
    println!(
        "{{\"msgs_per_sec\":{:.1},\"mib_per_sec\":{mib_per_sec:.3},\"conns\":{},\
         \"inflight\":{},\"size\":{},\"kind\":\"{kind}\"{cpu}}}",
        measured.msgs_per_sec, args.conns, args.inflight, args.size
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
    /// CPU time of this process over the window, in cores (1.0 = one core busy all the time).
    load_cpu: Option<f64>,
    /// The same for `--server-pid`.
    server_cpu: Option<f64>,
    /// CPU time of the whole machine over the window (all processes, interrupts and time stolen
    /// by the hypervisor), in cores: what exceeds `load_cpu + server_cpu` is other work that
    /// competed with the measurement.
    machine_cpu: Option<f64>,
}

/// Busy CPU time of the whole machine so far, in seconds, from the first line of `/proc/stat`:
/// everything but idle and iowait.
fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy as f64 / 100.0)
}

/// CPU time (user + system, all threads) a process has used so far, in seconds, from
/// `/proc/PID/stat` (`None` where that is unreadable, e.g. not on Linux).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ, the unit of these fields, is 100 on every Linux ABI that matters here.
    Some((utime + stime) as f64 / 100.0)
}

/// Starts the connections, waits out the warmup, measures.
async fn run(args: &Args) -> Measured {
    let payload: &'static [u8] = Box::leak(make_payload(args.size).into_boxed_slice());
    for i in 0..args.conns {
        let args = args.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&args, payload).await
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
        )
    };
    let (start, before, load0, server0, machine0) = sample();
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    let (end, after, load1, server1, machine1) = sample();
    DONE.store(true, Ordering::Relaxed);
    let elapsed = (end - start).as_secs_f64();
    let share = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / elapsed);
    Measured {
        msgs_per_sec: (after - before) as f64 / elapsed,
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

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Opens the WebSocket and runs the echo loop until the process exits.
async fn connection(args: &Args, payload: &'static [u8]) -> io::Result<()> {
    let (stream, mut conn) = connect(args.addr).await?;
    let frame = encode_frame(&mut conn, args.kind, payload)?;
    // Room for a few whole messages plus one read: reclaiming it moves a partial frame seldom.
    conn.input_buffer()
        .reserve(4 * frame.len() + 2 * READ_CHUNK);
    let mut out = Outgoing {
        frame: &frame,
        frames: args.inflight,
        offset: 0,
    };
    let mut first = true;
    loop {
        // Write everything queued (normally in one vectored write), then wait for input, or for
        // room to write if the socket is full; reading never waits on writing, so large messages
        // in flight both ways cannot deadlock.
        out.flush(&stream, &mut conn)?;
        let interest = if out.frames > 0 || conn.queued_bytes() > 0 {
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
                    check_echo(&msg, args, payload, first)?;
                    first = false;
                    echoes += 1;
                }
                Event::Ping(_) | Event::Pong(_) => {}
                other => return Err(invalid(format!("unexpected event {other:?}"))),
            }
        }
        out.frames += echoes;
        ROUND_TRIPS.fetch_add(echoes as u64, Ordering::Relaxed);
    }
}

/// The connection's message as the engine encodes it, masking included, so that it can be sent
/// again and again without copying or masking it each time. (Every message of a connection thus
/// reuses one masking key; a server cannot tell, and unmasks each frame all the same.)
fn encode_frame(conn: &mut Connection, kind: MessageKind, payload: &[u8]) -> io::Result<Vec<u8>> {
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
}

/// Messages waiting to be written: `frames` copies of `frame`, the first one from `offset` on.
struct Outgoing<'a> {
    frame: &'a [u8],
    frames: usize,
    offset: usize,
}

impl Outgoing<'_> {
    /// Writes what is queued until it is all written or the socket is full: the engine's own
    /// output first (a pong or close reply, not expected here), at a frame boundary, then the
    /// messages.
    fn flush(&mut self, stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
        loop {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = if self.offset == 0 && conn.queued_bytes() > 0 {
                conn.transmit_slices(&mut slices)
            } else if self.frames > 0 {
                let n = self.frames.min(slices.len());
                slices[0] = IoSlice::new(&self.frame[self.offset..]);
                for slice in &mut slices[1..n] {
                    *slice = IoSlice::new(self.frame);
                }
                n
            } else {
                return Ok(());
            };
            let from_conn = self.offset == 0 && conn.queued_bytes() > 0;
            match stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) if from_conn => conn.advance_transmit(written),
                Ok(written) => {
                    self.offset += written;
                    let whole = self.offset / self.frame.len();
                    self.frames -= whole;
                    self.offset -= whole * self.frame.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

fn check_echo(msg: &Message, args: &Args, payload: &[u8], exact: bool) -> io::Result<()> {
    if msg.kind() != args.kind {
        return Err(invalid(format!(
            "echo has kind {:?}, sent {:?}",
            msg.kind(),
            args.kind
        )));
    }
    let got = msg.as_bytes();
    if got.len() != payload.len() {
        return Err(invalid(format!(
            "echo has {} bytes, sent {}",
            got.len(),
            payload.len()
        )));
    }
    if exact && got != payload {
        return Err(invalid("echo payload differs from the message sent".into()));
    }
    Ok(())
}

/// TCP connect and the client handshake; returns the stream and the open connection, fed with any
/// bytes that followed the server's HTTP response.
async fn connect(addr: SocketAddr) -> io::Result<(TcpStream, Connection)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let host = addr.to_string();
    let request = ClientRequest::new(&host, "/", generate_key())
        .map_err(|e| invalid(format!("handshake request: {e}")))?;
    stream.write_all(&request.encode()).await?;
    let limits = Limits::default();
    let mut head = Vec::with_capacity(1024);
    let leftover = loop {
        if stream.read_buf(&mut head).await? == 0 {
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
