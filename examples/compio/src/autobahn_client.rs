//! `compio_autobahn_client [URL] [AGENT]`: the Autobahn TestSuite client driver on a compio
//! runtime (io_uring), the client role of this package's echo ([`tidings_compio_example::echo`]).
//!
//! ```sh
//! cargo run --release -p tidings-compio-example --bin compio_autobahn_client -- ws://127.0.0.1:9001 tidings
//! ```
//!
//! It asks the fuzzing server for the case count, runs every case as an echo client, then asks
//! the server to write its reports (the Autobahn client convention, as the other drivers do).

use std::io;

use tidings_compio_example::{connect, drive, echo};
use tidings_core::ext::deflate::DeflateConfig;
use tidings_core::handshake::HandshakeConfig;
use tidings_core::{Config, Message};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = args.next().unwrap_or_else(|| "tidings".to_owned());
    tidings_compio_example::runtime()?.block_on(async move {
        let count = case_count(&url).await?;
        println!("running {count} cases against {url} as {agent}");
        // permessage-deflate for 12.* and 13.*; client_no_context_takeover because the suite's
        // server asks for it only when the client offered it.
        let handshake = HandshakeConfig::new()
            .deflate(Some(DeflateConfig::new().client_no_context_takeover(true)));
        let config = Config::default().max_message_size(Some(64 << 20));
        for case in 1..=count {
            let case_url = format!("{url}/runCase?case={case}&agent={agent}");
            let run = async {
                let (stream, conn) = connect(&case_url, config.clone(), &handshake).await?;
                echo(&stream, conn).await
            };
            if let Err(e) = run.await {
                // Many cases are protocol violations or abrupt closes: go on with the next one.
                eprintln!("case {case}: {e}");
            }
        }
        let (stream, conn) = connect(
            &format!("{url}/updateReports?agent={agent}"),
            Config::default(),
            &HandshakeConfig::new(),
        )
        .await?;
        echo(&stream, conn).await
    })
}

/// The number of cases, the one text message of `/getCaseCount`.
async fn case_count(url: &str) -> io::Result<u32> {
    let (stream, conn) = connect(
        &format!("{url}/getCaseCount"),
        Config::default(),
        &HandshakeConfig::new(),
    )
    .await?;
    let mut count = None;
    drive(&stream, conn, |_, message| {
        if let Message::Text(text) = message {
            count = text.as_str().trim().parse().ok();
        }
    })
    .await?;
    count.ok_or_else(|| io::Error::other("no case count received"))
}
