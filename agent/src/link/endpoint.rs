//! The gRPC channel to the manager: URL checks, TLS (rustls through tonic, CA plus client
//! identity, server name from the URL host) and HTTP/2 keepalive to notice a dead peer.
//!
//! `https://` needs TLS files and `http://` refuses them: tonic would otherwise speak
//! plaintext to an `http://` URL even with a TLS config. Whether plaintext is allowed at
//! all (`--insecure`) is the caller's decision.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::error::LinkError;

/// PEM files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) the manager's certificate must chain to.
    pub ca: PathBuf,
    /// This agent's certificate chain.
    pub cert: PathBuf,
    /// This agent's private key.
    pub key: PathBuf,
}

/// Time allowed for TCP + TLS + HTTP/2 setup.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 ping interval while connected.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// A ping unanswered this long closes the connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Check the URL against the TLS choice and read the TLS files (fail fast at start).
pub fn check(url: &str, tls: Option<&TlsFiles>) -> Result<(), LinkError> {
    endpoint(url, tls).map(|_| ())
}

/// Connect to the manager (TCP, TLS, HTTP/2), within [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str, tls: Option<&TlsFiles>) -> Result<Channel, LinkError> {
    Ok(endpoint(url, tls)?.connect().await?)
}

fn endpoint(url: &str, tls: Option<&TlsFiles>) -> Result<Endpoint, LinkError> {
    let bad = |reason: &str| LinkError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let uri = ep.uri().clone();
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    match (uri.scheme_str(), tls) {
        (Some("http"), None) => Ok(ep),
        (Some("http"), Some(_)) => Err(bad("TLS files given: use https://")),
        (Some("https"), None) => Err(bad("https:// needs TLS files (ca, cert, key)")),
        (Some("https"), Some(files)) => {
            let read = |p: &Path| {
                std::fs::read(p).map_err(|source| LinkError::Io {
                    path: p.to_path_buf(),
                    source,
                })
            };
            // An IPv6 host comes bracketed in the URI; rustls wants it bare.
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let cfg = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&files.ca)?))
                .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
                .domain_name(name);
            Ok(ep.tls_config(cfg)?)
        }
        _ => Err(bad("scheme must be http:// or https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_and_tls_must_agree() {
        assert!(check("http://192.0.2.1:7000", None).is_ok());
        assert!(check("http://[2001:db8::1]:7000", None).is_ok());
        let e = check("https://192.0.2.1:7000", None).unwrap_err();
        assert!(e.to_string().contains("needs TLS files"), "{e}");
        let files = TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/agent.pem".into(),
            key: "/nonexistent/agent.key".into(),
        };
        let e = check("http://192.0.2.1:7000", Some(&files)).unwrap_err();
        assert!(e.to_string().contains("use https://"), "{e}");
        let e = check("https://192.0.2.1:7000", Some(&files)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(check("ftp://192.0.2.1", None).is_err());
        assert!(check("not a url", None).is_err());
    }
}
