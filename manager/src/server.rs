//! Serving: TLS configuration (mTLS with rustls: the client must present a certificate
//! signed by the CA), the tonic server on a given listener until a shutdown future
//! resolves, and the periodic retention task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ha_proto::v1::agent_link_server::AgentLinkServer;
use ha_proto::v1::control_server::ControlServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::api::{AgentLinkApi, ControlApi};
use crate::core::Core;
use crate::store::Retention;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (TLS config or accept loop).
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// mTLS server config from PEM texts: our certificate and key, and the CA that signs
/// clients. Client certificates are required.
pub fn tls_config(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(TlsIdentity::from_pem(cert_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(false)
}

/// Serves `AgentLink` and `Control` on `listener` (TLS when `tls` is given) until
/// `shutdown` resolves; then ends sessions and watches and drains connections. The
/// caller closes the core (flush) afterwards.
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let c2 = core.clone();
    let signal = async move {
        shutdown.await;
        c2.begin_shutdown();
    };
    builder
        .add_service(AgentLinkServer::new(AgentLinkApi { core: core.clone() }))
        .add_service(ControlServer::new(ControlApi { core }))
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
