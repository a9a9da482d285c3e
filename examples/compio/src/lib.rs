//! An echo server on a completion-based runtime: the sans-IO core of tidings driven by
//! [compio](https://docs.rs/compio) on io_uring (epoll where the kernel has no io_uring). Every
//! text or binary message comes back with the same opcode, on any path.
//!
//! ```sh
//! cargo run --release -p tidings-compio-example -- 127.0.0.1:9001
//! ```
//!
//! The binary `compio_echo_server` is [`run`] on a compio runtime.
//!
//! The core needs nothing from the runtime but bytes and a clock, so a completion-based one
//! drives it as easily as a readiness-based one. What changes is the buffers: io_uring reads into
//! and writes from buffers it owns until the operation completes. Each connection's task:
//!
//! 1. reads straight into the core's input buffer (taken out of the connection while the read is
//!    in flight, handed back with [`Connection::received`]), appending after any partial frame;
//! 2. takes the events: a message is sent back ([`Connection::send`]) before the next event is
//!    looked at, so the echo precedes anything the peer's next frame provokes;
//! 3. copies the queued output into one owned buffer ([`Connection::poll_transmit`]) and writes it
//!    whole;
//! 4. when the core has a deadline (the closing handshake's timeout), reads with that deadline into
//!    a buffer of its own instead, so that a read cancelled at the deadline loses no byte the
//!    connection had.
//!
//! One thread runs every connection. The runtime submits the reads and writes of all of them
//! that are ready in one `io_uring_enter` and reaps their completions from shared memory, so
//! under load the server makes fewer system calls than it handles messages (BENCHMARKS.md).

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use compio::BufResult;
use compio::buf::{IntoInner, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};
use tidings_core::handshake::{
    AcceptOptions, HandshakeConfig, HandshakeError, HttpResponse, ServerHandshake, Status,
};
use tidings_core::{Config, Connection, Event};

/// The least room made in the input buffer before a read.
const READ: usize = 64 * 1024;
/// The first room made for an upgrade request's head.
const HEAD: usize = 4 * 1024;
/// The pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// Accepts connections on `listener` and serves each in a task of its own, on the compio
/// runtime this is called in. Never returns: an error of one accept (a connection reset before
/// it was taken, no descriptor left) is logged and the loop goes on after a pause, as hyper's
/// and axum's servers do, so that the connections being served are not dropped.
pub async fn run(listener: TcpListener) -> ! {
    // One permessage-deflate config with one compressor pool for every connection (see
    // `tidings_core::ext::deflate`).
    let handshake = HandshakeConfig::new().deflate(Some(
        DeflateConfig::new().compressor_pool(CompressorPool::new()),
    ));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                compio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let handshake = handshake.clone();
        compio::runtime::spawn(async move {
            if let Err(e) = serve(stream, &handshake).await {
                eprintln!("connection ended with an error: {e}");
            }
        })
        .detach();
    }
}

/// Serves one connection: the upgrade handshake, then every message echoed until the close.
pub async fn serve(stream: TcpStream, handshake: &HandshakeConfig) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let config = Config::default().max_message_size(Some(64 << 20));
    let Some(mut conn) = accept(&stream, handshake, config).await? else {
        return Ok(());
    };
    // The output buffer: owned by the kernel while a write is in flight, handed back after.
    let mut out: Vec<u8> = Vec::new();
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(message) => {
                    let _ = conn.send(message);
                }
                Event::Closed(outcome) if outcome.is_error() => {
                    eprintln!("closed: {} {:?}", outcome.code, outcome.error);
                }
                _ => {}
            }
        }
        if conn.queued_bytes() > 0 {
            out.clear();
            conn.poll_transmit(&mut out);
            let BufResult(written, buf) = (&stream).write_all(out).await;
            out = buf;
            match written {
                Ok(()) => {}
                Err(e) if is_disconnect(&e) => conn.receive_eof(Instant::now()),
                Err(e) => return Err(e),
            }
            continue;
        }
        if conn.should_close_transport() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            let _ = (&stream).shutdown().await;
            return Ok(());
        }
        let read = match conn.poll_timeout() {
            None => read_into_connection(&stream, &mut conn).await,
            Some(deadline) => read_until(&stream, &mut conn, deadline).await,
        };
        match read {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) => conn.receive_eof(Instant::now()),
            Err(e) => return Err(e),
        }
    }
}

/// Reads once, straight into the connection's input buffer, after what it holds.
async fn read_into_connection(stream: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    let mut input = std::mem::take(conn.input_buffer());
    input.reserve(conn.input_needed().max(READ));
    // `uninit`: the kernel writes after the bytes the buffer holds, not over them.
    let BufResult(read, input) = (&*stream).read(input.uninit()).await;
    *conn.input_buffer() = input.into_inner();
    match read? {
        0 => conn.receive_eof(Instant::now()),
        _ => conn.received(Instant::now()),
    }
    Ok(())
}

/// Reads once with the core's deadline, into a buffer of its own; the deadline passed when
/// nothing came by then.
async fn read_until(
    stream: &TcpStream,
    conn: &mut Connection,
    deadline: Instant,
) -> io::Result<()> {
    if deadline <= Instant::now() {
        conn.handle_timeout(Instant::now());
        return Ok(());
    }
    let mut reader = stream;
    let read = reader.read(BytesMut::with_capacity(READ));
    match compio::time::timeout_at(deadline, read).await {
        Ok(BufResult(read, buf)) => match read? {
            0 => conn.receive_eof(Instant::now()),
            _ => conn.receive(Instant::now(), &buf),
        },
        Err(_elapsed) => conn.handle_timeout(Instant::now()),
    }
    Ok(())
}

/// Reads the upgrade request and answers it: the connection when it was accepted (with the
/// bytes that came after the request's head already in it), `None` when it was refused with an
/// HTTP error or the peer left first.
async fn accept(
    stream: &TcpStream,
    handshake: &HandshakeConfig,
    config: Config,
) -> io::Result<Option<Connection>> {
    let mut head = BytesMut::with_capacity(HEAD);
    let (answer, conn) = loop {
        if head.len() == head.capacity() {
            head.reserve(HEAD);
        }
        let BufResult(read, buf) = (&*stream).read(head.uninit()).await;
        head = buf.into_inner();
        if read? == 0 {
            return Ok(None);
        }
        match ServerHandshake::parse(&head, handshake) {
            Ok(Status::Partial) => continue,
            Ok(Status::Complete(request)) => match request.accept(AcceptOptions::default()) {
                Ok((response, agreed)) => {
                    break (
                        response.encode(),
                        Some(agreed.into_connection(config, Instant::now())),
                    );
                }
                Err(_) => break (HttpResponse::new(500).encode(), None),
            },
            Err(e) => break (refusal(&e).encode(), None),
        }
    };
    let BufResult(written, _) = (&*stream).write_all(answer).await;
    written?;
    Ok(conn)
}

/// The HTTP answer to a refused upgrade request.
fn refusal(e: &HandshakeError) -> HttpResponse {
    e.http_response().unwrap_or_else(|| HttpResponse::new(400))
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
