//! Virtual servers: health checkers and the load-balancer data plane (keepalived's
//! checker process). Runs beside the VRRP engine, not inside it.
//!
//! - [`check`]: one task per real-server checker, reporting [`check::CheckEvent`]s.
//! - [`dataplane`]: the [`dataplane::DataPlane`] trait (IPVS, nftables) and the desired
//!   table both are reconciled from.
//! - [`service`]: the virtual-server runtime in the vrrp/ shape: messages, pure state,
//!   building, one handler per input, status, backend choice and the task, each a file.
//! - [`genhash`]: `ha-agent genhash` (keepalived's genhash).

pub mod check;
pub mod dataplane;
pub mod genhash;
pub mod service;
