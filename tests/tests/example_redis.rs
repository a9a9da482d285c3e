//! The `chat` and `notifications` example binaries as two processes each, sharing one hub
//! through a private `redis-server` (`--redis URL`, `common/redis_server.rs`): users on
//! different processes meet in the same rooms, a notification posted to one process reaches a
//! subscriber of the other, and a process whose Redis cannot be reached exits with an error.
//!
//! The binaries are built once per test process with `cargo build --workspace --example chat
//! --example notifications` (the cargo that builds the tests; its JSON messages name the
//! executables), started on port 0, and their port read from their `… listening on
//! http://ADDR/` line; a guard kills them at the end and prints their output when a test failed.
//! Without `redis-server` the tests that need it print that they are skipped and pass
//! (`TIDINGS_REDIS_TESTS=require` makes that a failure).
//!
//! Every wait has a deadline; nothing sleeps to let things happen. A process subscribes to a
//! room's Redis channel asynchronously, after a client's first join there, but always before it
//! publishes a broadcast that was made after that join: so a broadcast that arrives through
//! Redis from a process proves that process's earlier subscriptions are in place, and the tests
//! wait for such a broadcast before relying on a subscription (see each test). The one poll is
//! of the room member counts, which are eventually consistent by design (each process reads
//! the others' figures every fifth of `--presence-timeout`): the client asks again every 250 ms
//! (under the chat's rate limit of 5 messages a second) until the figure is right or the
//! deadline passes.

tidings_tests::runtime_shims!();

#[path = "common/redis_server.rs"]
mod redis_server;

#[macro_use]
#[path = "common/http_sse.rs"]
mod http_sse;

#[allow(dead_code)]
#[path = "common/json_peer.rs"]
mod json_peer;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use json_peer::Peer;
use tokio_rt as rt;

/// Overall bound of the clients' part of every test.
const GUARD: Duration = Duration::from_secs(60);
/// How long one expected message, event or answer may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long a process may take to start listening (or, unable to reach Redis, to exit).
const STARTUP: Duration = Duration::from_secs(20);
/// The presence timeout the processes run with: they read each other's counts every 200 ms.
const PRESENCE_TIMEOUT: &str = "1";
/// The interval of the member-count poll (the chat allows 5 messages a second).
const COUNT_POLL: Duration = Duration::from_millis(250);

/// `fut`, which must finish within [`WAIT`].
async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

// ---- the example binaries ------------------------------------------------------------------

/// The built example executables.
struct Binaries {
    chat: PathBuf,
    notifications: PathBuf,
}

/// Builds the examples once for the whole test binary (the tests run in parallel threads; the
/// others wait for the first).
fn binaries() -> &'static Binaries {
    static BUILT: OnceLock<Binaries> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> Binaries {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace");
    let mut cargo = Command::new(env!("CARGO"));
    // `--workspace`: the features of the whole workspace, as `cargo test --workspace` builds the
    // examples, so that under it this build finds them done.
    cargo.current_dir(root).args([
        "build",
        "--workspace",
        "--example",
        "chat",
        "--example",
        "notifications",
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    // Without the variables cargo set for this test process (its package's name, manifest
    // folder, …): build scripts that watch them (ring's does) would see them changed, and
    // every build, this one and the next `cargo test`, would build those crates again.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_tests = ["CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name);
        if set_for_tests {
            cargo.env_remove(name);
        }
    }
    let output = cargo.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build of the examples failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut chat = None;
    let mut notifications = None;
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        match message["target"]["name"].as_str() {
            Some("chat") => chat = Some(PathBuf::from(executable)),
            Some("notifications") => notifications = Some(PathBuf::from(executable)),
            _ => {}
        }
    }
    Binaries {
        chat: chat.expect("cargo named the chat executable"),
        notifications: notifications.expect("cargo named the notifications executable"),
    }
}

/// One line of a process's output.
struct Line {
    stderr: bool,
    text: String,
}

/// A running example process, its output read line by line by two threads (which see the end
/// of the output when the process exits and drops its pipes).
struct Process {
    name: String,
    child: Child,
    /// Every line so far, for failure messages.
    log: Arc<Mutex<String>>,
    /// The lines as they come; disconnected once the process has closed its output.
    lines: Receiver<Line>,
}

impl Process {
    fn spawn(binary: &Path, args: &[&str]) -> Process {
        let name = binary.file_name().map_or_else(
            || binary.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (pipe, stderr) in [
            (Box::new(stdout) as Box<dyn Read + Send>, false),
            (Box::new(stderr), true),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(pipe).lines() {
                    let Ok(text) = text else { break };
                    {
                        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                        log.push_str(if stderr { "[stderr] " } else { "" });
                        log.push_str(&text);
                        log.push('\n');
                    }
                    // The receiver may be gone; keep draining the pipe all the same.
                    let _ = tx.send(Line { stderr, text });
                }
            });
        }
        Process {
            name,
            child,
            log,
            lines,
        }
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next line, within what is left until `deadline`; `None` once the output ended.
    fn next_line(&self, deadline: Instant) -> Option<Line> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: nothing more within {STARTUP:?}; its output:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// Waits for the end of its output and its exit; its exit status.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STARTUP;
        while self.next_line(deadline).is_some() {}
        self.child.wait().expect("wait for the process")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Fails only when it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- output of {}:\n{}", self.name, self.log());
        }
    }
}

/// An example process serving on a loopback port, with the Redis backend.
struct Node {
    /// Killed when the node is dropped.
    _process: Process,
    port: u16,
}

impl Node {
    /// Starts `binary 127.0.0.1:0 --redis URL --presence-timeout 1` and returns once it
    /// listens (having said that its backend is that Redis).
    fn start(binary: &Path, redis: &str) -> Node {
        let process = Process::spawn(
            binary,
            &[
                "127.0.0.1:0",
                "--redis",
                redis,
                "--presence-timeout",
                PRESENCE_TIMEOUT,
            ],
        );
        let deadline = Instant::now() + STARTUP;
        let mut backend = None;
        loop {
            let Some(line) = process.next_line(deadline) else {
                panic!(
                    "{} exited before it listened; its output:\n{}",
                    process.name,
                    process.log()
                );
            };
            if line.stderr {
                continue;
            }
            if let Some(which) = line.text.strip_prefix("hub backend: ") {
                backend = Some(which.to_owned());
            } else if let Some((_, rest)) = line.text.split_once(" listening on http://") {
                let addr = rest.split('/').next().unwrap_or_default();
                let addr: SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("{:?}: no address ({e})", line.text));
                let backend = backend.expect("the backend is named before the listening line");
                assert_eq!(
                    backend,
                    format!("redis {redis} (presence timeout 1s)"),
                    "{}",
                    process.name
                );
                return Node {
                    port: addr.port(),
                    _process: process,
                };
            }
        }
    }
}

/// The Redis server and two nodes of `binary` on it; `None` (skipped) without `redis-server`.
fn cluster(binary: fn(&Binaries) -> &Path) -> Option<(redis_server::RedisServer, Node, Node)> {
    let redis = redis_server::start()?;
    let binary = binary(binaries());
    let one = Node::start(binary, &redis.url());
    let two = Node::start(binary, &redis.url());
    Some((redis, one, two))
}

// ---- chat ------------------------------------------------------------------------------------

type Ws = Peer<async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>>;

/// The chat's answer to the unknown type of a fence (unused here, but `Peer` wants it).
const UNKNOWN: &str = "unknown message type: fence";

fn joined(user: &str, room: &str) -> Value {
    json!({"type": "user_joined", "data": {"user": user, "room": room}})
}

fn left(user: &str, room: &str) -> Value {
    json!({"type": "user_left", "data": {"user": user, "room": room}})
}

/// The room a message is about: a chat's payload room, an announcement's data room.
fn room_of(msg: &Value) -> Option<&str> {
    msg["payload"]["room"]
        .as_str()
        .or_else(|| msg["data"]["room"].as_str())
}

/// The member count of `room` in a `rooms` event (0 when it is not listed).
fn members(rooms: &Value, room: &str) -> u64 {
    rooms["data"]["rooms"]
        .as_array()
        .expect("a rooms list")
        .iter()
        .find(|r| r["name"] == room)
        .map_or(0, |r| r["members"].as_u64().expect("a member count"))
}

/// A chat client of `user` on `port`, past its own `user_joined` for `general` (its first
/// message but for `rooms` pushes of the other process, which may come in between its
/// registration and its join).
async fn chat_client(port: u16, user: &str, name: &'static str) -> Ws {
    let ws = rt::their_connect(&format!("ws://127.0.0.1:{port}/ws?user={user}")).await;
    let mut peer = Peer::new(ws, name, UNKNOWN);
    let first = within("the first message", async {
        loop {
            let msg = peer.recv().await;
            if msg["type"] != "rooms" {
                return msg;
            }
        }
    })
    .await;
    assert_eq!(first, joined(user, "general"), "{name}");
    peer
}

/// The next message about room `room`, skipping `rooms` pushes and the announcements of the
/// room `general` (everyone's first room, whose cross-node announcements race with the
/// processes' subscriptions at connect); any other message fails the test.
async fn next_in(peer: &mut Ws, room: &str) -> Value {
    within(&format!("{}: a message in {room}", peer.name), async {
        loop {
            let msg = peer.recv().await;
            if msg["type"] == "rooms" || room_of(&msg) == Some("general") {
                continue;
            }
            assert_eq!(room_of(&msg), Some(room), "{}: unexpected {msg}", peer.name);
            return msg;
        }
    })
    .await
}

/// The next message in `room` must be `expected`.
async fn want_in(peer: &mut Ws, room: &str, expected: Value) {
    let got = next_in(peer, room).await;
    assert_eq!(got, expected, "{}", peer.name);
}

/// The next message in `room` must be a chat of `user` saying `text` (timestamp aside).
async fn want_chat(peer: &mut Ws, room: &str, user: &str, text: &str) {
    let mut got = next_in(peer, room).await;
    let stamp = got["payload"]
        .as_object_mut()
        .and_then(|p| p.remove("timestamp"))
        .unwrap_or_else(|| panic!("{}: a chat without a timestamp", peer.name));
    humantime::parse_rfc3339(stamp.as_str().expect("a string timestamp"))
        .unwrap_or_else(|e| panic!("{}: timestamp {stamp} is not RFC 3339: {e}", peer.name));
    assert_eq!(
        got,
        json!({"type": "chat", "payload": {"room": room, "user": user, "text": text}}),
        "{}",
        peer.name
    );
}

/// Waits for a `rooms` event that lists `room` (with any count), skipping other messages
/// (`rooms` pushes without it, announcements in `general`).
async fn until_listed(peer: &mut Ws, room: &str) {
    within(&format!("{}: {room} listed", peer.name), async {
        loop {
            let msg = peer.recv().await;
            if msg["type"] == "rooms" {
                if members(&msg, room) > 0 {
                    return;
                }
            } else {
                assert_eq!(
                    room_of(&msg),
                    Some("general"),
                    "{}: unexpected {msg}",
                    peer.name
                );
            }
        }
    })
    .await;
}

/// Asks for the room list every [`COUNT_POLL`] until a `rooms` event (an answer or a push)
/// counts `count` members in `room` across the processes.
async fn until_count(peer: &mut Ws, room: &str, count: u64) {
    let what = format!(
        "{}: {count} member(s) of {room} across the processes",
        peer.name
    );
    within(&what, async {
        loop {
            peer.send_json(json!({"type": "list_rooms"})).await;
            loop {
                let msg = peer.recv().await;
                if msg["type"] == "rooms" {
                    if members(&msg, room) == count {
                        return;
                    }
                    break;
                }
                assert_eq!(
                    room_of(&msg),
                    Some("general"),
                    "{}: unexpected {msg}",
                    peer.name
                );
            }
            tokio::time::sleep(COUNT_POLL).await;
        }
    })
    .await;
}

/// alice on one process, bob on the other: joins, chat messages both ways, an explicit leave
/// and a disconnect are announced across the processes, and the member counts add up.
#[test]
fn chat_rooms_span_two_processes() {
    let Some((_redis, one, two)) = cluster(|b| &b.chat) else {
        return;
    };
    let (port1, port2) = (one.port, two.port);
    rt::run(GUARD, async move {
        let mut alice = chat_client(port1, "alice", "alice").await;
        let mut bob = chat_client(port2, "bob", "bob").await;

        // bob joins r first. Process 2 subscribes to r's channel before it publishes anything
        // made after the join, such as the `rooms` push of the join, which goes to everyone
        // (every process hears that channel): alice seeing r listed proves process 2 will get
        // what process 1 sends to r.
        bob.send_json(json!({"type": "join_room", "payload": {"room": "r"}}))
            .await;
        want_in(&mut bob, "r", joined("bob", "r")).await;
        until_listed(&mut alice, "r").await;

        // alice's join is announced to bob across the processes; it also proves process 1 is
        // subscribed to r (it published the announcement after subscribing).
        alice
            .send_json(json!({"type": "join_room", "payload": {"room": "r"}}))
            .await;
        want_in(&mut alice, "r", joined("alice", "r")).await;
        want_in(&mut bob, "r", joined("alice", "r")).await;

        alice
            .send_json(json!({"type": "chat", "payload": {"room": "r", "text": "hello from 1"}}))
            .await;
        want_chat(&mut alice, "r", "alice", "hello from 1").await;
        want_chat(&mut bob, "r", "alice", "hello from 1").await;
        bob.send_json(json!({"type": "chat", "payload": {"room": "r", "text": "hi from 2"}}))
            .await;
        want_chat(&mut bob, "r", "bob", "hi from 2").await;
        want_chat(&mut alice, "r", "bob", "hi from 2").await;

        // The counts add up the processes' members (within the presence refresh).
        until_count(&mut bob, "r", 2).await;
        until_count(&mut alice, "r", 2).await;

        // An explicit leave is announced to bob; a join after it too (process 1 unsubscribed
        // from r when it lost its last member there, and subscribes again).
        alice
            .send_json(json!({"type": "leave_room", "payload": {"room": "r"}}))
            .await;
        want_in(&mut alice, "r", left("alice", "r")).await;
        want_in(&mut bob, "r", left("alice", "r")).await;
        alice
            .send_json(json!({"type": "join_room", "payload": {"room": "r"}}))
            .await;
        want_in(&mut alice, "r", joined("alice", "r")).await;
        want_in(&mut bob, "r", joined("alice", "r")).await;

        // A disconnect counts as leaving every room: bob hears alice leave r, and the counts
        // drop.
        alice.close().await;
        want_in(&mut bob, "r", left("alice", "r")).await;
        until_count(&mut bob, "r", 1).await;
        until_count(&mut bob, "general", 1).await;
    });
    drop((one, two));
}

// ---- notifications ---------------------------------------------------------------------------

http_client!();

/// `POST /api/notify` to `port` for `user` (`""`: everyone); the notification's id.
async fn notify(port: u16, user: &str, title: &str, body: &str) -> String {
    let request = json!({"user_id": user, "title": title, "body": body}).to_string();
    let headers = [("Content-Type", "application/json")];
    let sent = HttpClient::send(port, "POST", "/api/notify", &headers, request.as_bytes());
    let (head, answer) = within("the answer to a POST", async { sent.await.json().await }).await;
    assert_eq!(head.status, 200, "{answer}");
    let id = answer["id"].as_str().expect("an id").to_owned();
    // Every notification goes through Redis, to this process's subscribers too: none is
    // queued by the POST itself. (Above 0: the backend took the notification for one made
    // while Redis was lost and delivered it to this process's subscribers only.)
    assert_eq!(
        answer,
        json!({"id": id, "delivered": 0}),
        "a notification not sent through Redis"
    );
    id
}

/// `data` without its timestamp, which must be RFC 3339.
fn without_timestamp(data: &Value) -> Value {
    let mut data = data.clone();
    let stamp = data
        .as_object_mut()
        .and_then(|n| n.remove("timestamp"))
        .unwrap_or_else(|| panic!("no timestamp in {data}"));
    humantime::parse_rfc3339(stamp.as_str().expect("a string timestamp"))
        .unwrap_or_else(|e| panic!("timestamp {stamp} is not RFC 3339: {e}"));
    data
}

/// An SSE subscriber of `user` on `port` (with `headers`), its response head arrived.
async fn sse(port: u16, user: &str, headers: &[(&str, &str)]) -> HttpClient {
    within("an event stream's head", async {
        let mut client = HttpClient::get(port, &format!("/events?user_id={user}"), headers).await;
        let head = client.head().await;
        assert_eq!(head.status, 200);
        assert_eq!(head.media_type(), Some("text/event-stream"));
        client
    })
    .await
}

/// The next SSE event must be the notification `id` with `title` and `body`; its event id.
async fn expect_sse(client: &mut HttpClient, id: &str, title: &str, body: &str) -> u64 {
    let event = within(&format!("the event {title:?}"), client.event()).await;
    assert_eq!(event.event, "notification", "{event:?}");
    assert_eq!(
        without_timestamp(&event.json()),
        json!({"id": id, "title": title, "body": body}),
        "{event:?}"
    );
    event.number()
}

/// The next WebSocket message must be the notification `id` with `title` and `body`.
async fn expect_ws(peer: &mut Ws, id: &str, title: &str, body: &str) {
    let got = within(&format!("{}: {title:?}", peer.name), peer.recv()).await;
    assert_eq!(got["type"], "notification", "{}: {got}", peer.name);
    assert_eq!(
        without_timestamp(&got["data"]),
        json!({"id": id, "title": title, "body": body}),
        "{}",
        peer.name
    );
}

/// A notification posted to one process reaches the user's SSE and WebSocket subscribers on
/// the other, one to everyone too, and the history in Redis replays to a stream reconnecting to
/// the first process with `Last-Event-ID`.
#[test]
fn notifications_cross_two_processes() {
    let Some((_redis, one, two)) = cluster(|b| &b.notifications) else {
        return;
    };
    let (port1, port2) = (one.port, two.port);
    rt::run(GUARD, async move {
        // carol over SSE and dave over WebSocket, on process 2. Their subscriptions are local at
        // once, but process 2 subscribes to their rooms' channels asynchronously: a
        // notification posted to process 2 itself goes through Redis and comes back only
        // through those subscriptions (which process 2 makes before it publishes what was
        // posted after the subscriber joined), so its arrival proves them in place.
        let mut carol = sse(port2, "carol", &[]).await;
        let warm = notify(port2, "carol", "warm-up", "").await;
        let seen = expect_sse(&mut carol, &warm, "warm-up", "").await;
        assert_eq!(carol.response.events.retry, Some(3000));

        let url = format!("ws://127.0.0.1:{port2}/ws/notifications?user_id=dave");
        let mut dave = Peer::new(rt::their_connect(&url).await, "dave", UNKNOWN);
        dave.send_json(json!({"type": "ping", "id": 1})).await;
        within("dave's pong", dave.expect(json!({"type": "pong", "id": 1}))).await;
        let warm = notify(port2, "dave", "warm-up", "").await;
        expect_ws(&mut dave, &warm, "warm-up", "").await;

        // Posted to process 1: to carol, then to everyone.
        let for_carol = notify(port1, "carol", "t", "b").await;
        let first = expect_sse(&mut carol, &for_carol, "t", "b").await;
        assert!(first > seen, "event ids increase across the processes");
        let for_all = notify(port1, "", "Maintenance", "at noon").await;
        let second = expect_sse(&mut carol, &for_all, "Maintenance", "at noon").await;
        assert!(second > first);
        // dave got only the one to everyone (the WebSocket's messages come in order).
        expect_ws(&mut dave, &for_all, "Maintenance", "at noon").await;

        // carol reconnects to process 1 with the id of the warm-up: process 1 replays what
        // came after it from the history in Redis, with the same event ids.
        drop(carol);
        let seen_text = seen.to_string();
        let mut back = sse(port1, "carol", &[("Last-Event-ID", &seen_text)]).await;
        assert_eq!(expect_sse(&mut back, &for_carol, "t", "b").await, first);
        assert_eq!(
            expect_sse(&mut back, &for_all, "Maintenance", "at noon").await,
            second
        );
    });
    drop((one, two));
}

// ---- Redis unreachable -----------------------------------------------------------------------

/// With `--redis` at a port nobody listens on, each example says that it cannot connect to
/// Redis and exits with failure, without listening. (No `redis-server` is needed.)
#[test]
fn unreachable_redis_fails_at_start() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again: connections to it are refused
    let url = format!("redis://127.0.0.1:{port}");
    let binaries = binaries();
    for (binary, name) in [
        (&binaries.chat, "chat"),
        (&binaries.notifications, "notifications"),
    ] {
        let mut process = Process::spawn(binary, &["127.0.0.1:0", "--redis", &url]);
        let status = process.exit();
        let log = process.log();
        assert_eq!(status.code(), Some(1), "{name}: {status}; output:\n{log}");
        let prefix = format!("[stderr] {name}: cannot connect to Redis: ");
        assert!(
            log.lines().any(|l| l.starts_with(&prefix)),
            "{name}: no {prefix:?} line in its output:\n{log}"
        );
        assert!(!log.contains("listening"), "{name} listened:\n{log}");
    }
}
