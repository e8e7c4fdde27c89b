//! The Python suite (ADBC Flight SQL, pyarrow.flight, polars) against a real
//! hub and agent. The venv with pinned versions comes from `tests/run`.

use crate::harness::{Fixture, PASSWORD, mysql, postgres, sqlite, tpch_db};
use gatehouse::config::agent::Limits;

#[tokio::test]
async fn adbc_and_pyarrow_clients() {
    let python = std::env::var("GATEHOUSE_TEST_PYTHON").expect(
        "GATEHOUSE_TEST_PYTHON is not set: run the tests with ./tests/run, which creates the venv with the Flight SQL clients",
    );
    // SQL Server through Microsoft's mock TDS server (see sqlserver.rs).
    let ms = crate::sqlserver::Mock::plain().await;
    ms.register(crate::sqlserver::USERS, crate::sqlserver::users())
        .await;
    ms.with_catalog().await;
    // Tokens from the platform's identity provider: HS256 with a shared secret.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt.secret");
    let secret = "python-suite-shared-secret-of-32-bytes+";
    std::fs::write(&secret_file, secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "https://idp.example.test/", "aud": "gatehouse",
                            "sub": "ann", "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .configure("acme", |t| {
            t.identity = Some(gatehouse::config::hub::Identity {
                issuer: "https://idp.example.test/".into(),
                audience: vec!["gatehouse".into()],
                jwks_url: None,
                jwks_file: None,
                hs256_secret_env: None,
                hs256_secret_file: Some(secret_file.clone()),
                tenant_claim: None,
                tenant_value: None,
                user_claim: "sub".into(),
                groups_claim: "groups".into(),
                leeway_secs: 60,
            });
        })
        .agent(
            "acme",
            "acme-1",
            vec![
                ("tpch", sqlite(tpch_db())),
                ("pg", postgres(Limits::default())),
                ("my", mysql(Limits::default())),
                ("ms", ms.source(false)),
            ],
        )
        .start()
        .await;
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            &format!("{root}/tests/python"),
        ])
        .env("GATEHOUSE_FLIGHT_URI", format!("grpc://{}", fx.flight))
        .env("GATEHOUSE_USER", "alice")
        .env("GATEHOUSE_PASSWORD", PASSWORD)
        .env("GATEHOUSE_JWT", &jwt)
        .output()
        .await
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "the Python Flight SQL suite failed:\n{text}"
    );
    assert!(text.contains(" passed"), "pytest ran no test:\n{text}");
    fx.stop().await;
}
