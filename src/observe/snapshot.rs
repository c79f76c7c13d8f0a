//! The snapshot: every credential's status by name, the daemon's own, and the store's,
//! with the one-line summary and the verdict kept up to date as statuses change. A value:
//! it never reads the state directory, the store or the clock (it is handed `now`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::StoreStatus;
use super::wire::Wire;
use super::{CredentialStatus, Health, Verdict};
use crate::token;

/// The daemon itself, for `status --json` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Whether the last attempt to load the config file (at start, on SIGHUP or on an edit)
    /// worked; a failed one keeps the running config.
    pub config_reload_ok: bool,
    /// When the config was last loaded successfully.
    #[serde(with = "time::serde::rfc3339")]
    pub config_loaded_at: OffsetDateTime,
}

/// Every credential's status, by name, with what the one-line summary needs kept up to
/// date as statuses change (a rotation costs the same with ten credentials or ten
/// thousand). Change it through [`Snapshot::set`] and [`Snapshot::remove`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Wire")]
pub struct Snapshot {
    /// `daemon` when a running daemon answered, `state` when read from the state directory.
    pub from: String,
    /// Set by a running daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonStatus>,
    /// Set by a running daemon with a fleet store: the store and each shared credential's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
    /// Set by a running daemon: each reload action's last result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reloads: Vec<super::ReloadStatus>,
    /// Shared, so a copy for a reader costs a pointer per credential, not a status.
    credentials: BTreeMap<Arc<str>, Arc<CredentialStatus>>,
    #[serde(skip)]
    index: SummaryIndex,
}

/// The unhealthy credentials and the next refreshes, by time.
#[derive(Debug, Clone, Default, PartialEq)]
struct SummaryIndex {
    unhealthy: BTreeSet<Arc<str>>,
    next: BTreeSet<(OffsetDateTime, Arc<str>)>,
}

impl SummaryIndex {
    fn add(&mut self, name: &Arc<str>, status: &CredentialStatus) {
        if !status.health.is_healthy() && status.health != Health::Pending {
            self.unhealthy.insert(name.clone());
        }
        if let Some(at) = status.next_refresh {
            self.next.insert((at, name.clone()));
        }
    }

    fn remove(&mut self, name: &Arc<str>, status: &CredentialStatus) {
        self.unhealthy.remove(name);
        if let Some(at) = status.next_refresh {
            self.next.remove(&(at, name.clone()));
        }
    }
}

impl Snapshot {
    pub fn new(from: &str) -> Snapshot {
        Snapshot {
            from: from.to_owned(),
            ..Snapshot::default()
        }
    }

    /// This snapshot as it stands at `now` (see [`CredentialStatus::health_at`]), for
    /// whoever asks: status is computed when asked, not when last published.
    pub fn at(mut self, now: OffsetDateTime) -> Snapshot {
        let changed: Vec<CredentialStatus> = self
            .credentials
            .values()
            .filter_map(|status| {
                let health = status.health_at(now);
                (health != status.health).then(|| CredentialStatus {
                    health,
                    ..CredentialStatus::clone(status)
                })
            })
            .collect();
        for status in changed {
            self.set(status);
        }
        self
    }

    pub fn credentials(&self) -> impl ExactSizeIterator<Item = &CredentialStatus> {
        self.credentials.values().map(|status| &**status)
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&CredentialStatus> {
        self.credentials.get(name).map(|status| &**status)
    }

    /// Sets the status of `status.name`, replacing any earlier one.
    pub fn set(&mut self, status: CredentialStatus) {
        let name = match self.credentials.get_key_value(status.name.as_str()) {
            Some((name, old)) => {
                let name = name.clone();
                self.index.remove(&name, old);
                name
            }
            None => Arc::from(status.name.as_str()),
        };
        self.index.add(&name, &status);
        self.credentials.insert(name, Arc::new(status));
    }

    pub fn remove(&mut self, name: &str) {
        if let Some((name, old)) = self.credentials.remove_entry(name) {
            self.index.remove(&name, &old);
        }
    }

    /// The one-line summary for sd_notify `STATUS=`: "3 credentials ok; next: databricks in 41m".
    pub fn summary(&self, now: OffsetDateTime) -> String {
        let total = self.credentials.len();
        let unhealthy = &self.index.unhealthy;
        let mut line = if total == 0 {
            "no credentials configured".to_owned()
        } else if unhealthy.is_empty() {
            format!("{total} credential{} ok", if total == 1 { "" } else { "s" })
        } else {
            format!(
                "{} of {total} unhealthy: {}",
                unhealthy.len(),
                unhealthy
                    .iter()
                    .map(|name| &**name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if let Some((at, name)) = self.index.next.first() {
            line.push_str(&format!("; next: {name} in {}", token::remaining(*at, now)));
        }
        line
    }

    /// What `refreshd status` concludes (its exit status: 0, 1, 3).
    pub fn verdict(&self) -> Verdict {
        if self.credentials.is_empty()
            || self
                .credentials
                .values()
                .all(|c| c.health == Health::Pending)
        {
            Verdict::NoData
        } else if self.credentials.values().all(|c| c.health.is_healthy()) {
            Verdict::Healthy
        } else {
            Verdict::Unhealthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::observe::Counters;

    fn status(name: &str, health: Health, next: Option<i64>) -> CredentialStatus {
        CredentialStatus {
            name: name.into(),
            health,
            source: "oauth-refresh".into(),
            subject: None,
            client_id: None,
            issuer: None,
            scopes: vec![],
            fingerprint: None,
            served_by: Some("sources[1] command".into()),
            skipped: vec!["sources[0] oauth-refresh: invalid_grant".into()],
            expires_at: None,
            expiry_source: None,
            last_rotation: None,
            last_error: None,
            next_refresh: next.map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap()),
            consecutive_failures: 0,
            unsaved: None,
            counters: Counters::default(),
        }
    }

    #[test]
    fn summary_names_the_next_refresh_and_the_unhealthy() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let mut snapshot = Snapshot::default();
        for (name, health, next) in [
            ("a", Health::Ok, 1_000_000 + 41 * 60),
            ("b", Health::Ok, 1_000_000 + 50 * 60),
            ("c", Health::Retrying, 1_000_000 + 90 * 60),
        ] {
            snapshot.set(status(name, health, Some(next)));
        }
        assert_eq!(snapshot.summary(now), "3 credentials ok; next: a in 41m");
        assert_eq!(snapshot.verdict(), Verdict::Healthy);
        let mut b = snapshot.get("b").unwrap().clone();
        b.health = Health::NeedsLogin;
        snapshot.set(b);
        assert_eq!(snapshot.summary(now), "1 of 3 unhealthy: b; next: a in 41m");
        assert_eq!(snapshot.verdict(), Verdict::Unhealthy);
        assert_eq!(Snapshot::default().verdict(), Verdict::NoData);
    }

    #[test]
    fn health_is_as_of_asking() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let mut ok = status("a", Health::Ok, None);
        ok.expires_at = Some(now + time::Duration::minutes(5));
        let mut snapshot = Snapshot::default();
        snapshot.set(ok);
        assert_eq!(snapshot.clone().at(now).verdict(), Verdict::Healthy);
        // Nothing happened since, but the token's time is up.
        let later = snapshot.at(now + time::Duration::minutes(6));
        assert_eq!(later.get("a").unwrap().health, Health::Expired);
        assert_eq!(later.verdict(), Verdict::Unhealthy);
    }
}
