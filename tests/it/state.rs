//! The hub's state store, the same checks on both backends: an embedded
//! SQLite file and the real PostgreSQL that `tests/run` starts (a fresh
//! database each time, migrated from nothing).

use std::time::Duration;

use gatehouse::state::{StateError, Store, TokenRefusal};

use crate::harness::pg_scratch_db;

async fn backends() -> (tempfile::TempDir, Vec<(&'static str, Store)>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("hub.db").display());
    let stores = vec![
        ("sqlite", Store::open(&sqlite).await.unwrap()),
        (
            "postgres",
            Store::open(&pg_scratch_db().await).await.unwrap(),
        ),
    ];
    (dir, stores)
}

#[tokio::test]
async fn tokens_enrol_once_and_expire() {
    let (_dir, stores) = backends().await;
    for (db, s) in stores {
        s.create_tenant("acme").await.unwrap();
        assert!(
            matches!(s.create_tenant("acme").await, Err(StateError::Conflict(_))),
            "{db}"
        );
        let t = s
            .issue_token("acme", "acme-1", Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(
            s.redeem_token(&t.secret).await.unwrap(),
            Ok(("acme".into(), "acme-1".into())),
            "{db}"
        );
        assert_eq!(
            s.redeem_token(&t.secret).await.unwrap(),
            Err(TokenRefusal::Used),
            "{db}"
        );
        assert_eq!(
            s.redeem_token("ghe_forged").await.unwrap(),
            Err(TokenRefusal::Unknown),
            "{db}"
        );
        let short = s
            .issue_token("acme", "acme-2", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            s.redeem_token(&short.secret).await.unwrap(),
            Err(TokenRefusal::Expired),
            "{db}"
        );
        assert!(
            matches!(
                s.issue_token("nobody", "x", Duration::from_secs(1)).await,
                Err(StateError::NotFound(_))
            ),
            "{db}"
        );
        // Two redemptions racing: exactly one wins.
        let t = s
            .issue_token("acme", "acme-3", Duration::from_secs(600))
            .await
            .unwrap();
        let (a, b) = tokio::join!(s.redeem_token(&t.secret), s.redeem_token(&t.secret));
        let wins = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|r| r.is_ok())
            .count();
        assert_eq!(wins, 1, "{db}");
    }
}

#[tokio::test]
async fn agents_are_enrolled_seen_and_revoked() {
    let (_dir, stores) = backends().await;
    for (db, s) in stores {
        s.create_tenant("acme").await.unwrap();
        s.create_tenant("globex").await.unwrap();
        s.enrol_agent("acme-1", "acme", 1_000).await.unwrap();
        s.seen("acme-1", "0.1.0", Some(1.5)).await.unwrap();
        let a = s.agent("acme-1").await.unwrap().unwrap();
        assert_eq!(
            (a.tenant.as_str(), a.version.as_deref(), a.latency_ms),
            ("acme", Some("0.1.0"), Some(1.5)),
            "{db}"
        );
        // An agent id is taken across the hub.
        assert!(
            matches!(
                s.issue_token("globex", "acme-1", Duration::from_secs(60))
                    .await,
                Err(StateError::Conflict(_))
            ),
            "{db}"
        );
        // Another tenant cannot revoke it.
        assert!(s.revoke_agent("globex", "acme-1").await.is_err(), "{db}");
        s.revoke_agent("acme", "acme-1").await.unwrap();
        let revoked = s.agent("acme-1").await.unwrap().unwrap();
        assert!(revoked.revoked_ms.is_some(), "{db}");
        assert_eq!(s.agents("acme").await.unwrap().len(), 1, "{db}");
        assert!(s.agents("globex").await.unwrap().is_empty(), "{db}");
        s.delete_tenant("acme").await.unwrap();
        assert!(s.agent("acme-1").await.unwrap().is_none(), "{db}");
        assert!(s.delete_tenant("acme").await.is_err(), "{db}");
        assert_eq!(
            s.tenants()
                .await
                .unwrap()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["globex"],
            "{db}"
        );
    }
}

#[tokio::test]
async fn api_keys_are_kept_as_hashes() {
    let (_dir, stores) = backends().await;
    for (db, s) in stores {
        let key = s.create_api_key("ops").await.unwrap();
        assert_eq!(
            s.api_key(&key).await.unwrap().as_deref(),
            Some("ops"),
            "{db}"
        );
        assert_eq!(s.api_key("gha_guess").await.unwrap(), None, "{db}");
        assert!(s.create_api_key("ops").await.is_err(), "{db}");
    }
}

#[tokio::test]
async fn reopening_migrates_nothing_twice() {
    let url = pg_scratch_db().await;
    let s = Store::open(&url).await.unwrap();
    s.create_tenant("acme").await.unwrap();
    drop(s);
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn authentication_settings_and_the_audit_trail() {
    use gatehouse::config::agent::ModeName;
    use gatehouse::config::hub::Grant;
    use gatehouse::state::{AuditRow, AuthSetting};
    use std::collections::BTreeMap;
    let (_dir, stores) = backends().await;
    for (db, s) in stores {
        s.create_tenant("acme").await.unwrap();
        let roles = BTreeMap::from([("analysts".to_string(), vec!["reader".to_string()])]);
        let grants = BTreeMap::from([(
            "reader".to_string(),
            Grant {
                sources: vec!["sales".into()],
                modes: vec![ModeName::Realtime],
            },
        )]);
        s.set_auth("acme", AuthSetting::Grants(&grants))
            .await
            .unwrap();
        s.set_auth("acme", AuthSetting::Roles(&roles))
            .await
            .unwrap();
        let all = s.tenant_auth().await.unwrap();
        let acme = &all["acme"];
        assert_eq!(acme.roles.as_ref(), Some(&roles), "{db}");
        assert_eq!(acme.grants.as_ref(), Some(&grants), "{db}");
        assert!(acme.identity.is_none(), "{db}");
        assert!(
            s.set_auth("nobody", AuthSetting::Roles(&roles))
                .await
                .is_err(),
            "{db}"
        );

        let row = |id: &str, t: i64| AuditRow {
            query_id: id.into(),
            time_ms: t,
            tenant: "acme".into(),
            user: "ann".into(),
            groups: vec!["analysts".into()],
            source: "sales".into(),
            agent: Some("acme-1".into()),
            mode: "realtime".into(),
            sql: Some("SELECT 1".into()),
            sql_sha256: None,
            rows: 1,
            bytes: 8,
            duration_ms: 1.5,
            outcome: "ok".into(),
            error_code: None,
            error: None,
        };
        for (id, t) in [("q1", 1_000), ("q2", 2_000), ("q3", 3_000)] {
            s.insert_audit(&row(id, t)).await.unwrap();
        }
        let newest = s.audit("acme", None, 2).await.unwrap();
        assert_eq!(
            newest
                .iter()
                .map(|r| r.query_id.as_str())
                .collect::<Vec<_>>(),
            ["q3", "q2"],
            "{db}"
        );
        assert_eq!(newest[0], row("q3", 3_000), "{db}");
        let older = s.audit("acme", Some(2_000), 10).await.unwrap();
        assert_eq!(older.len(), 1, "{db}");
        assert!(
            s.audit("globex", None, 10).await.unwrap().is_empty(),
            "{db}"
        );
    }
}
