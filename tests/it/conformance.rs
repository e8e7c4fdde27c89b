//! The conformance suite every database connector passes, run against the
//! real PostgreSQL and MariaDB that `tests/run` starts: NULLs, empty results,
//! huge results in bounded batches, the database's own errors with clear
//! codes, cancellation in the server, limits and read-only sessions. The
//! SQL Server copies are the opt-in lane: ignored unless run with
//! `--ignored` against the real server named by `GATEHOUSE_TEST_MSSQL`.

use std::time::Duration;

use arrow::datatypes::DataType;
use gatehouse::config::agent::{Limits, ModeName, SourceConfig};
use mysql_async::prelude::Queryable;
use tonic::Code;

use crate::harness::{
    Fixture, code, message, ms_admin, mssql, my_admin, mysql, pg_admin, postgres, query, rows,
    secret_file, server, unique,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Mariadb,
    Sqlserver,
}

impl Db {
    fn source(self, limits: Limits) -> SourceConfig {
        match self {
            Db::Postgres => postgres(limits),
            Db::Mariadb => mysql(limits),
            Db::Sqlserver => {
                let mut s = mssql(limits);
                server(&mut s).read_only = true;
                s
            }
        }
    }

    async fn fixture(self, limits: Limits) -> Fixture {
        Fixture::builder()
            .tenant("acme", "alice")
            .agent("acme", "acme-db", vec![("db", self.source(limits))])
            .start()
            .await
    }

    async fn admin(self, sql: &str) {
        match self {
            Db::Postgres => pg_admin().await.batch_execute(sql).await.unwrap(),
            Db::Mariadb => my_admin().await.query_drop(sql).await.unwrap(),
            Db::Sqlserver => {
                let mut c = ms_admin().await;
                c.simple_query(sql)
                    .await
                    .unwrap()
                    .into_results()
                    .await
                    .unwrap();
            }
        }
    }

    /// `n` rows of one integer column.
    fn series(self, n: u64) -> String {
        match self {
            Db::Postgres => format!("SELECT g FROM generate_series(1, {n}) g"),
            // MariaDB's SEQUENCE engine: a virtual table per range.
            Db::Mariadb => format!("SELECT seq AS g FROM seq_1_to_{n}"),
            Db::Sqlserver => format!(
                "SELECT TOP ({n}) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS g \
                 FROM sys.all_objects a CROSS JOIN sys.all_objects b"
            ),
        }
    }

    fn sleep(self, secs: u32, marker: &str) -> String {
        match self {
            Db::Postgres => format!("SELECT pg_sleep({secs}), '{marker}' AS m"),
            Db::Mariadb => format!("SELECT SLEEP({secs}), '{marker}' AS m"),
            Db::Sqlserver => format!(
                "WAITFOR DELAY '00:{:02}:{:02}'; SELECT '{marker}' AS m",
                secs / 60,
                secs % 60
            ),
        }
    }

    /// Statements containing `marker` running in the server right now.
    async fn running(self, marker: &str) -> i64 {
        match self {
            Db::Postgres => pg_admin()
                .await
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND state = 'active' AND pid <> pg_backend_pid()",
                    &[&marker],
                )
                .await
                .unwrap()
                .get(0),
            Db::Mariadb => {
                let mut c = my_admin().await;
                // The marker is [a-z0-9_]; this statement itself is excluded by its id.
                let n: Option<i64> = c
                    .query_first(format!(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
                    ))
                    .await
                    .unwrap();
                n.unwrap_or(0)
            }
            Db::Sqlserver => {
                let mut c = ms_admin().await;
                let row = c
                    .query(
                        "SELECT COUNT(*) FROM sys.dm_exec_requests r \
                         CROSS APPLY sys.dm_exec_sql_text(r.sql_handle) t \
                         WHERE t.text LIKE '%' + @P1 + '%' AND r.session_id <> @@SPID",
                        &[&marker],
                    )
                    .await
                    .unwrap()
                    .into_row()
                    .await
                    .unwrap()
                    .unwrap();
                row.get::<i32, _>(0).unwrap_or(0).into()
            }
        }
    }
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn nulls_and_empty_results(db: Db) {
    let fx = db.fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let sql = match db {
        Db::Postgres => {
            "SELECT NULL::int4 AS i, NULL::text AS t, NULL::numeric(10,2) AS n, NULL::date AS d, NULL::timestamp AS ts, NULL::bytea AS b"
        }
        Db::Mariadb => {
            "SELECT CAST(NULL AS SIGNED) AS i, CAST(NULL AS CHAR) AS t, CAST(NULL AS DECIMAL(10,2)) AS n, CAST(NULL AS DATE) AS d, CAST(NULL AS DATETIME) AS ts, CAST(NULL AS BINARY) AS b"
        }
        Db::Sqlserver => {
            "SELECT CAST(NULL AS int) AS i, CAST(NULL AS nvarchar(10)) AS t, CAST(NULL AS decimal(10,2)) AS n, CAST(NULL AS date) AS d, CAST(NULL AS datetime2) AS ts, CAST(NULL AS varbinary(10)) AS b"
        }
    };
    let b = query(&mut c, sql).await.unwrap();
    assert_eq!(rows(&b), 1);
    let batch = &b[0];
    for col in batch.columns() {
        assert_eq!(col.null_count(), 1, "{db:?}: {col:?}");
    }
    assert_eq!(
        batch.schema().field_with_name("n").unwrap().data_type(),
        &DataType::Decimal128(10, 2)
    );
    assert_eq!(
        batch.schema().field_with_name("d").unwrap().data_type(),
        &DataType::Date32
    );

    // No rows: the schema still arrives, with its types.
    let empty = query(&mut c, &format!("{} WHERE 1 = 0", db.series(10)))
        .await
        .unwrap();
    assert_eq!(rows(&empty), 0);
    assert!(
        !empty.is_empty(),
        "{db:?}: an empty result still has a schema"
    );
    assert!(empty[0].schema().field(0).data_type().is_integer());
    fx.stop().await;
}

async fn huge_results_stream_in_bounded_batches(db: Db) {
    // 1,000 rows of 100 kB: a first batch of 1,000 rows would hold 100 MB
    // in the agent. The connector must cut batches by bytes, not rows.
    use gatehouse::connectors::{
        self, BatchPlan, BatchSink, Output, QuerySpec, TARGET_BATCH_BYTES,
    };
    let connector = connectors::build(&db.source(Limits::default())).unwrap();
    let sql = match db {
        Db::Postgres => "SELECT g, repeat('x', 100000) AS wide FROM generate_series(1, 1000) g",
        Db::Mariadb => "SELECT seq, REPEAT('x', 100000) AS wide FROM seq_1_to_1000",
        Db::Sqlserver => {
            "SELECT TOP (1000) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS g, \
             REPLICATE(CAST('x' AS varchar(max)), 100000) AS wide \
             FROM sys.all_objects a CROSS JOIN sys.all_objects b"
        }
    };
    let spec = QuerySpec {
        sql: sql.into(),
        params: None,
        mode: gatehouse::protocol::pb::Mode::Realtime,
        batches: BatchPlan::REALTIME,
        yield_to: None,
    };
    let (sink, mut rx) = BatchSink::channel();
    let cancel = tokio_util::sync::CancellationToken::new();
    let collect = async {
        let (mut rows, mut biggest, mut batches) = (0, 0, 0);
        while let Some(out) = rx.recv().await {
            if let Output::Batch(b) = out {
                rows += b.num_rows();
                batches += 1;
                biggest = biggest.max(connectors::batch_bytes(&b));
            }
        }
        (rows, biggest, batches)
    };
    let run = async {
        let r = connector.execute(&spec, &sink, &cancel).await;
        drop(sink);
        r
    };
    let (r, (rows, biggest, batches)) = tokio::join!(run, collect);
    r.unwrap();
    assert_eq!(rows, 1000);
    assert!(batches >= 40, "{db:?}: only {batches} batches");
    assert!(
        biggest <= TARGET_BATCH_BYTES + 200_000,
        "{db:?}: a batch held {biggest} bytes"
    );
}

async fn errors_carry_the_database_message(db: Db) {
    let fx = db.fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELEC 1").await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{db:?}: {e}");
    let (syntax, syntax_code) = match db {
        Db::Postgres => ("syntax error", "42601"),
        Db::Mariadb => ("You have an error in your SQL syntax", "1064"),
        // T-SQL reads `SELEC 1` as a call of a procedure named SELEC.
        Db::Sqlserver => ("SELEC", "SQL Server error"),
    };
    assert!(
        message(&e).contains(syntax) && message(&e).contains(syntax_code),
        "{db:?}: {e}"
    );
    let missing = unique("missing");
    let e = query(&mut c, &format!("SELECT * FROM {missing}"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{db:?}: {e}");
    assert!(message(&e).contains(&missing), "{db:?}: {e}");
    fx.stop().await;

    // Wrong password: the server's refusal, as retryable UNAVAILABLE.
    let mut wrong = db.source(Limits::default());
    server(&mut wrong).password_file = Some(secret_file("wrong"));
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-db", vec![("db", wrong)])
        .start()
        .await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{db:?}: {e}");
    let refusal = match db {
        Db::Postgres => "password authentication failed",
        Db::Mariadb => "Access denied",
        Db::Sqlserver => "Login failed",
    };
    assert!(message(&e).contains(refusal), "{db:?}: {e}");
    assert!(
        !message(&e).contains("wrong"),
        "{db:?}: the password leaked: {e}"
    );
    fx.stop().await;

    // Server down: nothing listens on the port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = db.source(Limits::default());
    let s = server(&mut down);
    (s.port, s.connect_timeout_secs) = (Some(free), 2);
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-db", vec![("db", down)])
        .start()
        .await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{db:?}: {e}");
    assert!(
        message(&e).contains("cannot reach the database"),
        "{db:?}: {e}"
    );
    fx.stop().await;
}

async fn client_going_away_cancels_the_query_in_the_server(db: Db) {
    let fx = db.fixture(Limits::default()).await;
    let marker = unique("cancel_me");
    let mut c = fx.client("alice").await;
    let sql = db.sleep(120, &marker);
    // The client goes away wherever it is: PostgreSQL describes the result
    // before running it, so GetFlightInfo returns and the client waits in
    // DoGet; MariaDB sends the result's metadata only once the row exists,
    // so the client is still waiting in GetFlightInfo.
    let client = tokio::spawn(async move {
        let info = c.execute(sql, None).await.unwrap();
        let mut stream = c
            .do_get(info.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap();
        let _ = futures::StreamExt::next(&mut stream).await;
        unreachable!("the query sleeps for two minutes");
    });
    wait_for("the query to run", || {
        let m = marker.clone();
        async move { db.running(&m).await == 1 }
    })
    .await;
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled());
    wait_for("the query to leave the server", || {
        let m = marker.clone();
        async move { db.running(&m).await == 0 }
    })
    .await;
    fx.stop().await;
}

async fn limits_are_enforced_by_the_agent(db: Db) {
    let limits = Limits {
        max_rows: 100,
        modes: vec![ModeName::Realtime],
        max_duration_secs: 1,
        ..Limits::default()
    };
    let fx = db.fixture(limits).await;
    let mut c = fx.client("alice").await;
    assert_eq!(rows(&query(&mut c, &db.series(100)).await.unwrap()), 100);
    let e = query(&mut c, &db.series(101)).await.unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{db:?}: {e}");
    assert!(message(&e).contains("100 rows"), "{db:?}: {e}");

    c.set_header("x-gatehouse-mode", "reload");
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{db:?}: {e}");
    c.set_header("x-gatehouse-mode", "realtime");

    // Duration: stopped by the agent, and gone from the server.
    let marker = unique("too_long");
    let e = query(&mut c, &db.sleep(30, &marker)).await.unwrap_err();
    assert_eq!(code(&e), Code::DeadlineExceeded, "{db:?}: {e}");
    wait_for("the timed-out query to leave the server", || {
        let m = marker.clone();
        async move { db.running(&m).await == 0 }
    })
    .await;

    fx.stop().await;

    // Concurrency: one realtime query at a time; the next waits 1 s, then is refused.
    let limits = Limits {
        realtime_concurrency: 1,
        queue_timeout_secs: 1,
        ..Limits::default()
    };
    let fx = db.fixture(limits).await;
    let mut c = fx.client("alice").await;
    let slow = unique("slow");
    let mut other = fx.client("alice").await;
    let holder = tokio::spawn({
        let sql = db.sleep(3, &slow);
        async move { query(&mut other, &sql).await }
    });
    wait_for("the first query to run", || {
        let m = slow.clone();
        async move { db.running(&m).await == 1 }
    })
    .await;
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{db:?}: {e}");
    assert!(message(&e).contains("maximum"), "{db:?}: {e}");
    let _ = holder.await.unwrap();
    fx.stop().await;
}

async fn read_only_sources_refuse_writes(db: Db) {
    let t = unique("ro");
    db.admin(&format!("CREATE TABLE {t} (x int)")).await;
    if db == Db::Sqlserver {
        return sqlserver_reader_cannot_write(&t).await;
    }
    let fx = db.fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, &format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap_err();
    let refusal = match db {
        Db::Postgres => "read-only transaction",
        Db::Mariadb => "READ ONLY transaction",
        Db::Sqlserver => unreachable!(),
    };
    assert!(message(&e).contains(refusal), "{db:?}: {e}");
    db.admin(&format!("DROP TABLE {t}")).await;
    fx.stop().await;
}

/// SQL Server has no read-only session: a read-only source refuses a login
/// that can write, and a reader login's write is refused by the server.
async fn sqlserver_reader_cannot_write(t: &str) {
    let db = Db::Sqlserver;
    // The lane's administrator login can write: refused at connect.
    let fx = db.fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELECT 1 AS x").await.unwrap_err();
    assert!(message(&e).contains("db_datareader"), "{e}");
    fx.stop().await;

    let login = unique("gh_reader");
    let password = format!("Rd-{}!", uuid::Uuid::new_v4().simple());
    db.admin(&format!(
        "CREATE LOGIN {login} WITH PASSWORD = '{password}', CHECK_POLICY = OFF; \
         CREATE USER {login} FOR LOGIN {login}; ALTER ROLE db_datareader ADD MEMBER {login}"
    ))
    .await;
    let mut source = db.source(Limits::default());
    let s = server(&mut source);
    (s.user, s.password_file) = (login.clone(), Some(secret_file(&password)));
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-db", vec![("db", source)])
        .start()
        .await;
    let mut c = fx.client("alice").await;
    assert_eq!(
        rows(&query(&mut c, &format!("SELECT * FROM {t}")).await.unwrap()),
        0
    );
    let e = query(&mut c, &format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap_err();
    assert!(message(&e).contains("INSERT permission was denied"), "{e}");
    fx.stop().await;
    db.admin(&format!(
        "DROP TABLE {t}; DROP USER {login}; DROP LOGIN {login}"
    ))
    .await;
}

/// One `#[tokio::test]` per database for each conformance check.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::Db::Postgres).await;
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::Db::Mariadb).await;
                }
            )*
        }
        mod sqlserver {
            $(
                #[tokio::test]
                #[ignore = "opt-in lane: needs a real SQL Server in GATEHOUSE_TEST_MSSQL"]
                async fn $check() {
                    super::$check(super::Db::Sqlserver).await;
                }
            )*
        }
    };
}

conformance!(
    nulls_and_empty_results,
    huge_results_stream_in_bounded_batches,
    errors_carry_the_database_message,
    client_going_away_cancels_the_query_in_the_server,
    limits_are_enforced_by_the_agent,
    read_only_sources_refuse_writes,
);
