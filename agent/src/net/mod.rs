//! The I/O edges: raw VRRP sockets, GARP / unsolicited NA, the netlink task.

pub mod garp;
pub mod netlink;
pub mod socket;
