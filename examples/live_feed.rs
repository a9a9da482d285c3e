//! A live dashboard fed by Server-Sent Events (tidings-smol + the hub): the page at `/` opens
//! an `EventSource` on `/feed`, where a `tick` with the number of connected clients arrives every
//! second. The routes and events are documented in `tidings_examples::live_feed`
//! (`examples/src/live_feed.rs`).
//!
//! ```sh
//! cargo run --release --example live_feed -- 127.0.0.1:9005
//! # open http://127.0.0.1:9005/ in a few tabs, or: curl -N http://127.0.0.1:9005/feed
//! ```
//!
//! Ctrl-C shuts it down gracefully: the ticker stops, the hub ends every event stream, and the
//! server waits up to 5 s for the connections to end.

use tidings_examples::live_feed;
use tidings_smol::hub::Hub;
use tidings_smol::server::Server;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9005".to_owned());
    let (interrupted, ctrl_c) = smol::channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = interrupted.try_send(());
    })
    .map_err(std::io::Error::other)?;
    smol::block_on(async {
        let hub = Hub::new();
        let rt = tidings_smol::runtime();
        let server = Server::new().routes(live_feed::routes(&hub, rt));
        let listening = server.bind(&addr).await?;
        let local = listening.local_addr();
        println!("live feed listening on http://{local}/ (events: http://{local}/feed)");
        let ticker = smol::spawn(live_feed::ticker(hub.clone(), rt, live_feed::TICK));
        let report = listening
            .serve_with_shutdown(async {
                let _ = ctrl_c.recv().await;
                // The ticker first, so that it never meets the closed hub.
                ticker.cancel().await;
                let closed = hub.close();
                println!("shutting down: {closed} subscriber(s) closed");
            })
            .await;
        println!("stopped ({} connection(s) still open)", report.still_open);
        Ok(())
    })
}
