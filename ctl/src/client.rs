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

/// Connect to `url`. `request_timeout` bounds each unary call (None for streams).
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
    let channel = ep.connect().await.map_err(|e| CtlError::connect(&e, url))?;
    Ok(Manager {
        client: ControlClient::with_interceptor(channel, crate::trace::Inject),
        url: url.to_string(),
    })
}
