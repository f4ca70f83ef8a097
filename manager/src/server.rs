//! Serving: TLS configuration (mTLS with rustls: the client must present a certificate
//! signed by the CA), the tonic server on a given listener behind connection admission
//! (`listen`: handshake deadline, per-source and total bounds) until a shutdown future
//! resolves, and the periodic retention task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ha_proto::v1::agent_link_server::AgentLinkServer;
use ha_proto::v1::control_server::ControlServer;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::transport::Server;

use crate::api::{AgentLinkApi, ControlApi};
use crate::core::Core;
use crate::listen::{self, AdmissionOptions};
use crate::store::Retention;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (accept loop, HTTP/2).
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS material is unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// The reflection service could not read the descriptor sets.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The server's TLS configuration (mTLS: a client certificate signed by the CA is
/// required).
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// mTLS server config from PEM texts: our certificate and key, and the CA that signs
/// clients. Client certificates are required; ALPN offers h2.
pub fn tls_config(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, ServeError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        let c = c.map_err(|e| bad("CA certificate", &e))?;
        roots.add(c).map_err(|e| bad("CA certificate", &e))?;
    }
    if roots.is_empty() {
        return Err(ServeError::Tls("CA file holds no certificate".into()));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("server certificate", &e))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(
            "server certificate file holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("server key", &e))?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .map_err(|e| bad("client verifier", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad("server certificate and key", &e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConfig(Arc::new(cfg)))
}

/// Serves `AgentLink`, `Control`, gRPC health and reflection (health.rs) on `listener`
/// (TLS when `tls` is given) until
/// `shutdown` resolves, with admission limits from the process's descriptor limit and a
/// 10 s handshake deadline; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let opts = AdmissionOptions::for_fd_limit(
        crate::fdlimit::nofile_soft().unwrap_or(1024),
        Duration::from_secs(10),
    );
    serve_with(listener, core, tls, opts, shutdown).await
}

/// Serves `AgentLink` and `Control` on `listener` (TLS when `tls` is given), admitting
/// connections as `admission` says (see `listen`), until `shutdown` resolves; then ends
/// sessions and watches and drains connections. The caller closes the core (flush)
/// afterwards.
pub async fn serve_with(
    listener: TcpListener,
    core: Arc<Core>,
    tls: Option<TlsConfig>,
    admission: AdmissionOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let c2 = core.clone();
    let signal = async move {
        shutdown.await;
        c2.begin_shutdown();
    };
    match tls {
        Some(TlsConfig(cfg)) => {
            let incoming = listen::tls_incoming(listener, TlsAcceptor::from(cfg), admission);
            run(core, incoming, signal).await
        }
        None => run(core, listen::plain_incoming(listener, admission), signal).await,
    }
}

async fn run<IO>(
    core: Arc<Core>,
    incoming: listen::Incoming<IO>,
    signal: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    let health = crate::health::health_service(core.clone()).await;
    let reflection = crate::health::reflection_service()?;
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(AgentLinkServer::new(AgentLinkApi { core: core.clone() }))
        .add_service(ControlServer::new(ControlApi { core }))
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, signal)
        .await?;
    Ok(())
}

/// Runs retention every `every` until the core shuts down.
pub fn spawn_retention(
    core: Arc<Core>,
    policy: Retention,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if policy.max_age_ms.is_none() && policy.max_bytes.is_none() {
            return;
        }
        let mut stop = core.shutdown_signal();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let store = core.store().clone();
            let now = crate::now_ms();
            match tokio::task::spawn_blocking(move || store.retain(&policy, now)).await {
                Ok(Ok(r)) if r.deleted > 0 => {
                    tracing::info!(
                        deleted = r.deleted,
                        bytes_left = r.bytes_left,
                        "history retention"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "history retention failed"),
                Err(e) => tracing::error!(error = %e, "history retention task failed"),
            }
        }
    })
}
