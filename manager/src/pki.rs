//! `ha-manager pki`: a small CA for the fleet (rcgen). `init` writes `ca.pem` and `ca.key`;
//! `issue` writes `NAME.pem` and `NAME.key` signed by it, with the identity in the subject
//! (CN = name, OU = role). Manager certificates get server SANs (127.0.0.1, ::1,
//! localhost plus any given); every certificate can authenticate clients. Keys are 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ha_proto::auth::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why a pki command failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The CA exists already.
    #[error("{0} exists; refusing to overwrite the CA")]
    Exists(PathBuf),
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The name cannot be a file name.
    #[error("name {0:?} must be letters, digits, '.', '_' or '-' and not start with '.'")]
    BadName(String),
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate.
    pub cert: String,
    /// Private key (PKCS#8).
    pub key: String,
}

/// SANs every manager certificate gets.
pub const MANAGER_SANS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// A new self-signed CA.
pub fn new_ca() -> Result<Pem, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ha fleet CA");
    dn.push(DnType::OrganizationName, "ha");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `name` with `role`, signed by the CA.
pub fn issue_with(ca: &Pem, name: &str, role: Role, sans: &[String]) -> Result<Pem, PkiError> {
    let mut all: Vec<String> = Vec::new();
    if role == Role::Manager {
        all.extend(MANAGER_SANS.iter().map(|s| s.to_string()));
    }
    for s in sans {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    let mut params = CertificateParams::new(all)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = if role == Role::Manager {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn write(path: &Path, data: &str, mode: u32, new: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut o = OpenOptions::new();
    o.write(true).mode(mode);
    if new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    let mut f = o.open(path).map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `pki init --dir DIR`: creates DIR and its CA (`ca.pem`, `ca.key`); refuses to
/// overwrite one.
pub fn init(dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    for p in [&cert, &key] {
        if p.exists() {
            return Err(PkiError::Exists(p.clone()));
        }
    }
    let ca = new_ca()?;
    write(&key, &ca.key, 0o600, true)?;
    write(&cert, &ca.cert, 0o644, true)?;
    Ok((cert, key))
}

/// `pki issue --dir DIR --name NAME --role ROLE [--san ...]`: writes `NAME.pem` and
/// `NAME.key` (replacing older ones).
pub fn issue(
    dir: &Path,
    name: &str,
    role: Role,
    sans: &[String],
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok || name == "ca" {
        return Err(PkiError::BadName(name.to_string()));
    }
    let ca = Pem {
        cert: read(&dir.join("ca.pem"))?,
        key: read(&dir.join("ca.key"))?,
    };
    let pem = issue_with(&ca, name, role, sans)?;
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let _ = std::fs::remove_file(&key);
    write(&key, &pem.key, 0o600, true)?;
    write(&cert, &pem.cert, 0o644, false)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_proto::auth::identity_from_cert_der;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_and_issue() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        assert!(matches!(init(dir.path()), Err(PkiError::Exists(_))));
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (cert, key) = issue(dir.path(), "lb1", Role::Agent, &[]).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(cert).unwrap();
        let der = x509_der(&pem);
        let id = identity_from_cert_der(&der).unwrap();
        assert_eq!((id.name.as_str(), id.role), ("lb1", Role::Agent));
        assert!(issue(dir.path(), "../x", Role::Admin, &[]).is_err());
        assert!(issue(dir.path(), "ca", Role::Admin, &[]).is_err());
    }

    fn x509_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&body)
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = T.iter().position(|t| *t == c).unwrap() as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }
}
