//! What status shows of the store: this node's view of every shared credential's lease and
//! the nodes' heartbeats. Read-only: nothing here changes the store or the view.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Fleet;

/// One shared credential as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub holder: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    pub generation: u64,
    /// `leader` (this node holds the lease), `follower`, or `local` (refreshing on its own
    /// while the store is unreachable).
    pub role: String,
}

/// The store as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub node: String,
    pub up: bool,
    /// Why it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Statements sent since start (the store's load, per node).
    #[serde(default)]
    pub queries: u64,
    pub credentials: BTreeMap<String, LeaseStatus>,
}

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

impl Fleet {
    /// Status of the store and of every shared credential, as this node sees them.
    pub fn status(&self) -> StoreStatus {
        let view = self.view();
        let now = tokio::time::Instant::now();
        let credentials = view
            .rows
            .iter()
            .map(|(name, row)| {
                let role = if view.held.get(name).is_some_and(|until| *until > now) {
                    "leader"
                } else if view.local.contains(name) {
                    "local"
                } else {
                    "follower"
                };
                (
                    name.clone(),
                    LeaseStatus {
                        holder: row.holder.clone(),
                        lease_until: row.lease_until,
                        generation: row.generation,
                        role: role.to_owned(),
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
