//! HTTP_GET and SSL_GET: the request keepalived sends, a bounded read of the reply
//! (head capped by [`reply::MAX_HEAD`], body by [`reply::MAX_BODY`]; the caller's
//! deadline bounds the time), the MD5 of the body, and the TLS client.
//!
//! As keepalived, SSL_GET does not verify the server's certificate (it checks that the
//! service answers, not who it is); signatures in the handshake are still verified.

use std::io;
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::reply::{self, BodyDecoder, ReplyError, StatusLine};
use super::runner::Outcome;
use super::spec::{HttpProbe, HttpProtocol, Target};

/// Why a fetch failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Connect, read or write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(io::Error),
    /// The reply is malformed or too large.
    #[error("{0}")]
    Reply(#[from] ReplyError),
}

/// What a fetch returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The status line.
    pub status: StatusLine,
    /// Lowercase hex MD5 of the decoded body (when asked for).
    pub digest: Option<String>,
    /// Decoded body length (when the body was read).
    pub body_len: usize,
}

/// The request keepalived's checker sends (`User-Agent: KeepAliveClient`).
pub fn request(path: &str, host: &str, protocol: HttpProtocol) -> Vec<u8> {
    let (version, close) = match protocol {
        HttpProtocol::Http10 => ("1.0", ""),
        HttpProtocol::Http10Close => ("1.0", "Connection: close\r\n"),
        HttpProtocol::Http11 => ("1.1", "Connection: close\r\n"),
    };
    format!(
        "GET {path} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n{close}\r\n"
    )
    .into_bytes()
}

/// Send `req`, read the reply head and, with `want_body`, the body into an MD5. Reads
/// are bounded in size; the caller bounds the time.
pub async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    want_body: bool,
) -> Result<Fetched, FetchError> {
    s.write_all(req).await?;
    s.flush().await?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (head, at) = loop {
        if let Some(h) = reply::parse_head(&buf)? {
            break h;
        }
        let n = read_some(s, &mut chunk).await?;
        if n == 0 {
            return Err(ReplyError::Truncated.into());
        }
        // Never hold more than the head cap plus one read.
        let room = reply::MAX_HEAD.saturating_sub(buf.len()).max(1);
        buf.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
    };
    if !want_body {
        return Ok(Fetched {
            status: head.status,
            digest: None,
            body_len: 0,
        });
    }
    let mut dec = BodyDecoder::new(head.framing)?;
    let mut md5 = Md5::new();
    let mut out = Vec::with_capacity(4096);
    let mut len = 0usize;
    dec.feed(buf.get(at..).unwrap_or_default(), &mut out)?;
    loop {
        md5.update(&out);
        len += out.len();
        out.clear();
        if dec.is_done() {
            break;
        }
        let n = read_some(s, &mut chunk).await?;
        if n == 0 {
            dec.finish()?;
            break;
        }
        dec.feed(chunk.get(..n).unwrap_or_default(), &mut out)?;
    }
    Ok(Fetched {
        status: head.status,
        digest: Some(hex(&md5.finalize())),
        body_len: len,
    })
}

/// A read where a TLS peer closing without close_notify counts as end of stream (many
/// servers do that after an HTTP/1.0 reply; keepalived accepts it too).
async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    match s.read(buf).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Certificate verifier that accepts any certificate but checks handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The shared client configuration (ring provider, TLS 1.2 and 1.3).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CFG: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    CFG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    })
    .clone()
}

/// Open a TLS session over `tcp` with SNI `sni` (an IP address sends no SNI).
pub async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: S,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<S>, FetchError> {
    let cfg = tls_config().map_err(|e| FetchError::Tls(io::Error::other(e)))?;
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| FetchError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(FetchError::Tls)
}

/// Connect (TLS for SSL_GET) and fetch one url.
pub async fn fetch_url(
    t: &Target,
    tls: bool,
    sni: &str,
    req: &[u8],
    want_body: bool,
) -> Result<Fetched, FetchError> {
    let tcp = super::tcp::connect(t).await?;
    if tls {
        let mut s = tls_connect(tcp, sni).await?;
        fetch(&mut s, req, want_body).await
    } else {
        let mut s = tcp;
        fetch(&mut s, req, want_body).await
    }
}

/// HTTP_GET / SSL_GET: every url must answer an accepted status and, when set, the
/// digest.
pub async fn probe(t: &Target, p: &HttpProbe) -> Outcome {
    let mut last = String::new();
    for u in &p.urls {
        let req = request(&u.path, &u.host, p.protocol);
        let f = match fetch_url(t, p.tls, &u.sni, &req, u.digest.is_some()).await {
            Ok(f) => f,
            Err(e) => return Outcome::down(format!("{}: {e}", u.path)),
        };
        if let Some(codes) = &u.status {
            if !codes.contains(f.status.code) {
                return Outcome::down(format!("{}: status {}", u.path, f.status.code));
            }
        }
        if let (Some(want), Some(got)) = (&u.digest, &f.digest) {
            if want != got {
                return Outcome::down(format!("{}: digest mismatch ({got})", u.path));
            }
        }
        last = format!("{}: status {}", u.path, f.status.code);
    }
    Outcome::up(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            request("/x", "www.example.com", HttpProtocol::Http10),
            b"GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: www.example.com\r\n\r\n"
        );
        assert!(String::from_utf8(request("/", "h", HttpProtocol::Http11))
            .unwrap()
            .contains("HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn fetch_over_a_duplex() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let server = tokio::spawn(async move {
            let mut req = [0u8; 128];
            let _ = b.read(&mut req).await.unwrap();
            b.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc")
                .await
                .unwrap();
        });
        let f = fetch(&mut a, b"GET / HTTP/1.0\r\n\r\n", true)
            .await
            .unwrap();
        assert_eq!(f.status.code, 200);
        // md5("abc")
        assert_eq!(
            f.digest.as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        server.await.unwrap();
    }
}
