//! MariaDB through the whole path: the type matrix value by value,
//! parameters, reloads, catalog listing and TLS to the database. The shared
//! behaviour (errors, cancellation, limits, read-only) is in `conformance.rs`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::*;
use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use gatehouse::config::agent::{DbTlsMode, Limits, SourceConfig};
use mysql_async::prelude::Queryable;

use crate::harness::{
    Fixture, fetch, listed_schema, message, my_admin, mysql, one, query, start_reload, unique,
    with_tls,
};

async fn fixture(source: SourceConfig) -> Fixture {
    Fixture::builder()
        .tenant("acme", "alice")
        .agent("acme", "acme-my", vec![("my", source)])
        .start()
        .await
}

#[tokio::test]
async fn type_matrix_value_by_value() {
    let t = unique("types");
    let mut admin = my_admin().await;
    admin
        .query_drop(format!(
            "CREATE TABLE {t} (id INT,
               ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
               mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
               bi BIGINT, bu BIGINT UNSIGNED,
               d DECIMAL(10,3), dw DECIMAL(65,30), f FLOAT, db DOUBLE,
               b1 BIT(1), b12 BIT(12), bo BOOL,
               dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6), tl TIME, yr YEAR,
               c CHAR(4), vc VARCHAR(20), tx TEXT, l1 VARCHAR(10) CHARACTER SET latin1,
               bn BINARY(4), vb VARBINARY(10), bl BLOB,
               js JSON, en ENUM('sad','happy'), st SET('a','b','c'))"
        ))
        .await
        .unwrap();
    // The admin session is two hours east of UTC: TIMESTAMP is an instant.
    admin.query_drop("SET time_zone = '+02:00'").await.unwrap();
    admin
        .query_drop(format!(
            "INSERT INTO {t} VALUES (1,
               -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
               -9223372036854775808, 18446744073709551615,
               1234567.891, '12345678901234567890123456789012345.123456789012345678901234567890',
               1.5, -2.25e100,
               b'1', b'101010101010', TRUE,
               '2024-02-29', '2024-02-29 13:45:30.5', '2024-02-29 13:45:30.5', '-838:59:59', '30:00:01', 2024,
               'ab', 'héllo ☃', 'long text', 'café',
               x'DEADBEEF', x'0102', x'FF00',
               '{{\"a\": [1, 2]}}', 'happy', 'a,c');
             INSERT INTO {t} (id) VALUES (2);"
        ))
        .await
        .unwrap();
    let fx = fixture(mysql(Limits::default())).await;
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

    assert_eq!(col("ti").as_primitive::<Int8Type>().value(0), -128);
    assert_eq!(col("tu").as_primitive::<UInt8Type>().value(0), 255);
    assert_eq!(col("si").as_primitive::<Int16Type>().value(0), i16::MIN);
    assert_eq!(col("su").as_primitive::<UInt16Type>().value(0), u16::MAX);
    assert_eq!(col("mi").as_primitive::<Int32Type>().value(0), -8_388_608);
    assert_eq!(col("mu").as_primitive::<UInt32Type>().value(0), 16_777_215);
    assert_eq!(col("i").as_primitive::<Int32Type>().value(0), i32::MIN);
    assert_eq!(col("iu").as_primitive::<UInt32Type>().value(0), u32::MAX);
    assert_eq!(col("bi").as_primitive::<Int64Type>().value(0), i64::MIN);
    assert_eq!(col("bu").as_primitive::<UInt64Type>().value(0), u64::MAX);
    assert_eq!(ty("d"), DataType::Decimal128(10, 3));
    assert_eq!(
        col("d").as_primitive::<Decimal128Type>().value(0),
        1_234_567_891
    );
    assert_eq!(ty("dw"), DataType::Decimal256(65, 30));
    assert_eq!(
        col("dw")
            .as_primitive::<Decimal256Type>()
            .value(0)
            .to_string(),
        "12345678901234567890123456789012345123456789012345678901234567890"
    );
    assert_eq!(col("f").as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(col("db").as_primitive::<Float64Type>().value(0), -2.25e100);
    assert!(col("b1").as_boolean().value(0));
    assert_eq!(
        col("b12").as_primitive::<UInt64Type>().value(0),
        0b1010_1010_1010
    );
    // BOOL is TINYINT(1), which may hold -128..127: kept as an integer.
    assert_eq!(col("bo").as_primitive::<Int8Type>().value(0), 1);
    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    assert_eq!(
        col("dt").as_primitive::<Date32Type>().value(0),
        (day - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
    );
    assert_eq!(ty("dtm"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(
        col("dtm")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        day.and_hms_milli_opt(13, 45, 30, 500)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    );
    assert_eq!(
        ty("ts"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        col("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        Utc.with_ymd_and_hms(2024, 2, 29, 11, 45, 30)
            .unwrap()
            .timestamp_micros()
            + 500_000
    );
    assert_eq!(ty("tm"), DataType::Duration(TimeUnit::Microsecond));
    assert_eq!(
        col("tm").as_primitive::<DurationMicrosecondType>().value(0),
        -((838 * 3600 + 59 * 60 + 59) * 1_000_000)
    );
    assert_eq!(
        col("tl").as_primitive::<DurationMicrosecondType>().value(0),
        (30 * 3600 + 1) * 1_000_000
    );
    assert_eq!(col("yr").as_primitive::<UInt16Type>().value(0), 2024);
    assert_eq!(col("c").as_string::<i32>().value(0), "ab");
    assert_eq!(col("vc").as_string::<i32>().value(0), "héllo ☃");
    assert_eq!(col("tx").as_string::<i32>().value(0), "long text");
    // A latin1 column arrives as UTF-8: the session's character set is utf8mb4.
    assert_eq!(col("l1").as_string::<i32>().value(0), "café");
    assert_eq!(
        col("bn").as_binary::<i32>().value(0),
        &[0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(col("vb").as_binary::<i32>().value(0), &[1, 2]);
    assert_eq!(col("bl").as_binary::<i32>().value(0), &[0xff, 0]);
    assert_eq!(col("js").as_string::<i32>().value(0), "{\"a\": [1, 2]}");
    assert_eq!(col("en").as_string::<i32>().value(0), "happy");
    let set = col("st");
    let members = set.as_list::<i32>().value(0);
    assert_eq!(
        members
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        vec!["a", "c"]
    );
    // Row 2: NULL in every column but the id.
    for (i, f) in b.schema().fields().iter().enumerate().skip(1) {
        assert!(b.column(i).is_null(1), "{} is not NULL", f.name());
    }
    admin.query_drop(format!("DROP TABLE {t}")).await.unwrap();
    fx.stop().await;
}

#[tokio::test]
async fn prepared_statement_with_parameters() {
    let fx = fixture(mysql(Limits::default())).await;
    let mut c = fx.client("alice").await;
    let mut ps = c
        .prepare(
            "SELECT seq, seq * 2 AS twice, ? AS label FROM seq_1_to_10 WHERE seq > ?".into(),
            None,
        )
        .await
        .unwrap();
    let params = RecordBatch::try_from_iter([
        (
            "label",
            Arc::new(arrow::array::StringArray::from(vec!["x"])) as _,
        ),
        ("min", Arc::new(Int64Array::from(vec![7])) as _),
    ])
    .unwrap();
    ps.set_parameters(params).unwrap();
    let info = ps.execute().await.unwrap();
    let b = one(&fetch(&mut c, info).await);
    assert_eq!(
        b.column(0).as_primitive::<UInt64Type>().values().to_vec(),
        vec![8, 9, 10]
    );
    assert_eq!(b.column(2).as_string::<i32>().value(0), "x");
    fx.stop().await;
}

#[tokio::test]
async fn reload_streams_every_row() {
    let fx = fixture(mysql(Limits::default())).await;
    let mut c = fx.client("alice").await;
    c.set_header("x-gatehouse-compression", "zstd");
    let mut stream = start_reload(&mut c, "SELECT seq, MD5(seq) AS h FROM seq_1_to_300000").await;
    let (mut rows, mut batches, mut sum) = (0usize, 0, 0u64);
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        rows += b.num_rows();
        batches += 1;
        sum += b
            .column(0)
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .sum::<u64>();
    }
    assert_eq!(rows, 300_000);
    assert_eq!(sum, 300_000 * 300_001 / 2);
    assert!(
        batches > 3,
        "a reload comes in several batches, got {batches}"
    );
    fx.stop().await;
}

#[tokio::test]
async fn catalog_lists_mariadb_tables_with_schemas() {
    let t = unique("listed");
    let mut admin = my_admin().await;
    admin
        .query_drop(format!(
            "CREATE TABLE {t} (id BIGINT NOT NULL, amount DECIMAL(12,2), flag BIT(1), note VARCHAR(20))"
        ))
        .await
        .unwrap();
    let fx = fixture(mysql(Limits::default())).await;
    let mut c = fx.client("alice").await;
    let schema = listed_schema(&mut c, "my", "gatehouse_test", &t).await;
    // The listing's types are those a query returns.
    let queried = one(&query(&mut c, &format!("SELECT * FROM {t}")).await.unwrap());
    for (listed, got) in schema.fields().iter().zip(queried.schema().fields()) {
        assert_eq!(listed.data_type(), got.data_type(), "{}", listed.name());
    }
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(12, 2));
    admin.query_drop(format!("DROP TABLE {t}")).await.unwrap();
    fx.stop().await;
}

#[tokio::test]
async fn tls_to_the_database_is_verified() {
    let ca: std::path::PathBuf = std::env::var("GATEHOUSE_TEST_MYSQL_CA")
        .expect("GATEHOUSE_TEST_MYSQL_CA is not set: run the tests with ./tests/run")
        .into();
    let cipher = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    // verify-full against the server's CA: encrypted.
    let fx = fixture(with_tls(
        mysql(Limits::default()),
        DbTlsMode::VerifyFull,
        Some(ca),
    ))
    .await;
    let mut c = fx.client("alice").await;
    let b = one(&query(&mut c, cipher).await.unwrap());
    assert!(
        !b.column(1).as_string::<i32>().value(0).is_empty(),
        "the session is not encrypted"
    );
    fx.stop().await;
    // require: encrypted, the certificate not checked.
    let fx = fixture(with_tls(mysql(Limits::default()), DbTlsMode::Require, None)).await;
    let mut c = fx.client("alice").await;
    let b = one(&query(&mut c, cipher).await.unwrap());
    assert!(!b.column(1).as_string::<i32>().value(0).is_empty());
    fx.stop().await;
    // Plain: not encrypted.
    let fx = fixture(with_tls(mysql(Limits::default()), DbTlsMode::Disable, None)).await;
    let mut c = fx.client("alice").await;
    let b = one(&query(&mut c, cipher).await.unwrap());
    assert_eq!(b.column(1).as_string::<i32>().value(0), "");
    fx.stop().await;
    // verify-full against the public roots: this server's certificate is refused.
    let fx = fixture(with_tls(
        mysql(Limits::default()),
        DbTlsMode::VerifyFull,
        None,
    ))
    .await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert!(message(&e).to_lowercase().contains("certificate"), "{e}");
    fx.stop().await;
}
