//! [`CheckerSpec`]: one checker of one real server, resolved from the config with
//! keepalived's defaults and inheritance (checker, then `real_server`, then
//! `virtual_server`, then the built-in default).
//!
//! Only pure config handling lives here; the probes are in the sibling modules and the
//! loop in `runner.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::model::{
    Checker, CheckerKind, GlobalDefs, Node, RealServer, ScriptUser, VirtualServer,
};
use crate::script::{ScriptDefaults, ScriptSpec};

use super::reply::StatusCodes;
use super::RsKey;

/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's `delay_before_retry` default.
pub const DEFAULT_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);
/// keepalived's `retry` default (MISC_CHECK: 0).
pub const DEFAULT_RETRY: u32 = 1;

/// Where a probe connects, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `connect_ip` (default: the real server) and `connect_port` (default: its port).
    pub connect: SocketAddr,
    /// `bindto` / `bind_port`, if either is set.
    pub bind: Option<SocketAddr>,
}

/// `http_protocol` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    /// `1.0` (keepalived's default): `GET ... HTTP/1.0`.
    Http10,
    /// `1.0c`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// `1.1`: HTTP/1.1 with `Connection: close`.
    Http11,
}

/// One `url { }` block, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSpec {
    /// Request target (`path`, default `/`).
    pub path: String,
    /// Expected MD5 of the body, lowercase hex.
    pub digest: Option<String>,
    /// Accepted status codes (`None`: any, when only `digest` is given).
    pub status: Option<StatusCodes>,
    /// `Host:` header value and SNI name (`virtualhost`, else `ip:port`).
    pub host: String,
    /// SNI server name (virtualhost, else the connect address).
    pub sni: String,
}

/// HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// SSL_GET.
    pub tls: bool,
    /// Every url must pass.
    pub urls: Vec<UrlSpec>,
    /// Request version.
    pub protocol: HttpProtocol,
}

/// MISC_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscProbe {
    /// The script (run through [`crate::script::run`]).
    pub script: ScriptSpec,
    /// `misc_timeout` (default: the delay_loop).
    pub timeout: Duration,
    /// `misc_dynamic`: exit 2..=255 sets weight = code - 2.
    pub dynamic: bool,
}

/// DNS_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProbe {
    /// Query type code (`type`, default SOA).
    pub qtype: u16,
    /// Query name (`name`, default the root `.`).
    pub name: String,
}

/// UDP_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpProbe {
    /// `payload` (hex in the config).
    pub payload: Vec<u8>,
    /// `require_reply [HEX]`: a reply is needed, starting with these bytes.
    pub require_reply: Option<Vec<u8>>,
    /// `min_reply_length`.
    pub min_reply_length: usize,
    /// `max_reply_length`.
    pub max_reply_length: usize,
}

/// What a checker does each round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP_CHECK: a TCP connect.
    Tcp,
    /// HTTP_GET / SSL_GET.
    Http(HttpProbe),
    /// MISC_CHECK.
    Misc(MiscProbe),
    /// DNS_CHECK.
    Dns(DnsProbe),
    /// PING_CHECK: ICMP / ICMPv6 echo.
    Ping,
    /// UDP_CHECK.
    Udp(UdpProbe),
}

/// One checker, ready to [`super::runner::spawn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerSpec {
    /// The real server checked.
    pub rs: RsKey,
    /// Index in the real server's checker list.
    pub index: usize,
    /// Kind (for events and logs).
    pub kind: CheckerKind,
    /// Where to connect.
    pub target: Target,
    /// Deadline of one attempt (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Extra attempts before a server that is up is declared down (`retry` / `nb_get_retry`).
    pub retry: u32,
    /// Pause between attempts (`delay_before_retry`).
    pub delay_before_retry: Duration,
    /// Random delay in `0..=warmup` before the first check (`warmup`; default: the
    /// `delay_loop`, as keepalived).
    pub warmup: Duration,
    /// Time between rounds (`delay_loop`).
    pub delay_loop: Duration,
    /// `alpha`: the server starts down (else up, as keepalived assumes).
    pub alpha: bool,
    /// The probe.
    pub probe: Probe,
}

/// keepalived's keyword for a checker kind.
pub fn kind_name(k: CheckerKind) -> &'static str {
    match k {
        CheckerKind::HttpGet => "HTTP_GET",
        CheckerKind::SslGet => "SSL_GET",
        CheckerKind::Tcp => "TCP_CHECK",
        CheckerKind::Smtp => "SMTP_CHECK",
        CheckerKind::Dns => "DNS_CHECK",
        CheckerKind::Misc => "MISC_CHECK",
        CheckerKind::Bfd => "BFD_CHECK",
        CheckerKind::Udp => "UDP_CHECK",
        CheckerKind::Ping => "PING_CHECK",
        CheckerKind::File => "FILE_CHECK",
    }
}

/// The last statement named `name` among `nodes`.
fn find<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Node> {
    nodes.iter().rev().find(|n| n.name == name)
}

fn at(n: &Node) -> String {
    format!("{}:{}", n.loc.file.display(), n.loc.line)
}

/// Seconds with up to 6 decimals (keepalived accepts fractional delays).
pub fn parse_secs(s: &str) -> Option<Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || int.len() > 9
        || frac.len() > 6
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let micros: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// Why a checker block cannot run; every message starts with the file:line it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A keyword with a value the checker cannot use (at the keyword's line).
    #[error("{at}: {keyword} {problem}")]
    Value {
        /// `file:line` of the keyword.
        at: String,
        /// The keyword.
        keyword: String,
        /// What is wrong with its value.
        problem: ValueProblem,
    },
    /// The checker block as a whole (at the block's line).
    #[error("{at}: {kind}: {problem}")]
    Checker {
        /// `file:line` of the block.
        at: String,
        /// Its kind ("HTTP_GET").
        kind: &'static str,
        /// What is wrong.
        problem: CheckerProblem,
    },
}

/// What is wrong with a keyword's value ([`SpecError::Value`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// Not a number of seconds.
    #[error("needs a number of seconds")]
    Seconds,
    /// Not an integer in range.
    #[error("needs an integer 0-{max}")]
    Integer {
        /// Largest value.
        max: u64,
    },
    /// Not on/off.
    #[error("'{0}' is not on/off")]
    Flag(String),
    /// Not an address.
    #[error("needs an address")]
    Address,
    /// Not a DNS type we know.
    #[error("must be A, NS, CNAME, SOA, MX, TXT or AAAA")]
    DnsType,
    /// Not hex bytes.
    #[error("must be hex bytes")]
    Hex,
}

/// What is wrong with a checker block ([`SpecError::Checker`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckerProblem {
    /// `delay_loop 0`.
    #[error("delay_loop must be above 0")]
    DelayLoopZero,
    /// `connect_timeout 0`.
    #[error("connect_timeout must be above 0")]
    ConnectTimeoutZero,
    /// A checker that connects, without a port.
    #[error("no port: set connect_port or the real server's port")]
    NoPort,
    /// `bindto` of the other address family.
    #[error("bindto {bind} is not of the family of {ip}")]
    BindFamily {
        /// The bind address.
        bind: IpAddr,
        /// The address checked.
        ip: IpAddr,
    },
    /// An HTTP_GET / SSL_GET setting.
    #[error(transparent)]
    Http(#[from] HttpProblem),
    /// MISC_CHECK without `misc_path`.
    #[error("misc_path is missing")]
    NoMiscPath,
    /// The MISC_CHECK script is refused.
    #[error(transparent)]
    Script(#[from] crate::script::ScriptError),
    /// The DNS_CHECK query cannot be encoded.
    #[error(transparent)]
    Dns(#[from] super::dns::DnsError),
    /// SMTP_CHECK, BFD_CHECK, FILE_CHECK.
    #[error("this checker kind is not supported")]
    Unsupported,
}

/// What is wrong with an HTTP_GET / SSL_GET block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpProblem {
    /// `http_protocol` other than 1.0, 1.0C, 1.1.
    #[error("http_protocol '{0}' is not 1.0, 1.0C or 1.1")]
    Protocol(String),
    /// No `url` block.
    #[error("no url block")]
    NoUrl,
    /// A path or virtual host that would break the request.
    #[error("{what} '{text}' is empty or has control characters")]
    Text {
        /// "path" or "virtualhost".
        what: &'static str,
        /// The text, escaped.
        text: String,
    },
    /// A `digest` that is no MD5.
    #[error("digest '{0}' is not 32 hex digits (MD5)")]
    Digest(String),
    /// A `status_code` list.
    #[error(transparent)]
    Status(#[from] super::reply::StatusCodeError),
}

fn value_error(n: &Node, problem: ValueProblem) -> SpecError {
    SpecError::Value {
        at: at(n),
        keyword: n.name.clone(),
        problem,
    }
}

fn secs_of(n: &Node) -> Result<Duration, SpecError> {
    n.arg(0)
        .and_then(parse_secs)
        .ok_or_else(|| value_error(n, ValueProblem::Seconds))
}

fn uint_of(n: &Node, max: u64) -> Result<u64, SpecError> {
    match n.arg(0).map(str::parse::<u64>) {
        Some(Ok(v)) if v <= max => Ok(v),
        _ => Err(value_error(n, ValueProblem::Integer { max })),
    }
}

fn flag_of(n: &Node) -> Result<bool, SpecError> {
    match n.arg(0) {
        None => Ok(true),
        Some("on" | "true" | "yes") => Ok(true),
        Some("off" | "false" | "no") => Ok(false),
        Some(s) => Err(value_error(n, ValueProblem::Flag(s.to_owned()))),
    }
}

/// Decode keepalived's hex strings (`payload`, `require_reply`): hex digits, optional
/// `0x` prefix, spaces ignored.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Refuse text that would break the request line or a header (CR, LF, controls, space
/// in a path).
fn safe_http_text(what: &'static str, s: &str, allow_space: bool) -> Result<(), HttpProblem> {
    if s.is_empty()
        || s.bytes()
            .any(|b| b < 0x20 || b == 0x7f || (!allow_space && b == b' '))
    {
        return Err(HttpProblem::Text {
            what,
            text: s.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// Hostname of `host:port` or `[v6]:port` when it is an address with our port.
fn host_header(vhost: Option<&str>, connect: SocketAddr) -> String {
    match vhost {
        Some(v) => v.to_owned(),
        None => match connect.ip() {
            IpAddr::V4(a) => format!("{a}:{}", connect.port()),
            IpAddr::V6(a) => format!("[{a}]:{}", connect.port()),
        },
    }
}

/// DNS type mnemonic to code (RFC 1035 §3.2.2, RFC 3596 for AAAA).
pub fn dns_type(s: &str) -> Option<u16> {
    Some(match s.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

impl CheckerSpec {
    /// Build a checker from the config, with scripts run as the default script user of an
    /// empty `global_defs` (use [`CheckerSpec::from_config_with`] to pass the real one).
    pub fn from_config(
        vs_name: &str,
        vs: &VirtualServer,
        rs: &RealServer,
        idx: usize,
        c: &Checker,
    ) -> Result<CheckerSpec, SpecError> {
        let defaults = ScriptDefaults::from_global(&GlobalDefs::default());
        CheckerSpec::from_config_with(vs_name, vs, rs, idx, c, &defaults)
    }

    /// Build a checker from the config, MISC_CHECK scripts resolved with `scripts`
    /// (from `global_defs`: `script_user`, `enable_script_security`).
    pub fn from_config_with(
        vs_name: &str,
        vs: &VirtualServer,
        rs: &RealServer,
        idx: usize,
        c: &Checker,
        scripts: &ScriptDefaults,
    ) -> Result<CheckerSpec, SpecError> {
        let kind = c.kind;
        let name = kind_name(kind);
        let here = format!("{}:{}", c.origin.file.display(), c.origin.line);
        let err = |problem: CheckerProblem| SpecError::Checker {
            at: here.clone(),
            kind: name,
            problem,
        };
        // Inherited option: checker, then real_server, then virtual_server.
        let lookup = |key: &str| -> Option<&Node> {
            find(&c.other, key)
                .or_else(|| find(&rs.other, key))
                .or_else(|| find(&vs.other, key))
        };

        let delay_loop =
            match find(&c.other, "delay_loop").or_else(|| find(&rs.other, "delay_loop")) {
                Some(n) => secs_of(n)?,
                None => vs.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP),
            };
        if delay_loop.is_zero() {
            return Err(err(CheckerProblem::DelayLoopZero));
        }
        let connect_timeout = match c.connect_timeout {
            Some(t) => t,
            None => match find(&rs.other, "connect_timeout")
                .or_else(|| find(&vs.other, "connect_timeout"))
            {
                Some(n) => secs_of(n)?,
                None => DEFAULT_CONNECT_TIMEOUT,
            },
        };
        if connect_timeout.is_zero() {
            return Err(err(CheckerProblem::ConnectTimeoutZero));
        }
        let default_retry = if kind == CheckerKind::Misc {
            0
        } else {
            DEFAULT_RETRY
        };
        let retry = match find(&c.other, "retry")
            .or_else(|| find(&c.other, "nb_get_retry"))
            .or_else(|| find(&rs.other, "retry"))
            .or_else(|| find(&vs.other, "retry"))
        {
            Some(n) => uint_of(n, 1_000)? as u32,
            None => default_retry,
        };
        let delay_before_retry = match lookup("delay_before_retry") {
            Some(n) => secs_of(n)?,
            None => DEFAULT_DELAY_BEFORE_RETRY,
        };
        // keepalived's default: first checks spread at random over one delay_loop, so
        // a thousand checkers do not all connect in the same instant every round.
        let warmup = match lookup("warmup") {
            Some(n) => secs_of(n)?,
            None => delay_loop,
        };
        let alpha = match lookup("alpha") {
            Some(n) => flag_of(n)?,
            None => false,
        };

        // Address: connect_ip / connect_port, else the real server.
        let ip = c.connect_ip.unwrap_or(rs.addr);
        let default_port = match kind {
            CheckerKind::HttpGet => 80,
            CheckerKind::SslGet => 443,
            CheckerKind::Dns => 53,
            _ => 0,
        };
        let port = c.connect_port.or(rs.port).unwrap_or(default_port);
        let needs_port = !matches!(kind, CheckerKind::Misc | CheckerKind::Ping);
        if needs_port && port == 0 {
            return Err(err(CheckerProblem::NoPort));
        }
        let connect = SocketAddr::new(ip, port);
        let bindto = match find(&c.other, "bindto") {
            Some(n) => Some(
                n.arg(0)
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .ok_or_else(|| value_error(n, ValueProblem::Address))?,
            ),
            None => None,
        };
        let bind_port = match find(&c.other, "bind_port") {
            Some(n) => Some(uint_of(n, 65_535)? as u16),
            None => None,
        };
        let bind = match (bindto, bind_port) {
            (None, None) => None,
            (a, p) => {
                let unspec = if ip.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                let a = a.unwrap_or(unspec);
                if a.is_ipv4() != ip.is_ipv4() {
                    return Err(err(CheckerProblem::BindFamily { bind: a, ip }));
                }
                Some(SocketAddr::new(a, p.unwrap_or(0)))
            }
        };

        let probe = match kind {
            CheckerKind::Tcp => Probe::Tcp,
            CheckerKind::Ping => Probe::Ping,
            CheckerKind::HttpGet | CheckerKind::SslGet => {
                Probe::Http(http_probe(vs, rs, c, connect).map_err(|e| err(e.into()))?)
            }
            CheckerKind::Misc => {
                let path = c
                    .misc_path
                    .as_deref()
                    .ok_or_else(|| err(CheckerProblem::NoMiscPath))?;
                let user = find(&c.other, "user").map(|n| ScriptUser {
                    user: n.arg(0).unwrap_or_default().to_owned(),
                    group: n.arg(1).map(str::to_owned),
                });
                let script = ScriptSpec::from_command(path, user.as_ref(), scripts)
                    .map_err(|e| err(e.into()))?;
                let timeout = match find(&c.other, "misc_timeout") {
                    Some(n) => secs_of(n)?,
                    None => delay_loop,
                };
                let dynamic = match find(&c.other, "misc_dynamic") {
                    Some(n) => flag_of(n)?,
                    None => false,
                };
                Probe::Misc(MiscProbe {
                    script,
                    timeout,
                    dynamic,
                })
            }
            CheckerKind::Dns => {
                let qtype = match find(&c.other, "type") {
                    Some(n) => n
                        .arg(0)
                        .and_then(dns_type)
                        .ok_or_else(|| value_error(n, ValueProblem::DnsType))?,
                    None => 6,
                };
                let name = find(&c.other, "name")
                    .and_then(|n| n.arg(0))
                    .unwrap_or(".")
                    .to_owned();
                super::dns::encode_query(0, &name, qtype).map_err(|e| err(e.into()))?;
                Probe::Dns(DnsProbe { qtype, name })
            }
            CheckerKind::Udp => {
                let hex = |key: &str| -> Result<Option<Vec<u8>>, SpecError> {
                    match find(&c.other, key) {
                        None => Ok(None),
                        Some(n) => {
                            let s = n.args.join("");
                            parse_hex(&s)
                                .map(Some)
                                .ok_or_else(|| value_error(n, ValueProblem::Hex))
                        }
                    }
                };
                let payload = hex("payload")?.unwrap_or_default();
                let require_reply = match find(&c.other, "require_reply") {
                    Some(_) => Some(hex("require_reply")?.unwrap_or_default()),
                    None => None,
                };
                let len = |key: &str, d: usize| -> Result<usize, SpecError> {
                    match find(&c.other, key) {
                        Some(n) => Ok(uint_of(n, 65_535)? as usize),
                        None => Ok(d),
                    }
                };
                Probe::Udp(UdpProbe {
                    payload,
                    require_reply,
                    min_reply_length: len("min_reply_length", 0)?,
                    max_reply_length: len("max_reply_length", 65_535)?,
                })
            }
            CheckerKind::Smtp | CheckerKind::Bfd | CheckerKind::File => {
                return Err(err(CheckerProblem::Unsupported));
            }
        };

        Ok(CheckerSpec {
            rs: RsKey {
                vs: vs_name.into(),
                addr: rs.addr,
                port: rs.port.unwrap_or(0),
            },
            index: idx,
            kind,
            target: Target { connect, bind },
            connect_timeout,
            retry,
            delay_before_retry,
            warmup,
            delay_loop,
            alpha,
            probe,
        })
    }
}

fn http_probe(
    vs: &VirtualServer,
    rs: &RealServer,
    c: &Checker,
    connect: SocketAddr,
) -> Result<HttpProbe, HttpProblem> {
    let protocol = match find(&c.other, "http_protocol").and_then(|n| n.arg(0)) {
        None | Some("1.0") => HttpProtocol::Http10,
        Some("1.0C" | "1.0c") => HttpProtocol::Http10Close,
        Some("1.1") => HttpProtocol::Http11,
        Some(p) => return Err(HttpProblem::Protocol(p.to_owned())),
    };
    if c.urls.is_empty() {
        return Err(HttpProblem::NoUrl);
    }
    let outer_vhost = find(&rs.other, "virtualhost")
        .or_else(|| find(&vs.other, "virtualhost"))
        .and_then(|n| n.arg(0));
    let mut urls = Vec::new();
    for u in &c.urls {
        let path = u.path.clone().unwrap_or_else(|| "/".into());
        safe_http_text("path", &path, false)?;
        let digest = match &u.digest {
            Some(d) => {
                let d = d.to_ascii_lowercase();
                if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HttpProblem::Digest(d));
                }
                Some(d)
            }
            None => None,
        };
        let status = if !u.status_code.is_empty() {
            Some(StatusCodes::parse(&u.status_code)?)
        } else if digest.is_none() {
            Some(StatusCodes::default_ok())
        } else {
            None
        };
        let vhost = find(&u.other, "virtualhost")
            .and_then(|n| n.arg(0))
            .or(outer_vhost);
        if let Some(v) = vhost {
            safe_http_text("virtualhost", v, false)?;
        }
        urls.push(UrlSpec {
            path,
            digest,
            status,
            host: host_header(vhost, connect),
            sni: vhost.map_or_else(|| connect.ip().to_string(), str::to_owned),
        });
    }
    Ok(HttpProbe {
        tls: c.kind == CheckerKind::SslGet,
        urls,
        protocol,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secs() {
        assert_eq!(parse_secs("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_secs("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_secs(".5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_secs(""), None);
        assert_eq!(parse_secs("."), None);
        assert_eq!(parse_secs("-1"), None);
        assert_eq!(parse_secs("1.0000001"), None);
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("0a0B ff"), Some(vec![0x0a, 0x0b, 0xff]));
        assert_eq!(parse_hex("0x41"), Some(vec![0x41]));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn http_text() {
        assert!(safe_http_text("path", "/a\r\nX: y", false).is_err());
        assert!(safe_http_text("path", "/a b", false).is_err());
        assert!(safe_http_text("path", "/a?b=c", false).is_ok());
        assert_eq!(
            host_header(None, "[2001:db8::1]:8080".parse().unwrap()),
            "[2001:db8::1]:8080"
        );
    }
}
