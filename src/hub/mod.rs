//! The hub: accepts agent tunnels, serves Arrow Flight SQL, routes queries.

pub mod admin;
pub mod admin_client;
mod admission;
mod audit;
mod flight;
mod parked;
mod query;
mod registry;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use flight::{HEADER_COMPRESSION, HEADER_MODE, HEADER_SOURCE};
pub use registry::Registry;

use crate::auth::{Sessions, Users};
use crate::config::hub::HubConfig;
use crate::transport::{TransportError, quic, tls};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("tunnel listener on {addr}: {error}")]
    Tunnel {
        addr: SocketAddr,
        error: TransportError,
    },
    #[error("Flight SQL listener on {addr}: {error}")]
    Flight {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("Flight SQL server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("identity providers: {0}")]
    Identity(#[from] crate::auth::live::LiveError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("cannot open the audit file {path}: {error}")]
    Audit {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

/// Concurrent streams an agent may open towards the hub (control only).
const AGENT_STREAMS: u32 = 4;
/// Grace period for running Flight calls on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

pub struct Hub {
    config: HubConfig,
    endpoint: quinn::Endpoint,
    flight_listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    auth: Arc<crate::auth::live::Live>,
    audit: Option<Arc<crate::audit::AuditLog>>,
    store: Option<crate::state::Store>,
    admin: Option<admin::AdminServer>,
    signer: Option<Arc<admin::Signer>>,
}

impl Hub {
    /// Binds both listeners, so their addresses are known before `run`.
    pub async fn build(config: HubConfig) -> Result<Hub, HubError> {
        crate::transport::tls::install_crypto_provider();
        let tls = tls::server_config(
            &config.tunnel.cert,
            &config.tunnel.key,
            &config.tunnel.client_ca,
        )?;
        let endpoint =
            quic::server_endpoint(config.tunnel.listen, tls, AGENT_STREAMS).map_err(|error| {
                HubError::Tunnel {
                    addr: config.tunnel.listen,
                    error,
                }
            })?;
        let audit = match &config.audit {
            Some(a) => Some(Arc::new(crate::audit::AuditLog::open(a).map_err(
                |error| HubError::Audit {
                    path: a.path.clone(),
                    error,
                },
            )?)),
            None => None,
        };
        let store = match &config.state {
            Some(s) => Some(crate::state::Store::open(&s.url).await?),
            None => None,
        };
        let auth =
            Arc::new(crate::auth::live::Live::new(config.tenants.clone(), store.clone()).await?);
        let registry = Arc::new(Registry::default());
        let signer = match &config.admin {
            Some(a) => Some(Arc::new(admin::Signer::load(a, &config.tunnel.client_ca)?)),
            None => None,
        };
        let admin = match (&config.admin, &store, &signer) {
            (Some(a), Some(store), Some(signer)) => Some(
                admin::AdminServer::bind(
                    a,
                    store.clone(),
                    registry.clone(),
                    config.tenants.keys().cloned().collect(),
                    signer.clone(),
                    auth.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        let flight_listener = tokio::net::TcpListener::bind(config.flight.listen)
            .await
            .map_err(|error| HubError::Flight {
                addr: config.flight.listen,
                error,
            })?;
        Ok(Hub {
            config,
            endpoint,
            flight_listener,
            registry,
            auth,
            audit,
            store,
            admin,
            signer,
        })
    }

    pub fn tunnel_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("bound endpoint")
    }

    pub fn flight_addr(&self) -> SocketAddr {
        self.flight_listener.local_addr().expect("bound listener")
    }

    /// Where the provisioning API listens, when it is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(admin::AdminServer::local_addr)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), HubError> {
        let tracker = TaskTracker::new();
        let parked = Arc::new(parked::Parked::default());
        let defaults = self
            .config
            .tenants
            .iter()
            .filter_map(|(t, c)| c.default_source.clone().map(|s| (t.clone(), s)))
            .collect();
        let (audit_tx, audit_writer) = match &self.store {
            Some(store) => {
                let (tx, writer) = audit::db_writer(store.clone());
                (Some(tx), Some(writer))
            }
            None => (None, None),
        };
        let audit_writer = async {
            if let Some(w) = audit_writer {
                w.await;
            }
        };
        let service = flight::HubFlight::new(
            self.registry.clone(),
            Users::from_config(&self.config),
            Sessions::new(Duration::from_secs(self.config.flight.token_ttl_secs)),
            self.auth.clone(),
            parked.clone(),
            defaults,
            audit::Sinks {
                file: self.audit.clone(),
                db: audit_tx,
                hash_sql: self
                    .config
                    .audit
                    .as_ref()
                    .is_some_and(|a| a.sql == crate::config::AuditSql::Hash),
            },
        );
        let tunnel_addr = self.tunnel_addr();
        let flight_addr = self.flight_addr();
        info!(%tunnel_addr, %flight_addr, tenants = self.config.tenants.len(), "hub listening");

        let agents = tunnel::serve(
            self.endpoint.clone(),
            self.registry.clone(),
            Arc::new(admission::Admission::new(
                self.config.tenant_of_agent(),
                self.store.clone(),
                self.signer.clone(),
            )),
            shutdown.clone(),
            tracker.clone(),
        );
        let reaper = async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let n = parked.expire();
                        if n > 0 {
                            warn!(expired = n, "dropped queries nobody fetched with DoGet");
                        }
                        // Settings another replica changed through the API.
                        if self.store.is_some()
                            && let Err(e) = self.auth.refresh().await
                        {
                            warn!(error = %e, "could not re-read the tenants' authentication settings");
                        }
                    }
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let mut server = tonic::transport::Server::builder().http2_adaptive_window(Some(true));
        if let (Some(cert), Some(key)) = (&self.config.flight.tls_cert, &self.config.flight.tls_key)
        {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|error| tls::TlsError::Read {
                    path: p.into(),
                    error,
                })
            };
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            server =
                server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to
        // each small response: fatal for realtime queries.
        let incoming =
            tokio_stream::wrappers::TcpListenerStream::new(self.flight_listener).map(|s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            });
        let drain_signal = shutdown.clone();
        let flight = server
            .add_service(FlightServiceServer::new(service).max_decoding_message_size(16 << 20))
            .serve_with_incoming_shutdown(incoming, async move {
                drain_signal.cancelled().await;
                info!("hub shutting down: draining Flight calls");
            });
        let flight = async {
            // Streams still running after the grace period are cut off.
            tokio::select! {
                r = flight => r,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
                    warn!("drain period over; closing remaining Flight streams");
                    Ok(())
                }
            }
        };
        let provisioning = async {
            if let Some(a) = self.admin.take() {
                info!(admin_addr = %a.local_addr(), "provisioning API listening");
                a.run(shutdown.clone(), tracker.clone()).await;
            }
        };
        // Parked queries hold audit records: drop them when Flight is done,
        // so the audit writer sees its last sender go and finishes.
        let flight = async {
            let r = flight.await;
            parked.clear();
            r
        };
        let (served, (), (), (), ()) =
            tokio::join!(flight, agents, reaper, provisioning, audit_writer);
        tracker.close();
        tracker.wait().await;
        self.endpoint.wait_idle().await;
        info!("hub stopped");
        served.map_err(HubError::from)
    }
}
