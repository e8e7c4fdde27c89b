//! `gatehouse hub admin ...`: the provisioning API from the command line.

use std::path::Path;

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach the provisioning API at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
}

/// A client of one hub's provisioning API with one admin API key.
pub struct AdminClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// What `gatehouse hub admin` can do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminAction {
    /// List tenants.
    Tenants,
    /// Create a tenant.
    CreateTenant { name: String },
    /// Delete a tenant, disconnecting its agents.
    DeleteTenant { name: String },
    /// Issue a one-time enrolment token for an agent of a tenant.
    Token {
        tenant: String,
        agent_id: String,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// List a tenant's agents with status, version, last seen and latency.
    Agents { tenant: String },
    /// Revoke an agent: it is disconnected at once and refused afterwards.
    Revoke { tenant: String, agent_id: String },
    /// Set a tenant's identity provider from a JSON file (see the OpenAPI `Identity`).
    SetIdentity {
        tenant: String,
        file: std::path::PathBuf,
    },
    /// Set a tenant's group-to-role mappings from a JSON file (`{"group": ["role"]}`).
    SetRoles {
        tenant: String,
        file: std::path::PathBuf,
    },
    /// Set a tenant's grants from a JSON file (`{"role": {"sources": [...], "modes": [...]}}`).
    SetGrants {
        tenant: String,
        file: std::path::PathBuf,
    },
    /// Show a tenant's identity provider, role mappings and grants in force.
    Auth { tenant: String },
    /// Read a tenant's audit trail, newest first.
    Audit {
        tenant: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

impl AdminClient {
    /// `ca`: the CA to trust for the API's certificate (else the system's roots).
    pub fn new(base: &str, key: &str, ca: Option<&Path>) -> Result<AdminClient, ClientError> {
        crate::transport::tls::install_crypto_provider();
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
            b = b.tls_certs_only([cert]);
        }
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: b.build().map_err(|e| ClientError::Setup(e.to_string()))?,
        })
    }

    pub async fn run(&self, action: &AdminAction) -> Result<Value, ClientError> {
        match action {
            AdminAction::Tenants => self.call("GET", "/v1/tenants", None).await,
            AdminAction::CreateTenant { name } => {
                self.call("POST", "/v1/tenants", Some(json!({ "name": name })))
                    .await
            }
            AdminAction::DeleteTenant { name } => {
                self.call("DELETE", &format!("/v1/tenants/{name}"), None)
                    .await
            }
            AdminAction::Token {
                tenant,
                agent_id,
                ttl_secs,
            } => {
                self.call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/enrolment-tokens"),
                    Some(json!({ "agent_id": agent_id, "ttl_secs": ttl_secs })),
                )
                .await
            }
            AdminAction::Agents { tenant } => {
                self.call("GET", &format!("/v1/tenants/{tenant}/agents"), None)
                    .await
            }
            AdminAction::SetIdentity { tenant, file } => {
                self.put_file(&format!("/v1/tenants/{tenant}/identity"), file)
                    .await
            }
            AdminAction::SetRoles { tenant, file } => {
                self.put_file(&format!("/v1/tenants/{tenant}/roles"), file)
                    .await
            }
            AdminAction::SetGrants { tenant, file } => {
                self.put_file(&format!("/v1/tenants/{tenant}/grants"), file)
                    .await
            }
            AdminAction::Auth { tenant } => {
                let mut out = serde_json::Map::new();
                for part in ["identity", "roles", "grants"] {
                    let v = self
                        .call("GET", &format!("/v1/tenants/{tenant}/{part}"), None)
                        .await?;
                    out.insert(part.into(), v);
                }
                Ok(Value::Object(out))
            }
            AdminAction::Audit { tenant, limit } => {
                self.call(
                    "GET",
                    &format!("/v1/tenants/{tenant}/audit?limit={limit}"),
                    None,
                )
                .await
            }
            AdminAction::Revoke { tenant, agent_id } => {
                self.call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/agents/{agent_id}/revoke"),
                    None,
                )
                .await
            }
        }
    }

    async fn put_file(&self, path: &str, file: &Path) -> Result<Value, ClientError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", file.display())))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| ClientError::Setup(format!("{}: not JSON: {e}", file.display())))?;
        self.call("PUT", path, Some(body)).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let method: reqwest::Method = method.parse().expect("static method");
        let mut r = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            message: value["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        })
    }
}
