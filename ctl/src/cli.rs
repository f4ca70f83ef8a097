//! The command line (clap 4): global connection options and the subcommands, plus the
//! pure value parsers (priority, VIP, real server, weight, manager URL) whose failures
//! are usage errors (exit 2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::timespec::parse_duration;

/// Default manager port (plaintext labs and mTLS alike).
pub const DEFAULT_PORT: u16 = 7400;

/// hactl: drive an ha-manager fleet (status, history, priority, VIP and real-server
/// overrides).
///
/// Exit codes: 0 ok, 1 operation failed or refused, 2 usage error, 3 manager unreachable.
#[derive(Debug, Parser)]
#[command(
    name = "hactl",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 operation failed or refused, 2 usage error, 3 manager unreachable."
)]
pub struct Cli {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print request ids and connection details on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Output format: table, wide (more columns: peer, boot id, config digest, last
    /// seen) or json (the same as a subcommand's --json).
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value_t = Output::Table,
        value_name = "FORMAT"
    )]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `-o table|wide|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns for people.
    Table,
    /// The table with more columns.
    Wide,
    /// One JSON object (the shapes of `--json`).
    Json,
}

impl Output {
    /// The format in force: a subcommand's `--json` is `-o json`.
    pub fn with_json_flag(self, json: bool) -> Output {
        if json {
            Output::Json
        } else {
            self
        }
    }
}

/// How to reach the manager.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ConnArgs {
    /// Manager URL [default: https://127.0.0.1:7400, or http://127.0.0.1:7400 with --insecure].
    #[arg(long, env = "HACTL_MANAGER", global = true, value_name = "URL")]
    pub manager: Option<String>,
    /// CA certificate (PEM) that signed the manager's certificate.
    #[arg(long, env = "HACTL_CA", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, env = "HACTL_CERT", global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    #[arg(long, env = "HACTL_KEY", global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Name to verify in the manager's certificate [default: the URL's host].
    #[arg(
        long,
        env = "HACTL_TLS_SERVER_NAME",
        global = true,
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,
    /// Allow a plaintext http:// manager (labs only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Connect and request timeout (500ms, 10s, 1m).
    #[arg(long, global = true, default_value = "15s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Duration,
    /// OTLP/gRPC collector: the command becomes one trace (W3C traceparent to the manager).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        global = true,
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fleet status: nodes, instances, states, priorities, VIPs, alerts (the fleet's
    /// alerts, also when filtered).
    Status {
        /// Only this node (exit 1 naming the known nodes if there is none).
        node: Option<String>,
        /// Only this vrrp_instance (exit 1 naming the known ones if there is none).
        #[arg(long)]
        instance: Option<String>,
        /// One JSON object: {"nodes":[...],"alerts":[...]} (= -o json).
        #[arg(long)]
        json: bool,
    },
    /// Nodes the manager knows and their sessions.
    Nodes {
        /// One JSON object: {"nodes":[...]} (= -o json).
        #[arg(long)]
        json: bool,
    },
    /// Override an instance's priority on one node (PRIORITY 1..=255, or `clear`).
    SetPriority {
        /// Node name.
        node: String,
        /// vrrp_instance name.
        instance: String,
        /// 1..=255, or `clear` to drop the override.
        #[arg(value_parser = parse_priority)]
        priority: PriorityArg,
        /// Request id to retry a command explicitly (runs once) [default: random].
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Add or remove a VIP of an instance on one node.
    Vip {
        /// add or del.
        #[command(subcommand)]
        op: VipOp,
    },
    /// Real servers of a virtual server on one node: add, del, weight, drain, reset.
    Rs {
        /// add, del, weight, drain or reset.
        #[command(subcommand)]
        op: RsOp,
    },
    /// Stored events, oldest first (all pages).
    History(HistoryArgs),
    /// Live events, one line each, until interrupted.
    Watch {
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Planned handover: make NODE the master of INSTANCE (a priority override one above
    /// the current master stays in force; `set-priority NODE INSTANCE clear` ends it).
    Switchover {
        /// vrrp_instance name.
        instance: String,
        /// The node that should become master.
        #[arg(long = "to", value_name = "NODE")]
        to: String,
        /// Request id to retry a command explicitly (runs once) [default: random].
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Shell completion script on stdout: `hactl completion bash > /etc/bash_completion.d/hactl`.
    Completion {
        /// bash, zsh, fish (also elvish, powershell).
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// hactl's version and the manager's (hactl's alone, exit 3, if it is unreachable).
    Version,
}

/// `vip add` / `vip del`.
#[derive(Debug, Subcommand)]
pub enum VipOp {
    /// Add a VIP (in addition to the configured ones).
    Add(VipArgs),
    /// Remove a VIP.
    Del(VipArgs),
}

/// Arguments of `vip add|del`.
#[derive(Debug, Args)]
pub struct VipArgs {
    /// Node name.
    pub node: String,
    /// vrrp_instance name.
    pub instance: String,
    /// Address with prefix length (192.0.2.20/24, 2001:db8::20/64).
    #[arg(value_parser = parse_vip)]
    pub addr: VipArg,
    /// Request id to retry a command explicitly (runs once) [default: random].
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

/// `rs add|del|weight|drain|reset`: each pushed to the node as a real-server override.
#[derive(Debug, Subcommand)]
pub enum RsOp {
    /// Add a real server (no checkers: always alive).
    Add(RsAddArgs),
    /// Remove a real server (a configured one too, until `rs reset`).
    Del(RsArgs),
    /// Set a real server's weight.
    Weight(RsWeightArgs),
    /// Weight 0, established connections kept.
    Drain(RsArgs),
    /// Drop this real server's override: back to the config.
    Reset(RsArgs),
}

impl RsOp {
    /// The common arguments, the action's name ("drain") and the weight it sends.
    pub fn parts(&self) -> (&RsArgs, &'static str, u16) {
        match self {
            RsOp::Add(a) => (&a.target, "add", a.weight),
            RsOp::Del(a) => (a, "del", 0),
            RsOp::Weight(a) => (&a.target, "weight", a.weight),
            RsOp::Drain(a) => (a, "drain", 0),
            RsOp::Reset(a) => (a, "reset", 0),
        }
    }
}

/// Arguments every `rs` subcommand takes.
#[derive(Debug, Args)]
pub struct RsArgs {
    /// Node name.
    pub node: String,
    /// Virtual server as status shows it: 192.0.2.10:80/TCP, "fwmark 1", "group NAME".
    #[arg(value_parser = parse_virtual_server, value_name = "VS")]
    pub virtual_server: String,
    /// Real server: ADDR:PORT or [V6ADDR]:PORT (192.0.2.21:80, [2001:db8::21]:80).
    #[arg(value_parser = parse_real_server, value_name = "RS")]
    pub real_server: RealServerArg,
    /// Request id to retry a command explicitly (runs once) [default: random].
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// One JSON object: the reply with the virtual server after the change.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `rs add`.
#[derive(Debug, Args)]
pub struct RsAddArgs {
    /// Node, virtual server, real server.
    #[command(flatten)]
    pub target: RsArgs,
    /// Weight, 0..=65535.
    #[arg(long, default_value = "1", value_parser = parse_weight, value_name = "W")]
    pub weight: u16,
}

/// Arguments of `rs weight`.
#[derive(Debug, Args)]
pub struct RsWeightArgs {
    /// Node, virtual server, real server.
    #[command(flatten)]
    pub target: RsArgs,
    /// Weight, 0..=65535 (0 stops new connections, like drain).
    #[arg(value_parser = parse_weight, value_name = "W")]
    pub weight: u16,
}

/// A validated real server address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServerArg {
    /// Address.
    pub addr: IpAddr,
    /// Port (0 for fwmark services that keep the client's port).
    pub port: u16,
}

impl std::fmt::Display for RealServerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// Parse `ADDR:PORT` (IPv4) or `[V6ADDR]:PORT`.
pub fn parse_real_server(s: &str) -> Result<RealServerArg, String> {
    let shape = || {
        format!("real server {s:?} must be ADDR:PORT or [V6ADDR]:PORT (192.0.2.21:80, [2001:db8::21]:80)")
    };
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:").ok_or_else(shape)?;
        let a: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("{a:?} in real server {s:?} is not an IPv6 address"))?;
        (IpAddr::V6(a), p)
    } else {
        let (a, p) = s.rsplit_once(':').ok_or_else(shape)?;
        if a.contains(':') {
            return Err(format!(
                "real server {s:?}: an IPv6 address needs brackets, [V6ADDR]:PORT ([2001:db8::21]:80)"
            ));
        }
        let a: Ipv4Addr = a.parse().map_err(|_| {
            format!("{a:?} in real server {s:?} is not an IPv4 address (IPv6: [V6ADDR]:PORT)")
        })?;
        (IpAddr::V4(a), p)
    };
    let port = port
        .parse()
        .map_err(|_| format!("port {port:?} in real server {s:?} must be 0..=65535"))?;
    Ok(RealServerArg { addr, port })
}

/// Parse a virtual server name (anything but blank).
pub fn parse_virtual_server(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(
            "virtual server is empty: name it as status shows it (192.0.2.10:80/TCP, \"fwmark 1\")"
                .into(),
        );
    }
    Ok(t.to_string())
}

/// Parse a real-server weight, 0..=65535.
pub fn parse_weight(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("weight {s:?} must be a number 0..=65535"))
}

/// Arguments of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this kind (transition, command, alert-raised, checker, real-server, quorum, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// From this time: RFC 3339 or a span ago (10m, 2h).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Up to this time: RFC 3339 or a span ago.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// At most this many events (the oldest matching ones).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// One JSON object: {"events":[...]} (= -o json).
    #[arg(long)]
    pub json: bool,
}

/// A validated priority argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityArg {
    /// Override to this priority (1..=255).
    Set(u8),
    /// Drop the override (sent as 0).
    Clear,
}

impl PriorityArg {
    /// The wire value: 0 clears.
    pub fn wire(self) -> u32 {
        match self {
            PriorityArg::Set(p) => u32::from(p),
            PriorityArg::Clear => 0,
        }
    }
}

/// A validated `ADDR/PLEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipArg {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (<= 32 for IPv4, <= 128 for IPv6).
    pub prefix_len: u8,
}

impl std::fmt::Display for VipArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parse a priority: 1..=255, or `clear`.
pub fn parse_priority(s: &str) -> Result<PriorityArg, String> {
    if s.eq_ignore_ascii_case("clear") {
        return Ok(PriorityArg::Clear);
    }
    match s.parse::<i64>() {
        Ok(n) if (1..=255).contains(&n) => Ok(PriorityArg::Set(
            u8::try_from(n).map_err(|e| e.to_string())?,
        )),
        Ok(n) => Err(format!(
            "priority {n} out of range: must be 1..=255 (or `clear` to drop the override)"
        )),
        Err(_) => Err(format!(
            "priority {s:?} is not a number: must be 1..=255 (or `clear`)"
        )),
    }
}

/// Parse `ADDR/PLEN`.
pub fn parse_vip(s: &str) -> Result<VipArg, String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} needs a prefix length: ADDR/PLEN (192.0.2.20/24)"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len: u8 = p
        .parse()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("prefix length {p:?} out of range: must be 0..={max}"))?;
    Ok(VipArg { addr, prefix_len })
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("timeout must be more than 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// How to connect, once the URL and TLS options were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext (`--insecure`, http://).
    Plain,
    /// TLS with these files; `cert`/`key` absent means no client certificate.
    Tls {
        /// CA certificate file.
        ca: PathBuf,
        /// Client certificate and key files.
        identity: Option<(PathBuf, PathBuf)>,
        /// Server name to verify, if not the URL's host.
        server_name: Option<String>,
    },
}

/// Resolve the manager URL and transport from the options; errors are usage errors.
pub fn resolve(conn: &ConnArgs) -> Result<(String, Transport), String> {
    let url = match &conn.manager {
        Some(u) => u.trim().to_string(),
        None if conn.insecure => format!("http://127.0.0.1:{DEFAULT_PORT}"),
        None => format!("https://127.0.0.1:{DEFAULT_PORT}"),
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") {
        if !conn.insecure {
            return Err(format!(
                "refusing plaintext {url}: pass --insecure for a lab manager, or use https:// with --ca, --cert and --key"
            ));
        }
        return Ok((url, Transport::Plain));
    }
    if !lower.starts_with("https://") {
        return Err(format!(
            "manager URL {url:?} must start with https:// (or http:// with --insecure)"
        ));
    }
    if conn.insecure {
        return Err(format!(
            "--insecure means plaintext, but {url} is https://: use http:// or drop --insecure"
        ));
    }
    let ca = conn.ca.clone().ok_or_else(|| {
        format!("{url} needs --ca FILE (or HACTL_CA): the CA that signed the manager's certificate")
    })?;
    let identity = match (&conn.cert, &conn.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => return Err("--cert needs --key (or HACTL_KEY)".into()),
        (None, Some(_)) => return Err("--key needs --cert (or HACTL_CERT)".into()),
    };
    Ok((
        url,
        Transport::Tls {
            ca,
            identity,
            server_name: conn.tls_server_name.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn conn(manager: Option<&str>, insecure: bool) -> ConnArgs {
        ConnArgs {
            manager: manager.map(str::to_string),
            ca: None,
            cert: None,
            key: None,
            tls_server_name: None,
            insecure,
            timeout: Duration::from_secs(1),
            otlp_endpoint: None,
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("1"), Ok(PriorityArg::Set(1)));
        assert_eq!(parse_priority("255"), Ok(PriorityArg::Set(255)));
        assert_eq!(parse_priority("clear"), Ok(PriorityArg::Clear));
        assert_eq!(PriorityArg::Clear.wire(), 0);
        for bad in ["0", "256", "-5", "abc", "1.5", ""] {
            assert!(parse_priority(bad).is_err(), "{bad}");
        }
        assert!(parse_priority("256").unwrap_err().contains("1..=255"));
    }

    #[test]
    fn vips() {
        let v = parse_vip("192.0.2.20/24").unwrap();
        assert_eq!(v.to_string(), "192.0.2.20/24");
        assert_eq!(parse_vip("2001:db8::20/64").unwrap().prefix_len, 64);
        for bad in [
            "192.0.2.20",
            "192.0.2.20/33",
            "2001:db8::1/129",
            "x/24",
            "192.0.2.300/24",
            "192.0.2.1/",
        ] {
            assert!(parse_vip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_servers() {
        let v4 = parse_real_server("192.0.2.21:80").unwrap();
        assert_eq!(v4.to_string(), "192.0.2.21:80");
        let v6 = parse_real_server("[2001:db8::0:21]:8080").unwrap();
        assert_eq!(v6.to_string(), "[2001:db8::21]:8080");
        assert_eq!(parse_real_server("192.0.2.21:0").unwrap().port, 0);
        for (bad, says) in [
            ("192.0.2.21", "ADDR:PORT"),
            ("2001:db8::21:80", "brackets"),
            ("[2001:db8::21]", "ADDR:PORT"),
            ("[192.0.2.21]:80", "not an IPv6"),
            ("web1:80", "not an IPv4"),
            ("192.0.2.21:65536", "0..=65535"),
            ("192.0.2.21:http", "0..=65535"),
            ("", "ADDR:PORT"),
        ] {
            let e = parse_real_server(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(parse_weight("65535"), Ok(65535));
        assert!(parse_weight("65536").is_err());
        assert!(parse_weight("-1").is_err());
        assert!(parse_virtual_server("  ").is_err());
        assert_eq!(parse_virtual_server("fwmark 1"), Ok("fwmark 1".into()));
    }

    /// `hactl rs ARGS...` parsed: (virtual server, real server, action, weight, json).
    fn rs_parsed(args: &[&str]) -> (String, String, &'static str, u16, bool) {
        let argv = ["hactl", "rs"].iter().chain(args);
        let Command::Rs { op } = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not rs")
        };
        let (a, action, weight) = op.parts();
        let rs = a.real_server.to_string();
        (a.virtual_server.clone(), rs, action, weight, a.json)
    }

    #[test]
    fn rs_subcommands_parse() {
        let vs = "192.0.2.10:80/TCP";
        assert_eq!(
            rs_parsed(&["add", "lb1", vs, "[2001:db8::21]:80"]),
            (vs.into(), "[2001:db8::21]:80".into(), "add", 1, false)
        );
        assert_eq!(
            rs_parsed(&["weight", "lb1", "fwmark 1", "192.0.2.21:0", "7", "--json"]),
            ("fwmark 1".into(), "192.0.2.21:0".into(), "weight", 7, true)
        );
        assert_eq!(rs_parsed(&["drain", "lb1", vs, "192.0.2.21:80"]).2, "drain");
        let e =
            Cli::try_parse_from(["hactl", "rs", "drain", "lb1", "vs", "192.0.2.21"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("ADDR:PORT"), "{e}");
        let e = Cli::try_parse_from(["hactl", "rs", "weight", "lb1", "vs", "192.0.2.21:80"])
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn plaintext_needs_insecure() {
        let e = resolve(&conn(Some("http://192.0.2.50:7400"), false)).unwrap_err();
        assert!(
            e.contains("--insecure") && e.contains("http://192.0.2.50:7400"),
            "{e}"
        );
        assert_eq!(
            resolve(&conn(Some("http://192.0.2.50:7400"), true)),
            Ok(("http://192.0.2.50:7400".into(), Transport::Plain))
        );
        assert_eq!(
            resolve(&conn(None, true)),
            Ok(("http://127.0.0.1:7400".into(), Transport::Plain))
        );
        assert!(resolve(&conn(Some("https://192.0.2.50:7400"), true)).is_err());
        assert!(resolve(&conn(Some("192.0.2.50:7400"), true)).is_err());
    }

    #[test]
    fn tls_needs_ca_and_a_whole_identity() {
        let mut c = conn(None, false);
        assert!(resolve(&c).unwrap_err().contains("--ca"));
        c.ca = Some("ca.pem".into());
        c.cert = Some("op.pem".into());
        assert!(resolve(&c).unwrap_err().contains("--key"));
        c.key = Some("op.key".into());
        let (url, t) = resolve(&c).unwrap();
        assert_eq!(url, "https://127.0.0.1:7400");
        assert_eq!(
            t,
            Transport::Tls {
                ca: "ca.pem".into(),
                identity: Some(("op.pem".into(), "op.key".into())),
                server_name: None
            }
        );
    }

    #[test]
    fn bad_priority_is_a_usage_error() {
        let e = Cli::try_parse_from(["hactl", "set-priority", "lb2", "VI_1", "300"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("1..=255"), "{e}");
        let ok = Cli::try_parse_from([
            "hactl",
            "set-priority",
            "lb2",
            "VI_1",
            "200",
            "--request-id",
            "r1",
            "--insecure",
        ])
        .unwrap();
        assert!(ok.conn.insecure);
        match ok.command {
            Command::SetPriority {
                priority,
                request_id,
                ..
            } => {
                assert_eq!(priority, PriorityArg::Set(200));
                assert_eq!(request_id.as_deref(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
