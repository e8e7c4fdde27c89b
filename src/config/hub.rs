//! The hub's configuration: listeners, the agents' CA, tenants and their users.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Validate, check_file, resolve, valid_name};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub flight: FlightListener,
    pub tunnel: TunnelListener,
    /// Tenants by name. Each tenant's users only ever reach its own agents.
    #[serde(default)]
    pub tenants: BTreeMap<String, Tenant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightListener {
    /// Address of the Arrow Flight SQL (gRPC) listener.
    pub listen: SocketAddr,
    /// Optional TLS for Flight clients (PEM); plaintext when unset.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Lifetime of the bearer token a Basic handshake returns, in seconds.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
}

fn default_token_ttl() -> u64 {
    3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelListener {
    /// UDP address agents dial (QUIC).
    pub listen: SocketAddr,
    /// The hub's certificate and key (PEM) presented to agents.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA (PEM) whose signature on a client certificate makes an agent.
    pub client_ca: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Agent ids (certificate common names) that belong to this tenant.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Source used when a client names none.
    pub default_source: Option<String>,
    /// Users allowed to log in with Flight SQL Basic authentication.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Argon2 PHC string (`gatehouse hub hash-password`).
    pub password_hash: Option<String>,
    /// Or: name of an environment variable holding the password.
    pub password_env: Option<String>,
}

impl HubConfig {
    /// Which tenant an agent id belongs to.
    pub fn tenant_of_agent(&self) -> HashMap<String, String> {
        self.tenants
            .iter()
            .flat_map(|(t, cfg)| cfg.agents.iter().map(move |a| (a.clone(), t.clone())))
            .collect()
    }
}

impl Validate for HubConfig {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.tunnel.cert);
        resolve(base, &mut self.tunnel.key);
        resolve(base, &mut self.tunnel.client_ca);
        if let Some(p) = &mut self.flight.tls_cert {
            resolve(base, p);
        }
        if let Some(p) = &mut self.flight.tls_key {
            resolve(base, p);
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_file(&mut p, "tunnel.cert", &self.tunnel.cert);
        check_file(&mut p, "tunnel.key", &self.tunnel.key);
        check_file(&mut p, "tunnel.client_ca", &self.tunnel.client_ca);
        match (&self.flight.tls_cert, &self.flight.tls_key) {
            (Some(c), Some(k)) => {
                check_file(&mut p, "flight.tls_cert", c);
                check_file(&mut p, "flight.tls_key", k);
            }
            (None, None) => {}
            _ => p.push("flight: set both tls_cert and tls_key, or neither".into()),
        }
        if self.tenants.is_empty() {
            p.push("no [tenants.NAME] configured: nobody could log in".into());
        }
        let mut agents: HashMap<&str, &str> = HashMap::new();
        let mut users: HashMap<&str, &str> = HashMap::new();
        for (tname, t) in &self.tenants {
            if !valid_name(tname) {
                p.push(format!(
                    "tenants.{tname}: names may use letters, digits, '_', '-' and '.'"
                ));
            }
            for a in &t.agents {
                if let Some(other) = agents.insert(a, tname) {
                    p.push(format!("agent {a:?} is listed under tenants {other} and {tname}; an agent belongs to one tenant"));
                }
            }
            for (uname, u) in &t.users {
                if let Some(other) = users.insert(uname, tname) {
                    p.push(format!("user {uname:?} is listed under tenants {other} and {tname}; user names are unique across the hub"));
                }
                match (&u.password_hash, &u.password_env) {
                    (Some(h), None) => {
                        if argon2::PasswordHash::new(h).is_err() {
                            p.push(format!("tenants.{tname}.users.{uname}.password_hash is not a PHC string; make one with `gatehouse hub hash-password`"));
                        }
                    }
                    (None, Some(var)) => {
                        if std::env::var(var).is_err() {
                            p.push(format!("tenants.{tname}.users.{uname}: environment variable {var} is not set"));
                        }
                    }
                    _ => p.push(format!("tenants.{tname}.users.{uname}: set exactly one of password_hash or password_env")),
                }
            }
        }
        p
    }
}
