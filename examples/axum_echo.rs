//! An axum 0.8 app with a tidings WebSocket route: `GET /ws` upgrades and echoes every message,
//! `GET /` answers plain text. On Ctrl-C axum stops accepting, then every WebSocket is sent close
//! 1001 (going away) and the program waits up to 5 s for them to end.
//!
//! ```sh
//! cargo run --example axum_echo -- 127.0.0.1:9001
//! cargo run --example tokio_echo_client -- ws://127.0.0.1:9001/ws
//! ```
//!
//! The upgrade goes through the `tidings_tokio::axum::WebSocketUpgrade` extractor (feature
//! `axum`), which checks the request exactly as tidings' own `accept` does (RFC 6455 validation,
//! then the config's origin policy) and builds the `101` for axum to send; the WebSocket arrives
//! in the `on_upgrade` callback once hyper hands over the connection. axum's graceful shutdown
//! does not know about upgraded connections, so a `Registry` keeps their `Closer`s.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use tidings_tokio::axum::WebSocketUpgrade;
use tidings_tokio::server::Registry;
use tidings_tokio::{CloseCode, Config, WebSocket};

/// What the handlers share.
struct App {
    config: Config,
    sockets: Arc<Registry>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let app = Arc::new(App {
        config: Config::default(),
        sockets: Registry::new(),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/ws", get(upgrade))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "axum echo listening on http://{0} (WebSocket: ws://{0}/ws)",
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;

    // axum has stopped; now the WebSockets it handed over.
    let closed = app
        .sockets
        .close_all(CloseCode::GOING_AWAY, "server shutting down");
    let drained = tokio::time::timeout(Duration::from_secs(5), app.sockets.idle()).await;
    eprintln!(
        "closed {closed} WebSocket(s); {} still open",
        if drained.is_ok() {
            0
        } else {
            app.sockets.len()
        }
    );
    Ok(())
}

async fn index() -> &'static str {
    "tidings echo on axum: connect a WebSocket to /ws\n"
}

/// `GET /ws`: invalid requests are refused by the extractor (400/405/426…, with the reason as
/// the body) and a foreign `Origin` by the config (403); accepted ones are echoed.
async fn upgrade(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    let registration = app.sockets.register();
    ws.config(app.config.clone())
        .on_failed_upgrade(|e| eprintln!("upgrade failed: {e}"))
        .on_upgrade(move |ws| async move {
            registration.set_closer(ws.closer());
            echo(ws).await;
            drop(registration);
        })
}

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}
