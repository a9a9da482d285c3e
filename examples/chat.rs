//! A chat with rooms and a browser page (tidings-tokio + the hub): the page at `/`, the
//! WebSocket at `/ws?user=NAME`. The wire protocol and the rules are documented in
//! `tidings_examples::chat` (`examples/src/chat.rs`).
//!
//! ```sh
//! cargo run --release --example chat -- 127.0.0.1:9002
//! # open http://127.0.0.1:9002/?user=alice and http://127.0.0.1:9002/?user=bob
//! ```
//!
//! Ctrl-C shuts it down gracefully: the hub closes every client with 1001 (going away), and the
//! server waits up to 5 s for the connections to end.

use tidings_examples::chat;
use tidings_tokio::hub::Hub;
use tidings_tokio::server::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let hub = Hub::new();
    let mut server = Server::new();
    for (path, route) in chat::routes(&hub) {
        server = server.route(path, route);
    }
    let listening = server.bind(&addr).await?;
    let local = listening.local_addr();
    println!("chat listening on http://{local}/ (WebSocket ws://{local}/ws?user=NAME)");
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
