//! Gatehouse: an outbound-only data gateway. The agent runs next to the
//! customer's databases and dials the hub; the hub serves Arrow Flight SQL to
//! the analytics platform and routes each query to the right tenant's agent.
#![forbid(unsafe_code)]

pub mod agent;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod hub;
pub mod protocol;
pub mod shutdown;
pub mod state;
pub mod transport;
