//! A hub whose backend keeps the history (`Backend::history`, as the Redis backend does), on
//! both runtimes: a Server-Sent Events client that reconnects with `Last-Event-ID` gets the
//! history the backend answers, then the live events it held back meanwhile that the history
//! did not have, each event once and in id order.
//!
//! The backend here numbers broadcasts itself and answers the history from a channel the test
//! fills when it chooses, so the live events provably arrive while the history is on its way.
//! Nothing sleeps: what a body yields without waiting is all that was queued to it.

tidings_tests::runtime_shims!();

#[allow(unused_macros)]
#[path = "common/http_sse.rs"]
mod http_sse;

#[path = "common/sse_events.rs"]
mod body;

/// A backend that numbers every broadcast (from 7) and answers one history request from a
/// channel.
mod numbering {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt as _;
    use futures_util::future::BoxFuture;
    use tidings_hub::backend::HistoryFuture;
    use tidings_hub::{Backend, Broadcast, HubError, Node, Payload};

    pub type History = Vec<(u64, Payload)>;

    pub struct State {
        next: AtomicU64,
        history: Mutex<Option<BoxFuture<'static, Result<History, HubError>>>>,
        pub asked: Mutex<Vec<(Vec<String>, u64)>>,
    }

    /// A cheap handle: the test keeps one, the hub another.
    #[derive(Clone)]
    pub struct Numbering(pub Arc<State>);

    impl std::ops::Deref for Numbering {
        type Target = State;
        fn deref(&self) -> &State {
            &self.0
        }
    }

    impl Numbering {
        pub fn new(history: BoxFuture<'static, Result<History, HubError>>) -> Self {
            Numbering(Arc::new(State {
                next: AtomicU64::new(7),
                history: Mutex::new(Some(history)),
                asked: Mutex::new(Vec::new()),
            }))
        }
    }

    impl Backend for Numbering {
        fn publish(&self, broadcast: Broadcast, local: &Node) -> Result<usize, HubError> {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            Ok(local.deliver(&broadcast.with_event_id(id)))
        }

        fn history(&self, rooms: &[String], after: u64) -> Option<HistoryFuture> {
            self.asked
                .lock()
                .expect("asked")
                .push((rooms.to_vec(), after));
            let history = self.history.lock().expect("history").take()?;
            Some(history.boxed())
        }
    }
}

macro_rules! suite {
    () => {
        use std::sync::Arc;
        use std::time::Duration;

        use futures_util::FutureExt as _;
        use rt::ws::hub::{Hub, HubConfig, HubError, Message, Payload, SseSubscription};

        use crate::body::Events;
        use crate::numbering::{History, Numbering};

        const GUARD: Duration = Duration::from_secs(20);

        fn text(id: u64, text: &str) -> (u64, Payload) {
            (id, Payload::Message(Message::text(text)))
        }

        fn hub_with(backend: Numbering) -> Hub {
            Hub::builder()
                .config(HubConfig::default().history(10))
                .backend(backend)
                .build()
        }

        #[test]
        fn live_events_wait_for_the_history_and_come_once() {
            rt::run(GUARD, async {
                let (tx, rx) = futures_channel::oneshot::channel::<History>();
                let history = rx.map(|r| r.map_err(|_| HubError::Backend("gone".into())));
                let backend = (Numbering::new(history.boxed()));
                let hub = hub_with(backend.clone());
                let subscription = SseSubscription::new().room("feed").last_event_id(Some("4"));
                let mut events = Events::new(
                    hub.subscribe_sse(rt::ws::runtime(), subscription)
                        .expect("subscribe"),
                );
                assert_eq!(
                    *backend.asked.lock().expect("asked"),
                    [(vec!["feed".to_owned()], 4)]
                );
                // Live events while the history is on its way: 7 (which the history also has)
                // and 8. Held back: nothing reaches the client yet.
                hub.to_room("feed").text("live 7").expect("broadcast");
                hub.to_room("feed").text("live 8").expect("broadcast");
                events.assert_nothing_queued("the replaying client");
                tx.send(vec![
                    text(3, "too old"),
                    text(5, "e5"),
                    text(6, "e6"),
                    text(7, "e7"),
                ])
                .expect("send the history");
                let mut got = Vec::new();
                for _ in 0..4 {
                    let event = events.next().await;
                    got.push((event.id.expect("an id"), event.data));
                }
                let want = [("5", "e5"), ("6", "e6"), ("7", "e7"), ("8", "live 8")];
                assert_eq!(got, want.map(|(id, data)| (id.to_owned(), data.to_owned())));
                // Live from here on, at once.
                hub.to_room("feed").text("live 9").expect("broadcast");
                let event = events.next().await;
                assert_eq!(
                    (event.id.as_deref(), event.data.as_str()),
                    (Some("9"), "live 9")
                );
                events.assert_nothing_queued("the client");
            });
        }

        #[test]
        fn a_failed_history_still_lets_the_live_events_through() {
            rt::run(GUARD, async {
                let history = async { Err(HubError::Backend("unreachable".into())) };
                let backend = (Numbering::new(history.boxed()));
                let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
                let seen = errors.clone();
                let hub = Hub::builder()
                    .config(HubConfig::default().history(10))
                    .backend(backend)
                    .on_error(move |_, e| seen.lock().expect("errors").push(e.to_string()))
                    .build();
                let subscription = SseSubscription::new().room("feed").last_event_id(Some("1"));
                let mut events = Events::new(
                    hub.subscribe_sse(rt::ws::runtime(), subscription)
                        .expect("subscribe"),
                );
                hub.to_room("feed").text("live").expect("broadcast");
                let event = events.next().await;
                assert_eq!(event.data, "live");
                assert_eq!(*errors.lock().expect("errors"), ["backend: unreachable"]);
            });
        }

        #[test]
        fn without_last_event_id_the_backend_is_not_asked() {
            rt::run(GUARD, async {
                let backend = (Numbering::new(async { Ok(Vec::new()) }.boxed()));
                let hub = hub_with(backend.clone());
                let mut events = Events::new(
                    hub.subscribe_sse(rt::ws::runtime(), SseSubscription::new().room("feed"))
                        .expect("subscribe"),
                );
                hub.to_room("feed").text("live").expect("broadcast");
                assert_eq!(events.next().await.data, "live");
                assert!(backend.asked.lock().expect("asked").is_empty());
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
