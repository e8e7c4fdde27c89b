//! PostgreSQL (tokio-postgres). Placeholder while the connector is written.
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{BatchSink, Connector, ConnectorError, Described, QuerySpec};
use crate::config::agent::PostgresSource;
use crate::protocol::catalog::TableInfo;

pub struct Postgres;

impl Postgres {
    pub fn new(_c: &PostgresSource) -> Result<Self, ConnectorError> {
        Ok(Postgres)
    }
}

#[async_trait]
impl Connector for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    async fn execute(&self, _q: &QuerySpec, _s: &BatchSink, _c: &CancellationToken) -> Result<(), ConnectorError> {
        Err(ConnectorError::Internal("todo".into()))
    }
    async fn describe(&self, _sql: &str) -> Result<Described, ConnectorError> {
        Err(ConnectorError::Internal("todo".into()))
    }
    async fn list_tables(&self, _i: bool) -> Result<Vec<TableInfo>, ConnectorError> {
        Err(ConnectorError::Internal("todo".into()))
    }
}
