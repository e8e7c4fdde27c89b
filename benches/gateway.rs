//! Gatehouse benchmark: TPC-H lineitem reload and realtime latency, side by
//! side in one run with the database's own ceiling and with ConnectorX.
//!
//! Run it with `benches/run` (it starts PostgreSQL and the Python venv).
//! Environment: GATEHOUSE_BENCH_PG (conninfo), GATEHOUSE_BENCH_PYTHON (python
//! with connectorx), GATEHOUSE_BENCH_SF (default 1), GATEHOUSE_BENCH_RUNS (default 3).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

const REALTIME_SQL: &str = "SELECT l_returnflag, l_linestatus, count(*), sum(l_extendedprice) FROM lineitem WHERE l_orderkey BETWEEN {k} AND {k} + 1000 GROUP BY 1, 2";

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set; run benches/run"))
}

async fn pg() -> Result<tokio_postgres::Client> {
    let (c, conn) =
        tokio_postgres::connect(&env("GATEHOUSE_BENCH_PG")?, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

/// Loads lineitem at `sf` with the TPC-H DDL (decimal(15,2), char, varchar, date).
async fn ensure_lineitem(sf: f64) -> Result<u64> {
    let c = pg().await?;
    let expected = c.query_opt("SELECT count(*) FROM lineitem", &[]).await;
    if let Ok(Some(row)) = expected {
        let n: i64 = row.get(0);
        if n > 0 {
            return Ok(n as u64);
        }
    }
    eprintln!("loading TPC-H lineitem at SF {sf} into PostgreSQL ...");
    c.batch_execute(
        "DROP TABLE IF EXISTS lineitem;
         CREATE TABLE lineitem (l_orderkey bigint NOT NULL, l_partkey bigint NOT NULL, l_suppkey bigint NOT NULL,
           l_linenumber integer NOT NULL, l_quantity decimal(15,2) NOT NULL, l_extendedprice decimal(15,2) NOT NULL,
           l_discount decimal(15,2) NOT NULL, l_tax decimal(15,2) NOT NULL, l_returnflag char(1) NOT NULL,
           l_linestatus char(1) NOT NULL, l_shipdate date NOT NULL, l_commitdate date NOT NULL,
           l_receiptdate date NOT NULL, l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL,
           l_comment varchar(44) NOT NULL);",
    )
    .await?;
    let sink = c
        .copy_in("COPY lineitem FROM STDIN WITH (FORMAT text, DELIMITER '|')")
        .await?;
    futures::pin_mut!(sink);
    let mut buf = bytes::BytesMut::with_capacity(1 << 20);
    for row in tpchgen::generators::LineItemGenerator::new(sf, 1, 1).iter() {
        let line = row.to_string();
        buf.extend_from_slice(line.trim_end_matches('|').as_bytes());
        buf.extend_from_slice(b"\n");
        if buf.len() > 1 << 20 {
            futures::SinkExt::send(&mut sink, buf.split().freeze()).await?;
        }
    }
    futures::SinkExt::send(&mut sink, buf.freeze()).await?;
    let n = sink.finish().await?;
    c.batch_execute("CREATE INDEX lineitem_orderkey ON lineitem (l_orderkey)")
        .await?;
    c.batch_execute("VACUUM ANALYZE lineitem").await?;
    Ok(n)
}

struct Procs {
    hub: Child,
    agent: Child,
    /// A second agent with `realtime_first = false` (source `pg2`, same
    /// database): the realtime measurement under a reload runs through both.
    plain: Child,
    flight: String,
    _dir: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.plain.kill();
        let _ = self.plain.wait();
        let _ = self.hub.kill();
        let _ = self.agent.wait();
        let _ = self.hub.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `gatehouse hub` and `gatehouse agent` as separate processes.
fn start_gateway() -> Result<Procs> {
    let exe = env!("CARGO_BIN_EXE_gatehouse");
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let run = |args: &[&str]| -> Result<()> {
        let st = Command::new(exe)
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("gatehouse {args:?} failed");
        }
        Ok(())
    };
    let pki = d.join("pki");
    run(&["hub", "dev-ca", "--out", pki.to_str().unwrap()])?;
    for id in ["bench-agent", "bench-agent-2"] {
        run(&[
            "hub",
            "dev-agent-cert",
            "--ca-dir",
            pki.to_str().unwrap(),
            "--agent-id",
            id,
        ])?;
    }
    let (flight_port, tunnel_port) = (free_port(), free_port());
    let conninfo = env("GATEHOUSE_BENCH_PG")?;
    let field = |k: &str| {
        conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_default()
    };
    std::fs::write(
        d.join("hub.toml"),
        format!(
            r#"
[flight]
listen = "127.0.0.1:{flight_port}"
[tunnel]
listen = "127.0.0.1:{tunnel_port}"
cert = "pki/hub.pem"
key = "pki/hub.key"
client_ca = "pki/ca.pem"
[tenants.bench]
agents = ["bench-agent", "bench-agent-2"]
default_source = "pg"
[tenants.bench.users.bench]
password_env = "GATEHOUSE_BENCH_PASSWORD"
"#
        ),
    )?;
    // MariaDB, when benches/run started one: source `my` on the first agent.
    let mysql_source = match std::env::var("GATEHOUSE_BENCH_MYSQL") {
        Ok(url) => {
            let o = mysql_async::Opts::from_url(&url)?;
            format!(
                "[sources.my]\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\ndatabase = \"{}\"\npassword_env = \"GATEHOUSE_BENCH_MYSQL_PASSWORD\"\n",
                o.ip_or_hostname(),
                o.tcp_port(),
                o.user().unwrap_or("root"),
                o.db_name().unwrap_or("test"),
            )
        }
        Err(_) => String::new(),
    };
    for (file, id, source, realtime_first, extra) in [
        (
            "agent.toml",
            "bench-agent",
            "pg",
            true,
            mysql_source.as_str(),
        ),
        ("agent2.toml", "bench-agent-2", "pg2", false, ""),
    ] {
        std::fs::write(
            d.join(file),
            format!(
                r#"
realtime_first = {realtime_first}
[hub]
address = "127.0.0.1:{tunnel_port}"
server_name = "localhost"
ca = "pki/ca.pem"
cert = "pki/agent-{id}.pem"
key = "pki/agent-{id}.key"
[sources.{source}]
kind = "postgres"
host = "{}"
port = {}
user = "{}"
database = "{}"
{extra}"#,
                field("host"),
                field("port"),
                field("user"),
                field("dbname")
            ),
        )?;
    }
    let spawn = |role: &str, config: &str| -> Result<Child> {
        Ok(Command::new(exe)
            .args([
                role,
                "--config",
                d.join(format!("{config}.toml")).to_str().unwrap(),
            ])
            .env("GATEHOUSE_BENCH_PASSWORD", "bench")
            .env(
                "GATEHOUSE_BENCH_MYSQL_PASSWORD",
                std::env::var("GATEHOUSE_BENCH_MYSQL")
                    .ok()
                    .and_then(|u| mysql_async::Opts::from_url(&u).ok())
                    .and_then(|o| o.pass().map(str::to_string))
                    .unwrap_or_default(),
            )
            .env(
                "RUST_LOG",
                std::env::var("GATEHOUSE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                std::env::temp_dir().join(format!("gatehouse-bench-{config}.log")),
            )?)
            .spawn()?)
    };
    let hub = spawn("hub", "hub")?;
    let agent = spawn("agent", "agent")?;
    let plain = spawn("agent", "agent2")?;
    Ok(Procs {
        hub,
        agent,
        plain,
        flight: format!("http://127.0.0.1:{flight_port}"),
        _dir: dir,
    })
}

async fn client(p: &Procs) -> Result<FlightSqlServiceClient<Channel>> {
    let ch = Channel::from_shared(p.flight.clone())?.connect().await?;
    let mut c = FlightSqlServiceClient::new(ch);
    c.handshake("bench", "bench").await?;
    Ok(c)
}

async fn wait_ready(p: &Procs) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = client(p).await
            && c.execute("SELECT 1".into(), None).await.is_ok()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the gateway did not come up");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reload through the gateway: rows, Flight bytes received, seconds.
async fn gateway_reload(p: &Procs, compression: &str) -> Result<(u64, u64, f64)> {
    gateway_reload_from(&p.flight, compression, "pg", &AtomicU64::new(0)).await
}

/// `progress` counts rows as they arrive.
async fn gateway_reload_from(
    flight: &str,
    compression: &str,
    source: &str,
    progress: &AtomicU64,
) -> Result<(u64, u64, f64)> {
    let ch = Channel::from_shared(flight.to_string())?.connect().await?;
    let mut c = FlightSqlServiceClient::new(ch);
    c.handshake("bench", "bench").await?;
    c.set_header("x-gatehouse-source", source);
    c.set_header("x-gatehouse-mode", "reload");
    c.set_header("x-gatehouse-compression", compression);
    let t = Instant::now();
    let info = c.execute("SELECT * FROM lineitem".into(), None).await?;
    let ticket = info.endpoint[0].ticket.clone().context("ticket")?;
    let ch = Channel::from_shared(flight.to_string())?.connect().await?;
    let mut raw = FlightServiceClient::new(ch).max_decoding_message_size(64 << 20);
    let mut req = tonic::Request::new(ticket);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", c.token().context("token")?).parse()?,
    );
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    let stream = raw.do_get(req).await?.into_inner().map(move |fd| {
        if let Ok(fd) = &fd {
            counter.fetch_add(
                (fd.data_body.len() + fd.data_header.len()) as u64,
                Ordering::Relaxed,
            );
        }
        fd.map_err(arrow_flight::error::FlightError::from)
    });
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
    let mut rows = 0u64;
    while let Some(b) = batches.try_next().await? {
        rows += b.num_rows() as u64;
        progress.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
    }
    Ok((
        rows,
        bytes.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
    ))
}

/// Runs a command-line client and drains its output: (bytes, seconds).
fn drain(cmd: &mut Command, what: &str) -> Result<(u64, f64)> {
    let t = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if !child.wait()?.success() {
        bail!("{what} failed");
    }
    Ok((total, t.elapsed().as_secs_f64()))
}

/// The database's ceiling: psql COPY to a pipe we drain.
fn psql_copy() -> Result<(u64, f64)> {
    drain(
        Command::new("psql").args([&env("GATEHOUSE_BENCH_PG")?, "-c", "COPY lineitem TO STDOUT"]),
        "psql",
    )
}

/// What PostgreSQL can deliver to a Rust client on each wire path, drained
/// without building Arrow: (extended protocol, text COPY, binary COPY) in rows/s.
async fn source_paths(rows: u64) -> Result<(f64, f64, f64)> {
    let c = pg().await?;
    let t = Instant::now();
    let stream = c
        .query_raw("SELECT * FROM lineitem", std::iter::empty::<i32>())
        .await?;
    futures::pin_mut!(stream);
    let mut n = 0u64;
    while let Some(r) = stream.next().await {
        r?;
        n += 1;
    }
    if n != rows {
        bail!("extended protocol read {n} rows");
    }
    let extended = rows as f64 / t.elapsed().as_secs_f64();
    let copy = |sql: &'static str| {
        let c = &c;
        async move {
            let t = Instant::now();
            let s = c.copy_out(sql).await?;
            futures::pin_mut!(s);
            while let Some(b) = s.next().await {
                b?;
            }
            Ok::<f64, anyhow::Error>(rows as f64 / t.elapsed().as_secs_f64())
        }
    };
    let text = copy("COPY lineitem TO STDOUT").await?;
    let binary = copy("COPY lineitem TO STDOUT (FORMAT binary)").await?;
    Ok((extended, text, binary))
}

/// ConnectorX reading the table straight from PostgreSQL into Arrow.
fn connectorx() -> Result<(u64, f64)> {
    let conninfo = env("GATEHOUSE_BENCH_PG")?;
    let field = |k: &str| {
        conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_default()
    };
    let url = format!(
        "postgresql://{}@{}:{}/{}",
        field("user"),
        field("host"),
        field("port"),
        field("dbname")
    );
    connectorx_url(&url)
}

/// ConnectorX reading lineitem from `url` into Arrow: (rows, seconds).
fn connectorx_url(url: &str) -> Result<(u64, f64)> {
    let script = format!(
        "import time, connectorx as cx\nt=time.perf_counter()\ntb=cx.read_sql('{url}', 'SELECT * FROM lineitem', return_type='arrow')\nprint(tb.num_rows, time.perf_counter()-t)"
    );
    let out = Command::new(env("GATEHOUSE_BENCH_PYTHON")?)
        .args(["-c", &script])
        .output()?;
    if !out.status.success() {
        bail!(
            "connectorx failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace();
    Ok((
        it.next().context("rows")?.parse()?,
        it.next().context("secs")?.parse()?,
    ))
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 0.5)
}

/// Realtime latencies in ms, (straight to PostgreSQL, through the gateway),
/// alternating query by query so both see the same load at the same time.
async fn realtime(p: &Procs, n: usize, source: &str) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut c = client(p).await?;
    c.set_header("x-gatehouse-source", source);
    let direct = pg().await?;
    let (mut d, mut g) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let sql = REALTIME_SQL.replace("{k}", &((i * 7919) % 6_000_000).to_string());
        let t = Instant::now();
        direct.simple_query(&sql).await?;
        d.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let info = c.execute(sql, None).await?;
        let _: Vec<_> = c
            .do_get(info.endpoint[0].ticket.clone().context("ticket")?)
            .await?
            .try_collect()
            .await?;
        g.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((d, g))
}

// ---- MariaDB ----

async fn my() -> Result<mysql_async::Conn> {
    Ok(mysql_async::Conn::from_url(env("GATEHOUSE_BENCH_MYSQL")?).await?)
}

/// Loads lineitem into MariaDB (same DDL as PostgreSQL) unless it is there.
async fn ensure_lineitem_mysql(sf: f64) -> Result<u64> {
    use mysql_async::prelude::Queryable;
    let mut c = my().await?;
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM lineitem")
        .await
        .unwrap_or(None);
    if let Some(n) = n.filter(|n| *n > 0) {
        return Ok(n);
    }
    eprintln!("loading TPC-H lineitem at SF {sf} into MariaDB ...");
    c.query_drop(
        "DROP TABLE IF EXISTS lineitem;
         CREATE TABLE lineitem (l_orderkey bigint NOT NULL, l_partkey bigint NOT NULL, l_suppkey bigint NOT NULL,
           l_linenumber integer NOT NULL, l_quantity decimal(15,2) NOT NULL, l_extendedprice decimal(15,2) NOT NULL,
           l_discount decimal(15,2) NOT NULL, l_tax decimal(15,2) NOT NULL, l_returnflag char(1) NOT NULL,
           l_linestatus char(1) NOT NULL, l_shipdate date NOT NULL, l_commitdate date NOT NULL,
           l_receiptdate date NOT NULL, l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL,
           l_comment varchar(44) NOT NULL, KEY lineitem_orderkey (l_orderkey)) CHARACTER SET utf8mb4",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("lineitem.tbl");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for row in tpchgen::generators::LineItemGenerator::new(sf, 1, 1).iter() {
            writeln!(w, "{}", row.to_string().trim_end_matches('|'))?;
        }
    }
    let st = Command::new("mariadb")
        .args(mysql_cli_args()?)
        .arg("--local-infile=1")
        .arg("-e")
        .arg(format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE lineitem FIELDS TERMINATED BY '|'",
            file.display()
        ))
        .status()?;
    if !st.success() {
        bail!("LOAD DATA into MariaDB failed");
    }
    c.query_drop("ANALYZE TABLE lineitem").await?;
    let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM lineitem").await?;
    n.context("count")
}

/// `mariadb` command-line arguments for GATEHOUSE_BENCH_MYSQL.
fn mysql_cli_args() -> Result<Vec<String>> {
    let opts = mysql_async::Opts::from_url(&env("GATEHOUSE_BENCH_MYSQL")?)?;
    Ok(vec![
        "--no-defaults".into(),
        format!("--host={}", opts.ip_or_hostname()),
        format!("--port={}", opts.tcp_port()),
        format!("--user={}", opts.user().unwrap_or("root")),
        format!("--password={}", opts.pass().unwrap_or("")),
        opts.db_name().unwrap_or("test").into(),
    ])
}

/// The command-line client's ceiling: `mariadb --quick --batch` (rows
/// streamed, tab-separated) into a pipe we drain.
fn mysql_cli_dump() -> Result<(u64, f64)> {
    drain(
        Command::new("mariadb").args(mysql_cli_args()?).args([
            "--quick",
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT * FROM lineitem",
        ]),
        "mariadb",
    )
}

/// MariaDB: the gateway against the `mariadb` client and ConnectorX, interleaved.
async fn mysql_reloads(procs: &Procs, runs: usize, sf: f64) -> Result<()> {
    let rows = ensure_lineitem_mysql(sf).await?;
    let url = env("GATEHOUSE_BENCH_MYSQL")?;
    let (mut cli, mut cx, mut gw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cli_bytes, mut gw_bytes) = (0, 0);
    for run in 0..runs {
        let (b, s) = mysql_cli_dump()?;
        cli_bytes = b;
        cli.push(rows as f64 / s);
        let (r, s) = connectorx_url(&url)?;
        if r != rows {
            bail!("connectorx read {r} rows from MariaDB, expected {rows}");
        }
        cx.push(rows as f64 / s);
        let (r, b, s) =
            gateway_reload_from(&procs.flight, "none", "my", &AtomicU64::new(0)).await?;
        if r != rows {
            bail!("the gateway returned {r} rows from MariaDB, expected {rows}");
        }
        gw_bytes = b;
        gw.push(r as f64 / s);
        eprintln!(
            "MariaDB run {run}: mariadb client {:.0} rows/s, connectorx {:.0} rows/s, gateway {:.0} rows/s",
            cli[run], cx[run], gw[run]
        );
    }
    let (cli_m, cx_m, gw_m) = (median(cli), median(cx), median(gw));
    println!("| MariaDB reload path | rows/s (median of {runs}) | vs mariadb client | bytes |");
    println!("|---|---|---|---|");
    println!(
        "| `mariadb --quick --batch -e \"SELECT * FROM lineitem\"` | {cli_m:.0} | 1.00x | {cli_bytes} |"
    );
    println!(
        "| ConnectorX `read_sql(\"mysql://...\", return_type=\"arrow\")` | {cx_m:.0} | {:.2}x | - |",
        cx_m / cli_m
    );
    println!(
        "| Gatehouse agent -> QUIC -> hub -> Flight client | {gw_m:.0} | {:.2}x | {gw_bytes} Arrow IPC |",
        gw_m / cli_m
    );
    println!();
    Ok(())
}

/// The reload comparison: prints its table and returns the gateway's median
/// rows/s.
async fn reloads(procs: &Procs, runs: usize, rows: u64) -> Result<f64> {
    let (mut psql, mut cx, mut gw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut psql_bytes, mut gw_bytes, mut gw_rows) = (0, 0, 0);
    for run in 0..runs {
        let (b, s) = psql_copy()?;
        psql_bytes = b;
        psql.push(rows as f64 / s);
        let (r, s) = connectorx()?;
        if r != rows {
            bail!("connectorx read {r} rows, expected {rows}");
        }
        cx.push(rows as f64 / s);
        let (r, b, s) = gateway_reload(procs, "none").await?;
        gw_rows = r;
        gw_bytes = b;
        gw.push(r as f64 / s);
        eprintln!(
            "run {run}: psql {:.0} rows/s, connectorx {:.0} rows/s, gateway {:.0} rows/s",
            psql[run], cx[run], gw[run]
        );
    }
    if gw_rows != rows {
        bail!("the gateway returned {gw_rows} rows, expected {rows}");
    }
    let (_, zstd_bytes, zstd_s) = gateway_reload(procs, "zstd").await?;
    let (_, lz4_bytes, lz4_s) = gateway_reload(procs, "lz4").await?;
    let (ext, text, binary) = source_paths(rows).await?;
    let agent_rss = peak_rss_mb(procs.agent.id());
    let hub_rss = peak_rss_mb(procs.hub.id());
    let (psql_m, cx_m, gw_m) = (median(psql), median(cx), median(gw));
    println!("| reload path | rows/s (median of {runs}) | vs psql COPY | bytes |");
    println!("|---|---|---|---|");
    println!("| psql `COPY lineitem TO STDOUT` (text) | {psql_m:.0} | 1.00x | {psql_bytes} |");
    println!(
        "| ConnectorX `read_sql(..., return_type=\"arrow\")` | {cx_m:.0} | {:.2}x | - |",
        cx_m / psql_m
    );
    println!(
        "| Gatehouse agent -> QUIC -> hub -> Flight client | {gw_m:.0} | {:.2}x | {gw_bytes} Arrow IPC ({:.1} B/row) |",
        gw_m / psql_m,
        gw_bytes as f64 / rows as f64
    );
    println!(
        "| Gatehouse, LZ4 IPC compression | {:.0} | {:.2}x | {lz4_bytes} ({:.1} B/row) |",
        rows as f64 / lz4_s,
        rows as f64 / lz4_s / psql_m,
        lz4_bytes as f64 / rows as f64
    );
    println!(
        "| Gatehouse, ZSTD IPC compression | {:.0} | {:.2}x | {zstd_bytes} ({:.1} B/row) |",
        rows as f64 / zstd_s,
        rows as f64 / zstd_s / psql_m,
        zstd_bytes as f64 / rows as f64
    );
    println!();
    println!(
        "PostgreSQL wire paths into a Rust client, drained without building Arrow (one run): extended protocol (binary rows, what the agent uses) {ext:.0} rows/s, text COPY {text:.0} rows/s, binary COPY {binary:.0} rows/s"
    );
    println!();
    println!("Peak RSS (VmHWM) after all reloads: agent {agent_rss:.1} MB, hub {hub_rss:.1} MB");
    println!();
    Ok(gw_m)
}

#[tokio::main]
async fn main() -> Result<()> {
    let sf: f64 = std::env::var("GATEHOUSE_BENCH_SF")
        .unwrap_or_else(|_| "1".into())
        .parse()?;
    // 0 runs: only the realtime measurements.
    let runs: usize = std::env::var("GATEHOUSE_BENCH_RUNS")
        .unwrap_or_else(|_| "3".into())
        .parse()?;
    let rows = ensure_lineitem(sf).await?;
    let procs = start_gateway()?;
    wait_ready(&procs).await?;
    eprintln!("lineitem: {rows} rows; {runs} runs of each path, interleaved");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "## Gatehouse benchmark (TPC-H lineitem SF {sf}, {rows} rows; {} cores, {cpu})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    // GATEHOUSE_BENCH_ONLY=postgres|mariadb|realtime runs one part.
    let only = std::env::var("GATEHOUSE_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let gw_m = if runs > 0 && part("postgres") {
        Some(reloads(&procs, runs, rows).await?)
    } else {
        None
    };
    if std::env::var("GATEHOUSE_BENCH_MYSQL").is_ok() && part("mariadb") {
        mysql_reloads(&procs, runs.max(1), sf).await?;
    }
    if !part("realtime") {
        return Ok(());
    }
    let n = 1000;
    let (direct, idle) = realtime(&procs, n, "pg").await?;
    // A reload loop on its own thread and runtime, so the measuring client
    // below is not queued behind the reload's decoding in this process;
    // then realtime queries through the same agent, alternating with the
    // same query straight to PostgreSQL.
    let procs = &procs;
    let under_reload = |source: &'static str| async move {
        let stop = Arc::new(AtomicBool::new(false));
        let flight = procs.flight.clone();
        let s = stop.clone();
        let progress = Arc::new(AtomicU64::new(0));
        let seen = progress.clone();
        let bg = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                while !s.load(Ordering::Relaxed) {
                    let _ = gateway_reload_from(&flight, "none", source, &seen).await;
                }
            })
        });
        eprintln!("measuring realtime queries on {source} with a reload running");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (t, before) = (Instant::now(), progress.load(Ordering::Relaxed));
        let measured = realtime(procs, n, source).await;
        let reload_rate =
            (progress.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let _ = bg.join();
        measured.map(|(direct, gateway)| (direct, gateway, reload_rate))
    };
    let (direct_busy, busy, reload_busy) = under_reload("pg").await?;
    let (direct_plain, plain, reload_plain) = under_reload("pg2").await?;
    let (agent_cpu, hub_cpu) = (cpu_seconds(procs.agent.id()), cpu_seconds(procs.hub.id()));
    let pct = |v: &Vec<f64>, p: f64| percentile(&mut v.clone(), p);
    println!(
        "CPU seconds used over the whole benchmark ({} full reloads plus the realtime runs): agent {agent_cpu:.1} s, hub {hub_cpu:.1} s",
        if runs > 0 { runs + 2 } else { 0 }
    );
    println!();
    println!("| realtime ({n} queries each, ms) | p50 | p99 | reload meanwhile, rows/s |");
    println!("|---|---|---|---|");
    for (label, v, rate) in [
        ("straight to PostgreSQL, idle", &direct, None),
        ("through Gatehouse, idle", &idle, None),
        (
            "straight to PostgreSQL, one reload running",
            &direct_busy,
            None,
        ),
        (
            "through Gatehouse, one reload running",
            &busy,
            Some(reload_busy),
        ),
        (
            "straight to PostgreSQL, one reload running (second pass)",
            &direct_plain,
            None,
        ),
        (
            "through Gatehouse with `realtime_first = false`, one reload running",
            &plain,
            Some(reload_plain),
        ),
    ] {
        let rate = rate.map_or("-".to_string(), |r: f64| format!("{r:.0}"));
        println!(
            "| {label} | {:.2} | {:.2} | {rate} |",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    println!();
    println!(
        "realtime p99 with a reload / idle: {:.2}x (realtime_first = false: {:.2}x); gateway p99 / PostgreSQL's own p99 under the same reload: {:.2}x (false: {:.2}x)",
        pct(&busy, 0.99) / pct(&idle, 0.99),
        pct(&plain, 0.99) / pct(&idle, 0.99),
        pct(&busy, 0.99) / pct(&direct_busy, 0.99),
        pct(&plain, 0.99) / pct(&direct_plain, 0.99),
    );
    if let Some(alone) = gw_m {
        println!();
        println!(
            "the reload while realtime queries ran back to back: {:.2}x its rate alone (realtime_first = false: {:.2}x)",
            reload_busy / alone,
            reload_plain / alone
        );
    }
    Ok(())
}
