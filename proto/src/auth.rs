//! Identities and per-method authorization shared by ha-manager, ha-agent and hactl.
//!
//! An identity lives in the subject of an mTLS client certificate: CN is the name (node
//! or person), OU is the role (`agent`, `viewer`, `operator`, `admin`, `manager`).
//! [`allowed`] is the role table of the `AgentLink` and `Control` services: default deny.
//! Nothing here does I/O; certificate checking against the CA is rustls' job.

use std::fmt;
use std::str::FromStr;

/// The role a certificate grants (its subject OU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An ha-agent: may only open `AgentLink/Session`.
    Agent,
    /// Read-only operator: status, nodes, history, watch.
    Viewer,
    /// Viewer plus mutations (set-priority, VIP changes, switchover).
    Operator,
    /// Everything an operator may do (and future admin-only methods).
    Admin,
    /// The manager's own server certificate: no client rights.
    Manager,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 5] = [
        Role::Agent,
        Role::Viewer,
        Role::Operator,
        Role::Admin,
        Role::Manager,
    ];

    /// The spelling used in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Manager => "manager",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role {:?} (expected agent, viewer, operator, admin or manager)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Who is calling: from the peer certificate, or the lab identity with `--insecure`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Certificate subject CN (node name for agents, a person or tool otherwise).
    pub name: String,
    /// Certificate subject OU.
    pub role: Role,
}

impl Identity {
    /// The identity every caller gets when the manager runs with `--insecure`.
    pub fn insecure() -> Self {
        Identity {
            name: "insecure".to_string(),
            role: Role::Admin,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// Reads CN (name) and OU (role) from a DER certificate's subject; `None` when either
/// is missing, not a string, or the OU is not a known role. Does not verify anything.
pub fn identity_from_cert_der(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    let role = subject.iter_organizational_unit().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    Some(Identity {
        name: name.to_string(),
        role: role.parse().ok()?,
    })
}

/// Full gRPC path of `AgentLink.Session`.
pub const AGENT_SESSION: &str = "/ha.v1.AgentLink/Session";

/// Whether `role` may call `method`, a full gRPC path ("/ha.v1.Control/Status") or a
/// bare method name ("Status"). Unknown methods are denied.
pub fn allowed(method: &str, role: Role) -> bool {
    let (service, name) = match method.trim_start_matches('/').rsplit_once('/') {
        Some((service, name)) => (Some(service), name),
        None => (None, method),
    };
    let read = matches!(role, Role::Viewer | Role::Operator | Role::Admin);
    let write = matches!(role, Role::Operator | Role::Admin);
    match (service, name) {
        (Some("ha.v1.AgentLink") | None, "Session") => role == Role::Agent,
        (Some("ha.v1.Control") | None, "Status" | "Nodes" | "History" | "Watch") => read,
        (
            Some("ha.v1.Control") | None,
            "SetPriority" | "VipChange" | "Switchover" | "RealServer",
        ) => write,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Role::*;
        let cases: &[(&str, &[Role])] = &[
            ("/ha.v1.AgentLink/Session", &[Agent]),
            ("/ha.v1.Control/Status", &[Viewer, Operator, Admin]),
            ("/ha.v1.Control/Nodes", &[Viewer, Operator, Admin]),
            ("/ha.v1.Control/History", &[Viewer, Operator, Admin]),
            ("/ha.v1.Control/Watch", &[Viewer, Operator, Admin]),
            ("/ha.v1.Control/SetPriority", &[Operator, Admin]),
            ("/ha.v1.Control/VipChange", &[Operator, Admin]),
            ("/ha.v1.Control/Switchover", &[Operator, Admin]),
            ("/ha.v1.Control/RealServer", &[Operator, Admin]),
            ("SetPriority", &[Operator, Admin]),
            ("Session", &[Agent]),
            ("/ha.v1.Control/Shutdown", &[]),
            ("/ha.v1.Other/Status", &[]),
            ("/ha.v1.Control/Session", &[]),
            ("", &[]),
        ];
        for (method, ok) in cases {
            for role in Role::ALL {
                assert_eq!(
                    allowed(method, role),
                    ok.contains(&role),
                    "{method} as {role}"
                );
            }
        }
    }

    #[test]
    fn role_spelling_round_trips() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    fn cert(cn: Option<&str>, ou: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["lb1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        if let Some(ou) = ou {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, ou);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identity_from_rcgen_cert() {
        let id = identity_from_cert_der(&cert(Some("lb1"), Some("agent"))).unwrap();
        assert_eq!(
            id,
            Identity {
                name: "lb1".into(),
                role: Role::Agent
            }
        );
        let id = identity_from_cert_der(&cert(Some("alice"), Some("viewer"))).unwrap();
        assert_eq!(id.role, Role::Viewer);
        assert_eq!(id.name, "alice");
    }

    #[test]
    fn identity_needs_cn_and_known_ou() {
        assert_eq!(identity_from_cert_der(&cert(None, Some("admin"))), None);
        assert_eq!(identity_from_cert_der(&cert(Some("lb1"), None)), None);
        assert_eq!(
            identity_from_cert_der(&cert(Some("lb1"), Some("root"))),
            None
        );
        assert_eq!(identity_from_cert_der(b"not a certificate"), None);
    }

    #[test]
    fn insecure_identity_is_admin() {
        let id = Identity::insecure();
        assert_eq!(id.name, "insecure");
        assert!(allowed("SetPriority", id.role));
    }
}
