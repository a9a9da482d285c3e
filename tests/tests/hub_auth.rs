//! Admission and abuse limits of hub routes over real loopback sockets, on both runtimes (every
//! test is written once in `suite!` and expanded into `mod tokio_suite` and `mod smol_suite`):
//! one-time tickets and bearer tokens answered `401` before the upgrade, per-route origin
//! allow-lists answered `403`, and the per-connection message rate limit in both of its modes.
//!
//! Nothing sleeps: expiry is driven by the time a ticket is issued at (a ticket issued in the
//! past is expired when it arrives), and rate limits use buckets that never refill, so which
//! message is over the limit does not depend on timing.

tidings_tests::runtime_shims!();

macro_rules! suite {
    () => {
        use std::time::{Duration, Instant};

        use serde_json::{Value, json};

        use rt::ws::hub::auth::{BearerAuth, TicketStore};
        use rt::ws::hub::{
            Admission, Client, Envelope, Hub, HubConfig, Message, RateLimit, Rejection, UpgradeRequest,
            handler_fn,
        };
        use rt::ws::server::{RequestInfo, Server, ServerHandle, ShutdownReport, WebSocketRoute};
        use rt::ws::{CloseCode, ConnectOptions, OriginPolicy, WebSocket};

        const GUARD: Duration = Duration::from_secs(30);

        struct Running {
            port: u16,
            handle: ServerHandle,
            task: rt::Join<ShutdownReport>,
        }

        impl Running {
            fn url(&self, path_and_query: &str) -> String {
                format!("ws://127.0.0.1:{}{path_and_query}", self.port)
            }

            async fn stop(self) -> ShutdownReport {
                self.handle.shutdown();
                self.task.await
            }
        }

        async fn start(routes: Vec<(&'static str, WebSocketRoute)>) -> Running {
            let server = Server::new().routes(routes);
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            Running {
                port: listening.local_addr().port(),
                handle: listening.handle(),
                task: rt::spawn(listening.serve()),
            }
        }

        /// The HTTP status a refused upgrade was answered with.
        async fn refused(url: &str, options: &ConnectOptions) -> u16 {
            match rt::ws::connect_with(url, options).await {
                Ok(_) => panic!("{url}: the upgrade was accepted"),
                Err(e) => e
                    .rejected_status()
                    .unwrap_or_else(|| panic!("{url}: not refused with a status: {e}")),
            }
        }

        async fn accepted(url: &str, options: &ConnectOptions) -> WebSocket {
            match rt::ws::connect_with(url, options).await {
                Ok((ws, _)) => ws,
                Err(e) => panic!("{url}: refused: {e}"),
            }
        }

        async fn next_text(ws: &mut WebSocket) -> String {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) => text.to_string(),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        async fn next_json(ws: &mut WebSocket) -> Value {
            let text = next_text(ws).await;
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
        }

        /// A handler that greets each client with the identity it was admitted with, then
        /// echoes its messages.
        fn greeting_echo() -> impl rt::ws::hub::Handler {
            struct Greet;
            impl rt::ws::hub::Handler for Greet {
                async fn on_connect(&mut self, client: &Client) {
                    let who = client.data::<String>().cloned().unwrap_or_default();
                    let _ = client.send_text(format!("hello {who}"));
                }
                async fn on_message(
                    &mut self,
                    client: &Client,
                    message: Message,
                ) -> Result<(), rt::ws::hub::HandlerError> {
                    client.send(message)?;
                    Ok(())
                }
            }
            Greet
        }

        // ---- one-time tickets ---------------------------------------------------------------

        #[test]
        fn a_ticket_admits_one_upgrade_and_is_refused_401_when_missing_unknown_reused_or_expired()
        {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let tickets = TicketStore::<String>::new();
                let store = tickets.clone();
                let route = hub.route(move |req: &UpgradeRequest<'_>| {
                    let user = store.redeem_query(req.query(), "ticket", Instant::now())?;
                    Ok::<_, Rejection>(Admission::new(greeting_echo()).data(user))
                });
                let server = start(vec![("/ws", route)]).await;
                let plain = ConnectOptions::new();

                assert_eq!(refused(&server.url("/ws"), &plain).await, 401, "missing");
                assert_eq!(refused(&server.url("/ws?ticket="), &plain).await, 401, "empty");
                assert_eq!(
                    refused(&server.url("/ws?ticket=not-a-ticket"), &plain).await,
                    401,
                    "unknown"
                );

                let ticket = tickets
                    .issue("alice".to_owned(), Instant::now())
                    .expect("issue");
                let url = server.url(&format!("/ws?ticket={}", ticket.as_str()));
                let mut ws = accepted(&url, &plain).await;
                assert_eq!(next_text(&mut ws).await, "hello alice");
                assert_eq!(refused(&url, &plain).await, 401, "reused");

                // Issued 10 s ago with the default 5 s lifetime: expired on arrival.
                let old = tickets
                    .issue("bob".to_owned(), Instant::now() - Duration::from_secs(10))
                    .expect("issue");
                let url = server.url(&format!("/ws?ticket={}", old.as_str()));
                assert_eq!(refused(&url, &plain).await, 401, "expired");

                // No client was registered for any refused request.
                assert_eq!(hub.client_count(), 1);
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                server.stop().await;
            });
        }

        // ---- bearer tokens --------------------------------------------------------------------

        #[test]
        fn a_bearer_token_is_checked_asynchronously_and_its_identity_reaches_the_client() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let auth = BearerAuth::new(|token: String| async move {
                    (token == "good token").then(|| "carol".to_owned())
                });
                let route = hub.route_async(move |info: RequestInfo| {
                    let auth = auth.clone();
                    async move {
                        let user = auth.authenticate(info.query(), info.headers()).await?;
                        Ok(Admission::new(greeting_echo()).data(user))
                    }
                });
                let server = start(vec![("/ws", route)]).await;
                let plain = ConnectOptions::new();

                assert_eq!(refused(&server.url("/ws"), &plain).await, 401, "no token");
                assert_eq!(
                    refused(&server.url("/ws?token=bad"), &plain).await,
                    401,
                    "refused token"
                );
                let bad_header = ConnectOptions::new().header("Authorization", "Bearer bad");
                assert_eq!(refused(&server.url("/ws"), &bad_header).await, 401);

                let mut by_query = accepted(&server.url("/ws?token=good%20token"), &plain).await;
                assert_eq!(next_text(&mut by_query).await, "hello carol");
                let header = ConnectOptions::new().header("Authorization", "Bearer good token");
                let mut by_header = accepted(&server.url("/ws"), &header).await;
                assert_eq!(next_text(&mut by_header).await, "hello carol");
                assert_eq!(hub.client_count(), 2);
                for mut ws in [by_query, by_header] {
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                }
                server.stop().await;
            });
        }

        // ---- origins per route ----------------------------------------------------------------

        #[test]
        fn an_origin_allow_list_applies_to_its_route_only() {
            rt::run(GUARD, async {
                let hub = Hub::new();
                let quiet = || {
                    handler_fn(|_client: Client, _message: Message| async { Ok(()) })
                };
                let open = hub
                    .route(move |_req: &UpgradeRequest<'_>| {
                        Ok::<_, Rejection>(Admission::new(quiet()))
                    })
                    .origin(OriginPolicy::allow([
                        "https://*.example.com",
                        "http://localhost:*",
                    ]));
                let same = hub.route(move |_req: &UpgradeRequest<'_>| {
                    Ok::<_, Rejection>(Admission::new(quiet()))
                });
                let any = hub
                    .route(move |_req: &UpgradeRequest<'_>| {
                        Ok::<_, Rejection>(Admission::new(quiet()))
                    })
                    .origin(OriginPolicy::allow_all());
                let server =
                    start(vec![("/listed", open), ("/same", same), ("/any", any)]).await;
                let from = |origin: &str| ConnectOptions::new().header("Origin", origin);

                let listed = server.url("/listed");
                accepted(&listed, &from("https://app.example.com")).await;
                accepted(&listed, &from("http://localhost:5173")).await;
                accepted(&listed, &ConnectOptions::new()).await; // not a browser
                for origin in ["https://example.com", "https://evil.com", "null"] {
                    assert_eq!(refused(&listed, &from(origin)).await, 403, "{origin}");
                }

                // The route without its own policy keeps the default: same origin only.
                let same = server.url("/same");
                let own = format!("http://127.0.0.1:{}", server.port);
                accepted(&same, &from(&own)).await;
                assert_eq!(refused(&same, &from("https://app.example.com")).await, 403);

                // The development switch lets any page in, `null` included.
                let any = server.url("/any");
                accepted(&any, &from("https://evil.com")).await;
                accepted(&any, &from("null")).await;
                server.stop().await;
            });
        }

        // ---- message rate limit ---------------------------------------------------------------

        fn echo_hub(limit: RateLimit) -> (Hub, WebSocketRoute) {
            let hub = Hub::with_config(HubConfig::default().rate_limit(Some(limit)));
            let route = hub.route(|_req: &UpgradeRequest<'_>| {
                Ok::<_, Rejection>(Admission::new(handler_fn(
                    |client: Client, message: Message| async move {
                        client.send(message)?;
                        Ok(())
                    },
                )))
            });
            (hub, route)
        }

        #[test]
        fn messages_over_the_rate_limit_are_answered_with_an_error_and_the_client_stays() {
            rt::run(GUARD, async {
                // Three messages, never refilled: the fourth and fifth are over the limit.
                let (hub, route) = echo_hub(RateLimit::new(3, 0.0));
                let server = start(vec![("/ws", route)]).await;
                let mut ws = accepted(&server.url("/ws"), &ConnectOptions::new()).await;
                for i in 1..=5 {
                    ws.send_text(format!("m{i}")).await.expect("send");
                }
                for i in 1..=3 {
                    assert_eq!(next_text(&mut ws).await, format!("m{i}"));
                }
                let error = json!({"type": "error", "payload": {"message": "rate limit exceeded"}});
                assert_eq!(next_json(&mut ws).await, error);
                assert_eq!(next_json(&mut ws).await, error);
                // Still connected: a broadcast arrives.
                hub.to_all().text("still here").expect("broadcast");
                assert_eq!(next_text(&mut ws).await, "still here");
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                server.stop().await;
            });
        }

        #[test]
        fn a_message_over_the_rate_limit_closes_the_connection_with_1008_when_configured() {
            rt::run(GUARD, async {
                let (_hub, route) = echo_hub(RateLimit::new(2, 0.0).close_on_exceed());
                let server = start(vec![("/ws", route)]).await;
                let mut ws = accepted(&server.url("/ws"), &ConnectOptions::new()).await;
                for i in 1..=4 {
                    ws.send_text(format!("m{i}")).await.expect("send");
                }
                assert_eq!(next_text(&mut ws).await, "m1");
                assert_eq!(next_text(&mut ws).await, "m2");
                // Nothing after the limit is handled: the next thing is the close.
                match ws.recv().await {
                    None => {}
                    other => panic!("expected the close, got {other:?}"),
                }
                let outcome = ws.close_outcome().expect("closed");
                assert_eq!(outcome.code, CloseCode::POLICY_VIOLATION);
                assert_eq!(outcome.reason, "rate limit exceeded");
                server.stop().await;
            });
        }

        // ---- message validation ---------------------------------------------------------------

        #[test]
        fn invalid_messages_get_a_clear_error_and_an_oversized_one_closes_with_1009() {
            rt::run(GUARD, async {
                #[derive(serde::Deserialize)]
                struct Say {
                    text: String,
                }
                let hub = Hub::with_config(HubConfig::default().max_message_size(Some(64)));
                let router = rt::ws::hub::Router::new().on_typed(
                    "say",
                    |client: Client, _msg: Envelope, say: Say| async move {
                        client.send_text(format!("said {}", say.text))?;
                        Ok(())
                    },
                );
                let route = hub.route(move |_req: &UpgradeRequest<'_>| {
                    Ok::<_, Rejection>(Admission::new(router.clone()))
                });
                let server = start(vec![("/ws", route)]).await;
                let mut ws = accepted(&server.url("/ws"), &ConnectOptions::new()).await;
                let message = |reply: Value| reply["payload"]["message"].as_str().map(str::to_owned);

                ws.send_binary(vec![1u8, 2, 3]).await.expect("send");
                assert_eq!(
                    message(next_json(&mut ws).await).as_deref(),
                    Some("binary messages are not accepted: send JSON text")
                );
                ws.send_text("{not json").await.expect("send");
                let reply = message(next_json(&mut ws).await).expect("error message");
                assert!(reply.starts_with("invalid JSON"), "{reply}");
                ws.send_text(r#"{"type":"say","payload":{"txt":"hi"}}"#)
                    .await
                    .expect("send");
                let reply = message(next_json(&mut ws).await).expect("error message");
                assert!(reply.starts_with("invalid payload for say"), "{reply}");
                assert!(reply.contains("text"), "names the missing field: {reply}");
                ws.send_text(r#"{"type":"say","payload":{"text":"hi"}}"#)
                    .await
                    .expect("send");
                assert_eq!(next_text(&mut ws).await, "said hi");

                // 65 bytes: over the limit, the connection is failed with 1009.
                ws.send_text("x".repeat(65)).await.expect("send");
                match ws.recv().await {
                    None | Some(Err(_)) => {}
                    other => panic!("expected the close, got {other:?}"),
                }
                let outcome = ws.close_outcome().expect("closed");
                assert_eq!(outcome.code, CloseCode::MESSAGE_TOO_BIG);
                server.stop().await;
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
