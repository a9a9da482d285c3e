//! The hub's benchmark server (tidings-tokio + tidings-hub): every text or binary message received
//! from any WebSocket client is broadcast, encoded once, to every other member of the room
//! [`ROOM`], with the same opcode and the same bytes. Every WebSocket client joins the room when
//! it connects; Server-Sent Events subscribers join it too and get its text messages as events.
//!
//! ```sh
//! cargo run --release --example hub_fanout_server -- 127.0.0.1:9010 [--outbox N] [--inline] \
//!     [--redis URL [--presence-timeout SECS]]
//! ```
//!
//! Routes:
//!
//! * `/`: WebSocket. A client joins [`ROOM`]; what it sends goes to the room's other members.
//! * `GET /events`: Server-Sent Events (`text/event-stream`, the hub's default settings: a
//!   comment after 15 s without events). The subscriber joins [`ROOM`]; a text message
//!   broadcast to the room reaches it as `id: N\ndata: <text>\n\n`, encoded once for all SSE
//!   members (binary messages do not go over SSE, but use up an id). Other methods get `405`.
//!
//! `--outbox N` bounds each WebSocket client's outbox at N messages (default 256: a client that
//! falls that far behind is disconnected with 1008); `--inline` writes broadcasts from the
//! sender's task instead of waking each connection's driver task (see
//! `OutboxLimits::write_inline`). `scripts/bench-fanout.sh` runs it against a tokio-tungstenite +
//! `tokio::sync::broadcast` baseline; `scripts/bench-sse.sh` compares its SSE subscribers with
//! its WebSocket subscribers.
//!
//! `--redis URL` builds the hub on the Redis backend (`tidings_hub_redis`, through the examples'
//! shared option, `tidings_examples::hub_backend`): every process started with the same URL
//! serves one room [`ROOM`], so a message sent to one process reaches the room's members on all
//! of them (each process subscribes to the room's channel once it has a member there, and
//! encodes each broadcast once for its own members). The handler does not change.
//! `scripts/bench-redis.sh` runs two such processes against one in-process hub.

use std::future::Future;
use std::io;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use tidings_examples::hub_backend::BackendArgs;
use tidings_tokio::hub::{
    Admission, Client, Handler, HandlerError, Hub, HubConfig, Message, SseSubscription,
};
use tidings_tokio::server::{HttpResponse, IntoResponse, Route, Server};
use tidings_tokio::{Config, OriginPolicy, OutboxLimits, UpgradeRequest};

/// The room every subscriber, WebSocket or SSE, is in.
const ROOM: &str = "fanout";

/// A WebSocket client: joins [`ROOM`], and forwards each of its messages to the room's other
/// members.
struct Member {
    hub: Hub,
}

impl Handler for Member {
    async fn on_connect(&mut self, client: &Client) {
        if let Err(e) = client.join(ROOM) {
            eprintln!("client {} could not join {ROOM}: {e}", client.id());
        }
    }

    fn on_message(
        &mut self,
        client: &Client,
        message: Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        // Encoded once, queued to every other member's outbox (or SSE queue); never waits for
        // them.
        let sent = self.hub.to_room(ROOM).except(client.id()).send(message);
        async move {
            sent?;
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9010".to_owned());
    let mut outbox = OutboxLimits::default();
    let mut backend = BackendArgs::default();
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    while let Some(arg) = args.next() {
        if backend.take(&arg, &mut args).map_err(bad)? {
            continue;
        }
        match arg.as_str() {
            "--outbox" => {
                let n = args.next().and_then(|n| n.parse().ok());
                outbox = outbox.messages(n.unwrap_or(256));
            }
            "--inline" => outbox = outbox.write_inline(true),
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    backend.check().map_err(bad)?;
    let hub = backend
        .hub(
            HubConfig::default().outbox(outbox),
            tidings_tokio::runtime(),
        )
        .await
        .map_err(io::Error::other)?;
    eprintln!("hub backend: {}", backend.describe());
    let members = hub.clone();
    let websocket = hub.route(move |_req: &UpgradeRequest<'_>| {
        Ok(Admission::new(Member {
            hub: members.clone(),
        }))
    });
    let subscribers = hub.clone();
    let events = Route::http(move |req: Request<Bytes>| {
        let response = if req.method() == Method::GET {
            match subscribers
                .subscribe_sse(tidings_tokio::runtime(), SseSubscription::new().room(ROOM))
            {
                Ok(stream) => IntoResponse::into_response(stream.into_response()),
                Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
            }
        } else {
            HttpResponse::text(405, "use GET\n")
                .header("Allow", "GET")
                .into_response()
        };
        async move { response }
    });
    let listening = Server::new()
        .config(Config::default().origin_policy(OriginPolicy::allow_all()))
        .route("/", websocket)
        .route("/events", events)
        .bind(&addr)
        .await?;
    let local = listening.local_addr();
    eprintln!("hub fan-out server listening on ws://{local}/ and http://{local}/events (SSE)");
    listening
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
