//! Enrolment and the provisioning API, attacked: admin API keys, tokens
//! that are replayed, expired or pin another hub, an agent that enrols,
//! serves, is revoked (disconnected at once, refused afterwards), and
//! tenants that cannot touch each other's agents.

use std::collections::BTreeMap;
use std::time::Duration;

use gatehouse::agent::enroll::{EnrolError, enroll};
use gatehouse::config::agent::HubConnection;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::{Fixture, code, query, rows, sqlite, tpch_db};

pub(crate) struct Api {
    pub(crate) base: String,
    http: reqwest::Client,
    pub(crate) key: String,
}

impl Api {
    pub(crate) async fn new(fx: &Fixture) -> Api {
        let addr = fx.admin.expect("the hub serves the provisioning API");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(fx.pki.ca_cert()).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        let url = format!(
            "sqlite://{}",
            fx.pki.dir.parent().unwrap().join("hub-state.db").display()
        );
        let key = gatehouse::state::Store::open(&url)
            .await
            .unwrap()
            .create_api_key(&crate::harness::unique("test"))
            .await
            .unwrap();
        Api {
            base: format!("https://localhost:{}", addr.port()),
            http,
            key,
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self, tenant: &str, agent: &str, ttl: u64) -> String {
        let (status, body) = self
            .call(
                "POST",
                &format!("/v1/tenants/{tenant}/enrolment-tokens"),
                Some(json!({"agent_id": agent, "ttl_secs": ttl})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["enrolment_token"].as_str().unwrap().to_string()
    }
}

/// An agent serving TPC-H with the certificate an enrolment gave it.
fn enrolled_agent(
    fx: &Fixture,
    e: &gatehouse::agent::enroll::Enrolment,
    renew_before_days: Option<u32>,
) -> gatehouse::config::agent::AgentConfig {
    gatehouse::config::agent::AgentConfig {
        hub: HubConnection {
            address: fx.tunnel.to_string(),
            server_name: Some("localhost".into()),
            ca: e.hub_ca.clone(),
            cert: e.cert.clone(),
            key: e.key.clone(),
            renew_before_days,
        },
        sources: BTreeMap::from([("tpch".to_string(), sqlite(tpch_db()))]),
        drain_timeout_secs: 5,
        realtime_first: true,
        audit: None,
    }
}

#[tokio::test]
async fn agents_enrol_serve_and_are_revoked() {
    let mut fx = Fixture::builder()
        .tenant("acme", "alice")
        .tenant("globex", "gil")
        .provisioning()
        .start()
        .await;
    let api = Api::new(&fx).await;
    let hub = api.base.clone();

    // No key, a wrong key: refused.
    let anonymous = api
        .http
        .get(format!("{hub}/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = Api {
        key: "gha_guess".into(),
        base: hub.clone(),
        http: api.http.clone(),
    };
    assert_eq!(wrong.call("GET", "/v1/tenants", None).await.0, 401);

    // Enrol: the key pair is made here, the certificate comes back.
    let token = api.token("acme", "acme-9", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let e = enroll(&hub, &token, dir.path()).await.unwrap();
    assert_eq!((e.tenant.as_str(), e.agent_id.as_str()), ("acme", "acme-9"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&e.key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is for the service only"
        );
    }

    // The token is spent.
    let again = tempfile::tempdir().unwrap();
    let err = enroll(&hub, &token, again.path()).await.unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    // An expired token.
    let short = api.token("acme", "acme-10", 1).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let err = enroll(&hub, &short, again.path()).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // A token pinning another hub's CA: refused before anything is sent.
    let fresh = api.token("acme", "acme-11", 600).await;
    let (secret, _) = fresh.rsplit_once('.').unwrap();
    let forged = format!("{secret}.{}", "ab".repeat(32));
    let err = enroll(&hub, &forged, again.path()).await.unwrap_err();
    assert!(matches!(err, EnrolError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("pins"), "{err}");
    // ... so that token is still good.
    enroll(&hub, &fresh, again.path()).await.unwrap();

    // The enrolled agent serves its tenant.
    fx.start_agent_with(enrolled_agent(&fx, &e, None));
    fx.wait_agents(1).await;
    let mut alice = fx.client("alice").await;
    assert_eq!(
        rows(&query(&mut alice, "SELECT * FROM nation").await.unwrap()),
        25
    );
    let (status, agents) = api.call("GET", "/v1/tenants/acme/agents", None).await;
    assert_eq!(status, 200);
    let me = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "acme-9")
        .unwrap_or_else(|| panic!("{agents}"));
    assert_eq!(me["status"], "connected");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["sources"], json!(["tpch"]));
    assert!(
        me["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{me}"
    );
    assert!(me["last_seen_ms"].as_i64().is_some(), "{me}");

    // The hub's audit trail, through the API.
    // (Records are stored just after the query ends: allow a moment.)
    let mut trail = Value::Null;
    for _ in 0..30 {
        let (status, t) = api
            .call("GET", "/v1/tenants/acme/audit?limit=10", None)
            .await;
        assert_eq!(status, 200, "{t}");
        trail = t;
        if trail.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = trail
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sql"] == "SELECT * FROM nation")
        .unwrap_or_else(|| panic!("{trail}"));
    assert_eq!(
        (&ok["user"], &ok["agent"], &ok["rows"], &ok["outcome"]),
        (&json!("alice"), &json!("acme-9"), &json!(25), &json!("ok"))
    );
    let (_, other) = api.call("GET", "/v1/tenants/globex/audit", None).await;
    assert_eq!(other, json!([]), "another tenant's trail is its own");

    // Another tenant cannot see or revoke it.
    let (status, listed) = api.call("GET", "/v1/tenants/globex/agents", None).await;
    assert!(
        status == 404 || listed.as_array().is_some_and(|a| a.is_empty()),
        "{status} {listed}"
    );
    let (status, _) = api
        .call("POST", "/v1/tenants/globex/agents/acme-9/revoke", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(fx.registry().count(), 1);

    // Revoked: disconnected at once, refused when it comes back.
    let (status, body) = api
        .call("POST", "/v1/tenants/acme/agents/acme-9/revoke", None)
        .await;
    assert_eq!(status, 204, "{body}");
    for _ in 0..50 {
        if fx.registry().count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fx.registry().count(),
        0,
        "the revoked agent is still connected"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fx.registry().count(), 0, "the revoked agent got back in");
    let e = query(&mut alice, "SELECT * FROM nation").await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e}");
    let (_, agents) = api.call("GET", "/v1/tenants/acme/agents", None).await;
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "acme-9" && a["status"] == "revoked"),
        "{agents}"
    );
    fx.stop().await;
}

#[tokio::test]
async fn tenants_are_managed_and_the_api_is_documented() {
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .provisioning()
        .start()
        .await;
    let api = Api::new(&fx).await;
    let (status, t) = api
        .call("POST", "/v1/tenants", Some(json!({"name": "initech"})))
        .await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["name"], "initech");
    let (status, e) = api
        .call("POST", "/v1/tenants", Some(json!({"name": "initech"})))
        .await;
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("already exists"));
    let (status, e) = api
        .call("POST", "/v1/tenants", Some(json!({"name": "no spaces"})))
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = api
        .call(
            "POST",
            "/v1/tenants/initech/enrolment-tokens",
            Some(json!({"agent_id": "i-1", "ttl_secs": 0})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = api
        .call(
            "POST",
            "/v1/tenants/nobody/enrolment-tokens",
            Some(json!({"agent_id": "n-1"})),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    let (_, list) = api.call("GET", "/v1/tenants", None).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "initech")
    );
    assert_eq!(api.call("DELETE", "/v1/tenants/initech", None).await.0, 204);
    assert_eq!(api.call("DELETE", "/v1/tenants/initech", None).await.0, 404);

    // The same through `gatehouse hub admin`'s client.
    use gatehouse::hub::admin_client::{AdminAction, AdminClient, ClientError};
    let cli = AdminClient::new(&api.base, &api.key, Some(&fx.pki.ca_cert())).unwrap();
    let hooli = AdminAction::CreateTenant {
        name: "hooli".into(),
    };
    assert_eq!(cli.run(&hooli).await.unwrap()["name"], "hooli");
    let listed = cli.run(&AdminAction::Tenants).await.unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "hooli")
    );
    let token = cli
        .run(&AdminAction::Token {
            tenant: "hooli".into(),
            agent_id: "h-1".into(),
            ttl_secs: 60,
        })
        .await
        .unwrap();
    assert!(
        token["enrolment_token"]
            .as_str()
            .unwrap()
            .starts_with("ghe_")
    );
    let missing = cli
        .run(&AdminAction::Revoke {
            tenant: "hooli".into(),
            agent_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ClientError::Refused { status: 404, .. }),
        "{missing}"
    );
    let stranger = AdminClient::new(&api.base, "gha_guess", Some(&fx.pki.ca_cert())).unwrap();
    let refused = stranger.run(&AdminAction::Tenants).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Refused { status: 401, .. }),
        "{refused}"
    );

    // The OpenAPI document describes every route the API serves.
    let doc: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenant}",
        "/v1/tenants/{tenant}/enrolment-tokens",
        "/v1/tenants/{tenant}/agents",
        "/v1/tenants/{tenant}/agents/{agent}/revoke",
        "/v1/tenants/{tenant}/audit",
        "/v1/tenants/{tenant}/identity",
        "/v1/tenants/{tenant}/roles",
        "/v1/tenants/{tenant}/grants",
        "/v1/enrol",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    fx.stop().await;
}

#[tokio::test]
async fn certificates_are_renewed_over_the_tunnel() {
    let mut fx = Fixture::builder()
        .tenant("acme", "alice")
        .provisioning()
        .start()
        .await;
    let api = Api::new(&fx).await;
    let token = api.token("acme", "acme-r", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let e = enroll(&api.base, &token, dir.path()).await.unwrap();
    let (first_cert, first_key) = (
        std::fs::read_to_string(&e.cert).unwrap(),
        std::fs::read_to_string(&e.key).unwrap(),
    );
    // A 30-day certificate with a year's margin: due at once.
    fx.start_agent_with(enrolled_agent(&fx, &e, Some(365)));
    fx.wait_agents(1).await;
    let mut renewed = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&e.cert).unwrap() != first_cert {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(renewed, "the agent did not renew its certificate");
    let new_key = std::fs::read_to_string(&e.key).unwrap();
    assert_ne!(new_key, first_key, "a renewal uses a new key pair");
    let pem = std::fs::read(&e.cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "acme-r");

    // The next connection uses the renewed certificate.
    fx.agents.pop().unwrap().stop().await;
    fx.start_agent_with(enrolled_agent(&fx, &e, None));
    fx.wait_agents(1).await;
    let mut alice = fx.client("alice").await;
    assert_eq!(
        rows(&query(&mut alice, "SELECT * FROM nation").await.unwrap()),
        25
    );
    fx.stop().await;
}
