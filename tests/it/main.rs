//! Integration tests, in one binary: a real hub and agents over a real QUIC
//! tunnel, real Flight SQL clients (arrow-flight here, ADBC and pyarrow in
//! `python.rs`), and a real PostgreSQL started by `tests/run`.

mod harness;
mod flight_sql;
mod postgres;
mod tunnel;
mod tenants;
mod python;
