//! Client side: connect to a `ws://` or `wss://` URL, or run the handshake over any stream.

use async_net::TcpStream;
use futures_io::{AsyncRead, AsyncWrite};
use tidings_io::core::handshake::UrlInfo;
use tidings_io::{ClientRequest, Config, ConnectOptions, Error, ServerResponse, WebSocket};

use crate::io::{RUNTIME, transport};

/// Connects to `url` (`ws://host[:port]/path?query`, or `wss://` with the `rustls` feature) with
/// the default options.
///
/// # Errors
///
/// See [`connect_with`].
pub async fn connect(url: &str) -> Result<WebSocket, Error> {
    connect_with(url, &ConnectOptions::new())
        .await
        .map(|(ws, _)| ws)
}

/// Connects to `url` with subprotocols, extra headers and a config: resolves the host (DNS),
/// opens TCP with `TCP_NODELAY`, runs TLS for `wss://` (webpki roots) and the handshake. Returns
/// the WebSocket and the server's response (its headers, the chosen subprotocol).
///
/// # Errors
///
/// [`Error::Url`] for an unusable URL (or `wss://` without the `rustls` feature), [`Error::Io`]
/// for DNS, TCP or TLS failures, [`Error::Handshake`] with
/// [`HandshakeError::Rejected`](tidings_io::core::handshake::HandshakeError::Rejected) (status and
/// headers) when the server answers other than 101, [`Error::HandshakeTimeout`].
pub async fn connect_with(
    url: &str,
    options: &ConnectOptions,
) -> Result<(WebSocket, ServerResponse), Error> {
    let (request, info) = options.request(url)?;
    let config = options.get_config();
    let tcp = open_tcp(&info, config).await?;
    if info.secure {
        #[cfg(feature = "rustls")]
        {
            let tls = crate::tls::connect_stream(&info.host, tcp, None, config).await?;
            return client_request(tls, &request, options).await;
        }
        #[cfg(not(feature = "rustls"))]
        return Err(tidings_io::tls_unavailable(&info).unwrap_or(Error::Url(url.into())));
    }
    client_request(tcp, &request, options).await
}

/// Runs the client handshake for `url` over an already connected `stream` (a proxy tunnel, a Unix
/// socket, a TLS stream of your own).
///
/// # Errors
///
/// As [`connect_with`], without the DNS/TCP part.
pub async fn client<S>(
    stream: S,
    url: &str,
    options: &ConnectOptions,
) -> Result<(WebSocket, ServerResponse), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (request, _) = options.request(url)?;
    client_request(stream, &request, options).await
}

pub(crate) async fn client_request<S>(
    stream: S,
    request: &ClientRequest,
    options: &ConnectOptions,
) -> Result<(WebSocket, ServerResponse), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tidings_io::client(transport(stream), &RUNTIME, request, options.get_config()).await
}

/// Resolves the URL's host and opens TCP with `TCP_NODELAY`, bounded by the handshake timeout.
pub(crate) async fn open_tcp(info: &UrlInfo, config: &Config) -> Result<TcpStream, Error> {
    tidings_io::with_handshake_timeout(&RUNTIME, config, async {
        let tcp = TcpStream::connect((info.host.as_str(), info.port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    })
    .await
}
