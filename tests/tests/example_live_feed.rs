//! The `live_feed` example (`tidings_examples::live_feed`), checked from the outside: the
//! example's routes and its ticker run in-process on an ephemeral loopback port under each
//! runtime's server helper (every test is written once in `suite!` and expanded into
//! `mod tokio_suite` and `mod smol_suite`), and a hand-written HTTP/1.1 and event-stream client
//! (`common/http_sse.rs`) reads the page and the feed over raw TCP.
//!
//! Nothing sleeps: the ticker's real one-second ticks are the clock, and every wait for the
//! client count to change is bounded by a number of ticks.

tidings_tests::runtime_shims!();

#[macro_use]
#[path = "common/http_sse.rs"]
mod http_sse;

macro_rules! suite {
    () => {
        use std::time::{Duration, SystemTime};

        use tidings_examples::live_feed::{self, TICK};

        use crate::http_sse::SseEvent;
        use rt::ws::hub::Hub;
        use rt::ws::server::{Server, ShutdownReport};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(60);

        http_client!();

        /// The example's routes on a free loopback port and its ticker, on this runtime.
        struct Running {
            hub: Hub,
            port: u16,
            _server: rt::Join<ShutdownReport>,
            _ticker: rt::Join<()>,
        }

        async fn start() -> Running {
            let hub = Hub::new();
            let server = Server::new().routes(live_feed::routes(&hub, rt::ws::runtime()));
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            let port = listening.local_addr().port();
            Running {
                _ticker: rt::spawn(live_feed::ticker(hub.clone(), rt::ws::runtime(), TICK)),
                hub,
                port,
                _server: rt::spawn(listening.serve()),
            }
        }

        /// A subscriber of `/feed`, once subscribed (its head arrived).
        async fn subscribe(port: u16) -> HttpClient {
            let mut feed = HttpClient::get(port, "/feed", &[]).await;
            let head = feed.head().await;
            assert_eq!(head.status, 200);
            assert_eq!(head.media_type(), Some("text/event-stream"));
            feed
        }

        /// A tick's data, checked: `seq`, `time` (RFC 3339, now) and `clients`.
        #[derive(Debug)]
        struct Tick {
            seq: u64,
            clients: u64,
        }

        async fn tick(feed: &mut HttpClient) -> Tick {
            let event: SseEvent = feed.event().await;
            assert_eq!(event.event, "tick", "{event:?}");
            event.number();
            let data = event.json();
            let time = data["time"].as_str().expect("a time");
            let at = humantime::parse_rfc3339(time)
                .unwrap_or_else(|e| panic!("time {time:?} is not RFC 3339: {e}"));
            let skew = match at.duration_since(SystemTime::now()) {
                Ok(ahead) => ahead,
                Err(behind) => behind.duration(),
            };
            assert!(skew < Duration::from_secs(300), "time {time} is not now");
            Tick {
                seq: data["seq"].as_u64().expect("a seq"),
                clients: data["clients"].as_u64().expect("a client count"),
            }
        }

        /// Reads ticks until one satisfies `until`, at most `ticks` of them.
        async fn tick_until(
            feed: &mut HttpClient,
            ticks: usize,
            what: &str,
            until: impl Fn(&Tick) -> bool,
        ) -> Tick {
            let mut seen = Vec::new();
            for _ in 0..ticks {
                let tick = tick(feed).await;
                if until(&tick) {
                    return tick;
                }
                seen.push(tick);
            }
            panic!("{what}: not within {ticks} ticks: {seen:?}");
        }

        #[test]
        fn the_page_opens_an_event_source_on_a_same_origin_path() {
            rt::run(GUARD, async {
                let feed = start().await;
                let (head, body) = HttpClient::get(feed.port, "/", &[]).await.text().await;
                assert_eq!(head.status, 200);
                assert_eq!(
                    head.header("content-type"),
                    Some("text/html; charset=utf-8")
                );
                assert!(body.starts_with("<!doctype html>"), "{body}");
                // `new EventSource("/…")`: a path on the page's own origin.
                let at = body
                    .find("new EventSource(")
                    .expect("the page opens an EventSource");
                let rest = &body[at + "new EventSource(".len()..];
                let quote = rest.chars().next().expect("an argument");
                assert!(matches!(quote, '"' | '\'' | '`'), "a literal: {rest:.40}");
                let path = &rest[1..rest[1..].find(quote).expect("the closing quote") + 1];
                assert!(path.starts_with('/') && !path.starts_with("//"), "{path}");
                for needle in [
                    "id=\"clients\"",
                    "id=\"log\"",
                    "addEventListener(\"tick\"",
                    "textContent",
                ] {
                    assert!(body.contains(needle), "the page lacks {needle}");
                }
                for needle in [
                    "http://",
                    "https://",
                    "<script src",
                    "<link",
                    "@import",
                    "innerHTML",
                ] {
                    assert!(!body.contains(needle), "the page has {needle}");
                }
                // That path is the feed.
                let head = HttpClient::get(feed.port, path, &[]).await.head().await;
                assert_eq!(head.status, 200);
                assert_eq!(head.media_type(), Some("text/event-stream"));
                // Only GET (and HEAD) for the page.
                let (head, _) = HttpClient::send(feed.port, "POST", "/", &[], b"")
                    .await
                    .text()
                    .await;
                assert_eq!(head.status, 405);
            });
        }

        #[test]
        fn the_feed_is_an_event_stream_of_ticks_every_second() {
            rt::run(GUARD, async {
                let feed = start().await;
                let mut events = subscribe(feed.port).await;
                let head = events.head().await;
                assert_eq!(head.header("cache-control"), Some("no-cache"));
                let first = tick(&mut events).await;
                assert!(first.seq >= 1, "{first:?}");
                assert!(first.clients >= 1, "a subscriber counts itself: {first:?}");
                let second = tick(&mut events).await;
                assert_eq!(second.seq, first.seq + 1, "every tick, in order");
                assert_eq!(events.response.events.retry, Some(2000));
                assert_eq!(feed.hub.client_count(), 1);
                // Only GET subscribes.
                let (head, _) = HttpClient::send(feed.port, "POST", "/feed", &[], b"")
                    .await
                    .text()
                    .await;
                assert_eq!(head.status, 405);
                assert_eq!(feed.hub.client_count(), 1);
            });
        }

        #[test]
        fn the_client_count_grows_and_drops_with_subscribers() {
            rt::run(GUARD, async {
                let feed = start().await;
                let mut a = subscribe(feed.port).await;
                let alone = tick(&mut a).await;
                assert!(alone.clients >= 1, "{alone:?}");

                // A second subscriber: counted from the next ticks (one may be on its way).
                let mut b = subscribe(feed.port).await;
                let both =
                    tick_until(&mut a, 3, "the count grows", |t| t.clients > alone.clients).await;
                assert_eq!(both.clients, alone.clients + 1, "{both:?}");
                let b_tick = tick(&mut b).await;
                assert!(b_tick.clients >= both.clients, "{b_tick:?}");

                // It goes away: noticed when a write to it fails, within a few ticks.
                drop(b);
                let after =
                    tick_until(&mut a, 10, "the count drops", |t| t.clients < both.clients).await;
                assert_eq!(after.clients, alone.clients, "{after:?}");
            });
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;
    suite!();
}

mod smol_suite {
    use super::smol_rt as rt;
    suite!();
}
