//! JWT bearer tokens from a tenant's identity provider: RS256/384/512,
//! PS256/384/512, ES256/384 and EdDSA keys from a JWKS (URL or file, re-read
//! when a token names a key the hub does not know, so providers can rotate),
//! or HS256 with a shared secret. Issuer, audience, expiry and not-before are
//! checked with a small leeway; the token's groups become roles.
//!
//! Which tenant a token belongs to is decided by its issuer (and, where
//! several tenants trust one issuer, a tenant claim) before any signature is
//! checked; the signature is then checked with that tenant's keys only.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::warn;

use super::{Access, Principal, roles_of};
use crate::config::hub::{HubConfig, Identity, Tenant};

/// A token naming an unknown key re-reads the JWKS at most this often.
const MIN_REFRESH: Duration = Duration::from_secs(2);
/// Keys are re-read this often in any case.
const MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused; every message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("no tenant of this hub accepts tokens from issuer {0:?}")]
    UnknownIssuer(String),
    #[error("the token is signed with {0:?}, which this tenant's identity provider does not use")]
    Algorithm(String),
    #[error("the token's signing key {0:?} is not among the identity provider's keys")]
    UnknownKey(String),
    #[error("the identity provider's keys could not be read: {0}")]
    Keys(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is for another audience; this hub accepts {0}")]
    Audience(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token lacks the {0:?} claim")]
    MissingClaim(String),
    #[error("the token was refused: {0}")]
    Invalid(String),
}

pub fn acceptable_jwks_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

enum Keys {
    Secret(DecodingKey),
    Jwks(Arc<Jwks>),
}

/// JWKS caches by source, kept when the verifier is rebuilt with new
/// settings, so a settings change does not refetch every provider's keys.
#[derive(Default)]
pub struct JwksCache(std::sync::Mutex<std::collections::HashMap<String, Arc<Jwks>>>);

impl JwksCache {
    fn get(&self, key: String, from: JwksFrom) -> Arc<Jwks> {
        self.0
            .lock()
            .expect("jwks cache lock")
            .entry(key)
            .or_insert_with(|| Arc::new(Jwks::new(from)))
            .clone()
    }
}

enum JwksFrom {
    Url(String),
    File(PathBuf),
}

pub struct Jwks {
    from: JwksFrom,
    state: Mutex<JwksState>,
}

#[derive(Default)]
struct JwksState {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

struct Idp {
    tenant: String,
    identity: Identity,
    /// The tenant's roles and grants, to turn groups into access.
    config: Tenant,
    keys: Keys,
}

/// The identity providers of every tenant.
pub struct Verifier {
    idps: Vec<Idp>,
    client: reqwest::Client,
}

impl Verifier {
    pub fn from_config(cfg: &HubConfig) -> Result<Verifier, JwtError> {
        Self::from_tenants(&cfg.tenants, &JwksCache::default())
    }

    /// The verifier for these tenants' identity providers.
    pub fn from_tenants(
        tenants: &std::collections::BTreeMap<String, Tenant>,
        cache: &JwksCache,
    ) -> Result<Verifier, JwtError> {
        let mut idps = Vec::new();
        for (tenant, t) in tenants {
            let Some(identity) = &t.identity else {
                continue;
            };
            let secret = if let Some(var) = &identity.hs256_secret_env {
                Some(std::env::var(var).map_err(|_| {
                    JwtError::Keys(format!("environment variable {var} is not set"))
                })?)
            } else if let Some(f) = &identity.hs256_secret_file {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| JwtError::Keys(format!("{}: {e}", f.display())))?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            } else {
                None
            };
            let keys = if let Some(secret) = secret {
                Keys::Secret(
                    DecodingKey::from_secret(secret.as_bytes())
                        .map_err(|e| JwtError::Keys(e.to_string()))?,
                )
            } else if let Some(url) = &identity.jwks_url {
                Keys::Jwks(cache.get(format!("url:{url}"), JwksFrom::Url(url.clone())))
            } else if let Some(file) = &identity.jwks_file {
                Keys::Jwks(cache.get(
                    format!("file:{}", file.display()),
                    JwksFrom::File(file.clone()),
                ))
            } else {
                return Err(JwtError::Keys(format!(
                    "tenant {tenant} has an identity without keys"
                )));
            };
            idps.push(Idp {
                tenant: tenant.clone(),
                identity: identity.clone(),
                config: t.clone(),
                keys,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwtError::Keys(e.to_string()))?;
        Ok(Verifier { idps, client })
    }

    /// A verifier that accepts no token.
    pub fn none() -> Verifier {
        Verifier {
            idps: Vec::new(),
            client: reqwest::Client::new(),
        }
    }

    /// Whether any tenant accepts JWTs at all.
    pub fn is_empty(&self) -> bool {
        self.idps.is_empty()
    }

    /// Whether `token` has the shape of a JWT (three base64url parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let claims = peek_claims(token)?;
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let idp = self
            .idps
            .iter()
            .find(|i| i.identity.issuer == issuer && i.admits(&claims))
            .ok_or_else(|| JwtError::UnknownIssuer(issuer.to_string()))?;
        let (key, algorithms) = match &idp.keys {
            Keys::Secret(k) => (k.clone(), vec![Algorithm::HS256]),
            Keys::Jwks(jwks) => {
                let jwk = jwks.key(header.kid.as_deref(), &self.client).await?;
                let key = DecodingKey::from_jwk(&jwk).map_err(|e| JwtError::Keys(e.to_string()))?;
                (key, algorithms_for(&jwk))
            }
        };
        if !algorithms.contains(&header.alg) {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = algorithms;
        v.set_issuer(&[&idp.identity.issuer]);
        v.set_audience(&idp.identity.audience);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = idp.identity.leeway_secs;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => JwtError::Expired,
                K::ImmatureSignature => JwtError::NotYetValid,
                K::InvalidAudience => JwtError::Audience(idp.identity.audience.join(", ")),
                K::InvalidSignature => JwtError::Signature,
                K::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
                K::InvalidAlgorithm => JwtError::Algorithm(format!("{:?}", header.alg)),
                other => JwtError::Invalid(format!("{other:?}")),
            }
        })?;
        idp.principal(&data.claims)
    }
}

impl Idp {
    fn admits(&self, claims: &Value) -> bool {
        match (&self.identity.tenant_claim, &self.identity.tenant_value) {
            (Some(claim), Some(value)) => claim_strings(claims, claim).iter().any(|v| v == value),
            _ => true,
        }
    }

    fn principal(&self, claims: &Value) -> Result<Principal, JwtError> {
        let user = claims
            .get(&self.identity.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| JwtError::MissingClaim(self.identity.user_claim.clone()))?;
        let groups = claim_strings(claims, &self.identity.groups_claim);
        let roles = roles_of(&self.config, &groups);
        Ok(Principal {
            tenant: self.tenant.clone(),
            user: user.to_string(),
            access: Access::of(&self.config, roles.iter().copied()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            groups,
        })
    }
}

/// A claim that holds a string or a list of strings.
fn claim_strings(claims: &Value, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The claims, before the signature is checked: only to pick the tenant.
fn peek_claims(token: &str) -> Result<Value, JwtError> {
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(JwtError::Malformed),
    }
}

/// The algorithms a JWKS key may verify: the one it names, else its family's.
/// Symmetric (`oct`) keys in a JWKS are never used.
fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
    if let Some(a) = &jwk.common.key_algorithm
        && let Ok(a) = Algorithm::from_str(&a.to_string())
    {
        return vec![a];
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        _ => Vec::new(),
    }
}

impl Jwks {
    fn new(from: JwksFrom) -> Jwks {
        Jwks {
            from,
            state: Mutex::new(JwksState::default()),
        }
    }

    /// The key `kid` names (or the only key, for a token without `kid`).
    async fn key(&self, kid: Option<&str>, client: &reqwest::Client) -> Result<Jwk, JwtError> {
        let mut state = self.state.lock().await;
        let stale = state.fetched.is_none_or(|t| t.elapsed() > MAX_AGE);
        if stale && let Err(e) = self.refresh(&mut state, client).await {
            if state.set.is_none() {
                return Err(e);
            }
            warn!(error = %e, "keeping the identity provider's previous keys");
        }
        if let Some(k) = find(state.set.as_ref(), kid)? {
            return Ok(k);
        }
        // An unknown key: the provider may have rotated. Re-read, not too often.
        if state.fetched.is_some_and(|t| t.elapsed() >= MIN_REFRESH) {
            self.refresh(&mut state, client).await?;
            if let Some(k) = find(state.set.as_ref(), kid)? {
                return Ok(k);
            }
        }
        Err(JwtError::UnknownKey(kid.unwrap_or("(none)").to_string()))
    }

    async fn refresh(
        &self,
        state: &mut JwksState,
        client: &reqwest::Client,
    ) -> Result<(), JwtError> {
        let set: JwkSet = match &self.from {
            JwksFrom::Url(url) => client
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| JwtError::Keys(format!("{url}: {e}")))?
                .json()
                .await
                .map_err(|e| JwtError::Keys(format!("{url}: not a JWKS: {e}")))?,
            JwksFrom::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| JwtError::Keys(format!("{}: {e}", path.display())))?;
                serde_json::from_str(&text)
                    .map_err(|e| JwtError::Keys(format!("{}: not a JWKS: {e}", path.display())))?
            }
        };
        state.set = Some(set);
        state.fetched = Some(Instant::now());
        Ok(())
    }
}

fn find(set: Option<&JwkSet>, kid: Option<&str>) -> Result<Option<Jwk>, JwtError> {
    let Some(set) = set else {
        return Ok(None);
    };
    Ok(match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => {
            return Err(JwtError::Invalid(
                "the token names no key (kid) and the identity provider has several".into(),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls_must_be_https_outside_loopback() {
        assert!(acceptable_jwks_url("https://login.example.com/keys"));
        assert!(acceptable_jwks_url("http://127.0.0.1:8080/jwks"));
        assert!(acceptable_jwks_url("http://localhost/jwks"));
        assert!(!acceptable_jwks_url("http://login.example.com/keys"));
        assert!(!acceptable_jwks_url("http://127.0.0.1.evil.com/keys"));
        assert!(!acceptable_jwks_url("ftp://x"));
    }

    #[test]
    fn claims_are_peeked_only_from_well_formed_tokens() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"iss":"x"}"#)
        );
        assert_eq!(peek_claims(&token).unwrap()["iss"], "x");
        assert!(peek_claims("a.b").is_err());
        let not_object = format!("{}.{}.sig", b64("{}"), b64("[1]"));
        assert!(peek_claims(&not_object).is_err());
        assert!(Verifier::looks_like_jwt(
            &token.replace("sig", "x").replacen(
                &b64(r#"{"alg":"HS256"}"#),
                "eyJhbGciOiJIUzI1NiJ9",
                1
            )
        ));
        assert!(!Verifier::looks_like_jwt("opaque-token"));
    }
}
