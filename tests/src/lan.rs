//! A switched LAN: one switch namespace with a bridge, hosts plugged in with veth pairs.
//!
//! ```text
//!   host ns "c"      host ns "a"       host ns "b"
//!    eth0              eth0              eth0
//!     |                 |                 |
//!   [port c]---------[port a]---------[port b]    bridge br0 in the switch ns
//! ```
//! Cutting a host's link sets its switch port down: the host sees NO-CARRIER on eth0.

use anyhow::Result;

use crate::netns::Netns;

/// A host plugged into the LAN.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub ns: Netns,
    /// The switch-side port name of its veth pair.
    pub port: String,
    /// Its IPv4 address (without prefix).
    pub addr: String,
}

/// A bridge in its own namespace and the hosts plugged into it.
#[derive(Debug)]
pub struct Lan {
    /// Hosts, in the order they were added (declared before the switch so they drop first).
    pub hosts: Vec<Host>,
    /// The switch namespace holding bridge br0.
    pub switch: Netns,
}

impl Lan {
    /// A LAN with an empty bridge.
    pub fn new() -> Result<Lan> {
        let switch = Netns::new("hsw")?;
        switch.sh(
            "ip link add br0 type bridge && ip link set br0 type bridge mcast_snooping 0 \
             && ip link set br0 up",
        )?;
        Ok(Lan {
            hosts: Vec::new(),
            switch,
        })
    }

    /// Plug in a new host with `eth0` at `cidr` (e.g. "192.0.2.1/24") and, optionally, an
    /// IPv6 address; returns its index.
    pub fn add_host(&mut self, prefix: &str, cidr: &str, v6: Option<&str>) -> Result<usize> {
        let ns = Netns::new(prefix)?;
        let idx = self.hosts.len();
        let port = format!("p{idx}");
        self.connect(&ns, "eth0", &port, cidr)?;
        if let Some(v6) = v6 {
            ns.sh(&format!("ip -6 addr add {v6} dev eth0 nodad"))?;
        }
        let addr = cidr.split('/').next().unwrap_or(cidr).to_string();
        self.hosts.push(Host { ns, port, addr });
        Ok(idx)
    }

    /// Plug a namespace that lives on another LAN (a router, a NAT director) into this
    /// one too, as `ifname` at `cidr`; its switch port is `x<ifname>`. It is not a host
    /// of this LAN (the caller keeps the namespace).
    pub fn plug(&self, ns: &Netns, ifname: &str, cidr: &str) -> Result<()> {
        self.connect(ns, ifname, &format!("x{ifname}"), cidr)
    }

    fn connect(&self, ns: &Netns, ifname: &str, port: &str, cidr: &str) -> Result<()> {
        crate::netns::ip(&[
            "link",
            "add",
            ifname,
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &self.switch.name,
        ])?;
        self.switch.sh(&format!(
            "ip link set {port} master br0 && ip link set {port} up"
        ))?;
        ns.sh(&format!(
            "sysctl -qw net.ipv6.conf.{ifname}.accept_dad=0 && ip addr add {cidr} dev {ifname} \
             && ip link set {ifname} up"
        ))?;
        Ok(())
    }

    /// Cut (or restore) host `idx`'s link at the switch: the host sees carrier loss.
    pub fn set_link(&self, idx: usize, up: bool) -> Result<()> {
        let port = &self.hosts[idx].port;
        let state = if up { "up" } else { "down" };
        self.switch.sh(&format!("ip link set {port} {state}"))?;
        Ok(())
    }

    /// Host `idx`'s namespace.
    pub fn ns(&self, idx: usize) -> &Netns {
        &self.hosts[idx].ns
    }
}
