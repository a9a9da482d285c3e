//! A blocking driver for [`tidings_core::Connection`] over `std::net::TcpStream`.
//!
//! This is all an I/O layer has to do for the sans-IO core:
//!
//! 1. run the handshake: read until [`ServerHandshake::parse`] (server) or
//!    [`ClientHandshake::parse_response`] (client) completes, write the answer, and turn what was
//!    [`Agreed`](handshake::Agreed) into the connection (bytes that arrived after the HTTP head are
//!    already fed to it);
//! 2. loop: take events with `poll_event`; when there are none, write the queued output, then read
//!    with a timeout that ends at `poll_timeout` — bytes go to `receive`, EOF to `receive_eof`, an
//!    expired deadline to `handle_timeout`;
//! 3. once `should_close_transport` says so, flush and close the socket.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use tidings_core::handshake::{
    self, AcceptOptions, ClientHandshake, ClientRequest, HandshakeConfig, HttpResponse,
    ServerHandshake, Status,
};
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
    /// Wraps an upgraded stream and its connection.
    pub fn new(stream: TcpStream, conn: Connection) -> Self {
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

/// Reads until `parse` completes on the bytes so far (it borrows them) and returns its value.
/// The outer `Err` is an I/O error.
fn read_head<T, E>(
    stream: &mut TcpStream,
    mut parse: impl FnMut(&[u8]) -> Result<Status<T>, E>,
) -> io::Result<Result<T, E>> {
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
            Ok(Status::Complete(value)) => return Ok(Ok(value)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

fn invalid(e: handshake::HandshakeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Server side: reads the upgrade request, accepts it with `options` and the extensions of
/// `handshake` the client's offers allow (or answers the error's HTTP status and returns an
/// error), and returns the WebSocket.
pub fn accept(
    mut stream: TcpStream,
    config: Config,
    options: &AcceptOptions,
    handshake: &HandshakeConfig,
) -> io::Result<BlockingWebSocket> {
    stream.set_nodelay(true)?;
    let parsed = read_head(&mut stream, |buf| {
        Ok::<_, handshake::HandshakeError>(match ServerHandshake::parse(buf, handshake)? {
            Status::Partial => Status::Partial,
            // The request was valid; `accept` fails only on options it does not allow.
            Status::Complete(hs) => {
                Status::Complete(hs.accept(options.clone()).map_err(|e| (e, 500)))
            }
        })
    })?;
    let answer = match parsed {
        Ok(Ok((response, agreed))) => {
            stream.write_all(&response.encode())?;
            return Ok(BlockingWebSocket::new(
                stream,
                agreed.into_connection(config, Instant::now()),
            ));
        }
        Ok(Err((e, status))) => (HttpResponse::text(status, "invalid upgrade options"), e),
        Err(e) => (
            e.http_response().unwrap_or_else(|| HttpResponse::new(400)),
            e,
        ),
    };
    let _ = stream.write_all(&answer.0.encode());
    Err(invalid(answer.1))
}

/// Client side: connects to a `ws://` URL, offers the extensions of `handshake`, performs the
/// handshake and returns the WebSocket.
pub fn connect(
    url: &str,
    config: Config,
    handshake: &HandshakeConfig,
) -> io::Result<BlockingWebSocket> {
    let (request, info) =
        ClientRequest::from_url(url, handshake::generate_key()).map_err(invalid)?;
    if info.secure {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "wss:// needs TLS; this example speaks plain ws:// only",
        ));
    }
    let hs = ClientHandshake::new(request, handshake).map_err(invalid)?;
    let mut stream = TcpStream::connect((info.host.as_str(), info.port))?;
    stream.set_nodelay(true)?;
    stream.write_all(&hs.encode())?;
    let (_response, agreed) =
        read_head(&mut stream, |buf| hs.parse_response(buf))?.map_err(invalid)?;
    Ok(BlockingWebSocket::new(
        stream,
        agreed.into_connection(config, Instant::now()),
    ))
}
