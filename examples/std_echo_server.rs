//! An echo server on blocking `std::net` threads and the sans-IO core: every text or binary message
//! comes back with the same opcode, on any path. No async runtime involved.
//!
//! ```sh
//! cargo run --release --example std_echo_server -- 127.0.0.1:9001
//! ```

use std::net::TcpListener;

use tidings_core::ext::deflate::{CompressorPool, DeflateConfig};
use tidings_core::handshake::AcceptOptions;
use tidings_core::handshake::HandshakeConfig;
use tidings_core::{Config, Event};
use tidings_examples::blocking;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr)?;
    println!(
        "std_echo_server listening on ws://{}",
        listener.local_addr()?
    );
    // One permessage-deflate config for every connection, with one compressor pool: a client
    // that asks for `server_no_context_takeover` then borrows a compressor per message instead
    // of keeping its own (see `tidings_core::ext::deflate`).
    let deflate = DeflateConfig::new().compressor_pool(CompressorPool::new());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let deflate = deflate.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, deflate) {
                eprintln!("connection ended with an error: {e}");
            }
        });
    }
    Ok(())
}

fn serve(stream: std::net::TcpStream, deflate: DeflateConfig) -> std::io::Result<()> {
    let config = Config::default().max_message_size(Some(64 << 20));
    let mut ws = blocking::accept(
        stream,
        config,
        &AcceptOptions::default(),
        &HandshakeConfig::new().deflate(Some(deflate)),
    )?;
    while let Some(event) = ws.next_event()? {
        match event {
            // Echo: answer before polling the next event, so the answer precedes anything the
            // peer's next frame provokes (such as a close for a protocol error).
            Event::Message(message) => {
                let _ = ws.conn().send(message);
            }
            Event::Closed(outcome) if outcome.is_error() => {
                eprintln!("closed: {} {:?}", outcome.code, outcome.error);
            }
            _ => {}
        }
    }
    Ok(())
}
