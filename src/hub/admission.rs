//! Which tenant an agent belongs to: listed in `hub.toml`, or enrolled in
//! the hub's state. A revoked agent is refused whatever the file says.

use std::collections::HashMap;
use std::sync::Arc;

use super::admin::Signer;
use crate::state::Store;

pub struct Admission {
    /// Agent id -> tenant, from `tenants.NAME.agents`.
    listed: HashMap<String, String>,
    store: Option<Store>,
    /// Signs renewed certificates, when the provisioning API is configured.
    signer: Option<Arc<Signer>>,
}

impl Admission {
    pub fn new(
        listed: HashMap<String, String>,
        store: Option<Store>,
        signer: Option<Arc<Signer>>,
    ) -> Admission {
        Admission {
            listed,
            store,
            signer,
        }
    }

    /// A new certificate for a connected, enrolled agent's new key.
    pub async fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<(String, i64), String> {
        let (Some(store), Some(signer)) = (&self.store, &self.signer) else {
            return Err("this hub does not renew certificates (no provisioning API); enrol again with a new token".into());
        };
        match store.agent(agent_id).await.map_err(|e| e.to_string())? {
            Some(a) if a.revoked_ms.is_none() => {}
            _ => {
                return Err(format!(
                    "agent {agent_id:?} was not enrolled with a token, so the hub does not renew its certificate"
                ));
            }
        }
        let (pem, not_after_ms) = signer.sign(csr_pem, agent_id)?;
        store
            .renew_agent(agent_id, not_after_ms)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(agent = %agent_id, not_after_ms, "agent certificate renewed");
        Ok((pem, not_after_ms))
    }

    /// The agent's tenant, or why it is refused (said to the agent).
    pub async fn tenant_of(&self, agent_id: &str) -> Result<String, String> {
        let enrolled = match &self.store {
            Some(s) => s.agent(agent_id).await.map_err(|e| {
                format!("the hub cannot check this agent right now ({e}); it will retry")
            })?,
            None => None,
        };
        match enrolled {
            Some(a) if a.revoked_ms.is_some() => Err(format!(
                "agent {agent_id:?} was revoked; enrol it again with a new token"
            )),
            Some(a) => Ok(a.tenant),
            None => self.listed.get(agent_id).cloned().ok_or_else(|| {
                format!(
                    "agent {agent_id:?} is not assigned to a tenant on this hub; enrol it with a token, or add it to tenants.NAME.agents"
                )
            }),
        }
    }

    /// Records that an enrolled agent is connected, with the tunnel's round trip.
    pub async fn seen(&self, agent_id: &str, version: &str, rtt: std::time::Duration) {
        if let Some(s) = &self.store
            && let Err(e) = s
                .seen(agent_id, version, Some(rtt.as_secs_f64() * 1e3))
                .await
        {
            tracing::warn!(agent = %agent_id, error = %e, "could not record the agent's visit");
        }
    }
}
