//! PostgreSQL through tokio-postgres, with a deadpool connection pool.
//!
//! Results use the extended protocol in binary format and are decoded straight
//! into Arrow builders (see `decode`). Read-only sources run every session
//! with `default_transaction_read_only = on`, so the database itself refuses
//! writes. Cancelling a query sends PostgreSQL a cancel request.

mod bind;
mod decode;
mod types;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::{StreamExt, pin_mut};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use super::priority::Pacer;
use super::{
    BatchSink, Batcher, Connector, ConnectorError, Described, Output, QuerySpec, value_error,
};
use crate::config::agent::ServerSource;
use crate::protocol::catalog::TableInfo;
use decode::{Column, Raw};
use types::{ColType, col_type};

pub use types::Scalar;

/// Two pools: a connection's I/O task lives on the runtime that opened it,
/// and reloads run on the agent's reload runtime, so they get their own.
pub struct Postgres {
    realtime: Pool,
    reload: Pool,
    /// Also used for cancel requests, which open a connection of their own.
    tls: Option<MakeRustlsConnect>,
}

impl Postgres {
    pub fn new(c: &ServerSource) -> Result<Self, ConnectorError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&c.host)
            .port(c.port.unwrap_or(5432))
            .user(&c.user)
            .dbname(&c.database)
            .application_name("gatehouse-agent")
            .connect_timeout(Duration::from_secs(c.connect_timeout_secs))
            .keepalives(true);
        if let Some(pw) = c.password().map_err(ConnectorError::Connect)? {
            cfg.password(pw);
        }
        if c.read_only {
            cfg.options("-c default_transaction_read_only=on");
        }
        let tls = super::tls::client_config(&c.tls)?.map(MakeRustlsConnect::new);
        cfg.ssl_mode(if tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        let pool = |size: usize| {
            let manager_config = ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            };
            let manager = match &tls {
                Some(tls) => Manager::from_config(cfg.clone(), tls.clone(), manager_config),
                None => Manager::from_config(cfg.clone(), NoTls, manager_config),
            };
            Pool::builder(manager)
                .max_size(size)
                .build()
                .map_err(|e| ConnectorError::Internal(e.to_string()))
        };
        Ok(Postgres {
            realtime: pool(c.pool_size)?,
            reload: pool(c.limits.reload_concurrency.max(1))?,
            tls,
        })
    }

    async fn client(
        &self,
        mode: crate::protocol::pb::Mode,
    ) -> Result<deadpool_postgres::Object, ConnectorError> {
        let pool = if mode == crate::protocol::pb::Mode::Reload {
            &self.reload
        } else {
            &self.realtime
        };
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => ConnectorError::Connect(other.to_string()),
        })
    }
}

/// The database's own message and SQLSTATE; connection problems are retryable.
fn pg_error(e: tokio_postgres::Error) -> ConnectorError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code().to_string();
        if code == "57014" {
            return ConnectorError::Cancelled;
        }
        let mut message = format!("{}: {} (SQLSTATE {code})", db.severity(), db.message());
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        // Class 08 (connection), 40 (rollback, e.g. serialization), 53 (resources), 57P (shutdown).
        let retryable = code.starts_with("08")
            || code.starts_with("40")
            || code.starts_with("53")
            || code.starts_with("57P");
        if code.starts_with("28") {
            return ConnectorError::Connect(message);
        }
        return ConnectorError::Database {
            message,
            sqlstate: Some(code),
            retryable,
        };
    }
    if e.is_closed() {
        return ConnectorError::Connect("the database closed the connection".into());
    }
    // With the causes: "error performing TLS handshake: invalid peer certificate: ...".
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    ConnectorError::Connect(message)
}

fn unsupported(name: &str, ty: &Type) -> ConnectorError {
    ConnectorError::Unsupported(format!(
        "column {name:?} has type {ty}, which has no Arrow mapping yet; cast it in SQL (for example {name}::text)"
    ))
}

fn result_layout(
    stmt: &tokio_postgres::Statement,
) -> Result<(SchemaRef, Vec<ColType>), ConnectorError> {
    let mut fields = Vec::new();
    let mut types = Vec::new();
    for c in stmt.columns() {
        let t = col_type(c.type_(), c.type_modifier())
            .ok_or_else(|| unsupported(c.name(), c.type_()))?;
        fields.push(t.field(c.name()));
        types.push(t);
    }
    Ok((Arc::new(Schema::new(fields)), types))
}

async fn stream_rows(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: Vec<bind::Bound>,
    schema: SchemaRef,
    types: &[ColType],
    query: &QuerySpec,
    sink: &BatchSink,
) -> Result<(), ConnectorError> {
    let rows = client
        .query_raw(
            stmt,
            params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)),
        )
        .await
        .map_err(pg_error)?;
    pin_mut!(rows);
    let mut pacer = Pacer::new(query.yield_to.clone());
    let mut batches = Batcher::new(schema.clone(), query.batches, |cap: usize| {
        types
            .iter()
            .zip(schema.fields())
            .map(|(t, f)| Column::new(*t, f, cap))
            .collect::<Vec<Column>>()
    });
    while let Some(row) = rows.next().await {
        let row = row.map_err(pg_error)?;
        // The row stream is a futures channel, invisible to tokio's cooperative
        // budget: without this, a reload decodes a whole batch without yielding
        // and realtime queries on the same worker thread wait behind it.
        tokio::task::consume_budget().await;
        pacer.row().await;
        let mut bytes = 0;
        for (i, col) in batches.columns().iter_mut().enumerate() {
            let raw: Option<Raw> = row
                .try_get(i)
                .map_err(|e| ConnectorError::Internal(e.to_string()))?;
            bytes += raw.as_ref().map_or(0, |r| r.0.len());
            col.append(raw.map(|r| r.0))
                .map_err(|message| value_error(&schema, i, message))?;
        }
        batches.row_done(bytes, sink).await?;
    }
    batches.finish(sink).await
}

#[async_trait]
impl Connector for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn execute(
        &self,
        query: &QuerySpec,
        sink: &BatchSink,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let params = super::params::from_batch(query.params.as_ref())?;
        let client = self.client(query.mode).await?;
        let cancel_token = client.cancel_token();
        let work = async {
            let stmt = client.prepare_cached(&query.sql).await.map_err(pg_error)?;
            let (schema, types) = result_layout(&stmt)?;
            let bound = bind::bind(&params, stmt.params())?;
            sink.send(Output::Schema(schema.clone())).await?;
            stream_rows(&client, &stmt, bound, schema, &types, query, sink).await
        };
        let result = tokio::select! {
            r = work => r,
            _ = cancel.cancelled() => Err(ConnectorError::Cancelled),
        };
        if matches!(result, Err(ConnectorError::Cancelled)) {
            // Stop the statement in the server, not just our reading of it.
            let cancel_request = async {
                match &self.tls {
                    Some(tls) => cancel_token.cancel_query(tls.clone()).await,
                    None => cancel_token.cancel_query(NoTls).await,
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), cancel_request).await;
            // The connection may still carry the rest of the result: don't reuse it.
            let _ = deadpool_postgres::Object::take(client);
        }
        result
    }

    async fn describe(&self, sql: &str) -> Result<Described, ConnectorError> {
        let client = self.client(crate::protocol::pb::Mode::Realtime).await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
        let (schema, _) = result_layout(&stmt)?;
        let params: Option<Vec<Field>> = stmt
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| col_type(t, -1).map(|c| c.field(&format!("${}", i + 1))))
            .collect();
        Ok(Described {
            schema: Some(schema),
            params: params.map(|f| Arc::new(Schema::new(f))),
        })
    }

    async fn list_tables(&self, include_schema: bool) -> Result<Vec<TableInfo>, ConnectorError> {
        let client = self.client(crate::protocol::pb::Mode::Realtime).await?;
        let rows = client
            .query(
                "SELECT n.nspname, c.relname, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'VIEW' ELSE 'TABLE' END
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r','p','v','m','f')
                   AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%'
                   AND has_table_privilege(c.oid, 'SELECT')
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let mut tables: Vec<TableInfo> = rows
            .iter()
            .map(|r| TableInfo {
                db_schema: Some(r.get(0)),
                name: r.get(1),
                table_type: r.get(2),
                schema: None,
            })
            .collect();
        if include_schema {
            let cols = client
                .query(
                    "SELECT n.nspname, c.relname, a.attname, a.atttypid, a.atttypmod
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f')
                       AND n.nspname NOT IN ('pg_catalog','information_schema')
                     ORDER BY 1, 2, a.attnum",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            let mut by_table: std::collections::HashMap<(String, String), Vec<Field>> =
                Default::default();
            for r in &cols {
                let ty = Type::from_oid(r.get::<_, u32>(3));
                let field = match ty.as_ref().and_then(|t| col_type(t, r.get(4))) {
                    Some(t) => t.field(r.get(2)),
                    None => Field::new(r.get::<_, &str>(2), arrow::datatypes::DataType::Utf8, true),
                };
                by_table
                    .entry((r.get(0), r.get(1)))
                    .or_default()
                    .push(field);
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
