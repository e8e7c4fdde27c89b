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

fn mismatch(col: &str, v: &Value, ty: &DataType) -> ConnectorError {
    ConnectorError::Unsupported(format!(
        "column {col:?} holds {v:?} where {ty} was expected; CAST the column in SQL to one type"
    ))
}

fn days_from_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
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

/// Turns one column of buffered values into an Arrow array of type `ty`.
fn column(name: &str, ty: &DataType, values: &[Value]) -> Result<ArrayRef, ConnectorError> {
    macro_rules! build {
        ($builder:expr, |$v:ident| $conv:expr) => {{
            let mut b = $builder;
            for $v in values {
                if matches!($v, Value::Null) {
                    b.append_null();
                } else {
                    b.append_value($conv);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        DataType::Null => Arc::new(NullArray::new(values.len())),
        DataType::Int64 => build!(Int64Builder::with_capacity(values.len()), |v| match v {
            Value::Integer(i) => *i,
            Value::Real(f) if f.fract() == 0.0 => *f as i64,
            Value::Text(s) => s.trim().parse().map_err(|_| mismatch(name, v, ty))?,
            _ => return Err(mismatch(name, v, ty)),
        }),
        DataType::Float64 => build!(Float64Builder::with_capacity(values.len()), |v| match v {
            Value::Integer(i) => *i as f64,
            Value::Real(f) => *f,
            Value::Text(s) => s.trim().parse().map_err(|_| mismatch(name, v, ty))?,
            _ => return Err(mismatch(name, v, ty)),
        }),
        DataType::Boolean => build!(BooleanBuilder::with_capacity(values.len()), |v| match v {
            Value::Integer(i) => *i != 0,
            Value::Real(f) => *f != 0.0,
            Value::Text(s) if s.eq_ignore_ascii_case("true") => true,
            Value::Text(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(mismatch(name, v, ty)),
        }),
        DataType::Date32 => build!(Date32Builder::with_capacity(values.len()), |v| match v {
            Value::Text(s) => days_from_epoch(
                parse_timestamp(s)
                    .ok_or_else(|| mismatch(name, v, ty))?
                    .date()
            ),
            _ => return Err(mismatch(name, v, ty)),
        }),
        DataType::Timestamp(_, _) => build!(
            TimestampMicrosecondBuilder::with_capacity(values.len()),
            |v| match v {
                Value::Text(s) => parse_timestamp(s)
                    .ok_or_else(|| mismatch(name, v, ty))?
                    .and_utc()
                    .timestamp_micros(),
                Value::Integer(secs) => secs * 1_000_000,
                _ => return Err(mismatch(name, v, ty)),
            }
        ),
        DataType::Binary => build!(BinaryBuilder::new(), |v| match v {
            Value::Blob(b) => b.as_slice(),
            Value::Text(s) => s.as_bytes(),
            _ => return Err(mismatch(name, v, ty)),
        }),
        _ => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::Text(s) => b.append_value(s),
                    Value::Integer(i) => b.append_value(i.to_string()),
                    Value::Real(f) => b.append_value(f.to_string()),
                    Value::Blob(x) => b.append_value(String::from_utf8_lossy(x)),
                }
            }
            Arc::new(b.finish())
        }
    })
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
    let mut schema: Option<SchemaRef> = None;
    let mut sizer = BatchSizer::new(query.batches);
    loop {
        let target = sizer.target();
        let mut cols: Vec<Vec<Value>> = (0..ncols).map(|_| Vec::with_capacity(target)).collect();
        let (mut n, mut bytes, mut exhausted) = (0, 0usize, false);
        while n < target && bytes < super::TARGET_BATCH_BYTES {
            if cancel.is_cancelled() {
                return Err(ConnectorError::Cancelled);
            }
            let Some(row) = rows.next().map_err(db_error)? else {
                exhausted = true;
                break;
            };
            for (i, col) in cols.iter_mut().enumerate() {
                let v: Value = row.get_ref(i).map_err(db_error).map(ValueRef::into)?;
                bytes += match &v {
                    Value::Text(t) => t.len(),
                    Value::Blob(b) => b.len(),
                    _ => 8,
                };
                col.push(v);
            }
            n += 1;
        }
        let schema = match &schema {
            Some(s) => s.clone(),
            None => {
                for (ty, col) in types.iter_mut().zip(&cols) {
                    if ty.is_none() {
                        *ty = col.iter().find_map(inferred_type);
                    }
                }
                let fields: Vec<Field> = names
                    .iter()
                    .zip(&types)
                    .map(|(n, t)| Field::new(n, t.clone().unwrap_or(DataType::Null), true))
                    .collect();
                let s = Arc::new(Schema::new(fields));
                sink.blocking_send(Output::Schema(s.clone()))?;
                schema = Some(s.clone());
                s
            }
        };
        if n == 0 && sizer.batches() > 0 {
            return Ok(());
        }
        let arrays = cols
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| column(f.name(), f.data_type(), c))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        sizer.record(&batch);
        sink.blocking_send(Output::Batch(batch))?;
        if exhausted {
            return Ok(());
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
