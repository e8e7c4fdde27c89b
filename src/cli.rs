//! Command line of the `gatehouse` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Outbound-only data gateway: agent on the customer network, Arrow Flight SQL hub in the cloud"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (cloud side): the agents' tunnel listener and the Flight SQL server.
    Hub(HubArgs),
    /// Run the agent (customer side): dials the hub and serves the local sources.
    Agent(AgentArgs),
    /// Hub and agent in one process with an embedded TPC-H database (SF 0.01).
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Hub configuration file (TOML).
    #[arg(
        long,
        short,
        env = "GATEHOUSE_HUB_CONFIG",
        default_value = "/etc/gatehouse/hub.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<HubCommand>,
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Check the configuration, report every problem, and exit.
    Validate,
    /// Create a development CA and hub certificate (not for production).
    DevCa {
        /// Folder to write ca.pem, ca.key, hub.pem, hub.key into.
        #[arg(long)]
        out: PathBuf,
        /// DNS names and IP addresses the hub certificate is valid for.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
    /// Issue an agent certificate from the development CA (not for production).
    DevAgentCert {
        /// Folder holding ca.pem and ca.key (from dev-ca); the certificate is written there.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Agent id: the certificate's common name, listed under tenants.NAME.agents.
        #[arg(long)]
        agent_id: String,
    },
    /// Read a password on standard input and print its Argon2 hash for password_hash.
    HashPassword,
    /// Call the provisioning API (prints its JSON answer).
    Admin {
        /// The API's address, e.g. https://hub.example.com:8443
        #[arg(long, env = "GATEHOUSE_ADMIN_URL")]
        url: String,
        /// An admin API key (`gatehouse hub api-key NAME`).
        #[arg(long, env = "GATEHOUSE_ADMIN_KEY", hide_env_values = true)]
        key: String,
        /// CA certificate (PEM) to trust for the API, instead of the system's roots.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[command(subcommand)]
        action: crate::hub::admin_client::AdminAction,
    },
    /// Create an admin API key for the provisioning API (needs [state]); printed once.
    ApiKey {
        /// A name for the key (who or what uses it).
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Agent configuration file (TOML).
    #[arg(
        long,
        short,
        env = "GATEHOUSE_AGENT_CONFIG",
        default_value = "/etc/gatehouse/agent.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Check the configuration, report every problem, and exit.
    Validate,
    /// Enrol this agent with a one-time token from the hub's provisioning API:
    /// makes a key pair here, gets the certificate signed, stores both.
    Enroll {
        /// The hub's provisioning API, e.g. https://hub.example.com:8443
        #[arg(long)]
        hub: String,
        /// The enrolment token the hub's API issued.
        #[arg(long, env = "GATEHOUSE_ENROLMENT_TOKEN")]
        token: String,
        /// Where to write agent.pem, agent.key (mode 0600) and hub-ca.pem
        /// (writable by the service, which renews them in place).
        #[arg(long, default_value = "/var/lib/gatehouse")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address of the Flight SQL endpoint.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Keep the demo database and certificates here (default: a temporary folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run the two sample queries and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}
