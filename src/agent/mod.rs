//! The agent: dials the hub, never listens, and answers queries against the
//! local data sources under the administrator's own limits.

pub mod allow;
pub mod audit;
mod backoff;
pub mod enroll;
mod query;
pub mod renew;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backoff::Backoff;
pub use session::LANE_REALTIME;

use crate::config::agent::{AgentConfig, SourceConfig};
use crate::connectors::priority::Priority;
use crate::connectors::{self, Connector, ConnectorError};
use crate::protocol::pb;
use crate::transport::{Connection, TransportError, quic, tls};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("source {source_name}: {error}")]
    Source {
        source_name: String,
        error: ConnectorError,
    },
    #[error("cannot resolve hub address {address}: {detail}")]
    Resolve { address: String, detail: String },
    #[error("the hub refused this agent: {0}")]
    Refused(String),
    #[error("tunnel protocol: {0}")]
    Protocol(#[from] crate::protocol::FrameError),
    #[error("the hub did not answer the hello within {0:?}")]
    HelloTimeout(Duration),
    #[error("cannot open the audit file {path}: {error}")]
    Audit {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

/// A configured source with its connector and concurrency permits.
pub struct Source {
    pub name: String,
    pub config: SourceConfig,
    pub connector: Arc<dyn Connector>,
    realtime: Semaphore,
    reload: Semaphore,
    /// Realtime queries running on this agent, shared by all its sources
    /// (`None` when `realtime_first` is off).
    priority: Option<Arc<Priority>>,
    /// The administrator's allow-list of tables, if any.
    allow: Option<allow::AllowList>,
}

impl Source {
    fn info(&self) -> pb::SourceInfo {
        let limits = self.config.limits();
        pb::SourceInfo {
            name: self.name.clone(),
            kind: self.connector.kind().into(),
            modes: limits
                .modes
                .iter()
                .map(|m| pb::Mode::from(*m) as i32)
                .collect(),
            read_only: self.config.read_only(),
            max_rows: limits.max_rows,
        }
    }

    fn permits(&self, mode: pb::Mode) -> &Semaphore {
        if mode == pb::Mode::Reload {
            &self.reload
        } else {
            &self.realtime
        }
    }
}

pub type Sources = Arc<HashMap<String, Arc<Source>>>;

/// What every tunnel session serves with.
#[derive(Clone)]
pub struct Served {
    pub sources: Sources,
    pub audit: Option<Arc<audit::AuditLog>>,
    /// The agent's certificate, renewed over the tunnel before it expires.
    pub identity: renew::Identity,
}

pub struct Agent {
    config: AgentConfig,
    served: Served,
    endpoint: quinn::Endpoint,
    /// Threads for reload queries, apart from the tunnel and realtime work.
    /// (An `Option` only so that `Drop` can shut it down without blocking.)
    bulk: Option<tokio::runtime::Runtime>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Every reload task was awaited by its session; nothing runs there now.
        if let Some(rt) = self.bulk.take() {
            rt.shutdown_background();
        }
    }
}

/// Reload threads run at the lowest priority the OS has (`SCHED_IDLE` on
/// Linux): they get every core nobody else wants, and a waking realtime
/// thread preempts them at once instead of waiting out a time slice.
fn background_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    #[cfg(target_os = "linux")]
    let set = {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .or_else(|_| set_current_thread_priority(ThreadPriority::Min))
    };
    #[cfg(not(target_os = "linux"))]
    let set = set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = set {
        tracing::debug!(error = ?e, "reload threads keep the normal priority");
    }
}

/// How many query streams the hub may have open towards one agent.
const MAX_QUERY_STREAMS: u32 = 512;

impl Agent {
    pub fn build(config: AgentConfig) -> Result<Agent, AgentError> {
        crate::transport::tls::install_crypto_provider();
        let mut sources = HashMap::new();
        let priority = config.realtime_first.then(Priority::new);
        for (name, sc) in &config.sources {
            let connector = connectors::build(sc).map_err(|error| AgentError::Source {
                source_name: name.clone(),
                error,
            })?;
            let limits = sc.limits();
            sources.insert(
                name.clone(),
                Arc::new(Source {
                    name: name.clone(),
                    config: sc.clone(),
                    connector,
                    realtime: Semaphore::new(limits.realtime_concurrency),
                    reload: Semaphore::new(limits.reload_concurrency),
                    priority: priority.clone(),
                    allow: allow::AllowList::of(sc),
                }),
            );
        }
        let identity = renew::Identity {
            cert: config.hub.cert.clone(),
            key: config.hub.key.clone(),
            renew_before: config
                .hub
                .renew_before_days
                .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
        };
        let audit = match &config.audit {
            Some(a) => Some(Arc::new(audit::AuditLog::open(a).map_err(|error| {
                AgentError::Audit {
                    path: a.path.clone(),
                    error,
                }
            })?)),
            None => None,
        };
        let tls = tls::client_config(&config.hub.ca, &config.hub.cert, &config.hub.key)?;
        let bind: SocketAddr = "[::]:0".parse().expect("static address");
        let endpoint =
            quic::client_endpoint(bind, tls.clone(), MAX_QUERY_STREAMS).or_else(|_| {
                quic::client_endpoint("0.0.0.0:0".parse().expect("static"), tls, MAX_QUERY_STREAMS)
            })?;
        let mut bulk = tokio::runtime::Builder::new_multi_thread();
        bulk.worker_threads(2)
            .thread_name("gatehouse-reload")
            .enable_all();
        if config.realtime_first {
            bulk.on_thread_start(background_priority);
        }
        let bulk = bulk
            .build()
            .map_err(|e| AgentError::Transport(TransportError::Io(e)))?;
        Ok(Agent {
            config,
            served: Served {
                sources: Arc::new(sources),
                audit,
                identity,
            },
            endpoint,
            bulk: Some(bulk),
        })
    }

    async fn connect(&self) -> Result<Connection, AgentError> {
        let address = &self.config.hub.address;
        let addr = tokio::net::lookup_host(address.as_str())
            .await
            .map_err(|e| AgentError::Resolve {
                address: address.clone(),
                detail: e.to_string(),
            })?
            .next()
            .ok_or_else(|| AgentError::Resolve {
                address: address.clone(),
                detail: "no addresses".into(),
            })?;
        // The certificate files are read for each connection: a renewed
        // certificate is used from the next one on.
        let hub = &self.config.hub;
        let tls = tls::client_config(&hub.ca, &hub.cert, &hub.key)?;
        let connecting = self
            .endpoint
            .connect_with(
                quic::client_config(tls, MAX_QUERY_STREAMS)?,
                addr,
                hub.server_name(),
            )
            .map_err(TransportError::from)?;
        let conn = connecting.await.map_err(TransportError::from)?;
        Ok(Connection::Quic(conn))
    }

    /// The primary session on `conn` plus, once it is up, a second
    /// connection (the realtime lane) so chart queries do not share a QUIC
    /// connection, and its congestion window, with reloads. The lane ends with
    /// the primary session; without it the hub sends everything on the primary.
    async fn sessions(
        &self,
        conn: &Connection,
        shutdown: &CancellationToken,
        drain: Duration,
        bulk: &tokio::runtime::Handle,
    ) -> Result<(), AgentError> {
        let lane_stop = shutdown.child_token();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let primary = async {
            let r = session::run(
                conn,
                &self.served,
                shutdown,
                drain,
                bulk,
                false,
                Some(ready_tx),
            )
            .await;
            lane_stop.cancel();
            r
        };
        let lane = async {
            if ready_rx.await.is_err() {
                return;
            }
            let lane_conn = tokio::select! {
                c = self.connect() => c,
                _ = lane_stop.cancelled() => return,
            };
            let result = match lane_conn {
                Ok(c) => session::run(&c, &self.served, &lane_stop, drain, bulk, true, None).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result
                && !lane_stop.is_cancelled()
            {
                warn!(error = %e, "realtime lane closed; realtime queries use the primary tunnel");
            }
        };
        let (r, ()) = tokio::join!(primary, lane);
        r
    }

    /// Keeps a tunnel to the hub until `shutdown`, reconnecting with jittered
    /// exponential backoff; on shutdown, running queries get the drain timeout.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let bulk = self
            .bulk
            .as_ref()
            .expect("present until drop")
            .handle()
            .clone();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let hub = self.config.hub.address.clone();
        while !shutdown.is_cancelled() {
            let attempt = tokio::select! {
                r = self.connect() => r,
                _ = shutdown.cancelled() => break,
            };
            match attempt {
                Ok(conn) => {
                    let remote = conn.remote_address();
                    let drain = self.config.drain_timeout();
                    match self.sessions(&conn, &shutdown, drain, &bulk).await {
                        Ok(()) => {
                            info!(%hub, %remote, "tunnel closed");
                            backoff.reset();
                        }
                        Err(AgentError::Refused(why)) => {
                            warn!(%hub, reason = %why, "the hub refused this agent; check the tenant's agent list and the certificate");
                        }
                        Err(e) if shutdown.is_cancelled() => {
                            info!(%hub, error = %e, "tunnel closed during shutdown");
                        }
                        Err(e) => {
                            backoff.reset();
                            warn!(%hub, error = %e, "tunnel lost");
                        }
                    }
                }
                Err(e) => warn!(%hub, error = %e, "cannot reach the hub"),
            }
            if shutdown.is_cancelled() {
                break;
            }
            let delay = backoff.next_delay();
            info!(%hub, retry_in_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        info!("agent stopped");
        Ok(())
    }
}
