//! Idle-connection load for `scripts/bench-idle.sh`: opens many WebSocket connections to one
//! server, checks each with one echo, then holds them all open and idle.
//!
//! ```text
//! idle-load --addr 127.0.0.1:PORT [--conns N] [--concurrency C] [--timeout-secs T]
//!           [--sources K] [--size BYTES] [--ready PATH] [--hold SECS]
//! ```
//!
//! * `--conns` (default 10,000): connections to open, from `127.0.0.1` (or from `--sources` K
//!   loopback addresses `127.0.0.1`…`127.0.0.K`, round-robin, when one address's ephemeral ports
//!   would not do: `net.ipv4.ip_local_port_range` is about 28,000 ports by default, so 10,000 fit).
//! * Each connection: TCP connect (TCP_NODELAY), the client handshake of `tidings-core`
//!   (`ClientRequest`, `parse_response`), then one text message of `--size` bytes (default 16:
//!   `idle-` and the connection's number in 11 digits, then ASCII filler up to the size), masked by
//!   a client `Connection`, whose echo must come back as text with exactly those bytes. The engine
//!   is dropped afterwards: only the socket stays. A larger `--size` shows what a connection that
//!   once carried a message of that size keeps while idle (buffers grown and not shrunk).
//!   At most `--concurrency` (default 256) connections are being set up at a time, each within
//!   `--timeout-secs` (default 20; a SYN dropped by a full listen backlog is retried after 1 s,
//!   3 s, 7 s…); one that fails or times out is counted in `failed` (its error, for the first few,
//!   on stderr) and not retried.
//! * When every connection has succeeded or failed, prints `ready ESTABLISHED failed FAILED` on
//!   stdout and, with `--ready PATH`, writes one line of JSON to PATH (through a temporary file
//!   and a rename, so a reader never sees half of it): `addr`, `conns`, `size`, `established`,
//!   `failed`, `connect_secs` (from the first connect to the last echo), `errors` (counts by
//!   kind).
//! * Then it holds the connections, reading nothing but watching each socket: bytes the server
//!   sends (`unexpected_bytes`; none of the servers measured sends keepalive pings) and
//!   connections it closes (`closed_by_server`). It leaves after `--hold SECS` (default: never)
//!   or on SIGTERM/SIGINT, printing one last line of JSON with the same fields plus those two and
//!   `held_secs`, and exits without closing the sockets one by one.
//!
//! One tokio current-thread runtime: the generator's own memory and CPU stay small (one socket and
//! one small task per connection while idle).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tidings_bench::procfs::open_files_limit;
use tidings_core::handshake::{self, ClientRequest, Limits, Status, generate_key};
use tidings_core::{Config, Connection, Event, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

const USAGE: &str = "usage: idle-load --addr HOST:PORT [--conns N] [--concurrency C] \
                     [--timeout-secs T] [--sources K] [--size BYTES] [--ready PATH] \
                     [--hold SECS]";

/// Bytes of the text message each connection sends once (and gets back), by default; also the
/// smallest `--size` (the connection's number must fit).
const PROBE_LEN: usize = 16;
/// Errors printed to stderr in full; the rest are only counted.
const PRINTED_ERRORS: usize = 5;

#[derive(Clone, Debug)]
struct Args {
    addr: SocketAddr,
    conns: usize,
    concurrency: usize,
    timeout: Duration,
    sources: usize,
    size: usize,
    ready: Option<String>,
    hold: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut conns = 10_000;
    let mut concurrency = 256;
    let mut timeout_secs = 20.0;
    let mut sources = 1;
    let mut size = PROBE_LEN;
    let mut ready = None;
    let mut hold = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--conns" => conns = value.parse().map_err(|e| bad(&e))?,
            "--concurrency" => concurrency = value.parse().map_err(|e| bad(&e))?,
            "--timeout-secs" => timeout_secs = value.parse().map_err(|e| bad(&e))?,
            "--sources" => sources = value.parse().map_err(|e| bad(&e))?,
            "--size" => size = value.parse().map_err(|e| bad(&e))?,
            "--ready" => ready = Some(value),
            "--hold" => {
                let secs: f64 = value.parse().map_err(|e| bad(&e))?;
                if !(secs >= 0.0 && secs.is_finite()) {
                    return Err(bad(&"expected seconds, not negative"));
                }
                hold = Some(Duration::from_secs_f64(secs));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let addr: SocketAddr = addr.ok_or("--addr is required")?;
    if conns == 0 || concurrency == 0 || sources == 0 || sources > 254 {
        return Err("--conns and --concurrency must be at least 1, --sources 1 to 254".into());
    }
    if size < PROBE_LEN {
        return Err(format!("--size must be at least {PROBE_LEN}"));
    }
    if !(timeout_secs > 0.0 && f64::is_finite(timeout_secs)) {
        return Err("--timeout-secs must be positive".into());
    }
    if sources > 1 && !addr.ip().is_loopback() {
        return Err("--sources needs a loopback --addr (127.0.0.x sources)".into());
    }
    Ok(Args {
        addr,
        conns,
        concurrency,
        timeout: Duration::from_secs_f64(timeout_secs),
        sources,
        size,
        ready,
        hold,
    })
}

/// What the connections came to, shared by their tasks (one thread: `Cell`s).
#[derive(Default)]
struct Tally {
    established: Cell<usize>,
    failed: Cell<usize>,
    /// Failures by kind (`timeout`, `connect: …`, `handshake: …`, `echo: …`).
    errors: std::cell::RefCell<BTreeMap<String, usize>>,
    /// Connections the server closed (EOF or an error) while held.
    closed_by_server: Cell<usize>,
    /// Bytes the server sent while the connections were held.
    unexpected_bytes: Cell<u64>,
}

impl Tally {
    fn fail(&self, index: usize, kind: &str, e: &dyn std::fmt::Display) {
        let failed = self.failed.get() + 1;
        self.failed.set(failed);
        *self.errors.borrow_mut().entry(kind.to_owned()).or_default() += 1;
        if failed <= PRINTED_ERRORS {
            eprintln!("idle-load: connection {index}: {kind}: {e}");
        } else if failed == PRINTED_ERRORS + 1 {
            eprintln!("idle-load: more failures; counted, not printed");
        }
    }

    fn json(&self, args: &Args, connect_secs: f64, held: Option<f64>) -> String {
        let errors: Vec<String> = self
            .errors
            .borrow()
            .iter()
            .map(|(k, n)| format!("{}:{n}", json_str(k)))
            .collect();
        let mut s = format!(
            "{{\"addr\":\"{}\",\"conns\":{},\"size\":{},\"established\":{},\"failed\":{},\
             \"connect_secs\":{connect_secs:.3},\"errors\":{{{}}}",
            args.addr,
            args.conns,
            args.size,
            self.established.get(),
            self.failed.get(),
            errors.join(",")
        );
        if let Some(held) = held {
            s += &format!(
                ",\"held_secs\":{held:.1},\"closed_by_server\":{},\"unexpected_bytes\":{}",
                self.closed_by_server.get(),
                self.unexpected_bytes.get()
            );
        }
        s.push('}');
        s
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("idle-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Every connection is a file descriptor here (and in the server): fail early and clearly.
    let needed = (args.conns + 64) as u64;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        eprintln!(
            "idle-load: {} connections need about {needed} file descriptors; the limit is \
             {limit}: raise it (ulimit -n) before running",
            args.conns
        );
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idle-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, run(&args));
    // Leave without tearing the connections down one by one.
    std::process::exit(code)
}

async fn run(args: &Args) -> i32 {
    let tally = Rc::new(Tally::default());
    let permits = Rc::new(Semaphore::new(args.concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let (tally, permits, args) = (tally.clone(), permits.clone(), args.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let setup = async {
                let _permit = permits.acquire().await.expect("never closed");
                tokio::time::timeout(args.timeout, open(&args, i)).await
            };
            match setup.await {
                Ok(Ok(stream)) => {
                    tally.established.set(tally.established.get() + 1);
                    Some(stream)
                }
                Ok(Err((kind, e))) => {
                    tally.fail(i, kind, &e);
                    None
                }
                Err(_) => {
                    tally.fail(
                        i,
                        "timeout",
                        &format!("not set up within {:?}", args.timeout),
                    );
                    None
                }
            }
        }));
    }
    let mut streams = Vec::with_capacity(args.conns);
    for task in tasks {
        if let Ok(Some(stream)) = task.await {
            streams.push(stream);
        }
    }
    let connect_secs = start.elapsed().as_secs_f64();
    println!(
        "ready {} failed {}",
        tally.established.get(),
        tally.failed.get()
    );
    eprintln!(
        "idle-load: {} connections established, {} failed, in {connect_secs:.1} s",
        tally.established.get(),
        tally.failed.get()
    );
    if let Some(path) = &args.ready
        && let Err(e) = write_atomically(path, &tally.json(args, connect_secs, None))
    {
        eprintln!("idle-load: writing {path}: {e}");
        return 1;
    }
    // Hold: watch each socket for bytes or a close from the server.
    let held_from = Instant::now();
    for stream in streams {
        tokio::task::spawn_local(watch(stream, tally.clone()));
    }
    let hold = async {
        match args.hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let terminated = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        () = hold => {}
        () = terminated => {}
    }
    let held = held_from.elapsed().as_secs_f64();
    println!("{}", tally.json(args, connect_secs, Some(held)));
    i32::from(tally.established.get() == 0)
}

/// Connects (from source address `127.0.0.(1 + index % sources)`), handshakes and checks one echo.
/// Returns the socket, or the kind of failure and the error.
async fn open(args: &Args, index: usize) -> Result<TcpStream, (&'static str, io::Error)> {
    let socket = if args.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| ("socket", e))?;
    if args.sources > 1 {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (index % args.sources) as u8);
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .map_err(|e| ("bind", e))?;
    }
    let mut stream = socket
        .connect(args.addr)
        .await
        .map_err(|e| ("connect", e))?;
    stream.set_nodelay(true).map_err(|e| ("connect", e))?;
    let conn = handshake_client(&mut stream, args.addr)
        .await
        .map_err(|e| ("handshake", e))?;
    echo_once(&mut stream, conn, index, args.size)
        .await
        .map_err(|e| ("echo", e))?;
    Ok(stream)
}

/// The client handshake; returns the open connection, fed with any bytes that followed the
/// server's response.
async fn handshake_client(stream: &mut TcpStream, addr: SocketAddr) -> io::Result<Connection> {
    let host = addr.to_string();
    let request = ClientRequest::new(&host, "/", generate_key())
        .map_err(|e| invalid(format!("request: {e}")))?;
    stream.write_all(&request.encode()).await?;
    let limits = Limits::default();
    let mut head = Vec::with_capacity(512);
    let leftover = loop {
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Err(invalid("connection closed during the handshake".into()));
        }
        match handshake::parse_response(&head, &request, &limits) {
            Ok(Status::Partial) => head.reserve(512),
            Ok(Status::Complete((_response, consumed))) => break head.split_off(consumed),
            Err(e) => return Err(invalid(format!("response: {e}"))),
        }
    };
    let mut conn = Connection::client(Config::default(), Instant::now());
    conn.receive(Instant::now(), &leftover);
    Ok(conn)
}

/// Sends one text message of `size` bytes and waits for its echo, which must be the same text.
async fn echo_once(
    stream: &mut TcpStream,
    mut conn: Connection,
    index: usize,
    size: usize,
) -> io::Result<()> {
    let probe = probe(index, size);
    conn.send_text(&probe)
        .map_err(|e| invalid(format!("send: {e}")))?;
    let mut frame = Vec::with_capacity(conn.queued_bytes());
    conn.poll_transmit(&mut frame);
    stream.write_all(&frame).await?;
    // On the heap, and only while the echo is awaited: every connection's task exists from the
    // start, so nothing large may live in the future itself.
    let mut buf = vec![0u8; (size + 64).min(64 * 1024)];
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(msg) => {
                    if msg.kind() != MessageKind::Text {
                        return Err(invalid(format!("echo has kind {:?}", msg.kind())));
                    }
                    if msg.as_bytes() != probe.as_bytes() {
                        return Err(invalid(format!(
                            "echo {:?} differs from {probe:?}",
                            String::from_utf8_lossy(msg.as_bytes())
                        )));
                    }
                    return Ok(());
                }
                Event::Ping(_) | Event::Pong(_) => {}
                other => return Err(invalid(format!("unexpected event {other:?}"))),
            }
        }
        // A pong the engine queued (a server that pings at once) goes out before the next read.
        if conn.queued_bytes() > 0 {
            let mut out = Vec::with_capacity(conn.queued_bytes());
            conn.poll_transmit(&mut out);
            stream.write_all(&out).await?;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(invalid("connection closed before the echo".into()));
        }
        conn.receive(Instant::now(), &buf[..n]);
    }
}

/// Watches an idle connection: counts bytes the server sends (discarded) and whether it closes.
async fn watch(stream: TcpStream, tally: Rc<Tally>) {
    let mut buf = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tally
                .unexpected_bytes
                .set(tally.unexpected_bytes.get() + n as u64),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    tally.closed_by_server.set(tally.closed_by_server.get() + 1);
}

/// The text connection `index` sends: `idle-` and its number in 11 digits (16 bytes), then ASCII
/// filler up to `size` bytes.
fn probe(index: usize, size: usize) -> String {
    const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut text = format!("idle-{index:011}");
    debug_assert_eq!(text.len(), PROBE_LEN);
    text.extend((PROBE_LEN..size).map(|i| FILLER[(i * 7 + i / 64) % FILLER.len()] as char));
    text
}

fn write_atomically(path: &str, line: &str) -> io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, format!("{line}\n"))?;
    std::fs::rename(&tmp, path)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_have_the_size_and_the_number() {
        for (index, size) in [(0, 16), (7, 17), (9_999, 1000), (123_456, 65_536)] {
            let p = probe(index, size);
            assert_eq!(p.len(), size);
            assert!(p.is_ascii());
            assert!(p.starts_with(&format!("idle-{index:011}")));
        }
        assert_ne!(probe(1, 64), probe(2, 64));
    }
}
