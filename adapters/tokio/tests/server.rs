//! The server helper on tokio: routes (WebSocket, plain HTTP, 404), keep-alive, request bodies
//! (413 above the limit), async `init`, Server-Sent Events, connection limits (503 with
//! `Retry-After`), graceful shutdown (close 1001, streams ended, bounded wait). The test bodies live
//! in `adapters/io/tests/common/server_body.rs`, shared with tidings-smol; only this prelude differs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};

use tidings_io::sse::{SseBody, SseConfig, SseEvent, SseSendError, SseSender};
use tidings_tokio::core::handshake::HandshakeError;
use tidings_tokio::server::{
    HttpResponse, Json, PeerAddr, RequestInfo, Route, Server, ServerHandle, ShutdownReport,
};
use tidings_tokio::{
    AcceptOptions, CloseCode, Config, ConnectOptions, Error, Event, Rejection, WebSocket, client,
    connect, connect_with, runtime,
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

/// An unbounded channel, for handlers to tell the test what they saw (and wait for its answer).
fn channel<T>() -> (Tx<T>, Rx<T>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Tx(tx), Rx(rx))
}

struct Tx<T>(tokio::sync::mpsc::UnboundedSender<T>);

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx(self.0.clone())
    }
}

impl<T> Tx<T> {
    /// Sends `value`; nothing happens if the receiver is gone.
    fn send(&self, value: T) {
        let _ = self.0.send(value);
    }
}

struct Rx<T>(tokio::sync::mpsc::UnboundedReceiver<T>);

impl<T> Rx<T> {
    /// The next value; `None` once every sender is gone.
    async fn recv(&mut self) -> Option<T> {
        self.0.recv().await
    }
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
