//! The server helper on smol: routes (WebSocket, plain HTTP, 404), connection limits (503 with
//! `Retry-After`), graceful shutdown (close 1001, bounded wait). The test bodies live
//! in `adapters/io/tests/common/server_body.rs`, shared with tidings-tokio; only this prelude differs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use tidings_smol::core::handshake::HandshakeError;
use tidings_smol::server::{
    HttpResponse, RequestInfo, Route, Server, ServerHandle, ShutdownReport,
};
use tidings_smol::{
    CloseCode, Config, ConnectOptions, Error, Event, WebSocket, connect, connect_with,
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
