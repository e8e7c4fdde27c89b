//! Client authentication at the hub: JWT bearer tokens from a tenant's
//! identity provider (`jwt`), or Basic credentials checked against the
//! configured users and traded for an opaque bearer token bound to one
//! tenant. Either way the caller ends up a [`Principal`] whose roles decide
//! which sources and modes it may use.

pub mod jwt;
pub mod live;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use rand::RngCore;

use crate::config::hub::{Grant, HubConfig, Tenant};
use crate::protocol::pb;

/// Who is calling: fixed at login, never taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub user: String,
    /// Groups from the token (empty for Basic users).
    pub groups: Vec<String>,
    /// Roles given directly (Basic users; a token's come from its groups).
    pub roles: Vec<String>,
    pub access: Access,
}

/// What a caller may use, from the grants of their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The tenant has no grants: every source, every mode.
    All,
    /// Each source and mode must be in one of these.
    Granted(Vec<Grant>),
}

impl Access {
    /// The access `roles` give in `tenant`.
    pub fn of<'a>(tenant: &Tenant, roles: impl IntoIterator<Item = &'a str>) -> Access {
        if tenant.grants.is_empty() {
            return Access::All;
        }
        let mut grants: Vec<Grant> = roles
            .into_iter()
            .filter_map(|r| tenant.grants.get(r).cloned())
            .collect();
        grants.dedup();
        Access::Granted(grants)
    }

    /// Whether any mode of `source` may be used (catalog listings).
    pub fn sees(&self, source: &str) -> bool {
        match self {
            Access::All => true,
            Access::Granted(g) => g.iter().any(|g| covers(g, source)),
        }
    }

    pub fn allows(&self, source: &str, mode: pb::Mode) -> bool {
        match self {
            Access::All => true,
            Access::Granted(g) => g
                .iter()
                .any(|g| covers(g, source) && g.modes.iter().any(|m| pb::Mode::from(*m) == mode)),
        }
    }
}

fn covers(g: &Grant, source: &str) -> bool {
    g.sources.iter().any(|s| s == "*" || s == source)
}

/// The roles `groups` map to in `tenant`.
pub fn roles_of<'a>(tenant: &'a Tenant, groups: &[String]) -> Vec<&'a str> {
    let mut roles: Vec<&str> = groups
        .iter()
        .filter_map(|g| tenant.roles.get(g))
        .flatten()
        .map(String::as_str)
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

/// A mode's name for messages.
pub fn mode_name(mode: pb::Mode) -> &'static str {
    match mode {
        pb::Mode::Reload => "reload",
        _ => "realtime",
    }
}

enum Credential {
    Hash(String),
    Plain(String),
}

/// The users of every tenant, by (hub-unique) user name.
pub struct Users {
    by_name: HashMap<String, (String, Credential, Vec<String>)>,
}

impl Users {
    pub fn from_config(cfg: &HubConfig) -> Users {
        let mut by_name = HashMap::new();
        for (tenant, t) in &cfg.tenants {
            for (name, u) in &t.users {
                let cred = match (&u.password_hash, &u.password_env) {
                    (Some(h), _) => Credential::Hash(h.clone()),
                    (None, Some(var)) => Credential::Plain(std::env::var(var).unwrap_or_default()),
                    (None, None) => continue,
                };
                by_name.insert(name.clone(), (tenant.clone(), cred, u.roles.clone()));
            }
        }
        Users { by_name }
    }

    /// The principal for valid credentials; `None` says nothing about which part was wrong.
    pub fn verify(&self, user: &str, password: &str) -> Option<Principal> {
        let (tenant, cred, roles) = self.by_name.get(user)?;
        let ok = match cred {
            Credential::Hash(h) => PasswordHash::new(h)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false),
            Credential::Plain(p) => {
                !p.is_empty() && constant_time_eq(p.as_bytes(), password.as_bytes())
            }
        };
        ok.then(|| Principal {
            tenant: tenant.clone(),
            user: user.to_string(),
            groups: Vec::new(),
            roles: roles.clone(),
            // Decided per call from the settings in force.
            access: Access::Granted(Vec::new()),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Argon2id PHC string for a password (`gatehouse hub hash-password`).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let salt = SaltString::encode_b64(&raw)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Bearer tokens handed out by the handshake.
pub struct Sessions {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn issue(&self, p: Principal) -> String {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut tokens = self.tokens.lock().expect("sessions lock");
        tokens.retain(|_, (_, issued)| now.duration_since(*issued) < self.ttl);
        tokens.insert(token.clone(), (p, now));
        token
    }

    pub fn check(&self, token: &str) -> Option<Principal> {
        let tokens = self.tokens.lock().expect("sessions lock");
        let (p, issued) = tokens.get(token)?;
        (issued.elapsed() < self.ttl).then(|| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_tokens_expire() {
        let h = hash_password("s3cret").unwrap();
        let cfg: HubConfig = crate::config::parse(&format!(
            r#"
            [flight]
            listen = "127.0.0.1:0"
            [tunnel]
            listen = "127.0.0.1:0"
            cert = "c"
            key = "k"
            client_ca = "ca"
            [tenants.acme.users.alice]
            password_hash = "{h}"
            "#
        ))
        .unwrap();
        let users = Users::from_config(&cfg);
        let p = users.verify("alice", "s3cret").unwrap();
        assert_eq!(p.tenant, "acme");
        assert!(users.verify("alice", "wrong").is_none());
        assert!(users.verify("bob", "s3cret").is_none());

        let s = Sessions::new(Duration::from_millis(50));
        let t = s.issue(p.clone());
        assert_eq!(s.check(&t), Some(p));
        assert!(s.check("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.check(&t).is_none());
    }
}
