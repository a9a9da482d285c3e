//! An echo client on tidings-tokio: sends a few text and binary messages, checks the echoes,
//! measures a ping's round trip and closes cleanly.
//!
//! With `--deflate` it offers permessage-deflate (RFC 7692), fails unless the server agrees, and
//! adds compressible messages above the compression threshold (1 KiB JSON-like texts, a 256 KiB
//! text, a 64 KiB binary) to what it sends and checks.
//!
//! ```sh
//! cargo run --release --example tokio_echo_server -- 127.0.0.1:9001 &
//! cargo run --release --example tokio_echo_client -- ws://127.0.0.1:9001/
//! cargo run --release --example tokio_echo_client -- ws://127.0.0.1:9001/ --deflate
//! ```

use tidings_examples::echo_messages::{messages, show};
use tidings_tokio::{CloseCode, Config, ConnectOptions, DeflateConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let deflate = args.iter().any(|a| a == "--deflate");
    let url = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let mut ws = if deflate {
        let options =
            ConnectOptions::new().config(Config::default().deflate(Some(DeflateConfig::new())));
        let (ws, _response) = tidings_tokio::connect_with(&url, &options).await?;
        match ws.extensions() {
            Some(agreed) if agreed.contains("permessage-deflate") => {
                println!("Sec-WebSocket-Extensions: {agreed}");
            }
            other => {
                return Err(format!("permessage-deflate was not agreed (got {other:?})").into());
            }
        }
        ws
    } else {
        tidings_tokio::connect(&url).await?
    };
    let messages = messages(deflate);
    for message in &messages {
        ws.send(message.clone()).await?;
    }
    // The echoes come back in order, with the opcode they were sent with.
    for expected in &messages {
        match ws.recv().await {
            Some(Ok(message)) if message == *expected => println!("echo: {}", show(&message)),
            Some(Ok(other)) => {
                return Err(format!("expected {}, got {}", show(expected), show(&other)).into());
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection closed early".into()),
        }
    }
    let rtt = ws.ping().await?;
    println!("ping round trip: {rtt:?}");
    let outcome = ws.close(CloseCode::NORMAL, "bye").await?;
    println!("closed: {outcome:?}");
    Ok(())
}
