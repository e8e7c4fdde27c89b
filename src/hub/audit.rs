//! The hub's audit trail: one record per query a client ran, refused ones
//! included, written when the query ends (or is refused, or abandoned): to
//! the hub's state (readable through the provisioning API) and, if
//! configured, to a JSON-lines file.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tonic::Status;
use tracing::error;

use crate::audit::AuditLog;
use crate::auth::{Principal, mode_name};
use crate::protocol::pb;
use crate::state::{AuditRow, Store};

/// Records waiting for the state database at most; beyond, they are logged as lost.
const BACKLOG: usize = 10_000;

/// Where audit records go.
#[derive(Clone, Default)]
pub struct Sinks {
    pub file: Option<Arc<AuditLog>>,
    pub db: Option<mpsc::Sender<AuditRow>>,
    /// Keep only each statement's SHA-256 (`[audit] sql = "hash"`).
    pub hash_sql: bool,
}

impl Sinks {
    fn is_empty(&self) -> bool {
        self.file.is_none() && self.db.is_none()
    }
}

/// The sender for the state, and the writer that drains it into `store`
/// (it ends when every sender is gone).
pub fn db_writer(store: Store) -> (mpsc::Sender<AuditRow>, impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::channel::<AuditRow>(BACKLOG);
    let writer = async move {
        while let Some(row) = rx.recv().await {
            if let Err(e) = store.insert_audit(&row).await {
                error!(error = %e, query_id = %row.query_id, "could not store the audit record");
            }
        }
    };
    (tx, writer)
}

/// One query's record, written when it is dropped.
pub struct Entry {
    sinks: Sinks,
    started: Instant,
    row: AuditRow,
    /// Set when the query ended; a record without one was abandoned.
    ended: bool,
}

impl Entry {
    pub fn begin(
        sinks: &Sinks,
        p: &Principal,
        st: &pb::Statement,
        query_id: &str,
    ) -> Option<Entry> {
        if sinks.is_empty() {
            return None;
        }
        Some(Entry {
            sinks: sinks.clone(),
            started: Instant::now(),
            ended: false,
            row: AuditRow {
                query_id: query_id.to_string(),
                time_ms: crate::state::now_ms(),
                tenant: p.tenant.clone(),
                user: p.user.clone(),
                groups: p.groups.clone(),
                source: st.source.clone(),
                agent: None,
                mode: mode_name(pb::Mode::try_from(st.mode).unwrap_or(pb::Mode::Realtime)).into(),
                sql: (!sinks.hash_sql).then(|| st.sql.clone()),
                sql_sha256: sinks.hash_sql.then(|| {
                    use sha2::Digest;
                    format!("{:x}", sha2::Sha256::digest(&st.sql))
                }),
                rows: 0,
                bytes: 0,
                duration_ms: 0.0,
                outcome: "cancelled".into(),
                error_code: None,
                error: None,
            },
        })
    }

    pub fn agent(&mut self, id: &str) {
        self.row.agent = Some(id.to_string());
    }

    pub fn batch(&mut self, rows: u64, bytes: u64) {
        self.row.rows += rows as i64;
        self.row.bytes += bytes as i64;
    }

    pub fn done(&mut self) {
        self.ended = true;
        self.row.outcome = "ok".into();
    }

    pub fn failed(&mut self, status: &Status) {
        self.ended = true;
        self.row.outcome = "error".into();
        self.row.error_code = Some(format!("{:?}", status.code()));
        self.row.error = Some(status.message().to_string());
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut row = std::mem::replace(
            &mut self.row,
            AuditRow {
                query_id: String::new(),
                time_ms: 0,
                tenant: String::new(),
                user: String::new(),
                groups: Vec::new(),
                source: String::new(),
                agent: None,
                mode: String::new(),
                sql: None,
                sql_sha256: None,
                rows: 0,
                bytes: 0,
                duration_ms: 0.0,
                outcome: String::new(),
                error_code: None,
                error: None,
            },
        );
        row.duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        if let Some(log) = &self.sinks.file
            && let Err(e) = log.append(&FileRecord::from(&row))
        {
            error!(error = %e, query_id = %row.query_id, "could not write the audit record");
        }
        if let Some(db) = &self.sinks.db
            && let Err(e) = db.try_send(row)
        {
            error!(error = %e, "the audit backlog is full; a record was lost");
        }
    }
}

/// The JSON-lines shape of a record (as documented in the README).
#[derive(serde::Serialize)]
struct FileRecord<'a> {
    time: String,
    tenant: &'a str,
    user: &'a str,
    groups: &'a [String],
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    query_id: &'a str,
    mode: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_sha256: Option<&'a str>,
    rows: i64,
    bytes: i64,
    duration_ms: f64,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> From<&'a AuditRow> for FileRecord<'a> {
    fn from(r: &'a AuditRow) -> Self {
        FileRecord {
            time: crate::audit::now(),
            tenant: &r.tenant,
            user: &r.user,
            groups: &r.groups,
            source: &r.source,
            agent: r.agent.as_deref(),
            query_id: &r.query_id,
            mode: &r.mode,
            sql: r.sql.as_deref(),
            sql_sha256: r.sql_sha256.as_deref(),
            rows: r.rows,
            bytes: r.bytes,
            duration_ms: r.duration_ms,
            outcome: &r.outcome,
            error_code: r.error_code.as_deref(),
            error: r.error.as_deref(),
        }
    }
}
