//! Flight SQL conformance through a real tunnel, on the embedded SQLite source.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use tonic::Code;

use crate::harness::{code, demo, fetch, message, query, rows, strings, tpch_db};

#[tokio::test]
async fn login_is_required_and_checked() {
    let fx = demo().await;
    let mut anon = fx.anonymous().await;
    // The Rust client folds the handshake status into its message.
    for (user, pw) in [("alice", "wrong"), ("mallory", "correct horse")] {
        let e = anon.handshake(user, pw).await.unwrap_err().to_string();
        assert!(
            e.contains("valid authentication credentials")
                && e.contains("invalid user name or password"),
            "{e}"
        );
    }
    let e = query(&mut anon, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);
    anon.set_token("forged-token".into());
    let e = query(&mut anon, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);
    assert!(message(&e).contains("unknown or expired"), "{e}");
    fx.stop().await;
}

#[tokio::test]
async fn statement_values_match_the_database() {
    let fx = demo().await;
    let mut c = fx.client("alice").await;
    let b = query(
        &mut c,
        "SELECT n_nationkey, n_name, n_regionkey FROM nation ORDER BY n_nationkey",
    )
    .await
    .unwrap();
    assert_eq!(rows(&b), 25);
    let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
    assert_eq!(b.schema().field(0).data_type(), &DataType::Int64);
    let keys = b.column(0).as_primitive::<Int64Type>();
    assert_eq!(keys.values().to_vec(), (0..25).collect::<Vec<i64>>());
    let names = b.column(1).as_string::<i32>();
    assert_eq!(names.value(0), "ALGERIA");
    assert_eq!(names.value(24), "UNITED STATES");

    // An aggregate, checked against SQLite directly.
    let direct: f64 = rusqlite::Connection::open(tpch_db())
        .unwrap()
        .query_row(
            "SELECT sum(l_extendedprice) FROM lineitem WHERE l_returnflag = 'R'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let b = query(
        &mut c,
        "SELECT sum(l_extendedprice) FROM lineitem WHERE l_returnflag = 'R'",
    )
    .await
    .unwrap();
    let got = b[0].column(0).as_primitive::<Float64Type>().value(0);
    assert!((got - direct).abs() < 1e-6, "{got} vs {direct}");

    // Empty result keeps its schema.
    let b = query(&mut c, "SELECT n_name FROM nation WHERE 1 = 0")
        .await
        .unwrap();
    assert_eq!(rows(&b), 0);
    fx.stop().await;
}

#[tokio::test]
async fn reload_mode_streams_everything_with_each_compression() {
    let fx = demo().await;
    let mut c = fx.client("alice").await;
    c.set_header("x-gatehouse-mode", "reload");
    for codec in ["none", "lz4", "zstd"] {
        c.set_header("x-gatehouse-compression", codec);
        let b = query(&mut c, "SELECT * FROM lineitem").await.unwrap();
        assert_eq!(rows(&b), 60_175, "{codec}");
        assert_eq!(b[0].num_columns(), 16);
        // Every Flight message stays under the 4 MiB gRPC default.
        assert!(b.len() > 1);
    }
    c.set_header("x-gatehouse-compression", "brotli");
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    c.set_header("x-gatehouse-mode", "turbo");
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    fx.stop().await;
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let fx = demo().await;
    let mut c = fx.client("alice").await;
    let mut ps = c
        .prepare(
            "SELECT n_name FROM nation WHERE n_regionkey = ? AND n_name > ? ORDER BY n_name".into(),
            None,
        )
        .await
        .unwrap();
    for (region, after, want) in [
        (
            1i64,
            "A",
            vec!["ARGENTINA", "BRAZIL", "CANADA", "PERU", "UNITED STATES"],
        ),
        (3, "R", vec!["ROMANIA", "RUSSIA", "UNITED KINGDOM"]),
    ] {
        let params = RecordBatch::try_from_iter([
            ("region", Arc::new(Int64Array::from(vec![region])) as _),
            ("after", Arc::new(StringArray::from(vec![after])) as _),
        ])
        .unwrap();
        ps.set_parameters(params).unwrap();
        let info = ps.execute().await.unwrap();
        let b = fetch(&mut c, info).await;
        let got = strings(&b, 0);
        assert_eq!(got, want);
    }
    // Two rows of parameters for one execution is refused.
    let two = RecordBatch::try_from_iter([
        ("region", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ("after", Arc::new(StringArray::from(vec!["A", "B"])) as _),
    ])
    .unwrap();
    ps.set_parameters(two).unwrap();
    let e = ps.execute().await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    ps.close().await.unwrap();
    fx.stop().await;
}

#[tokio::test]
async fn metadata_calls_describe_the_agents_sources() {
    let fx = demo().await;
    let mut c = fx.client("alice").await;
    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 2);
    assert_eq!(b[0].schema().field(0).name(), "info_name");
    assert!(matches!(
        b[0].schema().field(1).data_type(),
        DataType::Union(_, _)
    ));

    let info = c.get_catalogs().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(b[0].column(0).as_string::<i32>().value(0), "tpch");

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("tpch".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(b[0].column(1).as_string::<i32>().value(0), "main");

    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("tpch".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("line%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 1);
    assert_eq!(b[0].column(2).as_string::<i32>().value(0), "lineitem");
    let schema_bytes = b[0].column(4).as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(schema_bytes).unwrap();
    assert_eq!(schema.fields().len(), 16);
    assert_eq!(schema.field(0).name(), "l_orderkey");

    let info = c.get_table_types().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert!(rows(&b) >= 2);
    fx.stop().await;
}

#[tokio::test]
async fn errors_are_clear_and_typed() {
    let fx = demo().await;
    let mut c = fx.client("alice").await;
    let e = query(&mut c, "SELEKT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(message(&e).contains("syntax error"), "{e}");
    let e = query(&mut c, "SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(message(&e).contains("no such table"), "{e}");
    c.set_header("x-gatehouse-source", "elsewhere");
    let e = query(&mut c, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e}");
    assert!(message(&e).contains("available: tpch"), "{e}");
    // Writes are not part of this gateway.
    let e = c
        .execute_update("DELETE FROM nation".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unimplemented);
    // Read-only SQLite refuses writes even if sent as a query.
    c.set_header("x-gatehouse-source", "tpch");
    let e = query(&mut c, "DELETE FROM nation RETURNING *")
        .await
        .unwrap_err();
    assert!(message(&e).contains("readonly"), "{e}");
    let still: Vec<RecordBatch> = query(&mut c, "SELECT count(*) FROM nation").await.unwrap();
    assert_eq!(still[0].column(0).as_primitive::<Int64Type>().value(0), 25);
    fx.stop().await;
}

#[tokio::test]
async fn flight_sql_over_tls() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let fx = crate::harness::Fixture::builder()
        .tenant("acme", "alice")
        .agent(
            "acme",
            "acme-1",
            vec![("tpch", crate::harness::sqlite(tpch_db()))],
        )
        .flight_tls()
        .start()
        .await;
    let ca = std::fs::read(fx.pki.ca_cert()).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let ch = Channel::from_shared(format!("https://localhost:{}", fx.flight.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = arrow_flight::sql::client::FlightSqlServiceClient::new(ch);
    c.handshake("alice", crate::harness::PASSWORD)
        .await
        .unwrap();
    let b = query(&mut c, "SELECT count(*) FROM region").await.unwrap();
    assert_eq!(rows(&b), 1);
    // A plaintext client cannot talk to the TLS listener.
    let mut plain = fx.anonymous().await;
    assert!(
        plain
            .handshake("alice", crate::harness::PASSWORD)
            .await
            .is_err()
    );
    fx.stop().await;
}
