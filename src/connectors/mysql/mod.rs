//! MySQL and MariaDB through mysql_async: prepared statements (the binary
//! protocol, so numbers and dates arrive typed), rows decoded into Arrow as
//! they stream, `KILL QUERY` on cancel, read-only sessions, UTC sessions.

mod decode;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{
    Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Value,
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::params::Param;
use super::priority::Pacer;
use super::{
    BatchSink, Batcher, Connector, ConnectorError, Described, Output, QuerySpec, value_error,
};
use crate::config::agent::{DbTlsMode, ServerSource};
use crate::protocol::catalog::TableInfo;
use crate::protocol::pb::Mode;
use decode::{Column, value_bytes};
use types::{ColType, col_type, from_information_schema};

/// Two pools, as for PostgreSQL: reloads never take a realtime connection.
pub struct Mysql {
    realtime: Pool,
    reload: Pool,
    /// For the side connection that sends `KILL QUERY`.
    opts: Opts,
    connect_timeout: Duration,
}

const SYSTEM_SCHEMAS: &str = "('mysql', 'information_schema', 'performance_schema', 'sys')";

impl Mysql {
    pub fn new(c: &ServerSource) -> Result<Self, ConnectorError> {
        // Run on every new connection and after every pool reset.
        let mut setup = vec!["SET time_zone = '+00:00'".to_string()];
        if c.read_only {
            setup.push("SET SESSION TRANSACTION READ ONLY".into());
        }
        let ssl = match c.tls.mode {
            DbTlsMode::Disable => None,
            mode => {
                let mut ssl = SslOpts::default();
                if let Some(ca) = &c.tls.ca {
                    ssl = ssl.with_root_certs(vec![ca.clone().into()]);
                }
                Some(match mode {
                    DbTlsMode::Require => ssl.with_danger_accept_invalid_certs(true),
                    DbTlsMode::VerifyCa => ssl.with_danger_skip_domain_validation(true),
                    _ => ssl,
                })
            }
        };
        let base = OptsBuilder::default()
            .ip_or_hostname(c.host.clone())
            .tcp_port(c.port.unwrap_or(3306))
            .user(Some(c.user.clone()))
            .pass(c.password().map_err(ConnectorError::Connect)?)
            .db_name(Some(c.database.clone()))
            .prefer_socket(false)
            .tcp_nodelay(true)
            .setup(setup)
            .ssl_opts(ssl);
        let pool = |max: usize| {
            let constraints = PoolConstraints::new(0, max.max(1))
                .ok_or_else(|| ConnectorError::Internal("pool size".into()))?;
            Ok::<_, ConnectorError>(Pool::new(
                base.clone()
                    .pool_opts(PoolOpts::default().with_constraints(constraints)),
            ))
        };
        Ok(Mysql {
            realtime: pool(c.pool_size)?,
            reload: pool(c.limits.reload_concurrency)?,
            opts: base.into(),
            connect_timeout: Duration::from_secs(c.connect_timeout_secs),
        })
    }

    async fn conn(&self, mode: Mode) -> Result<Conn, ConnectorError> {
        let pool = if mode == Mode::Reload {
            &self.reload
        } else {
            &self.realtime
        };
        match tokio::time::timeout(self.connect_timeout, pool.get_conn()).await {
            Ok(r) => r.map_err(my_error),
            Err(_) => Err(ConnectorError::Connect(format!(
                "no connection to the database within {:?}",
                self.connect_timeout
            ))),
        }
    }

    /// Stops the statement running on connection `id` in the server.
    async fn kill(&self, id: u32) {
        let kill = async {
            let mut side = Conn::new(self.opts.clone()).await?;
            side.query_drop(format!("KILL QUERY {id}")).await?;
            side.disconnect().await
        };
        match tokio::time::timeout(Duration::from_secs(5), kill).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(connection = id, error = %e, "KILL QUERY failed"),
            Err(_) => warn!(connection = id, "KILL QUERY timed out"),
        }
    }
}

/// The server's own message, code and SQLSTATE; connection problems are retryable.
fn my_error(e: mysql_async::Error) -> ConnectorError {
    use mysql_async::{DriverError, Error};
    match e {
        Error::Server(s) => {
            // 1317: interrupted (our KILL QUERY); 3024 / 1969: the server's own statement timeout.
            if s.code == 1317 {
                return ConnectorError::Cancelled;
            }
            let message = format!(
                "{} (MySQL error {}, SQLSTATE {})",
                s.message, s.code, s.state
            );
            // 1044/1045/1698: access denied; 1049: unknown database.
            if matches!(s.code, 1044 | 1045 | 1049 | 1698) {
                return ConnectorError::Connect(message);
            }
            // Lock wait timeout, deadlock, too many connections, shutdown in progress.
            let retryable = matches!(s.code, 1205 | 1213 | 1040 | 1053 | 1927);
            ConnectorError::Database {
                message,
                sqlstate: Some(s.state),
                retryable,
            }
        }
        Error::Driver(DriverError::StmtParamsMismatch { required, supplied }) => {
            ConnectorError::Params(format!(
                "the statement has {required} placeholders but {supplied} values were bound"
            ))
        }
        Error::Driver(d) => ConnectorError::Connect(d.to_string()),
        Error::Io(io) => ConnectorError::Connect(io.to_string()),
        other => ConnectorError::Internal(other.to_string()),
    }
}

fn to_value(p: &Param) -> Value {
    use chrono::{Datelike, Timelike};
    match p {
        Param::Null => Value::NULL,
        Param::Bool(b) => Value::Int(i64::from(*b)),
        Param::Int(i) => Value::Int(*i),
        Param::Float(f) => Value::Double(*f),
        Param::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
        Param::Bytes(b) => Value::Bytes(b.clone()),
        Param::Date(d) => Value::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0),
        Param::Timestamp(t) => Value::Date(
            t.year() as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1_000,
        ),
    }
}

fn layout(columns: &[mysql_async::Column]) -> (SchemaRef, Vec<ColType>) {
    let types: Vec<ColType> = columns
        .iter()
        .map(|c| {
            col_type(
                c.column_type(),
                c.flags(),
                c.column_length(),
                c.decimals(),
                c.character_set(),
            )
        })
        .collect();
    let fields: Vec<Field> = types
        .iter()
        .zip(columns)
        .map(|(t, c)| t.field(&c.name_str()))
        .collect();
    (Arc::new(Schema::new(fields)), types)
}

/// Runs the statement on `conn`, streaming rows into `sink` as they arrive.
async fn stream_rows(
    conn: &mut Conn,
    query: &QuerySpec,
    params: Params,
    sink: &BatchSink,
) -> Result<(), ConnectorError> {
    let mut result = conn
        .exec_iter(query.sql.as_str(), params)
        .await
        .map_err(my_error)?;
    let (schema, types) = layout(result.columns_ref());
    sink.send(Output::Schema(schema.clone())).await?;
    let mut pacer = Pacer::new(query.yield_to.clone());
    let mut batches = Batcher::new(schema.clone(), query.batches, |cap: usize| {
        types
            .iter()
            .map(|t| Column::new(*t, cap))
            .collect::<Vec<Column>>()
    });
    if let Some(mut rows) = result.stream::<Row>().await.map_err(my_error)? {
        while let Some(row) = rows.next().await {
            let row = row.map_err(my_error)?;
            // As for PostgreSQL: the row stream does not count against
            // tokio's budget, so yield to realtime work explicitly.
            tokio::task::consume_budget().await;
            pacer.row().await;
            let mut bytes = 0;
            for (i, (col, v)) in batches
                .columns()
                .iter_mut()
                .zip(row.unwrap_raw())
                .enumerate()
            {
                let v = v.unwrap_or(Value::NULL);
                bytes += value_bytes(&v);
                col.append(v)
                    .map_err(|message| value_error(&schema, i, message))?;
            }
            batches.row_done(bytes, sink).await?;
        }
    }
    batches.finish(sink).await
}

#[async_trait]
impl Connector for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn execute(
        &self,
        query: &QuerySpec,
        sink: &BatchSink,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let params = super::params::from_batch(query.params.as_ref())?;
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params.iter().map(to_value).collect())
        };
        let mut conn = self.conn(query.mode).await?;
        let id = conn.id();
        let result = tokio::select! {
            r = stream_rows(&mut conn, query, params, sink) => r,
            _ = cancel.cancelled() => Err(ConnectorError::Cancelled),
        };
        if matches!(result, Err(ConnectorError::Cancelled)) {
            // Stop the statement in the server, not just our reading of it;
            // the pool then drains what is left of the result.
            self.kill(id).await;
        }
        result
    }

    async fn describe(&self, sql: &str) -> Result<Described, ConnectorError> {
        let mut conn = self.conn(Mode::Realtime).await?;
        let stmt = conn.prep(sql).await.map_err(my_error)?;
        let (schema, _) = layout(&stmt.columns());
        Ok(Described {
            schema: Some(schema),
            // MySQL does not type placeholders; clients bind what they have.
            params: None,
        })
    }

    async fn list_tables(&self, include_schema: bool) -> Result<Vec<TableInfo>, ConnectorError> {
        let mut conn = self.conn(Mode::Realtime).await?;
        let rows: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, IF(TABLE_TYPE = 'VIEW', 'VIEW', 'TABLE')
                 FROM information_schema.TABLES
                 WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}
                 ORDER BY 1, 2"
            ))
            .await
            .map_err(my_error)?;
        let mut tables: Vec<TableInfo> = rows
            .into_iter()
            .map(|(schema, name, kind)| TableInfo {
                db_schema: Some(schema),
                name,
                table_type: kind,
                schema: None,
            })
            .collect();
        if include_schema {
            type ColumnRow = (
                String,
                String,
                String,
                String,
                String,
                Option<u64>,
                Option<u64>,
                Option<String>,
            );
            let cols: Vec<ColumnRow> = conn
                .query(format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE,
                            NUMERIC_PRECISION, NUMERIC_SCALE, CHARACTER_SET_NAME
                     FROM information_schema.COLUMNS
                     WHERE TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS}
                     ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
                ))
                .await
                .map_err(my_error)?;
            let mut by_table: std::collections::HashMap<(String, String), Vec<Field>> =
                Default::default();
            for (schema, table, column, data_type, column_type, precision, scale, charset) in cols {
                let t = from_information_schema(
                    &data_type,
                    &column_type,
                    precision,
                    scale,
                    charset.as_deref(),
                );
                by_table
                    .entry((schema, table))
                    .or_default()
                    .push(t.field(&column));
            }
            for t in &mut tables {
                let key = (t.db_schema.clone().unwrap_or_default(), t.name.clone());
                t.schema = Some(Arc::new(Schema::new(
                    by_table.remove(&key).unwrap_or_default(),
                )));
            }
        }
        Ok(tables)
    }
}
