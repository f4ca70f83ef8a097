//! `ha-agent genhash`: keepalived's genhash. Fetch a URL and return the MD5 of its body
//! as lowercase hex, the value an HTTP_GET / SSL_GET `digest` expects (keepalived's
//! `genhash -s HOST -p PORT -u PATH` prints the same line without `-v`).
//!
//! Accepted forms (arguments after the subcommand name):
//! - `http://HOST[:PORT]/PATH` or `https://HOST[:PORT]/PATH` (IPv6 as `[2001:db8::1]`);
//! - keepalived's flags: `-s|--server HOST -p|--port PORT -u|--url PATH [-S|--use-ssl]
//!   [-V|--use-virtualhost VHOST] [-I|--use-sni] [-t|--timeout SECS]
//!   [-P|--protocol 1.0|1.0c|1.1] [-v|--verbose]`.
//!
//! The reply is read with the checker's bounds (head and body size, and the timeout,
//! default 5 s). The status code is not checked, as in keepalived.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::lb::check::http::{fetch_url, request, FetchError};
use crate::lb::check::spec::{parse_secs, HttpProtocol, Target};

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenhashArgs {
    /// Server name or address.
    pub server: String,
    /// Port.
    pub port: u16,
    /// Request target.
    pub path: String,
    /// Use TLS.
    pub tls: bool,
    /// `Host:` header (and SNI) instead of `server:port`.
    pub vhost: Option<String>,
    /// Overall deadline.
    pub timeout: Duration,
    /// Request version.
    pub protocol: HttpProtocol,
}

/// Why genhash could not give a digest. The texts are what `ha-agent genhash` prints.
#[derive(Debug, thiserror::Error)]
pub enum GenhashError {
    /// The one argument is no http:// or https:// URL.
    #[error("'{0}' is not an http:// or https:// URL")]
    NotHttpUrl(String),
    /// `[` of an IPv6 host without its `]`.
    #[error("unclosed '[' in '{0}'")]
    UnclosedBracket(String),
    /// Something between `]` and the path that is no `:PORT`.
    #[error("bad authority in '{0}'")]
    BadAuthority(String),
    /// The URL names no host.
    #[error("no host in '{0}'")]
    NoHost(String),
    /// A port that is not 1-65535.
    #[error("bad port '{0}'")]
    BadPort(String),
    /// A flag given without its value.
    #[error("{0} needs a value; {USAGE}")]
    NoValue(String),
    /// `-t` that is no positive number of seconds.
    #[error("bad timeout '{0}'")]
    BadTimeout(String),
    /// `-P` other than 1.0, 1.0c, 1.1.
    #[error("bad protocol '{0}'")]
    BadProtocol(String),
    /// An argument genhash does not know.
    #[error("unexpected argument '{0}'; {USAGE}")]
    Unexpected(String),
    /// A required flag is missing (`what` names it).
    #[error("no {what}; {USAGE}")]
    Missing {
        /// "server (-s)", "port (-p)", "url path (-u)".
        what: &'static str,
    },
    /// A path or virtual host unfit for a request line or header.
    #[error("{what} '{text}' is empty or has spaces or control characters")]
    BadText {
        /// "path" or "virtualhost".
        what: &'static str,
        /// The text, escaped.
        text: String,
    },
    /// The server name does not resolve.
    #[error("resolve {server}: {reason}")]
    Resolve {
        /// The name.
        server: String,
        /// The resolver's error, or "no address".
        reason: String,
    },
    /// The fetch failed.
    #[error("{addr}: {source}")]
    Fetch {
        /// The address connected to.
        addr: SocketAddr,
        /// What went wrong.
        source: FetchError,
    },
    /// The reply had no body to digest.
    #[error("no body digest")]
    NoDigest,
    /// Nothing within the timeout.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
}

/// Usage text for errors.
pub const USAGE: &str = "usage: ha-agent genhash URL | -s SERVER -p PORT -u PATH [-S] [-V VHOST] [-I] [-t SECS] [-P 1.0|1.0c|1.1]";

/// Parse `http[s]://host[:port]/path`.
fn parse_url(url: &str) -> Result<GenhashArgs, GenhashError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(GenhashError::NotHttpUrl(url.to_owned()));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (server, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| GenhashError::UnclosedBracket(url.to_owned()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(GenhashError::BadAuthority(url.to_owned())),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), parse_port(p)?),
            None => (authority.to_owned(), default_port),
        }
    };
    if server.is_empty() {
        return Err(GenhashError::NoHost(url.to_owned()));
    }
    Ok(GenhashArgs {
        server,
        port,
        path: path.to_owned(),
        tls,
        vhost: None,
        timeout: Duration::from_secs(5),
        protocol: HttpProtocol::Http10,
    })
}

fn parse_port(p: &str) -> Result<u16, GenhashError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(GenhashError::BadPort(p.to_owned())),
    }
}

/// Parse the arguments (pure).
pub fn parse_args(args: &[String]) -> Result<GenhashArgs, GenhashError> {
    if let [url] = args {
        if url.contains("://") {
            return parse_url(url);
        }
    }
    let mut server = None;
    let mut port = None;
    let mut path = None;
    let mut tls = false;
    let mut vhost = None;
    let mut timeout = Duration::from_secs(5);
    let mut protocol = HttpProtocol::Http10;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| GenhashError::NoValue(name.to_owned()))
        };
        match a.as_str() {
            "-s" | "--server" => server = Some(value(a)?),
            "-p" | "--port" => port = Some(parse_port(&value(a)?)?),
            "-u" | "--url" => path = Some(value(a)?),
            "-S" | "--use-ssl" => tls = true,
            "-V" | "--use-virtualhost" => vhost = Some(value(a)?),
            "-I" | "--use-sni" | "-v" | "--verbose" => {}
            "-t" | "--timeout" => {
                let v = value(a)?;
                timeout = parse_secs(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| GenhashError::BadTimeout(v.clone()))?;
            }
            "-P" | "--protocol" => {
                protocol = match value(a)?.as_str() {
                    "1.0" => HttpProtocol::Http10,
                    "1.0c" | "1.0C" => HttpProtocol::Http10Close,
                    "1.1" => HttpProtocol::Http11,
                    p => return Err(GenhashError::BadProtocol(p.to_owned())),
                }
            }
            other => return Err(GenhashError::Unexpected(other.to_owned())),
        }
    }
    let missing = |what| GenhashError::Missing { what };
    let server = server.ok_or_else(|| missing("server (-s)"))?;
    let port = port.ok_or_else(|| missing("port (-p)"))?;
    let path = path.ok_or_else(|| missing("url path (-u)"))?;
    Ok(GenhashArgs {
        server,
        port,
        path,
        tls,
        vhost,
        timeout,
        protocol,
    })
}

fn check_text(what: &'static str, s: &str) -> Result<(), GenhashError> {
    if s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(GenhashError::BadText {
            what,
            text: s.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// Fetch as described and return the body's MD5 as lowercase hex.
pub async fn fetch_digest(a: &GenhashArgs) -> Result<String, GenhashError> {
    check_text("path", &a.path)?;
    if let Some(v) = &a.vhost {
        check_text("virtualhost", v)?;
    }
    let work = async {
        let addr: SocketAddr = match a.server.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, a.port),
            Err(_) => tokio::net::lookup_host((a.server.as_str(), a.port))
                .await
                .map_err(|e| GenhashError::Resolve {
                    server: a.server.clone(),
                    reason: e.to_string(),
                })?
                .next()
                .ok_or_else(|| GenhashError::Resolve {
                    server: a.server.clone(),
                    reason: "no address".into(),
                })?,
        };
        let host = match &a.vhost {
            Some(v) => v.clone(),
            None if a.server.contains(':') => format!("[{}]:{}", a.server, a.port),
            None => format!("{}:{}", a.server, a.port),
        };
        let sni = a.vhost.clone().unwrap_or_else(|| a.server.clone());
        let req = request(&a.path, &host, a.protocol);
        let t = Target {
            connect: addr,
            bind: None,
        };
        let f = fetch_url(&t, a.tls, &sni, &req, true)
            .await
            .map_err(|source| GenhashError::Fetch { addr, source })?;
        f.digest.ok_or(GenhashError::NoDigest)
    };
    tokio::time::timeout(a.timeout, work)
        .await
        .map_err(|_| GenhashError::Timeout(a.timeout))?
}

/// `ha-agent genhash ARGS`: the digest line keepalived's genhash prints (without `-v`).
pub async fn genhash(args: &[String]) -> Result<String, GenhashError> {
    let a = parse_args(args)?;
    fetch_digest(&a).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn urls() {
        let a = parse_args(&v(&["http://192.0.2.1:8080/x/y?z"])).unwrap();
        assert_eq!(
            (a.server.as_str(), a.port, a.path.as_str(), a.tls),
            ("192.0.2.1", 8080, "/x/y?z", false)
        );
        let a = parse_args(&v(&["https://[2001:db8::1]/"])).unwrap();
        assert_eq!(
            (a.server.as_str(), a.port, a.tls),
            ("2001:db8::1", 443, true)
        );
        let a = parse_args(&v(&["http://www.example.com"])).unwrap();
        assert_eq!((a.port, a.path.as_str()), (80, "/"));
        assert!(parse_args(&v(&["ftp://x/"])).is_err());
        assert!(parse_args(&v(&["http://x:0/"])).is_err());
        assert!(parse_args(&v(&["http://:80/"])).is_err());
    }

    #[test]
    fn flags() {
        let a = parse_args(&v(&[
            "-s",
            "192.0.2.1",
            "-p",
            "443",
            "-u",
            "/h",
            "-S",
            "-V",
            "www.example.com",
            "-t",
            "2",
        ]))
        .unwrap();
        assert_eq!(a.vhost.as_deref(), Some("www.example.com"));
        assert!(a.tls);
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert!(parse_args(&v(&["-s", "192.0.2.1", "-p", "80"])).is_err());
        assert!(parse_args(&v(&["-s"])).is_err());
        assert!(parse_args(&v(&["--bogus"])).is_err());
    }
}
