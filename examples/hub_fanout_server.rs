//! The hub's benchmark server (tidings-tokio + tidings-hub): every text or binary message received
//! from any client is broadcast, encoded once, to every other connected client, with the same
//! opcode and the same bytes. WebSocket on `/`.
//!
//! ```sh
//! cargo run --release --example hub_fanout_server -- 127.0.0.1:9010 [--outbox N] [--inline]
//! ```
//!
//! `--outbox N` bounds each client's outbox at N messages (default 256: a client that falls that
//! far behind is disconnected with 1008); `--inline` writes broadcasts from the sender's task
//! instead of waking each connection's driver task (see `OutboxLimits::write_inline`).
//! `scripts/bench-fanout.sh` runs it against a tokio-tungstenite + `tokio::sync::broadcast`
//! baseline.

use tidings_tokio::hub::{Admission, Client, Hub, HubConfig, Message, handler_fn};
use tidings_tokio::server::Server;
use tidings_tokio::{Config, OriginPolicy, OutboxLimits, UpgradeRequest};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9010".to_owned());
    let mut outbox = OutboxLimits::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--outbox" => {
                let n = args.next().and_then(|n| n.parse().ok());
                outbox = outbox.messages(n.unwrap_or(256));
            }
            "--inline" => outbox = outbox.write_inline(true),
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    let hub = Hub::with_config(HubConfig::default().outbox(outbox));
    let fanout = hub.clone();
    let route = hub.route(move |_req: &UpgradeRequest<'_>| {
        let hub = fanout.clone();
        Ok(Admission::new(handler_fn(
            move |client: Client, message: Message| {
                // Encoded once, queued to every other client's outbox; never waits for them.
                let sent = hub.to_all().except(client.id()).send(message);
                async move {
                    sent?;
                    Ok(())
                }
            },
        )))
    });
    let listening = Server::new()
        .config(Config::default().origin_policy(OriginPolicy::allow_all()))
        .route("/", route)
        .bind(&addr)
        .await?;
    eprintln!(
        "hub fan-out server listening on ws://{}/",
        listening.local_addr()
    );
    listening
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
