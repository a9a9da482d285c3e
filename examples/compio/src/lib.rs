//! An echo on a completion-based runtime, in both roles: the sans-IO core of tidings driven by
//! [compio](https://docs.rs/compio) on io_uring (epoll where the kernel has no io_uring). Every
//! text or binary message comes back with the same opcode, on any path.
//!
//! ```sh
//! cargo run --release -p tidings-compio-example -- 127.0.0.1:9001
//! cargo run --release -p tidings-compio-example --bin compio_autobahn_client -- ws://127.0.0.1:9001 tidings
//! ```
//!
//! The binary `compio_echo_server` is [`run`] on the [`runtime`] this crate sets up;
//! `compio_autobahn_client`, the Autobahn TestSuite's client driver, opens each case with
//! [`connect`] and answers it with [`echo`]. Both roles share one loop, [`drive`].
//!
//! The core needs nothing from the runtime but bytes and a clock, so a completion-based one
//! drives it as easily as a readiness-based one. What changes is the buffers: io_uring reads into
//! and writes from buffers it owns until the operation completes. Each connection's task reads
//! and writes at once:
//!
//! 1. the reading side reads straight into the core's input buffer (taken out of the connection
//!    while the read is in flight, handed back with [`Connection::received`]), appending after any
//!    partial frame, then takes the events: a message is sent back ([`Connection::send`]) before
//!    the next event is looked at, so the echo precedes anything the peer's next frame provokes;
//!    it pauses while more than 1 MiB of output waits for the peer;
//! 2. the writing side takes the queued output as owned chunks ([`Connection::transmit_owned`]:
//!    no copy, a large echo is the very buffer its message was read into) and writes them with one
//!    vectored write, then closes the TCP connection once the connection is over;
//! 3. when the core has a deadline (the closing handshake's timeout), the reading side reads with
//!    that deadline into a buffer of its own instead, so that a read cancelled at the deadline
//!    loses no byte the connection had.
//!
//! One thread runs every connection. The runtime submits the reads and writes of all of them
//! that are ready in one `io_uring_enter` and reaps their completions from shared memory, so
//! under load the server makes fewer system calls than it handles messages (BENCHMARKS.md).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::buf::{IntoInner, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use futures_util::future::try_join;
use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};
use tidings_core::handshake::{
    AcceptOptions, ClientHandshake, ClientRequest, HandshakeConfig, HandshakeError, HttpResponse,
    ServerHandshake, Status, generate_key,
};
use tidings_core::{Config, Connection, Event, Message};

/// The room made in the input buffer before a read, when it has less than `MIN_READ` left.
const READ: usize = 64 * 1024;
/// Below this much spare room the input buffer is grown before a read.
const MIN_READ: usize = 4 * 1024;
/// The most room made ahead for a frame whose header announced more (a peer could announce a
/// large frame and send nothing: room beyond this is made as the bytes arrive).
const MAX_AHEAD: usize = 2 << 20;
/// The first room made for an upgrade request's head.
const HEAD: usize = 4 * 1024;
/// Output queued and unwritten above which a connection stops reading (it goes on once the
/// peer has taken some): what an echo to a peer that does not read can hold, beyond one message.
const MAX_QUEUED: usize = 1 << 20;
/// The pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// A compio runtime for a thread that runs every connection: io_uring told that one thread
/// submits (`IORING_SETUP_SINGLE_ISSUER`) and that completions' kernel work may wait until that
/// thread next enters the kernel (`DEFER_TASKRUN`, `COOP_TASKRUN`), instead of interrupting it
/// for each one. Kernels without these flags (before 6.1) fall back to epoll (`polling`).
///
/// # Errors
///
/// When the runtime cannot be made (no io_uring and no epoll, no memory).
pub fn runtime() -> io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .single_issuer(true)
        .defer_taskrun(true)
        .coop_taskrun(true)
        .taskrun_flag(true);
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

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
    let Some(conn) = accept(&stream, handshake, config).await? else {
        return Ok(());
    };
    echo(&stream, conn).await
}

/// Opens a WebSocket to a `ws://` URL: the TCP connection (`TCP_NODELAY`), then the upgrade
/// handshake of RFC 6455 §4.1 with the extensions `handshake` offers. The connection returned
/// already holds any frames the server sent right after its `101`.
///
/// # Errors
///
/// An I/O error of the connection; `InvalidData` for a URL the core refuses or an answer that
/// fails the handshake's checks (RFC 6455 §4.1), `Unsupported` for `wss://` (this example
/// speaks no TLS), `UnexpectedEof` when the server leaves before it answers.
pub async fn connect(
    url: &str,
    config: Config,
    handshake: &HandshakeConfig,
) -> io::Result<(TcpStream, Connection)> {
    let (request, info) = ClientRequest::from_url(url, generate_key()).map_err(invalid)?;
    if info.secure {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "wss:// needs TLS; this example speaks plain ws:// only",
        ));
    }
    let hs = ClientHandshake::new(request, handshake).map_err(invalid)?;
    let stream = TcpStream::connect((info.host.as_str(), info.port)).await?;
    stream.set_nodelay(true)?;
    let BufResult(written, _) = (&stream).write_all(hs.encode()).await;
    written?;
    match read_head(&stream, |head| hs.parse_response(head)).await? {
        Some(Ok((_response, agreed))) => {
            let conn = agreed.into_connection(config, Instant::now());
            Ok((stream, conn))
        }
        Some(Err(e)) => Err(invalid(e)),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Echoes every text and binary message of `conn` back on `stream`, with the same opcode,
/// until the close, in either role: the core answers pings and closes and knows which end
/// closes the TCP connection first (RFC 6455 §7.1.1).
///
/// # Errors
///
/// As [`drive`].
pub async fn echo(stream: &TcpStream, conn: Connection) -> io::Result<()> {
    drive(stream, conn, |conn, message| {
        // Queued before the next event is taken, so the answer precedes anything the peer's
        // next frame provokes (a close for a protocol error).
        let _ = conn.send(message);
    })
    .await
}

/// Runs `conn` on `stream` until it is over: reads and writes at once, hands each message to
/// `on_message` (which may queue output on the connection), answers pings and the closing
/// handshake, and closes the TCP connection when the core says so.
///
/// # Errors
///
/// An I/O error of the connection other than the peer leaving (a reset or broken pipe ends the
/// connection as an abrupt close).
pub async fn drive(
    stream: &TcpStream,
    conn: Connection,
    mut on_message: impl FnMut(&mut Connection, Message),
) -> io::Result<()> {
    let conn = RefCell::new(conn);
    // Reading and writing go on at once, in this one task: `try_join` polls both futures each
    // time the task wakes (a read or a write completed, or the deadline passed), the reader
    // first, so output the reader queued is picked up by the writer in the same pass, and a
    // reader held back by queued output looks again once a write completed. The connection is
    // borrowed only between awaits.
    try_join(
        read_side(stream, &conn, &mut on_message),
        write_side(stream, &conn),
    )
    .await?;
    Ok(())
}

/// Reads and hands the bytes to the connection; takes its events (each message to
/// `on_message`) after each read. Ends when the connection is over.
async fn read_side(
    stream: &TcpStream,
    conn: &RefCell<Connection>,
    on_message: &mut impl FnMut(&mut Connection, Message),
) -> io::Result<()> {
    loop {
        {
            let mut conn = conn.borrow_mut();
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Message(message) => on_message(&mut conn, message),
                    Event::Closed(outcome) if outcome.is_error() => {
                        eprintln!("closed: {} {:?}", outcome.code, outcome.error);
                    }
                    _ => {}
                }
            }
            if conn.should_close_transport() {
                return Ok(());
            }
        }
        // Backpressure: no more reading while the peer leaves this much of our output unread.
        poll_fn(|_| {
            if conn.borrow().queued_bytes() <= MAX_QUEUED {
                Poll::Ready(())
            } else {
                // Polled again when the write in flight completes (the same task).
                Poll::Pending
            }
        })
        .await;
        let deadline = conn.borrow().poll_timeout();
        let read = match deadline {
            None => read_into_connection(stream, conn).await,
            Some(deadline) => read_until(stream, conn, deadline).await,
        };
        match read {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) => conn.borrow_mut().receive_eof(Instant::now()),
            Err(e) => return Err(e),
        }
    }
}

/// Writes what the connection queued, all of it at each write; closes the TCP connection once
/// the connection is over and its output written (the server closes first, the client after
/// the server or the close timeout: RFC 6455 §7.1.1).
async fn write_side(stream: &TcpStream, conn: &RefCell<Connection>) -> io::Result<()> {
    // The output: the queued chunks, owned by the kernel while a write is in flight and handed
    // back after (emptied, for the next write). At most `MAX_QUEUED` plus one message is queued,
    // in chunks of at least 4 KiB but for the frames copied together: well under the kernel's
    // 1,024 buffers of one vectored write.
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        let over = poll_fn(|_| {
            let conn = conn.borrow();
            if conn.queued_bytes() > 0 {
                Poll::Ready(false)
            } else if conn.should_close_transport() {
                Poll::Ready(true)
            } else {
                // Polled again when the read in flight completes (the same task).
                Poll::Pending
            }
        })
        .await;
        if over {
            let _ = (&*stream).shutdown().await;
            return Ok(());
        }
        out.clear();
        conn.borrow_mut().transmit_owned(&mut out);
        let BufResult(written, buf) = (&*stream).write_vectored_all(out).await;
        out = buf;
        if let Err(e) = written {
            if !is_disconnect(&e) {
                return Err(e);
            }
            // The peer is gone: nothing queued can reach it any more.
            let mut conn = conn.borrow_mut();
            let queued = conn.queued_bytes();
            conn.advance_transmit(queued);
            conn.receive_eof(Instant::now());
        }
    }
}

/// Reads once, straight into the connection's input buffer, after what it holds.
async fn read_into_connection(stream: &TcpStream, conn: &RefCell<Connection>) -> io::Result<()> {
    let mut input = {
        let mut conn = conn.borrow_mut();
        // Room for the rest of a large frame at once (up to `MAX_AHEAD`), else one read chunk.
        let ahead = conn.input_needed().min(MAX_AHEAD);
        let mut input = std::mem::take(conn.input_buffer());
        let spare = input.capacity() - input.len();
        if spare < MIN_READ || spare < ahead {
            input.reserve(ahead.max(READ));
        }
        input
    };
    // `uninit`: the kernel writes after the bytes the buffer holds, not over them.
    let BufResult(read, filled) = (&*stream).read(input.uninit()).await;
    input = filled.into_inner();
    let mut conn = conn.borrow_mut();
    *conn.input_buffer() = input;
    match read? {
        0 => conn.receive_eof(Instant::now()),
        _ => conn.received(Instant::now()),
    }
    Ok(())
}

/// Reads once with the core's deadline, into a buffer of its own (a read cancelled at the
/// deadline takes its buffer with it); the deadline passed when nothing came by then.
async fn read_until(
    stream: &TcpStream,
    conn: &RefCell<Connection>,
    deadline: Instant,
) -> io::Result<()> {
    if deadline <= Instant::now() {
        conn.borrow_mut().handle_timeout(Instant::now());
        return Ok(());
    }
    let mut reader = stream;
    let read = reader.read(BytesMut::with_capacity(READ));
    match compio::time::timeout_at(deadline, read).await {
        Ok(BufResult(read, buf)) => match read? {
            0 => conn.borrow_mut().receive_eof(Instant::now()),
            _ => conn.borrow_mut().receive(Instant::now(), &buf),
        },
        Err(_elapsed) => conn.borrow_mut().handle_timeout(Instant::now()),
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
    let parsed = read_head(stream, |head| {
        Ok::<_, HandshakeError>(match ServerHandshake::parse(head, handshake)? {
            Status::Partial => Status::Partial,
            Status::Complete(request) => Status::Complete(request.accept(AcceptOptions::default())),
        })
    })
    .await?;
    let (answer, conn) = match parsed {
        None => return Ok(None),
        Some(Ok(Ok((response, agreed)))) => (
            response.encode(),
            Some(agreed.into_connection(config, Instant::now())),
        ),
        // The request was valid; the default options are refused only by a bad extension set-up.
        Some(Ok(Err(_))) => (HttpResponse::new(500).encode(), None),
        Some(Err(e)) => (refusal(&e).encode(), None),
    };
    let BufResult(written, _) = (&*stream).write_all(answer).await;
    written?;
    Ok(conn)
}

/// Reads an HTTP head (an upgrade request or its answer) until `parse` completes on the bytes
/// so far, and returns what it made of them; `None` when the peer left first. The head is
/// bounded by `parse` (the core's handshake limits refuse a head past them).
async fn read_head<T, E>(
    stream: &TcpStream,
    mut parse: impl FnMut(&[u8]) -> Result<Status<T>, E>,
) -> io::Result<Option<Result<T, E>>> {
    let mut head = BytesMut::with_capacity(HEAD);
    loop {
        if head.len() == head.capacity() {
            head.reserve(HEAD);
        }
        let BufResult(read, buf) = (&*stream).read(head.uninit()).await;
        head = buf.into_inner();
        if read? == 0 {
            return Ok(None);
        }
        match parse(&head) {
            Ok(Status::Partial) => continue,
            Ok(Status::Complete(value)) => return Ok(Some(Ok(value))),
            Err(e) => return Ok(Some(Err(e))),
        }
    }
}

/// The HTTP answer to a refused upgrade request.
fn refusal(e: &HandshakeError) -> HttpResponse {
    e.http_response().unwrap_or_else(|| HttpResponse::new(400))
}

fn invalid(e: HandshakeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
