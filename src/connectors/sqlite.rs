//! SQLite, the embedded default (rusqlite with a bundled SQLite).
//!
//! SQLite is dynamically typed, so the Arrow type of a column comes from its
//! declared type where it has one (`INTEGER` -> int64, `REAL`/`DECIMAL` ->
//! float64, `TEXT` -> utf8, `BLOB` -> binary, `DATE` -> date32, `DATETIME`/
//! `TIMESTAMP` -> timestamp[us], `BOOLEAN` -> bool) and otherwise from the
//! first non-NULL value in the first batch.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    NullArray, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio_util::sync::CancellationToken;

use super::params::Param;
use super::priority::Pacer;
use super::{BatchSink, BatchSizer, Connector, ConnectorError, Described, Output, QuerySpec};
use crate::config::agent::SqliteSource;
use crate::protocol::catalog::TableInfo;

pub struct Sqlite {
    path: PathBuf,
    read_only: bool,
}

impl Sqlite {
    pub fn new(c: &SqliteSource) -> Self {
        Sqlite {
            path: c.path.clone(),
            read_only: c.read_only,
        }
    }

    fn open(path: &PathBuf, read_only: bool) -> Result<Connection, ConnectorError> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| ConnectorError::Connect(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        Ok(conn)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Connection) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let (path, ro) = (self.path.clone(), self.read_only);
        tokio::task::spawn_blocking(move || f(Self::open(&path, ro)?))
            .await
            .map_err(|e| ConnectorError::Internal(e.to_string()))?
    }
}

fn db_error(e: rusqlite::Error) -> ConnectorError {
    match e {
        rusqlite::Error::SqliteFailure(err, _)
            if err.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            ConnectorError::Cancelled
        }
        rusqlite::Error::SqliteFailure(err, msg) => ConnectorError::Database {
            message: msg.unwrap_or_else(|| err.to_string()),
            sqlstate: None,
            retryable: matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
        },
        other => ConnectorError::Database {
            message: other.to_string(),
            sqlstate: None,
            retryable: false,
        },
    }
}

/// The Arrow type for a declared SQLite column type, if it names one.
fn declared_type(decl: Option<&str>) -> Option<DataType> {
    let d = decl?.to_ascii_uppercase();
    Some(if d.contains("INT") {
        DataType::Int64
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        DataType::Utf8
    } else if d.contains("BLOB") {
        DataType::Binary
    } else if d.contains("BOOL") {
        DataType::Boolean
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if d == "DATE" {
        DataType::Date32
    } else if d.contains("REAL")
        || d.contains("FLOA")
        || d.contains("DOUB")
        || d.contains("DEC")
        || d.contains("NUM")
    {
        DataType::Float64
    } else {
        return None;
    })
}

fn inferred_type(v: &Value) -> Option<DataType> {
    match v {
        Value::Null => None,
        Value::Integer(_) => Some(DataType::Int64),
        Value::Real(_) => Some(DataType::Float64),
        Value::Text(_) => Some(DataType::Utf8),
        Value::Blob(_) => Some(DataType::Binary),
    }
}

fn to_sql(p: &Param) -> Value {
    match p {
        Param::Null => Value::Null,
        Param::Bool(b) => Value::Integer(i64::from(*b)),
        Param::Int(i) => Value::Integer(*i),
        Param::Float(f) => Value::Real(*f),
        Param::Text(s) => Value::Text(s.clone()),
        Param::Bytes(b) => Value::Blob(b.clone()),
        Param::Date(d) => Value::Text(d.format("%Y-%m-%d").to_string()),
        Param::Timestamp(t) => Value::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
    }
}

fn mismatch(col: &str, v: ValueRef, ty: &DataType) -> ConnectorError {
    ConnectorError::Unsupported(format!(
        "column {col:?} holds {v:?} where {ty} was expected; CAST the column in SQL to one type"
    ))
}

fn days_from_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// `YYYY-MM-DD` without going through chrono's format parser (hot for date columns).
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    if let Some(d) = parse_date(s) {
        return d.and_hms_opt(0, 0, 0);
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ]
    .iter()
    .find_map(|f| {
        NaiveDateTime::parse_from_str(s, f).ok().or_else(|| {
            NaiveDate::parse_from_str(s, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
    })
}

/// One result column being built, appending SQLite values as they come.
enum Col {
    Null(usize),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
    Text(StringBuilder),
}

impl Col {
    fn new(ty: &DataType, cap: usize) -> Col {
        match ty {
            DataType::Null => Col::Null(0),
            DataType::Int64 => Col::Int(Int64Builder::with_capacity(cap)),
            DataType::Float64 => Col::Float(Float64Builder::with_capacity(cap)),
            DataType::Boolean => Col::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Date32 => Col::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamp(_, _) => {
                Col::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap))
            }
            DataType::Binary => Col::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            _ => Col::Text(StringBuilder::with_capacity(cap, cap * 16)),
        }
    }

    fn append(&mut self, name: &str, ty: &DataType, v: ValueRef) -> Result<(), ConnectorError> {
        let bad = || mismatch(name, v, ty);
        fn text(t: &[u8], bad: impl Fn() -> ConnectorError) -> Result<&str, ConnectorError> {
            std::str::from_utf8(t).map_err(|_| bad())
        }
        match (self, v) {
            (Col::Null(n), _) => *n += 1,
            (Col::Int(b), ValueRef::Null) => b.append_null(),
            (Col::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (Col::Int(b), ValueRef::Real(f)) if f.fract() == 0.0 => b.append_value(f as i64),
            (Col::Int(b), ValueRef::Text(t)) => {
                b.append_value(text(t, bad)?.trim().parse().map_err(|_| bad())?)
            }
            (Col::Float(b), ValueRef::Null) => b.append_null(),
            (Col::Float(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Col::Float(b), ValueRef::Real(f)) => b.append_value(f),
            (Col::Float(b), ValueRef::Text(t)) => {
                b.append_value(text(t, bad)?.trim().parse().map_err(|_| bad())?)
            }
            (Col::Bool(b), ValueRef::Null) => b.append_null(),
            (Col::Bool(b), ValueRef::Integer(i)) => b.append_value(i != 0),
            (Col::Bool(b), ValueRef::Real(f)) => b.append_value(f != 0.0),
            (Col::Bool(b), ValueRef::Text(t)) if text(t, bad)?.eq_ignore_ascii_case("true") => {
                b.append_value(true)
            }
            (Col::Bool(b), ValueRef::Text(t)) if text(t, bad)?.eq_ignore_ascii_case("false") => {
                b.append_value(false)
            }
            (Col::Date(b), ValueRef::Null) => b.append_null(),
            (Col::Date(b), ValueRef::Text(t)) => b.append_value(days_from_epoch(
                parse_timestamp(text(t, bad)?).ok_or_else(bad)?.date(),
            )),
            (Col::Timestamp(b), ValueRef::Null) => b.append_null(),
            (Col::Timestamp(b), ValueRef::Text(t)) => b.append_value(
                parse_timestamp(text(t, bad)?)
                    .ok_or_else(bad)?
                    .and_utc()
                    .timestamp_micros(),
            ),
            (Col::Timestamp(b), ValueRef::Integer(secs)) => b.append_value(secs * 1_000_000),
            (Col::Binary(b), ValueRef::Null) => b.append_null(),
            (Col::Binary(b), ValueRef::Blob(x) | ValueRef::Text(x)) => b.append_value(x),
            (Col::Text(b), ValueRef::Null) => b.append_null(),
            (Col::Text(b), ValueRef::Text(t)) => b.append_value(String::from_utf8_lossy(t)),
            (Col::Text(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (Col::Text(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (Col::Text(b), ValueRef::Blob(x)) => b.append_value(String::from_utf8_lossy(x)),
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            Col::Int(b) => Arc::new(b.finish()),
            Col::Float(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Timestamp(b) => Arc::new(b.finish()),
            Col::Binary(b) => Arc::new(b.finish()),
            Col::Text(b) => Arc::new(b.finish()),
        }
    }
}

fn value_bytes(v: ValueRef) -> usize {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
        _ => 8,
    }
}

/// Runs a query on a blocking thread, streaming batches into `sink`.
fn run(
    conn: Connection,
    query: QuerySpec,
    params: Vec<Param>,
    sink: BatchSink,
    cancel: CancellationToken,
) -> Result<(), ConnectorError> {
    let mut stmt = conn.prepare(&query.sql).map_err(db_error)?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut types: Vec<Option<DataType>> = stmt
        .columns()
        .iter()
        .map(|c| declared_type(c.decl_type()))
        .collect();
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(ConnectorError::Params(format!(
            "the statement has {expected} placeholders but {} values were bound",
            params.len()
        )));
    }
    let values: Vec<Value> = params.iter().map(to_sql).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(db_error)?;
    let ncols = names.len();
    // The first batch is buffered to infer the types of undeclared columns;
    // later rows go straight from SQLite into the Arrow builders.
    let mut sizer = BatchSizer::new(query.batches);
    let mut pacer = Pacer::new(query.yield_to.clone());
    let mut pending: Vec<Vec<Value>> = vec![Vec::new(); ncols];
    let mut exhausted = false;
    while !sizer.full() {
        if cancel.is_cancelled() {
            return Err(ConnectorError::Cancelled);
        }
        let Some(row) = rows.next().map_err(db_error)? else {
            exhausted = true;
            break;
        };
        let mut bytes = 0;
        for (i, col) in pending.iter_mut().enumerate() {
            let v = row.get_ref(i).map_err(db_error)?;
            bytes += value_bytes(v);
            col.push(v.into());
        }
        sizer.row(bytes);
    }
    for (ty, col) in types.iter_mut().zip(&pending) {
        if ty.is_none() {
            *ty = col.iter().find_map(inferred_type);
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .zip(&types)
        .map(|(n, t)| Field::new(n, t.clone().unwrap_or(DataType::Null), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    sink.blocking_send(Output::Schema(schema.clone()))?;
    let new_cols = |cap: usize| -> Vec<Col> {
        schema
            .fields()
            .iter()
            .map(|f| Col::new(f.data_type(), cap))
            .collect()
    };
    let mut cols = new_cols(sizer.rows());
    for ((col, values), f) in cols.iter_mut().zip(&pending).zip(schema.fields()) {
        for v in values {
            col.append(f.name(), f.data_type(), v.into())?;
        }
    }
    drop(pending);
    loop {
        if sizer.pending() {
            let arrays = cols.iter_mut().map(Col::finish).collect();
            let batch = RecordBatch::try_new(schema.clone(), arrays)?;
            sizer.record(&batch);
            sink.blocking_send(Output::Batch(batch))?;
        }
        if exhausted {
            return Ok(());
        }
        cols = new_cols(sizer.target());
        while !sizer.full() {
            if cancel.is_cancelled() {
                return Err(ConnectorError::Cancelled);
            }
            pacer.row_blocking();
            let Some(row) = rows.next().map_err(db_error)? else {
                exhausted = true;
                break;
            };
            let mut bytes = 0;
            for (i, (col, f)) in cols.iter_mut().zip(schema.fields()).enumerate() {
                let v = row.get_ref(i).map_err(db_error)?;
                bytes += value_bytes(v);
                col.append(f.name(), f.data_type(), v)?;
            }
            sizer.row(bytes);
        }
    }
}

#[async_trait]
impl Connector for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn execute(
        &self,
        query: &QuerySpec,
        sink: &BatchSink,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let params = super::params::from_batch(query.params.as_ref())?;
        let (query, sink, token) = (query.clone(), sink.clone(), cancel.clone());
        let (path, ro) = (self.path.clone(), self.read_only);
        let (htx, hrx) = tokio::sync::oneshot::channel();
        let work = tokio::task::spawn_blocking(move || {
            let conn = Self::open(&path, ro)?;
            let _ = htx.send(conn.get_interrupt_handle());
            run(conn, query, params, sink, token)
        });
        let interrupter = async {
            if let Ok(handle) = hrx.await {
                cancel.cancelled().await;
                handle.interrupt();
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = work => r.map_err(|e| ConnectorError::Internal(e.to_string()))?,
            _ = interrupter => unreachable!("the interrupter never completes"),
        }
    }

    async fn describe(&self, sql: &str) -> Result<Described, ConnectorError> {
        let sql = sql.to_string();
        self.blocking(move |conn| {
            let stmt = conn.prepare(&sql).map_err(db_error)?;
            let fields: Option<Vec<Field>> = stmt
                .columns()
                .iter()
                .map(|c| declared_type(c.decl_type()).map(|t| Field::new(c.name(), t, true)))
                .collect();
            Ok(Described {
                schema: fields.map(|f| Arc::new(Schema::new(f))),
                params: None,
            })
        })
        .await
    }

    async fn list_tables(&self, include_schema: bool) -> Result<Vec<TableInfo>, ConnectorError> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare("SELECT name, upper(type) FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
                .map_err(db_error)?;
            let tables: Vec<(String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error)?
                .collect::<Result<_, _>>()
                .map_err(db_error)?;
            tables
                .into_iter()
                .map(|(name, ty)| {
                    let schema = if include_schema {
                        let s = conn
                            .prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
                            .map_err(db_error)?;
                        let fields: Vec<Field> = s
                            .columns()
                            .iter()
                            .map(|c| Field::new(c.name(), declared_type(c.decl_type()).unwrap_or(DataType::Utf8), true))
                            .collect();
                        Some(Arc::new(Schema::new(fields)))
                    } else {
                        None
                    };
                    Ok(TableInfo {
                        db_schema: Some("main".into()),
                        name,
                        table_type: ty,
                        schema,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_parse() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-2-29"), None);
        let t = parse_timestamp("2024-02-29 13:45:30.5").unwrap();
        assert_eq!(t.and_utc().timestamp_micros() % 1_000_000, 500_000);
        assert!(parse_timestamp("2024-02-29T13:45:30").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
