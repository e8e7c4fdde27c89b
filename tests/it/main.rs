//! Integration tests, in one binary: a real hub and agents over a real QUIC
//! tunnel, real Flight SQL clients (arrow-flight here, ADBC and pyarrow in
//! `python.rs`), and a real PostgreSQL and MariaDB started by `tests/run`;
//! SQL Server through Microsoft's mock TDS server (`sqlserver.rs`).

mod conformance;
mod enrol;
mod flight_sql;
mod harness;
mod jwt;
mod mariadb;
mod policy;
mod postgres;
mod python;
mod sqlserver;
mod state;
mod tenants;
mod tunnel;
