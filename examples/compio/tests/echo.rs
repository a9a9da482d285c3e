//! The compio echo over loopback, in both roles, against the blocking std peer of the examples:
//! every size of message (those that span many reads among them) comes back intact, and the
//! close handshake completes. The client's handshake fails cleanly on a refusal.

use std::net::TcpListener;
use std::thread;

use futures_channel::oneshot;
use futures_util::future::{Either, select};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tidings_core::handshake::{AcceptOptions, HandshakeConfig};
use tidings_core::{Config, Event, Message};
use tidings_examples::blocking;

/// Runs the server on its own thread and compio runtime; stops it when dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tidings_compio_example::runtime().expect("runtime");
            runtime.block_on(async move {
                let listener = compio::net::TcpListener::from_std(listener).expect("listener");
                let server = Box::pin(tidings_compio_example::run(listener));
                match select(server, stopped).await {
                    Either::Left((never, _)) => never,
                    Either::Right(_) => {}
                }
            });
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn next_message(ws: &mut blocking::BlockingWebSocket) -> Message {
    loop {
        match ws.next_event().expect("I/O") {
            Some(Event::Message(message)) => return message,
            Some(_) => continue,
            None => panic!("the connection ended before the echo"),
        }
    }
}

/// The std peer's configuration: a lost echo fails the test within the idle timeout instead of
/// hanging it.
fn peer_config() -> Config {
    Config::default()
        .max_message_size(Some(64 << 20))
        .idle_timeout(Some(Duration::from_secs(10)))
}

#[test]
fn echoes_every_size_and_closes_cleanly() {
    let server = Server::start();
    let mut ws = blocking::connect(
        &format!("ws://{}/", server.addr),
        peer_config(),
        &HandshakeConfig::new(),
    )
    .expect("connect");
    exchange_and_close(&mut ws);
}

/// The client role: the compio client (`connect`, then `echo`) against the std server, which
/// sends, checks the echoes and closes; the client's `echo` ends once the server closed.
#[test]
fn client_echoes_every_size_and_closes_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut ws = blocking::accept(
            stream,
            peer_config(),
            &AcceptOptions::default(),
            &HandshakeConfig::new(),
        )
        .expect("handshake");
        // A panic here drops the connection, which ends the client's `echo` below.
        exchange_and_close(&mut ws);
    });
    let runtime = tidings_compio_example::runtime().expect("runtime");
    runtime.block_on(async move {
        let config = Config::default().max_message_size(Some(64 << 20));
        let (stream, conn) = tidings_compio_example::connect(
            &format!("ws://{addr}/echo?q=1"),
            config,
            &HandshakeConfig::new(),
        )
        .await
        .expect("connect");
        tidings_compio_example::echo(&stream, conn)
            .await
            .expect("echo");
    });
    server.join().expect("the server's checks");
}

/// A refused upgrade (a `404` answer) is an `InvalidData` error of `connect`.
#[test]
fn client_handshake_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "the client left before its request was complete");
            head.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .expect("write");
    });
    let runtime = tidings_compio_example::runtime().expect("runtime");
    let Err(error) = runtime.block_on(tidings_compio_example::connect(
        &format!("ws://{addr}/"),
        Config::default(),
        &HandshakeConfig::new(),
    )) else {
        panic!("the handshake succeeded against a 404");
    };
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains("404"), "{error}");
    server.join().expect("server");
}

/// Sends messages of every size and a burst of small ones, checks each echo, then closes with
/// 1000 and waits for the close to complete.
fn exchange_and_close(ws: &mut blocking::BlockingWebSocket) {
    // Around the frame header's length forms (125/126, 65535/65536) and past the server's read
    // size (64 KiB), so that a frame arrives over many reads appended to what came before.
    for size in [0, 1, 125, 126, 65_535, 65_536, 200_000, 3 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        ws.conn().send_binary(&payload).expect("send");
        match next_message(ws) {
            Message::Binary(echo) => assert!(echo[..] == payload[..], "binary of {size} bytes"),
            other => panic!("a binary echo of {size} bytes, got {other:?}"),
        }
    }
    let text = "ünïcödé ✓ ".repeat(10_000);
    ws.conn().send_text(&text).expect("send");
    match next_message(ws) {
        Message::Text(echo) => assert_eq!(echo.as_str(), text),
        other => panic!("a text echo, got {other:?}"),
    }
    // Many small messages at once: one read holds several frames, one write several echoes.
    for i in 0..100 {
        ws.conn().send_text(&format!("message {i}")).expect("send");
    }
    for i in 0..100 {
        match next_message(ws) {
            Message::Text(echo) => assert_eq!(echo.as_str(), format!("message {i}")),
            other => panic!("text echo {i}, got {other:?}"),
        }
    }
    ws.conn()
        .close(Instant::now(), 1000.into(), "done")
        .expect("close");
    let mut outcome = None;
    while let Some(event) = ws.next_event().expect("I/O") {
        if let Event::Closed(closed) = event {
            outcome = Some(closed);
        }
    }
    let outcome = outcome.expect("a close event");
    assert!(outcome.is_normal(), "{outcome:?}");
}
