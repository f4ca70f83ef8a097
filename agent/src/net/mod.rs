//! The I/O edges: raw VRRP sockets, GARP / unsolicited NA, the netlink task, and the
//! precise timer wake-up (timerfd) that drives protocol deadlines.

pub mod garp;
pub mod netlink;
pub mod receive;
pub mod socket;
pub mod wake;
