//! TLS from the agent to a database server (rustls), with the four modes
//! of [`DbTlsMode`]: the PostgreSQL connector uses it; mysql_async applies
//! the same modes through its own options.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};

use super::ConnectorError;
use crate::config::agent::{DbTls, DbTlsMode};

/// The client configuration for `tls`, or `None` for plain TCP.
pub fn client_config(tls: &DbTls) -> Result<Option<ClientConfig>, ConnectorError> {
    if tls.mode == DbTlsMode::Disable {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| ConnectorError::Connect(format!("tls.ca {}: {e}", path.display())))?;
            for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: CertificateDer = cert.map_err(|e| {
                    ConnectorError::Connect(format!("tls.ca {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    ConnectorError::Connect(format!("tls.ca {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ConnectorError::Connect(format!("TLS roots: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::Connect(format!("TLS: {e}")))?;
    let config = match tls.mode {
        DbTlsMode::VerifyFull | DbTlsMode::Strict => builder.with_webpki_verifier(webpki),
        mode => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                webpki,
                check_chain: mode == DbTlsMode::VerifyCa,
            })),
    }
    .with_no_client_auth();
    Ok(Some(config))
}

/// `require`: any certificate; `verify-ca`: signed by the roots, any name.
/// Handshake signatures are always checked.
#[derive(Debug)]
struct Relaxed {
    webpki: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
