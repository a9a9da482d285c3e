//! A blocking driver for [`tidings_core::Connection`] over `std::net::TcpStream`.
//!
//! This is all an I/O layer has to do for the sans-IO core:
//!
//! 1. run the handshake: read until [`handshake::parse_request`] (server) or
//!    [`handshake::parse_response`] (client) completes, write the answer, and hand any bytes that
//!    arrived after the HTTP head to the connection;
//! 2. loop: take events with `poll_event`; when there are none, write the queued output, then read
//!    with a timeout that ends at `poll_timeout` — bytes go to `receive`, EOF to `receive_eof`, an
//!    expired deadline to `handle_timeout`;
//! 3. once `should_close_transport` says so, flush and close the socket.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use tidings_core::ext::{ExtensionConfig, negotiate_client, negotiate_server};
use tidings_core::handshake::{self, AcceptOptions, ClientRequest, Limits, Status};
use tidings_core::{Config, Connection, Event};

/// Size of the read buffer.
const READ_BUF: usize = 64 * 1024;

/// A WebSocket connection on a blocking TCP stream.
pub struct BlockingWebSocket {
    stream: TcpStream,
    conn: Connection,
    buf: Vec<u8>,
    done: bool,
}

impl BlockingWebSocket {
    /// Wraps an upgraded stream; `leftover` are the bytes that arrived after the HTTP head.
    pub fn new(stream: TcpStream, mut conn: Connection, leftover: &[u8]) -> Self {
        conn.receive(Instant::now(), leftover);
        BlockingWebSocket {
            stream,
            conn,
            buf: vec![0; READ_BUF],
            done: false,
        }
    }

    /// The sans-IO connection, for commands (`send_text`, `close`…).
    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The next event, reading and writing as needed. `Ok(None)` once the connection is over and
    /// the socket closed.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(event) = self.conn.poll_event() {
                return Ok(Some(event));
            }
            self.flush()?;
            if self.conn.should_close_transport() {
                if !self.done {
                    self.done = true;
                    let _ = self.stream.shutdown(Shutdown::Both);
                }
                return Ok(None);
            }
            let now = Instant::now();
            let wait = self
                .conn
                .poll_timeout()
                .map(|t| t.saturating_duration_since(now));
            if wait == Some(Duration::ZERO) {
                self.conn.handle_timeout(now);
                continue;
            }
            self.stream.set_read_timeout(wait)?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.conn.receive_eof(Instant::now()),
                Ok(n) => self.conn.receive(Instant::now(), &self.buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.conn.handle_timeout(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_disconnect(&e) => self.conn.receive_eof(Instant::now()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all queued output (vectored writes; partial writes advance the queue).
    pub fn flush(&mut self) -> io::Result<()> {
        while self.conn.queued_bytes() > 0 {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = self.conn.transmit_slices(&mut slices);
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.conn.advance_transmit(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_disconnect(&e) => {
                    // The peer is gone: nothing queued can be delivered any more.
                    let queued = self.conn.queued_bytes();
                    self.conn.advance_transmit(queued);
                    self.conn.receive_eof(Instant::now());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// The outcome of reading an HTTP head: the parsed value and the bytes after the head, or the parse
/// error.
type Head<T, E> = Result<(T, Vec<u8>), E>;

/// Reads until `parse` completes on the bytes so far; returns its value and the bytes after the
/// HTTP head. The outer `Err` is an I/O error.
fn read_head<T, E>(
    stream: &mut TcpStream,
    mut parse: impl FnMut(&[u8]) -> Result<Status<(T, usize)>, E>,
) -> io::Result<Head<T, E>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        match parse(&head) {
            Ok(Status::Partial) => continue,
            Ok(Status::Complete((value, consumed))) => {
                let rest = head.split_off(consumed);
                return Ok(Ok((value, rest)));
            }
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Server side: reads the upgrade request, accepts it with `options` and the first of
/// `extensions` the client's offers allow (or answers the error's HTTP status and returns an
/// error), and returns the WebSocket.
pub fn accept(
    mut stream: TcpStream,
    config: Config,
    options: &AcceptOptions,
    extensions: &[&dyn ExtensionConfig],
) -> io::Result<BlockingWebSocket> {
    stream.set_nodelay(true)?;
    let limits = Limits::default();
    let parsed = read_head(&mut stream, |buf| {
        match handshake::parse_request(buf, &limits) {
            Ok(Status::Complete((req, n))) => {
                let mut options = options.clone();
                let extension =
                    negotiate_server(extensions, &req.extensions()).map(|(value, instance)| {
                        options.extensions = Some(value);
                        instance
                    });
                req.accept(&options)
                    .map(|resp| Status::Complete(((resp, extension), n)))
            }
            Ok(Status::Partial) => Ok(Status::Partial),
            Err(e) => Err(e),
        }
    })?;
    match parsed {
        Ok(((response, extension), leftover)) => {
            stream.write_all(&response)?;
            let mut conn = Connection::server(config, Instant::now());
            if let Some(extension) = extension {
                conn.set_extension(extension);
            }
            Ok(BlockingWebSocket::new(stream, conn, &leftover))
        }
        Err(e) => {
            if let Some(response) = e.response() {
                let _ = stream.write_all(&response);
            }
            Err(io::Error::new(io::ErrorKind::InvalidData, e))
        }
    }
}

/// Client side: connects to a `ws://` URL, offers `extensions`, performs the handshake and
/// returns the WebSocket.
pub fn connect(
    url: &str,
    config: Config,
    extensions: &[&dyn ExtensionConfig],
) -> io::Result<BlockingWebSocket> {
    let invalid = |e: handshake::HandshakeError| io::Error::new(io::ErrorKind::InvalidData, e);
    let (mut request, info) =
        ClientRequest::from_url(url, handshake::generate_key()).map_err(invalid)?;
    let offers: Vec<_> = extensions.iter().flat_map(|e| e.offers()).collect();
    if !offers.is_empty() {
        request = request
            .extension_offer(&handshake::render_extensions(&offers))
            .map_err(invalid)?;
    }
    if info.secure {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "wss:// needs TLS; this example speaks plain ws:// only",
        ));
    }
    let mut stream = TcpStream::connect((info.host.as_str(), info.port))?;
    stream.set_nodelay(true)?;
    stream.write_all(&request.encode())?;
    let limits = Limits::default();
    let parsed = read_head(&mut stream, |buf| {
        handshake::parse_response(buf, &request, &limits)
    })?;
    let (response, leftover) = parsed.map_err(invalid)?;
    let extension = negotiate_client(extensions, &response.extensions)
        .map_err(|e| invalid(handshake::HandshakeError::ExtensionRefused(e.to_string())))?;
    let mut conn = Connection::client(config, Instant::now());
    if let Some(extension) = extension {
        conn.set_extension(extension);
    }
    Ok(BlockingWebSocket::new(stream, conn, &leftover))
}
