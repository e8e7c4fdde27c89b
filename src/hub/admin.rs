//! The provisioning API (HTTPS, JSON): tenants, enrolment tokens, agents and
//! their revocation for the SaaS operator's automation (admin API keys), and
//! the enrolment endpoint agents call with a one-time token. The OpenAPI
//! document is served at `/openapi.json`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::registry::Registry;
use crate::config::hub::AdminListener;
use crate::state::{StateError, Store};
use crate::transport::CODE_REFUSED;

const OPENAPI: &str = include_str!("openapi.json");

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.{what} {path}: {error}")]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        error: String,
    },
    #[error("admin listener on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// Signs agents' certificate requests with the agents' CA.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    cert_days: u32,
}

impl Signer {
    pub fn load(cfg: &AdminListener, client_ca: &std::path::Path) -> Result<Signer, AdminError> {
        let bad = |e: String| AdminError::File {
            what: "client_ca_key",
            path: cfg.client_ca_key.clone(),
            error: e,
        };
        let ca_key = KeyPair::from_pem(&read("client_ca_key", &cfg.client_ca_key)?)
            .map_err(|e| bad(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&read("client_ca", client_ca)?, ca_key)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Signer {
            issuer,
            cert_days: cfg.agent_cert_days,
        })
    }

    /// A client certificate for `agent_id` for the key in `csr_pem`: the
    /// hub decides what it says, whatever the request asked for.
    pub fn sign(&self, csr_pem: &str, agent_id: &str) -> Result<(String, i64), String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("the certificate request is not a valid PKCS#10 PEM: {e}"))?;
        let now = time::OffsetDateTime::now_utc();
        let not_after = now + time::Duration::days(i64::from(self.cert_days));
        let p = &mut csr.params;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, agent_id);
        p.subject_alt_names = Vec::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = not_after;
        p.use_authority_key_identifier_extension = true;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| format!("cannot sign this certificate request: {e}"))?;
        Ok((
            cert.pem(),
            (not_after.unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }
}

/// What the API serves with.
pub struct Admin {
    store: Store,
    registry: Arc<Registry>,
    /// Tenants defined in `hub.toml` (they may get tokens without being created first).
    config_tenants: HashSet<String>,
    signer: Arc<Signer>,
    /// Client-authentication settings in force, refreshed on every change.
    auth: Arc<crate::auth::live::Live>,
    /// The CA at the end of the admin listener's chain, which tokens pin.
    hub_ca_pem: String,
    pin: String,
}

/// The admin listener: TLS configuration and the bound socket.
pub struct AdminServer {
    pub admin: Arc<Admin>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<String, AdminError> {
    std::fs::read_to_string(path).map_err(|e| AdminError::File {
        what,
        path: path.into(),
        error: e.to_string(),
    })
}

impl AdminServer {
    pub async fn bind(
        cfg: &AdminListener,
        store: Store,
        registry: Arc<Registry>,
        config_tenants: HashSet<String>,
        signer: Arc<Signer>,
        auth: Arc<crate::auth::live::Live>,
    ) -> Result<AdminServer, AdminError> {
        let bad = |what, path: &std::path::Path, e: String| AdminError::File {
            what,
            path: path.into(),
            error: e,
        };
        let chain_pem = read("tls_chain", &cfg.tls_chain)?;
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::pem::PemObject::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| bad("tls_chain", &cfg.tls_chain, e.to_string()))?;
        let Some(root) = chain.last() else {
            return Err(bad("tls_chain", &cfg.tls_chain, "no certificate".into()));
        };
        let pin = format!("{:x}", Sha256::digest(root.as_ref()));
        let hub_ca_pem = pem_of(root);
        let key = rustls_pki_types::pem::PemObject::from_pem_slice(
            read("tls_key", &cfg.tls_key)?.as_bytes(),
        )
        .map_err(|e| bad("tls_key", &cfg.tls_key, e.to_string()))?;
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| bad("tls_chain", &cfg.tls_chain, e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|error| AdminError::Listen {
                addr: cfg.listen,
                error,
            })?;
        Ok(AdminServer {
            admin: Arc::new(Admin {
                store,
                registry,
                config_tenants,
                signer,
                auth,
                hub_ca_pem,
                pin,
            }),
            listener,
            tls: Arc::new(tls),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown`; connections run on `tracker`.
    pub async fn run(self, shutdown: CancellationToken, tracker: TaskTracker) {
        let router = router(self.admin.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { warn!(error = %e, "admin accept failed"); continue; }
                },
                _ = shutdown.cancelled() => break,
            };
            let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
            tracker.spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return warn!(%peer, error = %e, "admin TLS handshake failed"),
                    Err(_) => return warn!(%peer, "admin TLS handshake timed out"),
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/enrol", post(enrol))
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{tenant}", axum::routing::delete(delete_tenant))
        .route("/v1/tenants/{tenant}/enrolment-tokens", post(issue_token))
        .route("/v1/tenants/{tenant}/agents", get(list_agents))
        .route("/v1/tenants/{tenant}/audit", get(read_audit))
        .route(
            "/v1/tenants/{tenant}/identity",
            get(get_identity).put(put_identity).delete(delete_identity),
        )
        .route("/v1/tenants/{tenant}/roles", get(get_roles).put(put_roles))
        .route(
            "/v1/tenants/{tenant}/grants",
            get(get_grants).put(put_grants),
        )
        .route(
            "/v1/tenants/{tenant}/agents/{agent}/revoke",
            post(revoke_agent),
        )
        .with_state(admin)
}

/// An error as the API reports it: a status and `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        let status = match &e {
            StateError::Conflict(_) => StatusCode::CONFLICT,
            StateError::NotFound(_) => StatusCode::NOT_FOUND,
            StateError::Invalid(_) => StatusCode::BAD_REQUEST,
            StateError::Db(_) | StateError::Migrate(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller must present an admin API key.
async fn operator(admin: &Admin, headers: &HeaderMap) -> ApiResult<String> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    match admin.store.api_key(key).await? {
        Some(name) if !key.is_empty() => Ok(name),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "send 'authorization: Bearer <admin API key>'; create one with `gatehouse hub api-key NAME`"
                .into(),
        )),
    }
}

async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], OPENAPI)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
}

async fn create_tenant(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(body): Json<NewTenant>,
) -> ApiResult<(StatusCode, Json<crate::state::Tenant>)> {
    let who = operator(&admin, &headers).await?;
    let t = admin.store.create_tenant(&body.name).await?;
    info!(operator = %who, tenant = %t.name, "tenant created");
    Ok((StatusCode::CREATED, Json(t)))
}

async fn list_tenants(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<crate::state::Tenant>>> {
    operator(&admin, &headers).await?;
    Ok(Json(admin.store.tenants().await?))
}

async fn delete_tenant(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    let agents = admin.store.agents(&tenant).await?;
    admin.store.delete_tenant(&tenant).await?;
    for a in agents {
        disconnect(&admin.registry, &tenant, &a.id, "its tenant was deleted");
    }
    info!(operator = %who, %tenant, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    agent_id: String,
    /// Seconds the token stays valid (default one hour, at most a week).
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct TokenIssued {
    /// Give this to `gatehouse agent enroll --token`: the secret and the pin
    /// of the hub's CA, so the agent enrols with this hub only.
    enrolment_token: String,
    tenant: String,
    agent_id: String,
    expires_ms: i64,
}

async fn issue_token(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<TokenIssued>)> {
    let who = operator(&admin, &headers).await?;
    let ttl = Duration::from_secs(body.ttl_secs.unwrap_or(3600));
    if ttl.is_zero() || ttl > Duration::from_secs(7 * 86_400) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "ttl_secs must be 1 to 604800 (a week)".into(),
        ));
    }
    // A tenant from hub.toml is created in the state on first use.
    if admin.config_tenants.contains(&tenant) && !admin.store.tenant_exists(&tenant).await? {
        match admin.store.create_tenant(&tenant).await {
            Ok(_) | Err(StateError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let t = admin
        .store
        .issue_token(&tenant, &body.agent_id, ttl)
        .await?;
    info!(operator = %who, %tenant, agent = %t.agent_id, "enrolment token issued");
    Ok((
        StatusCode::CREATED,
        Json(TokenIssued {
            enrolment_token: format!("{}.{}", t.secret, admin.pin),
            tenant: t.tenant,
            agent_id: t.agent_id,
            expires_ms: t.expires_ms,
        }),
    ))
}

#[derive(Serialize)]
struct AgentStatus {
    #[serde(flatten)]
    record: crate::state::AgentRecord,
    /// `connected`, `offline` or `revoked`.
    status: &'static str,
    sources: Vec<String>,
}

async fn list_agents(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<AgentStatus>>> {
    operator(&admin, &headers).await?;
    if !admin.store.tenant_exists(&tenant).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no tenant {tenant:?}"),
        ));
    }
    let agents = admin.store.agents(&tenant).await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|record| {
                let live = admin.registry.find(&tenant, &record.id);
                AgentStatus {
                    status: match (&record.revoked_ms, &live) {
                        (Some(_), _) => "revoked",
                        (None, Some(_)) => "connected",
                        (None, None) => "offline",
                    },
                    sources: live
                        .map(|h| h.sources.iter().map(|s| s.name.clone()).collect())
                        .unwrap_or_default(),
                    record,
                }
            })
            .collect(),
    ))
}

/// The tenant's settings in force (hub.toml's, or what the API set).
async fn settings(admin: &Admin, tenant: &str) -> ApiResult<crate::config::hub::Tenant> {
    if !admin.store.tenant_exists(tenant).await? && !admin.config_tenants.contains(tenant) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no tenant {tenant:?}"),
        ));
    }
    Ok(admin
        .auth
        .current()
        .tenants
        .get(tenant)
        .cloned()
        .unwrap_or_default())
}

/// Stores a change (creating a hub.toml tenant in the state on first use)
/// and puts the new settings in force.
async fn apply(
    admin: &Admin,
    tenant: &str,
    setting: crate::state::AuthSetting<'_>,
) -> ApiResult<()> {
    if admin.config_tenants.contains(tenant) && !admin.store.tenant_exists(tenant).await? {
        match admin.store.create_tenant(tenant).await {
            Ok(_) | Err(StateError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.store.set_auth(tenant, setting).await?;
    admin.auth.refresh().await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stored, but not yet in force: {e}"),
        )
    })
}

fn invalid(problems: Vec<String>) -> ApiResult<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError(StatusCode::BAD_REQUEST, problems.join("; ")))
    }
}

async fn get_identity(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Option<crate::config::hub::Identity>>> {
    operator(&admin, &headers).await?;
    Ok(Json(settings(&admin, &tenant).await?.identity))
}

async fn put_identity(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Json(identity): Json<crate::config::hub::Identity>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    settings(&admin, &tenant).await?;
    let mut problems = Vec::new();
    if identity.jwks_url.is_none()
        || identity.jwks_file.is_some()
        || identity.hs256_secret_env.is_some()
        || identity.hs256_secret_file.is_some()
    {
        problems.push(
            "through the API, an identity provider publishes its keys at a jwks_url (files and shared secrets are set in hub.toml)".into(),
        );
    } else {
        crate::config::hub::check_identity(&mut problems, &tenant, &identity);
    }
    // Tenants trusting one issuer must be told apart by a claim.
    for (other, t) in &admin.auth.current().tenants {
        if let Some(i) = t.identity.as_ref().filter(|_| *other != tenant)
            && i.issuer == identity.issuer
            && (i.tenant_value.is_none()
                || identity.tenant_value.is_none()
                || i.tenant_value == identity.tenant_value)
        {
            problems.push(format!(
                "another tenant trusts issuer {:?}: give each a distinct tenant_claim / tenant_value",
                identity.issuer
            ));
        }
    }
    invalid(problems)?;
    apply(
        &admin,
        &tenant,
        crate::state::AuthSetting::Identity(Some(&identity)),
    )
    .await?;
    info!(operator = %who, %tenant, issuer = %identity.issuer, "identity provider set");
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_identity(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    settings(&admin, &tenant).await?;
    apply(&admin, &tenant, crate::state::AuthSetting::Identity(None)).await?;
    info!(operator = %who, %tenant, "identity provider removed (hub.toml's applies, if any)");
    Ok(StatusCode::NO_CONTENT)
}

async fn get_roles(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<Json<std::collections::BTreeMap<String, Vec<String>>>> {
    operator(&admin, &headers).await?;
    Ok(Json(settings(&admin, &tenant).await?.roles))
}

async fn put_roles(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Json(roles): Json<std::collections::BTreeMap<String, Vec<String>>>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    let current = settings(&admin, &tenant).await?;
    let mut problems = Vec::new();
    for (group, r) in &roles {
        crate::config::hub::check_roles(&mut problems, &format!("group {group:?}"), r, &current);
    }
    invalid(problems)?;
    apply(&admin, &tenant, crate::state::AuthSetting::Roles(&roles)).await?;
    info!(operator = %who, %tenant, groups = roles.len(), "role mappings set");
    Ok(StatusCode::NO_CONTENT)
}

async fn get_grants(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult<Json<std::collections::BTreeMap<String, crate::config::hub::Grant>>> {
    operator(&admin, &headers).await?;
    Ok(Json(settings(&admin, &tenant).await?.grants))
}

async fn put_grants(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Json(grants): Json<std::collections::BTreeMap<String, crate::config::hub::Grant>>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    let mut next = settings(&admin, &tenant).await?;
    next.grants = grants.clone();
    let mut problems = Vec::new();
    for (role, g) in &grants {
        if g.sources.is_empty() || g.modes.is_empty() {
            problems.push(format!(
                "grant {role:?}: grant at least one source and one mode"
            ));
        }
    }
    for (group, r) in &next.roles {
        crate::config::hub::check_roles(&mut problems, &format!("group {group:?}"), r, &next);
    }
    for (user, u) in &next.users {
        crate::config::hub::check_roles(&mut problems, &format!("user {user:?}"), &u.roles, &next);
    }
    invalid(problems)?;
    apply(&admin, &tenant, crate::state::AuthSetting::Grants(&grants)).await?;
    info!(operator = %who, %tenant, roles = grants.len(), "grants set");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// At most this many records, newest first (default 100, at most 10,000).
    limit: Option<i64>,
    /// Only records before this time (Unix ms), to page back.
    before_ms: Option<i64>,
}

async fn read_audit(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> ApiResult<Json<Vec<crate::state::AuditRow>>> {
    operator(&admin, &headers).await?;
    Ok(Json(
        admin
            .store
            .audit(&tenant, q.before_ms, q.limit.unwrap_or(100))
            .await?,
    ))
}

async fn revoke_agent(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path((tenant, agent)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let who = operator(&admin, &headers).await?;
    admin.store.revoke_agent(&tenant, &agent).await?;
    disconnect(&admin.registry, &tenant, &agent, "it was revoked");
    info!(operator = %who, %tenant, %agent, "agent revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Closes an agent's tunnel (and lane) at once.
fn disconnect(registry: &Registry, tenant: &str, agent: &str, why: &str) {
    if let Some(h) = registry.find(tenant, agent) {
        let reason = format!("agent {agent:?} disconnected: {why}");
        if let Some(lane) = h.lane.lock().expect("lane lock").take() {
            lane.close(CODE_REFUSED, &reason);
        }
        h.conn.close(CODE_REFUSED, &reason);
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The secret part of the enrolment token (before the dot).
    pub token: String,
    /// PKCS#10 certificate request (PEM) for the agent's own key.
    pub csr: String,
}

#[derive(Deserialize, Serialize)]
pub struct Enrolled {
    pub tenant: String,
    pub agent_id: String,
    /// The agent's client certificate (PEM).
    pub certificate: String,
    /// The CA that signed the hub's certificates (PEM), for `hub.ca`.
    pub hub_ca: String,
    pub not_after_ms: i64,
}

async fn enrol(
    State(admin): State<Arc<Admin>>,
    Json(body): Json<EnrolRequest>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    // Check the request before the token is used up by it.
    CertificateSigningRequestParams::from_pem(&body.csr).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the certificate request is not a valid PKCS#10 PEM: {e}"),
        )
    })?;
    let (tenant, agent_id) = match admin.store.redeem_token(&body.token).await? {
        Ok(v) => v,
        Err(refusal) => {
            warn!(reason = %refusal, "enrolment refused");
            return Err(ApiError(StatusCode::FORBIDDEN, refusal.to_string()));
        }
    };
    let (certificate, not_after_ms) = admin
        .signer
        .sign(&body.csr, &agent_id)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    admin
        .store
        .enrol_agent(&agent_id, &tenant, not_after_ms)
        .await?;
    info!(%tenant, agent = %agent_id, "agent enrolled");
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            tenant,
            agent_id,
            certificate,
            hub_ca: admin.hub_ca_pem.clone(),
            not_after_ms,
        }),
    ))
}
