//! The server helper on tokio: routes (WebSocket, plain HTTP, 404), connection limits (503 with
//! `Retry-After`), graceful shutdown (close 1001, bounded wait). The test bodies live
//! in `adapters/io/tests/common/server_body.rs`, shared with tidings-smol; only this prelude differs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;

use tidings_tokio::core::handshake::HandshakeError;
use tidings_tokio::server::{
    HttpResponse, RequestInfo, Route, Server, ServerHandle, ShutdownReport,
};
use tidings_tokio::{
    CloseCode, Config, ConnectOptions, Error, Event, WebSocket, connect, connect_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every test ends within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    let handle = tokio::spawn(fut);
    Box::pin(async move { handle.await.expect("task panicked") })
}

/// A trigger and the future it completes.
fn signal() -> (impl FnOnce(), impl Future<Output = ()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (
        move || {
            let _ = tx.send(());
        },
        async move {
            let _ = rx.await;
        },
    )
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        mod run {
            $(
                #[tokio::test]
                async fn $name() {
                    tokio::time::timeout(super::BOUND, super::$name())
                        .await
                        .expect("test timed out");
                }
            )*
        }
    };
}
include!("../../io/tests/common/server_body.rs");
