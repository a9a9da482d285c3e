// The server helper tests shared by tidings-tokio and tidings-smol: each adapter's
// `tests/server.rs` defines the runtime prelude (imports, `spawn`, `tests!`) and includes this file.


async fn echo(mut ws: WebSocket, _info: RequestInfo) {
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Sends the request's path, query and subprotocol, then closes.
async fn describe(mut ws: WebSocket, info: RequestInfo) {
    let text = format!(
        "{} {:?} {:?}",
        info.path(),
        info.query(),
        info.subprotocol()
    );
    let _ = ws.send_text(text).await;
    let _ = ws.close(CloseCode::NORMAL, "").await;
}

/// Binds `server` on 127.0.0.1:0 and serves it in a task: the `ws://` base URL, the handle, and
/// the serve task's result.
async fn start(server: Server) -> (String, ServerHandle, Task<ShutdownReport>) {
    let listening = server.bind("127.0.0.1:0").await.expect("bind");
    let base = format!("ws://{}", listening.local_addr());
    let handle = listening.handle();
    (base, handle, spawn(listening.serve()))
}

async fn round_trip(ws: &mut WebSocket, text: &str) {
    ws.send_text(text).await.expect("send");
    let echoed = ws.recv().await.expect("open").expect("message");
    assert_eq!(echoed.as_text(), Some(text));
}

fn refused_status(result: Result<WebSocket, Error>) -> (u16, Vec<(String, Vec<u8>)>) {
    match result {
        Err(Error::Handshake(HandshakeError::Rejected {
            status, headers, ..
        })) => (status, headers),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn has_header(headers: &[(String, Vec<u8>)], name: &str, value: &str) -> bool {
    headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value.as_bytes())
}

/// One plain HTTP request over TCP (sent with `Connection: close`); the whole response.
async fn http_get(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("ws://");
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let request = request
        .strip_suffix("\r\n\r\n")
        .map(|head| format!("{head}\r\nConnection: close\r\n\r\n"))
        .unwrap_or_else(|| request.to_owned());
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read");
    String::from_utf8(response).expect("utf-8")
}

async fn routes_serve_websocket_and_plain_http_and_refuse_unknown_paths_with_404() {
    let server = Server::new()
        .route("/echo", Route::websocket(echo))
        .route("/info", Route::websocket(describe).protocols(["p1", "p2"]))
        .route(
            "/",
            Route::http(|req: Request<Bytes>| async move {
                HttpResponse::text(200, format!("hello {}", req.method()))
            }),
        );
    let (base, handle, serving) = start(server).await;

    let mut ws = connect(&format!("{base}/echo"))
        .await
        .expect("connect /echo");
    round_trip(&mut ws, "hello").await;

    let options = ConnectOptions::new().protocol("p0").protocol("p2");
    let (mut info, _) = connect_with(&format!("{base}/info?x=1"), &options)
        .await
        .expect("connect /info");
    assert_eq!(info.subprotocol(), Some("p2"));
    let text = info.recv().await.expect("open").expect("message");
    assert_eq!(text.as_text(), Some(r#"/info Some("x=1") Some("p2")"#));

    let (status, _) = refused_status(connect(&format!("{base}/nope")).await);
    assert_eq!(status, 404);
    // The query is not part of the path that is matched.
    let (status, _) = refused_status(connect(&format!("{base}/echo/")).await);
    assert_eq!(status, 404);

    let page = http_get(&base, "GET /?a=b HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.ends_with("\r\n\r\nhello GET"), "{page}");
    let missing = http_get(&base, "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    // A plain request on a WebSocket route is not an upgrade.
    let plain = http_get(&base, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 400 "), "{plain}");

    round_trip(&mut ws, "still there").await;
    handle.shutdown();
    let report = serving.await;
    assert_eq!(report.still_open, 0, "{report:?}");
}

async fn per_ip_limit_refuses_a_second_connection_with_503_until_the_first_ends() {
    let server = Server::new()
        .route("/echo", Route::websocket(echo))
        .max_connections_per_ip(1)
        .retry_after(Duration::from_millis(1500));
    let (base, handle, serving) = start(server).await;
    let url = format!("{base}/echo");

    let mut first = connect(&url).await.expect("first");
    round_trip(&mut first, "one").await;
    let (status, headers) = refused_status(connect(&url).await);
    assert_eq!(status, 503);
    assert!(has_header(&headers, "Retry-After", "2"), "{headers:?}");

    first.close(CloseCode::NORMAL, "").await.expect("close");
    // The permit is released when the handler ends, not when the client sees the close.
    handle.idle().await;
    let mut third = connect(&url).await.expect("after the first ended");
    round_trip(&mut third, "three").await;

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn global_limit_refuses_above_the_total_with_503() {
    let server = Server::new()
        .route("/echo", Route::websocket(echo))
        .max_connections(1);
    let (base, handle, serving) = start(server).await;
    let url = format!("{base}/echo");

    let mut first = connect(&url).await.expect("first");
    round_trip(&mut first, "one").await;
    let (status, headers) = refused_status(connect(&url).await);
    assert_eq!(status, 503);
    assert!(has_header(&headers, "Retry-After", "1"), "{headers:?}");
    let page = http_get(&base, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        page.starts_with("HTTP/1.1 400 "),
        "validation comes first: {page}"
    );

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn graceful_shutdown_closes_clients_with_1001_and_returns() {
    let server = Server::new().route("/echo", Route::websocket(echo));
    let (base, handle, serving) = start(server).await;
    let mut ws = connect(&format!("{base}/echo")).await.expect("connect");
    round_trip(&mut ws, "before").await;
    assert_eq!(handle.connections(), 1);

    handle.shutdown();
    let mut close = None;
    while let Some(event) = ws.recv_event().await {
        if let Event::CloseReceived(frame) = event {
            close = frame;
        }
    }
    assert_eq!(close.expect("a close frame").code, CloseCode::GOING_AWAY);
    assert_eq!(
        ws.close_outcome().expect("closed").code,
        CloseCode::GOING_AWAY
    );
    // Done with it: dropping the WebSocket also makes sure the close reply is written (`recv`
    // returns before writing it; the server's handler ends when it arrives).
    drop(ws);

    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (1, 0));
    assert_eq!(handle.connections(), 0);
    // The listener is closed.
    assert!(matches!(
        connect(&format!("{base}/echo")).await,
        Err(Error::Io(_))
    ));
}

async fn shutdown_returns_after_the_timeout_with_handlers_that_do_not_end() {
    let server = Server::new()
        .route(
            "/stuck",
            Route::websocket(|ws: WebSocket, _| async move {
                std::future::pending::<()>().await;
                drop(ws);
            }),
        )
        .shutdown_timeout(Duration::from_millis(200));
    let (base, handle, serving) = start(server).await;
    let mut ws = connect(&format!("{base}/stuck")).await.expect("connect");

    handle.shutdown();
    // The close reaches the client even though the handler never reads.
    assert!(ws.recv().await.is_none());
    assert_eq!(
        ws.close_outcome().expect("closed").code,
        CloseCode::GOING_AWAY
    );
    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (1, 1));
}

async fn shutdown_drops_connections_still_sending_their_request() {
    let config = Config::default().handshake_timeout(Some(Duration::from_secs(60)));
    let server = Server::new()
        .route("/echo", Route::websocket(echo))
        .config(config)
        .shutdown_timeout(Duration::from_secs(20));
    let (base, handle, serving) = start(server).await;
    let mut idle = TcpStream::connect(base.trim_start_matches("ws://"))
        .await
        .expect("tcp");
    idle.write_all(b"GET /echo HTTP/1.1\r\n")
        .await
        .expect("write");
    // Accepted in order: once this one is open, so is the idle one.
    let mut ws = connect(&format!("{base}/echo")).await.expect("connect");
    round_trip(&mut ws, "x").await;
    assert_eq!(handle.connections(), 2);

    handle.shutdown();
    assert!(ws.recv().await.is_none());
    drop(ws);
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (1, 0));
}

async fn shutdown_by_a_signal_future() {
    let server = Server::new().route("/echo", Route::websocket(echo));
    let listening = server.bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/echo", listening.local_addr());
    let handle = listening.handle();
    let (stop, stopped) = signal();
    let serving = spawn(listening.serve_with_shutdown(stopped));
    let mut ws = connect(&url).await.expect("connect");
    round_trip(&mut ws, "x").await;
    stop();
    assert!(ws.recv().await.is_none());
    drop(ws);
    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (1, 0));
    assert!(handle.is_shutting_down());
}

tests! {
    routes_serve_websocket_and_plain_http_and_refuse_unknown_paths_with_404,
    per_ip_limit_refuses_a_second_connection_with_503_until_the_first_ends,
    global_limit_refuses_above_the_total_with_503,
    graceful_shutdown_closes_clients_with_1001_and_returns,
    shutdown_returns_after_the_timeout_with_handlers_that_do_not_end,
    shutdown_drops_connections_still_sending_their_request,
    shutdown_by_a_signal_future,
}
