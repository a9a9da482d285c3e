//! TLS on rustls: `wss://` clients with the webpki roots, and server accept over a TLS stream.

use std::sync::Arc;

pub use futures_rustls::rustls;
pub use futures_rustls::{TlsAcceptor, TlsConnector, client, server};

use async_net::TcpStream;
use rustls::pki_types::ServerName;
use tidings_io::{Config, Error};

use crate::io::RUNTIME;

/// A client config trusting the Mozilla root certificates shipped in `webpki-roots`, on the ring
/// crypto provider.
///
/// # Errors
///
/// [`Error::Io`] if the provider refuses the default protocol versions (it does not).
pub fn default_client_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS client handshake for `host` over `tcp`, with `config` or the webpki roots.
pub(crate) async fn connect_stream(
    host: &str,
    tcp: TcpStream,
    config: Option<Arc<rustls::ClientConfig>>,
    limits: &Config,
) -> Result<client::TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Url(format!("{host} is not a valid TLS server name")))?;
    let config = match config {
        Some(config) => config,
        None => default_client_config()?,
    };
    let connector = TlsConnector::from(config);
    tidings_io::with_handshake_timeout(&RUNTIME, limits, async {
        Ok(connector.connect(name, tcp).await?)
    })
    .await
}

/// Connects to a `wss://` URL with a TLS client config of your own (a private CA, client
/// certificates, ALPN…).
///
/// # Errors
///
/// As [`connect_with`](crate::connect_with).
pub async fn connect_with_tls(
    url: &str,
    options: &tidings_io::ConnectOptions,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(tidings_io::WebSocket, tidings_io::ServerResponse), Error> {
    let (request, info) = options.request(url)?;
    if !info.secure {
        return Err(Error::Url(format!("{url} is not a wss:// URL")));
    }
    let config = options.get_config();
    let tcp = crate::connect::open_tcp(&info, config).await?;
    let stream = connect_stream(&info.host, tcp, Some(tls), config).await?;
    crate::connect::client_request(stream, &request, options).await
}
