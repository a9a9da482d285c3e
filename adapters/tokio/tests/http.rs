//! `tidings_tokio::http::upgrade` under a real hyper 1 HTTP/1.1 server (with `.with_upgrades()`),
//! with `tidings_tokio::connect` as the client: echo, subprotocol, refusals.
#![cfg(feature = "hyper")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tidings_tokio::core::handshake::HandshakeError;
use tidings_tokio::{
    AcceptOptions, Config, ConnectOptions, Error, Message, Rejection, UpgradeRequest, connect,
    connect_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test ends within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("test timed out")
}

/// `/ws` upgrades (choosing `chat` if offered) and echoes; other paths are refused with 404.
async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let choose = |r: &UpgradeRequest<'_>| match r.path() {
        "/ws" if r.protocols().contains(&"chat") => Ok(AcceptOptions::new().protocol("chat")),
        "/ws" => Ok(AcceptOptions::new()),
        _ => Err(Rejection::new(404).body("no such socket")),
    };
    match tidings_tokio::http::upgrade(&mut req, &Config::default(), choose) {
        Ok((response, upgrade)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = upgrade.await else { return };
                while let Some(Ok(message)) = ws.recv().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
            Ok(response)
        }
        Err(refused) => Ok(refused.response),
    }
}

/// A hyper HTTP/1.1 server on 127.0.0.1:0 in a background task.
async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn echo_round_trip_through_a_hyper_upgrade() {
    bounded(async {
        let addr = start().await;
        let mut ws = connect(&format!("ws://{addr}/ws")).await.expect("connect");
        assert_eq!(ws.subprotocol(), None);
        ws.send_text("hello").await.expect("send");
        let echoed = ws.recv().await.expect("open").expect("message");
        assert_eq!(echoed.as_text(), Some("hello"));
        let big = Bytes::from(vec![7u8; 300_000]);
        ws.send(Message::binary(big.clone())).await.expect("send");
        let echoed = ws.recv().await.expect("open").expect("message");
        assert_eq!(echoed.as_bytes(), &big[..]);
        ws.close(tidings_tokio::CloseCode::NORMAL, "")
            .await
            .expect("close");
    })
    .await;
}

#[tokio::test]
async fn the_chosen_subprotocol_reaches_both_sides() {
    bounded(async {
        let addr = start().await;
        let options = ConnectOptions::new().protocol("other").protocol("chat");
        let (mut ws, response) = connect_with(&format!("ws://{addr}/ws"), &options)
            .await
            .expect("connect");
        assert_eq!(response.protocol.as_deref(), Some("chat"));
        assert_eq!(ws.subprotocol(), Some("chat"));
        ws.send_text("x").await.expect("send");
        assert!(ws.recv().await.expect("open").is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_rejected_path_is_answered_404() {
    bounded(async {
        let addr = start().await;
        match connect(&format!("ws://{addr}/nope")).await {
            Err(Error::Handshake(HandshakeError::Rejected { status, .. })) => {
                assert_eq!(status, 404);
            }
            other => panic!("expected 404, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_that_is_not_an_upgrade_gets_the_engine_status() {
    bounded(async {
        let addr = start().await;
        let mut tcp = TcpStream::connect(addr).await.expect("tcp");
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8(response).expect("utf-8");
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{response}"
        );
        assert!(response.contains("Upgrade header missing"), "{response}");
    })
    .await;
}

/// A hub behind hyper through `http::serve_hub`: the factory refuses `/hub?deny` with 401 before
/// the upgrade; admitted clients are welcomed once registered and get each other's messages.
#[cfg(feature = "hub")]
#[tokio::test]
async fn serve_hub_runs_hyper_upgrades_as_hub_clients_and_refuses_before_the_upgrade() {
    use tidings_tokio::hub::{Admission, Client, Handler, HandlerError, Hub};

    /// Forwards every message to every other client.
    struct Forward(Hub);

    impl Handler for Forward {
        async fn on_message(&mut self, client: &Client, m: Message) -> Result<(), HandlerError> {
            self.0.to_all().except(client.id()).send(m)?;
            Ok(())
        }
    }

    /// Refuses `?deny`; admits others with a `Forward`.
    fn factory(
        hub: Hub,
    ) -> impl Fn(&UpgradeRequest<'_>) -> Result<Admission<Forward>, Rejection> + Send + Sync + 'static
    {
        move |r| {
            if r.query() == Some("deny") {
                return Err(Rejection::new(401));
            }
            Ok(Admission::new(Forward(hub.clone())))
        }
    }

    bounded(async {
        let hub = Hub::builder()
            .on_connect(|client| {
                let _ = client.send_text("welcome");
            })
            .build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server_hub = hub.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let hub = server_hub.clone();
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let response: Response<Full<Bytes>> = tidings_tokio::http::serve_hub(
                        &mut req,
                        &Config::default(),
                        &hub,
                        &factory(hub.clone()),
                    );
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        match connect(&format!("ws://{addr}/hub?deny")).await {
            Err(e) => assert_eq!(e.rejected_status(), Some(401), "{e}"),
            Ok(_) => panic!("the factory's refusal was upgraded"),
        }
        let mut a = connect(&format!("ws://{addr}/hub"))
            .await
            .expect("connect a");
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
