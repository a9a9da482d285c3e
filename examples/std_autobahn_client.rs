//! The Autobahn TestSuite client driver on blocking `std::net` and the sans-IO core.
//!
//! ```sh
//! cargo run --release --example std_autobahn_client -- ws://127.0.0.1:9001 [agent]
//! ```
//!
//! It asks the fuzzing server for the case count, runs every case as an echo client, and finally
//! asks the server to write its reports (the Autobahn client convention).

use tidings_core::ext::deflate::DeflateConfig;
use tidings_core::handshake::HandshakeConfig;
use tidings_core::{Config, Event, Message};
use tidings_examples::blocking;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = args.next().unwrap_or_else(|| "tidings".to_owned());

    let count = case_count(&url)?;
    println!("running {count} cases against {url} as {agent}");
    for case in 1..=count {
        let case_url = format!("{url}/runCase?case={case}&agent={agent}");
        if let Err(e) = echo(&case_url) {
            // Many cases are protocol violations or abrupt closes: go on with the next one.
            eprintln!("case {case}: {e}");
        }
    }
    let mut ws = blocking::connect(
        &format!("{url}/updateReports?agent={agent}"),
        Config::default(),
        &HandshakeConfig::new(),
    )?;
    while ws.next_event()?.is_some() {}
    Ok(())
}

fn case_count(url: &str) -> std::io::Result<u32> {
    let mut ws = blocking::connect(
        &format!("{url}/getCaseCount"),
        Config::default(),
        &HandshakeConfig::new(),
    )?;
    let mut count = None;
    while let Some(event) = ws.next_event()? {
        if let Event::Message(Message::Text(text)) = event {
            count = text.trim().parse().ok();
        }
    }
    count.ok_or_else(|| std::io::Error::other("no case count received"))
}

fn echo(url: &str) -> std::io::Result<()> {
    let config = Config::default().max_message_size(Some(64 << 20));
    // permessage-deflate for 12.* and 13.*; client_no_context_takeover because the suite's server
    // asks for it only when the client offered it.
    let deflate = DeflateConfig::new().client_no_context_takeover(true);
    let mut ws = blocking::connect(url, config, &HandshakeConfig::new().deflate(Some(deflate)))?;
    while let Some(event) = ws.next_event()? {
        if let Event::Message(message) = event {
            let _ = ws.conn().send(message);
        }
    }
    Ok(())
}
