//! Database connectors behind one small trait. Adding a database is one file
//! (or folder) here plus a variant in `config::agent::SourceConfig`.

pub mod mysql;
pub mod params;
pub mod postgres;
pub mod priority;
pub mod sqlite;
pub mod sqlserver;
pub mod tls;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::agent::SourceConfig;
use crate::protocol::catalog::TableInfo;
use crate::protocol::pb;

/// What a connector is asked to run.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub sql: String,
    /// Bound parameters: one row, one column per placeholder.
    pub params: Option<RecordBatch>,
    pub mode: pb::Mode,
    pub batches: BatchPlan,
    /// Set for reloads: the read loop steps aside while realtime queries run.
    pub yield_to: Option<Arc<priority::Priority>>,
}

/// Rows per batch: a small first batch gets a chart its first rows quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    pub first: usize,
    pub rest: usize,
}

impl BatchPlan {
    pub const REALTIME: BatchPlan = BatchPlan {
        first: 1_000,
        rest: 16_384,
    };
    pub const RELOAD: BatchPlan = BatchPlan {
        first: 8_192,
        rest: 65_536,
    };

    pub fn for_mode(mode: pb::Mode, requested: u32) -> Self {
        let base = if mode == pb::Mode::Reload {
            Self::RELOAD
        } else {
            Self::REALTIME
        };
        match requested as usize {
            0 => base,
            n => {
                let n = n.clamp(1, 1 << 20);
                BatchPlan {
                    first: base.first.min(n),
                    rest: n,
                }
            }
        }
    }

    /// Target size of batch number `index` (0-based).
    pub fn size(&self, index: usize) -> usize {
        if index == 0 { self.first } else { self.rest }
    }
}

/// Uncompressed bytes a batch aims for: bounds the agent's memory per query
/// whatever the row width, and keeps each Flight message well under the 4 MiB
/// gRPC default that many clients (tonic, grpc-c++) enforce.
pub const TARGET_BATCH_BYTES: usize = 2 << 20;

/// Cuts a streamed result into batches: the size of each from the plan and
/// the row width seen so far, and when the batch being built is full (its
/// row count, or [`TARGET_BATCH_BYTES`] of row data, so memory stays bounded
/// when rows are far wider than the previous ones suggested).
#[derive(Debug, Clone)]
pub struct BatchSizer {
    plan: BatchPlan,
    index: usize,
    /// Rows the batch being built aims for.
    target: usize,
    /// Rows and wire bytes in the batch being built.
    rows: usize,
    bytes: usize,
}

impl BatchSizer {
    pub fn new(plan: BatchPlan) -> Self {
        BatchSizer {
            plan,
            index: 0,
            target: plan.size(0),
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows the batch being built aims for (a builder's capacity).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Rows in the batch being built.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Counts one row of about `bytes` bytes; true once the batch is full.
    pub fn row(&mut self, bytes: usize) -> bool {
        self.rows += 1;
        self.bytes += bytes;
        self.full()
    }

    pub fn full(&self) -> bool {
        self.rows >= self.target || self.bytes >= TARGET_BATCH_BYTES
    }

    /// Whether a last batch is due: rows not yet sent, or no batch at all
    /// (an empty result still sends one, with its schema).
    pub fn pending(&self) -> bool {
        self.rows > 0 || self.index == 0
    }

    /// Learns the row width from a finished batch and starts the next one.
    pub fn record(&mut self, batch: &RecordBatch) {
        self.index += 1;
        self.target = self.plan.size(self.index);
        if batch.num_rows() > 0 {
            let bytes_per_row = (batch_bytes(batch) / batch.num_rows()).max(1);
            self.target = self.target.min((TARGET_BATCH_BYTES / bytes_per_row).max(1));
        }
        (self.rows, self.bytes) = (0, 0);
    }
}

/// A result column a connector decodes its database's values into.
pub trait ColumnBuilder {
    /// The values appended so far, as an array; the builder starts empty again.
    fn finish(&mut self) -> ArrayRef;
}

/// Rows turned into batches on their way to the sink: each batch is cut by a
/// [`BatchSizer`] and the next one's columns are made with the capacity it
/// aims for. The connector appends each row's values to [`Batcher::columns`]
/// and then calls [`Batcher::row_done`].
pub struct Batcher<C, F> {
    schema: SchemaRef,
    sizer: BatchSizer,
    make: F,
    columns: Vec<C>,
}

impl<C: ColumnBuilder, F: Fn(usize) -> Vec<C>> Batcher<C, F> {
    /// `make(capacity)` makes a batch's columns.
    pub fn new(schema: SchemaRef, plan: BatchPlan, make: F) -> Self {
        let sizer = BatchSizer::new(plan);
        let columns = make(sizer.target());
        Batcher {
            schema,
            sizer,
            make,
            columns,
        }
    }

    pub fn columns(&mut self) -> &mut [C] {
        &mut self.columns
    }

    /// Counts a row of about `bytes` bytes; sends the batch once it is full.
    pub async fn row_done(&mut self, bytes: usize, sink: &BatchSink) -> Result<(), ConnectorError> {
        if self.sizer.row(bytes) {
            let batch = self.take()?;
            self.sizer.record(&batch);
            sink.send(Output::Batch(batch)).await?;
            self.columns = (self.make)(self.sizer.target());
        }
        Ok(())
    }

    /// Sends the last batch (an empty result still sends one, with its schema).
    pub async fn finish(mut self, sink: &BatchSink) -> Result<(), ConnectorError> {
        if self.sizer.pending() {
            sink.send(Output::Batch(self.take()?)).await?;
        }
        Ok(())
    }

    fn take(&mut self) -> Result<RecordBatch, ConnectorError> {
        let arrays = self.columns.iter_mut().map(C::finish).collect();
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// The error for a value column `i` of `schema` could not take.
pub fn value_error(schema: &SchemaRef, i: usize, message: String) -> ConnectorError {
    ConnectorError::Unsupported(format!("column {:?}: {message}", schema.field(i).name()))
}

/// Bytes of data a batch holds (not its allocated capacity).
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

/// The prepared shape of a statement.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub schema: Option<SchemaRef>,
    pub params: Option<SchemaRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The database rejected or failed the statement; its own message.
    #[error("{message}")]
    Database {
        message: String,
        sqlstate: Option<String>,
        retryable: bool,
    },
    #[error("cannot reach the database: {0}")]
    Connect(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("query cancelled")]
    Cancelled,
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConnectorError {
    pub fn code(&self) -> pb::ErrorCode {
        match self {
            ConnectorError::Database { .. } => pb::ErrorCode::Database,
            ConnectorError::Connect(_) => pb::ErrorCode::Unavailable,
            ConnectorError::Unsupported(_) | ConnectorError::Params(_) => {
                pb::ErrorCode::InvalidRequest
            }
            ConnectorError::Cancelled => pb::ErrorCode::Cancelled,
            ConnectorError::Arrow(_) | ConnectorError::Internal(_) => pb::ErrorCode::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            ConnectorError::Database { retryable, .. } => *retryable,
            ConnectorError::Connect(_) => true,
            _ => false,
        }
    }
}

/// What a connector hands to the agent: the schema first, then batches.
#[derive(Debug)]
pub enum Output {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// The bounded channel from a connector to the tunnel writer. Its capacity
/// of one batch is what makes a slow reader slow the database cursor.
#[derive(Clone)]
pub struct BatchSink {
    tx: mpsc::Sender<Output>,
}

impl BatchSink {
    pub fn channel() -> (BatchSink, mpsc::Receiver<Output>) {
        let (tx, rx) = mpsc::channel(1);
        (BatchSink { tx }, rx)
    }

    pub async fn send(&self, out: Output) -> Result<(), ConnectorError> {
        self.tx
            .send(out)
            .await
            .map_err(|_| ConnectorError::Cancelled)
    }

    /// For connectors that run on a blocking thread.
    pub fn blocking_send(&self, out: Output) -> Result<(), ConnectorError> {
        self.tx
            .blocking_send(out)
            .map_err(|_| ConnectorError::Cancelled)
    }
}

/// A database the agent can query.
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Runs `query`, sending the schema and then batches into `sink`. Must stop
    /// promptly, cancelling the statement in the database, once `cancel` fires.
    async fn execute(
        &self,
        query: &QuerySpec,
        sink: &BatchSink,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectorError>;

    /// Prepares `sql` without running it and reports its result and parameter schemas.
    async fn describe(&self, sql: &str) -> Result<Described, ConnectorError>;

    /// The tables and views a client may browse.
    async fn list_tables(&self, include_schema: bool) -> Result<Vec<TableInfo>, ConnectorError>;
}

/// Builds the connector for a configured source.
pub fn build(config: &SourceConfig) -> Result<Arc<dyn Connector>, ConnectorError> {
    crate::transport::tls::install_crypto_provider();
    Ok(match config {
        SourceConfig::Sqlite(c) => Arc::new(sqlite::Sqlite::new(c)),
        SourceConfig::Postgres(c) => Arc::new(postgres::Postgres::new(c)?),
        SourceConfig::Mysql(c) => Arc::new(mysql::Mysql::new(c)?),
        SourceConfig::Sqlserver(c) => Arc::new(sqlserver::SqlServer::new(c)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(rows: usize) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![1; rows])) as arrow::array::ArrayRef,
        )])
        .unwrap()
    }

    #[test]
    fn batches_are_cut_by_rows_then_by_bytes() {
        let mut s = BatchSizer::new(BatchPlan { first: 3, rest: 5 });
        assert!(s.pending(), "an empty result still sends a batch");
        assert!(!s.row(10) && !s.row(10) && s.row(10));
        s.record(&batch(3));
        assert_eq!((s.target(), s.rows(), s.pending()), (5, 0, false));
        // A row wider than the byte target fills a batch on its own.
        assert!(s.row(TARGET_BATCH_BYTES));
        s.record(&batch(1));
        assert!(!s.full());
    }
}
