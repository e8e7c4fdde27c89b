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
    /// The hub's record of every query (JSON lines).
    pub audit: Option<super::AuditConfig>,
    /// Where the hub keeps tenants, enrolled agents, tokens, settings made
    /// through the API and the audit trail (default: `hub-state.db`, an
    /// SQLite file beside the configuration file).
    #[serde(default = "default_state")]
    pub state: Option<StateConfig>,
    /// The provisioning API (HTTPS): admin API keys and agent enrolment.
    pub admin: Option<AdminListener>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `sqlite:///var/lib/gatehouse/hub.db` (created if missing) or
    /// `postgres://user@host/db` when several hub replicas share state.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminListener {
    pub listen: SocketAddr,
    /// Certificate chain (PEM: the hub's certificate first, the CA that
    /// signed it last) and key. Enrolment tokens pin that CA.
    pub tls_chain: PathBuf,
    pub tls_key: PathBuf,
    /// Key (PEM) of `tunnel.client_ca`, to sign enrolled agents' certificates.
    pub client_ca_key: PathBuf,
    /// Lifetime of an enrolled agent's certificate, in days (default 30).
    #[serde(default = "default_cert_days")]
    pub agent_cert_days: u32,
}

fn default_state() -> Option<StateConfig> {
    Some(StateConfig {
        url: "sqlite:hub-state.db".into(),
    })
}

fn default_cert_days() -> u32 {
    30
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

#[derive(Debug, Clone, Default, Deserialize)]
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
    /// The identity provider whose JWT bearer tokens admit this tenant's users.
    pub identity: Option<Identity>,
    /// Group (from the token) -> the roles its members get.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Role -> what it may use. A tenant without grants lets every user use
    /// every source in every mode (simple set-ups); with grants, a caller may
    /// use only what one of their roles is granted.
    #[serde(default)]
    pub grants: BTreeMap<String, Grant>,
}

/// A platform identity provider (OpenID Connect style JWTs).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The `iss` tokens carry, exactly.
    pub issuer: String,
    /// Accepted `aud` values (one of them must be in the token).
    pub audience: Vec<String>,
    /// Signing keys: a JWKS URL (https, or http on loopback), re-read when a
    /// token names an unknown key, so the provider can rotate keys ...
    pub jwks_url: Option<String>,
    /// ... or a JWKS file, re-read the same way ...
    pub jwks_file: Option<PathBuf>,
    /// ... or an HS256 shared secret in this environment variable ...
    pub hs256_secret_env: Option<String>,
    /// ... or in this file (e.g. a systemd credential).
    pub hs256_secret_file: Option<PathBuf>,
    /// A claim that must hold `tenant_value`: required when several tenants
    /// trust the same issuer (one platform identity provider for all tenants).
    pub tenant_claim: Option<String>,
    pub tenant_value: Option<String>,
    /// The claim naming the user (default `sub`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim listing the user's groups (default `groups`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Clock leeway for `exp` and `nbf`, in seconds (default 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_user_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> u64 {
    60
}

/// What a role may use: sources by name (`*` for all) and modes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub sources: Vec<String>,
    #[serde(default = "all_modes")]
    pub modes: Vec<super::agent::ModeName>,
}

fn all_modes() -> Vec<super::agent::ModeName> {
    vec![
        super::agent::ModeName::Realtime,
        super::agent::ModeName::Reload,
    ]
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Argon2 PHC string (`gatehouse hub hash-password`).
    pub password_hash: Option<String>,
    /// Or: name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// The roles this user has (see the tenant's `grants`).
    #[serde(default)]
    pub roles: Vec<String>,
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

pub(crate) fn check_roles(p: &mut Vec<String>, at: &str, roles: &[String], t: &Tenant) {
    for r in roles {
        if !t.grants.contains_key(r) {
            p.push(format!(
                "{at}: role {r:?} has no [grants.{r}] in this tenant"
            ));
        }
    }
}

pub(crate) fn check_identity(p: &mut Vec<String>, tname: &str, i: &Identity) {
    let at = format!("tenants.{tname}.identity");
    let keys = [
        i.jwks_url.is_some(),
        i.jwks_file.is_some(),
        i.hs256_secret_env.is_some(),
        i.hs256_secret_file.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() != 1 {
        p.push(format!(
            "{at}: set exactly one of jwks_url, jwks_file, hs256_secret_env and hs256_secret_file"
        ));
    }
    if let Some(f) = &i.hs256_secret_file {
        match std::fs::read(f) {
            Ok(s) if s.trim_ascii().len() >= 32 => {}
            Ok(_) => p.push(format!(
                "{at}: the HS256 secret in {} is shorter than 32 bytes",
                f.display()
            )),
            Err(e) => p.push(format!("{at}.hs256_secret_file {}: {e}", f.display())),
        }
    }
    if let Some(url) = &i.jwks_url
        && !crate::auth::jwt::acceptable_jwks_url(url)
    {
        p.push(format!(
            "{at}.jwks_url {url:?} must be https (plain http only on localhost)"
        ));
    }
    if let Some(f) = &i.jwks_file {
        check_file(p, &format!("{at}.jwks_file"), f);
    }
    if let Some(var) = &i.hs256_secret_env {
        match std::env::var(var) {
            Ok(s) if s.len() >= 32 => {}
            Ok(_) => p.push(format!(
                "{at}: the HS256 secret in {var} is shorter than 32 bytes"
            )),
            Err(_) => p.push(format!("{at}: environment variable {var} is not set")),
        }
    }
    if i.audience.is_empty() {
        p.push(format!("{at}.audience: list at least one audience"));
    }
    if i.tenant_claim.is_some() != i.tenant_value.is_some() {
        p.push(format!("{at}: set tenant_claim and tenant_value together"));
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
        if let Some(a) = &mut self.audit {
            resolve(base, &mut a.path);
        }
        // A relative SQLite file is beside the configuration file.
        if let Some(s) = &mut self.state
            && let Some(path) = s
                .url
                .strip_prefix("sqlite://")
                .or(s.url.strip_prefix("sqlite:"))
        {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let mut file = PathBuf::from(path);
            resolve(base, &mut file);
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            s.url = format!("sqlite://{}{query}", file.display());
        }
        if let Some(a) = &mut self.admin {
            resolve(base, &mut a.tls_chain);
            resolve(base, &mut a.tls_key);
            resolve(base, &mut a.client_ca_key);
        }
        for t in self.tenants.values_mut() {
            if let Some(i) = t.identity.as_mut() {
                for f in [i.jwks_file.as_mut(), i.hs256_secret_file.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    resolve(base, f);
                }
            }
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
        if let Some(a) = &self.admin {
            check_file(&mut p, "admin.tls_chain", &a.tls_chain);
            check_file(&mut p, "admin.tls_key", &a.tls_key);
            check_file(&mut p, "admin.client_ca_key", &a.client_ca_key);
            if self.state.is_none() {
                p.push("admin: the provisioning API needs [state] (where tenants, agents and tokens live)".into());
            }
            if a.agent_cert_days == 0 || a.agent_cert_days > 397 {
                p.push("admin.agent_cert_days must be 1 to 397".into());
            }
        }
        if let Some(s) = &self.state
            && !(s.url.starts_with("sqlite:")
                || s.url.starts_with("postgres://")
                || s.url.starts_with("postgresql://"))
        {
            p.push(format!(
                "state.url {:?} must be sqlite:PATH or postgres://...",
                s.url
            ));
        }
        if let Some(dir) = self.audit.as_ref().and_then(|a| a.path.parent())
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            p.push(format!(
                "audit.path: the directory {} does not exist",
                dir.display()
            ));
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
                check_roles(
                    &mut p,
                    &format!("tenants.{tname}.users.{uname}.roles"),
                    &u.roles,
                    t,
                );
            }
            for (group, roles) in &t.roles {
                check_roles(&mut p, &format!("tenants.{tname}.roles.{group}"), roles, t);
            }
            for (role, g) in &t.grants {
                if g.sources.is_empty() || g.modes.is_empty() {
                    p.push(format!(
                        "tenants.{tname}.grants.{role}: grant at least one source and one mode"
                    ));
                }
            }
            if let Some(i) = &t.identity {
                check_identity(&mut p, tname, i);
            }
        }
        // Tenants trusting one issuer must be told apart by a claim.
        let mut by_issuer: HashMap<&str, Vec<(&str, Option<&str>)>> = HashMap::new();
        for (tname, t) in &self.tenants {
            if let Some(i) = &t.identity {
                by_issuer
                    .entry(i.issuer.as_str())
                    .or_default()
                    .push((tname, i.tenant_value.as_deref()));
            }
        }
        for (issuer, tenants) in by_issuer {
            if tenants.len() < 2 {
                continue;
            }
            let mut values: Vec<Option<&str>> = tenants.iter().map(|(_, v)| *v).collect();
            values.sort();
            values.dedup();
            if values.len() != tenants.len() || values.contains(&None) {
                let names: Vec<&str> = tenants.iter().map(|(t, _)| *t).collect();
                p.push(format!(
                    "tenants {} all trust issuer {issuer:?}: give each a distinct identity.tenant_claim / tenant_value so a token admits one tenant only",
                    names.join(", ")
                ));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> HubConfig {
        crate::config::parse(&format!(
            "[flight]\nlisten = '127.0.0.1:0'\n[tunnel]\nlisten = '127.0.0.1:0'\ncert = 'c'\nkey = 'k'\nclient_ca = 'ca'\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn state_defaults_to_a_sqlite_file_beside_the_config() {
        let mut cfg = parse("");
        cfg.resolve_paths(Path::new("/etc/gatehouse"));
        assert_eq!(
            cfg.state.unwrap().url,
            "sqlite:///etc/gatehouse/hub-state.db"
        );
        let mut cfg = parse("[state]\nurl = 'sqlite:///var/lib/gatehouse/hub.db?mode=rwc'\n");
        cfg.resolve_paths(Path::new("/etc/gatehouse"));
        assert_eq!(
            cfg.state.unwrap().url,
            "sqlite:///var/lib/gatehouse/hub.db?mode=rwc"
        );
        let mut cfg = parse("[state]\nurl = 'postgres://hub@db/gatehouse'\n");
        cfg.resolve_paths(Path::new("/etc/gatehouse"));
        assert_eq!(cfg.state.unwrap().url, "postgres://hub@db/gatehouse");
    }
}
