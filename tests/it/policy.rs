//! The agent's own rules through the whole path: the byte limit, and the
//! audit trail the agent writes for its administrator.

use gatehouse::config::agent::{AuditConfig, AuditSql, Limits, SourceConfig};
use tonic::Code;

use crate::harness::{Fixture, code, message, query, rows, sqlite, tpch_db};

fn tpch(limits: Limits) -> SourceConfig {
    let mut s = sqlite(tpch_db());
    if let SourceConfig::Sqlite(s) = &mut s {
        s.limits = limits;
    }
    s
}

#[tokio::test]
async fn max_bytes_stops_a_result_at_the_limit() {
    let limits = Limits {
        max_bytes: 100_000,
        ..Limits::default()
    };
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", tpch(limits))])
        .start()
        .await;
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

#[tokio::test]
async fn the_agent_audits_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", tpch(Limits::default()))])
        .agent_audit(AuditConfig {
            path: path.clone(),
            sql: AuditSql::Text,
        })
        .start()
        .await;
    let mut c = fx.client("alice").await;
    query(&mut c, "SELECT n_name FROM nation").await.unwrap();
    query(&mut c, "SELEC 1").await.unwrap_err();
    fx.stop().await;

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
