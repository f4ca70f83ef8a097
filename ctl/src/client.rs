//! Connecting to ha-manager's `Control` service: plaintext (`--insecure`) or mTLS with
//! rustls (tonic `ClientTlsConfig`). Connect failures are "manager unreachable" (exit 3).

use std::path::Path;
use std::time::Duration;

use ha_proto::v1::control_client::ControlClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::Transport;
use crate::error::CtlError;

/// A connected `Control` client and the URL it talks to (for error messages).
#[derive(Debug, Clone)]
pub struct Manager {
    /// The gRPC client.
    pub client: ControlClient<InterceptedService<Channel, crate::trace::Inject>>,
    /// The manager URL.
    pub url: String,
}

impl Manager {
    /// Classify a status returned by this manager.
    pub fn err(&self, status: &tonic::Status) -> CtlError {
        CtlError::from_status(status, &self.url)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path)
        .map_err(|e| CtlError::Usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// `1s`, `1.5s`, `250ms`: a duration as the operator wrote it.
pub fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Connect to `url` within `connect_timeout` (TCP connect and TLS handshake together).
/// `request_timeout` bounds each unary call (None for streams).
pub async fn connect(
    url: &str,
    transport: &Transport,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Manager, CtlError> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| CtlError::Usage(format!("bad manager URL {url:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(t) = request_timeout {
        ep = ep.timeout(t);
    }
    if let Transport::Tls {
        ca,
        identity,
        server_name,
    } = transport
    {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(
                read(cert, "certificate")?,
                read(key, "key")?,
            ));
        }
        if let Some(name) = server_name {
            tls = tls.domain_name(name.clone());
        }
        ep = ep
            .tls_config(tls)
            .map_err(|e| CtlError::Usage(format!("bad TLS setup: {e}")))?;
    }
    // tonic's connect_timeout bounds the TCP connect only: a peer that accepts and never
    // speaks TLS would hold the handshake forever. The whole connect has the deadline.
    let channel = match tokio::time::timeout(connect_timeout, ep.connect()).await {
        Ok(r) => r.map_err(|e| CtlError::connect(&e, url))?,
        Err(_) => {
            return Err(CtlError::Unreachable {
                url: url.to_string(),
                detail: format!(
                    "timed out after {} connecting (TCP connect and TLS handshake)",
                    humantime(connect_timeout)
                ),
            })
        }
    };
    Ok(Manager {
        client: ControlClient::with_interceptor(channel, crate::trace::Inject),
        url: url.to_string(),
    })
}
