//! An echo server on tidings-tokio: every text or binary message comes back with the same opcode,
//! on any path. It is the Autobahn TestSuite's server under test and the echo benchmark's.
//!
//! ```sh
//! cargo run --release --example tokio_echo_server -- 127.0.0.1:9001
//! ```

use tidings_tokio::{AcceptOptions, Config, DeflateConfig, OriginPolicy};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("echo server listening on ws://{}", listener.local_addr()?);
    // Large messages for Autobahn's 9.* cases; any origin, as test clients come from anywhere;
    // permessage-deflate when the client offers it (Autobahn's 12.* and 13.*).
    let config = Config::default()
        .max_message_size(Some(64 << 20))
        .origin_policy(OriginPolicy::allow_all())
        .deflate(Some(DeflateConfig::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            let Ok(mut ws) =
                tidings_tokio::accept_with(stream, &config, |_| Ok(AcceptOptions::new())).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}
