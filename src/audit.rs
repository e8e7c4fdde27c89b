//! Audit trails as JSON lines: one object per request, appended to a file
//! readable by the service and its administrators only. The hub and the
//! agent each keep one (`hub::audit`, `agent::audit`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{AuditConfig, AuditSql};

/// An open audit file.
pub struct AuditLog {
    file: Mutex<File>,
    sql: AuditSql,
}

impl AuditLog {
    pub fn open(config: &AuditConfig) -> std::io::Result<AuditLog> {
        Ok(AuditLog {
            file: Mutex::new(open_append(&config.path)?),
            sql: config.sql,
        })
    }

    /// The statement as this log keeps it: the text, or only its SHA-256.
    pub fn sql<'a>(&self, sql: Option<&'a str>) -> (Option<&'a str>, Option<String>) {
        match (sql, self.sql) {
            (Some(s), AuditSql::Text) => (Some(s), None),
            (Some(s), AuditSql::Hash) => (None, Some(format!("{:x}", Sha256::digest(s)))),
            (None, _) => (None, None),
        }
    }

    /// Appends `record` as one line.
    pub fn append(&self, record: &impl Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file
            .lock()
            .map_err(|_| std::io::Error::other("audit file lock poisoned"))?
            .write_all(&line)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        // Readable by the service and its group (the administrators) only.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

/// The time of a record: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
