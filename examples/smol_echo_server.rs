//! An echo server on tidings-smol: every text or binary message comes back with the same opcode,
//! on any path. It is the Autobahn TestSuite's server under test and the echo benchmark's.
//!
//! ```sh
//! cargo run --release --example smol_echo_server -- 127.0.0.1:9001
//! ```

use std::sync::Arc;

use smol::Executor;
use smol::net::TcpListener;
use tidings_smol::{AcceptOptions, Config, DeflateConfig, OriginPolicy};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    // One executor, run by this thread, for the accept loop, the connections and their driver
    // tasks (`set_spawner`): no task is woken across threads, and this thread also drives the
    // reactor while its tasks wait.
    let executor: Arc<Executor<'static>> = Arc::new(Executor::new());
    let ex = executor.clone();
    if tidings_smol::set_spawner(move |task| ex.spawn(task).detach()).is_err() {
        unreachable!("the first spawner of this process");
    }
    smol::block_on(executor.run(async {
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
            executor
                .spawn(async move {
                    let Ok(mut ws) =
                        tidings_smol::accept_with(stream, &config, |_| Ok(AcceptOptions::new()))
                            .await
                    else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.recv().await {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
        }
    }))
}
