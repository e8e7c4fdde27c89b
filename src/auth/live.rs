//! The tenants' client-authentication settings in force: `hub.toml`'s,
//! with what the provisioning API set in the hub's state taking their
//! place. Re-read when this hub changes them and every few seconds (other
//! replicas may have), and swapped in whole.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::Access;
use super::jwt::{JwksCache, JwtError, Verifier};
use crate::config::hub::Tenant;
use crate::state::{StateError, Store};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

/// The settings in force at one moment.
pub struct Snapshot {
    /// Every tenant's effective settings.
    pub tenants: BTreeMap<String, Tenant>,
    pub jwt: Verifier,
}

impl Snapshot {
    /// The access `roles` give in `tenant`.
    pub fn access(&self, tenant: &str, roles: &[String]) -> Access {
        match self.tenants.get(tenant) {
            Some(t) => Access::of(t, roles.iter().map(String::as_str)),
            None => Access::All,
        }
    }
}

pub struct Live {
    configured: BTreeMap<String, Tenant>,
    store: Option<Store>,
    cache: JwksCache,
    current: RwLock<Arc<Snapshot>>,
}

impl Live {
    pub async fn new(
        configured: BTreeMap<String, Tenant>,
        store: Option<Store>,
    ) -> Result<Live, LiveError> {
        let cache = JwksCache::default();
        let snapshot = build(&configured, store.as_ref(), &cache).await?;
        Ok(Live {
            configured,
            store,
            cache,
            current: RwLock::new(Arc::new(snapshot)),
        })
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().expect("auth settings lock").clone()
    }

    /// Re-reads the settings; on error the ones in force stay.
    pub async fn refresh(&self) -> Result<(), LiveError> {
        let snapshot = build(&self.configured, self.store.as_ref(), &self.cache).await?;
        *self.current.write().expect("auth settings lock") = Arc::new(snapshot);
        Ok(())
    }
}

/// `hub.toml`'s tenants with the state's settings in place of theirs.
pub async fn effective(
    configured: &BTreeMap<String, Tenant>,
    store: Option<&Store>,
) -> Result<BTreeMap<String, Tenant>, StateError> {
    let mut tenants = configured.clone();
    if let Some(store) = store {
        for (name, auth) in store.tenant_auth().await? {
            let t = tenants.entry(name).or_default();
            if auth.identity.is_some() {
                t.identity = auth.identity;
            }
            if let Some(r) = auth.roles {
                t.roles = r;
            }
            if let Some(g) = auth.grants {
                t.grants = g;
            }
        }
    }
    Ok(tenants)
}

async fn build(
    configured: &BTreeMap<String, Tenant>,
    store: Option<&Store>,
    cache: &JwksCache,
) -> Result<Snapshot, LiveError> {
    let tenants = effective(configured, store).await?;
    let jwt = Verifier::from_tenants(&tenants, cache)?;
    Ok(Snapshot { tenants, jwt })
}
