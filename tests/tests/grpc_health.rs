//! The manager's standard gRPC services (issue 12 item 7), on its own mTLS port: a real
//! ha-manager in the fleet's namespaces (`ha_tests::fleet`, with the CA and certificates),
//! called from the client namespace with tonic-health's and tonic-reflection's generated
//! clients, as grpc_health_probe and grpcurl would.
//!
//! ```text
//!   client 192.0.2.100 (viewer certificate) --mTLS--> mgr 192.0.2.50:7400
//!       grpc.health.v1.Health/Check           "" and the ha.v1 services: SERVING
//!       grpc.reflection.v1 ListServices       ha.v1.AgentLink, ha.v1.Control, health
//! ```
//! Without a client certificate the handshake is refused: health does not open the port.

use std::fs;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ha_tests::fleet::{Fleet, Security, MGR_ADDR, MGR_PORT};
use ha_tests::scenario::CLIENT;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// What the client saw.
#[derive(Debug)]
struct Seen {
    /// Service name -> status of Check.
    health: Vec<(String, Result<i32, tonic::Code>)>,
    /// ListServices.
    services: Vec<String>,
    /// Bytes of the descriptors FileContainingSymbol gave for ha.v1.Control.
    control_descriptor: usize,
}

/// A channel to the manager with the CA and, if given, a client identity.
async fn channel(ca: &str, identity: Option<(String, String)>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let ep = Endpoint::from_shared(format!("https://{MGR_ADDR}:{MGR_PORT}"))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .tls_config(tls)?;
    Ok(ep.connect().await?)
}

/// Health checks and reflection over one channel.
async fn probe(ch: Channel) -> Result<Seen> {
    let mut health = HealthClient::new(ch.clone());
    let mut seen = Vec::new();
    for name in [
        "",
        "ha.v1.Control",
        "ha.v1.AgentLink",
        "ha.v1.NoSuchService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|s| s.code());
        seen.push((name.to_string(), r));
    }
    let mut refl = ServerReflectionClient::new(ch);
    let reqs = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("ha.v1.Control".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut answers = refl
        .server_reflection_info(tokio_stream::iter(reqs))
        .await?
        .into_inner();
    let (mut services, mut control_descriptor) = (Vec::new(), 0);
    while let Some(a) = answers.message().await? {
        match a.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                services.extend(l.service.into_iter().map(|s| s.name));
            }
            Some(MessageResponse::FileDescriptorResponse(f)) => {
                control_descriptor += f.file_descriptor_proto.iter().map(Vec::len).sum::<usize>();
            }
            Some(MessageResponse::ErrorResponse(e)) => bail!("reflection error: {e:?}"),
            other => bail!("unexpected reflection answer {other:?}"),
        }
    }
    Ok(Seen {
        health: seen,
        services,
        control_descriptor,
    })
}

#[test]
fn health_and_reflection_on_the_mtls_port() -> Result<()> {
    let mut f = Fleet::new("grpch", true)?;
    f.start_manager()?;
    let Security::Tls(pki) = &f.security else {
        bail!("fleet without TLS");
    };
    let read = |n: &str| fs::read_to_string(pki.join(n)).with_context(|| format!("read {n}"));
    let ca = read("ca.pem")?;
    let viewer = (read("viewer.pem")?, read("viewer.key")?);

    let ns = f.classic.lan.ns(CLIENT);
    let (seen, anonymous) = ns.run_inside(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let seen = probe(channel(&ca, Some(viewer)).await?).await?;
            // No client certificate: the manager's mTLS refuses the handshake.
            let anonymous = match channel(&ca, None).await {
                Err(e) => Err(e.to_string()),
                Ok(ch) => HealthClient::new(ch)
                    .check(HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status)
                    .map_err(|s| s.to_string()),
            };
            Ok::<_, anyhow::Error>((seen, anonymous))
        })
    })?;
    eprintln!("seen: {seen:?}\nwithout a certificate: {anonymous:?}");

    let serving = ServingStatus::Serving as i32;
    for (name, r) in &seen.health {
        let want = if name == "ha.v1.NoSuchService" {
            Err(tonic::Code::NotFound)
        } else {
            Ok(serving)
        };
        assert_eq!(r, &want, "health of {name:?}");
    }
    for s in [
        "ha.v1.AgentLink",
        "ha.v1.Control",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            seen.services.iter().any(|x| x == s),
            "{s} in {:?}",
            seen.services
        );
    }
    assert!(seen.control_descriptor > 100, "descriptor of ha.v1.Control");
    assert!(
        anonymous.is_err(),
        "a client without a certificate got {anonymous:?}"
    );
    Ok(())
}
