//! The Autobahn TestSuite client driver on tidings-tokio.
//!
//! ```sh
//! cargo run --release --example tokio_autobahn_client -- ws://127.0.0.1:9001 [agent]
//! ```

use tidings_tokio::{Config, ConnectOptions, DeflateConfig, Message};

#[tokio::main]
async fn main() -> Result<(), tidings_tokio::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = args.next().unwrap_or_else(|| "tidings-tokio".to_owned());

    let count = case_count(&url).await?;
    println!("running {count} cases against {url} as {agent}");
    let options = ConnectOptions::new().config(autobahn_config());
    for case in 1..=count {
        let case_url = format!("{url}/runCase?case={case}&agent={agent}");
        if let Err(e) = echo(&case_url, &options).await {
            // Many cases are protocol violations or abrupt closes: go on with the next one.
            eprintln!("case {case}: {e}");
        }
    }
    let mut ws = tidings_tokio::connect(&format!("{url}/updateReports?agent={agent}")).await?;
    while ws.recv().await.is_some() {}
    Ok(())
}

async fn case_count(url: &str) -> Result<u32, tidings_tokio::Error> {
    let mut ws = tidings_tokio::connect(&format!("{url}/getCaseCount")).await?;
    let mut count = None;
    while let Some(message) = ws.recv().await {
        if let Message::Text(text) = message? {
            count = text.as_str().trim().parse().ok();
        }
    }
    count.ok_or_else(|| tidings_tokio::Error::Url("no case count received".into()))
}

async fn echo(url: &str, options: &ConnectOptions) -> Result<(), tidings_tokio::Error> {
    let (mut ws, _) = tidings_tokio::connect_with(url, options).await?;
    while let Some(message) = ws.recv().await {
        ws.send(message?).await?;
    }
    Ok(())
}

/// Large messages for 9.*, and permessage-deflate for 12.* and 13.*. The offer carries
/// `client_no_context_takeover` (we then compress each message on its own), because the suite's
/// server only asks for it when the client offered it (13.2, 13.5, 13.6).
fn autobahn_config() -> Config {
    Config::default()
        .max_message_size(Some(64 << 20))
        .deflate(Some(DeflateConfig::new().client_no_context_takeover(true)))
}
