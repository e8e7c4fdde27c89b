//! Test fixture: a real hub and real agents in this process, talking over a
//! real QUIC tunnel on loopback, with certificates from the development CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use gatehouse::agent::Agent;
use gatehouse::config::agent::{
    AgentConfig, DbTls, HubConnection, Limits, ServerSource, SourceConfig, SqliteSource,
};
use gatehouse::config::hub::{FlightListener, HubConfig, Tenant, TunnelListener, User};
use gatehouse::hub::{Hub, Registry};
use gatehouse::transport::tls::DevPki;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse";

/// The TPC-H demo database at SF 0.01, generated once per test run.
pub fn tpch_db() -> PathBuf {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tpch.sqlite");
        gatehouse::demo::generate_tpch(&path, 0.01).unwrap();
        (dir, path)
    })
    .1
    .clone()
}

pub fn sqlite(path: PathBuf) -> SourceConfig {
    SourceConfig::Sqlite(SqliteSource {
        path,
        read_only: true,
        limits: Limits::default(),
    })
}

/// The throwaway PostgreSQL that `tests/run` started; fails loudly without it.
pub fn pg_conninfo() -> String {
    std::env::var("GATEHOUSE_TEST_PG").expect(
        "GATEHOUSE_TEST_PG is not set: run the integration tests with ./tests/run, which starts a throwaway PostgreSQL",
    )
}

fn pg_field(key: &str) -> String {
    pg_conninfo()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("GATEHOUSE_TEST_PG has no {key}="))
}

/// A file holding `secret`, as an administrator would give the agent a
/// password (`password_file`).
pub fn secret_file(secret: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(unique("secret"));
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

pub fn postgres(limits: Limits) -> SourceConfig {
    let password = pg_conninfo()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("password=").map(str::to_string));
    SourceConfig::Postgres(ServerSource {
        host: pg_field("host"),
        port: Some(pg_field("port").parse().unwrap()),
        user: pg_field("user"),
        database: pg_field("dbname"),
        password_env: None,
        password_file: password.as_deref().map(secret_file),
        password_credential: None,
        read_only: true,
        pool_size: 8,
        connect_timeout_secs: 5,
        tls: DbTls::default(),
        limits,
    })
}

/// A fresh, empty database in the test PostgreSQL, as a URL.
pub async fn pg_scratch_db() -> String {
    let name = unique("gh_scratch");
    pg_admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let password = pg_conninfo()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("password=").map(str::to_string))
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "postgres://{}{password}@{}:{}/{name}?sslmode=disable",
        pg_field("user"),
        pg_field("host"),
        pg_field("port")
    )
}

/// A direct (admin) connection to the test PostgreSQL.
pub async fn pg_admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg_conninfo(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
}

/// The throwaway MariaDB that `tests/run` started; fails loudly without it.
pub fn mysql_url() -> String {
    std::env::var("GATEHOUSE_TEST_MYSQL").expect(
        "GATEHOUSE_TEST_MYSQL is not set: run the integration tests with ./tests/run, which starts a throwaway MariaDB",
    )
}

pub fn mysql(limits: Limits) -> SourceConfig {
    let opts =
        mysql_async::Opts::from_url(&mysql_url()).expect("GATEHOUSE_TEST_MYSQL is a mysql:// URL");
    SourceConfig::Mysql(ServerSource {
        host: opts.ip_or_hostname().to_string(),
        port: Some(opts.tcp_port()),
        user: opts.user().unwrap_or("root").to_string(),
        database: opts.db_name().unwrap_or("test").to_string(),
        password_env: None,
        password_file: opts.pass().map(secret_file),
        password_credential: None,
        read_only: true,
        pool_size: 8,
        connect_timeout_secs: 5,
        tls: DbTls::default(),
        limits,
    })
}

/// A real SQL Server for the opt-in lane, as an ADO.NET connection string:
/// `server=tcp:HOST,PORT;user id=sa;password=...;database=master;TrustServerCertificate=true`.
pub fn mssql_ado() -> String {
    std::env::var("GATEHOUSE_TEST_MSSQL").expect(
        "GATEHOUSE_TEST_MSSQL is not set: the SQL Server lane needs a real server (see README, Testing)",
    )
}

/// The fields of an ADO.NET connection string, keys lower-cased.
fn ado_fields() -> BTreeMap<String, String> {
    mssql_ado()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

pub fn mssql(limits: Limits) -> SourceConfig {
    let f = ado_fields();
    let get = |keys: &[&str]| keys.iter().find_map(|k| f.get(*k).cloned());
    let server =
        get(&["server", "data source", "address"]).expect("server= in GATEHOUSE_TEST_MSSQL");
    let server = server.trim_start_matches("tcp:");
    let (host, port) = match server.split_once(',') {
        Some((h, p)) => (h.to_string(), Some(p.parse().expect("numeric port"))),
        None => (server.to_string(), None),
    };
    let trust = get(&["trustservercertificate"]).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    SourceConfig::Sqlserver(ServerSource {
        host,
        port,
        user: get(&["user id", "uid", "user"]).expect("user id= in GATEHOUSE_TEST_MSSQL"),
        database: get(&["database", "initial catalog"]).unwrap_or_else(|| "master".into()),
        password_env: None,
        password_file: get(&["password", "pwd"]).map(|p| secret_file(&p)),
        password_credential: None,
        // The lane's login is usually an administrator; read-only is tested
        // with a reader login of its own.
        read_only: false,
        pool_size: 8,
        connect_timeout_secs: 5,
        tls: DbTls {
            mode: if trust {
                gatehouse::config::agent::DbTlsMode::Require
            } else {
                gatehouse::config::agent::DbTlsMode::VerifyFull
            },
            ca: None,
        },
        limits,
    })
}

/// A direct (admin) connection to the lane's SQL Server.
pub async fn ms_admin() -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let config = tiberius::Config::from_ado_string(&mssql_ado()).expect("a valid ADO.NET string");
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .expect("reach the SQL Server of GATEHOUSE_TEST_MSSQL");
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("log in to the SQL Server of GATEHOUSE_TEST_MSSQL")
}

/// The server settings of a database server source, to alter in a test.
pub fn server(source: &mut SourceConfig) -> &mut ServerSource {
    match source {
        SourceConfig::Postgres(s) | SourceConfig::Mysql(s) | SourceConfig::Sqlserver(s) => s,
        SourceConfig::Sqlite(_) => panic!("not a database server source"),
    }
}

/// `source` with TLS to the database in `mode`, verified against `ca`.
pub fn with_tls(
    mut source: SourceConfig,
    mode: gatehouse::config::agent::DbTlsMode,
    ca: Option<PathBuf>,
) -> SourceConfig {
    let s = server(&mut source);
    (s.tls.mode, s.tls.ca) = (mode, ca);
    source
}

/// A direct (admin) connection to the test MariaDB.
pub async fn my_admin() -> mysql_async::Conn {
    mysql_async::Conn::from_url(mysql_url())
        .await
        .expect("connect to the test MariaDB")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

struct AgentSpec {
    id: String,
    sources: BTreeMap<String, SourceConfig>,
}

#[derive(Default)]
pub struct Builder {
    tenants: BTreeMap<String, Tenant>,
    agents: Vec<AgentSpec>,
    flight_tls: bool,
    audit: Option<gatehouse::config::agent::AuditConfig>,
    hub_audit: Option<gatehouse::config::AuditConfig>,
    provisioning: bool,
}

impl Builder {
    /// A tenant with one user (`user`, password [`PASSWORD`]).
    pub fn tenant(mut self, name: &str, user: &str) -> Self {
        let hash = gatehouse::auth::hash_password(PASSWORD).unwrap();
        self.tenants.insert(
            name.into(),
            Tenant {
                agents: vec![],
                default_source: None,
                users: BTreeMap::from([(
                    user.to_string(),
                    User {
                        password_hash: Some(hash),
                        ..User::default()
                    },
                )]),
                ..Tenant::default()
            },
        );
        self
    }

    /// Changes a tenant's settings (identity provider, roles, grants, users).
    pub fn configure(mut self, name: &str, change: impl FnOnce(&mut Tenant)) -> Self {
        change(self.tenants.get_mut(name).expect("tenant first"));
        self
    }

    pub fn agent(mut self, tenant: &str, id: &str, sources: Vec<(&str, SourceConfig)>) -> Self {
        self.tenants
            .get_mut(tenant)
            .expect("tenant first")
            .agents
            .push(id.into());
        self.agents.push(AgentSpec {
            id: id.into(),
            sources: sources
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
        });
        self
    }

    /// The hub keeps state in a SQLite file and serves the provisioning API.
    pub fn provisioning(mut self) -> Self {
        self.provisioning = true;
        self
    }

    /// The hub writes its audit trail as `audit` says.
    pub fn hub_audit(mut self, audit: gatehouse::config::AuditConfig) -> Self {
        self.hub_audit = Some(audit);
        self
    }

    /// Agents write their audit trail as `audit` says.
    pub fn agent_audit(mut self, audit: gatehouse::config::agent::AuditConfig) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Serve Flight SQL over TLS with the hub's certificate (dev CA, name `localhost`).
    pub fn flight_tls(mut self) -> Self {
        self.flight_tls = true;
        self
    }

    pub async fn start(self) -> Fixture {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::create(&dir.path().join("pki"), &["localhost".into()]).unwrap();
        let hub_cfg = HubConfig {
            flight: FlightListener {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls_cert: self.flight_tls.then(|| pki.hub_cert()),
                tls_key: self.flight_tls.then(|| pki.hub_key()),
                token_ttl_secs: 600,
            },
            tunnel: TunnelListener {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert: pki.hub_cert(),
                key: pki.hub_key(),
                client_ca: pki.ca_cert(),
            },
            tenants: self.tenants,
            audit: self.hub_audit,
            state: self
                .provisioning
                .then(|| gatehouse::config::hub::StateConfig {
                    url: format!("sqlite://{}", dir.path().join("hub-state.db").display()),
                }),
            admin: self.provisioning.then(|| {
                let chain = dir.path().join("admin-chain.pem");
                let mut pem = std::fs::read(pki.hub_cert()).unwrap();
                pem.extend(std::fs::read(pki.ca_cert()).unwrap());
                std::fs::write(&chain, pem).unwrap();
                gatehouse::config::hub::AdminListener {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    tls_chain: chain,
                    tls_key: pki.hub_key(),
                    client_ca_key: pki.ca_key(),
                    agent_cert_days: 30,
                }
            }),
        };
        let mut fx = Fixture {
            pki,
            hub_cfg,
            flight: "127.0.0.1:0".parse().unwrap(),
            tunnel: "127.0.0.1:0".parse().unwrap(),
            hub: None,
            agents: Vec::new(),
            registry: None,
            audit: self.audit,
            admin: None,
            _dir: dir,
        };
        fx.start_hub(None).await;
        let expected = self.agents.len();
        for a in self.agents {
            fx.start_agent(&a.id, a.sources);
        }
        fx.wait_agents(expected).await;
        fx
    }
}

pub struct Running {
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("stopped within 20 s")
            .unwrap();
    }
}

pub struct Fixture {
    pub pki: DevPki,
    pub hub_cfg: HubConfig,
    pub flight: SocketAddr,
    pub tunnel: SocketAddr,
    pub hub: Option<Running>,
    pub agents: Vec<Running>,
    registry: Option<std::sync::Arc<Registry>>,
    audit: Option<gatehouse::config::agent::AuditConfig>,
    /// The provisioning API, when the hub serves it.
    pub admin: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts the hub; with `ports`, on the given Flight and tunnel addresses.
    pub async fn start_hub(&mut self, ports: Option<(SocketAddr, SocketAddr)>) {
        let mut cfg = self.hub_cfg.clone();
        if let Some((flight, tunnel)) = ports {
            cfg.flight.listen = flight;
            cfg.tunnel.listen = tunnel;
        }
        let hub = Hub::build(cfg).await.unwrap();
        self.flight = hub.flight_addr();
        self.tunnel = hub.tunnel_addr();
        self.admin = hub.admin_addr();
        self.registry = Some(hub.registry());
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { hub.run(t).await.unwrap() });
        self.hub = Some(Running { token, task });
    }

    pub fn agent_config(&self, id: &str, sources: BTreeMap<String, SourceConfig>) -> AgentConfig {
        let (cert, key) = self.pki.issue_agent(id).unwrap();
        AgentConfig {
            hub: HubConnection {
                address: self.tunnel.to_string(),
                server_name: Some("localhost".into()),
                ca: self.pki.ca_cert(),
                cert,
                key,
                renew_before_days: None,
            },
            sources,
            drain_timeout_secs: 5,
            realtime_first: true,
            audit: self.audit.clone(),
        }
    }

    pub fn start_agent(&mut self, id: &str, sources: BTreeMap<String, SourceConfig>) {
        self.start_agent_with(self.agent_config(id, sources));
    }

    /// Starts an agent with its own configuration (e.g. an enrolled certificate).
    pub fn start_agent_with(&mut self, config: AgentConfig) {
        let agent = Agent::build(config).unwrap();
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { agent.run(t).await.unwrap() });
        self.agents.push(Running { token, task });
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().unwrap()
    }

    pub async fn wait_agents(&self, n: usize) {
        gatehouse::demo::wait_for_agents(self.registry(), n, Duration::from_secs(20))
            .await
            .unwrap();
    }

    pub async fn client(&self, user: &str) -> FlightSqlServiceClient<Channel> {
        let mut c = self.anonymous().await;
        c.handshake(user, PASSWORD).await.unwrap();
        c
    }

    pub async fn anonymous(&self) -> FlightSqlServiceClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.flight))
            .unwrap()
            .connect()
            .await
            .unwrap();
        FlightSqlServiceClient::new(ch)
    }

    pub async fn stop(mut self) {
        for a in self.agents.drain(..) {
            a.stop().await;
        }
        if let Some(h) = self.hub.take() {
            h.stop().await;
        }
    }
}

/// Runs a statement and collects every batch.
pub async fn query(
    c: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = c.execute(sql.to_string(), None).await?;
    let mut out = Vec::new();
    for ep in info.endpoint {
        let batches: Vec<RecordBatch> = c.do_get(ep.ticket.unwrap()).await?.try_collect().await?;
        out.extend(batches);
    }
    Ok(out)
}

/// All batches of a result as one.
pub fn one(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
}

/// The Arrow schema Flight SQL `GetTables` lists for one table.
pub async fn listed_schema(
    c: &mut FlightSqlServiceClient<Channel>,
    catalog: &str,
    db_schema: &str,
    table: &str,
) -> arrow::datatypes::Schema {
    use arrow::array::AsArray;
    let info = c
        .get_tables(arrow_flight::sql::CommandGetTables {
            catalog: Some(catalog.into()),
            db_schema_filter_pattern: Some(db_schema.into()),
            table_name_filter_pattern: Some(table.into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let b = one(&fetch(c, info).await);
    assert_eq!(
        b.num_rows(),
        1,
        "{catalog}.{db_schema}.{table} listed {} times",
        b.num_rows()
    );
    arrow::ipc::convert::try_schema_from_ipc_buffer(b.column(4).as_binary::<i32>().value(0))
        .unwrap()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// The gRPC code of a failed call.
pub fn code(e: &FlightError) -> tonic::Code {
    match e {
        FlightError::Tonic(s) => s.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

pub fn message(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// One tenant `acme` (user `alice`) whose agent `acme-1` serves the TPC-H SQLite file as `tpch`.
pub async fn demo() -> Fixture {
    Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-1", vec![("tpch", sqlite(tpch_db()))])
        .start()
        .await
}

/// Fetches every endpoint of a FlightInfo.
pub async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let batches: Vec<RecordBatch> = c
            .do_get(ep.ticket.unwrap())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        out.extend(batches);
    }
    out
}

/// A utf8 column of all batches as strings.
pub fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    use arrow::array::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts `sql` in reload mode and returns its result stream, unread.
pub async fn start_reload(
    c: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> arrow_flight::decode::FlightRecordBatchStream {
    c.set_header("x-gatehouse-mode", "reload");
    let info = c.execute(sql.to_string(), None).await.unwrap();
    c.do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
}
