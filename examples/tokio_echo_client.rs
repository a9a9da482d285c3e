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

use tidings_tokio::{CloseCode, Config, ConnectOptions, DeflateConfig, Message};

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

/// Three texts and three binaries; with deflate also messages worth compressing: 1 KiB JSON-like
/// texts (alike, so context takeover pays), a 256 KiB text and a 64 KiB binary.
fn messages(deflate: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    for i in 0..3u8 {
        messages.push(Message::text(format!("hello {i}")));
        messages.push(Message::binary(vec![i; 4]));
    }
    if deflate {
        for i in 0..32 {
            let json = format!(
                r#"{{"type":"event","seq":{i},"room":"room-{}","user":{{"id":{},"name":"user-{}"}},"body":"{}"}}"#,
                i % 5,
                1000 + i % 17,
                i % 17,
                "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(17),
            );
            messages.push(Message::text(json));
        }
        let line = "the quick brown fox jumps over the lazy dog — über café\n";
        messages.push(Message::text(line.repeat((256 << 10) / line.len())));
        let binary: Vec<u8> = (0..64u32 << 10)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        messages.push(Message::binary(binary));
    }
    messages
}

/// The message in full when short, its kind and length otherwise.
fn show(message: &Message) -> String {
    if message.len() <= 64 {
        format!("{message:?}")
    } else {
        match message {
            Message::Text(_) => format!("Text({} bytes)", message.len()),
            Message::Binary(_) => format!("Binary({} bytes)", message.len()),
        }
    }
}
