//! TLS for ktwin's listeners (HTTP and MQTT) when a certificate is given: a rustls server
//! configuration from PEM files, and an HTTPS accept loop for an axum router.
//!
//! The crypto provider is `ring`, named explicitly: the workspace links rustls with more than
//! one provider, and relying on a process default would panic at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Where a listener's certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file holds no usable certificate.
    #[error("TLS certificate {}: {source}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The key file holds no usable private key.
    #[error("TLS private key {}: {source}", path.display())]
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (the key does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

impl TlsFiles {
    /// The server configuration: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1` for HTTP listeners
    /// (an MQTT listener ignores it).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = load_chain(&self.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&self.private_key).map_err(|source| {
            TlsError::PrivateKey {
                path: self.private_key.clone(),
                source,
            }
        })?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Config)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// An acceptor for TLS connections.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.server_config()?))
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |source| TlsError::Certificate {
        path: path.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if chain.is_empty() {
        return Err(error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(chain)
}

/// How long a TLS handshake may take before the connection is dropped (a client that never
/// finishes one must not hold a socket forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over HTTPS on `listener` until `stop` is cancelled, then lets connections in
/// flight finish. Each connection's peer address is available to handlers and layers as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accepting an HTTPS connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(tower::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo(peer)),
            app.clone(),
        ));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let builder = Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %err, "HTTPS connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
