//! The agent's own audit trail: one JSON object per request it served,
//! appended to a file on the customer's machine. The hub keeps its own; this
//! one is what the customer's IT can check the cloud against.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::error;

pub use crate::audit::AuditLog;
use crate::protocol::pb;

/// What a session knows about where requests come from, for its records.
#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
    agent: Arc<str>,
    tenant: Arc<str>,
}

/// How a request ended.
pub struct Outcome<'a> {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// `None` when it succeeded.
    pub error: Option<(pb::ErrorCode, &'a str)>,
}

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    agent: &'a str,
    tenant: &'a str,
    query_id: &'a str,
    user: &'a str,
    groups: &'a [String],
    source: &'a str,
    request: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_sha256: Option<String>,
    rows: u64,
    bytes: u64,
    duration_ms: f64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Audit {
    pub fn new(log: Option<Arc<AuditLog>>, agent: &str, tenant: &str) -> Audit {
        Audit {
            log,
            agent: agent.into(),
            tenant: tenant.into(),
        }
    }

    /// Appends the record of `request`; a failure to write is logged, and
    /// the query's own result is unaffected.
    pub fn record(&self, request: &pb::Request, outcome: &Outcome<'_>) {
        let Some(log) = &self.log else {
            return;
        };
        if let Err(e) = log.append(&self.entry(log, request, outcome)) {
            error!(error = %e, query_id = %request.query_id, "could not write the audit record");
        }
    }

    fn entry<'a>(
        &'a self,
        log: &AuditLog,
        request: &'a pb::Request,
        outcome: &Outcome<'a>,
    ) -> Record<'a> {
        use pb::request::Kind;
        let (kind, mode, sql) = match &request.kind {
            Some(Kind::Query(q)) => (
                "query",
                Some(
                    match pb::Mode::try_from(q.mode).unwrap_or(pb::Mode::Unspecified) {
                        pb::Mode::Reload => "reload",
                        _ => "realtime",
                    },
                ),
                Some(q.sql.as_str()),
            ),
            Some(Kind::Describe(d)) => ("describe", None, Some(d.sql.as_str())),
            Some(Kind::ListTables(_)) => ("list_tables", None, None),
            None => ("none", None, None),
        };
        let (sql, sql_sha256) = log.sql(sql);
        Record {
            time: crate::audit::now(),
            agent: &self.agent,
            tenant: &self.tenant,
            query_id: &request.query_id,
            user: &request.user,
            groups: &request.groups,
            source: &request.source,
            request: kind,
            mode,
            sql,
            sql_sha256,
            rows: outcome.rows,
            bytes: outcome.bytes,
            duration_ms: outcome.elapsed.as_secs_f64() * 1e3,
            outcome: match outcome.error {
                None => "ok",
                Some((pb::ErrorCode::Cancelled, _)) => "cancelled",
                Some(_) => "error",
            },
            error_code: outcome.error.map(|(c, _)| c.as_str_name()),
            error: outcome.error.map(|(_, m)| m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuditConfig, AuditSql};
    use sha2::{Digest, Sha256};

    fn request(sql: &str) -> pb::Request {
        pb::Request {
            query_id: "q1".into(),
            source: "sales".into(),
            user: "alice".into(),
            groups: vec!["analysts".into()],
            kind: Some(pb::request::Kind::Query(pb::Query {
                sql: sql.into(),
                mode: pb::Mode::Reload as i32,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn records_are_json_lines_with_the_sql_or_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for sql_mode in [AuditSql::Text, AuditSql::Hash] {
            let log = AuditLog::open(&AuditConfig {
                path: path.clone(),
                sql: sql_mode,
            })
            .unwrap();
            let audit = Audit::new(Some(Arc::new(log)), "agent-1", "acme");
            audit.record(
                &request("SELECT secret FROM t"),
                &Outcome {
                    rows: 3,
                    bytes: 120,
                    elapsed: Duration::from_millis(5),
                    error: Some((pb::ErrorCode::LimitExceeded, "too many rows")),
                },
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["agent"], "agent-1");
        assert_eq!(first["tenant"], "acme");
        assert_eq!(first["user"], "alice");
        assert_eq!(first["groups"][0], "analysts");
        assert_eq!(first["source"], "sales");
        assert_eq!(first["mode"], "reload");
        assert_eq!(first["sql"], "SELECT secret FROM t");
        assert_eq!(first["rows"], 3);
        assert_eq!(first["outcome"], "error");
        assert_eq!(first["error_code"], "ERROR_CODE_LIMIT_EXCEEDED");
        let second = &lines[1];
        assert!(second.get("sql").is_none(), "{second}");
        assert_eq!(
            second["sql_sha256"],
            format!("{:x}", Sha256::digest("SELECT secret FROM t"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
    }
}
