//! Fan-out WebSocket server "built the usual way", the baseline of `scripts/bench-fanout.sh`.
//!
//! ```text
//! fanout-peer ADDR [--capacity N]      (default capacity 1024)
//! ```
//!
//! Listens on `ADDR` and broadcasts every text or binary message received from any client to every
//! *other* connected client, with the same opcode and bytes, on any path. It is the tokio
//! broadcast chat pattern found in tutorials and in the examples around tokio-tungstenite (axum's
//! `chat` example is the best-known instance; tokio-tungstenite's own `server.rs` is the same chat
//! room with a map of unbounded per-peer channels instead, which has no bound at all on a slow
//! client's backlog): tokio-tungstenite 0.30 over a default multi-thread tokio runtime
//! (`#[tokio::main]`, whose worker count follows the CPU affinity: one worker under
//! `taskset -c 0`), TCP_NODELAY on, and per connection
//!
//! * `accept_async`, then `StreamExt::split` of the WebSocket into a sink and a stream, and a
//!   `Receiver` from the one shared `tokio::sync::broadcast` channel (`broadcast::channel(N)`,
//!   messages tagged with the sender's connection id);
//! * a reader task: every text or binary message goes into the channel as `(id, message)`;
//! * a writer task: `recv()` from the channel, skip the connection's own messages, and
//!   `SinkExt::send` the others (`send` writes and flushes each message: one write per message
//!   per client);
//! * whichever of the two ends first aborts the other (`tokio::select!` on their join handles).
//!
//! Messages are `tungstenite::Message`s whose payloads are `Bytes`: the channel clones them for
//! every receiver without copying the payload.
//!
//! A client whose writer falls behind by more than the channel's capacity gets
//! `RecvError::Lagged(n)`: the `n` oldest messages are gone for it, and its writer carries on with
//! the oldest one still buffered, the usual handling. The client stays connected and simply misses
//! those messages; the server's memory stays bounded by the channel's capacity (plus what each
//! writer holds and the sockets' buffers). The lagged messages are counted over all connections and
//! the total is printed to stderr every second while it grows, and on SIGTERM or SIGINT (which end
//! the server).
//!
//! Connection errors are expected (the harness's port probe, clients gone at the end of a run) and
//! printed only with `FANOUT_PEER_VERBOSE` set.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::{self, Sender, error::RecvError};
use tokio_tungstenite::tungstenite::{Error, Message};

/// Messages that writers skipped because they lagged behind the channel, over all connections.
static LAGGED: AtomicU64 = AtomicU64::new(0);

/// What the channel carries: the sender's connection id and its message.
type Broadcast = (u64, Message);

const USAGE: &str = "usage: fanout-peer ADDR [--capacity N]   (default capacity 1024)";

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, capacity) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("fanout-peer: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(addr, capacity).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(SocketAddr, usize), String> {
    let mut addr = None;
    let mut capacity = 1024;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--capacity" {
            let value = it.next().ok_or("--capacity needs a value")?;
            capacity = value
                .parse()
                .map_err(|e| format!("--capacity {value:?}: {e}"))?;
            if capacity == 0 {
                return Err("--capacity must be at least 1".into());
            }
        } else if addr.is_none() && !arg.starts_with("--") {
            addr = Some(
                arg.parse()
                    .map_err(|e| format!("bad address {arg:?}: {e}"))?,
            );
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok((addr.ok_or("ADDR is required")?, capacity))
}

async fn run(addr: SocketAddr, capacity: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let (tx, _) = broadcast::channel::<Broadcast>(capacity);
    tokio::spawn(report_lagged_periodically());
    let mut terminate = signal(SignalKind::terminate())?;
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_id += 1;
                    tokio::spawn(connection(stream, next_id, tx.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, typically: say so, and let connections end.
                    eprintln!("fanout-peer: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!(
        "fanout-peer: exiting; {} messages lagged in total",
        LAGGED.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Prints the lagged total every second while it grows.
async fn report_lagged_periodically() {
    let mut reported = 0;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let lagged = LAGGED.load(Ordering::Relaxed);
        if lagged != reported {
            eprintln!("fanout-peer: {lagged} messages lagged so far");
            reported = lagged;
        }
    }
}

fn report(e: impl std::fmt::Display) {
    if std::env::var_os("FANOUT_PEER_VERBOSE").is_some() {
        eprintln!("fanout-peer: connection error: {e}");
    }
}

/// One client: the handshake, then a reader task feeding the channel and a writer task draining
/// it, until either ends.
async fn connection(stream: TcpStream, id: u64, tx: Sender<Broadcast>) {
    if let Err(e) = stream.set_nodelay(true) {
        report(e);
        return;
    }
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            report(e);
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let mut rx = tx.subscribe();

    // Writer: everything the others broadcast, one `send` (write and flush) per message.
    let mut send_task = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok((from, msg)) => {
                    if from != id {
                        sink.send(msg).await?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    LAGGED.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    });

    // Reader: every text or binary message into the channel, tagged with this connection's id.
    let mut recv_task = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                // Fails only when nobody is subscribed: then there is nobody to deliver to.
                let _ = tx.send((id, msg));
            }
        }
        Ok::<(), Error>(())
    });

    // Whichever half ends first (the client left, a write failed) ends the other.
    let ended = tokio::select! {
        ended = &mut send_task => {
            recv_task.abort();
            ended
        }
        ended = &mut recv_task => {
            send_task.abort();
            ended
        }
    };
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report(e),
        Err(e) => report(e),
    }
}
