//! The `tracing` feature: what a subscriber sees of connections, on both runtimes.
//!
//! Each test installs a capturing subscriber for its thread only (`set_default`): a
//! `tracing_subscriber::Layer` that records every event with its fields and the fields of the
//! spans it happened in. The engine's own tasks (drivers, the server helper's connections, which
//! smol runs on its executor's threads) carry the subscriber that was current when they were
//! spawned, so everything a test's connections record reaches its own capture, whatever else runs
//! in parallel. Nothing sleeps: a test waits until the event it expects has been recorded, bounded
//! by the test's overall timeout.

tidings_tests::runtime_shims!();

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Field values as text: strings as they are, everything else as `Debug` prints it (which for
/// `%display` fields is their `Display`).
type Fields = BTreeMap<String, String>;

struct FieldVisitor<'a>(&'a mut Fields);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A span as an event saw it: its name and the fields recorded so far.
#[derive(Debug, Clone)]
struct SpanSeen {
    name: &'static str,
    fields: Fields,
}

/// One recorded event: level, fields (the message under `message`), and its spans from the
/// innermost out.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    fields: Fields,
    spans: Vec<SpanSeen>,
}

impl Seen {
    fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The innermost span named `name`.
    fn span(&self, name: &str) -> &SpanSeen {
        self.spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("event {self:?} is not inside a `{name}` span"))
    }
}

impl SpanSeen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Records {
    events: Vec<Seen>,
    waiters: Vec<Waker>,
}

/// The capturing layer; clones share the records.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Records>>);

impl Capture {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until an event with `message` for which `matches` holds has been recorded.
    async fn event(&self, message: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        std::future::poll_fn(|cx| {
            let mut records = self.lock();
            if let Some(seen) = records
                .events
                .iter()
                .find(|e| e.message() == message && matches(e))
            {
                return Poll::Ready(seen.clone());
            }
            records.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Every event recorded so far with `message`.
    fn all(&self, message: &str) -> Vec<Seen> {
        let records = self.lock();
        records
            .events
            .iter()
            .filter(|e| e.message() == message)
            .cloned()
            .collect()
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut FieldVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldVisitor(&mut fields));
        let spans = ctx
            .event_scope(event)
            .into_iter()
            .flatten()
            .map(|span| SpanSeen {
                name: span.name(),
                fields: span
                    .extensions()
                    .get::<Fields>()
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let seen = Seen {
            level: *event.metadata().level(),
            fields,
            spans,
        };
        let waiters = {
            let mut records = self.lock();
            records.events.push(seen);
            std::mem::take(&mut records.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

macro_rules! suite {
    () => {
        use std::future::Future;
        use std::time::Duration;

        use tidings_tests::adapter_suite::raw_request;
        use tidings_tests::op;
        use tracing::Level;
        use tracing::instrument::WithSubscriber as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        use rt::ws::server::{Route, Server};
        use rt::ws::{self, CloseCode, Config, Rejection, WebSocket};

        use super::{Capture, Seen};

        /// Overall bound of every test.
        const GUARD: Duration = Duration::from_secs(20);

        /// Runs `test` on this runtime with a capturing subscriber installed for this thread.
        fn traced<F: Future<Output = ()>>(test: impl FnOnce(Capture) -> F) {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::registry().with(capture.clone());
            let _guard = tracing::subscriber::set_default(subscriber);
            block_on(async {
                rt::timeout(GUARD, test(capture))
                    .await
                    .expect("test timed out");
            });
        }

        /// Reads messages until the connection ends.
        async fn drain(mut ws: WebSocket) {
            while let Some(Ok(_)) = ws.recv().await {}
        }

        /// A server helper on 127.0.0.1 with a draining WebSocket route on `/chat`, served by a
        /// task that carries the test's subscriber; returns its port and handle.
        async fn serve() -> (u16, ws::server::ServerHandle, rt::Join<()>) {
            let listening = Server::new()
                .route("/chat", Route::websocket(|ws, _info| drain(ws)))
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listening.local_addr().port();
            let handle = listening.handle();
            let task = rt::spawn(
                async move {
                    listening.serve().await;
                }
                .with_current_subscriber(),
            );
            (port, handle, task)
        }

        /// A raw client connected to `port`, and the address the server sees it from.
        async fn raw_client(port: u16, resource: &str) -> (rt::Raw, std::net::SocketAddr) {
            let tcp = rt::connect(port).await;
            let peer = tcp.local_addr().expect("local address");
            let request = raw_request(&format!("127.0.0.1:{port}"), resource, &[]);
            let (raw, answer) = rt::Raw::client_over(tcp, &request, &[]).await;
            answer.expect("101");
            (raw, peer)
        }

        /// Checks the `websocket` span of a server-side connection.
        fn assert_server_span(seen: &Seen, peer: Option<std::net::SocketAddr>, path: &str) {
            let span = seen.span("websocket");
            assert_eq!(span.field("path"), Some(path), "{seen:?}");
            assert_eq!(span.field("runtime"), Some(rt::NAME), "{seen:?}");
            assert_eq!(span.field("role"), Some("server"), "{seen:?}");
            let peer = peer.map(|p| p.to_string());
            assert_eq!(span.field("peer"), peer.as_deref(), "{seen:?}");
        }

        #[test]
        fn refusal_by_accept_with_records_status_and_path_without_query() {
            traced(|capture| async move {
                let (listener, port) = rt::bind().await;
                let server = async {
                    let tcp = listener.accept().await;
                    let result = ws::accept_with(tcp, &Config::default(), |_| {
                        Err(Rejection::new(401).header("WWW-Authenticate", "Bearer"))
                    })
                    .await;
                    assert!(matches!(result, Err(ws::Error::Refused(401))), "{result:?}");
                };
                let client = async {
                    let (_raw, answer) = rt::Raw::client(port, "/secret?token=hunter2", &[]).await;
                    assert!(answer.is_err(), "{answer:?}");
                };
                futures_util::future::join(server, client).await;
                let seen = capture
                    .event("websocket upgrade refused", |e| {
                        e.field("status") == Some("401")
                    })
                    .await;
                assert_eq!(seen.level, Level::DEBUG);
                assert!(
                    seen.field("reason").is_some_and(|r| r.contains("401")),
                    "{seen:?}"
                );
                // `accept_with` sees a transport, not an address: no peer.
                assert_server_span(&seen, None, "/secret");
            });
        }

        #[test]
        fn server_helper_records_a_404_in_the_http_connection_span() {
            traced(|capture| async move {
                let (port, handle, task) = serve().await;
                let tcp = rt::connect(port).await;
                let peer = tcp.local_addr().expect("local address");
                let request = raw_request(&format!("127.0.0.1:{port}"), "/nope?x=1", &[]);
                let (_raw, answer) = rt::Raw::client_over(tcp, &request, &[]).await;
                assert!(answer.is_err(), "{answer:?}");
                let seen = capture
                    .event("request refused", |e| e.field("status") == Some("404"))
                    .await;
                assert_eq!(seen.level, Level::DEBUG);
                assert_eq!(seen.field("path"), Some("/nope"));
                let http = seen.span("http");
                assert_eq!(http.field("peer"), Some(peer.to_string().as_str()));
                handle.shutdown();
                task.await;
            });
        }

        #[test]
        fn clean_close_records_code_initiator_and_the_connection_span() {
            traced(|capture| async move {
                let (port, handle, task) = serve().await;
                let (mut raw, peer) = raw_client(port, "/chat?room=1").await;
                raw.send_close(1000, "bye").await;
                let reply = raw.expect_frame().await;
                assert_eq!(reply.close_code(), Some(1000));
                assert!(raw.until_eof().await.is_empty());
                let seen = capture
                    .event("websocket closed", |e| {
                        e.spans.iter().any(|s| s.field("role") == Some("server"))
                    })
                    .await;
                assert_eq!(seen.level, Level::DEBUG);
                assert_eq!(seen.field("code"), Some("1000"));
                assert_eq!(seen.field("reason"), Some("bye"));
                assert_eq!(seen.field("initiator"), Some("remote"));
                assert_eq!(seen.field("clean"), Some("true"));
                assert_eq!(seen.field("sent"), Some("1000"));
                assert_eq!(seen.field("error"), None);
                assert_server_span(&seen, Some(peer), "/chat");
                // The WebSocket's span sits in its HTTP connection's.
                assert_eq!(
                    seen.span("http").field("peer"),
                    Some(peer.to_string().as_str())
                );
                assert!(capture.all("websocket protocol error").is_empty());
                handle.shutdown();
                task.await;
            });
        }

        #[test]
        fn client_close_records_the_url_host_and_path() {
            traced(|capture| async move {
                let (port, handle, task) = serve().await;
                let url = format!("ws://127.0.0.1:{port}/chat?token=hunter2");
                let mut client = ws::connect(&url).await.expect("connect");
                let outcome = client
                    .close(CloseCode::NORMAL, "done")
                    .await
                    .expect("close");
                assert!(outcome.is_normal(), "{outcome:?}");
                let seen = capture
                    .event("websocket closed", |e| {
                        e.spans.iter().any(|s| s.field("role") == Some("client"))
                    })
                    .await;
                assert_eq!(seen.field("code"), Some("1000"));
                assert_eq!(seen.field("initiator"), Some("local"));
                assert_eq!(seen.field("clean"), Some("true"));
                let span = seen.span("websocket");
                let host = format!("127.0.0.1:{port}");
                assert_eq!(span.field("peer"), Some(host.as_str()));
                assert_eq!(span.field("path"), Some("/chat"));
                assert_eq!(span.field("runtime"), Some(rt::NAME));
                // The server saw the same close from its side.
                let server = capture
                    .event("websocket closed", |e| {
                        e.spans.iter().any(|s| s.field("role") == Some("server"))
                    })
                    .await;
                assert_eq!(server.field("initiator"), Some("remote"));
                assert_eq!(server.field("reason"), Some("done"));
                drop(client);
                handle.shutdown();
                task.await;
            });
        }

        #[test]
        fn unmasked_client_frame_records_a_protocol_error_with_1002() {
            traced(|capture| async move {
                let (port, handle, task) = serve().await;
                let (mut raw, peer) = raw_client(port, "/chat").await;
                // A client frame without a mask: the server must fail the connection with 1002
                // (RFC 6455 §5.1).
                raw.masks = false;
                raw.send_frame(true, op::TEXT, b"unmasked").await;
                let close = raw.expect_frame().await;
                assert_eq!(close.close_code(), Some(1002));
                assert!(raw.until_eof().await.is_empty());
                let error = capture.event("websocket protocol error", |_| true).await;
                assert_eq!(error.level, Level::WARN);
                assert_eq!(error.field("code"), Some("1002"));
                assert!(error.field("error").is_some(), "{error:?}");
                assert_server_span(&error, Some(peer), "/chat");
                let closed = capture.event("websocket closed", |_| true).await;
                assert_eq!(closed.field("sent"), Some("1002"));
                assert_eq!(closed.field("initiator"), Some("local"));
                assert_eq!(closed.field("clean"), Some("false"));
                assert!(closed.field("error").is_some(), "{closed:?}");
                assert_server_span(&closed, Some(peer), "/chat");
                handle.shutdown();
                task.await;
            });
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;

    /// A current-thread runtime: the test, its tasks and the engine's all run on the thread
    /// whose subscriber is set.
    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(fut)
    }

    suite!();
}

mod smol_suite {
    use super::smol_rt as rt;

    /// `smol::block_on`: spawned tasks run on the global executor's threads, which only see the
    /// test's subscriber through the tasks that carry it.
    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        smol::block_on(fut)
    }

    suite!();
}
