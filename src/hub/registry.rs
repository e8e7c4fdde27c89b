//! Connected agents, per tenant. Routing only ever looks inside the caller's tenant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::protocol::pb;
use crate::transport::{CODE_REFUSED, Connection};

pub struct AgentHandle {
    pub id: String,
    pub tenant: String,
    pub conn: Connection,
    pub sources: Vec<pb::SourceInfo>,
    pub version: String,
    pub hostname: String,
    pub connected_at: Instant,
    pub draining: AtomicBool,
    pub inflight: AtomicUsize,
    /// The agent's second connection for realtime traffic, when it has one.
    pub lane: std::sync::Mutex<Option<Connection>>,
}

impl AgentHandle {
    fn close_lane(&self, why: &str) {
        if let Some(lane) = self.lane.lock().expect("lane lock").take() {
            lane.close(CODE_REFUSED, why);
        }
    }

    /// The connection to use: the realtime lane if there is one and the
    /// request is realtime, else the primary tunnel.
    pub fn connection(&self, realtime: bool) -> Connection {
        if realtime && let Some(lane) = self.lane.lock().expect("lane lock").as_ref() {
            return lane.clone();
        }
        self.conn.clone()
    }

    pub fn has_source(&self, name: &str) -> bool {
        self.sources.iter().any(|s| s.name == name)
    }
}

/// Counts a query against an agent while it is alive.
pub struct InflightGuard(Arc<AgentHandle>);

impl InflightGuard {
    pub fn new(agent: Arc<AgentHandle>) -> Self {
        agent.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(agent)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "no agent of this tenant is connected; check that the agent service is running and can reach the hub"
    )]
    NoAgent,
    #[error("no connected agent serves source {source_name:?}; available: {available}")]
    UnknownSource {
        source_name: String,
        available: String,
    },
}

#[derive(Default)]
pub struct Registry {
    tenants: RwLock<HashMap<String, Vec<Arc<AgentHandle>>>>,
}

impl Registry {
    /// Adds an agent; an older connection of the same agent id is closed.
    pub fn register(&self, agent: Arc<AgentHandle>) {
        let mut tenants = self.tenants.write().expect("registry lock");
        let list = tenants.entry(agent.tenant.clone()).or_default();
        list.retain(|a| {
            if a.id == agent.id {
                a.close_lane("replaced by a newer connection of the same agent");
                a.conn.close(
                    CODE_REFUSED,
                    "replaced by a newer connection of the same agent",
                );
                false
            } else {
                true
            }
        });
        list.push(agent);
    }

    /// Removes this connection of the agent (not a newer one).
    pub fn remove(&self, tenant: &str, agent_id: &str, conn_id: usize) {
        let mut tenants = self.tenants.write().expect("registry lock");
        if let Some(list) = tenants.get_mut(tenant) {
            list.retain(|a| {
                let gone = a.id == agent_id && a.conn.id() == conn_id;
                if gone {
                    a.close_lane("the agent's primary tunnel closed");
                }
                !gone
            });
            if list.is_empty() {
                tenants.remove(tenant);
            }
        }
    }

    /// The registered agent `agent_id` of `tenant`, if connected.
    pub fn find(&self, tenant: &str, agent_id: &str) -> Option<Arc<AgentHandle>> {
        self.agents(tenant).into_iter().find(|a| a.id == agent_id)
    }

    pub fn agents(&self, tenant: &str) -> Vec<Arc<AgentHandle>> {
        self.tenants
            .read()
            .expect("registry lock")
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// The tenant's sources (name, kind), sorted and deduplicated.
    pub fn sources(&self, tenant: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .agents(tenant)
            .iter()
            .flat_map(|a| a.sources.iter().map(|s| (s.name.clone(), s.kind.clone())))
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The least busy, non-draining agent of `tenant` that serves `source`.
    pub fn route(&self, tenant: &str, source: &str) -> Result<Arc<AgentHandle>, RouteError> {
        let agents = self.agents(tenant);
        if agents.is_empty() {
            return Err(RouteError::NoAgent);
        }
        let candidates = agents.iter().filter(|a| a.has_source(source));
        let best = candidates
            .clone()
            .filter(|a| !a.draining.load(Ordering::Relaxed))
            .min_by_key(|a| a.inflight.load(Ordering::Relaxed))
            .or_else(|| candidates.min_by_key(|a| a.inflight.load(Ordering::Relaxed)));
        best.cloned().ok_or_else(|| RouteError::UnknownSource {
            source_name: source.to_string(),
            available: self
                .sources(tenant)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn count(&self) -> usize {
        self.tenants
            .read()
            .expect("registry lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}
