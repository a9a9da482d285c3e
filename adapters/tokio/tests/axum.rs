//! `tidings_tokio::axum::WebSocketUpgrade` under a real axum 0.8 server on 127.0.0.1:0, with
//! `tidings_tokio::connect` (or a raw TCP request) as the client: echo, subprotocols, refusals,
//! the `on_upgrade` and `on_failed_upgrade` callbacks, a hub route, and `Option<_>`.
#![cfg(feature = "axum")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tidings_tokio::axum::WebSocketUpgrade;
use tidings_tokio::{
    CloseCode, Config, ConnectOptions, Error, Message, WebSocket, connect, connect_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every test ends within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("test timed out")
}

/// Serves `app` with `axum::serve` on 127.0.0.1:0 in a background task.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

/// `GET /ws`: echoes every message.
async fn echo_route(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(echo)
}

/// Sends `request` on a fresh TCP connection and reads the whole answer (the request asks for
/// `Connection: close`).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read");
    String::from_utf8(response).expect("utf-8")
}

#[tokio::test]
async fn echo_round_trip_through_the_extractor() {
    bounded(async {
        let addr = serve(Router::new().route("/ws", get(echo_route))).await;
        let mut ws = connect(&format!("ws://{addr}/ws")).await.expect("connect");
        assert_eq!(ws.subprotocol(), None);
        ws.send_text("hello").await.expect("send");
        let echoed = ws.recv().await.expect("open").expect("message");
        assert_eq!(echoed.as_text(), Some("hello"));
        let big = Bytes::from(vec![7u8; 300_000]);
        ws.send(Message::binary(big.clone())).await.expect("send");
        let echoed = ws.recv().await.expect("open").expect("message");
        assert_eq!(echoed.as_bytes(), &big[..]);
        let outcome = ws.close(CloseCode::NORMAL, "").await.expect("close");
        assert_eq!(outcome.code, CloseCode::NORMAL);
    })
    .await;
}

/// `protocols` picks the first subprotocol the client offers that the server speaks; the
/// handler sees it (`selected_protocol`) and so does the WebSocket.
#[tokio::test]
async fn protocols_choose_the_first_offered_one_the_server_speaks() {
    async fn route(ws: WebSocketUpgrade) -> Response {
        let ws = ws.protocols(["chat.v2", "chat.v1"]);
        let selected = ws.selected_protocol().map(str::to_owned);
        let requested = ws.requested_protocols().collect::<Vec<_>>().join(",");
        ws.on_upgrade(move |mut socket| async move {
            let report = format!("{selected:?} {:?} {requested}", socket.subprotocol());
            let _ = socket.send_text(report).await;
        })
    }
    bounded(async {
        let addr = serve(Router::new().route("/ws", get(route))).await;
        let url = format!("ws://{addr}/ws");

        let offer = ConnectOptions::new()
            .protocol("other")
            .protocol("chat.v1")
            .protocol("chat.v2");
        let (mut ws, response) = connect_with(&url, &offer).await.expect("connect");
        assert_eq!(response.protocol.as_deref(), Some("chat.v1"));
        assert_eq!(ws.subprotocol(), Some("chat.v1"));
        let report = ws.recv().await.expect("open").expect("message");
        assert_eq!(
            report.as_text(),
            Some(r#"Some("chat.v1") Some("chat.v1") other,chat.v1,chat.v2"#)
        );

        // Nothing in common: accepted without a subprotocol.
        let offer = ConnectOptions::new().protocol("other");
        let (mut ws, response) = connect_with(&url, &offer).await.expect("connect");
        assert_eq!(response.protocol, None);
        let report = ws.recv().await.expect("open").expect("message");
        assert_eq!(report.as_text(), Some("None None other"));
    })
    .await;
}

#[tokio::test]
async fn a_plain_get_is_refused_with_400() {
    bounded(async {
        let addr = serve(Router::new().route("/ws", get(echo_route))).await;
        let response = raw(
            addr,
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{response}"
        );
        assert!(response.contains("Upgrade header missing"), "{response}");
    })
    .await;
}

#[tokio::test]
async fn a_wrong_version_is_refused_with_426_and_the_version_we_speak() {
    bounded(async {
        let addr = serve(Router::new().route("/ws", get(echo_route))).await;
        let response = raw(
            addr,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{response}"
        );
        assert!(
            response
                .to_ascii_lowercase()
                .contains("\r\nsec-websocket-version: 13\r\n"),
            "{response}"
        );
    })
    .await;
}

/// The callback runs with the upgraded WebSocket, in its own task, and can use state the
/// handler moved into it.
#[tokio::test]
async fn on_upgrade_runs_the_callback_with_the_websocket() {
    async fn route(
        State(events): State<mpsc::UnboundedSender<String>>,
        ws: WebSocketUpgrade,
    ) -> Response {
        ws.on_upgrade(move |mut socket| async move {
            let _ = events.send("upgraded".to_owned());
            while let Some(Ok(message)) = socket.recv().await {
                let _ = events.send(message.as_text().unwrap_or("binary").to_owned());
            }
            let _ = events.send("closed".to_owned());
        })
    }
    bounded(async {
        let (tx, mut events) = mpsc::unbounded_channel();
        let app = Router::new().route("/ws", get(route)).with_state(tx);
        let addr = serve(app).await;
        let mut ws = connect(&format!("ws://{addr}/ws")).await.expect("connect");
        assert_eq!(events.recv().await.as_deref(), Some("upgraded"));
        ws.send_text("one").await.expect("send");
        assert_eq!(events.recv().await.as_deref(), Some("one"));
        ws.close(CloseCode::NORMAL, "bye").await.expect("close");
        assert_eq!(events.recv().await.as_deref(), Some("closed"));
    })
    .await;
}

/// hyper's HTTP/1 connection served without `.with_upgrades()` cannot hand the connection over:
/// the `101` goes out, then `on_failed_upgrade` gets the error and the callback never runs.
#[tokio::test]
async fn on_failed_upgrade_gets_the_error_when_hyper_cannot_upgrade() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    bounded(async {
        let (tx, mut failures) = mpsc::unbounded_channel::<String>();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (mut parts, _body) = req.into_parts();
                    let response = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await
                    {
                        Ok(ws) => {
                            let failed = tx.clone();
                            ws.on_failed_upgrade(move |e: Error| {
                                let _ = failed.send(format!("failed: {e}"));
                            })
                            .on_upgrade(move |_| async move {
                                let _ = tx.send("callback ran".to_owned());
                            })
                        }
                        Err(rejection) => rejection.into_response(),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            // No `.with_upgrades()`.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // The handshake itself may succeed or not, depending on when hyper drops the connection.
        let _ = connect(&format!("ws://{addr}/ws")).await;
        let report = failures.recv().await.expect("a report");
        assert!(report.starts_with("failed: "), "{report}");
    })
    .await;
}

/// A hub behind axum through the extractor: the factory refuses `?deny` with 401 before the
/// upgrade; admitted clients are welcomed once registered, get the route's subprotocol, and get
/// each other's messages.
#[cfg(feature = "hub")]
#[tokio::test]
async fn serve_hub_runs_extracted_upgrades_as_hub_clients() {
    use tidings_tokio::hub::{Admission, Client, Handler, HandlerError, Hub};
    use tidings_tokio::{Rejection, UpgradeRequest};

    /// Forwards every message to every other client.
    struct Forward(Hub);

    impl Handler for Forward {
        async fn on_message(&mut self, client: &Client, m: Message) -> Result<(), HandlerError> {
            self.0.to_all().except(client.id()).send(m)?;
            Ok(())
        }
    }

    async fn route(State(hub): State<Hub>, ws: WebSocketUpgrade) -> Response {
        let forward_to = hub.clone();
        let factory = move |r: &UpgradeRequest<'_>| {
            if r.query() == Some("deny") {
                return Err(Rejection::new(401));
            }
            Ok(Admission::new(Forward(forward_to.clone())))
        };
        ws.protocols(["relay"]).serve_hub(&hub, &factory)
    }

    bounded(async {
        let hub = Hub::builder()
            .on_connect(|client| {
                let _ = client.send_text("welcome");
            })
            .build();
        let app = Router::new()
            .route("/hub", get(route))
            .with_state(hub.clone());
        let addr = serve(app).await;
        match connect(&format!("ws://{addr}/hub?deny")).await {
            Err(e) => assert_eq!(e.rejected_status(), Some(401), "{e}"),
            Ok(_) => panic!("the factory's refusal was upgraded"),
        }
        let offer = ConnectOptions::new().protocol("relay");
        let (mut a, _) = connect_with(&format!("ws://{addr}/hub"), &offer)
            .await
            .expect("connect a");
        assert_eq!(a.subprotocol(), Some("relay"));
        let mut b = connect(&format!("ws://{addr}/hub"))
            .await
            .expect("connect b");
        for ws in [&mut a, &mut b] {
            let welcome = ws.recv().await.expect("open").expect("message");
            assert_eq!(welcome.as_text(), Some("welcome"));
        }
        assert_eq!(hub.client_count(), 2);
        b.send_text("hello from b").await.expect("send");
        let got = a.recv().await.expect("open").expect("message");
        assert_eq!(got.as_text(), Some("hello from b"));
        a.send_text("hello from a").await.expect("send");
        let got = b.recv().await.expect("open").expect("message");
        assert_eq!(got.as_text(), Some("hello from a"));
    })
    .await;
}

/// `Option<WebSocketUpgrade>`: a plain `GET` of the path gets the page, an upgrade the socket.
#[tokio::test]
async fn an_optional_extractor_serves_a_page_and_a_websocket_on_one_path() {
    async fn route(ws: Option<WebSocketUpgrade>) -> Response {
        match ws {
            Some(ws) => ws.on_upgrade(echo),
            None => "a page\n".into_response(),
        }
    }
    bounded(async {
        let addr = serve(Router::new().route("/", get(route))).await;
        let page = raw(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.ends_with("a page\n"), "{page}");
        let mut ws = connect(&format!("ws://{addr}/")).await.expect("connect");
        ws.send_text("hi").await.expect("send");
        let echoed = ws.recv().await.expect("open").expect("message");
        assert_eq!(echoed.as_text(), Some("hi"));
    })
    .await;
}

/// A `Config` layered on the router is the extractor's: its origin policy refuses a cross-origin
/// request with 403 before the handler runs.
#[tokio::test]
async fn a_layered_config_refuses_a_foreign_origin_before_the_handler() {
    async fn route(State(ran): State<mpsc::UnboundedSender<()>>, ws: WebSocketUpgrade) -> Response {
        let _ = ran.send(());
        ws.on_upgrade(echo)
    }
    bounded(async {
        let (tx, mut ran) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/ws", get(route))
            .layer(axum::Extension(Config::default()))
            .with_state(tx);
        let addr = serve(app).await;
        let url = format!("ws://{addr}/ws");
        let foreign = ConnectOptions::new().header("Origin", "https://elsewhere.example");
        match connect_with(&url, &foreign).await {
            Err(e) => assert_eq!(e.rejected_status(), Some(403), "{e}"),
            Ok(_) => panic!("a foreign origin was upgraded"),
        }
        // The next request is same-origin (no `Origin`): the handler runs once, for it only.
        let mut ws = connect(&url).await.expect("connect");
        ran.recv().await.expect("the handler ran");
        assert!(
            ran.try_recv().is_err(),
            "the refused request reached the handler"
        );
        ws.close(CloseCode::NORMAL, "").await.expect("close");
    })
    .await;
}
