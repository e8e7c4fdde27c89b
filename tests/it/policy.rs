//! Local policy and audit through the whole path: the agent's byte limit, and
//! the audit trails the hub and the agent write.

use gatehouse::config::agent::{AuditConfig, AuditSql, Limits, ModeName, SourceConfig};
use gatehouse::config::hub::Grant;
use tonic::Code;

use crate::harness::{Fixture, code, message, query, rows, sqlite, tpch_db};

fn tpch(limits: Limits) -> SourceConfig {
    let mut s = sqlite(tpch_db());
    if let SourceConfig::Sqlite(s) = &mut s {
        s.limits = limits;
    }
    s
}

async fn tpch_fixture(limits: Limits) -> Fixture {
    Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", tpch(limits))])
        .start()
        .await
}

#[tokio::test]
async fn max_bytes_stops_a_result_at_the_limit() {
    let limits = Limits {
        max_bytes: 100_000,
        ..Limits::default()
    };
    let fx = tpch_fixture(limits).await;
    let mut c = fx.client("alice").await;
    // 25 nations: a few kB.
    assert_eq!(
        rows(&query(&mut c, "SELECT * FROM nation").await.unwrap()),
        25
    );
    // 60,175 line items: megabytes.
    let e = query(&mut c, "SELECT * FROM lineitem").await.unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{e}");
    assert!(
        message(&e).contains("100000 bytes") && message(&e).contains("limits.max_bytes"),
        "{e}"
    );
    fx.stop().await;
}

fn read(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn hub_and_agent_audit_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let hub_path = dir.path().join("hub-audit.jsonl");
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .configure("acme", |t| {
            t.users.get_mut("alice").unwrap().roles = vec!["reader".into()];
            t.grants.insert(
                "reader".into(),
                Grant {
                    sources: vec!["tpch".into()],
                    modes: vec![ModeName::Realtime],
                },
            );
        })
        .agent("acme", "acme-1", vec![("tpch", tpch(Limits::default()))])
        .agent_audit(AuditConfig {
            path: path.clone(),
            sql: AuditSql::Text,
        })
        .hub_audit(AuditConfig {
            path: hub_path.clone(),
            sql: AuditSql::Hash,
        })
        .start()
        .await;
    let mut c = fx.client("alice").await;
    query(&mut c, "SELECT n_name FROM nation").await.unwrap();
    query(&mut c, "SELEC 1").await.unwrap_err();
    c.set_header("x-gatehouse-mode", "reload");
    let e = query(&mut c, "SELECT * FROM lineitem").await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");
    fx.stop().await;

    // The hub: every query, the refused one too; SQL kept as a hash here.
    let hub = read(&hub_path);
    let sha = |sql: &str| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(sql))
    };
    let find = |sql: &str| {
        hub.iter()
            .find(|r| r["sql_sha256"] == sha(sql))
            .unwrap_or_else(|| panic!("the hub did not record {sql:?}: {hub:#?}"))
    };
    let ok = find("SELECT n_name FROM nation");
    assert_eq!(
        (
            &ok["outcome"],
            &ok["rows"],
            &ok["agent"],
            &ok["tenant"],
            &ok["user"]
        ),
        (
            &serde_json::json!("ok"),
            &serde_json::json!(25),
            &serde_json::json!("acme-1"),
            &serde_json::json!("acme"),
            &serde_json::json!("alice")
        )
    );
    assert!(ok.get("sql").is_none(), "{ok}");
    let failed = find("SELEC 1");
    assert_eq!(failed["outcome"], "error");
    assert_eq!(failed["error_code"], "InvalidArgument");
    let refused = find("SELECT * FROM lineitem");
    assert_eq!(refused["outcome"], "error");
    assert_eq!(refused["error_code"], "PermissionDenied");
    assert_eq!(refused["mode"], "reload");
    assert!(refused.get("agent").is_none(), "{refused}");

    // The agent: what reached it (the refused query never did).
    let records = read(&path);
    assert!(
        !records.iter().any(|r| r["sql"] == "SELECT * FROM lineitem"),
        "{records:#?}"
    );
    let ok = records
        .iter()
        .find(|r| r["sql"] == "SELECT n_name FROM nation" && r["request"] == "query")
        .unwrap_or_else(|| panic!("no record of the query: {records:#?}"));
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["rows"], 25);
    assert!(ok["bytes"].as_u64().unwrap() > 0);
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["tenant"], "acme");
    assert_eq!(ok["agent"], "acme-1");
    assert_eq!(ok["source"], "tpch");
    assert_eq!(ok["mode"], "realtime");
    assert!(ok["query_id"].as_str().is_some_and(|q| !q.is_empty()));
    let failed = records
        .iter()
        .find(|r| r["sql"] == "SELEC 1" && r["request"] == "query")
        .unwrap_or_else(|| panic!("no record of the failed query: {records:#?}"));
    assert_eq!(failed["outcome"], "error");
    assert_eq!(failed["error_code"], "ERROR_CODE_DATABASE");
    assert!(
        failed["error"].as_str().unwrap().contains("syntax error"),
        "{failed}"
    );
}

#[tokio::test]
async fn allow_lists_limit_queries_and_listings_to_the_listed_tables() {
    let limits = Limits {
        allow_tables: vec!["nation".into(), "main.region".into()],
        ..Limits::default()
    };
    let fx = tpch_fixture(limits).await;
    let mut c = fx.client("alice").await;
    let sql =
        "SELECT n.n_name, r.r_name FROM nation n JOIN region r ON r.r_regionkey = n.n_regionkey";
    assert_eq!(rows(&query(&mut c, sql).await.unwrap()), 25);
    for (bad, why) in [
        ("SELECT * FROM lineitem", "allow-list"),
        (
            "SELECT * FROM nation WHERE n_nationkey IN (SELECT o_custkey FROM orders)",
            "allow-list",
        ),
        ("SELECT * FROM sqlite_master", "allow-list"),
        ("DELETE FROM nation", "only allows queries"),
    ] {
        let e = query(&mut c, bad).await.unwrap_err();
        assert_eq!(code(&e), Code::PermissionDenied, "{bad}: {e}");
        assert!(message(&e).contains(why), "{bad}: {e}");
    }
    let info = c
        .get_tables(arrow_flight::sql::CommandGetTables {
            catalog: Some("tpch".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    let mut tables = crate::harness::strings(&crate::harness::fetch(&mut c, info).await, 2);
    tables.sort();
    assert_eq!(tables, ["nation", "region"]);
    fx.stop().await;
}
