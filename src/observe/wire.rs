//! The wire form of a snapshot: what a daemon sends and `status --json` prints, read back
//! into a [`Snapshot`] with its summary index rebuilt. Serde's side only.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::StoreStatus;
use super::{CredentialStatus, DaemonStatus, Snapshot};

/// The wire form: what a daemon sends and `status --json` prints.
#[derive(Deserialize)]
pub(super) struct Wire {
    from: String,
    #[serde(default)]
    daemon: Option<DaemonStatus>,
    #[serde(default)]
    store: Option<StoreStatus>,
    #[serde(default)]
    reloads: Vec<super::ReloadStatus>,
    credentials: BTreeMap<String, CredentialStatus>,
}

impl From<Wire> for Snapshot {
    fn from(wire: Wire) -> Snapshot {
        let mut snapshot = Snapshot::new(&wire.from);
        snapshot.daemon = wire.daemon;
        snapshot.store = wire.store;
        snapshot.reloads = wire.reloads;
        for (_, status) in wire.credentials {
            snapshot.set(status);
        }
        snapshot
    }
}
