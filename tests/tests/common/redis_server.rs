//! A private `redis-server` for the integration tests (included by test files with
//! `#[path = "common/redis_server.rs"] mod redis_server;`).
//!
//! [`start`] finds `redis-server` (on `PATH`, else `/usr/bin`; a machine without it skips, or
//! fails under `TIDINGS_REDIS_TESTS=require`) and runs one of its own on a free loopback port,
//! without persistence, in a fresh temporary folder ([`RedisServer`], killed and removed on drop).
//! The test can kill it ([`RedisServer::kill`]) and start it again on the same port
//! ([`RedisServer::restart`]) to exercise reconnects, and talk to it directly through
//! [`RedisServer::command`], which speaks RESP by hand over a `TcpStream` (the tests crate has no
//! Redis client).
//!
//! Waiting for the server is by polling it with a short interval inside a deadline
//! ([`STARTUP`]); nothing sleeps to "let things happen".

// Each test binary includes this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that turns a missing `redis-server` from a skip into a failure (when
/// set to `require`).
pub const REQUIRE_VAR: &str = "TIDINGS_REDIS_TESTS";

/// How long a start (or restart) may take until the server answers `PING`.
const STARTUP: Duration = Duration::from_secs(10);
/// The polling interval while waiting for the server to start.
const POLL: Duration = Duration::from_millis(20);
/// Read, write and connect timeout of one readiness probe (short: a process that took the port
/// in between may accept and never answer, and the server's own exit should be seen soon).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Read, write and connect timeout of [`RedisServer::command`].
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports [`start`] tries when the server exits at once (the port taken by a race).
const PORT_ATTEMPTS: usize = 5;
/// How many lines of the server's log are kept for failure messages.
const LOG_LINES: usize = 40;
/// The name of the server's log (its stdout and stderr) in its folder.
const LOG_FILE: &str = "redis.log";
/// The largest bulk string [`read_reply`] accepts (Redis' own `proto-max-bulk-len`), so a
/// corrupt length cannot make it allocate without bound.
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Starts a `redis-server` of this test on a free loopback port and returns once it answers
/// `PING`.
///
/// Returns `None` (after printing `skipping: redis-server not found`) when there is no
/// `redis-server`, unless `TIDINGS_REDIS_TESTS=require`, in which case it panics. Panics, with
/// the server's log, when the server does not start.
pub fn start() -> Option<RedisServer> {
    let Some(binary) = locate() else {
        if std::env::var(REQUIRE_VAR).as_deref() == Ok("require") {
            panic!(
                "redis tests are required ({REQUIRE_VAR}=require) but redis-server was found \
                 neither on PATH nor in /usr/bin; install it (apt-get install redis-server)"
            );
        }
        println!("skipping: redis-server not found (set {REQUIRE_VAR}=require to fail instead)");
        return None;
    };
    let dir = fresh_dir();
    let mut server = RedisServer {
        binary,
        child: None,
        port: 0,
        dir,
    };
    let deadline = Instant::now() + STARTUP;
    for _attempt in 0..PORT_ATTEMPTS {
        server.port = free_port().expect("no free loopback port");
        match server.launch(deadline) {
            Launch::Ready => return Some(server),
            // Most likely the port was taken in between; try another one.
            Launch::Exited => {}
        }
    }
    panic!(
        "redis-server exited at once on {PORT_ATTEMPTS} free ports in a row\n{}",
        server.log_tail()
    );
}

/// A `redis-server` child process of this test on `127.0.0.1:`[`port`](Self::port), keeping
/// nothing on disk except its log, in a temporary folder of its own. Dropping it kills the
/// server and removes the folder.
pub struct RedisServer {
    /// The `redis-server` program, kept for [`restart`](Self::restart).
    binary: PathBuf,
    /// The running server; `None` once killed.
    child: Option<Child>,
    /// The loopback port, the same across restarts.
    port: u16,
    /// The server's working folder (`--dir`), holding its log.
    dir: PathBuf,
}

/// How one launch of the server ended.
enum Launch {
    /// It answers `PING` (and is this server, not another process on the port).
    Ready,
    /// It exited before it answered (typically: the port was not free).
    Exited,
}

impl RedisServer {
    /// The loopback port the server listens on (the same after [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address as a URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit; afterwards connections to the port
    /// are refused. Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when it already exited, which is as good.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, then starts it again on the same port, empty (nothing is
    /// persisted), and returns once it answers `PING`. A port that is briefly unavailable is
    /// retried until the start deadline; panics, with the server's log, when that passes.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + STARTUP;
        loop {
            match self.launch(deadline) {
                Launch::Ready => return,
                Launch::Exited if Instant::now() < deadline => std::thread::sleep(POLL),
                Launch::Exited => panic!(
                    "redis-server could not start again on port {} within {STARTUP:?}\n{}",
                    self.port,
                    self.log_tail()
                ),
            }
        }
    }

    /// Whether the server process is still running (not killed, not exited by itself).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends one command (`args` as a RESP array of bulk strings) on a fresh connection and
    /// returns the server's reply. `Err` when the server cannot be reached, does not answer
    /// within 5 s, or answers with something that is not RESP.
    pub fn command(&self, args: &[&[u8]]) -> io::Result<Reply> {
        request(self.port, args, IO_TIMEOUT)
    }

    /// Spawns the server on `self.port` and waits until it answers, or exits, or `deadline`
    /// passes (which panics with the log).
    fn launch(&mut self, deadline: Instant) -> Launch {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))
            .expect("the server's folder is writable");
        let log_err = log
            .try_clone()
            .expect("a log file handle can be duplicated");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        match self.wait_ready(deadline) {
            Launch::Ready => Launch::Ready,
            Launch::Exited => {
                // Reap it.
                self.kill();
                Launch::Exited
            }
        }
    }

    /// Polls the freshly spawned server until it answers `PING` with `PONG` and reports this
    /// server's folder as its own (so a process that won the port in between is not taken for
    /// it). Panics, with the log, when `deadline` passes first.
    fn wait_ready(&mut self, deadline: Instant) -> Launch {
        let own_dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        loop {
            if !self.is_running() {
                return Launch::Exited;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = remaining.clamp(POLL, PROBE_TIMEOUT);
            let last = match request(self.port, &[b"PING"], timeout) {
                Ok(Reply::Simple(pong)) if pong == "PONG" => {
                    match request(self.port, &[b"CONFIG", b"GET", b"dir"], timeout) {
                        Ok(Reply::Array(Some(pair)))
                            if pair.get(1)
                                == Some(&Reply::Bulk(Some(
                                    own_dir.as_os_str().as_encoded_bytes().to_vec(),
                                ))) =>
                        {
                            return Launch::Ready;
                        }
                        Ok(reply) => format!("CONFIG GET dir answered {reply:?}"),
                        Err(e) => format!("CONFIG GET dir: {e}"),
                    }
                }
                Ok(reply) => format!("PING answered {reply:?}"),
                Err(e) => format!("PING: {e}"),
            };
            if Instant::now() >= deadline {
                if !self.is_running() {
                    return Launch::Exited;
                }
                panic!(
                    "redis-server on port {} did not become ready within {STARTUP:?} (last: \
                     {last})\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last lines of the server's log (from every start), for failure messages.
    fn log_tail(&self) -> String {
        let path = self.dir.join(LOG_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return format!("--- redis-server log {}: ({e})", path.display()),
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_LINES)..];
        format!(
            "--- redis-server log {} (last lines)\n{}",
            path.display(),
            if tail.is_empty() {
                "(nothing)".to_owned()
            } else {
                tail.join("\n")
            }
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One RESP (version 2) reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A simple string, `+OK`.
    Simple(String),
    /// An error, `-ERR ...` (the text after the `-`).
    Error(String),
    /// An integer, `:1`.
    Integer(i64),
    /// A bulk string; `None` is the nil bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// An array of replies; `None` is the nil array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// `redis-server` on `PATH`, else in `/usr/bin`.
fn locate() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .iter()
        .chain([&PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file that may be executed.
fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// A new, empty folder under the system's temporary folder, unique to this process and call.
fn fresh_dir() -> PathBuf {
    /// Tells apart the servers of one test binary.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tidings-redis-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            // Left over by an earlier process with the same id: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Sends `args` as one command to `127.0.0.1:port` on a new connection and reads one reply,
/// each step bounded by `timeout`.
fn request(port: u16, args: &[&[u8]], timeout: Duration) -> io::Result<Reply> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&encode(args))?;
    read_reply(&mut BufReader::new(stream))
}

/// `args` as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An `InvalidData` error saying what was wrong with the reply.
fn invalid(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad RESP reply: {what}"),
    )
}

/// Reads exactly one reply (nested arrays included) from `input`.
fn read_reply(input: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(input)?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| invalid("an empty line".to_owned()))?;
    let text =
        || String::from_utf8(rest.to_vec()).map_err(|_| invalid(format!("not UTF-8: {rest:?}")));
    let length = || -> io::Result<Option<usize>> {
        let n: i64 = text()?.parse().map_err(|_| {
            invalid(format!(
                "a bad length in {:?}",
                String::from_utf8_lossy(&line)
            ))
        })?;
        match n {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| invalid(format!("a negative length {n}"))),
        }
    };
    match kind {
        b'+' => Ok(Reply::Simple(text()?)),
        b'-' => Ok(Reply::Error(text()?)),
        b':' => {
            let text = text()?;
            let n = text
                .parse()
                .map_err(|_| invalid(format!("a bad integer {text:?}")))?;
            Ok(Reply::Integer(n))
        }
        b'$' => {
            let Some(len) = length()? else {
                return Ok(Reply::Bulk(None));
            };
            if len > MAX_BULK {
                return Err(invalid(format!("a bulk string of {len} bytes")));
            }
            let mut data = vec![0; len + 2];
            input.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(invalid("a bulk string not ended by CRLF".to_owned()));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let Some(len) = length()? else {
                return Ok(Reply::Array(None));
            };
            // No capacity from the untrusted length: each element needs bytes that must arrive.
            let mut items = Vec::new();
            for _ in 0..len {
                items.push(read_reply(input)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(invalid(format!(
            "an unknown type byte {:?}",
            char::from(other)
        ))),
    }
}

/// One line of `input` without its CRLF; `UnexpectedEof` when the connection ends first.
fn read_line(input: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(if line.ends_with(b"\n") {
            invalid(format!(
                "a line not ended by CRLF: {:?}",
                String::from_utf8_lossy(&line)
            ))
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection ended inside a reply",
            )
        });
    }
    line.truncate(line.len() - 2);
    Ok(line)
}
