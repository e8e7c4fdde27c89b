//! JWT bearer tokens at the hub, attacked: RS256, ES256 and EdDSA keys from
//! a JWKS served over HTTP (with rotation), HS256 from a secret file;
//! expired, not-yet-valid, wrong-audience, wrong-issuer, forged, unsigned
//! and algorithm-confused tokens; groups mapped to roles that grant sources
//! and modes; two tenants behind one identity provider kept apart.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_flight::sql::client::FlightSqlServiceClient;
use base64::Engine;
use gatehouse::config::agent::ModeName;
use gatehouse::config::hub::{Grant, Identity};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{Fixture, code, message, query, rows, sqlite, strings, tpch_db};

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "gatehouse";

/// A signing key and the public JWK the identity provider publishes for it.
struct Key {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
}

impl Key {
    /// A private key in PKCS#8 PEM from the `openssl` command line.
    fn openssl(args: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .output()
            .expect("run openssl to make a test key");
        assert!(out.status.success(), "{out:?}");
        std::fs::read(&path).unwrap()
    }

    fn rsa(kid: &str) -> Key {
        let pem = Self::openssl(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        Key {
            alg: Algorithm::RS256,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
        }
    }

    fn ec(kid: &str) -> Key {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        Key {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        }
    }

    fn ed25519(kid: &str) -> Key {
        let pem = Self::openssl(&["-algorithm", "ed25519"]);
        Key {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_pem(&pem).unwrap(),
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a token valid for an hour.
fn claims(tenant: &str, user: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user,
        "tid": tenant,
        "groups": groups,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// The identity provider's JWKS endpoint on loopback; its keys can change.
struct JwksServer {
    url: String,
    keys: Arc<RwLock<JwkSet>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let keys = Arc::new(RwLock::new(JwkSet { keys }));
        let served = keys.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let set = served.read().unwrap().clone();
                async move { axum::Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer { url, keys, task }
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.keys.write().unwrap() = JwkSet { keys };
    }
}

fn identity(tenant: &str, jwks_url: &str) -> Identity {
    Identity {
        issuer: ISSUER.into(),
        audience: vec![AUDIENCE.into()],
        jwks_url: Some(jwks_url.into()),
        jwks_file: None,
        hs256_secret_env: None,
        hs256_secret_file: None,
        tenant_claim: Some("tid".into()),
        tenant_value: Some(tenant.into()),
        user_claim: "sub".into(),
        groups_claim: "groups".into(),
        leeway_secs: 60,
    }
}

/// Two tenants behind one identity provider. acme: analysts may run
/// realtime queries on `tpch` only; loaders anything on any source.
async fn fixture(jwks_url: &str) -> Fixture {
    Fixture::builder()
        .tenant("acme", "acme-admin")
        .configure("acme", |t| {
            t.default_source = Some("tpch".into());
            t.identity = Some(identity("acme", jwks_url));
            t.roles.insert("analysts".into(), vec!["reader".into()]);
            t.roles.insert("loaders".into(), vec!["loader".into()]);
            t.grants.insert(
                "reader".into(),
                Grant {
                    sources: vec!["tpch".into()],
                    modes: vec![ModeName::Realtime],
                },
            );
            t.grants.insert(
                "loader".into(),
                Grant {
                    sources: vec!["*".into()],
                    modes: vec![ModeName::Realtime, ModeName::Reload],
                },
            );
        })
        .agent(
            "acme",
            "acme-1",
            vec![("tpch", sqlite(tpch_db())), ("secret", sqlite(tpch_db()))],
        )
        .tenant("globex", "globex-admin")
        .configure("globex", |t| {
            t.identity = Some(identity("globex", jwks_url));
        })
        .agent("globex", "globex-1", vec![("g", sqlite(tpch_db()))])
        .start()
        .await
}

async fn client(fx: &Fixture, token: &str) -> FlightSqlServiceClient<Channel> {
    let mut c = fx.anonymous().await;
    c.set_token(token.into());
    c
}

async fn catalogs(c: &mut FlightSqlServiceClient<Channel>) -> Result<Vec<String>, tonic::Code> {
    let info = c.get_catalogs().await.map_err(|e| code(&e))?;
    Ok(strings(&crate::harness::fetch(c, info).await, 0))
}

const SQL: &str = "SELECT n_name FROM nation";

#[tokio::test]
async fn groups_become_roles_that_grant_sources_and_modes() {
    let (rsa, ec, ed) = (Key::rsa("rsa-1"), Key::ec("ec-1"), Key::ed25519("ed-1"));
    let idp = JwksServer::start(vec![rsa.jwk(), ec.jwk(), ed.jwk()]).await;
    let fx = fixture(&idp.url).await;

    // An analyst (RS256): realtime on tpch; not reload, not the other source.
    let mut analyst = client(&fx, &rsa.sign(&claims("acme", "ann", &["analysts"]))).await;
    assert_eq!(rows(&query(&mut analyst, SQL).await.unwrap()), 25);
    assert_eq!(catalogs(&mut analyst).await.unwrap(), ["tpch"]);
    analyst.set_header("x-gatehouse-mode", "reload");
    let e = query(&mut analyst, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");
    assert!(message(&e).contains("reload"), "{e}");
    analyst.set_header("x-gatehouse-mode", "realtime");
    analyst.set_header("x-gatehouse-source", "secret");
    let e = query(&mut analyst, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");

    // A loader (ES256, then EdDSA): every source, reloads too.
    for key in [&ec, &ed] {
        let mut loader = client(&fx, &key.sign(&claims("acme", "lou", &["loaders"]))).await;
        assert_eq!(catalogs(&mut loader).await.unwrap(), ["secret", "tpch"]);
        loader.set_header("x-gatehouse-source", "secret");
        loader.set_header("x-gatehouse-mode", "reload");
        assert_eq!(
            rows(&query(&mut loader, SQL).await.unwrap()),
            25,
            "{:?}",
            key.alg
        );
    }

    // In no group: no role, nothing.
    let mut nobody = client(&fx, &rsa.sign(&claims("acme", "ned", &[]))).await;
    assert_eq!(catalogs(&mut nobody).await.unwrap(), Vec::<String>::new());
    let e = query(&mut nobody, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");

    // The other tenant behind the same provider sees only its own.
    let mut globex = client(&fx, &rsa.sign(&claims("globex", "gil", &["analysts"]))).await;
    assert_eq!(catalogs(&mut globex).await.unwrap(), ["g"]);
    globex.set_header("x-gatehouse-source", "tpch");
    let e = query(&mut globex, SQL).await.unwrap_err();
    assert_ne!(code(&e), Code::Ok);
    assert!(!message(&e).contains("secret"), "{e}");
    fx.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let rsa = Key::rsa("rsa-1");
    let idp = JwksServer::start(vec![rsa.jwk()]).await;
    let fx = fixture(&idp.url).await;
    let good = claims("acme", "ann", &["analysts"]);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        c
    };
    let refused = |token: String, why: &'static str| {
        let fx = &fx;
        async move {
            let mut c = client(fx, &token).await;
            let e = query(&mut c, SQL).await.unwrap_err();
            assert_eq!(code(&e), Code::Unauthenticated, "{why}: {e}");
            assert!(message(&e).contains(why), "{why}: {e}");
        }
    };

    refused(
        rsa.sign(&with(&|c| c["exp"] = json!(now() - 120))),
        "expired",
    )
    .await;
    // Within the 60 s leeway: still good.
    let mut late = client(&fx, &rsa.sign(&with(&|c| c["exp"] = json!(now() - 20)))).await;
    assert_eq!(rows(&query(&mut late, SQL).await.unwrap()), 25);
    refused(
        rsa.sign(&with(&|c| c["nbf"] = json!(now() + 600))),
        "not valid yet",
    )
    .await;
    refused(
        rsa.sign(&with(&|c| c["aud"] = json!("another-app"))),
        "another audience",
    )
    .await;
    refused(
        rsa.sign(&with(&|c| c["iss"] = json!("https://evil.example/"))),
        "no tenant of this hub accepts tokens from issuer",
    )
    .await;
    refused(
        rsa.sign(&with(&|c| c["tid"] = json!("initech"))),
        "no tenant",
    )
    .await;
    refused(
        rsa.sign(&with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        })),
        "exp",
    )
    .await;

    // Forged: signed by another key under the provider's key id.
    let forger = Key::rsa("rsa-1");
    refused(forger.sign(&good), "signature").await;
    // Unsigned (alg none), and a real token with its payload swapped.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa-1"})),
        b64(&good)
    );
    refused(unsigned, "not a well-formed JWT").await;
    let real = rsa.sign(&claims("acme", "ann", &["analysts"]));
    let mut parts: Vec<&str> = real.split('.').collect();
    let escalated = b64(&claims("acme", "ann", &["loaders"]));
    parts[1] = &escalated;
    refused(parts.join("."), "signature").await;
    // Algorithm confusion: HS256 keyed with the provider's public key.
    let public = serde_json::to_vec(&rsa.jwk()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused =
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(&public).unwrap()).unwrap();
    refused(confused, "HS256").await;
    // A key the provider never published.
    refused(Key::rsa("rsa-9").sign(&good), "rsa-9").await;
    fx.stop().await;
}

#[tokio::test]
async fn rotated_keys_are_picked_up() {
    let (old, new) = (Key::rsa("old"), Key::ec("new"));
    let idp = JwksServer::start(vec![old.jwk()]).await;
    let fx = fixture(&idp.url).await;
    let ann = claims("acme", "ann", &["analysts"]);
    let mut c = client(&fx, &old.sign(&ann)).await;
    assert_eq!(rows(&query(&mut c, SQL).await.unwrap()), 25);

    // The provider rotates: only the new key is published now.
    idp.publish(vec![new.jwk()]);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let mut c = client(&fx, &new.sign(&ann)).await;
    assert_eq!(rows(&query(&mut c, SQL).await.unwrap()), 25);
    // The retired key no longer admits anyone.
    let mut c = client(&fx, &old.sign(&ann)).await;
    let e = query(&mut c, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
    fx.stop().await;
}

#[tokio::test]
async fn hs256_with_a_shared_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-shared-secret-of-at-least-32-bytes!";
    let file = dir.path().join("jwt.secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let fx = Fixture::builder()
        .tenant("acme", "acme-admin")
        .configure("acme", |t| {
            t.identity = Some(Identity {
                jwks_url: None,
                hs256_secret_file: Some(file.clone()),
                tenant_claim: None,
                tenant_value: None,
                ..identity("acme", "")
            });
        })
        .agent("acme", "acme-1", vec![("tpch", sqlite(tpch_db()))])
        .start()
        .await;
    let sign = |key: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("acme", "ann", &[]),
            &EncodingKey::from_secret(key).unwrap(),
        )
        .unwrap()
    };
    let mut c = client(&fx, &sign(secret.as_bytes())).await;
    assert_eq!(rows(&query(&mut c, SQL).await.unwrap()), 25);
    let mut c = client(&fx, &sign(b"another-secret-of-at-least-32-bytes")).await;
    let e = query(&mut c, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
    assert!(message(&e).contains("signature"), "{e}");
    fx.stop().await;
}

#[tokio::test]
async fn identity_roles_and_grants_are_managed_through_the_api() {
    let rsa = Key::rsa("rsa-1");
    let idp = JwksServer::start(vec![rsa.jwk()]).await;
    // acme comes from hub.toml with no identity provider and no grants.
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .configure("acme", |t| t.default_source = Some("tpch".into()))
        .agent(
            "acme",
            "acme-1",
            vec![("tpch", sqlite(tpch_db())), ("secret", sqlite(tpch_db()))],
        )
        .provisioning()
        .start()
        .await;
    let api = crate::enrol::Api::new(&fx).await;
    let token = rsa.sign(&claims("acme", "ann", &["analysts"]));
    let mut ann = client(&fx, &token).await;
    let e = query(&mut ann, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated, "{e}");
    let mut alice = fx.client("alice").await;
    assert_eq!(rows(&query(&mut alice, SQL).await.unwrap()), 25);

    // An identity provider: only a JWKS URL through the API, https or loopback.
    let mut idp_settings = serde_json::to_value(identity("acme", &idp.url)).unwrap();
    let put = |path: &'static str, body: Value| {
        let api = &api;
        async move { api.call("PUT", path, Some(body)).await }
    };
    let mut bad = idp_settings.clone();
    bad["jwks_url"] = json!("http://keys.example.com/jwks");
    assert_eq!(put("/v1/tenants/acme/identity", bad).await.0, 400);
    let mut file = idp_settings.clone();
    file["jwks_url"] = Value::Null;
    file["jwks_file"] = json!("/etc/passwd");
    assert_eq!(put("/v1/tenants/acme/identity", file).await.0, 400);
    idp_settings["leeway_secs"] = json!(30);
    let (status, body) = put("/v1/tenants/acme/identity", idp_settings.clone()).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        api.call("GET", "/v1/tenants/acme/identity", None).await.1,
        idp_settings
    );
    // In force at once; no grants yet, so the tenant is open.
    assert_eq!(rows(&query(&mut ann, SQL).await.unwrap()), 25);

    // Roles need grants first.
    let roles = json!({"analysts": ["reader"]});
    let (status, body) = put("/v1/tenants/acme/roles", roles.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("reader"), "{body}");
    let grants = json!({"reader": {"sources": ["tpch"], "modes": ["realtime"]}});
    assert_eq!(put("/v1/tenants/acme/grants", grants.clone()).await.0, 204);
    assert_eq!(put("/v1/tenants/acme/roles", roles.clone()).await.0, 204);
    assert_eq!(
        api.call("GET", "/v1/tenants/acme/grants", None).await.1,
        grants
    );
    assert_eq!(
        api.call("GET", "/v1/tenants/acme/roles", None).await.1,
        roles
    );

    // The analyst may use tpch, not the other source; alice, logged in
    // before there were grants and holding no role, may use nothing now.
    assert_eq!(rows(&query(&mut ann, SQL).await.unwrap()), 25);
    ann.set_header("x-gatehouse-source", "secret");
    let e = query(&mut ann, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");
    let e = query(&mut alice, SQL).await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");

    // A grant a mapping still uses cannot be removed.
    let (status, body) = put("/v1/tenants/acme/grants", json!({})).await;
    assert_eq!(status, 400, "{body}");

    // `gatehouse hub admin` sets and shows the same from JSON files.
    use gatehouse::hub::admin_client::{AdminAction, AdminClient};
    let cli = AdminClient::new(&api.base, &api.key, Some(&fx.pki.ca_cert())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wider = dir.path().join("grants.json");
    std::fs::write(
        &wider,
        r#"{"reader": {"sources": ["tpch", "secret"], "modes": ["realtime"]}}"#,
    )
    .unwrap();
    cli.run(&AdminAction::SetGrants {
        tenant: "acme".into(),
        file: wider,
    })
    .await
    .unwrap();
    let shown = cli
        .run(&AdminAction::Auth {
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        shown["grants"]["reader"]["sources"],
        json!(["tpch", "secret"])
    );
    assert_eq!(shown["roles"], roles);
    assert_eq!(
        rows(&query(&mut ann, SQL).await.unwrap()),
        25,
        "now granted"
    );
    fx.stop().await;
}
