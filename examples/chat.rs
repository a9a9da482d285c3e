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
//! Usage: `chat [ADDR] [--allow-origin PATTERN]...`. `ADDR` defaults to `127.0.0.1:8080`.
//! `--allow-origin` (repeatable) replaces the WebSocket's same-origin check with an allow-list
//! of origins such as `https://chat.example.com`, `https://*.example.com` or
//! `http://localhost:*` (list the page's own origin too, or its browsers are refused).
//!
//! Ctrl-C shuts it down gracefully: the hub closes every client with 1001 (going away), and the
//! server waits up to 5 s for the connections to end.

use std::process::ExitCode;

use tidings_examples::chat;
use tidings_tokio::OriginPolicy;
use tidings_tokio::hub::Hub;
use tidings_tokio::server::Server;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";

const USAGE: &str = "\
usage: chat [ADDR] [--allow-origin PATTERN]...

  ADDR                    address to listen on (default 127.0.0.1:8080)
  --allow-origin PATTERN  let browser pages from origins matching PATTERN open the WebSocket,
                          e.g. https://chat.example.com, https://*.example.com,
                          http://localhost:* (repeatable; replaces the same-origin check, so
                          list the page's own origin too)
  -h, --help              print this and exit
";

/// The command line.
struct Args {
    addr: String,
    allow_origins: Vec<String>,
}

/// Parses the arguments after the program name; `Err(code)` after printing usage.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, ExitCode> {
    let mut addr = None;
    let mut allow_origins = Vec::new();
    let mut args = args.into_iter();
    let bad = |why: String| {
        eprint!("chat: {why}\n{USAGE}");
        ExitCode::from(2)
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
            return Err(ExitCode::SUCCESS);
        } else if arg == "--allow-origin" {
            match args.next() {
                Some(pattern) if !pattern.is_empty() => allow_origins.push(pattern),
                _ => return Err(bad("--allow-origin needs a PATTERN".to_owned())),
            }
        } else if let Some(pattern) = arg.strip_prefix("--allow-origin=") {
            if pattern.is_empty() {
                return Err(bad("--allow-origin needs a PATTERN".to_owned()));
            }
            allow_origins.push(pattern.to_owned());
        } else if arg.starts_with('-') {
            return Err(bad(format!("unknown option {arg}")));
        } else if addr.is_none() && allow_origins.is_empty() {
            addr = Some(arg);
        } else {
            return Err(bad(format!("unexpected argument {arg}")));
        }
    }
    Ok(Args {
        addr: addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        allow_origins,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let hub = Hub::with_config(chat::hub_config());
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
