//! The hub's state: tenants, agents, enrolment tokens and admin API keys, in
//! an embedded SQLite file by default or in PostgreSQL when several hub
//! replicas share it. One code path for both (sqlx's `Any` driver, portable
//! SQL, `$n` placeholders) and one set of migrations, run at start.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("hub state database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("hub state migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// Why an enrolment token was refused (said to the agent as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the enrolment token is not known to this hub; ask for a new one")]
    Unknown,
    #[error("the enrolment token was already used; each token enrols one agent once")]
    Used,
    #[error("the enrolment token has expired; ask for a new one")]
    Expired,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub name: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    pub id: String,
    pub tenant: String,
    pub enrolled_ms: i64,
    pub cert_not_after_ms: i64,
    pub revoked_ms: Option<i64>,
    pub version: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub latency_ms: Option<f64>,
}

/// Client authentication settings made through the API (`None`: not set
/// there, so `hub.toml`'s apply).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct TenantAuth {
    pub identity: Option<crate::config::hub::Identity>,
    pub roles: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub grants: Option<std::collections::BTreeMap<String, crate::config::hub::Grant>>,
}

/// Which of a tenant's authentication settings to change.
pub enum AuthSetting<'a> {
    Identity(Option<&'a crate::config::hub::Identity>),
    Roles(&'a std::collections::BTreeMap<String, Vec<String>>),
    Grants(&'a std::collections::BTreeMap<String, crate::config::hub::Grant>),
}

/// One query in the hub's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditRow {
    pub query_id: String,
    pub time_ms: i64,
    pub tenant: String,
    pub user: String,
    pub groups: Vec<String>,
    pub source: String,
    pub agent: Option<String>,
    pub mode: String,
    pub sql: Option<String>,
    pub sql_sha256: Option<String>,
    pub rows: i64,
    pub bytes: i64,
    pub duration_ms: f64,
    pub outcome: String,
    pub error_code: Option<String>,
    pub error: Option<String>,
}

/// An issued enrolment token: the secret is shown once, only its hash is kept.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub secret: String,
    pub tenant: String,
    pub agent_id: String,
    pub expires_ms: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sha256(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// A random secret, URL-safe.
pub fn secret(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// Names of tenants and agents: letters, digits, `_`, `-`, `.`.
pub fn valid_name(name: &str) -> bool {
    crate::config::valid_name(name)
}

/// A query of agents' columns, in [`agent_record`]'s order.
macro_rules! agents {
    ($tail:literal) => {
        concat!(
            "SELECT id, tenant, enrolled_ms, cert_not_after_ms, revoked_ms, version, last_seen_ms, latency_ms FROM agents ",
            $tail
        )
    };
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the state at
    /// `url`: `sqlite:///var/lib/gatehouse/hub.db` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StateError> {
        install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        sqlx::migrate!("src/state/migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StateError> {
        if !valid_name(name) {
            return Err(StateError::Invalid(format!(
                "tenant names may use letters, digits, '_', '-' and '.' (at most 64), not {name:?}"
            )));
        }
        let t = Tenant {
            name: name.into(),
            created_ms: now_ms(),
        };
        let r = sqlx::query("INSERT INTO tenants (name, created_ms) VALUES ($1, $2)")
            .bind(&t.name)
            .bind(t.created_ms)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(t),
            Err(e) if is_unique_violation(&e) => Err(StateError::Conflict(format!(
                "tenant {name:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, StateError> {
        let rows = sqlx::query("SELECT name, created_ms FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Tenant {
                name: r.get(0),
                created_ms: r.get(1),
            })
            .collect())
    }

    pub async fn tenant_exists(&self, name: &str) -> Result<bool, StateError> {
        Ok(sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Deletes a tenant with its agents and tokens.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM enrolment_tokens WHERE tenant = $1",
            "DELETE FROM agents WHERE tenant = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StateError::NotFound(format!("no tenant {name:?}")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// A one-time token that enrols agent `agent_id` into `tenant` within `ttl`.
    pub async fn issue_token(
        &self,
        tenant: &str,
        agent_id: &str,
        ttl: Duration,
    ) -> Result<IssuedToken, StateError> {
        if !valid_name(agent_id) {
            return Err(StateError::Invalid(format!(
                "agent ids may use letters, digits, '_', '-' and '.' (at most 64), not {agent_id:?}"
            )));
        }
        if !self.tenant_exists(tenant).await? {
            return Err(StateError::NotFound(format!("no tenant {tenant:?}")));
        }
        if let Some(a) = self.agent(agent_id).await?
            && a.tenant != tenant
        {
            return Err(StateError::Conflict(format!(
                "agent id {agent_id:?} is taken; agent ids are unique across the hub"
            )));
        }
        let secret = secret("ghe_");
        let now = now_ms();
        let expires_ms = now + ttl.as_millis() as i64;
        sqlx::query(
            "INSERT INTO enrolment_tokens (token_sha256, tenant, agent_id, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sha256(&secret))
        .bind(tenant)
        .bind(agent_id)
        .bind(now)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(IssuedToken {
            secret,
            tenant: tenant.into(),
            agent_id: agent_id.into(),
            expires_ms,
        })
    }

    /// Uses up a token: its tenant and agent id, or why it is refused. Two
    /// hub replicas redeeming the same token at once: one wins.
    pub async fn redeem_token(
        &self,
        secret: &str,
    ) -> Result<Result<(String, String), TokenRefusal>, StateError> {
        let hash = sha256(secret);
        let now = now_ms();
        let won = sqlx::query(
            "UPDATE enrolment_tokens SET used_ms = $1
             WHERE token_sha256 = $2 AND used_ms IS NULL AND expires_ms > $1
             RETURNING tenant, agent_id",
        )
        .bind(now)
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = won {
            return Ok(Ok((r.get(0), r.get(1))));
        }
        let row = sqlx::query("SELECT used_ms FROM enrolment_tokens WHERE token_sha256 = $1")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(match row {
            None => TokenRefusal::Unknown,
            Some(r) if r.get::<Option<i64>, _>(0).is_some() => TokenRefusal::Used,
            Some(_) => TokenRefusal::Expired,
        }))
    }

    /// Records an enrolled agent (or its new certificate).
    pub async fn enrol_agent(
        &self,
        id: &str,
        tenant: &str,
        cert_not_after_ms: i64,
    ) -> Result<(), StateError> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE agents SET cert_not_after_ms = $1, enrolled_ms = $2, revoked_ms = NULL
             WHERE id = $3 AND tenant = $4",
        )
        .bind(cert_not_after_ms)
        .bind(now)
        .bind(id)
        .bind(tenant)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO agents (id, tenant, enrolled_ms, cert_not_after_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(tenant)
            .bind(now)
            .bind(cert_not_after_ms)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// A renewed certificate for an agent that is still enrolled.
    pub async fn renew_agent(&self, id: &str, cert_not_after_ms: i64) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE agents SET cert_not_after_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(cert_not_after_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StateError> {
        let row = sqlx::query(agents!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(agent_record))
    }

    pub async fn agents(&self, tenant: &str) -> Result<Vec<AgentRecord>, StateError> {
        let rows = sqlx::query(agents!("WHERE tenant = $1 ORDER BY id"))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(agent_record).collect())
    }

    /// Marks an agent revoked; its tunnel is closed by the caller.
    pub async fn revoke_agent(&self, tenant: &str, id: &str) -> Result<(), StateError> {
        let n = sqlx::query(
            "UPDATE agents SET revoked_ms = $1 WHERE id = $2 AND tenant = $3 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(tenant)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "tenant {tenant:?} has no active agent {id:?}"
            )));
        }
        Ok(())
    }

    /// An agent connected or sent a heartbeat.
    pub async fn seen(
        &self,
        id: &str,
        version: &str,
        latency_ms: Option<f64>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE agents SET last_seen_ms = $1, version = $2, latency_ms = COALESCE($3, latency_ms) WHERE id = $4",
        )
        .bind(now_ms())
        .bind(version)
        .bind(latency_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A new admin API key; the secret is returned once, only its hash kept.
    pub async fn create_api_key(&self, name: &str) -> Result<String, StateError> {
        let secret = secret("gha_");
        let r =
            sqlx::query("INSERT INTO api_keys (key_sha256, name, created_ms) VALUES ($1, $2, $3)")
                .bind(sha256(&secret))
                .bind(name)
                .bind(now_ms())
                .execute(&self.pool)
                .await;
        match r {
            Ok(_) => Ok(secret),
            Err(e) if is_unique_violation(&e) => Err(StateError::Conflict(format!(
                "an API key named {name:?} exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The name of the API key `secret`, if it is one.
    pub async fn api_key(&self, secret: &str) -> Result<Option<String>, StateError> {
        Ok(
            sqlx::query("SELECT name FROM api_keys WHERE key_sha256 = $1")
                .bind(sha256(secret))
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    pub async fn insert_audit(&self, r: &AuditRow) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO audit (query_id, time_ms, tenant, user_name, groups_json, source, agent, mode,
                                sql_text, sql_sha256, rows_sent, bytes_sent, duration_ms, outcome, error_code, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&r.query_id)
        .bind(r.time_ms)
        .bind(&r.tenant)
        .bind(&r.user)
        .bind(serde_json::to_string(&r.groups).unwrap_or_else(|_| "[]".into()))
        .bind(&r.source)
        .bind(&r.agent)
        .bind(&r.mode)
        .bind(&r.sql)
        .bind(&r.sql_sha256)
        .bind(r.rows)
        .bind(r.bytes)
        .bind(r.duration_ms)
        .bind(&r.outcome)
        .bind(&r.error_code)
        .bind(&r.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A tenant's audit trail, newest first, before `before_ms` if given.
    pub async fn audit(
        &self,
        tenant: &str,
        before_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StateError> {
        let rows = sqlx::query(
            "SELECT query_id, time_ms, tenant, user_name, groups_json, source, agent, mode, sql_text,
                    sql_sha256, rows_sent, bytes_sent, duration_ms, outcome, error_code, error
             FROM audit WHERE tenant = $1 AND time_ms < $2 ORDER BY time_ms DESC, query_id LIMIT $3",
        )
        .bind(tenant)
        .bind(before_ms.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                query_id: r.get(0),
                time_ms: r.get(1),
                tenant: r.get(2),
                user: r.get(3),
                groups: serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default(),
                source: r.get(5),
                agent: r.get(6),
                mode: r.get(7),
                sql: r.get(8),
                sql_sha256: r.get(9),
                rows: r.get(10),
                bytes: r.get(11),
                duration_ms: r.get(12),
                outcome: r.get(13),
                error_code: r.get(14),
                error: r.get(15),
            })
            .collect())
    }

    /// Every tenant's authentication settings made through the API.
    pub async fn tenant_auth(
        &self,
    ) -> Result<std::collections::HashMap<String, TenantAuth>, StateError> {
        let rows =
            sqlx::query("SELECT tenant, identity_json, roles_json, grants_json FROM tenant_auth")
                .fetch_all(&self.pool)
                .await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let tenant: String = r.get(0);
            let auth = TenantAuth {
                identity: stored(r.get(1), "identity")?,
                roles: stored(r.get(2), "roles")?,
                grants: stored(r.get(3), "grants")?,
            };
            out.insert(tenant, auth);
        }
        Ok(out)
    }

    /// Changes one of a tenant's authentication settings.
    pub async fn set_auth(&self, tenant: &str, setting: AuthSetting<'_>) -> Result<(), StateError> {
        if !self.tenant_exists(tenant).await? {
            return Err(StateError::NotFound(format!("no tenant {tenant:?}")));
        }
        let json = |v: &dyn erased::Json| v.json();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM tenant_auth WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            sqlx::query("INSERT INTO tenant_auth (tenant, updated_ms) VALUES ($1, $2)")
                .bind(tenant)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let q = match setting {
            AuthSetting::Identity(i) => sqlx::query(
                "UPDATE tenant_auth SET identity_json = $1, updated_ms = $2 WHERE tenant = $3",
            )
            .bind(i.map(|i| json(&i))),
            AuthSetting::Roles(r) => sqlx::query(
                "UPDATE tenant_auth SET roles_json = $1, updated_ms = $2 WHERE tenant = $3",
            )
            .bind(Some(json(&r))),
            AuthSetting::Grants(g) => sqlx::query(
                "UPDATE tenant_auth SET grants_json = $1, updated_ms = $2 WHERE tenant = $3",
            )
            .bind(Some(json(&g))),
        };
        q.bind(now).bind(tenant).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn agent_record(r: &sqlx::any::AnyRow) -> AgentRecord {
    AgentRecord {
        id: r.get(0),
        tenant: r.get(1),
        enrolled_ms: r.get(2),
        cert_not_after_ms: r.get(3),
        revoked_ms: r.get(4),
        version: r.get(5),
        last_seen_ms: r.get(6),
        latency_ms: r.get(7),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A stored JSON setting.
fn stored<T: serde::de::DeserializeOwned>(
    col: Option<String>,
    what: &str,
) -> Result<Option<T>, StateError> {
    col.map(|c| serde_json::from_str(&c))
        .transpose()
        .map_err(|e| StateError::Invalid(format!("stored {what}: {e}")))
}

/// JSON of a setting, whatever its type.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("settings serialize")
        }
    }
}
