//! A small, independent HTTP/1.1 and Server-Sent Events client side for the tests: a response
//! decoded as its bytes arrive (the head with httparse, a chunked or close-delimited body) and an
//! event-stream parser written from the WHATWG HTML spec (§9.2.6), not from our encoder.
//! Runtime-neutral: [`http_client!`] expands the I/O half over a runtime module `rt` (its `Tcp`,
//! `connect`, `read`, `write_all`). Included by `hub_sse.rs`, `example_notifications.rs` and
//! `example_live_feed.rs`.
#![allow(dead_code)]

/// One dispatched event: its type (`message` when the block had no `event:` field), its data
/// (the `data:` lines joined with `\n`), and the `id:` field of its block, if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data {:?} is not JSON: {e}", self.data))
    }

    /// The `id:` as a number.
    pub fn number(&self) -> u64 {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("{self:?} has no id"));
        id.parse()
            .unwrap_or_else(|e| panic!("{self:?}: id {id:?} is not a number: {e}"))
    }
}

/// An event-stream parser: feed it bytes, take the events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// The last `retry:` seen, in milliseconds.
    pub retry: Option<u64>,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes of an unfinished line or event are waiting.
    pub fn is_mid_event(&self) -> bool {
        !self.buf.is_empty() || self.has_data || !self.event.is_empty() || self.id.is_some()
    }

    /// The next complete event, if one has arrived. Lines end in LF or CRLF.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).expect("event streams are UTF-8");
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                let id = self.id.take();
                if !std::mem::take(&mut self.has_data) {
                    continue; // no data: nothing is dispatched (e.g. a `retry:` block)
                }
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the last data line's `\n`
                return Some(SseEvent {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data,
                    id,
                });
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    self.data.push_str(value);
                    self.data.push('\n');
                    self.has_data = true;
                }
                "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
        None
    }
}

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type`, without parameters.
    pub fn media_type(&self) -> Option<&str> {
        self.header("content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }
}

/// One HTTP/1.1 response decoded as its bytes arrive.
#[derive(Debug, Default)]
pub struct Response {
    raw: Vec<u8>,
    head: Option<Head>,
    chunked: bool,
    /// The decoded body so far (what [`next_event`](Self::next_event) has not taken).
    pub body: Vec<u8>,
    /// Body bytes received in all (a close-delimited or `Content-Length` body).
    received: usize,
    ended: bool,
    pub events: SseParser,
}

impl Response {
    pub fn push(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        self.decode();
    }

    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Whether the body ended (its last chunk arrived).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The end of the connection: a close-delimited body ends there.
    pub fn eof(&mut self) {
        if self.head.is_some() && !self.chunked {
            self.ended = true;
        }
    }

    /// The next event of an event-stream body, if one has arrived.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let body = std::mem::take(&mut self.body);
        self.events.push(&body);
        self.events.next_event()
    }

    fn decode(&mut self) {
        if self.head.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let len = match response.parse(&self.raw).expect("an HTTP response head") {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial => return,
            };
            let head = Head {
                status: response.code.expect("a status"),
                headers: response
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_owned(), value)
                    })
                    .collect(),
            };
            self.chunked = head
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let length = head
                .header("content-length")
                .map(|v| v.trim().parse::<usize>());
            self.raw.drain(..len);
            if let Some(Ok(0)) = length {
                self.ended = true;
            }
            self.head = Some(head);
        }
        if self.ended {
            return;
        }
        if !self.chunked {
            self.received += self.raw.len();
            self.body.append(&mut self.raw);
            if let Some(Ok(length)) = self
                .head
                .as_ref()
                .and_then(|h| h.header("content-length"))
                .map(|v| v.trim().parse::<usize>())
                && self.received >= length
            {
                self.ended = true;
            }
            return;
        }
        // Chunked (RFC 9112 §7.1): `<hex size>[;ext]\r\n<data>\r\n`, ended by a zero-size chunk
        // (trailers are not expected).
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_line = std::str::from_utf8(&self.raw[..line_end]).expect("chunk size");
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|e| panic!("bad chunk size {size_line:?}: {e}"));
            if size == 0 {
                self.ended = true;
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            assert_eq!(
                &self.raw[start + size..start + size + 2],
                b"\r\n",
                "chunk end"
            );
            self.raw.drain(..start + size + 2);
        }
    }
}

/// Expands, inside a test suite with a runtime module `rt` in scope, `HttpClient`: one request
/// over its own TCP connection to 127.0.0.1 and its response read as it arrives. (Include this
/// file with `#[macro_use]`, at the crate root as `http_sse`.)
macro_rules! http_client {
    () => {
        /// One HTTP request on its own connection, and its response.
        #[allow(dead_code)]
        struct HttpClient {
            tcp: rt::Tcp,
            response: crate::http_sse::Response,
            scratch: Vec<u8>,
        }

        #[allow(dead_code)]
        impl HttpClient {
            /// Sends `method target` to `port` with `headers` and `body` (a `Content-Length`
            /// is added when there is one).
            async fn send(
                port: u16,
                method: &str,
                target: &str,
                headers: &[(&str, &str)],
                body: &[u8],
            ) -> Self {
                let mut tcp = rt::connect(port).await;
                let mut request =
                    format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
                for (name, value) in headers {
                    request.push_str(&format!("{name}: {value}\r\n"));
                }
                if !body.is_empty() || method == "POST" {
                    request.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                request.push_str("\r\n");
                let mut bytes = request.into_bytes();
                bytes.extend_from_slice(body);
                rt::write_all(&mut tcp, &bytes)
                    .await
                    .expect("write the request");
                HttpClient {
                    tcp,
                    response: Default::default(),
                    scratch: vec![0; 16 * 1024],
                }
            }

            /// `GET target` with `headers`.
            async fn get(port: u16, target: &str, headers: &[(&str, &str)]) -> Self {
                Self::send(port, "GET", target, headers, b"").await
            }

            /// Reads once more; `false` at the end of the connection.
            async fn fill(&mut self) -> bool {
                let n = rt::read(&mut self.tcp, &mut self.scratch)
                    .await
                    .unwrap_or(0);
                if n == 0 {
                    self.response.eof();
                    return false;
                }
                self.response.push(&self.scratch[..n]);
                true
            }

            /// The response head.
            async fn head(&mut self) -> crate::http_sse::Head {
                while self.response.head().is_none() {
                    assert!(
                        self.fill().await,
                        "the connection ended before a response head"
                    );
                }
                self.response.head().cloned().expect("a head")
            }

            /// The head and the whole body (the response must end).
            async fn whole(mut self) -> (crate::http_sse::Head, Vec<u8>) {
                let head = self.head().await;
                while !self.response.is_ended() {
                    if !self.fill().await {
                        break;
                    }
                }
                assert!(self.response.is_ended(), "the body did not end");
                (head, std::mem::take(&mut self.response.body))
            }

            /// The head and the body as text.
            async fn text(self) -> (crate::http_sse::Head, String) {
                let (head, body) = self.whole().await;
                (head, String::from_utf8(body).expect("a UTF-8 body"))
            }

            /// The head and the body as JSON.
            async fn json(self) -> (crate::http_sse::Head, serde_json::Value) {
                let (head, body) = self.text().await;
                let value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("the body {body:?} is not JSON: {e}"));
                (head, value)
            }

            /// The next event of an event-stream response.
            async fn event(&mut self) -> crate::http_sse::SseEvent {
                loop {
                    if let Some(event) = self.response.next_event() {
                        return event;
                    }
                    assert!(
                        !self.response.is_ended() && self.fill().await,
                        "the event stream ended"
                    );
                }
            }

            /// Reads until the event stream ends; the events that came before.
            async fn until_end(&mut self) -> Vec<crate::http_sse::SseEvent> {
                let mut events = Vec::new();
                loop {
                    while let Some(event) = self.response.next_event() {
                        events.push(event);
                    }
                    if self.response.is_ended() || !self.fill().await {
                        return events;
                    }
                }
            }
        }
    };
}
