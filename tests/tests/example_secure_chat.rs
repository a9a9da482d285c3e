//! The `secure_chat` example (`tidings_examples::secure_chat`), checked from the outside over
//! real TLS on loopback: the example's routes run in-process under each runtime's server helper
//! with a fresh self-signed certificate (every test is written once in `suite!` and expanded into
//! `mod tokio_suite` and `mod smol_suite`), and the clients trust exactly that certificate: a
//! small HTTP/1.1 client over the runtime's rustls connector for the page and `/login`, and our
//! `wss://` client for the chat.
//!
//! Nothing sleeps or waits for time to pass. A ticket's expiry is driven by the time it is issued
//! at (issued 10 s in the past, it is expired on arrival); the over-TLS login limit test uses a
//! bucket that refills once an hour, so which attempt is over the limit does not depend on how
//! fast the attempts are made, and the example's own limit (5 at once, then one every 2 s) is
//! checked on its `RateLimiter` with explicit instants.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tidings_examples::secure_chat::{
    self, App, Credentials, LOGIN_BURST, LOGIN_REFILL_PER_SEC, MAX_MESSAGE_BYTES,
};

tidings_tests::runtime_shims!();

/// A response of the small HTTP client: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (the first).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.text()))
    }
}

/// Parses a whole response out of `buf` once it has arrived (`Content-Length` bodies only,
/// which is what the example's routes send).
pub fn parse_answer(buf: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf).expect("a valid HTTP response") {
        httparse::Status::Partial => return None,
        httparse::Status::Complete(n) => n,
    };
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8(h.value.to_vec()).expect("an ASCII header value"),
            )
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("a Content-Length number"));
    let body = buf.get(head_len..head_len + length)?;
    Some(Answer {
        status: response.code.expect("a status"),
        headers,
        body: body.to_vec(),
    })
}

/// A user's login body.
pub fn login_body(user: &str, password: &str) -> String {
    serde_json::json!({"username": user, "password": password}).to_string()
}

/// A fresh path in the temporary directory.
fn temp_path(what: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "tidings-secure-chat-{}-{}-{what}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The suite, for a runtime module `rt` (with the extension traits of its I/O in scope).
macro_rules! suite {
    () => {
        use std::net::{IpAddr, Ipv4Addr};
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use serde_json::{Value, json};
        use tidings_examples::secure_chat::{self, App, Credentials};

        use super::{Answer, login_body, parse_answer};
        use rt::ws::hub::RateLimiter;
        use rt::ws::server::{Server, ServerHandle, ShutdownReport};
        use rt::ws::tls::{self, TlsConnector, rustls};
        use rt::ws::{CloseCode, ConnectOptions, Message, WebSocket};

        const GUARD: Duration = Duration::from_secs(30);

        /// The example's routes on a free loopback port with TLS, and a client config that
        /// trusts its certificate.
        struct Running {
            app: App,
            port: u16,
            client_tls: Arc<rustls::ClientConfig>,
            handle: ServerHandle,
            task: rt::Join<ShutdownReport>,
        }

        fn client_config(certificate: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(certificate).expect("trust the certificate");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        }

        /// `app`'s routes behind a self-signed certificate, as the example serves them
        /// without `--cert`.
        async fn start(app: App) -> Running {
            let dev = secure_chat::self_signed_tls_config(&[]).expect("a development certificate");
            assert_eq!(dev.names, ["localhost", "127.0.0.1"]);
            start_with(app, dev.config, dev.certificate).await
        }

        async fn start_with(
            app: App,
            server_tls: Arc<rustls::ServerConfig>,
            certificate: rustls::pki_types::CertificateDer<'static>,
        ) -> Running {
            let server = Server::new().tls(server_tls).routes(secure_chat::routes(&app));
            let listening = server.bind("127.0.0.1:0").await.expect("bind");
            Running {
                app,
                port: listening.local_addr().port(),
                client_tls: client_config(certificate),
                handle: listening.handle(),
                task: rt::spawn(listening.serve()),
            }
        }

        impl Running {
            /// `method path` over HTTPS (one connection per request), with `body` as JSON.
            async fn request(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
                let tcp = rt::connect(self.port).await;
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
                let mut stream = TlsConnector::from(self.client_tls.clone())
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                let mut request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
                    self.port
                );
                if let Some(body) = body {
                    request.push_str(&format!(
                        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ));
                } else {
                    request.push_str("\r\n");
                }
                stream.write_all(request.as_bytes()).await.expect("write");
                stream.flush().await.expect("flush");
                let mut buf = Vec::new();
                let mut chunk = vec![0; 16 * 1024];
                loop {
                    if let Some(answer) = parse_answer(&buf) {
                        return answer;
                    }
                    let n = stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "the connection ended before the response: {buf:?}");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }

            async fn login(&self, user: &str, password: &str) -> Answer {
                self.request("POST", "/login", Some(&login_body(user, password)))
                    .await
            }

            /// A ticket for `user`, from `/login`.
            async fn otp(&self, user: &str, password: &str) -> String {
                let answer = self.login(user, password).await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                let otp = answer.json()["otp"]
                    .as_str()
                    .expect("a ticket")
                    .to_owned();
                otp
            }

            fn ws_url(&self, query: &str) -> String {
                format!("wss://127.0.0.1:{}/ws{query}", self.port)
            }

            async fn connect(&self, query: &str) -> WebSocket {
                let url = self.ws_url(query);
                match tls::connect_with_tls(&url, &ConnectOptions::new(), self.client_tls.clone())
                    .await
                {
                    Ok((ws, _)) => ws,
                    Err(e) => panic!("{url}: refused: {e}"),
                }
            }

            /// The HTTP status the upgrade at `/ws` + `query` was refused with.
            async fn refused(&self, query: &str) -> u16 {
                let url = self.ws_url(query);
                match tls::connect_with_tls(&url, &ConnectOptions::new(), self.client_tls.clone())
                    .await
                {
                    Ok(_) => panic!("{url}: the upgrade was accepted"),
                    Err(e) => e
                        .rejected_status()
                        .unwrap_or_else(|| panic!("{url}: not refused with a status: {e}")),
                }
            }

            /// Logs `user` in and connects with the ticket, past its own `user_joined` for
            /// `general` (which must be its first message).
            async fn chat_as(&self, user: &str, password: &str) -> WebSocket {
                let otp = self.otp(user, password).await;
                let mut ws = self.connect(&format!("?otp={otp}")).await;
                assert_eq!(next_json(&mut ws).await, joined(user, "general"));
                ws
            }

            async fn stop(self) -> ShutdownReport {
                self.app.hub.close();
                self.handle.shutdown();
                self.task.await
            }
        }

        fn joined(user: &str, room: &str) -> Value {
            json!({"type": "user_joined", "data": {"user": user, "room": room}})
        }

        async fn next_json(ws: &mut WebSocket) -> Value {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}")),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        /// The next message that is not a `rooms` event (the chat pushes those after every
        /// join and leave).
        async fn next_not_rooms(ws: &mut WebSocket) -> Value {
            loop {
                let msg = next_json(ws).await;
                if msg["type"] != "rooms" {
                    return msg;
                }
            }
        }

        /// The chat message the room gets, without its timestamp (which must be there).
        async fn next_chat(ws: &mut WebSocket) -> Value {
            let mut msg = next_not_rooms(ws).await;
            let stamp = msg["payload"]
                .as_object_mut()
                .and_then(|p| p.remove("timestamp"))
                .unwrap_or_else(|| panic!("not a chat with a timestamp: {msg}"));
            humantime::parse_rfc3339(stamp.as_str().expect("a string")).expect("RFC 3339");
            msg
        }

        fn chat(room: &str, text: &str) -> String {
            json!({"type": "chat", "payload": {"room": room, "text": text}}).to_string()
        }

        /// The lifetime of the example's tickets.
        const LIFETIME: Duration = tidings_examples::secure_chat::TICKET_LIFETIME;

        /// The example's app for `users`.
        fn app(users: Credentials) -> App {
            App::new(users)
        }

        fn dev_app() -> App {
            app(Credentials::development())
        }

        // ---- the page -------------------------------------------------------------------------

        #[test]
        fn the_page_is_served_over_https_with_the_login_form_and_the_chat_script() {
            rt::run(GUARD, async {
                let server = start(dev_app()).await;
                let page = server.request("GET", "/", None).await;
                assert_eq!(page.status, 200);
                assert_eq!(page.header("Content-Type"), Some("text/html; charset=utf-8"));
                let html = page.text();
                for id in [
                    "login-form",
                    "username",
                    "password",
                    "login-button",
                    "login-error",
                    // The chat's elements, for /chat.js.
                    "status",
                    "user-name",
                    "messages",
                    "room-select",
                    "message-input",
                    "send-button",
                    "room-input",
                    "join-button",
                    "leave-button",
                    "rooms-list",
                ] {
                    assert!(html.contains(&format!("id=\"{id}\"")), "no #{id} in the page");
                }
                assert!(html.contains("<script src=\"/chat.js\">"));
                assert!(html.contains("startChat("));
                // No external resources.
                assert!(!html.contains("http://") && !html.contains("https://"));

                let script = server.request("GET", "/chat.js", None).await;
                assert_eq!(script.status, 200);
                assert_eq!(
                    script.header("Content-Type"),
                    Some("application/javascript; charset=utf-8")
                );
                assert_eq!(script.text(), tidings_examples::chat::SCRIPT);
                assert!(html.contains(r#"<link rel="stylesheet" href="/chat.css">"#));
                let style = server.request("GET", "/chat.css", None).await;
                assert_eq!(style.status, 200);
                assert_eq!(style.header("Content-Type"), Some("text/css; charset=utf-8"));
                assert_eq!(style.text(), tidings_examples::chat::STYLE);

                let post = server.request("POST", "/", Some("{}")).await;
                assert_eq!(post.status, 405);
                server.stop().await;
            });
        }

        // ---- /login ---------------------------------------------------------------------------

        #[test]
        fn the_right_password_gets_a_one_time_ticket() {
            rt::run(GUARD, async {
                let server = start(dev_app()).await;
                let answer = server.login("alice", "wonderland").await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                assert_eq!(answer.header("Content-Type"), Some("application/json"));
                assert_eq!(answer.header("Cache-Control"), Some("no-store"));
                let body = answer.json();
                let otp = body["otp"].as_str().expect("otp");
                assert_eq!(otp.len(), 43, "{otp}");
                assert!(
                    otp.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "not base64url: {otp}"
                );
                assert_eq!(body, json!({"otp": otp}));
                // Each login a new ticket.
                let again = server.otp("alice", "wonderland").await;
                assert_ne!(again, otp);
                server.stop().await;
            });
        }

        #[test]
        fn wrong_credentials_401_bad_json_400_other_methods_405() {
            rt::run(GUARD, async {
                let server = start(dev_app()).await;
                let invalid = json!({"error": "invalid username or password"});
                for (user, password) in [("alice", "wrong"), ("alice", "wonderlan"), ("bob", "wonderland")] {
                    let answer = server.login(user, password).await;
                    assert_eq!(answer.status, 401, "{user}/{password}");
                    assert_eq!(answer.json(), invalid);
                    assert_eq!(answer.header("Content-Type"), Some("application/json"));
                    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
                }

                // LOGIN_BURST is 5: three bad bodies and a GET stay within it with the above.
                for body in ["{\"username\":\"alice\"", "{\"username\":\"alice\"}"] {
                    let answer = server.request("POST", "/login", Some(body)).await;
                    assert_eq!(answer.status, 400, "{body}");
                    let error = answer.json()["error"].as_str().expect("an error").to_owned();
                    assert!(!error.is_empty());
                    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
                }

                let get = server.request("GET", "/login", None).await;
                assert_eq!(get.status, 405);
                assert_eq!(get.header("Allow"), Some("POST"));
                assert_eq!(get.json(), json!({"error": "use POST"}));
                server.stop().await;
            });
        }

        #[test]
        fn login_attempts_over_the_limit_get_429_with_retry_after_before_the_credentials() {
            rt::run(GUARD, async {
                let mut app = dev_app();
                // The example's burst, but a refill so slow that no attempt of this test can be
                // refilled however long it takes (the example's 2 s refill is checked in
                // `the_login_limit_is_5_at_once_then_one_every_2_s`).
                app.logins = RateLimiter::new(secure_chat::LOGIN_BURST, 1.0 / 3600.0);
                let server = start(app).await;
                for attempt in 1..=secure_chat::LOGIN_BURST {
                    let answer = server.login("alice", "guess").await;
                    assert_eq!(answer.status, 401, "attempt {attempt}");
                }
                // The right password, but over the limit: refused before it is looked at.
                let limited = server.login("alice", "wonderland").await;
                assert_eq!(limited.status, 429, "{}", limited.text());
                assert_eq!(limited.header("Retry-After"), Some("3600"));
                assert_eq!(
                    limited.json(),
                    json!({"error": "too many attempts, try again in 3600 s"})
                );
                assert_eq!(limited.header("Cache-Control"), Some("no-store"));
                // Malformed bodies count too.
                let bad = server.request("POST", "/login", Some("nope")).await;
                assert_eq!(bad.status, 429);

                // Another address is not limited (the limiter is keyed by IP).
                let other: IpAddr = Ipv4Addr::new(192, 0, 2, 7).into();
                assert!(server.app.logins.check(&other, Instant::now()).is_ok());
                server.stop().await;
            });
        }

        // ---- /ws ------------------------------------------------------------------------------

        #[test]
        fn a_ticket_admits_one_chat_connection_as_its_user() {
            rt::run(GUARD, async {
                let users = Credentials::development()
                    .with("bob", "builder")
                    .expect("bob");
                let server = start(app(users)).await;
                let otp = server.otp("alice", "wonderland").await;
                let mut alice = server.connect(&format!("?otp={otp}")).await;
                // The chat's routing: the first message is its own join of `general`.
                assert_eq!(next_json(&mut alice).await, joined("alice", "general"));
                // The same ticket again: refused before the upgrade.
                assert_eq!(server.refused(&format!("?otp={otp}")).await, 401);

                let mut bob = server.chat_as("bob", "builder").await;
                assert_eq!(next_not_rooms(&mut alice).await, joined("bob", "general"));

                alice
                    .send(Message::text(chat("general", "hello bob")))
                    .await
                    .expect("send");
                let expected =
                    json!({"type": "chat", "payload": {"room": "general", "user": "alice", "text": "hello bob"}});
                assert_eq!(next_chat(&mut alice).await, expected);
                assert_eq!(next_chat(&mut bob).await, expected);
                assert_eq!(server.app.hub.client_count(), 2);

                alice.close(CloseCode::NORMAL, "").await.expect("close");
                bob.close(CloseCode::NORMAL, "").await.expect("close");
                server.stop().await;
            });
        }

        #[test]
        fn a_missing_unknown_or_expired_ticket_is_refused_401_before_the_upgrade() {
            rt::run(GUARD, async {
                let server = start(dev_app()).await;
                assert_eq!(server.refused("").await, 401, "no query");
                assert_eq!(server.refused("?otp=").await, 401, "empty");
                assert_eq!(server.refused("?user=alice").await, 401, "no otp");
                let unknown = "A".repeat(43);
                assert_eq!(server.refused(&format!("?otp={unknown}")).await, 401, "unknown");

                // Issued 10 s ago with the 5 s lifetime: expired on arrival.
                let old = server
                    .app
                    .tickets
                    .issue(
                        "alice".to_owned(),
                        Instant::now() - LIFETIME - Duration::from_secs(5),
                    )
                    .expect("issue");
                assert_eq!(
                    server.refused(&format!("?otp={}", old.as_str())).await,
                    401,
                    "expired"
                );
                // A ticket issued directly (not by a login) is as good as any.
                let fresh = server
                    .app
                    .tickets
                    .issue("alice".to_owned(), Instant::now())
                    .expect("issue");
                let mut ws = server.connect(&format!("?otp={}", fresh.as_str())).await;
                assert_eq!(next_json(&mut ws).await, joined("alice", "general"));
                // Nobody was registered for the refused requests.
                assert_eq!(server.app.hub.client_count(), 1);
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                server.stop().await;
            });
        }

        #[test]
        fn a_message_of_500_bytes_is_fine_and_one_of_600_closes_with_1009() {
            rt::run(GUARD, async {
                let server = start(dev_app()).await;
                let mut ws = server.chat_as("alice", "wonderland").await;

                let empty = chat("general", "").len();
                let text = "x".repeat(500 - empty);
                let message = chat("general", &text);
                assert_eq!(message.len(), 500);
                assert!(message.len() <= secure_chat::MAX_MESSAGE_BYTES);
                ws.send(Message::text(message)).await.expect("send");
                assert_eq!(
                    next_chat(&mut ws).await,
                    json!({"type": "chat", "payload": {"room": "general", "user": "alice", "text": text}})
                );

                let big = chat("general", &"y".repeat(600 - empty));
                assert_eq!(big.len(), 600);
                ws.send(Message::text(big)).await.expect("send");
                loop {
                    match ws.recv().await {
                        Some(Ok(Message::Text(text))) => {
                            // `rooms` pushes may still arrive; a chat must not.
                            assert!(text.contains("\"rooms\""), "{text}");
                        }
                        Some(Ok(other)) => panic!("unexpected {other:?}"),
                        Some(Err(_)) | None => break,
                    }
                }
                let outcome = ws.close_outcome().expect("closed");
                assert_eq!(outcome.code, CloseCode::MESSAGE_TOO_BIG, "{outcome:?}");
                server.stop().await;
            });
        }

        #[test]
        fn pem_files_serve_the_example_over_https() {
            rt::run(GUARD, async {
                let rcgen::CertifiedKey { cert, signing_key } =
                    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
                        .expect("a certificate");
                let cert_path = super::temp_path("cert.pem");
                let key_path = super::temp_path("key.pem");
                std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
                std::fs::write(&key_path, signing_key.serialize_pem()).expect("write the key");
                let config = secure_chat::pem_tls_config(&cert_path, &key_path);
                let _ = std::fs::remove_file(&cert_path);
                let _ = std::fs::remove_file(&key_path);
                let config = config.expect("the PEM files load");

                let server = start_with(dev_app(), config, cert.der().clone()).await;
                let page = server.request("GET", "/", None).await;
                assert_eq!(page.status, 200);
                assert!(page.text().contains("id=\"login-form\""));
                let mut ws = server.chat_as("alice", "wonderland").await;
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                server.stop().await;
            });
        }
    };
}

mod tokio_suite {
    use super::tokio_rt as rt;
    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
    suite!();
}

mod smol_suite {
    use super::smol_rt as rt;
    use ::smol::io::{AsyncReadExt, AsyncWriteExt};
    suite!();
}

// ---- without a server ------------------------------------------------------------------------

/// The example's login limit, on its own `RateLimiter` with explicit instants: 5 attempts at
/// once, then one every 2 s, per IP address.
#[test]
fn the_login_limit_is_5_at_once_then_one_every_2_s() {
    assert_eq!((LOGIN_BURST, LOGIN_REFILL_PER_SEC), (5, 0.5));
    let app = App::new(Credentials::development());
    let ip: IpAddr = "192.0.2.1".parse().expect("an address");
    let t0 = Instant::now();
    for attempt in 1..=5 {
        assert!(app.logins.check(&ip, t0).is_ok(), "attempt {attempt}");
    }
    let limited = app.logins.check(&ip, t0).expect_err("the sixth");
    let rejection = limited.rejection().to_http_response();
    assert_eq!(rejection.status(), 429);
    assert_eq!(rejection.get_header("Retry-After"), Some("2"));
    assert!(
        app.logins
            .check(&ip, t0 + Duration::from_millis(1900))
            .is_err()
    );
    assert!(app.logins.check(&ip, t0 + Duration::from_secs(2)).is_ok());
    assert!(app.logins.check(&ip, t0 + Duration::from_secs(2)).is_err());
    // Another address has its own attempts.
    let other: IpAddr = "192.0.2.2".parse().expect("an address");
    assert!(app.logins.check(&other, t0).is_ok());
}

#[test]
fn the_limits_are_the_documented_constants() {
    assert_eq!(MAX_MESSAGE_BYTES, 512);
    assert_eq!(secure_chat::TICKET_LIFETIME, Duration::from_secs(5));
    assert_eq!(secure_chat::PING_INTERVAL, Duration::from_secs(20));
    assert_eq!(secure_chat::PONG_TIMEOUT, Duration::from_secs(10));
    let app = App::new(Credentials::development());
    assert_eq!(app.tickets.get_lifetime(), secure_chat::TICKET_LIFETIME);
}

/// The development certificate names the bound address too, once.
#[test]
fn the_development_certificate_names_localhost_and_the_bound_address() {
    let ips: Vec<IpAddr> = ["127.0.0.1", "0.0.0.0", "192.0.2.10", "::1"]
        .iter()
        .map(|ip| ip.parse().expect("an address"))
        .collect();
    let dev = secure_chat::self_signed_tls_config(&ips).expect("a certificate");
    assert_eq!(dev.names, ["localhost", "127.0.0.1", "192.0.2.10", "::1"]);
    assert!(
        dev.certificate_pem
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

/// Unusable certificate or key files are clear errors naming the file, never a panic.
#[test]
fn bad_pem_files_are_errors_that_name_the_file() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("another certificate");
    let cert_path = temp_path("cert.pem");
    let key_path = temp_path("key.pem");
    let other_key_path = temp_path("other-key.pem");
    let garbage_path = temp_path("garbage.pem");
    let missing = temp_path("missing.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write");
    std::fs::write(&other_key_path, other.signing_key.serialize_pem()).expect("write");
    std::fs::write(
        &garbage_path,
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");

    let error = |cert: &PathBuf, key: &PathBuf| {
        secure_chat::pem_tls_config(cert, key)
            .expect_err("must not load")
            .to_string()
    };
    assert!(secure_chat::pem_tls_config(&cert_path, &key_path).is_ok());

    let e = error(&missing, &key_path);
    assert!(
        e.contains("cannot read the certificate file") && e.contains(&*missing.to_string_lossy()),
        "{e}"
    );
    let e = error(&cert_path, &missing);
    assert!(e.contains("cannot read the key file"), "{e}");
    // A key where the certificate should be, and the other way round.
    let e = error(&key_path, &key_path);
    assert!(
        e.contains("no certificate") && e.contains(&*key_path.to_string_lossy()),
        "{e}"
    );
    let e = error(&cert_path, &cert_path);
    assert!(
        e.contains("no private key") && e.contains(&*cert_path.to_string_lossy()),
        "{e}"
    );
    let e = error(&garbage_path, &key_path);
    assert!(e.contains("invalid PEM"), "{e}");
    let e = error(&cert_path, &other_key_path);
    assert!(e.contains("do not work together"), "{e}");

    for path in [cert_path, key_path, other_key_path, garbage_path] {
        let _ = std::fs::remove_file(path);
    }
}
