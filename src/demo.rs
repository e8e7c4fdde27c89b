//! `gatehouse demo`: hub and agent in one process over a real QUIC tunnel on
//! loopback, serving an embedded SQLite database with the TPC-H tables.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::agent::Agent;
use crate::config::agent::{AgentConfig, HubConnection, Limits, SourceConfig, SqliteSource};
use crate::config::hub::{FlightListener, HubConfig, Tenant, TunnelListener, User};
use crate::hub::Hub;
use crate::transport::tls::DevPki;

pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo";
pub const DEMO_TENANT: &str = "demo";
pub const DEMO_AGENT: &str = "demo-agent";
pub const DEMO_SOURCE: &str = "tpch";
pub const SCALE_FACTOR: f64 = 0.01;

/// Creates the TPC-H tables at `sf` in a new SQLite file.
pub fn generate_tpch(path: &Path, sf: f64) -> anyhow::Result<()> {
    use tpchgen::generators::*;
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = rusqlite::Connection::open(&tmp)?;
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")?;
    let tx = conn.transaction()?;
    load(
        &tx,
        "region",
        "r_regionkey INTEGER, r_name TEXT, r_comment TEXT",
        RegionGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "nation",
        "n_nationkey INTEGER, n_name TEXT, n_regionkey INTEGER, n_comment TEXT",
        NationGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "supplier",
        "s_suppkey INTEGER, s_name TEXT, s_address TEXT, s_nationkey INTEGER, s_phone TEXT, s_acctbal DECIMAL(15,2), s_comment TEXT",
        SupplierGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "customer",
        "c_custkey INTEGER, c_name TEXT, c_address TEXT, c_nationkey INTEGER, c_phone TEXT, c_acctbal DECIMAL(15,2), c_mktsegment TEXT, c_comment TEXT",
        CustomerGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "part",
        "p_partkey INTEGER, p_name TEXT, p_mfgr TEXT, p_brand TEXT, p_type TEXT, p_size INTEGER, p_container TEXT, p_retailprice DECIMAL(15,2), p_comment TEXT",
        PartGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "partsupp",
        "ps_partkey INTEGER, ps_suppkey INTEGER, ps_availqty INTEGER, ps_supplycost DECIMAL(15,2), ps_comment TEXT",
        PartSuppGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "orders",
        "o_orderkey INTEGER, o_custkey INTEGER, o_orderstatus TEXT, o_totalprice DECIMAL(15,2), o_orderdate DATE, o_orderpriority TEXT, o_clerk TEXT, o_shippriority INTEGER, o_comment TEXT",
        OrderGenerator::new(sf, 1, 1).iter(),
    )?;
    load(
        &tx,
        "lineitem",
        "l_orderkey INTEGER, l_partkey INTEGER, l_suppkey INTEGER, l_linenumber INTEGER, l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag TEXT, l_linestatus TEXT, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, l_shipmode TEXT, l_comment TEXT",
        LineItemGenerator::new(sf, 1, 1).iter(),
    )?;
    tx.execute_batch("CREATE INDEX lineitem_orderkey ON lineitem(l_orderkey);")?;
    tx.commit()?;
    drop(conn);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Inserts rows given as TPC-H `.tbl` lines (`a|b|c|`).
fn load<T: Display>(
    tx: &rusqlite::Transaction,
    table: &str,
    columns: &str,
    rows: impl Iterator<Item = T>,
) -> anyhow::Result<()> {
    // Columns are separated by ", " (DECIMAL(15,2) has a bare comma).
    let ncols = columns.split(", ").count();
    tx.execute_batch(&format!("CREATE TABLE {table} ({columns});"))?;
    let placeholders = vec!["?"; ncols].join(",");
    let mut stmt = tx.prepare(&format!("INSERT INTO {table} VALUES ({placeholders})"))?;
    for row in rows {
        let line = row.to_string();
        let fields: Vec<&str> = line.trim_end_matches('|').split('|').collect();
        if fields.len() != ncols {
            bail!(
                "{table}: generator produced {} fields, expected {ncols}",
                fields.len()
            );
        }
        stmt.execute(rusqlite::params_from_iter(fields))?;
    }
    Ok(())
}

/// Hub and agent configurations for a demo (or a test) in `dir`.
pub fn configs(
    dir: &Path,
    listen: SocketAddr,
    db: PathBuf,
) -> anyhow::Result<(HubConfig, AgentConfig)> {
    let pki = DevPki::create(&dir.join("pki"), &["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = pki.issue_agent(DEMO_AGENT)?;
    let user = User {
        password_hash: Some(
            crate::auth::hash_password(DEMO_PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        password_env: None,
        roles: Vec::new(),
    };
    let hub = HubConfig {
        flight: FlightListener {
            listen,
            tls_cert: None,
            tls_key: None,
            token_ttl_secs: 3600,
        },
        tunnel: TunnelListener {
            listen: "127.0.0.1:0".parse()?,
            cert: pki.hub_cert(),
            key: pki.hub_key(),
            client_ca: pki.ca_cert(),
        },
        tenants: BTreeMap::from([(
            DEMO_TENANT.to_string(),
            Tenant {
                agents: vec![DEMO_AGENT.into()],
                default_source: Some(DEMO_SOURCE.into()),
                users: BTreeMap::from([(DEMO_USER.to_string(), user)]),
                ..Tenant::default()
            },
        )]),
        audit: None,
        state: None,
        admin: None,
    };
    let agent = AgentConfig {
        hub: HubConnection {
            address: "127.0.0.1:0".into(),
            server_name: Some("localhost".into()),
            ca: pki.ca_cert(),
            cert,
            key,
            renew_before_days: None,
        },
        sources: BTreeMap::from([(
            DEMO_SOURCE.to_string(),
            SourceConfig::Sqlite(SqliteSource {
                path: db,
                read_only: true,
                limits: Limits::default(),
            }),
        )]),
        drain_timeout_secs: 5,
        realtime_first: true,
        audit: None,
    };
    Ok((hub, agent))
}

/// Waits until `n` agents are connected.
pub async fn wait_for_agents(
    registry: &crate::hub::Registry,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while registry.count() < n {
        if start.elapsed() > timeout {
            bail!("the agent did not connect within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs one statement through Flight SQL and collects the batches.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let info = client.execute(sql.to_string(), None).await?;
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.context("endpoint without ticket")?;
        let batches: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
        out.extend(batches);
    }
    Ok(out)
}

pub async fn run(args: crate::cli::DemoArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let db = dir.join("tpch.sqlite");
    if !db.exists() {
        let t = Instant::now();
        generate_tpch(&db, SCALE_FACTOR).context("generating the TPC-H demo data")?;
        println!(
            "Generated TPC-H at scale factor {SCALE_FACTOR} into {} in {:.1?}",
            db.display(),
            t.elapsed()
        );
    }
    let (hub_cfg, mut agent_cfg) = configs(&dir, args.listen, db)?;
    let hub = Hub::build(hub_cfg).await.context("starting the hub")?;
    agent_cfg.hub.address = hub.tunnel_addr().to_string();
    let agent = Agent::build(agent_cfg).context("starting the agent")?;
    let registry = hub.registry();
    let flight = hub.flight_addr();
    let tunnel = hub.tunnel_addr();

    crate::shutdown::run_until_signal(|shutdown: CancellationToken| async move {
        let hub_task = hub.run(shutdown.clone());
        let agent_task = agent.run(shutdown.clone());
        let show = async {
            let r = showcase(&registry, flight, tunnel, args.once).await;
            if args.once || r.is_err() {
                shutdown.cancel();
            }
            r
        };
        let (h, a, s) = tokio::join!(hub_task, agent_task, show);
        h?;
        a?;
        s
    })
    .await
}

async fn showcase(
    registry: &crate::hub::Registry,
    flight: SocketAddr,
    tunnel: SocketAddr,
    once: bool,
) -> anyhow::Result<()> {
    wait_for_agents(registry, 1, Duration::from_secs(10)).await?;
    println!();
    println!("Gatehouse demo: hub and agent connected over QUIC (tunnel on udp/{tunnel}).");
    println!(
        "Arrow Flight SQL endpoint: grpc://{flight}   user: {DEMO_USER}   password: {DEMO_PASSWORD}"
    );
    println!(
        "Catalog (data source): {DEMO_SOURCE}; tables: lineitem, orders, customer, part, partsupp, supplier, nation, region"
    );
    println!();
    println!("  python: import adbc_driver_flightsql.dbapi as f");
    println!(
        "          c = f.connect(\"grpc://{flight}\", autocommit=True, db_kwargs={{\"username\": \"demo\", \"password\": \"demo\"}})"
    );
    println!(
        "          cur = c.cursor(); cur.execute(\"SELECT * FROM nation\"); print(cur.fetch_arrow_table())"
    );
    println!();

    let channel = Channel::from_shared(format!("http://{flight}"))?
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(DEMO_USER, DEMO_PASSWORD).await?;

    // A chart-sized query: a filter on an indexed column and a small aggregate.
    let realtime = "SELECT l_shipmode, count(*) AS n, round(sum(l_extendedprice), 2) AS revenue FROM lineitem WHERE l_orderkey BETWEEN 1000 AND 5000 GROUP BY 1 ORDER BY 1";
    let t = Instant::now();
    let batches = query(&mut client, realtime).await?;
    println!("realtime: {realtime}");
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!(
        "realtime query returned {} rows in {:.1?}",
        rows(&batches),
        t.elapsed()
    );
    println!();

    client.set_header(crate::hub::HEADER_MODE, "reload");
    let t = Instant::now();
    let batches = query(&mut client, "SELECT * FROM lineitem").await?;
    let elapsed = t.elapsed();
    let n = rows(&batches);
    println!(
        "reload: SELECT * FROM lineitem -> {n} rows, {} columns, {} batches in {elapsed:.1?} ({:.0} rows/s)",
        batches.first().map(|b| b.num_columns()).unwrap_or(0),
        batches.len(),
        n as f64 / elapsed.as_secs_f64()
    );
    if !once {
        println!();
        println!("Serving until Ctrl-C.");
    }
    Ok(())
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}
