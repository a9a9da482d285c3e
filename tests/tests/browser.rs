//! The example pages in a real browser: headless chromium driven over WebDriver (chromedriver,
//! through fantoccini), against the examples' routes served in-process on an ephemeral loopback
//! port. Each scenario is one `#[tokio::test]` that hands an `async fn(&Browser) -> Outcome` to
//! [`webdriver::run`], which starts a chromedriver of its own (its own port and profile folders),
//! closes every session at the end, and on failure saves `target/screenshots/<scenario>-failure.png`
//! and panics with the pages' `#status`/`#messages`. A passing scenario leaves its screenshot in
//! `target/screenshots/<scenario>.png`.
//!
//! Without chromedriver and chromium (env `CHROMEDRIVER`/`CHROMIUM`, else `PATH`, else
//! `/usr/bin`) the tests print that they are skipped and pass; with
//! `TIDINGS_BROWSER_TESTS=require` (set by `.ci/run`) they fail instead.
//!
//! To add a scenario: write `async fn name(browser: &Browser) -> Outcome` (start the example's
//! server with a helper like [`serve`], open sessions with `browser.session(label)`, wait with
//! `webdriver::wait_until`/`wait_for_text`, take `browser.screenshot(&client, "name")`) and a
//! three-line `#[tokio::test]` calling `webdriver::run("name", name)`.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::{Client, Locator};
use tidings_examples::{chat, live_feed, secure_chat};
use tidings_tokio::hub::Hub;
use tidings_tokio::server::{Listening, Route, Server};

#[path = "common/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, Outcome, Probe, text_of, texts_of, wait_for_text, wait_until};

/// Tasks of the scenario's server (and ticker), aborted when it ends.
struct Served {
    addr: SocketAddr,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Served {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `routes` on a free loopback port, served by the tokio adapter's server helper.
async fn serve(routes: Vec<(&'static str, Route)>) -> Served {
    let server = Server::new().routes(routes);
    let listening = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listening.local_addr();
    Served {
        addr,
        tasks: vec![tokio::spawn(listening.serve()).abort_handle()],
    }
}

// --- chat ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_two_browsers() {
    webdriver::run("chat", chat_scenario).await;
}

/// alice and bob open the chat page, both join `lobby` with the page's controls, alice sends a
/// message to `lobby`, and it shows up in bob's list.
async fn chat_scenario(browser: &Browser) -> Outcome {
    let hub = Hub::new();
    let served = serve(chat::routes(&hub)).await;
    let addr = served.addr;

    let alice = browser.session("alice").await?;
    let bob = browser.session("bob").await?;
    for (client, user) in [(&alice, "alice"), (&bob, "bob")] {
        client.goto(&format!("http://{addr}/?user={user}")).await?;
    }
    for client in [&alice, &bob] {
        wait_for_text(client, "#status", "connected").await?;
    }
    for client in [&alice, &bob] {
        join_room(client, "lobby").await?;
    }

    let text = "hello from alice";
    send_message(&alice, "lobby", text).await?;
    let line = wait_for_message(&bob, "alice", "lobby", text).await?;
    println!("chat: bob sees {line:?}");
    browser.screenshot(&bob, "chat").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reconnects_after_a_server_restart() {
    webdriver::run("chat_reconnect", chat_reconnect_scenario).await;
}

/// alice joins `lobby`; the server shuts down (its clients get 1001) and the page counts down to
/// its next attempt; a new server starts on the same port, and the page connects again by
/// itself and rejoins `lobby`, where bob, who joins it after the restart, gets alice's message.
async fn chat_reconnect_scenario(browser: &Browser) -> Outcome {
    // A chat server, with a new hub each time (nothing carried over), on `addr`.
    async fn bind_chat(addr: SocketAddr) -> std::io::Result<Listening> {
        let server = Server::new().routes(chat::routes(&Hub::new()));
        server.bind(addr).await
    }

    let listening = bind_chat(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listening.local_addr();
    let handle = listening.handle();
    let serving = tokio::spawn(listening.serve());

    let alice = browser.session("alice").await?;
    alice.goto(&format!("http://{addr}/?user=alice")).await?;
    wait_for_text(&alice, "#status", "connected").await?;
    join_room(&alice, "lobby").await?;

    handle.shutdown();
    let report = serving.await?;
    println!("chat_reconnect: the first server stopped: {report:?}");
    let status = wait_until("alice's page to count down to a reconnection", async || {
        Ok(match text_of(&alice, "#status").await? {
            Some(text) if text.starts_with("reconnecting in") => Probe::Ready(text),
            other => Probe::NotYet(format!("{other:?}")),
        })
    })
    .await?;
    println!("chat_reconnect: alice's page says {status:?}");

    // The same address again.
    let listening = bind_chat(addr).await?;
    let _served = Served {
        addr,
        tasks: vec![tokio::spawn(listening.serve()).abort_handle()],
    };
    wait_for_text(&alice, "#status", "connected").await?;

    let bob = browser.session("bob").await?;
    bob.goto(&format!("http://{addr}/?user=bob")).await?;
    wait_for_text(&bob, "#status", "connected").await?;
    join_room(&bob, "lobby").await?;
    let text = "back after the restart";
    send_message(&alice, "lobby", text).await?;
    let line = wait_for_message(&bob, "alice", "lobby", text).await?;
    println!("chat_reconnect: bob sees {line:?}");
    browser.screenshot(&alice, "chat_reconnect").await?;
    Ok(())
}

/// Types `text` into the message field, selects `room` and clicks send (the chat page's and
/// the secure chat's controls).
async fn send_message(client: &Client, room: &str, text: &str) -> Outcome {
    client
        .find(Locator::Css("#message-input"))
        .await?
        .send_keys(text)
        .await?;
    client
        .find(Locator::Css("#room-select"))
        .await?
        .select_by_value(room)
        .await?;
    client
        .find(Locator::Css("#send-button"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Waits until `client`'s `#messages` shows `text` from `user` in `room`; returns the line.
async fn wait_for_message(client: &Client, user: &str, room: &str, text: &str) -> Outcome<String> {
    let hash_room = format!("#{room}");
    wait_until(&format!("{user}'s message in #messages"), async || {
        let lines = texts_of(client, "#messages li").await?;
        Ok(
            match lines.iter().find(|line| {
                line.contains(text) && line.contains(user) && line.contains(&hash_room)
            }) {
                Some(line) => Probe::Ready(line.clone()),
                None => Probe::NotYet(format!("{lines:?}")),
            },
        )
    })
    .await
}

/// Types `room` into the room field, clicks join, and waits until the room selector offers it.
async fn join_room(client: &Client, room: &str) -> Outcome {
    client
        .find(Locator::Css("#room-input"))
        .await?
        .send_keys(room)
        .await?;
    client
        .find(Locator::Css("#join-button"))
        .await?
        .click()
        .await?;
    wait_for_room(client, room).await
}

/// Waits until `client`'s room selector offers `room`.
async fn wait_for_room(client: &Client, room: &str) -> Outcome {
    let option = format!("#room-select option[value=\"{room}\"]");
    wait_until(&format!("{room} in #room-select"), async || {
        Ok(match text_of(client, &option).await? {
            Some(_) => Probe::Ready(()),
            None => Probe::NotYet(format!(
                "#room-select: {:?}",
                texts_of(client, "#room-select option").await?
            )),
        })
    })
    .await
}

// --- live_feed -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_dashboard() {
    webdriver::run("live_feed", live_feed_scenario).await;
}

/// The dashboard counts itself among the feed's clients once a tick arrives.
async fn live_feed_scenario(browser: &Browser) -> Outcome {
    let hub = Hub::new();
    let rt = tidings_tokio::runtime();
    let mut served = serve(live_feed::routes(&hub, rt)).await;
    let tick = Duration::from_millis(200);
    served
        .tasks
        .push(tokio::spawn(live_feed::ticker(hub.clone(), rt, tick)).abort_handle());

    let client = browser.session("dashboard").await?;
    client.goto(&format!("http://{}/", served.addr)).await?;
    let clients = wait_until("#clients to count at least 1", async || {
        Ok(match text_of(&client, "#clients").await? {
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Probe::Ready(n),
                _ => Probe::NotYet(format!("{text:?}")),
            },
            None => Probe::NotYet("no #clients".to_owned()),
        })
    })
    .await?;
    println!("live_feed: the page shows {clients} client(s)");
    browser.screenshot(&client, "live_feed").await?;
    Ok(())
}

// --- secure_chat ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_chat_login_and_chat() {
    webdriver::run("secure_chat", secure_chat_scenario).await;
}

/// Over HTTPS with a self-signed certificate (the sessions accept it): alice first types a
/// wrong password and the form says so; then alice and bob log in through the form (`POST
/// /login`, then the WebSocket with the one-time ticket), alice sends a message to `general`,
/// and it shows up in bob's list under alice's name.
async fn secure_chat_scenario(browser: &Browser) -> Outcome {
    let users = secure_chat::Credentials::new()
        .with("alice", "wonderland")?
        .with("bob", "builder")?;
    let app = secure_chat::App::new(users);
    let tls = secure_chat::self_signed_tls_config(&[])?;
    let server = Server::new()
        .tls(tls.config)
        .routes(secure_chat::routes(&app));
    let listening = server.bind("127.0.0.1:0").await?;
    let served = Served {
        addr: listening.local_addr(),
        tasks: vec![tokio::spawn(listening.serve()).abort_handle()],
    };
    let url = format!("https://127.0.0.1:{}/", served.addr.port());

    let alice = browser.session("alice").await?;
    let bob = browser.session("bob").await?;
    alice.goto(&url).await?;
    log_in(&alice, "alice", "not the password").await?;
    let error = wait_until("alice's #login-error", async || {
        Ok(match text_of(&alice, "#login-error").await? {
            Some(text) if !text.trim().is_empty() => Probe::Ready(text),
            other => Probe::NotYet(format!("{other:?}")),
        })
    })
    .await?;
    if error != secure_chat::INVALID_CREDENTIALS {
        return Err(format!("the wrong password was answered with {error:?}").into());
    }

    bob.goto(&url).await?;
    for (client, user, password) in [(&alice, "alice", "wonderland"), (&bob, "bob", "builder")] {
        clear(client, "#password").await?;
        log_in(client, user, password).await?;
    }
    for (client, user) in [(&alice, "alice"), (&bob, "bob")] {
        wait_for_text(client, "#status", "connected").await?;
        wait_for_text(client, "#user-name", user).await?;
        // Both are members of `general` from the start.
        wait_for_room(client, "general").await?;
    }

    let text = "hello over TLS";
    send_message(&alice, "general", text).await?;
    let line = wait_for_message(&bob, "alice", "general", text).await?;
    println!("secure_chat: bob sees {line:?}");
    browser.screenshot(&bob, "secure_chat").await?;
    drop(served);
    Ok(())
}

/// Fills the login form with `user` and `password` and submits it.
async fn log_in(client: &Client, user: &str, password: &str) -> Outcome {
    clear(client, "#username").await?;
    client
        .find(Locator::Css("#username"))
        .await?
        .send_keys(user)
        .await?;
    client
        .find(Locator::Css("#password"))
        .await?
        .send_keys(password)
        .await?;
    client
        .find(Locator::Css("#login-button"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Empties the input `css`.
async fn clear(client: &Client, css: &str) -> Outcome {
    client.find(Locator::Css(css)).await?.clear().await?;
    Ok(())
}
