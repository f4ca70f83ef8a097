//! gRPC definitions of the fleet link: `AgentLink` (agent <-> manager) and `Control`
//! (hactl -> manager). Generated from proto/ha/v1/ha.proto at build time.

pub mod auth;

/// Package `ha.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("ha.v1");
}

/// The encoded `FileDescriptorSet` of proto/ha/v1 (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ha_descriptor.bin"));
