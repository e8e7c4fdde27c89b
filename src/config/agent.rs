//! The agent's configuration: where the hub is, who the agent is, and the
//! local data sources with the administrator's own rules. The hub cannot
//! change any of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use super::{AuditConfig, AuditSql};
use super::{Validate, check_file, resolve, valid_name};
use crate::protocol::pb;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub hub: HubConnection,
    /// Data sources by name; the name is the catalog Flight SQL clients see.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Seconds running queries get to finish on shutdown.
    #[serde(default = "default_drain_secs")]
    pub drain_timeout_secs: u64,
    /// Reloads step aside while realtime queries run, and reload threads run
    /// at the OS's idle priority (default). Off: reloads run flat out.
    #[serde(default = "yes")]
    pub realtime_first: bool,
    /// The agent's own record of every request it served (JSON lines).
    pub audit: Option<AuditConfig>,
}

fn default_drain_secs() -> u64 {
    30
}

impl AgentConfig {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConnection {
    /// `host:port` of the hub's tunnel listener (UDP).
    pub address: String,
    /// Name to verify in the hub's certificate; defaults to the host of `address`.
    pub server_name: Option<String>,
    /// CA certificate (PEM) that signed the hub's certificate.
    pub ca: PathBuf,
    /// This agent's client certificate and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Renew the certificate over the tunnel when fewer days than this are
    /// left (default: a third of its lifetime). The hub renews only
    /// certificates it issued by enrolment.
    pub renew_before_days: Option<u32>,
}

impl HubConnection {
    pub fn host(&self) -> &str {
        match self.address.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => &self.address,
        }
    }

    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or_else(|| self.host())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Sqlite(SqliteSource),
    Postgres(ServerSource),
    /// MySQL and MariaDB.
    Mysql(ServerSource),
    /// Microsoft SQL Server and Azure SQL.
    Sqlserver(ServerSource),
}

impl SourceConfig {
    pub fn limits(&self) -> &Limits {
        match self {
            SourceConfig::Sqlite(s) => &s.limits,
            SourceConfig::Postgres(s) | SourceConfig::Mysql(s) | SourceConfig::Sqlserver(s) => {
                &s.limits
            }
        }
    }

    pub fn read_only(&self) -> bool {
        match self {
            SourceConfig::Sqlite(s) => s.read_only,
            SourceConfig::Postgres(s) | SourceConfig::Mysql(s) | SourceConfig::Sqlserver(s) => {
                s.read_only
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sqlite(_) => "sqlite",
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
            SourceConfig::Sqlserver(_) => "sqlserver",
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSource {
    pub path: PathBuf,
    /// Open the file read-only (default).
    #[serde(default = "yes")]
    pub read_only: bool,
    #[serde(default)]
    pub limits: Limits,
}

/// A database server reached over the network: PostgreSQL, MySQL/MariaDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSource {
    pub host: String,
    /// Default: the database's own (5432 PostgreSQL, 3306 MySQL, 1433 SQL Server).
    pub port: Option<u16>,
    pub user: String,
    pub database: String,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password; trailing newline ignored.
    pub password_file: Option<PathBuf>,
    /// Name of a systemd credential holding the password (`LoadCredential=` or
    /// `LoadCredentialEncrypted=` in the unit): read from `$CREDENTIALS_DIRECTORY`.
    pub password_credential: Option<String>,
    /// Sessions are read-only (default): PostgreSQL's
    /// `default_transaction_read_only = on`, MySQL's `SET SESSION TRANSACTION READ ONLY`;
    /// SQL Server has no read-only session, so its login must not hold write
    /// permissions (checked on connect) and sessions ask for read-only intent.
    #[serde(default = "yes")]
    pub read_only: bool,
    /// Pooled connections kept open to the database.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Seconds to wait for a connection to the database.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// TLS to the database.
    #[serde(default)]
    pub tls: DbTls,
    #[serde(default)]
    pub limits: Limits,
}

fn default_pool() -> usize {
    8
}
fn default_connect_timeout() -> u64 {
    10
}

impl ServerSource {
    /// The password from an environment variable or a file; never logged.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("environment variable {var} (password_env) is not set"));
        }
        if let Some(file) = &self.password_file {
            return std::fs::read_to_string(file)
                .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| format!("password_file {}: {e}", file.display()));
        }
        if let Some(name) = &self.password_credential {
            return credential(std::env::var_os("CREDENTIALS_DIRECTORY"), name).map(Some);
        }
        Ok(None)
    }
}

/// A systemd credential: the file `name` in `$CREDENTIALS_DIRECTORY` (`dir`).
fn credential(dir: Option<std::ffi::OsString>, name: &str) -> Result<String, String> {
    let Some(dir) = dir else {
        return Err(format!(
            "password_credential {name:?}: $CREDENTIALS_DIRECTORY is not set; run the agent \
             under systemd with LoadCredential={name}:/path/to/secret in its unit"
        ));
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!(
            "password_credential {name:?} must be a plain credential name"
        ));
    }
    let file = Path::new(&dir).join(name);
    std::fs::read_to_string(&file)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("password_credential {name:?} ({}): {e}", file.display()))
}

/// TLS from the agent to a database server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbTls {
    #[serde(default)]
    pub mode: DbTlsMode,
    /// CA certificate (PEM) to verify the server with, instead of the
    /// system's roots.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbTlsMode {
    /// Plain TCP (a database on the same host or a trusted segment).
    #[default]
    Disable,
    /// Encrypted, but the server's certificate is not checked.
    Require,
    /// Encrypted, certificate signed by the CA; the host name is not checked.
    VerifyCa,
    /// Encrypted, certificate signed by the CA and naming the host.
    VerifyFull,
    /// SQL Server only: TDS 8 (TLS before any TDS byte, as HTTPS does),
    /// verified as `verify-full`.
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    Realtime,
    Reload,
}

impl From<ModeName> for pb::Mode {
    fn from(m: ModeName) -> Self {
        match m {
            ModeName::Realtime => pb::Mode::Realtime,
            ModeName::Reload => pb::Mode::Reload,
        }
    }
}

/// The administrator's limits for one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Modes clients may use.
    pub modes: Vec<ModeName>,
    /// Most rows one query may return; 0 = no limit.
    pub max_rows: u64,
    /// Most bytes of Arrow data (uncompressed) one query may return; 0 = no limit.
    pub max_bytes: u64,
    /// Longest a query may run, in seconds.
    pub max_duration_secs: u64,
    /// Realtime queries running at once; more wait for a permit.
    pub realtime_concurrency: usize,
    /// Reload queries running at once; more wait for a permit.
    pub reload_concurrency: usize,
    /// Seconds a query waits for a permit before it is refused as busy.
    pub queue_timeout_secs: u64,
    /// When set, only queries on these tables run: `schema.table`,
    /// `schema.*`, or `table` in the source's default schema.
    pub allow_tables: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            modes: vec![ModeName::Realtime, ModeName::Reload],
            max_rows: 0,
            max_bytes: 0,
            max_duration_secs: 3600,
            realtime_concurrency: 32,
            reload_concurrency: 2,
            queue_timeout_secs: 30,
            allow_tables: Vec::new(),
        }
    }
}

impl Validate for AgentConfig {
    fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.hub.ca);
        resolve(base, &mut self.hub.cert);
        resolve(base, &mut self.hub.key);
        if let Some(a) = &mut self.audit {
            resolve(base, &mut a.path);
        }
        for s in self.sources.values_mut() {
            match s {
                SourceConfig::Sqlite(s) => resolve(base, &mut s.path),
                SourceConfig::Postgres(s) | SourceConfig::Mysql(s) | SourceConfig::Sqlserver(s) => {
                    if let Some(f) = &mut s.password_file {
                        resolve(base, f);
                    }
                    if let Some(f) = &mut s.tls.ca {
                        resolve(base, f);
                    }
                }
            }
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.hub.address.contains(':') {
            p.push(format!(
                "hub.address {:?} must be host:port",
                self.hub.address
            ));
        }
        check_file(&mut p, "hub.ca", &self.hub.ca);
        check_file(&mut p, "hub.cert", &self.hub.cert);
        check_file(&mut p, "hub.key", &self.hub.key);
        if let Some(a) = &self.audit {
            match a.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => p.push(format!(
                    "audit.path: the directory {} does not exist",
                    dir.display()
                )),
                _ => {}
            }
        }
        if self.sources.is_empty() {
            p.push("no [sources.NAME] configured: the agent would have nothing to serve".into());
        }
        for (name, s) in &self.sources {
            let at = format!("sources.{name}");
            if !valid_name(name) {
                p.push(format!(
                    "{at}: names may use letters, digits, '_', '-' and '.' (at most 64)"
                ));
            }
            let l = s.limits();
            if l.modes.is_empty() {
                p.push(format!(
                    "{at}.limits.modes is empty: allow realtime, reload or both"
                ));
            }
            if l.realtime_concurrency == 0 || l.reload_concurrency == 0 {
                p.push(format!("{at}.limits: concurrency must be at least 1"));
            }
            if l.max_duration_secs == 0 {
                p.push(format!("{at}.limits.max_duration_secs must be at least 1"));
            }
            for pattern in &l.allow_tables {
                if !crate::agent::allow::AllowList::valid_pattern(pattern) {
                    p.push(format!(
                        "{at}.limits.allow_tables: {pattern:?} is not schema.table, schema.* or table"
                    ));
                }
            }
            match s {
                SourceConfig::Sqlite(s) => {
                    if s.read_only && !s.path.is_file() {
                        p.push(format!("{at}.path: {} does not exist", s.path.display()));
                    }
                }
                SourceConfig::Postgres(s) | SourceConfig::Mysql(s) => {
                    check_server(&mut p, &at, s);
                    if s.tls.mode == DbTlsMode::Strict {
                        p.push(format!(
                            "{at}.tls.mode \"strict\" (TDS 8) is for SQL Server; use \"verify-full\""
                        ));
                    }
                }
                SourceConfig::Sqlserver(s) => {
                    check_server(&mut p, &at, s);
                    if s.tls.mode == DbTlsMode::VerifyCa {
                        p.push(format!(
                            "{at}.tls.mode \"verify-ca\" is not available for SQL Server (the driver always checks the host name); use \"verify-full\" or \"strict\""
                        ));
                    }
                }
            }
        }
        p
    }
}

/// Checks shared by the database-server sources.
fn check_server(p: &mut Vec<String>, at: &str, s: &ServerSource) {
    let ways = [
        s.password_env.is_some(),
        s.password_file.is_some(),
        s.password_credential.is_some(),
    ];
    if ways.iter().filter(|w| **w).count() > 1 {
        p.push(format!(
            "{at}: set one of password_env, password_file and password_credential, not several"
        ));
    }
    if let Err(e) = s.password() {
        p.push(format!("{at}: {e}"));
    }
    if s.pool_size == 0 {
        p.push(format!("{at}.pool_size must be at least 1"));
    }
    if let Some(ca) = &s.tls.ca {
        check_file(p, &format!("{at}.tls.ca"), ca);
        if s.tls.mode == DbTlsMode::Disable {
            p.push(format!(
                "{at}.tls: a CA is set but mode is \"disable\"; set mode = \"verify-full\" (or \"verify-ca\")"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn reports_every_problem_and_unknown_keys() {
        let text = r#"
            [hub]
            address = "nowhere"
            ca = "/missing/ca.pem"
            cert = "/missing/a.pem"
            key = "/missing/a.key"
            [sources."bad name"]
            kind = "postgres"
            host = "db"
            user = "u"
            database = "d"
            password_env = "GATEHOUSE_TEST_UNSET_VAR"
            password_file = "/x"
            [sources."bad name".limits]
            modes = []
        "#;
        let cfg: AgentConfig = config::parse(text).unwrap();
        let problems = cfg.problems();
        for needle in [
            "host:port",
            "hub.ca",
            "hub.cert",
            "hub.key",
            "names may use",
            "modes is empty",
            "not several",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "missing {needle}: {problems:#?}"
            );
        }
        let unknown = config::parse::<AgentConfig>(
            "[hub]\naddress='a:1'\nca='c'\ncert='c'\nkey='k'\ncolour='red'\n",
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
        let unknown_in_source = config::parse::<AgentConfig>(
            "[hub]\naddress='a:1'\nca='c'\ncert='c'\nkey='k'\n[sources.x]\nkind='sqlite'\npath='p'\npasword='x'\n",
        );
        assert!(
            unknown_in_source
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn tls_modes_fit_the_database() {
        let text = |kind: &str, mode: &str| {
            format!(
                "[hub]\naddress='a:1'\nca='c'\ncert='c'\nkey='k'\n[sources.x]\nkind='{kind}'\nhost='h'\nuser='u'\ndatabase='d'\ntls={{ mode = '{mode}' }}\n"
            )
        };
        let problems = |kind: &str, mode: &str| {
            config::parse::<AgentConfig>(&text(kind, mode))
                .unwrap()
                .problems()
                .join("\n")
        };
        assert!(problems("sqlserver", "verify-ca").contains("not available for SQL Server"));
        assert!(problems("postgres", "strict").contains("is for SQL Server"));
        assert!(problems("mysql", "strict").contains("is for SQL Server"));
        for ok in ["strict", "verify-full", "require", "disable"] {
            assert!(!problems("sqlserver", ok).contains("tls"), "{ok}");
        }
        let parsed = config::parse::<AgentConfig>(&text("sqlserver", "strict")).unwrap();
        assert_eq!(parsed.sources["x"].kind(), "sqlserver");
    }

    #[test]
    fn passwords_come_from_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sales"), "s3cret\n").unwrap();
        let d = Some(dir.path().as_os_str().to_owned());
        assert_eq!(credential(d.clone(), "sales").unwrap(), "s3cret");
        assert!(
            credential(d.clone(), "missing")
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            credential(d.clone(), "../etc/passwd")
                .unwrap_err()
                .contains("plain")
        );
        assert!(
            credential(None, "sales")
                .unwrap_err()
                .contains("LoadCredential=sales")
        );
    }
}
