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

// ---- a raw HTTP/1.1 client, to see exactly what goes over one connection ------------------------

/// A response head: status and headers (names as sent).
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    /// The value of the first header named `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// What [`Raw::chunk`] read.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Data(Vec<u8>),
    /// The zero-size chunk that ends a chunked body.
    End,
    /// The connection closed (or was reset) before the body ended.
    Eof,
}

/// One TCP connection spoken to by hand; bytes read past what was parsed stay in `buf`.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(base: &str) -> Raw {
        let tcp = TcpStream::connect(base.trim_start_matches("ws://"))
            .await
            .expect("tcp");
        Raw {
            tcp,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }

    /// Writes `bytes`; `false` if the server had closed the connection.
    async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// The next response, or `None` if the connection ends first.
    async fn try_response(&mut self) -> Option<(Head, Vec<u8>)> {
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if !self.fill().await {
                assert!(self.buf.is_empty(), "a cut head: {:?}", self.buf);
                return None;
            }
        }
        Some(self.response().await)
    }

    /// Reads some more bytes into `buf`; `false` at end of stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The bytes up to `delimiter` (consumed, not returned); `None` if the stream ends first.
    async fn until(&mut self, delimiter: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self
                .buf
                .windows(delimiter.len())
                .position(|w| w == delimiter)
            {
                let out = self.buf[..at].to_vec();
                self.buf.drain(..at + delimiter.len());
                return Some(out);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "the stream ended inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next response head.
    async fn head(&mut self) -> Head {
        let head = self.until(b"\r\n\r\n").await.expect("a response head");
        let head = String::from_utf8(head).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(status_line.starts_with("HTTP/1.1 "), "{head}");
        let status = status_line[9..12].parse().expect("a status code");
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        Head { status, headers }
    }

    /// The next chunk of a chunked body (trailers skipped).
    async fn chunk(&mut self) -> Chunk {
        let Some(size_line) = self.until(b"\r\n").await else {
            return Chunk::Eof;
        };
        let size_line = String::from_utf8(size_line).expect("an ASCII chunk size");
        let size = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if size == 0 {
            // Trailers, if any, then the empty line.
            loop {
                match self.until(b"\r\n").await {
                    None => return Chunk::Eof,
                    Some(line) if line.is_empty() => return Chunk::End,
                    Some(_) => {}
                }
            }
        }
        let data = self.take(size).await;
        assert_eq!(self.take(2).await, b"\r\n", "chunk data ends with CRLF");
        Chunk::Data(data)
    }

    /// A whole response, its body read by its framing (`Content-Length` or chunked).
    async fn response(&mut self) -> (Head, Vec<u8>) {
        let head = self.head().await;
        let body = if head.is_chunked() {
            let mut body = Vec::new();
            loop {
                match self.chunk().await {
                    Chunk::Data(data) => body.extend_from_slice(&data),
                    Chunk::End => break body,
                    Chunk::Eof => panic!("the stream ended inside a chunked body"),
                }
            }
        } else if let Some(len) = head.header("content-length") {
            self.take(len.parse().expect("a length")).await
        } else {
            assert!(
                head.status == 204 || head.status == 304,
                "a response without framing: {head:?}"
            );
            Vec::new()
        };
        (head, body)
    }

    /// Everything until the server closes the connection.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// The TCP stream, for a WebSocket client; nothing may be left unread.
    fn into_stream(self) -> TcpStream {
        assert!(self.buf.is_empty(), "unread: {:?}", self.buf);
        self.tcp
    }
}

/// A request with a `Content-Length` body.
fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A request with a chunked body, cut into chunks of the given sizes (the rest in one more).
fn post_chunked(path: &str, content_type: &str, body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let mut rest = body;
    for &cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        let (chunk, after) = rest.split_at(cut.min(rest.len()));
        if !chunk.is_empty() {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        rest = after;
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// The `text/event-stream` of a chunked response body, cut into blocks at the blank lines.
struct EventStream {
    raw: Raw,
    text: String,
    /// Whether the body ended with the chunked terminator (not by the connection closing).
    terminated: bool,
}

impl EventStream {
    fn new(raw: Raw) -> Self {
        EventStream {
            raw,
            text: String::new(),
            terminated: false,
        }
    }

    /// The next block (an event, or `:` for a keep-alive comment) without its blank line;
    /// `None` when the body ends.
    async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.text.find("\n\n") {
                let block = self.text[..at].to_owned();
                self.text.drain(..at + 2);
                return Some(block);
            }
            match self.raw.chunk().await {
                Chunk::Data(data) => {
                    self.text
                        .push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
                }
                Chunk::End => {
                    self.terminated = true;
                    return None;
                }
                Chunk::Eof => return None,
            }
        }
    }

    /// The next block that is not a keep-alive comment (a heartbeat may come between events on
    /// a slow machine).
    async fn event(&mut self) -> Option<String> {
        loop {
            match self.block().await {
                Some(block) if block == ":" => {}
                other => return other,
            }
        }
    }
}

/// An event as it goes over the wire, without its blank line.
fn wire(event: &SseEvent) -> String {
    let bytes = event.to_bytes();
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    text.strip_suffix("\n\n")
        .expect("a dispatched event")
        .to_owned()
}

/// A server whose `/events` route answers a Server-Sent Events stream with a 50 ms heartbeat and
/// hands the test its sender.
fn sse_server() -> (Server, Rx<SseSender>) {
    let (opened, streams) = channel();
    let server = Server::new().route(
        "/events",
        Route::http(move |_req: Request<Bytes>| {
            let opened = opened.clone();
            async move {
                let config = SseConfig::default().heartbeat(Some(Duration::from_millis(50)));
                let (events, body) = SseBody::channel(runtime(), config);
                opened.send(events);
                body.into_response()
            }
        }),
    );
    (server, streams)
}

/// Opens `/events`, checks the head of the stream, and returns the stream and its sender.
async fn open_events(base: &str, streams: &mut Rx<SseSender>) -> (EventStream, SseSender) {
    let mut raw = Raw::open(base).await;
    raw.send(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await;
    let head = raw.head().await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert!(head.is_chunked(), "{head:?}");
    assert_eq!(head.header("content-length"), None);
    let events = streams.recv().await.expect("the route ran");
    (EventStream::new(raw), events)
}

/// [`open_events`], then one event `hi` sent and received: the stream is flowing.
async fn open_events_said_hi(
    base: &str,
    streams: &mut Rx<SseSender>,
) -> (EventStream, SseSender) {
    let (mut stream, events) = open_events(base, streams).await;
    events
        .send(&SseEvent::data("hi"))
        .expect("room in the queue");
    assert_eq!(stream.event().await, Some(wire(&SseEvent::data("hi"))));
    (stream, events)
}

/// A route that records each request's method, content type and body, and answers `201` with
/// the body's length as JSON.
fn recording_route(seen: Tx<(String, Option<String>, Bytes)>) -> Route {
    Route::http(move |req: Request<Bytes>| {
        let seen = seen.clone();
        async move {
            let content_type = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let len = req.body().len();
            seen.send((req.method().to_string(), content_type, req.body().clone()));
            (StatusCode::CREATED, Json(len))
        }
    })
    .into()
}

// ---- keep-alive, bodies, async init, SSE ------------------------------------------------------------

async fn keep_alive_answers_two_requests_on_one_connection() {
    let server = Server::new().route(
        "/who",
        Route::http(|req: Request<Bytes>| async move {
            let peer = req.extensions().get::<PeerAddr>().expect("PeerAddr").0;
            HttpResponse::text(200, format!("{} from {peer}", req.uri()))
        }),
    );
    let (base, handle, serving) = start(server).await;
    let mut raw = Raw::open(&base).await;
    let me = raw.tcp.local_addr().expect("local address");

    raw.send(b"GET /who?n=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = raw.response().await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.header("content-length").is_some(), "{head:?}");
    assert_ne!(head.header("connection"), Some("close"), "{head:?}");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        format!("/who?n=1 from {me}")
    );

    raw.send(b"GET /who?n=2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = raw.response().await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        format!("/who?n=2 from {me}")
    );
    assert_eq!(handle.connections(), 1, "one connection served both");

    // An idle keep-alive connection is closed by the shutdown, with nothing more sent.
    handle.shutdown();
    assert!(raw.rest().await.is_empty());
    assert_eq!(serving.await.still_open, 0);
}

async fn post_bodies_reach_the_handler_byte_exact_with_length_or_chunked() {
    let (seen, mut bodies) = channel();
    let server = Server::new().route("/api", recording_route(seen));
    let (base, handle, serving) = start(server).await;
    // Larger than one read, with multi-byte UTF-8, escapes, and every byte value in a string.
    let items: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let json = format!(
        "{{\"name\":\"zoë ☃ \\\"q\\\"\\n\",\"bytes\":\"{}\",\"items\":[{}]}}",
        (0x20u8..0x7f)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .collect::<String>(),
        items.join(",")
    );
    let json = json.into_bytes();
    assert!(json.len() > 64 * 1024);

    let mut raw = Raw::open(&base).await;
    raw.send(&post("/api", "application/json", &json)).await;
    let (head, body) = raw.response().await;
    assert_eq!(head.status, 201, "{head:?}");
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(body, json.len().to_string().as_bytes());
    let (method, content_type, received) = bodies.recv().await.expect("the handler ran");
    assert_eq!(method, "POST");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert!(received == json, "the body differs from what was sent");

    // The same body chunked, on the same connection.
    raw.send(&post_chunked(
        "/api",
        "application/json",
        &json,
        &[1, 7, 4096, 3],
    ))
    .await;
    let (head, body) = raw.response().await;
    assert_eq!(head.status, 201, "{head:?}");
    assert_eq!(body, json.len().to_string().as_bytes());
    let (_, _, received) = bodies.recv().await.expect("the handler ran");
    assert!(
        received == json,
        "the chunked body differs from what was sent"
    );

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn body_over_max_body_size_gets_413_without_calling_the_handler() {
    let (seen, mut bodies) = channel();
    let server = Server::new()
        .route("/api", recording_route(seen))
        .max_body_size(1000);
    let (base, handle, serving) = start(server).await;

    // At the limit: accepted.
    let mut raw = Raw::open(&base).await;
    raw.send(&post("/api", "text/plain", &[b'a'; 1000])).await;
    let (head, _) = raw.response().await;
    assert_eq!(head.status, 201, "{head:?}");
    let (_, _, received) = bodies.recv().await.expect("the handler ran");
    assert_eq!(received.len(), 1000);

    // One byte over, announced by Content-Length.
    let mut raw = Raw::open(&base).await;
    raw.send(&post("/api", "text/plain", &[b'b'; 1001])).await;
    let (head, _) = raw.response().await;
    assert_eq!(head.status, 413, "{head:?}");

    // Over, in chunks (the size is not announced).
    let mut raw = Raw::open(&base).await;
    raw.send(&post_chunked("/api", "text/plain", &[b'c'; 1200], &[600]))
        .await;
    let (head, _) = raw.response().await;
    assert_eq!(head.status, 413, "{head:?}");

    // The handler runs before its response is sent: had it run for either refused body, its
    // record would come before this one.
    let mut raw = Raw::open(&base).await;
    raw.send(&post("/api", "text/plain", b"ok")).await;
    let (head, _) = raw.response().await;
    assert_eq!(head.status, 201, "{head:?}");
    let (_, _, received) = bodies.recv().await.expect("the handler ran");
    assert_eq!(&received[..], b"ok", "the handler saw a refused body");

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn a_refused_body_is_never_read_as_a_request() {
    let (seen, mut bodies) = channel();
    let server = Server::new()
        .route("/api", recording_route(seen))
        .max_body_size(1000);
    let (base, handle, serving) = start(server).await;
    // Each oversized body ends with what looks like a request with a body of its own; after
    // the 413 the server either reads the rest of the refused body and goes on with the next
    // request, or closes the connection — it never answers the request inside the body.
    let inside = post("/api", "text/plain", b"smuggled");
    for size in [1001, 5000, 100_000] {
        let mut body = vec![b'x'; size - inside.len()];
        body.extend_from_slice(&inside);
        let mut raw = Raw::open(&base).await;
        let sent = raw.try_send(&post("/api", "text/plain", &body)).await;
        let (head, _) = raw.try_response().await.expect("an answer");
        assert_eq!(head.status, 413, "{size}: {head:?}");
        if sent
            && raw.try_send(&post("/api", "text/plain", b"next")).await
            && let Some((head, body)) = raw.try_response().await
        {
            assert_eq!(head.status, 201, "{size}: {head:?}");
            assert_eq!(body, b"4", "{size}: answered the request inside the body");
            let (_, _, received) = bodies.recv().await.expect("the handler ran");
            assert_eq!(&received[..], b"next", "{size}");
        }
    }
    // Had the handler run for anything else, its record would come before this one.
    let mut raw = Raw::open(&base).await;
    raw.send(&post("/api", "text/plain", b"last")).await;
    let (head, _) = raw.response().await;
    assert_eq!(head.status, 201, "{head:?}");
    let (_, _, received) = bodies.recv().await.expect("the handler ran");
    assert_eq!(&received[..], b"last");

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

/// What a `websocket_async` route's init step asks the test: the request's `Authorization`
/// header and path, and where to answer with the user (or `None` to refuse).
type Ask = (Option<String>, String, Tx<Option<String>>);

/// A `/private` route whose async init asks the test who the user is, and refuses with `401`
/// when there is none; the handler greets the user it was given.
fn auth_server() -> (Server, Rx<Ask>) {
    let (asks, asked) = channel::<Ask>();
    let route = Route::websocket_async(
        move |info: RequestInfo| {
            let asks = asks.clone();
            async move {
                let (answer, mut answered) = channel();
                let auth = info
                    .header("Authorization")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                asks.send((auth, info.path().to_owned(), answer));
                match answered.recv().await.flatten() {
                    Some(user) => Ok((
                        AcceptOptions::new()
                            .protocol("chat")
                            .header("X-User", &user),
                        user,
                    )),
                    None => Err(Rejection::new(401).header("WWW-Authenticate", "Bearer")),
                }
            }
        },
        |mut ws: WebSocket, info: RequestInfo, user: String| async move {
            let text = format!("hello {user} on {} ({:?})", info.path(), info.subprotocol());
            let _ = ws.send_text(text).await;
            let _ = ws.close(CloseCode::NORMAL, "").await;
        },
    );
    (Server::new().route("/private", route), asked)
}

async fn websocket_async_refuses_with_401_after_an_awaited_step() {
    let (server, mut asked) = auth_server();
    let (base, handle, serving) = start(server).await;
    let url = format!("{base}/private");

    let attempt = spawn(async move { connect(&url).await });
    let (auth, path, answer) = asked.recv().await.expect("init ran");
    assert_eq!((auth, path.as_str()), (None, "/private"));
    // The upgrade waits on this answer.
    answer.send(None);
    let (status, headers) = refused_status(attempt.await);
    assert_eq!(status, 401);
    assert!(
        has_header(&headers, "WWW-Authenticate", "Bearer"),
        "{headers:?}"
    );

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn websocket_async_accepts_and_passes_its_state_to_the_handler() {
    let (server, mut asked) = auth_server();
    let (base, handle, serving) = start(server).await;
    let url = format!("{base}/private?x=1");

    let attempt = spawn(async move {
        let options = ConnectOptions::new()
            .protocol("chat")
            .header("Authorization", "Bearer alice");
        connect_with(&url, &options).await
    });
    let (auth, path, answer) = asked.recv().await.expect("init ran");
    assert_eq!(
        (auth.as_deref(), path.as_str()),
        (Some("Bearer alice"), "/private")
    );
    answer.send(Some("alice".to_owned()));
    let (mut ws, response) = attempt.await.expect("accepted");
    assert_eq!(ws.subprotocol(), Some("chat"));
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("X-User") && v == b"alice"),
        "{:?}",
        response.headers
    );
    let greeting = ws.recv().await.expect("open").expect("message");
    assert_eq!(
        greeting.as_text(),
        Some(r#"hello alice on /private (Some("chat"))"#)
    );
    assert!(ws.recv().await.is_none(), "the handler closes");

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn websocket_async_init_still_deciding_at_shutdown_is_answered_503() {
    let (server, mut asked) = auth_server();
    let (base, handle, serving) = start(server).await;
    let url = format!("{base}/private");

    let attempt = spawn(async move { connect(&url).await });
    let (_, _, answer) = asked.recv().await.expect("init ran");
    handle.shutdown();
    // Init accepts, but the server is going away: nothing is upgraded.
    answer.send(Some("late".to_owned()));
    let (status, headers) = refused_status(attempt.await);
    assert_eq!(status, 503);
    assert!(has_header(&headers, "Retry-After", "1"), "{headers:?}");
    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (0, 0));
}

async fn sse_route_streams_events_in_order_with_headers_and_heartbeats() {
    let (server, mut streams) = sse_server();
    let (base, handle, serving) = start(server).await;
    let (mut stream, events) = open_events(&base, &mut streams).await;

    let sent = [
        SseEvent::data("one"),
        SseEvent::data("two\nlines")
            .event("update")
            .expect("event name")
            .id("2")
            .expect("id"),
        SseEvent::data("{\"n\":3}"),
    ];
    for event in &sent {
        events.send(event).expect("room in the queue");
    }
    for event in &sent {
        assert_eq!(stream.event().await, Some(wire(event)));
    }
    // Nothing else was sent: what comes next is a keep-alive comment, once idle.
    assert_eq!(stream.block().await.as_deref(), Some(":"));
    assert!(!events.is_closed());
    // And events still go out after it.
    events
        .send(&SseEvent::data("four"))
        .expect("room in the queue");
    assert_eq!(stream.event().await, Some(wire(&SseEvent::data("four"))));

    drop(stream);
    drop(events);
    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn sse_sender_sees_the_client_close_within_a_few_heartbeats() {
    let (server, mut streams) = sse_server();
    let (base, handle, serving) = start(server).await;
    let (stream, events) = open_events_said_hi(&base, &mut streams).await;
    assert!(!events.is_closed());

    drop(stream);
    // The next heartbeat's write fails (or the server sees the end of the stream) and the body
    // is dropped: bounded by the test's timeout, not by a sleep.
    events.closed().await;
    assert!(events.is_closed());
    assert_eq!(
        events.send(&SseEvent::data("gone")),
        Err(SseSendError::Closed)
    );
    // The connection is over too.
    handle.idle().await;

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

async fn graceful_shutdown_ends_an_open_sse_stream_and_returns() {
    let (server, mut streams) = sse_server();
    let (base, handle, serving) = start(server).await;
    let (mut stream, events) = open_events_said_hi(&base, &mut streams).await;

    // The sender stays alive: only the shutdown can end the stream.
    handle.shutdown();
    while let Some(block) = stream.block().await {
        assert_eq!(block, ":", "only keep-alives until the end");
    }
    let report = serving.await;
    assert_eq!((report.closed, report.still_open), (0, 0));
    assert!(events.is_closed(), "the body was dropped");
    assert_eq!(handle.connections(), 0);
    // A clean end (the zero-size chunk), not a cut connection: an EventSource reconnects either
    // way, but a proxy may report a cut one as an error.
    assert!(
        stream.terminated,
        "the body ended without its chunked terminator"
    );
}

async fn websocket_upgrade_after_a_plain_request_on_the_same_connection() {
    let server = Server::new().route("/echo", Route::websocket(echo)).route(
        "/page",
        Route::http(|_req: Request<Bytes>| async { HttpResponse::html(200, "<p>hi</p>") }),
    );
    let (base, handle, serving) = start(server).await;
    let mut raw = Raw::open(&base).await;
    raw.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = raw.response().await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(body, b"<p>hi</p>");

    let (mut ws, _) = client(
        raw.into_stream(),
        &format!("{base}/echo"),
        &ConnectOptions::new(),
    )
    .await
    .expect("upgrade on the kept-alive connection");
    round_trip(&mut ws, "on the same socket").await;
    round_trip(&mut ws, "and again").await;
    ws.close(CloseCode::NORMAL, "").await.expect("close");
    assert!(ws.recv().await.is_none());

    handle.shutdown();
    assert_eq!(serving.await.still_open, 0);
}

tests! {
    routes_serve_websocket_and_plain_http_and_refuse_unknown_paths_with_404,
    per_ip_limit_refuses_a_second_connection_with_503_until_the_first_ends,
    global_limit_refuses_above_the_total_with_503,
    graceful_shutdown_closes_clients_with_1001_and_returns,
    shutdown_returns_after_the_timeout_with_handlers_that_do_not_end,
    shutdown_drops_connections_still_sending_their_request,
    shutdown_by_a_signal_future,
    keep_alive_answers_two_requests_on_one_connection,
    post_bodies_reach_the_handler_byte_exact_with_length_or_chunked,
    body_over_max_body_size_gets_413_without_calling_the_handler,
    a_refused_body_is_never_read_as_a_request,
    websocket_async_refuses_with_401_after_an_awaited_step,
    websocket_async_accepts_and_passes_its_state_to_the_handler,
    websocket_async_init_still_deciding_at_shutdown_is_answered_503,
    sse_route_streams_events_in_order_with_headers_and_heartbeats,
    sse_sender_sees_the_client_close_within_a_few_heartbeats,
    graceful_shutdown_ends_an_open_sse_stream_and_returns,
    websocket_upgrade_after_a_plain_request_on_the_same_connection,
}
