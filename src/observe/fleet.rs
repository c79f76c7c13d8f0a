//! The fleet's part of the read model: what this node sees of the store and of each shared
//! credential's lease. The store fills it in ([`FleetView`]); nothing here reaches the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Whatever can say how the fleet stands, asked each time it is shown (it changes with every
/// lease round, not only when a credential is published).
pub trait FleetView: Send + Sync {
    fn status(&self) -> StoreStatus;
}

/// One shared credential as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub holder: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    pub generation: u64,
    pub role: Role,
}

/// What this node does with a shared credential; serialized as the lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// This node holds the lease: it refreshes the credential for the fleet.
    Leader,
    /// Another node refreshes it; this one takes what the store holds.
    Follower,
    /// Refreshing on its own while the store is unreachable.
    Local,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Local => "local",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_keep_their_lowercase_words() {
        for (role, word) in [
            (Role::Leader, "leader"),
            (Role::Follower, "follower"),
            (Role::Local, "local"),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{word}\""));
            assert_eq!(role.to_string(), word);
            assert_eq!(
                serde_json::from_str::<Role>(&format!("\"{word}\"")).unwrap(),
                role
            );
        }
    }
}
