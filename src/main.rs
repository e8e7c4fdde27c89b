use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gatehouse::cli::{AgentCommand, Cli, Command, HubCommand};
use gatehouse::config::{self, agent::AgentConfig, hub::HubConfig};
use tracing_subscriber::EnvFilter;

/// mimalloc: agent and hub allocate and free many short-lived buffers per row
/// and per batch; glibc's allocator spent ~10% more CPU on the MariaDB decode
/// path. Built without transparent huge pages (`no_thp`), which otherwise
/// tripled the agent's resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits: configuration error.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse::transport::tls::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,quinn=warn,h2=warn,tower=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Hub(args) => match args.command {
            Some(HubCommand::DevCa { out, names }) => {
                let pki = gatehouse::transport::tls::DevPki::create(&out, &names)?;
                println!(
                    "wrote {}, {}, {}, {}",
                    pki.ca_cert().display(),
                    pki.ca_key().display(),
                    pki.hub_cert().display(),
                    pki.hub_key().display()
                );
            }
            Some(HubCommand::DevAgentCert { ca_dir, agent_id }) => {
                let (c, k) =
                    gatehouse::transport::tls::DevPki::open(&ca_dir).issue_agent(&agent_id)?;
                println!("wrote {} and {}", c.display(), k.display());
            }
            Some(HubCommand::HashPassword) => {
                let mut pw = String::new();
                std::io::stdin().read_to_string(&mut pw)?;
                let pw = pw.trim_end_matches(['\n', '\r']);
                anyhow::ensure!(!pw.is_empty(), "no password on standard input");
                println!(
                    "{}",
                    gatehouse::auth::hash_password(pw).map_err(|e| anyhow::anyhow!("{e}"))?
                );
            }
            Some(HubCommand::Validate) => {
                config::load::<HubConfig>(&args.config)?;
                println!("{}: ok", args.config.display());
            }
            Some(HubCommand::Admin {
                url,
                key,
                ca,
                action,
            }) => {
                let client =
                    gatehouse::hub::admin_client::AdminClient::new(&url, &key, ca.as_deref())?;
                let answer = client.run(&action).await?;
                if !answer.is_null() {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                }
            }
            Some(HubCommand::ApiKey { name }) => {
                let cfg = config::load::<HubConfig>(&args.config)?;
                let state = cfg.state.context(
                    "the hub has no [state]: the provisioning API and its keys need one",
                )?;
                let store = gatehouse::state::Store::open(&state.url).await?;
                println!("{}", store.create_api_key(&name).await?);
                eprintln!("admin API key {name:?} created; it is shown only now");
            }
            None => {
                let cfg = config::load::<HubConfig>(&args.config)?;
                let hub = gatehouse::hub::Hub::build(cfg)
                    .await
                    .context("starting the hub")?;
                gatehouse::shutdown::run_until_signal(|t| hub.run(t)).await?;
            }
        },
        Command::Agent(args) => {
            if let Some(AgentCommand::Enroll { hub, token, dir }) = &args.command {
                let e = gatehouse::agent::enroll::enroll(hub, token, dir).await?;
                println!(
                    "enrolled as agent {:?} of tenant {:?}\n\nIn agent.toml:\n[hub]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
                    e.agent_id,
                    e.tenant,
                    e.hub_ca.display(),
                    e.cert.display(),
                    e.key.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let cfg = config::load::<AgentConfig>(&args.config)?;
            match args.command {
                Some(AgentCommand::Validate) => println!("{}: ok", args.config.display()),
                Some(AgentCommand::Enroll { .. }) => unreachable!("handled above"),
                None => {
                    let agent =
                        gatehouse::agent::Agent::build(cfg).context("starting the agent")?;
                    gatehouse::shutdown::run_until_signal(|t| agent.run(t)).await?;
                }
            }
        }
        Command::Demo(args) => gatehouse::demo::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
