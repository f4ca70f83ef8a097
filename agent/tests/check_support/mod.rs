//! Helpers shared by the checker tests: checker specs from keepalived.conf text, and
//! real servers on 127.0.0.1 (HTTP, TLS, scripted hostile replies) that record what they
//! received.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ha_agent::lb::check::CheckerSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// Build checker 0 of the only real server `127.0.0.1 PORT` from a checker block.
pub fn spec(port: u16, vs_extra: &str, checker: &str) -> CheckerSpec {
    spec_rs(port, vs_extra, "", checker)
}

/// Same, with statements inside the real_server block too.
pub fn spec_rs(port: u16, vs_extra: &str, rs_extra: &str, checker: &str) -> CheckerSpec {
    try_spec(port, vs_extra, rs_extra, checker).unwrap()
}

/// [`CheckerSpec::from_config`]'s verdict on a checker block (the config itself must
/// parse), the refusal as the log shows it.
pub fn try_spec(
    port: u16,
    vs_extra: &str,
    rs_extra: &str,
    checker: &str,
) -> Result<CheckerSpec, String> {
    let text = format!(
        "virtual_server 192.0.2.10 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n protocol TCP\n {vs_extra}\n real_server 127.0.0.1 {port} {{\n weight 1\n {rs_extra}\n {checker}\n }}\n}}\n"
    );
    let loaded = match ha_agent::config::parse_str(Path::new("check.conf"), &text) {
        Ok(l) => l,
        Err(e) => panic!("config: {e:?}\n{text}"),
    };
    let vs = &loaded.config.virtual_servers[0];
    let rs = &vs.real_servers[0];
    CheckerSpec::from_config("192.0.2.10:80/TCP", vs, rs, 0, &rs.checkers[0])
        .map_err(|e| e.to_string())
}

/// What a test server does with one connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Write these bytes and close.
    Reply(Vec<u8>),
    /// Write these bytes one at a time, this far apart (slowloris).
    Trickle(Vec<u8>, Duration),
    /// Accept and say nothing, keeping the connection open.
    Silent,
    /// Write these bytes at once, before reading anything, and close.
    Immediate(Vec<u8>),
}

/// A test server: its port and the requests it received.
pub struct Server {
    /// Listening port on 127.0.0.1.
    pub port: u16,
    /// Every request head received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// TLS SNI names received (TLS servers).
    pub sni: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    /// Number of requests so far.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A plain HTTP response.
pub fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {status}\r\nServer: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn behave<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, b: Behaviour) {
    match b {
        Behaviour::Reply(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Behaviour::Trickle(bytes, gap) => {
            for c in bytes {
                if s.write_all(&[c]).await.is_err() {
                    return;
                }
                let _ = s.flush().await;
                tokio::time::sleep(gap).await;
            }
        }
        Behaviour::Silent => tokio::time::sleep(Duration::from_secs(3600)).await,
        Behaviour::Immediate(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
    }
}

/// An HTTP server: connection number `i` (from 0) is answered by `f(i)`.
pub async fn http_server<F>(f: F) -> Server
where
    F: Fn(usize) -> Behaviour + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    let f = Arc::new(f);
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok((mut s, _)) = l.accept().await {
            let b = f(i);
            i += 1;
            let reqs = reqs.clone();
            tokio::spawn(async move {
                if !matches!(b, Behaviour::Immediate(_)) {
                    let r = read_request(&mut s).await;
                    reqs.lock().unwrap().push(r);
                }
                behave(&mut s, b).await;
            });
        }
    });
    Server {
        port,
        requests,
        sni: Arc::new(Mutex::new(Vec::new())),
    }
}

/// A TLS server with a fresh self-signed certificate for `www.example.com`.
pub async fn tls_server<F>(f: F) -> Server
where
    F: Fn(usize) -> Behaviour + Send + Sync + 'static,
{
    let ck = rcgen::generate_simple_self_signed(vec!["www.example.com".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let sni = Arc::new(Mutex::new(Vec::new()));
    let (reqs, snis) = (requests.clone(), sni.clone());
    let f = Arc::new(f);
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok((s, _)) = l.accept().await {
            let b = f(i);
            i += 1;
            let (reqs, snis, acceptor) = (reqs.clone(), snis.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(mut t) = acceptor.accept(s).await else {
                    return;
                };
                snis.lock()
                    .unwrap()
                    .push(t.get_ref().1.server_name().map(str::to_owned));
                let r = read_request(&mut t).await;
                reqs.lock().unwrap().push(r);
                behave(&mut t, b).await;
            });
        }
    });
    Server {
        port,
        requests,
        sni,
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// MD5 of `data` as `md5sum` prints it.
pub fn md5sum(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}
