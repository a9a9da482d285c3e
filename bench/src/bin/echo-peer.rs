//! Echo WebSocket servers built on peer crates, for `scripts/bench-echo.sh`.
//!
//! `echo-peer <impl> <addr>`: listens on `addr` and echoes every text and binary message back with
//! the same opcode, on any path; pings are answered and closes completed by each crate itself.
//! Each server follows the crate's own echo/autobahn server example (named at each function), with
//! TCP_NODELAY on and one task per connection:
//!
//! * `tokio-tungstenite`, `tokio-websockets`, `fastwebsockets`: a multi-thread tokio runtime with
//!   default settings (`#[tokio::main]`), so its worker count follows the CPU affinity;
//! * `async-tungstenite-smol`: `smol::block_on` accept loop, `smol::spawn` per connection (smol's
//!   global executor with its default thread count); `async-tungstenite-smol/local` runs the same
//!   server on one `smol::Executor` that the main thread runs (accept loop and connections on one
//!   thread), the structure of tidings' `smol_echo_server`.
//!
//! The tungstenite-based servers come in two shapes, both from the crates' examples: the default
//! (`echo-server.rs`: `split()` + `forward()`, which flushes only when the input has nothing ready,
//! so pipelined echoes share a write) and `<impl>/send` (`autobahn-server.rs`: `next()` then
//! `send()`, one flush per message). The harness uses the default; the other is kept to check that
//! the choice is the faster one. `tokio-websockets/forward` applies the `split()` + `forward()`
//! shape to tokio-websockets, whose examples do not show it; it is not part of the default set.

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [imp, addr] = args.as_slice() else {
        eprintln!(
            "usage: echo-peer <impl> <addr>\nimpls: {}",
            IMPLS.join(", ")
        );
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-peer: bad address {addr:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match imp.as_str() {
        "tokio-tungstenite" => tokio_main(tokio_tungstenite_server::run(addr, true)),
        "tokio-tungstenite/send" => tokio_main(tokio_tungstenite_server::run(addr, false)),
        "tokio-websockets" => tokio_main(tokio_websockets_server::run(addr, false)),
        "tokio-websockets/forward" => tokio_main(tokio_websockets_server::run(addr, true)),
        "fastwebsockets" => tokio_main(fastwebsockets_server::run(addr)),
        "async-tungstenite-smol" => smol::block_on(async_tungstenite_server::run(addr, true)),
        "async-tungstenite-smol/send" => smol::block_on(async_tungstenite_server::run(addr, false)),
        "async-tungstenite-smol/local" => async_tungstenite_server::run_local(addr),
        other => {
            eprintln!(
                "echo-peer: unknown impl {other:?}; one of {}",
                IMPLS.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-peer {imp}: {e}");
            ExitCode::FAILURE
        }
    }
}

const IMPLS: &[&str] = &[
    "tokio-tungstenite",
    "tokio-tungstenite/send",
    "tokio-websockets",
    "tokio-websockets/forward",
    "fastwebsockets",
    "async-tungstenite-smol",
    "async-tungstenite-smol/send",
    "async-tungstenite-smol/local",
];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `#[tokio::main]` expands to: a multi-thread runtime with default settings.
fn tokio_main(fut: impl Future<Output = Result<(), BoxError>>) -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Connection errors are expected (the harness's port probe, peers killed at the end of a run);
/// print them only when asked to.
fn report(imp: &str, e: impl std::fmt::Display) {
    if std::env::var_os("ECHO_PEER_VERBOSE").is_some() {
        eprintln!("{imp}: connection error: {e}");
    }
}

/// tokio-tungstenite 0.30, after its `examples/echo-server.rs` (`accept_async`, `split`,
/// `try_filter(is_text || is_binary)`, `forward`) or, with `forward == false`,
/// `examples/autobahn-server.rs` (`next()` then `send()`).
mod tokio_tungstenite_server {
    use super::*;
    use futures_util::{SinkExt, StreamExt, TryStreamExt, future};
    use tokio::net::{TcpListener, TcpStream};

    pub async fn run(addr: SocketAddr, forward: bool) -> Result<(), BoxError> {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = connection(stream, forward).await {
                    report("tokio-tungstenite", e);
                }
            });
        }
    }

    async fn connection(
        stream: TcpStream,
        forward: bool,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        stream.set_nodelay(true)?;
        let mut ws = tokio_tungstenite::accept_async(stream).await?;
        if forward {
            let (write, read) = ws.split();
            read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
                .forward(write)
                .await
        } else {
            while let Some(msg) = ws.next().await {
                let msg = msg?;
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await?;
                }
            }
            Ok(())
        }
    }
}

/// tokio-websockets 0.13, after its `examples/echo_server.rs` (`ServerBuilder` with
/// `frame_size(usize::MAX)` and `Limits::unlimited()`, the connection task wrapped in
/// `tokio::task::unconstrained`, `next()` then `send()`). That example builds a current-thread
/// runtime; here it runs on the same multi-thread runtime as the other tokio servers. With
/// `forward`, the stream is split (`futures_util::StreamExt::split`) and forwarded instead.
mod tokio_websockets_server {
    use super::*;
    use futures_util::{SinkExt, StreamExt, TryStreamExt, future};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_websockets::{Config, Limits, ServerBuilder};

    pub async fn run(addr: SocketAddr, forward: bool) -> Result<(), BoxError> {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(tokio::task::unconstrained(async move {
                if let Err(e) = connection(stream, forward).await {
                    report("tokio-websockets", e);
                }
            }));
        }
    }

    async fn connection(stream: TcpStream, forward: bool) -> Result<(), tokio_websockets::Error> {
        stream.set_nodelay(true)?;
        let (_request, mut ws) = ServerBuilder::new()
            .config(Config::default().frame_size(usize::MAX))
            .limits(Limits::unlimited())
            .accept(stream)
            .await?;
        if forward {
            let (write, read) = ws.split();
            return read
                .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
                .forward(write)
                .await;
        }
        while let Some(item) = ws.next().await {
            let item = item?;
            if item.is_text() || item.is_binary() {
                ws.send(item).await?;
            }
        }
        Ok(())
    }
}

/// fastwebsockets 0.10, after its `examples/echo_server.rs`: hyper's HTTP/1 server with
/// `upgrade::upgrade`, the WebSocket wrapped in a `FragmentCollector` (auto pong and auto close
/// are on by default), `read_frame` then `write_frame` of text and binary frames, the connection
/// task wrapped in `tokio::task::unconstrained`. That example builds a current-thread runtime;
/// here it runs on the same multi-thread runtime as the other tokio servers.
mod fastwebsockets_server {
    use super::*;
    use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
    use http_body_util::Empty;
    use hyper::body::{Bytes, Incoming};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use tokio::net::TcpListener;

    pub async fn run(addr: SocketAddr) -> Result<(), BoxError> {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = stream.set_nodelay(true) {
                    report("fastwebsockets", e);
                    return;
                }
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    report("fastwebsockets", e);
                }
            });
        }
    }

    async fn server_upgrade(
        mut req: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            if let Err(e) = tokio::task::unconstrained(handle_client(fut)).await {
                report("fastwebsockets", e);
            }
        });
        Ok(response)
    }

    async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// async-tungstenite 0.35 on smol (feature `smol-runtime`), after its `examples/echo-server.rs`
/// (`smol::block_on` accept loop, `smol::spawn(..).detach()`, `accept_async`, `split`,
/// `try_filter`, `forward`) or, with `forward == false`, `examples/autobahn-server.rs` (`next()`
/// then `futures::SinkExt::send`).
mod async_tungstenite_server {
    use super::*;
    use futures_util::{SinkExt, StreamExt, TryStreamExt, future};
    use smol::net::{TcpListener, TcpStream};

    pub async fn run(addr: SocketAddr, forward: bool) -> Result<(), BoxError> {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            smol::spawn(async move {
                if let Err(e) = connection(stream, forward).await {
                    report("async-tungstenite-smol", e);
                }
            })
            .detach();
        }
    }

    /// The same server on one executor, run by this thread: the accept loop and every
    /// connection, no task woken across threads.
    pub fn run_local(addr: SocketAddr) -> Result<(), BoxError> {
        let executor = smol::Executor::new();
        smol::block_on(executor.run(async {
            let listener = TcpListener::bind(addr).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                executor
                    .spawn(async move {
                        if let Err(e) = connection(stream, true).await {
                            report("async-tungstenite-smol/local", e);
                        }
                    })
                    .detach();
            }
        }))
    }

    async fn connection(
        stream: TcpStream,
        forward: bool,
    ) -> Result<(), async_tungstenite::tungstenite::Error> {
        stream.set_nodelay(true)?;
        let mut ws = async_tungstenite::accept_async(stream).await?;
        if forward {
            let (write, read) = ws.split();
            read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
                .forward(write)
                .await
        } else {
            while let Some(msg) = ws.next().await {
                let msg = msg?;
                if msg.is_text() || msg.is_binary() {
                    SinkExt::send(&mut ws, msg).await?;
                }
            }
            Ok(())
        }
    }
}
