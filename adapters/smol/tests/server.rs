//! The server helper on smol: routes (WebSocket, plain HTTP, 404), keep-alive, request bodies
//! (413 above the limit), async `init`, Server-Sent Events, connection limits (503 with
//! `Retry-After`), graceful shutdown (close 1001, streams ended, bounded wait). The test bodies live
//! in `adapters/io/tests/common/server_body.rs`, shared with tidings-tokio; only this prelude differs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use tidings_io::sse::{SseBody, SseConfig, SseEvent, SseSendError, SseSender};
use tidings_smol::core::handshake::HandshakeError;
use tidings_smol::server::{
    HttpResponse, Json, PeerAddr, RequestInfo, Route, Server, ServerHandle, ShutdownReport,
};
use tidings_smol::{
    AcceptOptions, CloseCode, Config, ConnectOptions, Error, Event, Rejection, WebSocket, client,
    connect, connect_with, runtime,
};

/// Every test ends within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    Box::pin(smol::spawn(fut))
}

/// A trigger and the future it completes.
fn signal() -> (impl FnOnce(), impl Future<Output = ()>) {
    let (tx, rx) = smol::channel::bounded::<()>(1);
    (
        move || {
            let _ = tx.try_send(());
        },
        async move {
            let _ = rx.recv().await;
        },
    )
}

/// An unbounded channel, for handlers to tell the test what they saw (and wait for its answer).
fn channel<T>() -> (Tx<T>, Rx<T>) {
    let (tx, rx) = smol::channel::unbounded();
    (Tx(tx), Rx(rx))
}

struct Tx<T>(smol::channel::Sender<T>);

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx(self.0.clone())
    }
}

impl<T> Tx<T> {
    /// Sends `value`; nothing happens if the receiver is gone.
    fn send(&self, value: T) {
        let _ = self.0.try_send(value);
    }
}

struct Rx<T>(smol::channel::Receiver<T>);

impl<T> Rx<T> {
    /// The next value; `None` once every sender is gone.
    async fn recv(&mut self) -> Option<T> {
        self.0.recv().await.ok()
    }
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        mod run {
            $(
                #[test]
                fn $name() {
                    smol::block_on(smol::future::or(super::$name(), async {
                        smol::Timer::after(super::BOUND).await;
                        panic!("test timed out");
                    }));
                }
            )*
        }
    };
}
include!("../../io/tests/common/server_body.rs");
