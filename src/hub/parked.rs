//! Queries started by `GetFlightInfo`, waiting for the client's `DoGet`.
//!
//! Starting the query at `GetFlightInfo` gives the client the real result
//! schema and saves a round trip to the agent. A parked query that nobody
//! fetches is dropped after [`PARK_TTL`], which cancels it at the agent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;

use super::query::Running;

pub const PARK_TTL: Duration = Duration::from_secs(60);
/// Most queries one tenant may have waiting for a `DoGet`.
pub const MAX_PARKED_PER_TENANT: usize = 256;

struct Entry {
    tenant: String,
    parked_at: Instant,
    running: Running,
}

#[derive(Default)]
pub struct Parked {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Parked {
    pub fn park(&self, tenant: &str, running: Running) -> Result<String, Status> {
        let mut entries = self.entries.lock().expect("parked lock");
        let waiting = entries.values().filter(|e| e.tenant == tenant).count();
        if waiting >= MAX_PARKED_PER_TENANT {
            return Err(Status::resource_exhausted(format!(
                "{waiting} queries of your tenant are waiting for DoGet; fetch or abandon some first"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        entries.insert(
            id.clone(),
            Entry {
                tenant: tenant.to_string(),
                parked_at: Instant::now(),
                running,
            },
        );
        Ok(id)
    }

    /// Takes a parked query, only for the tenant that parked it.
    pub fn take(&self, tenant: &str, id: &str) -> Option<Running> {
        let mut entries = self.entries.lock().expect("parked lock");
        match entries.get(id) {
            Some(e) if e.tenant == tenant => entries.remove(id).map(|e| e.running),
            _ => None,
        }
    }

    /// Drops queries parked for longer than the TTL; returns how many.
    pub fn expire(&self) -> usize {
        let expired: Vec<Entry> = {
            let mut entries = self.entries.lock().expect("parked lock");
            let old: Vec<String> = entries
                .iter()
                .filter(|(_, e)| e.parked_at.elapsed() > PARK_TTL)
                .map(|(k, _)| k.clone())
                .collect();
            old.iter().filter_map(|k| entries.remove(k)).collect()
        };
        expired.len()
    }

    pub fn clear(&self) {
        let all: Vec<Entry> = self
            .entries
            .lock()
            .expect("parked lock")
            .drain()
            .map(|(_, e)| e)
            .collect();
        drop(all);
    }
}
