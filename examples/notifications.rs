//! Notifications to users over WebSocket and Server-Sent Events (tidings-tokio + the hub):
//! subscribers connect to `/ws/notifications?user_id=U` or `GET /events?user_id=U`, and
//! `POST /api/notify` sends to one user or to everyone. The routes, the wire format and the
//! history for `Last-Event-ID` are documented in `tidings_examples::notifications`
//! (`examples/src/notifications.rs`).
//!
//! ```sh
//! cargo run --release --example notifications -- 127.0.0.1:9004
//! curl -N 'http://127.0.0.1:9004/events?user_id=alice'
//! curl -d '{"user_id":"alice","title":"Hi","body":"hello"}' http://127.0.0.1:9004/api/notify
//! ```
//!
//! Usage: `notifications [ADDR] [--redis URL [--presence-timeout SECS]]`. `ADDR` defaults to
//! `127.0.0.1:9004`; the options come after it.
//!
//! # Several processes: `--redis`
//!
//! With `--redis redis://HOST:PORT` the hub is shared through Redis (`tidings_hub_redis`) by
//! every process started with the same URL: a notification posted to any of them reaches the
//! user's subscribers on all of them, and the history is kept in Redis, so that an SSE client
//! may reconnect to any process with `Last-Event-ID`.
//!
//! ```sh
//! redis-server --port 6379 &
//! cargo run --release --example notifications -- 127.0.0.1:9004 --redis redis://127.0.0.1:6379 &
//! cargo run --release --example notifications -- 127.0.0.1:9005 --redis redis://127.0.0.1:6379 &
//! curl -N 'http://127.0.0.1:9005/events?user_id=alice'
//! curl -d '{"user_id":"alice","title":"Hi","body":"hello"}' http://127.0.0.1:9004/api/notify
//! ```
//!
//! What differs from one process: the event ids (`id:`) are numbered by Redis (its clock in
//! microseconds, increasing), not from 1 in each process, and the history survives the restart
//! of a process (not of a Redis without persistence). Every notification goes through Redis,
//! also to the posting process's own subscribers, so the answer's `delivered` counts none of
//! them (it is 0). A process that cannot reach Redis at start exits with an error; one that loses
//! Redis later reconnects by itself. `--presence-timeout SECS` (default 15) sets how soon a dead
//! process drops out of the hub's counts. Without `--redis` the hub is in-process. The start-up
//! output says which (`hub backend: in-process`, `hub backend: redis URL …`).
//!
//! Ctrl-C shuts it down gracefully: the hub closes every WebSocket with 1001 (going away) and
//! ends every event stream, and the server waits up to 5 s for the connections to end.

use std::process::ExitCode;

use tidings_examples::hub_backend::{self, BackendArgs};
use tidings_examples::notifications;
use tidings_tokio::hub::Hub;
use tidings_tokio::server::Server;

const DEFAULT_ADDR: &str = "127.0.0.1:9004";

const USAGE: &str = "\
usage: notifications [ADDR] [--redis URL [--presence-timeout SECS]]

  ADDR                    address to listen on (default 127.0.0.1:9004); the options follow it
";

/// The command line.
struct Args {
    addr: String,
    backend: BackendArgs,
}

/// The usage text.
fn usage() -> String {
    format!(
        "{USAGE}{}  -h, --help              print this and exit\n",
        hub_backend::USAGE
    )
}

/// Parses the arguments after the program name; `Err(code)` after printing usage.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, ExitCode> {
    let mut addr = None;
    let mut backend = BackendArgs::default();
    let mut first = true;
    let mut args = args.into_iter();
    let bad = |why: String| {
        eprint!("notifications: {why}\n{}", usage());
        ExitCode::from(2)
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{}", usage());
            return Err(ExitCode::SUCCESS);
        }
        if backend.take(&arg, &mut args).map_err(bad)? {
        } else if arg.starts_with('-') {
            return Err(bad(format!("unknown option {arg}")));
        } else if first {
            addr = Some(arg);
        } else {
            return Err(bad(format!("unexpected argument {arg}")));
        }
        first = false;
    }
    backend.check().map_err(bad)?;
    Ok(Args {
        addr: addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        backend,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let hub = match args
        .backend
        .hub(notifications::config(), tidings_tokio::runtime())
        .await
    {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("notifications: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("hub backend: {}", args.backend.describe());
    match run(&args.addr, hub).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notifications: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(addr: &str, hub: Hub) -> std::io::Result<()> {
    let server = Server::new().routes(notifications::routes(&hub, tidings_tokio::runtime()));
    let listening = server.bind(addr).await?;
    let local = listening.local_addr();
    println!(
        "notifications listening on http://{local}/ (WebSocket ws://{local}/ws/notifications?user_id=U, \
         SSE http://{local}/events?user_id=U, POST http://{local}/api/notify)"
    );
    let report = listening
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            let closed = hub.close();
            println!("shutting down: {closed} subscriber(s) closed");
        })
        .await;
    println!("stopped ({} connection(s) still open)", report.still_open);
    Ok(())
}
