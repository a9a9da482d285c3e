//! An echo client on tidings-smol: sends a few text and binary messages, prints the echoes,
//! measures a ping's round trip and closes cleanly.
//!
//! ```sh
//! cargo run --release --example smol_echo_server -- 127.0.0.1:9001 &
//! cargo run --release --example smol_echo_client -- ws://127.0.0.1:9001/
//! ```

use tidings_smol::{CloseCode, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let mut ws = tidings_smol::connect(&url).await?;
    for i in 0..3 {
        ws.send_text(format!("hello {i}")).await?;
        ws.send_binary(vec![i; 4]).await?;
    }
    // The echoes come back in order, with the opcode they were sent with.
    for i in 0..3u8 {
        for expected in [
            Message::text(format!("hello {i}")),
            Message::binary(vec![i; 4]),
        ] {
            match ws.recv().await {
                Some(Ok(message)) if message == expected => println!("echo: {message:?}"),
                Some(Ok(other)) => {
                    return Err(format!("expected {expected:?}, got {other:?}").into());
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection closed early".into()),
            }
        }
    }
    let rtt = ws.ping().await?;
    println!("ping round trip: {rtt:?}");
    let outcome = ws.close(CloseCode::NORMAL, "bye").await?;
    println!("closed: {outcome:?}");
    Ok(())
}
