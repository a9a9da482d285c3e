//! Support for the tests that run over real sockets against both adapters
//! (`tests/tests/adapters.rs`, `interop.rs`, `tls.rs`).
//!
//! Two layers:
//!
//! * runtime-neutral helpers here: payloads, a frame reader for hand-made ("raw") peers, and the
//!   two halves of a raw opening handshake, all on `tidings-core` only;
//! * [`runtime_shims!`](crate::runtime_shims), a macro that expands, in a test file, one module per
//!   runtime (`tokio_rt`, `smol_rt`) with the same small surface: run a test under an overall
//!   timeout, spawn a task that is cancelled when its handle is dropped, bind a loopback listener,
//!   connect, raw reads and writes, a timeout, async-tungstenite's accept/connect, and [`Raw`]-style
//!   peers that speak frames over a plain TCP stream. A test file then writes each test once in a
//!   `macro_rules!` and expands it into a `mod tokio_suite` and a `mod smol_suite`.
//!
//! The macro names `tokio`, `smol`, `tidings_tokio`, `tidings_smol`, `futures_util` and
//! `async_tungstenite`, which are dev-dependencies of this crate: it is only usable from its
//! integration tests. (The library itself stays free of them: the fuzz crate links it.)
//!
//! [`Raw`]: crate::adapter_suite#raw-peers
//!
//! # Raw peers
//!
//! `rt::Raw` is a peer that writes hand-made frames ([`crate::raw_frame`], masked with
//! [`crate::TEST_KEY`] when it plays the client) and reads the other side's frames one at a time
//! with [`take_frame`], so a test can see exactly what went over the wire: a pong's payload, a
//! close frame's code, whether anything was answered at all.

use tidings_core::handshake::{
    self, AcceptOptions, ClientRequest, Limits, ServerResponse, Status, UpgradeRequest,
};
use tidings_core::{FrameHeader, mask::apply_mask};

use crate::WireFrame;

/// Every size class of the frame length encoding, at and around its edges, plus 1 MiB.
pub const ECHO_SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

/// `n` bytes of ASCII text (`abc…zabc…`).
pub fn text_payload(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// `n` bytes of a binary pattern that does not repeat every 256 bytes, `seed` varying it.
pub fn binary_payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 31 % 251) as u8).wrapping_add(seed))
        .collect()
}

/// Takes one complete frame off the front of `buf` (payload unmasked), or `None` if `buf` does not
/// hold a whole frame yet.
///
/// # Panics
///
/// If the bytes are not a valid frame header: the side under test wrote garbage.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<WireFrame> {
    let (header, hlen) = FrameHeader::decode(buf).expect("a valid frame header")?;
    let len = usize::try_from(header.len).expect("frame length fits in memory");
    let end = hlen.checked_add(len)?;
    if buf.len() < end {
        return None;
    }
    let mut payload = buf[hlen..end].to_vec();
    if let Some(key) = header.mask {
        apply_mask(&mut payload, key);
    }
    buf.drain(..end);
    Some(WireFrame { header, payload })
}

/// A fixed-key upgrade request for `resource` on `host` with extra `headers`, as a raw client
/// sends it.
///
/// # Panics
///
/// On an invalid host, resource or header. A `Sec-WebSocket-Extensions` header is sent as the
/// request's extension offer.
pub fn raw_request(host: &str, resource: &str, headers: &[(&str, &str)]) -> ClientRequest {
    let mut request = ClientRequest::new(host, resource, *b"tidings raw peer").expect("request");
    for (name, value) in headers {
        request = if name.eq_ignore_ascii_case("Sec-WebSocket-Extensions") {
            request.extension_offer(value).expect("extension offer")
        } else {
            request.header(name, value).expect("header")
        };
    }
    request
}

/// Parses the server's answer to `request` at the start of `buf`: `None` while incomplete, else
/// the result and how many bytes the head took.
pub fn parse_answer(
    buf: &[u8],
    request: &ClientRequest,
) -> Option<(Result<ServerResponse, handshake::HandshakeError>, usize)> {
    match handshake::parse_response(buf, request, &Limits::default()) {
        Ok(Status::Partial) => None,
        Ok(Status::Complete((response, consumed))) => Some((Ok(response), consumed)),
        Err(e) => Some((Err(e), buf.len())),
    }
}

/// A raw server's side of the handshake: once `buf` holds a whole request, the `101` answer for
/// it (chosen by `choose`) and the number of bytes the request took.
///
/// # Panics
///
/// If the request is invalid or `choose` picks options the request does not allow.
pub fn answer_request(
    buf: &[u8],
    choose: &mut dyn FnMut(&UpgradeRequest<'_>) -> AcceptOptions,
) -> Option<(Vec<u8>, usize)> {
    match handshake::parse_request(buf, &Limits::default()).expect("a valid upgrade request") {
        Status::Partial => None,
        Status::Complete((request, consumed)) => {
            let options = choose(&request);
            Some((
                request.accept(&options).expect("acceptable options"),
                consumed,
            ))
        }
    }
}

/// Expands the per-runtime shims `tokio_rt` and `smol_rt` into the calling test file; see the
/// [module docs](crate::adapter_suite).
#[macro_export]
macro_rules! runtime_shims {
    () => {
        /// tokio: a multi-threaded runtime per test (a paused current-thread one for
        /// [`run_paused`]), `tokio::spawn`, tokio's TCP.
        #[allow(dead_code, missing_docs, unreachable_pub)]
        pub mod tokio_rt {
            use std::future::Future;
            use std::io;
            use std::pin::Pin;
            use std::task::{Context, Poll};
            use std::time::Duration;

            use ::tokio::io::{AsyncReadExt, AsyncWriteExt};

            pub use ::tidings_tokio as ws;
            pub type Tcp = ::tokio::net::TcpStream;

            /// The runtime's name, for messages.
            pub const NAME: &str = "tokio";
            /// Whether [`run_paused`] runs on a paused (virtual, auto-advancing) clock.
            pub const PAUSED: bool = true;

            /// Runs a test on a fresh two-worker runtime, failing it after `guard`.
            pub fn run<F: Future<Output = ()>>(guard: Duration, test: F) {
                let rt = ::tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async {
                    ::tokio::time::timeout(guard, test)
                        .await
                        .expect("test timed out");
                });
            }

            /// Runs a test on a current-thread runtime whose clock is paused: timers fire as
            /// soon as every task is idle, so minutes of protocol time pass at once. `guard`
            /// is in that virtual time.
            pub fn run_paused<F: Future<Output = ()>>(guard: Duration, test: F) {
                let rt = ::tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(true)
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async {
                    ::tokio::time::timeout(guard, test)
                        .await
                        .expect("test timed out");
                });
            }

            /// A spawned task; dropping the handle aborts it.
            pub struct Join<T>(::tokio::task::JoinHandle<T>);

            impl<T> Future for Join<T> {
                type Output = T;
                fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
                    match Pin::new(&mut self.0).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(value)) => Poll::Ready(value),
                        Poll::Ready(Err(e)) if e.is_panic() => {
                            std::panic::resume_unwind(e.into_panic())
                        }
                        Poll::Ready(Err(e)) => panic!("task failed: {e}"),
                    }
                }
            }

            impl<T> Drop for Join<T> {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }

            pub fn spawn<T, F>(task: F) -> Join<T>
            where
                T: Send + 'static,
                F: Future<Output = T> + Send + 'static,
            {
                Join(::tokio::spawn(task))
            }

            pub struct Listener(::tokio::net::TcpListener);

            impl Listener {
                pub async fn accept(&self) -> Tcp {
                    let (tcp, _) = self.0.accept().await.expect("accept");
                    tcp.set_nodelay(true).expect("nodelay");
                    tcp
                }
            }

            /// A listener on 127.0.0.1 and its port.
            pub async fn bind() -> (Listener, u16) {
                let l = ::tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let port = l.local_addr().expect("addr").port();
                (Listener(l), port)
            }

            pub async fn connect(port: u16) -> Tcp {
                let tcp = Tcp::connect(("127.0.0.1", port)).await.expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                tcp
            }

            /// `None` if `fut` did not finish within `d`.
            pub async fn timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
                ::tokio::time::timeout(d, fut).await.ok()
            }

            pub async fn sleep(d: Duration) {
                ::tokio::time::sleep(d).await;
            }

            pub async fn yield_now() {
                ::tokio::task::yield_now().await;
            }

            pub async fn write_all(tcp: &mut Tcp, bytes: &[u8]) -> io::Result<()> {
                tcp.write_all(bytes).await?;
                tcp.flush().await
            }

            pub async fn read(tcp: &mut Tcp, buf: &mut [u8]) -> io::Result<usize> {
                tcp.read(buf).await
            }

            pub async fn shutdown(tcp: &mut Tcp) {
                let _ = tcp.shutdown().await;
            }

            /// async-tungstenite's server handshake on `tcp`.
            pub async fn their_accept(
                tcp: Tcp,
            ) -> ::async_tungstenite::WebSocketStream<::async_tungstenite::tokio::TokioAdapter<Tcp>>
            {
                ::async_tungstenite::tokio::accept_async(tcp)
                    .await
                    .expect("async-tungstenite accept")
            }

            /// async-tungstenite's client: connects to `url`.
            pub async fn their_connect(
                url: &str,
            ) -> ::async_tungstenite::WebSocketStream<::async_tungstenite::tokio::ConnectStream>
            {
                ::async_tungstenite::tokio::connect_async(url)
                    .await
                    .expect("async-tungstenite connect")
                    .0
            }

            $crate::raw_peer!();
        }

        /// smol: `smol::block_on` per test, `smol::spawn` on the global executor, smol's TCP,
        /// the real clock.
        #[allow(dead_code, missing_docs, unreachable_pub)]
        pub mod smol_rt {
            use std::future::Future;
            use std::io;
            use std::time::Duration;

            use ::smol::io::{AsyncReadExt, AsyncWriteExt};

            pub use ::tidings_smol as ws;
            pub type Tcp = ::smol::net::TcpStream;

            pub const NAME: &str = "smol";
            pub const PAUSED: bool = false;

            /// Runs a test with `smol::block_on`, failing it after `guard`.
            pub fn run<F: Future<Output = ()>>(guard: Duration, test: F) {
                ::smol::block_on(async {
                    timeout(guard, test).await.expect("test timed out");
                });
            }

            /// smol has no virtual clock: the same as [`run`].
            pub fn run_paused<F: Future<Output = ()>>(guard: Duration, test: F) {
                run(guard, test);
            }

            /// A spawned task; dropping the handle cancels it.
            pub type Join<T> = ::smol::Task<T>;

            pub fn spawn<T, F>(task: F) -> Join<T>
            where
                T: Send + 'static,
                F: Future<Output = T> + Send + 'static,
            {
                ::smol::spawn(task)
            }

            pub struct Listener(::smol::net::TcpListener);

            impl Listener {
                pub async fn accept(&self) -> Tcp {
                    let (tcp, _) = self.0.accept().await.expect("accept");
                    tcp.set_nodelay(true).expect("nodelay");
                    tcp
                }
            }

            pub async fn bind() -> (Listener, u16) {
                let l = ::smol::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let port = l.local_addr().expect("addr").port();
                (Listener(l), port)
            }

            pub async fn connect(port: u16) -> Tcp {
                let tcp = Tcp::connect(("127.0.0.1", port)).await.expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                tcp
            }

            pub async fn timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
                let fut = async { Some(fut.await) };
                let timer = async {
                    ::smol::Timer::after(d).await;
                    None
                };
                ::smol::future::or(fut, timer).await
            }

            pub async fn sleep(d: Duration) {
                ::smol::Timer::after(d).await;
            }

            pub async fn yield_now() {
                ::smol::future::yield_now().await;
            }

            pub async fn write_all(tcp: &mut Tcp, bytes: &[u8]) -> io::Result<()> {
                tcp.write_all(bytes).await?;
                tcp.flush().await
            }

            pub async fn read(tcp: &mut Tcp, buf: &mut [u8]) -> io::Result<usize> {
                tcp.read(buf).await
            }

            pub async fn shutdown(tcp: &mut Tcp) {
                let _ = tcp.close().await;
            }

            pub async fn their_accept(tcp: Tcp) -> ::async_tungstenite::WebSocketStream<Tcp> {
                ::async_tungstenite::accept_async(tcp)
                    .await
                    .expect("async-tungstenite accept")
            }

            pub async fn their_connect(
                url: &str,
            ) -> ::async_tungstenite::WebSocketStream<::async_tungstenite::smol::ConnectStream>
            {
                ::async_tungstenite::smol::connect_async(url)
                    .await
                    .expect("async-tungstenite connect")
                    .0
            }

            $crate::raw_peer!();
        }
    };
}

/// The raw peer of a runtime module (expanded by [`runtime_shims!`](crate::runtime_shims) inside
/// each runtime module, over its `Tcp`, `read`, `write_all` and `shutdown`).
#[doc(hidden)]
#[macro_export]
macro_rules! raw_peer {
    () => {
        /// A hand-made peer over plain TCP: writes raw frames, reads the other side's frames.
        pub struct Raw {
            pub tcp: Tcp,
            buf: Vec<u8>,
            scratch: Vec<u8>,
            /// Whether this peer is the client (its frames are masked).
            pub masks: bool,
        }

        impl Raw {
            pub fn new(tcp: Tcp, masks: bool, leftover: Vec<u8>) -> Self {
                Raw {
                    tcp,
                    buf: leftover,
                    scratch: vec![0; 64 * 1024],
                    masks,
                }
            }

            /// Connects to 127.0.0.1:`port` and runs the client handshake for `resource` with
            /// extra `headers`; frames that followed the `101` stay buffered.
            pub async fn client(
                port: u16,
                resource: &str,
                headers: &[(&str, &str)],
            ) -> (Raw, $crate::adapter_suite::ClientAnswer) {
                let tcp = connect(port).await;
                let request = $crate::adapter_suite::raw_request(
                    &format!("127.0.0.1:{port}"),
                    resource,
                    headers,
                );
                Raw::client_over(tcp, &request, &[]).await
            }

            /// Sends `request` followed by `extra` in the same write, and reads the answer.
            pub async fn client_over(
                tcp: Tcp,
                request: &::tidings_core::handshake::ClientRequest,
                extra: &[u8],
            ) -> (Raw, $crate::adapter_suite::ClientAnswer) {
                let mut raw = Raw::new(tcp, true, Vec::new());
                let mut head = request.encode();
                head.extend_from_slice(extra);
                raw.send(&head).await;
                loop {
                    if let Some((answer, consumed)) =
                        $crate::adapter_suite::parse_answer(&raw.buf, request)
                    {
                        raw.buf.drain(..consumed);
                        return (raw, answer);
                    }
                    assert!(raw.fill().await, "EOF during the handshake");
                }
            }

            /// Accepts one connection on `listener` and answers its upgrade request with `101`;
            /// `extra` is written in the same write as the answer.
            pub async fn server(listener: &Listener, extra: &[u8]) -> Raw {
                let tcp = listener.accept().await;
                Raw::server_over(tcp, extra, |_| {
                    ::tidings_core::handshake::AcceptOptions::new()
                })
                .await
            }

            pub async fn server_over(
                tcp: Tcp,
                extra: &[u8],
                mut choose: impl FnMut(
                    &::tidings_core::handshake::UpgradeRequest<'_>,
                ) -> ::tidings_core::handshake::AcceptOptions,
            ) -> Raw {
                let mut raw = Raw::new(tcp, false, Vec::new());
                loop {
                    if let Some((mut answer, consumed)) =
                        $crate::adapter_suite::answer_request(&raw.buf, &mut choose)
                    {
                        raw.buf.drain(..consumed);
                        answer.extend_from_slice(extra);
                        raw.send(&answer).await;
                        return raw;
                    }
                    assert!(raw.fill().await, "EOF during the handshake");
                }
            }

            /// A frame as this peer sends it (masked with `TEST_KEY` if it is the client).
            pub fn frame(&self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
                let mask = self.masks.then_some($crate::TEST_KEY);
                $crate::raw_frame(fin, 0, opcode, mask, payload)
            }

            pub async fn send(&mut self, bytes: &[u8]) {
                write_all(&mut self.tcp, bytes).await.expect("raw write");
            }

            pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
                let frame = self.frame(fin, opcode, payload);
                self.send(&frame).await;
            }

            pub async fn send_close(&mut self, code: u16, reason: &str) {
                let payload = $crate::close_payload(code, reason.as_bytes());
                self.send_frame(true, $crate::op::CLOSE, &payload).await;
            }

            /// Reads more bytes; `false` at EOF or on a reset.
            pub async fn fill(&mut self) -> bool {
                match read(&mut self.tcp, &mut self.scratch).await {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        self.buf.extend_from_slice(&self.scratch[..n]);
                        true
                    }
                }
            }

            /// The next frame from the other side; `None` at EOF (with nothing left buffered).
            pub async fn next_frame(&mut self) -> Option<$crate::WireFrame> {
                loop {
                    if let Some(frame) = $crate::adapter_suite::take_frame(&mut self.buf) {
                        return Some(frame);
                    }
                    if !self.fill().await {
                        assert!(self.buf.is_empty(), "EOF inside a frame");
                        return None;
                    }
                }
            }

            /// Takes every byte read and not yet taken as a frame (to feed a core `Connection`).
            pub fn take_buffered(&mut self) -> Vec<u8> {
                std::mem::take(&mut self.buf)
            }

            /// The next frame, which must exist.
            pub async fn expect_frame(&mut self) -> $crate::WireFrame {
                self.next_frame().await.expect("a frame, not EOF")
            }

            /// Reads frames until EOF; returns them.
            pub async fn until_eof(&mut self) -> Vec<$crate::WireFrame> {
                let mut frames = Vec::new();
                while let Some(frame) = self.next_frame().await {
                    frames.push(frame);
                }
                frames
            }

            pub async fn shutdown(&mut self) {
                shutdown(&mut self.tcp).await;
            }
        }
    };
}

/// What a raw client got back: the validated response, or why it was not a `101`.
pub type ClientAnswer = Result<ServerResponse, handshake::HandshakeError>;
