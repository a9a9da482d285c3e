//! The compio echo server against the blocking std client of the examples, over loopback: every
//! size of message (those that span many reads among them) comes back intact, and the close
//! handshake completes.

use std::net::TcpListener;
use std::thread;

use futures_channel::oneshot;
use futures_util::future::{Either, select};
use tidings_core::handshake::HandshakeConfig;
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

#[test]
fn echoes_every_size_and_closes_cleanly() {
    let server = Server::start();
    // A lost echo fails the test within the idle timeout instead of hanging it.
    let config = Config::default()
        .max_message_size(Some(64 << 20))
        .idle_timeout(Some(std::time::Duration::from_secs(10)));
    let mut ws = blocking::connect(
        &format!("ws://{}/", server.addr),
        config,
        &HandshakeConfig::new(),
    )
    .expect("connect");
    // Around the frame header's length forms (125/126, 65535/65536) and past the server's read
    // size (64 KiB), so that a frame arrives over many reads appended to what came before.
    for size in [0, 1, 125, 126, 65_535, 65_536, 200_000, 3 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        ws.conn().send_binary(&payload).expect("send");
        match next_message(&mut ws) {
            Message::Binary(echo) => assert!(echo[..] == payload[..], "binary of {size} bytes"),
            other => panic!("a binary echo of {size} bytes, got {other:?}"),
        }
    }
    let text = "ünïcödé ✓ ".repeat(10_000);
    ws.conn().send_text(&text).expect("send");
    match next_message(&mut ws) {
        Message::Text(echo) => assert_eq!(echo.as_str(), text),
        other => panic!("a text echo, got {other:?}"),
    }
    // Many small messages at once: one read holds several frames, one write several echoes.
    for i in 0..100 {
        ws.conn().send_text(&format!("message {i}")).expect("send");
    }
    for i in 0..100 {
        match next_message(&mut ws) {
            Message::Text(echo) => assert_eq!(echo.as_str(), format!("message {i}")),
            other => panic!("text echo {i}, got {other:?}"),
        }
    }
    ws.conn()
        .close(std::time::Instant::now(), 1000.into(), "done")
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
