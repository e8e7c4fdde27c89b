//! Certificates and rustls configurations for the tunnel.
//!
//! The hub holds a CA; every agent has a client certificate signed by it whose
//! common name is the agent id. `gatehouse hub dev-ca` and `dev-agent-cert`
//! create such a CA and certificates for development, tests and the demo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::protocol::ALPN;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no usable PEM {what}: {detail}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Config(String),
    #[error("the peer presented no usable client certificate: {0}")]
    PeerIdentity(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.into(),
        error,
    })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.into(),
        what: "certificate",
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            what: "certificate",
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.into(),
        what: "private key",
        detail: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA certificate {}: {e}", ca.display())))?;
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Hub side: TLS 1.3 only, our ALPN, and a client certificate signed by `client_ca`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(format!("hub certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Agent side: trusts only `ca` for the hub, presents its own certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(format!("agent certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The agent id: the common name of the (already verified) client certificate.
pub fn agent_id(chain: &[CertificateDer<'_>]) -> Result<String, TlsError> {
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::PeerIdentity("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::PeerIdentity(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::PeerIdentity("certificate has no common name".into()))?;
    Ok(cn.to_string())
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |error| TlsError::Write {
        path: path.into(),
        error,
    };
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(path)
            .map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        std::fs::write(path, contents).map_err(err)
    }
}

/// Files of a development PKI in one directory.
pub struct DevPki {
    pub dir: PathBuf,
}

impl DevPki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn hub_cert(&self) -> PathBuf {
        self.dir.join("hub.pem")
    }
    pub fn hub_key(&self) -> PathBuf {
        self.dir.join("hub.key")
    }
    pub fn agent_cert(&self, agent_id: &str) -> PathBuf {
        self.dir.join(format!("agent-{agent_id}.pem"))
    }
    pub fn agent_key(&self, agent_id: &str) -> PathBuf {
        self.dir.join(format!("agent-{agent_id}.key"))
    }

    /// Creates a CA and a hub server certificate for `hub_names` (DNS names or IPs).
    pub fn create(dir: &Path, hub_names: &[String]) -> Result<Self, TlsError> {
        std::fs::create_dir_all(dir).map_err(|error| TlsError::Write {
            path: dir.into(),
            error,
        })?;
        let pki = DevPki { dir: dir.into() };
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "Gatehouse development CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        write_file(&pki.ca_cert(), &ca_cert.pem(), false)?;
        write_file(&pki.ca_key(), &ca_key.serialize_pem(), true)?;

        let issuer = Issuer::new(ca, ca_key);
        let hub_key = KeyPair::generate()?;
        let mut hub = CertificateParams::new(hub_names.to_vec())?;
        hub.distinguished_name
            .push(DnType::CommonName, "gatehouse hub");
        hub.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let hub_cert = hub.signed_by(&hub_key, &issuer)?;
        write_file(&pki.hub_cert(), &hub_cert.pem(), false)?;
        write_file(&pki.hub_key(), &hub_key.serialize_pem(), true)?;
        Ok(pki)
    }

    pub fn open(dir: &Path) -> Self {
        DevPki { dir: dir.into() }
    }

    /// Issues a client certificate whose common name is `agent_id`.
    pub fn issue_agent(&self, agent_id: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let ca_pem = String::from_utf8_lossy(&read(&self.ca_cert())?).into_owned();
        let ca_key_pem = String::from_utf8_lossy(&read(&self.ca_key())?).into_owned();
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let (c, k) = (self.agent_cert(agent_id), self.agent_key(agent_id));
        write_file(&c, &cert.pem(), false)?;
        write_file(&k, &key.serialize_pem(), true)?;
        Ok((c, k))
    }
}

/// Makes ring rustls' process-wide default. Both ring and aws-lc-rs are
/// compiled in (tiberius needs the latter's module), and with two providers
/// rustls cannot pick one itself: libraries that ask for the default (tonic's
/// TLS, mysql_async, tiberius) would panic or differ. Idempotent; called by
/// every entry point that builds TLS configurations.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_issues_usable_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::create(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (cert, key) = pki.issue_agent("agent-7").unwrap();
        server_config(&pki.hub_cert(), &pki.hub_key(), &pki.ca_cert()).unwrap();
        client_config(&pki.ca_cert(), &cert, &key).unwrap();
        assert_eq!(agent_id(&load_certs(&cert).unwrap()).unwrap(), "agent-7");
        let err = load_certs(&pki.hub_key()).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
