//! What status shows of the store: this node's view of every shared credential's lease
//! (the fleet's part of the read model, [`crate::observe::FleetView`]) and the nodes'
//! heartbeats. Read-only: nothing here changes the store or the view.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Fleet;
use crate::observe::{FleetView, LeaseStatus, Role, StoreStatus};

/// One row of `status --nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat: OffsetDateTime,
    pub heartbeat_age: Duration,
    pub leases: u64,
}

impl FleetView for Fleet {
    /// Status of the store and of every shared credential, as this node sees them.
    fn status(&self) -> StoreStatus {
        let view = self.view();
        let now = tokio::time::Instant::now();
        let credentials = view
            .rows
            .iter()
            .map(|(name, row)| {
                let role = if view.held.get(name).is_some_and(|until| *until > now) {
                    Role::Leader
                } else if view.local.contains(name) {
                    Role::Local
                } else {
                    Role::Follower
                };
                (
                    name.clone(),
                    LeaseStatus {
                        holder: row.holder.clone(),
                        lease_until: row.lease_until,
                        generation: row.generation,
                        role,
                    },
                )
            })
            .collect();
        StoreStatus {
            node: self.node.clone(),
            up: view.error.is_none(),
            error: view.error.clone(),
            since: view.since,
            queries: self.queries(),
            credentials,
        }
    }
}
