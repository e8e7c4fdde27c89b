//! Renewing the agent's short-lived certificate over the tunnel: before it
//! expires, the agent makes a new key pair, sends a certificate request on
//! its control stream, and swaps the files in when the hub answers. The new
//! certificate is used from the next connection on.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::protocol::pb;

/// The agent's certificate and key files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Renew when less than this is left (default: a third of the lifetime).
    pub renew_before: Option<Duration>,
}

/// Whether the certificate should be renewed now.
pub fn due(id: &Identity) -> bool {
    match remaining(&id.cert) {
        Some((left, lifetime)) => left < id.renew_before.unwrap_or(lifetime / 3),
        None => false,
    }
}

/// Time left and total lifetime of the certificate in `path`.
fn remaining(path: &Path) -> Option<(Duration, Duration)> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let validity = cert.validity();
    let (from, to) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((
        Duration::from_secs(to.saturating_sub(now).max(0) as u64),
        Duration::from_secs(to.saturating_sub(from).max(0) as u64),
    ))
}

/// A new key pair and the request for its certificate.
pub fn request() -> Result<(rcgen::KeyPair, pb::AgentControl), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr_pem = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())?;
    Ok((
        key,
        pb::AgentControl {
            msg: Some(pb::agent_control::Msg::Renew(pb::RenewRequest { csr_pem })),
        },
    ))
}

/// Puts the new key and certificate in place of the old ones: both are
/// written beside them first, then renamed, key then certificate.
pub fn install(id: &Identity, key: &rcgen::KeyPair, cert_pem: &str) -> std::io::Result<()> {
    let tmp = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(".renewing");
        PathBuf::from(name)
    };
    let (key_tmp, cert_tmp) = (tmp(&id.key), tmp(&id.cert));
    write(&key_tmp, key.serialize_pem().as_bytes(), 0o600)?;
    write(&cert_tmp, cert_pem.as_bytes(), 0o644)?;
    std::fs::rename(&key_tmp, &id.key)?;
    std::fs::rename(&cert_tmp, &id.cert)
}

/// Writes `bytes` to `path` with `mode` (on Unix), flushed to disk.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_in_the_last_third_or_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(20);
        p.not_after = now + time::Duration::days(10);
        let cert = dir.path().join("agent.pem");
        std::fs::write(&cert, p.self_signed(&key).unwrap().pem()).unwrap();
        let id = |before| Identity {
            cert: cert.clone(),
            key: dir.path().join("agent.key"),
            renew_before: before,
        };
        // 10 of 30 days left: not yet in the last third.
        assert!(!due(&id(None)));
        assert!(due(&id(Some(Duration::from_secs(11 * 86_400)))));
        p.not_after = now + time::Duration::days(9);
        std::fs::write(&cert, p.self_signed(&key).unwrap().pem()).unwrap();
        assert!(due(&id(None)));
        // Installing replaces both files (key and certificate, even when
        // their names differ only in the extension).
        let (new_key, _) = request().unwrap();
        std::fs::write(dir.path().join("agent.key"), "OLD KEY").unwrap();
        install(&id(None), &new_key, "CERT").unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "CERT");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("agent.key")).unwrap(),
            new_key.serialize_pem()
        );
    }
}
