//! SQL Server through tiberius (pure Rust TDS, rustls): statements run as
//! `sp_executesql` with typed parameters (`@P1`, `@P2`, ...), result types
//! come from `sp_describe_first_result_set` (so `decimal(18,2)` stays
//! decimal(18,2) and a nullable `int` stays int32), rows are decoded into
//! Arrow as they stream, and a cancelled query gets a TDS attention, which
//! stops it in the server.

mod decode;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use futures::TryStreamExt;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, QueryItem, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::params::Param;
use super::priority::Pacer;
use super::{
    BatchSink, Batcher, Connector, ConnectorError, Described, Output, QuerySpec, value_error,
};
use crate::config::agent::{DbTlsMode, ServerSource};
use crate::protocol::catalog::TableInfo;
use crate::protocol::pb::Mode;
use decode::{Column, value_bytes};
use types::{SqlType, from_column_type, from_type_name, param_decl};

type Conn = Client<Compat<TcpStream>>;
type Pool = managed::Pool<Manager>;

/// Database-level permissions that let a login change data or schema. A
/// read-only source refuses a login holding any of them.
pub const WRITE_PERMISSIONS_SQL: &str = "SELECT permission_name FROM fn_my_permissions(NULL, 'DATABASE') WHERE permission_name IN ('INSERT', 'UPDATE', 'DELETE', 'ALTER', 'CONTROL', 'EXECUTE', 'CREATE TABLE', 'CREATE PROCEDURE', 'ALTER ANY SCHEMA', 'TAKE OWNERSHIP')";

/// User tables and views, for Flight SQL's catalog calls.
pub const TABLES_SQL: &str = "SELECT s.name, o.name, CASE o.type WHEN 'V' THEN 'VIEW' ELSE 'TABLE' END \
     FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id \
     WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0 ORDER BY 1, 2";

/// Their columns, with the base type of alias types.
pub const COLUMNS_SQL: &str = "SELECT s.name, o.name, c.name, TYPE_NAME(c.system_type_id), c.precision, c.scale \
     FROM sys.columns c JOIN sys.objects o ON o.object_id = c.object_id \
     JOIN sys.schemas s ON s.schema_id = o.schema_id \
     WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0 \
     ORDER BY s.name, o.name, c.column_id";

/// A pooled connection idle this long is pinged before use.
const IDLE_CHECK: Duration = Duration::from_secs(30);

const DESCRIBE_SQL: &str = "EXEC sp_describe_first_result_set @tsql = @P1, @params = @P2";

/// Two pools, as for the other servers: reloads never take a realtime connection.
pub struct SqlServer {
    realtime: Pool,
    reload: Pool,
    connect_timeout: Duration,
}

struct Manager {
    config: Config,
    connect_timeout: Duration,
    read_only: bool,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = ConnectorError;

    async fn create(&self) -> Result<Conn, ConnectorError> {
        let mut config = self.config.clone();
        // Azure SQL's gateway may redirect once to the node holding the database.
        let mut conn = match connect(&config, self.connect_timeout).await {
            Err(Redirect(host, port)) => {
                debug!(%host, port, "SQL Server redirected the connection");
                config.host(host);
                config.port(port);
                connect(&config, self.connect_timeout).await
            }
            other => other,
        }
        .map_err(|e| match e {
            Redirect(host, port) => {
                ConnectorError::Connect(format!("redirected twice (last to {host}:{port})"))
            }
            Failed(e) => e,
        })?;
        if self.read_only {
            refuse_writers(&mut conn).await?;
        }
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<ConnectorError> {
        // Connections that fail mid-query leave the pool there. Firewalls
        // between agent and database drop idle ones silently, so one that
        // sat idle is checked before it is handed out.
        if metrics.last_used() < IDLE_CHECK {
            return Ok(());
        }
        let ping = async {
            conn.simple_query("SELECT 1")
                .await?
                .into_results()
                .await
                .map(drop)
        };
        match tokio::time::timeout(self.connect_timeout, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RecycleError::Backend(ms_error(e))),
            Err(_) => Err(RecycleError::message("no answer to a ping")),
        }
    }
}

enum ConnectOutcome {
    Redirect(String, u16),
    Failed(ConnectorError),
}
use ConnectOutcome::{Failed, Redirect};

async fn connect(config: &Config, timeout: Duration) -> Result<Conn, ConnectOutcome> {
    let addr = config.get_addr();
    let attempt = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| Failed(ConnectorError::Connect(format!("{addr}: {e}"))))?;
        tcp.set_nodelay(true).ok();
        Client::connect(config.clone(), tcp.compat_write())
            .await
            .map_err(|e| match e {
                tiberius::error::Error::Routing { host, port } => Redirect(host, port),
                e => Failed(ms_error(e)),
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Failed(ConnectorError::Connect(format!(
                "no connection to {addr} within {timeout:?}"
            ))))
        })
}

/// A read-only source must not hold a login that can write: SQL Server has
/// no read-only session, so the login's permissions are the guarantee.
async fn refuse_writers(conn: &mut Conn) -> Result<(), ConnectorError> {
    let rows = conn
        .simple_query(WRITE_PERMISSIONS_SQL)
        .await
        .map_err(ms_error)?
        .into_first_result()
        .await
        .map_err(ms_error)?;
    let held: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get::<&str, _>(0).map(str::to_string))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(ConnectorError::Connect(format!(
        "the source is read_only but its login can change the database (it holds {}); \
         give the agent a login that is only in db_datareader, or set read_only = false",
        held.join(", ")
    )))
}

impl SqlServer {
    pub fn new(c: &ServerSource) -> Result<Self, ConnectorError> {
        // tiberius takes rustls' process-wide provider: ring, as everywhere.
        crate::transport::tls::install_crypto_provider();
        let mut config = Config::new();
        config.host(&c.host);
        config.port(c.port.unwrap_or(1433));
        config.database(&c.database);
        config.application_name("gatehouse");
        let password = c
            .password()
            .map_err(ConnectorError::Connect)?
            .unwrap_or_default();
        config.authentication(AuthMethod::sql_server(&c.user, password));
        // ApplicationIntent=ReadOnly: an availability group routes the
        // session to a readable secondary, where the server refuses writes.
        config.readonly(c.read_only);
        match c.tls.mode {
            // The agent does not ask for TLS; a server that insists still
            // gets it, unverified, as with every SQL Server client.
            DbTlsMode::Disable => {
                config.encryption(EncryptionLevel::NotSupported);
                config.trust_cert();
            }
            DbTlsMode::Require => {
                config.encryption(EncryptionLevel::Required);
                config.trust_cert();
            }
            DbTlsMode::VerifyFull | DbTlsMode::Strict => {
                config.encryption(if c.tls.mode == DbTlsMode::Strict {
                    EncryptionLevel::Strict
                } else {
                    EncryptionLevel::Required
                });
                if let Some(ca) = &c.tls.ca {
                    config.trust_cert_ca(ca.display());
                }
            }
            DbTlsMode::VerifyCa => {
                return Err(ConnectorError::Unsupported(
                    "tls.mode = \"verify-ca\" is not available for SQL Server (the driver always \
                     checks the host name); use \"verify-full\" or \"strict\""
                        .into(),
                ));
            }
        }
        let connect_timeout = Duration::from_secs(c.connect_timeout_secs);
        let pool = |max: usize| {
            Pool::builder(Manager {
                config: config.clone(),
                connect_timeout,
                read_only: c.read_only,
            })
            .max_size(max.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| ConnectorError::Internal(format!("connection pool: {e}")))
        };
        Ok(SqlServer {
            realtime: pool(c.pool_size)?,
            reload: pool(c.limits.reload_concurrency)?,
            connect_timeout,
        })
    }

    async fn conn(&self, mode: Mode) -> Result<Object<Manager>, ConnectorError> {
        let pool = if mode == Mode::Reload {
            &self.reload
        } else {
            &self.realtime
        };
        let timeouts = Timeouts {
            wait: Some(self.connect_timeout),
            create: Some(self.connect_timeout * 2),
            recycle: None,
        };
        pool.timeout_get(&timeouts).await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => ConnectorError::Connect(format!(
                "no connection to the database within {:?}",
                self.connect_timeout
            )),
            other => ConnectorError::Internal(other.to_string()),
        })
    }
}

/// The server's own message and number; login failures and unreachable
/// servers are retryable UNAVAILABLE.
fn ms_error(e: tiberius::error::Error) -> ConnectorError {
    use tiberius::error::Error;
    match e {
        Error::Server(t) => {
            let message = format!(
                "{} (SQL Server error {}, state {}, class {})",
                t.message(),
                t.code(),
                t.state(),
                t.class()
            );
            // 18456: login failed; 4060: cannot open database; 18452: untrusted domain login.
            if matches!(t.code(), 18456 | 4060 | 18452 | 18486 | 18487 | 18488) {
                return ConnectorError::Connect(message);
            }
            // 1205: deadlock victim; 1222: lock timeout; 40501/40613: Azure busy / unavailable.
            let retryable = matches!(t.code(), 1205 | 1222 | 40197 | 40501 | 40613 | 49918);
            ConnectorError::Database {
                message,
                sqlstate: Some(t.code().to_string()),
                retryable,
            }
        }
        Error::Io { message, .. } => ConnectorError::Connect(message),
        Error::Tls(m) => ConnectorError::Connect(format!("TLS to SQL Server failed: {m}")),
        Error::Protocol(m) if m.contains("encryption level") => ConnectorError::Connect(format!(
            "{m} (the server and tls.mode disagree: with \"disable\" the server may require TLS; \
             with \"require\"/\"verify-full\" the server may have no certificate configured)"
        )),
        Error::Protocol(m) => ConnectorError::Connect(format!("TDS protocol error: {m}")),
        Error::Routing { host, port } => {
            ConnectorError::Connect(format!("the server redirected to {host}:{port}"))
        }
        other => ConnectorError::Internal(other.to_string()),
    }
}

/// Whether the connection may go back to the pool after `e`.
fn reusable(e: &ConnectorError) -> bool {
    matches!(
        e,
        ConnectorError::Database { .. }
            | ConnectorError::Params(_)
            | ConnectorError::Unsupported(_)
    )
}

fn to_sql(p: &Param) -> Box<dyn ToSql> {
    match p {
        Param::Null => Box::new(Option::<i32>::None),
        Param::Bool(b) => Box::new(*b),
        Param::Int(i) => Box::new(*i),
        Param::Float(f) => Box::new(*f),
        Param::Text(s) => Box::new(s.clone()),
        Param::Bytes(b) => Box::new(b.clone()),
        Param::Date(d) => Box::new(*d),
        Param::Timestamp(t) => Box::new(*t),
    }
}

/// `@P1 bigint, @P2 nvarchar(max)`: the parameters as `sp_describe_first_result_set` wants them.
fn param_decls(params: &[Param]) -> Option<String> {
    (!params.is_empty()).then(|| {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| format!("@P{} {}", i + 1, param_decl(p)))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The statement's result columns (name and type) as the server describes
/// them, or `None` when it cannot tell beforehand (temporary tables,
/// dynamic SQL).
async fn describe_columns(
    conn: &mut Conn,
    sql: &str,
    params: &[Param],
) -> Result<Option<Vec<(String, SqlType)>>, ConnectorError> {
    let decls = param_decls(params);
    let rows = match conn.query(DESCRIBE_SQL, &[&sql, &decls]).await {
        Ok(stream) => stream.into_first_result().await,
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => Ok(parse_description(&rows)),
        // 11500-11599: "the metadata could not be determined ...".
        Err(tiberius::error::Error::Server(t)) if (11500..11600).contains(&t.code()) => {
            debug!(
                code = t.code(),
                message = t.message(),
                "statement cannot be described"
            );
            Ok(None)
        }
        Err(e) => Err(ms_error(e)),
    }
}

/// Reads `sp_describe_first_result_set` rows; `None` if they are not that.
fn parse_description(rows: &[tiberius::Row]) -> Option<Vec<(String, SqlType)>> {
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<bool, _>("is_hidden").ok()?.unwrap_or(false) {
            continue;
        }
        let name: Option<&str> = row.try_get("name").ok()?;
        let type_name: &str = row.try_get("system_type_name").ok()??;
        let precision: u8 = row.try_get("precision").ok()?.unwrap_or(0);
        let scale: u8 = row.try_get("scale").ok()?.unwrap_or(0);
        columns.push((
            name.unwrap_or_default().to_string(),
            from_type_name(type_name, precision, scale),
        ));
    }
    Some(columns)
}

/// The schema of a result: names from the result itself, types from the
/// description when it matches, else from the result's own metadata.
fn layout(
    columns: &[tiberius::Column],
    described: Option<&[SqlType]>,
) -> (SchemaRef, Vec<SqlType>) {
    let types: Vec<SqlType> = match described {
        Some(d) if d.len() == columns.len() => d.to_vec(),
        _ => columns
            .iter()
            .map(|c| from_column_type(c.column_type()))
            .collect(),
    };
    let fields: Vec<Field> = types
        .iter()
        .zip(columns)
        .map(|(t, c)| t.field(c.name()))
        .collect();
    (Arc::new(Schema::new(fields)), types)
}

/// What became of a statement's results once its first result set was read.
enum Ended {
    /// The server sent everything.
    Drained,
    /// More result sets follow; the connection needs an attention to skip them.
    MoreResults,
}

async fn stream_rows(
    conn: &mut Conn,
    query: &QuerySpec,
    params: &[Param],
    sink: &BatchSink,
) -> Result<Ended, ConnectorError> {
    let described: Option<Vec<SqlType>> = describe_columns(conn, &query.sql, params)
        .await?
        .map(|cols| cols.into_iter().map(|(_, t)| t).collect());
    let boxed: Vec<Box<dyn ToSql>> = params.iter().map(to_sql).collect();
    let refs: Vec<&dyn ToSql> = boxed.iter().map(|b| b.as_ref()).collect();
    let mut stream = conn
        .query(query.sql.as_str(), &refs)
        .await
        .map_err(ms_error)?;
    let mut pacer = Pacer::new(query.yield_to.clone());
    // The first result set's schema and batches, once its metadata arrived.
    let mut current = None;
    let mut ended = Ended::Drained;
    while let Some(item) = stream.try_next().await.map_err(ms_error)? {
        match item {
            QueryItem::Metadata(meta) if meta.result_index() == 0 => {
                let (schema, types) = layout(meta.columns(), described.as_deref());
                sink.send(Output::Schema(schema.clone())).await?;
                let batches = Batcher::new(schema.clone(), query.batches, move |cap: usize| {
                    types
                        .iter()
                        .map(|t| Column::new(*t, cap))
                        .collect::<Vec<Column>>()
                });
                current = Some((schema, batches));
            }
            QueryItem::Metadata(_) => {
                ended = Ended::MoreResults;
                break;
            }
            QueryItem::Row(row) => {
                let Some((schema, batches)) = current.as_mut() else {
                    continue;
                };
                tokio::task::consume_budget().await;
                pacer.row().await;
                let mut bytes = 0;
                for (i, (col, v)) in batches.columns().iter_mut().zip(row).enumerate() {
                    bytes += value_bytes(&v);
                    col.append(v)
                        .map_err(|message| value_error(schema, i, message))?;
                }
                batches.row_done(bytes, sink).await?;
            }
        }
    }
    drop(stream);
    match current {
        Some((_, batches)) => batches.finish(sink).await?,
        // No result set at all (a statement that returns none).
        None => {
            let schema = Arc::new(Schema::empty());
            sink.send(Output::Schema(schema.clone())).await?;
            sink.send(Output::Batch(RecordBatch::new_empty(schema)))
                .await?;
        }
    }
    Ok(ended)
}

/// Stops whatever runs on `conn` with a TDS attention; a connection that
/// does not acknowledge it leaves the pool.
async fn attention(conn: Object<Manager>) {
    let mut conn = conn;
    match tokio::time::timeout(Duration::from_secs(5), conn.cancel_query()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "SQL Server did not acknowledge the cancel; dropping the connection");
            let _ = Object::take(conn);
        }
        Err(_) => {
            warn!("SQL Server did not acknowledge the cancel within 5 s; dropping the connection");
            let _ = Object::take(conn);
        }
    }
}

#[async_trait]
impl Connector for SqlServer {
    fn kind(&self) -> &'static str {
        "sqlserver"
    }

    async fn execute(
        &self,
        query: &QuerySpec,
        sink: &BatchSink,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let params = super::params::from_batch(query.params.as_ref())?;
        let mut conn = self.conn(query.mode).await?;
        let result = tokio::select! {
            r = stream_rows(&mut conn, query, &params, sink) => r,
            _ = cancel.cancelled() => Err(ConnectorError::Cancelled),
        };
        match result {
            Ok(Ended::Drained) => Ok(()),
            Ok(Ended::MoreResults) => {
                attention(conn).await;
                Ok(())
            }
            Err(ConnectorError::Cancelled) => {
                // Stop the statement in the server, not just our reading of it.
                attention(conn).await;
                Err(ConnectorError::Cancelled)
            }
            Err(e) => {
                if !reusable(&e) {
                    let _ = Object::take(conn);
                }
                Err(e)
            }
        }
    }

    async fn describe(&self, sql: &str) -> Result<Described, ConnectorError> {
        let mut conn = self.conn(Mode::Realtime).await?;
        let schema = describe_columns(&mut conn, sql, &[]).await?.map(|cols| {
            let fields: Vec<Field> = cols.iter().map(|(n, t)| t.field(n)).collect();
            Arc::new(Schema::new(fields))
        });
        Ok(Described {
            schema,
            // Parameters are typed by what the client binds.
            params: None,
        })
    }

    async fn list_tables(&self, include_schema: bool) -> Result<Vec<TableInfo>, ConnectorError> {
        let mut conn = self.conn(Mode::Realtime).await?;
        let rows = conn
            .simple_query(TABLES_SQL)
            .await
            .map_err(ms_error)?
            .into_first_result()
            .await
            .map_err(ms_error)?;
        let text =
            |r: &tiberius::Row, i: usize| r.get::<&str, _>(i).unwrap_or_default().to_string();
        let mut tables: Vec<TableInfo> = rows
            .iter()
            .map(|r| TableInfo {
                db_schema: Some(text(r, 0)),
                name: text(r, 1),
                table_type: text(r, 2),
                schema: None,
            })
            .collect();
        if include_schema {
            let cols = conn
                .simple_query(COLUMNS_SQL)
                .await
                .map_err(ms_error)?
                .into_first_result()
                .await
                .map_err(ms_error)?;
            let mut by_table: std::collections::HashMap<(String, String), Vec<Field>> =
                Default::default();
            for r in &cols {
                let t = from_type_name(
                    r.get::<&str, _>(3).unwrap_or_default(),
                    r.get::<u8, _>(4).unwrap_or(0),
                    r.get::<u8, _>(5).unwrap_or(0),
                );
                by_table
                    .entry((text(r, 0), text(r, 1)))
                    .or_default()
                    .push(t.field(&text(r, 2)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::{ColumnData, Row};

    fn described(rows: Vec<Vec<(&'static str, ColumnData<'static>)>>) -> Option<Vec<SqlType>> {
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|cols| {
                let mut b = Row::builder();
                for (name, v) in cols {
                    let t = match &v {
                        ColumnData::Bit(_) => tiberius::ColumnType::Bitn,
                        ColumnData::U8(_) => tiberius::ColumnType::Int1,
                        _ => tiberius::ColumnType::NVarchar,
                    };
                    b = b.column(name, t, v);
                }
                b.build()
            })
            .collect();
        parse_description(&rows).map(|cols| cols.into_iter().map(|(_, t)| t).collect())
    }

    fn col(
        hidden: bool,
        ty: &'static str,
        p: u8,
        s: u8,
    ) -> Vec<(&'static str, ColumnData<'static>)> {
        vec![
            ("is_hidden", ColumnData::Bit(Some(hidden))),
            ("name", ColumnData::String(Some("c".into()))),
            ("system_type_name", ColumnData::String(Some(ty.into()))),
            ("precision", ColumnData::U8(Some(p))),
            ("scale", ColumnData::U8(Some(s))),
        ]
    }

    #[test]
    fn descriptions_give_exact_types_and_skip_hidden_columns() {
        let types = described(vec![
            col(false, "int", 10, 0),
            col(false, "decimal(18,2)", 18, 2),
            col(true, "int", 10, 0),
            col(false, "nvarchar(max)", 0, 0),
        ])
        .unwrap();
        assert_eq!(
            types,
            vec![
                SqlType::Int,
                SqlType::Decimal {
                    precision: 18,
                    scale: 2
                },
                SqlType::Text
            ]
        );
        // Rows that are not a description (no system_type_name) are not one.
        assert!(described(vec![vec![("id", ColumnData::U8(Some(1)))]]).is_none());
    }

    #[test]
    fn parameters_are_declared_for_the_description() {
        let decls = param_decls(&[
            Param::Int(1),
            Param::Text("x".into()),
            Param::Null,
            Param::Timestamp(chrono::NaiveDateTime::default()),
        ]);
        assert_eq!(
            decls.as_deref(),
            Some("@P1 bigint, @P2 nvarchar(max), @P3 int, @P4 datetime2")
        );
        assert_eq!(param_decls(&[]), None);
    }
}
