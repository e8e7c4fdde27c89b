//! The hub's audit trail: one record per query a client ran, refused ones
//! included, written when the query ends (or is refused, or abandoned).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tonic::Status;
use tracing::error;

use crate::audit::AuditLog;
use crate::auth::{Principal, mode_name};
use crate::protocol::pb;

/// One query's record, written when it is dropped.
pub struct Entry {
    log: Arc<AuditLog>,
    started: Instant,
    tenant: String,
    user: String,
    groups: Vec<String>,
    source: String,
    agent: Option<String>,
    query_id: String,
    mode: &'static str,
    sql: String,
    rows: u64,
    bytes: u64,
    /// Set when the query ended; a record without one was abandoned.
    outcome: Option<Result<(), (String, String)>>,
}

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    tenant: &'a str,
    user: &'a str,
    groups: &'a [String],
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    query_id: &'a str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_sha256: Option<String>,
    rows: u64,
    bytes: u64,
    duration_ms: f64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Entry {
    pub fn begin(
        log: Option<&Arc<AuditLog>>,
        p: &Principal,
        st: &pb::Statement,
        query_id: &str,
    ) -> Option<Entry> {
        Some(Entry {
            log: log?.clone(),
            started: Instant::now(),
            tenant: p.tenant.clone(),
            user: p.user.clone(),
            groups: p.groups.clone(),
            source: st.source.clone(),
            agent: None,
            query_id: query_id.to_string(),
            mode: mode_name(pb::Mode::try_from(st.mode).unwrap_or(pb::Mode::Realtime)),
            sql: st.sql.clone(),
            rows: 0,
            bytes: 0,
            outcome: None,
        })
    }

    pub fn agent(&mut self, id: &str) {
        self.agent = Some(id.to_string());
    }

    pub fn batch(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
    }

    pub fn done(&mut self) {
        self.outcome = Some(Ok(()));
    }

    pub fn failed(&mut self, status: &Status) {
        self.outcome = Some(Err((
            format!("{:?}", status.code()),
            status.message().to_string(),
        )));
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let (sql, sql_sha256) = self.log.sql(Some(&self.sql));
        let (outcome, error_code, error) = match &self.outcome {
            Some(Ok(())) => ("ok", None, None),
            Some(Err((code, message))) => ("error", Some(code.as_str()), Some(message.as_str())),
            None => ("cancelled", None, None),
        };
        let record = Record {
            time: crate::audit::now(),
            tenant: &self.tenant,
            user: &self.user,
            groups: &self.groups,
            source: &self.source,
            agent: self.agent.as_deref(),
            query_id: &self.query_id,
            mode: self.mode,
            sql,
            sql_sha256,
            rows: self.rows,
            bytes: self.bytes,
            duration_ms: self.started.elapsed().as_secs_f64() * 1e3,
            outcome,
            error_code,
            error,
        };
        if let Err(e) = self.log.append(&record) {
            error!(error = %e, query_id = %self.query_id, "could not write the audit record");
        }
    }
}
