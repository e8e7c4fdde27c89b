//! PostgreSQL through the whole path: the type matrix value by value,
//! parameters, realtime queries beside a reload and catalog listing. The
//! shared behaviour (errors, cancellation, limits, read-only) is in
//! `conformance.rs`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::*;
use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use gatehouse::config::agent::{DbTlsMode, Limits, SourceConfig};

use crate::harness::{
    Fixture, fetch, listed_schema, message, one, pg_admin, postgres, query, start_reload, unique,
    with_tls,
};

async fn fixture(limits: Limits) -> Fixture {
    Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-pg", vec![("pg", postgres(limits))])
        .start()
        .await
}

#[tokio::test]
async fn type_matrix_value_by_value() {
    let admin = pg_admin().await;
    let (t, mood) = (unique("types"), unique("mood"));
    admin
        .batch_execute(&format!(
            "CREATE TYPE {mood} AS ENUM ('sad', 'happy');
             CREATE TABLE {t} (id int4, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
               n numeric(10,3), nu numeric, tx text, vc varchar(10), c char(4), nm name, by bytea,
               d date, tm time, ts timestamp, tz timestamptz, iv interval, u uuid, j json, jb jsonb,
               e {mood}, ai int4[], at text[], o oid);
             INSERT INTO {t} VALUES (1, true, -32768, 2147483647, -9223372036854775808, 1.5, -2.25e100,
               1234567.891, 3.14159, 'héllo ☃', 'abc', 'ab', 'pg_name', '\\xdeadbeef',
               '2024-02-29', '13:45:30.123456', '2024-02-29 13:45:30.5', '2024-02-29 13:45:30.5+02',
               '1 year 2 months 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
               '{{\"a\": [1, 2]}}', '{{\"a\": [1, 2]}}', 'happy', '{{1,NULL,3}}', '{{x,y}}', 4294967295);
             INSERT INTO {t} (id) VALUES (2);"
        ))
        .await
        .unwrap();
    let fx = fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let b = one(&query(&mut c, &format!("SELECT * FROM {t} ORDER BY id"))
        .await
        .unwrap());
    assert_eq!(b.num_rows(), 2);
    let col = |name: &str| b.column_by_name(name).unwrap().clone();
    let ty = |name: &str| {
        b.schema()
            .field_with_name(name)
            .unwrap()
            .data_type()
            .clone()
    };

    assert!(col("b").as_boolean().value(0));
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(0), i16::MIN);
    assert_eq!(col("i4").as_primitive::<Int32Type>().value(0), i32::MAX);
    assert_eq!(col("i8").as_primitive::<Int64Type>().value(0), i64::MIN);
    assert_eq!(col("f4").as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(col("f8").as_primitive::<Float64Type>().value(0), -2.25e100);
    assert_eq!(ty("n"), DataType::Decimal128(10, 3));
    assert_eq!(
        col("n").as_primitive::<Decimal128Type>().value(0),
        1_234_567_891
    );
    assert_eq!(ty("nu"), DataType::Decimal128(38, 10));
    assert_eq!(
        col("nu").as_primitive::<Decimal128Type>().value(0),
        31_415_900_000
    );
    assert_eq!(col("tx").as_string::<i32>().value(0), "héllo ☃");
    assert_eq!(col("vc").as_string::<i32>().value(0), "abc");
    assert_eq!(col("c").as_string::<i32>().value(0), "ab  ");
    assert_eq!(col("nm").as_string::<i32>().value(0), "pg_name");
    assert_eq!(
        col("by").as_binary::<i32>().value(0),
        [0xde, 0xad, 0xbe, 0xef]
    );
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    assert_eq!(
        col("d").as_primitive::<Date32Type>().value(0),
        (d - epoch).num_days() as i32
    );
    assert_eq!(
        col("tm").as_primitive::<Time64MicrosecondType>().value(0),
        ((13 * 60 + 45) * 60 + 30) * 1_000_000 + 123_456
    );
    let ts = d
        .and_hms_milli_opt(13, 45, 30, 500)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    assert_eq!(
        col("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        ts
    );
    assert_eq!(ty("ts"), DataType::Timestamp(TimeUnit::Microsecond, None));
    let tz = Utc
        .with_ymd_and_hms(2024, 2, 29, 11, 45, 30)
        .unwrap()
        .timestamp_micros()
        + 500_000;
    assert_eq!(
        col("tz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        tz
    );
    assert_eq!(
        ty("tz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let iv = col("iv")
        .as_primitive::<IntervalMonthDayNanoType>()
        .value(0);
    assert_eq!((iv.months, iv.days), (14, 3));
    assert_eq!(
        iv.nanoseconds,
        ((4 * 3600 + 5 * 60 + 6) * 1_000_000 + 789_000) * 1000
    );
    assert_eq!(
        col("u").as_fixed_size_binary().value(0),
        uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            .unwrap()
            .as_bytes()
    );
    let u_meta = b.schema().field_with_name("u").unwrap().metadata().clone();
    assert_eq!(
        u_meta.get("ARROW:extension:name").map(String::as_str),
        Some("arrow.uuid")
    );
    assert_eq!(col("j").as_string::<i32>().value(0), "{\"a\": [1, 2]}");
    assert_eq!(col("jb").as_string::<i32>().value(0), "{\"a\": [1, 2]}");
    assert_eq!(col("e").as_string::<i32>().value(0), "happy");
    let ai = col("ai");
    let ai = ai.as_list::<i32>().value(0);
    let ai = ai.as_primitive::<Int32Type>();
    assert_eq!(
        (ai.len(), ai.value(0), ai.is_null(1), ai.value(2)),
        (3, 1, true, 3)
    );
    let at = col("at");
    let at = at.as_list::<i32>().value(0);
    assert_eq!(
        at.as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("x"), Some("y")]
    );
    assert_eq!(col("o").as_primitive::<UInt32Type>().value(0), u32::MAX);
    // Row 2: NULL everywhere but id.
    for f in b.schema().fields().iter().skip(1) {
        assert!(col(f.name()).is_null(1), "{} should be NULL", f.name());
    }
    // A type without a mapping gets a clear error naming the column and a fix.
    let e = query(&mut c, "SELECT point(1, 2) AS p").await.unwrap_err();
    assert!(
        message(&e).contains("\"p\"") && message(&e).contains("::text"),
        "{e}"
    );
    fx.stop().await;
    admin
        .batch_execute(&format!("DROP TABLE {t}; DROP TYPE {mood};"))
        .await
        .unwrap();
}

#[tokio::test]
async fn prepared_statement_with_parameters() {
    let fx = fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let mut ps = c
        .prepare(
            "SELECT g, g * 2 AS twice FROM generate_series(1, $1::int) g WHERE g > $2".into(),
            None,
        )
        .await
        .unwrap();
    let params = RecordBatch::try_from_iter([
        ("n", Arc::new(Int64Array::from(vec![10])) as _),
        ("min", Arc::new(Int64Array::from(vec![7])) as _),
    ])
    .unwrap();
    ps.set_parameters(params).unwrap();
    let info = ps.execute().await.unwrap();
    let b = one(&fetch(&mut c, info).await);
    assert_eq!(
        b.column(0).as_primitive::<Int32Type>().values().to_vec(),
        vec![8, 9, 10]
    );
    assert_eq!(
        b.column(1).as_primitive::<Int32Type>().values().to_vec(),
        vec![16, 18, 20]
    );
    fx.stop().await;
}

#[tokio::test]
async fn fifty_realtime_queries_beside_a_running_reload() {
    let fx = fixture(Limits::default()).await;
    let mut reload = fx.client("alice").await;
    let mut stream = start_reload(
        &mut reload,
        "SELECT g, md5(g::text) AS h FROM generate_series(1, 1000000) g",
    )
    .await;
    // Read one batch, then stop reading: back-pressure now holds the reload open.
    let first = stream.next().await.unwrap().unwrap();
    let mut seen = first.num_rows();

    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let mut c = fx.client("alice").await;
        tasks.push(tokio::spawn(async move {
            let b = query(&mut c, &format!("SELECT {i}::int8 + 1 AS v"))
                .await
                .unwrap();
            b[0].column(0).as_primitive::<Int64Type>().value(0)
        }));
    }
    let mut got: Vec<i64> = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(got, (1..=50).collect::<Vec<_>>());

    // The reload was paused the whole time and still delivers every row.
    while let Some(b) = stream.next().await {
        seen += b.unwrap().num_rows();
    }
    assert_eq!(seen, 1_000_000);
    fx.stop().await;
}

#[tokio::test]
async fn catalog_lists_postgres_tables_with_schemas() {
    let admin = pg_admin().await;
    let t = unique("listed");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int8 NOT NULL, amount numeric(12,2))"
        ))
        .await
        .unwrap();
    let fx = fixture(Limits::default()).await;
    let mut c = fx.client("alice").await;
    let schema = listed_schema(&mut c, "pg", "public", &t).await;
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(12, 2));
    fx.stop().await;
    admin
        .batch_execute(&format!("DROP TABLE {t}"))
        .await
        .unwrap();
}

async fn session_is_encrypted(source: SourceConfig) -> Result<bool, String> {
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-pg", vec![("pg", source)])
        .start()
        .await;
    let mut c = fx.client("alice").await;
    let r = query(
        &mut c,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    fx.stop().await;
    r.map(|b| b[0].column(0).as_boolean().value(0))
        .map_err(|e| message(&e))
}

#[tokio::test]
async fn tls_to_the_database_is_verified() {
    let ca: std::path::PathBuf = std::env::var("GATEHOUSE_TEST_PG_CA")
        .expect("GATEHOUSE_TEST_PG_CA is not set: run the tests with ./tests/run")
        .into();
    let pg = |mode, ca| with_tls(postgres(Limits::default()), mode, ca);
    assert_eq!(
        session_is_encrypted(pg(DbTlsMode::VerifyFull, Some(ca.clone()))).await,
        Ok(true)
    );
    assert_eq!(
        session_is_encrypted(pg(DbTlsMode::VerifyCa, Some(ca))).await,
        Ok(true)
    );
    // Encrypted without checking the certificate.
    assert_eq!(
        session_is_encrypted(pg(DbTlsMode::Require, None)).await,
        Ok(true)
    );
    assert_eq!(
        session_is_encrypted(pg(DbTlsMode::Disable, None)).await,
        Ok(false)
    );
    // The public roots do not know the test CA: refused.
    let e = session_is_encrypted(pg(DbTlsMode::VerifyFull, None))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}
