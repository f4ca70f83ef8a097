//! The standard gRPC services every gRPC tool expects, on the manager's own port (and its
//! mTLS: any certificate the CA signed may call them, whatever its role):
//! `grpc.health.v1.Health` (SERVING for the server, `ha.v1.AgentLink` and `ha.v1.Control`
//! until shutdown begins, then NOT_SERVING) and server reflection (`grpc.reflection.v1`:
//! the `ha.v1` services, health and reflection itself), so that grpcurl or grpc_health_probe
//! work without the .proto files. Not here: the role table of the `ha.v1` services
//! (ha-proto's auth.rs), the listener (listen.rs).

use std::sync::Arc;

use ha_proto::v1::agent_link_server::AgentLinkServer;
use ha_proto::v1::control_server::ControlServer;
use tonic::server::NamedService;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_reflection::pb::v1::server_reflection_server::{
    ServerReflection, ServerReflectionServer,
};

use crate::api::{AgentLinkApi, ControlApi};
use crate::core::Core;

/// The `ha.v1` services whose health is reported.
pub const SERVICES: [&str; 2] = [
    <AgentLinkServer<AgentLinkApi> as NamedService>::NAME,
    <ControlServer<ControlApi> as NamedService>::NAME,
];

/// The health service, SERVING now; it turns NOT_SERVING (server and services) when the
/// core begins its shutdown (a task watches for it).
pub async fn health_service(core: Arc<Core>) -> HealthServer<impl Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    set_all(&reporter, ServingStatus::Serving).await;
    let mut stop = core.shutdown_signal();
    tokio::spawn(async move {
        if stop.wait_for(|s| *s).await.is_ok() {
            set_all(&reporter, ServingStatus::NotServing).await;
        }
    });
    server
}

/// Sets the server's ("") and every service's status.
async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for name in std::iter::once("").chain(SERVICES) {
        reporter.set_service_status(name, status).await;
    }
}

/// Server reflection over the `ha.v1` descriptors and grpc.health.v1's.
pub fn reflection_service(
) -> Result<ServerReflectionServer<impl ServerReflection>, tonic_reflection::server::Error> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ha_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}
