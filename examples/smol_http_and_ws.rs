//! WebSocket and plain HTTP on one port with the smol server helper: `GET /` serves a page whose
//! script talks to the echo WebSocket on `/ws`, `GET /health` answers `ok`, anything else is
//! `404`. At most 1000 connections, 20 per client address (`503` with `Retry-After` above).
//!
//! ```sh
//! cargo run --example smol_http_and_ws -- 127.0.0.1:9001
//! # open http://127.0.0.1:9001/ in a browser, or:
//! cargo run --example smol_echo_client -- ws://127.0.0.1:9001/ws
//! ```
//!
//! Closing standard input (Ctrl-D) shuts the server down gracefully: every WebSocket gets close
//! 1001 (going away) and the server waits up to 5 s for the handlers.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tidings_smol::WebSocket;
use tidings_smol::server::{HttpResponse, RequestInfo, Route, Server};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>tidings echo</title>
<form id="f"><input id="m" autofocus placeholder="say something"> <button>send</button></form>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => log("connected");
  ws.onmessage = (e) => log("echo: " + e.data);
  ws.onclose = (e) => log(`closed: ${e.code} ${e.reason}`);
  document.getElementById("f").onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById("m");
    ws.send(input.value);
    input.value = "";
  };
</script>
"#;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    smol::block_on(async {
        let listening = Server::new()
            .route("/", Route::http(page))
            .route(
                "/health",
                Route::http(|_| async { HttpResponse::text(200, "ok\n") }),
            )
            .route("/ws", Route::websocket(echo))
            .max_connections(1000)
            .max_connections_per_ip(20)
            .shutdown_timeout(Duration::from_secs(5))
            .bind(&addr)
            .await?;
        eprintln!("listening on http://{}/", listening.local_addr());
        let stdin_closed = async {
            // A blocking read on a thread of smol's blocking pool.
            smol::unblock(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await
        };
        let report = listening
            .serve_with_shutdown(async {
                let _ = stdin_closed.await;
            })
            .await;
        eprintln!(
            "shut down: {} WebSocket(s) closed, {} still open",
            report.closed, report.still_open
        );
        Ok(())
    })
}

/// The page, for `GET` (and `HEAD`, which the helper answers without the body).
async fn page(req: Request<Bytes>) -> HttpResponse {
    match req.method().as_str() {
        "GET" | "HEAD" => HttpResponse::html(200, PAGE),
        _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET, HEAD"),
    }
}

async fn echo(mut ws: WebSocket, info: RequestInfo) {
    eprintln!("{} connected", info.peer_addr());
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
    eprintln!("{} gone", info.peer_addr());
}
