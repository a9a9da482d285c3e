//! A chat with rooms and a browser page (tidings-tokio + the hub): the page at `/`, its script
//! at `/chat.js`, the WebSocket at `/ws?user=NAME`. The wire protocol and the rules are
//! documented in `tidings_examples::chat` (`examples/src/chat.rs`).
//!
//! ```sh
//! cargo run --release --example chat
//! # open http://127.0.0.1:8080/ (it asks for a name), or http://127.0.0.1:8080/?user=alice
//! cargo run --release --example chat -- 0.0.0.0:9002 --allow-origin 'http://localhost:*'
//! ```
//!
//! Usage: `chat [ADDR] [--allow-origin PATTERN]... [--redis URL [--presence-timeout SECS]]`.
//! `ADDR` defaults to `127.0.0.1:8080`; the options come after it, in any order.
//! `--allow-origin` (repeatable) replaces the WebSocket's same-origin check with an allow-list
//! of origins such as `https://chat.example.com`, `https://*.example.com` or
//! `http://localhost:*` (list the page's own origin too, or its browsers are refused).
//!
//! # Several processes: `--redis`
//!
//! With `--redis redis://HOST:PORT` the hub is shared through Redis (`tidings_hub_redis`) by
//! every process started with the same URL: users on different processes meet in the same
//! rooms, and joins, leaves and messages reach every member wherever it is connected.
//!
//! ```sh
//! redis-server --port 6379 &
//! cargo run --release --example chat -- 127.0.0.1:8080 --redis redis://127.0.0.1:6379 &
//! cargo run --release --example chat -- 127.0.0.1:8081 --redis redis://127.0.0.1:6379 &
//! # http://127.0.0.1:8080/?user=alice and http://127.0.0.1:8081/?user=bob chat together
//! ```
//!
//! The member counts of the `rooms` events add up every process's members, but another
//! process's figures are those it last reported: they may lag by up to a fifth of the presence
//! timeout (3 s by default; `--presence-timeout SECS` sets the timeout, 15 s by default), and a
//! process that dies without closing drops out of them after the timeout. A process that cannot
//! reach Redis at start exits with an error; one that loses Redis later reconnects by itself
//! and keeps serving its own clients meanwhile. Without `--redis` the hub is in-process. The
//! start-up output says which (`hub backend: in-process`, `hub backend: redis URL …`).
//!
//! Ctrl-C shuts it down gracefully: the hub closes every client with 1001 (going away), and the
//! server waits up to 5 s for the connections to end.

use std::process::ExitCode;

use tidings_examples::chat;
use tidings_examples::hub_backend::{self, BackendArgs, option_value};
use tidings_tokio::OriginPolicy;
use tidings_tokio::hub::Hub;
use tidings_tokio::server::Server;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";

const USAGE: &str = "\
usage: chat [ADDR] [--allow-origin PATTERN]... [--redis URL [--presence-timeout SECS]]

  ADDR                    address to listen on (default 127.0.0.1:8080); the options follow it
  --allow-origin PATTERN  let browser pages from origins matching PATTERN open the WebSocket,
                          e.g. https://chat.example.com, https://*.example.com,
                          http://localhost:* (repeatable; replaces the same-origin check, so
                          list the page's own origin too)
";

/// The command line.
struct Args {
    addr: String,
    allow_origins: Vec<String>,
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
    let mut allow_origins = Vec::new();
    let mut backend = BackendArgs::default();
    let mut first = true;
    let mut args = args.into_iter();
    let bad = |why: String| {
        eprint!("chat: {why}\n{}", usage());
        ExitCode::from(2)
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{}", usage());
            return Err(ExitCode::SUCCESS);
        }
        let taken = match option_value("--allow-origin", "PATTERN", &arg, &mut args).map_err(bad)? {
            Some(pattern) => {
                allow_origins.push(pattern);
                true
            }
            None => backend.take(&arg, &mut args).map_err(bad)?,
        };
        if taken {
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
        allow_origins,
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
        .hub(chat::hub_config(), tidings_tokio::runtime())
        .await
    {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("hub backend: {}", args.backend.describe());
    match run(args, hub).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, hub: Hub) -> std::io::Result<()> {
    let routes = if args.allow_origins.is_empty() {
        chat::routes(&hub)
    } else {
        chat::routes_with_origin(&hub, OriginPolicy::allow(args.allow_origins.iter()))
    };
    let server = Server::new().routes(routes);
    let listening = server.bind(&args.addr).await?;
    let local = listening.local_addr();
    println!("chat listening on http://{local}/ — open it in a browser");
    if !args.allow_origins.is_empty() {
        println!(
            "WebSocket origins allowed: {}",
            args.allow_origins.join(", ")
        );
    }
    let report = listening
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            let closed = hub.close();
            println!("shutting down: {closed} client(s) sent close 1001");
        })
        .await;
    println!("stopped ({} connection(s) still open)", report.still_open);
    Ok(())
}
