//! Tenant isolation: a caller only ever reaches its own tenant's agents.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{Fixture, code, fetch, message, query, sqlite, strings, tpch_db};

/// A SQLite file with one table `marker(owner)`.
fn marker_db(dir: &std::path::Path, owner: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{owner}.sqlite"));
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE marker(owner TEXT); INSERT INTO marker VALUES ('{owner}');"
    ))
    .unwrap();
    path
}

async fn catalogs(c: &mut FlightSqlServiceClient<Channel>) -> Vec<String> {
    let info = c.get_catalogs().await.unwrap();
    strings(&fetch(c, info).await, 0)
}

#[tokio::test]
async fn every_cross_tenant_attempt_fails() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .tenant("globex", "bob")
        .agent(
            "acme",
            "acme-1",
            vec![("common", sqlite(tpch_db())), ("sales", sqlite(tpch_db()))],
        )
        .agent(
            "globex",
            "globex-1",
            vec![
                ("common", sqlite(marker_db(dir.path(), "globex"))),
                ("hr", sqlite(marker_db(dir.path(), "hr"))),
            ],
        )
        .start()
        .await;
    let mut alice = fx.client("alice").await;
    let mut bob = fx.client("bob").await;

    // Each sees only its own sources.
    assert_eq!(catalogs(&mut alice).await, vec!["common", "sales"]);
    assert_eq!(catalogs(&mut bob).await, vec!["common", "hr"]);

    // Naming another tenant's source finds nothing, and says nothing about it.
    alice.set_header("x-gatehouse-source", "hr");
    let e = query(&mut alice, "SELECT * FROM marker").await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable);
    assert!(
        message(&e).contains("available: common, sales") && !message(&e).contains("hr,"),
        "{e}"
    );

    // The same source name routes to the caller's own agent.
    alice.set_header("x-gatehouse-source", "common");
    bob.set_header("x-gatehouse-source", "common");
    let e = query(&mut alice, "SELECT owner FROM marker")
        .await
        .unwrap_err();
    assert!(message(&e).contains("no such table"), "{e}");
    let b = query(&mut bob, "SELECT owner FROM marker").await.unwrap();
    assert_eq!(b[0].column(0).as_string::<i32>().value(0), "globex");

    // A ticket issued to alice, presented by bob, runs nothing of alice's.
    let info = alice
        .execute("SELECT count(*) FROM nation".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let e = bob.do_get(ticket.clone()).await.unwrap_err();
    assert!(message(&e).contains("no such table: nation"), "{e}");
    // ... and alice's parked query is still hers.
    let b: Vec<arrow::array::RecordBatch> = alice
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 25);

    // A prepared statement handle is no key to another tenant either.
    let mut ps = alice
        .prepare("SELECT count(*) FROM nation".into(), None)
        .await
        .unwrap();
    let info = ps.execute().await.unwrap();
    let e = bob.do_get(info.endpoint[0].ticket.clone().unwrap()).await;
    if let Ok(stream) = e {
        let r: Result<Vec<_>, _> = stream.try_collect().await;
        assert!(r.is_err(), "bob read alice's prepared result");
    }

    // Tokens are bound to their tenant: bob's token never lists alice's sources.
    let token = fx
        .anonymous()
        .await
        .handshake("bob", crate::harness::PASSWORD)
        .await
        .unwrap();
    let mut mallory = fx.anonymous().await;
    mallory.set_token(String::from_utf8(token.to_vec()).unwrap());
    assert_eq!(catalogs(&mut mallory).await, vec!["common", "hr"]);
    fx.stop().await;
}
