//! The Python suite (ADBC Flight SQL, pyarrow.flight, polars) against a real
//! hub and agent. The venv with pinned versions comes from `tests/run`.

use crate::harness::{Fixture, PASSWORD, mysql, postgres, sqlite, tpch_db};
use gatehouse::config::agent::Limits;

#[tokio::test]
async fn adbc_and_pyarrow_clients() {
    let python = std::env::var("GATEHOUSE_TEST_PYTHON").expect(
        "GATEHOUSE_TEST_PYTHON is not set: run the tests with ./tests/run, which creates the venv with the Flight SQL clients",
    );
    // SQL Server through Microsoft's mock TDS server (see sqlserver.rs).
    let ms = crate::sqlserver::Mock::plain().await;
    ms.register(crate::sqlserver::USERS, crate::sqlserver::users())
        .await;
    ms.with_catalog().await;
    let fx = Fixture::builder()
        .tenant("acme", "alice")
        .agent(
            "acme",
            "acme-1",
            vec![
                ("tpch", sqlite(tpch_db())),
                ("pg", postgres(Limits::default())),
                ("my", mysql(Limits::default())),
                ("ms", ms.source(false)),
            ],
        )
        .start()
        .await;
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            &format!("{root}/tests/python"),
        ])
        .env("GATEHOUSE_FLIGHT_URI", format!("grpc://{}", fx.flight))
        .env("GATEHOUSE_USER", "alice")
        .env("GATEHOUSE_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "the Python Flight SQL suite failed:\n{text}"
    );
    assert!(text.contains(" passed"), "pytest ran no test:\n{text}");
    fx.stop().await;
}
