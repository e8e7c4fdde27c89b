//! `gatehouse agent enroll`: the agent makes its own key pair, sends a
//! certificate request with a one-time token to the hub's provisioning API,
//! and stores the certificate it gets back. The private key never leaves the
//! machine. The token carries the SHA-256 of the hub's CA certificate, and
//! the TLS connection is verified against that CA only, so a man in the
//! middle (even one with a publicly trusted certificate) is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::hub::admin::{EnrolRequest, Enrolled};

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("the enrolment token is malformed: expected SECRET.PIN as the hub's API printed it")]
    Token,
    #[error("{0} exists: this machine looks enrolled already; remove it to enrol again")]
    Exists(PathBuf),
    #[error("cannot reach the hub at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the hub refused the enrolment: {0}")]
    Refused(String),
    #[error("writing {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

/// Where an enrolment left its files.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub tenant: String,
    pub agent_id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hub_ca: PathBuf,
}

/// Enrols with the hub whose provisioning API is at `hub` (`https://host:port`).
pub async fn enroll(hub: &str, token: &str, dir: &Path) -> Result<Enrolment, EnrolError> {
    crate::transport::tls::install_crypto_provider();
    let (secret, pin) = token.trim().rsplit_once('.').ok_or(EnrolError::Token)?;
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return Err(EnrolError::Token);
    }
    let (cert, key, hub_ca) = (
        dir.join("agent.pem"),
        dir.join("agent.key"),
        dir.join("hub-ca.pem"),
    );
    for p in [&cert, &key] {
        if p.exists() {
            return Err(EnrolError::Exists(p.clone()));
        }
    }
    let key_pair = rcgen::KeyPair::generate().map_err(|e| EnrolError::Internal(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key_pair))
        .and_then(|r| r.pem())
        .map_err(|e| EnrolError::Internal(e.to_string()))?;

    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EnrolError::Internal(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(PinnedCa {
        pin: pin.to_ascii_lowercase(),
    }))
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| EnrolError::Internal(e.to_string()))?;
    let url = format!("{}/v1/enrol", hub.trim_end_matches('/'));
    let response = client
        .post(&url)
        .json(&EnrolRequest {
            token: secret.to_string(),
            csr,
        })
        .send()
        .await
        .map_err(|e| EnrolError::Unreachable {
            url: url.clone(),
            detail: chain(&e),
        })?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Err(EnrolError::Refused(format!("{status}: {why}")));
    }
    let enrolled: Enrolled = response
        .json()
        .await
        .map_err(|e| EnrolError::Refused(format!("unexpected answer: {e}")))?;

    std::fs::create_dir_all(dir).map_err(|error| EnrolError::Write {
        path: dir.into(),
        error,
    })?;
    write(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write(&cert, enrolled.certificate.as_bytes(), 0o644)?;
    write(&hub_ca, enrolled.hub_ca.as_bytes(), 0o644)?;
    Ok(Enrolment {
        tenant: enrolled.tenant,
        agent_id: enrolled.agent_id,
        cert,
        key,
        hub_ca,
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrolError> {
    super::renew::write(path, bytes, mode).map_err(|error| EnrolError::Write {
        path: path.into(),
        error,
    })
}

/// Trusts only a chain that includes the pinned CA, verified as usual
/// (signature, validity, host name) with that CA as the only root.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
}

impl PinnedCa {
    fn verifier(
        &self,
        ca: &CertificateDer<'_>,
    ) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .find(|c| format!("{:x}", Sha256::digest(c.as_ref())) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the hub's certificate chain does not include the CA this enrolment token pins: \
                     the wrong hub, or a man in the middle"
                        .into(),
                )
            })?;
        self.verifier(pinned)?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
