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
//! Ctrl-C shuts it down gracefully: the hub closes every WebSocket with 1001 (going away) and
//! ends every event stream, and the server waits up to 5 s for the connections to end.

use tidings_examples::notifications;
use tidings_tokio::hub::Hub;
use tidings_tokio::server::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9004".to_owned());
    let hub = Hub::with_config(notifications::config());
    let server = Server::new().routes(notifications::routes(&hub, tidings_tokio::runtime()));
    let listening = server.bind(&addr).await?;
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
