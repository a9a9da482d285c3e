//! Server side: accept an upgrade on any smol (`futures-io`) stream.

use futures_io::{AsyncRead, AsyncWrite};
use tidings_io::{AcceptOptions, Config, Error, Rejection, UpgradeRequest, WebSocket};

use crate::io::{RUNTIME, transport};

/// Accepts a WebSocket upgrade on `stream` with the default [`Config`]: any path, no
/// subprotocol, the same-origin policy.
///
/// # Errors
///
/// See [`accept_with`].
pub async fn accept<S>(stream: S) -> Result<WebSocket, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, &Config::default(), |_| Ok(AcceptOptions::new())).await
}

/// Accepts a WebSocket upgrade on `stream`, letting `callback` see the request (path, query,
/// headers, origin, offered subprotocols) and accept it with [`AcceptOptions`] or refuse it with a
/// [`Rejection`] (an HTTP status). The origin policy of `config` runs first; the whole handshake
/// is bounded by the handshake timeout.
///
/// ```no_run
/// # async fn f(stream: smol::net::TcpStream) -> Result<(), tidings_smol::Error> {
/// use tidings_smol::{AcceptOptions, Config, Rejection};
/// let ws = tidings_smol::accept_with(stream, &Config::default(), |req| {
///     if req.path() != "/chat" {
///         return Err(Rejection::new(404));
///     }
///     let chat = req.protocols().contains(&"chat");
///     Ok(if chat { AcceptOptions::new().protocol("chat") } else { AcceptOptions::new() })
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Handshake`] for an invalid request (already answered with its status: 400, 403, 405,
/// 426, 431), [`Error::Refused`] when `callback` refused, [`Error::HandshakeTimeout`],
/// [`Error::Io`].
pub async fn accept_with<S, F>(stream: S, config: &Config, callback: F) -> Result<WebSocket, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest<'_>) -> Result<AcceptOptions, Rejection>,
{
    tidings_io::accept_with(transport(stream), &RUNTIME, config, callback).await
}

/// A WebSocket on a stream whose handshake was done elsewhere (an HTTP server's upgrade), with
/// what was [`Agreed`](tidings_io::Agreed): from [`tidings_io::negotiate`] (role, subprotocol,
/// permessage-deflate, and any bytes the server read past the head), or
/// `Agreed::new(Role::Server, protocol)` for a handshake of your own.
pub fn from_upgraded<S>(stream: S, config: &Config, agreed: tidings_io::Agreed) -> WebSocket
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tidings_io::from_transport(transport(stream), &RUNTIME, config, agreed)
}
