//! SQL Server's wire path against Microsoft's mock TDS server
//! (`mssql-mock-tds`) over real loopback TCP: plain TDS and TDS 8 strict TLS,
//! the server's errors, attention on cancel, read-only logins, bounded
//! batches. The mock knows INT and NVARCHAR columns and no SQL, so it cannot
//! describe statements: these tests also exercise the connector's fallback to
//! the result's own metadata. Type mapping for every SQL Server type is unit
//! tested from tiberius values (`src/connectors/sqlserver`); the whole
//! conformance suite runs against a real server in the opt-in lane
//! (`conformance.rs`, `GATEHOUSE_TEST_MSSQL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use gatehouse::config::agent::{DbTls, DbTlsMode, Limits, ServerSource, SourceConfig};
use gatehouse::connectors::sqlserver::{COLUMNS_SQL, TABLES_SQL, WRITE_PERMISSIONS_SQL};
use gatehouse::connectors::{
    self, BatchPlan, BatchSink, Connector, ConnectorError, Output, QuerySpec,
};
use gatehouse::protocol::pb::Mode;
use mssql_mock_tds::{
    ColumnDefinition, ColumnValue, ConnectionStore, MockTdsServer, QueryRegistry, QueryResponse,
    Row, SqlDataType, TerminalError,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::harness::{
    Fixture, code, fetch, listed_schema, message, one, query, secret_file, strings,
};

/// A mock SQL Server on a free loopback port, stopped when dropped.
pub struct Mock {
    port: u16,
    registry: Arc<Mutex<QueryRegistry>>,
    connections: Arc<Mutex<ConnectionStore>>,
    task: tokio::task::JoinHandle<()>,
    /// For strict TLS: the CA that signed the mock's certificate.
    ca: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub async fn plain() -> Mock {
        Self::start(false).await
    }

    /// TDS 8: TLS first, with a certificate for `localhost` from a throwaway CA.
    async fn strict() -> Mock {
        Self::start(true).await
    }

    async fn start(strict: bool) -> Mock {
        let dir = tempfile::tempdir().unwrap();
        let (server, ca) = if strict {
            let pki = gatehouse::transport::tls::DevPki::create(dir.path(), &["localhost".into()])
                .unwrap();
            let identity = mssql_mock_tds::create_test_identity(
                &std::fs::read(pki.hub_cert()).unwrap(),
                &std::fs::read(pki.hub_key()).unwrap(),
            )
            .unwrap();
            let server = MockTdsServer::new_with_strict_tls("127.0.0.1:0", identity)
                .await
                .unwrap();
            (server, Some(pki.ca_cert()))
        } else {
            (MockTdsServer::new("127.0.0.1:0").await.unwrap(), None)
        };
        let (port, registry, connections) = (
            server.local_addr().port(),
            server.query_registry(),
            server.connection_store(),
        );
        let task = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Mock {
            port,
            registry,
            connections,
            task,
            ca,
            _dir: dir,
        }
    }

    pub async fn register(&self, sql: &str, response: QueryResponse) {
        self.registry.lock().await.register(sql, response);
    }

    /// Answers the catalog queries: `dbo.orders` (int, decimal(18,2),
    /// datetime2, nvarchar) and the view `dbo.v_orders`.
    pub async fn with_catalog(&self) {
        let text = |names: &[&str]| -> Vec<ColumnDefinition> {
            names
                .iter()
                .map(|n| ColumnDefinition::new(*n, SqlDataType::NVarChar))
                .collect()
        };
        let row = |values: &[&str]| {
            Row::new(
                values
                    .iter()
                    .map(|v| ColumnValue::NVarChar(v.to_string()))
                    .collect(),
            )
        };
        self.register(
            TABLES_SQL,
            QueryResponse::new(
                text(&["schema", "name", "type"]),
                vec![
                    row(&["dbo", "orders", "TABLE"]),
                    row(&["dbo", "v_orders", "VIEW"]),
                ],
            ),
        )
        .await;
        let mut columns = text(&["schema", "table", "column", "type"]);
        columns.push(ColumnDefinition::new("precision", SqlDataType::TinyInt));
        columns.push(ColumnDefinition::new("scale", SqlDataType::TinyInt));
        let column = |table: &str, name: &str, ty: &str, p: u8, s: u8| {
            let mut r = row(&["dbo", table, name, ty]);
            r.values.push(ColumnValue::TinyInt(p));
            r.values.push(ColumnValue::TinyInt(s));
            r
        };
        self.register(
            COLUMNS_SQL,
            QueryResponse::new(
                columns,
                vec![
                    column("orders", "id", "int", 10, 0),
                    column("orders", "amount", "decimal", 18, 2),
                    column("orders", "placed", "datetime2", 27, 7),
                    column("orders", "note", "nvarchar", 0, 0),
                    column("v_orders", "id", "int", 10, 0),
                ],
            ),
        )
        .await;
    }

    /// A hub and an agent serving this mock as source `ms` of tenant acme.
    async fn gateway(&self) -> Fixture {
        Fixture::builder()
            .tenant("acme", "alice")
            .agent("acme", "acme-ms", vec![("ms", self.source(false))])
            .start()
            .await
    }

    async fn connections(&self) -> usize {
        self.connections.lock().await.count()
    }

    pub fn source(&self, read_only: bool) -> SourceConfig {
        SourceConfig::Sqlserver(ServerSource {
            host: if self.ca.is_some() {
                "localhost".into()
            } else {
                "127.0.0.1".into()
            },
            port: Some(self.port),
            user: "sa".into(),
            database: "master".into(),
            password_env: None,
            password_file: Some(secret_file("mock password")),
            password_credential: None,
            read_only,
            pool_size: 1,
            connect_timeout_secs: 5,
            tls: match &self.ca {
                Some(ca) => DbTls {
                    mode: DbTlsMode::Strict,
                    ca: Some(ca.clone()),
                },
                None => DbTls::default(),
            },
            limits: Limits::default(),
        })
    }
}

/// Upper case: the mock matches parameterised statements by upper-cased text.
pub const USERS: &str = "SELECT ID, NAME, VISITS FROM USERS_GH";

pub fn users() -> QueryResponse {
    QueryResponse::new(
        vec![
            ColumnDefinition::new("id", SqlDataType::Int),
            ColumnDefinition::new("name", SqlDataType::NVarCharMax),
            ColumnDefinition::new("visits", SqlDataType::BigInt),
        ],
        vec![
            Row::new(vec![
                ColumnValue::Int(1),
                ColumnValue::NVarCharMax(vec!["Zoë ✓".encode_utf16().collect()]),
                ColumnValue::BigInt(i64::MAX),
            ]),
            Row::new(vec![
                ColumnValue::Int(-2),
                ColumnValue::NVarCharMaxNull,
                ColumnValue::Null,
            ]),
        ],
    )
}

fn spec(sql: &str) -> QuerySpec {
    QuerySpec {
        sql: sql.into(),
        params: None,
        mode: Mode::Realtime,
        batches: BatchPlan::REALTIME,
        yield_to: None,
    }
}

/// Runs `sql` on `connector` directly; the batches or the error.
async fn run(
    connector: &dyn Connector,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<Vec<arrow::array::RecordBatch>, ConnectorError> {
    let (sink, mut rx) = BatchSink::channel();
    let collect = async {
        let mut batches = Vec::new();
        while let Some(out) = rx.recv().await {
            if let Output::Batch(b) = out {
                batches.push(b);
            }
        }
        batches
    };
    let spec = spec(sql);
    let exec = async {
        let r = connector.execute(&spec, &sink, cancel).await;
        drop(sink);
        r
    };
    let (r, batches) = tokio::join!(exec, collect);
    r.map(|_| batches)
}

async fn through_the_gateway(mock: &Mock) {
    mock.register(USERS, users()).await;
    let fx = mock.gateway().await;
    let mut c = fx.client("alice").await;
    let b = one(&query(&mut c, USERS).await.unwrap());
    assert_eq!(b.num_rows(), 2);
    // The mock cannot describe statements, so the result's own metadata
    // types the columns (it carries integer widths).
    let schema = b.schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(types, [&DataType::Int32, &DataType::Utf8, &DataType::Int64]);
    assert_eq!(schema.field(1).name(), "name");
    let id = b.column(0).as_primitive::<Int32Type>();
    assert_eq!((id.value(0), id.value(1)), (1, -2));
    let name = b.column(1).as_string::<i32>();
    assert_eq!(name.value(0), "Zoë ✓");
    assert!(name.is_null(1));
    let visits = b.column(2).as_primitive::<Int64Type>();
    assert_eq!(visits.value(0), i64::MAX);
    assert!(visits.is_null(1));
    fx.stop().await;
}

#[tokio::test]
async fn plain_tds_rows_reach_a_flight_client() {
    let mock = Mock::plain().await;
    through_the_gateway(&mock).await;
}

#[tokio::test]
async fn strict_tls_tds8_rows_reach_a_flight_client() {
    let mock = Mock::strict().await;
    through_the_gateway(&mock).await;
}

#[tokio::test]
async fn strict_tls_refuses_a_certificate_from_another_ca() {
    let mock = Mock::strict().await;
    mock.register(USERS, users()).await;
    let other = tempfile::tempdir().unwrap();
    let pki =
        gatehouse::transport::tls::DevPki::create(other.path(), &["localhost".into()]).unwrap();
    let mut source = mock.source(false);
    let SourceConfig::Sqlserver(s) = &mut source else {
        unreachable!()
    };
    s.tls.ca = Some(pki.ca_cert());
    let connector = connectors::build(&source).unwrap();
    let e = run(connector.as_ref(), USERS, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Connect(_)), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn server_errors_keep_their_message_and_number() {
    let mock = Mock::plain().await;
    mock.register(
        "SELECT * FROM MISSING_GH",
        QueryResponse::error_only(TerminalError::new(
            208,
            16,
            "Invalid object name 'MISSING_GH'.",
        )),
    )
    .await;
    let fx = mock.gateway().await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELECT * FROM MISSING_GH").await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(
        message(&e).contains("Invalid object name 'MISSING_GH'")
            && message(&e).contains("SQL Server error 208"),
        "{e}"
    );
    fx.stop().await;

    // Nothing listening: UNAVAILABLE, saying where it tried.
    let port = mock.port;
    drop(mock);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut down = Mock::plain().await.source(false);
    if let SourceConfig::Sqlserver(s) = &mut down {
        s.port = Some(port);
    }
    let connector = connectors::build(&down).unwrap();
    let e = run(connector.as_ref(), USERS, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("cannot reach the database")
            && e.to_string().contains(&port.to_string()),
        "{e}"
    );
}

#[tokio::test]
async fn cancel_sends_an_attention_and_keeps_the_connection() {
    let mock = Mock::plain().await;
    const SLOW: &str = "SELECT ID, NAME, VISITS FROM SLOW_GH";
    mock.register(SLOW, users().with_delay(Duration::from_secs(60)))
        .await;
    mock.register(USERS, users()).await;
    let connector = connectors::build(&mock.source(false)).unwrap();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (r, ()) = tokio::join!(run(connector.as_ref(), SLOW, &cancel), stop);
    assert!(matches!(r, Err(ConnectorError::Cancelled)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server acknowledged the attention, so the one pooled connection
    // is still good: the next query runs on it.
    // Without the attention the connection would first have to read the
    // slow result, a minute away.
    let b = tokio::time::timeout(
        Duration::from_secs(10),
        run(connector.as_ref(), USERS, &CancellationToken::new()),
    )
    .await
    .expect("the connection was still busy with the cancelled query")
    .unwrap();
    assert_eq!(one(&b).num_rows(), 2);
    assert_eq!(mock.connections().await, 1, "the connection was replaced");
}

#[tokio::test]
async fn read_only_sources_refuse_a_login_that_can_write() {
    let mock = Mock::plain().await;
    mock.register(USERS, users()).await;
    let permissions = |held: &[&str]| {
        QueryResponse::new(
            vec![ColumnDefinition::new(
                "permission_name",
                SqlDataType::NVarChar,
            )],
            held.iter()
                .map(|p| Row::new(vec![ColumnValue::NVarChar(p.to_string())]))
                .collect(),
        )
    };
    mock.register(WRITE_PERMISSIONS_SQL, permissions(&["INSERT", "CONTROL"]))
        .await;
    let connector = connectors::build(&mock.source(true)).unwrap();
    let e = run(connector.as_ref(), USERS, &CancellationToken::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Connect(_)), "{text}");
    assert!(
        text.contains("INSERT, CONTROL") && text.contains("db_datareader"),
        "{text}"
    );

    // A login without write permissions reads.
    mock.register(WRITE_PERMISSIONS_SQL, permissions(&[])).await;
    let connector = connectors::build(&mock.source(true)).unwrap();
    let b = run(connector.as_ref(), USERS, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(one(&b).num_rows(), 2);
}

/// `nvarchar(max)` arrives in PLP chunks that split characters anywhere;
/// the value must come out whole. (The mock sends a response as one TDS
/// packet, so it cannot carry results over 64 kB: bounded batches for SQL
/// Server are checked in the real-server lane.)
#[tokio::test]
async fn nvarchar_max_values_arrive_whole() {
    let mock = Mock::plain().await;
    const WIDE: &str = "SELECT ID, BODY FROM WIDE_GH";
    let text = "x✓€".repeat(2_000);
    let body: Vec<u16> = text.encode_utf16().collect();
    let rows = (0..4)
        .map(|i| {
            Row::new(vec![
                ColumnValue::Int(i),
                // Odd chunk sizes: chunk edges fall inside characters' byte runs.
                ColumnValue::NVarCharMax(body.chunks(997).map(<[u16]>::to_vec).collect()),
            ])
        })
        .collect();
    mock.register(
        WIDE,
        QueryResponse::new(
            vec![
                ColumnDefinition::new("id", SqlDataType::Int),
                ColumnDefinition::new("body", SqlDataType::NVarCharMax),
            ],
            rows,
        ),
    )
    .await;
    let connector = connectors::build(&mock.source(false)).unwrap();
    let b = one(&run(connector.as_ref(), WIDE, &CancellationToken::new())
        .await
        .unwrap());
    assert_eq!(b.num_rows(), 4);
    let bodies = b.column(1).as_string::<i32>();
    assert!((0..4).all(|i| bodies.value(i) == text));
}

#[tokio::test]
async fn catalog_lists_tables_from_sys_views() {
    let mock = Mock::plain().await;
    mock.with_catalog().await;
    let fx = mock.gateway().await;
    let mut c = fx.client("alice").await;
    let schema = listed_schema(&mut c, "ms", "dbo", "orders").await;
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", &DataType::Int32),
            ("amount", &DataType::Decimal128(18, 2)),
            (
                "placed",
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
            ),
            ("note", &DataType::Utf8),
        ]
    );
    let info = c
        .get_tables(arrow_flight::sql::CommandGetTables {
            catalog: Some("ms".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let views = fetch(&mut c, info).await;
    assert_eq!(strings(&views, 2), ["v_orders"]);
    fx.stop().await;
}
