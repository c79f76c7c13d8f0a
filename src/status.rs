//! Status: what refreshd knows about each credential, as one serializable snapshot. The
//! daemon's credential tasks publish it, and `refreshd status`, the control socket and
//! `/metrics` read it; without a daemon it is rebuilt from the state directory.
//!
//! A status never holds a token or a refresh token: only fingerprints, times and errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Credential;
use crate::state::{CredentialState, LastError};
use crate::store::StoreStatus;
use crate::token::{self, ExpirySource};

/// How a credential is doing, from an operator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Holds a valid token; the last refresh worked.
    Ok,
    /// Holds a valid token; the last refresh failed and is being retried.
    Retrying,
    /// A permanent failure: a person must act (new login, fixed client). Targets keep the
    /// old token while it lasts.
    NeedsLogin,
    /// No valid token: the targets hold an expired one or none.
    Expired,
    /// The state could not be stored (a full or failing disk): it lives in refreshd's
    /// memory, and is lost, newest refresh token and all, if refreshd stops before it is.
    Unsaved,
    /// The daemon has not finished its first attempt yet.
    Pending,
}

impl Health {
    /// Healthy means the targets hold a token that works and nobody needs to act.
    pub fn is_healthy(self) -> bool {
        matches!(self, Health::Ok | Health::Retrying)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Retrying => "retrying",
            Health::NeedsLogin => "needs-login",
            Health::Expired => "expired",
            Health::Unsaved => "unsaved",
            Health::Pending => "pending",
        }
    }
}

/// Upper bounds (seconds) of the rotation-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters since the daemon started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub rotations_ok: u64,
    pub rotations_failed: u64,
    /// Reload actions run after a rotation, by result.
    #[serde(default)]
    pub reloads_ok: u64,
    #[serde(default)]
    pub reloads_failed: u64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then the total count.
    pub duration_buckets: [u64; 9],
    pub duration_count: u64,
    pub duration_sum: f64,
}

impl Counters {
    pub fn observe(&mut self, ok: bool, seconds: f64) {
        if ok {
            self.rotations_ok += 1;
        } else {
            self.rotations_failed += 1;
        }
        for (bucket, bound) in self.duration_buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.duration_count += 1;
        self.duration_sum += seconds;
    }

    /// `run` reload actions ran after a rotation; `failed` of them failed.
    pub fn observe_reloads(&mut self, run: usize, failed: usize) {
        self.reloads_ok += run.saturating_sub(failed) as u64;
        self.reloads_failed += failed as u64;
    }
}

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

/// One credential's status line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialStatus {
    pub name: String,
    pub health: Health,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For a chain: the member that served the current token (`sources[1] command`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// …and why each member before it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_source: Option<ExpirySource>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_rotation: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_refresh: Option<OffsetDateTime>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub counters: Counters,
}

impl CredentialStatus {
    /// The status a stored state implies at `now`; `next_refresh` is the caller's (the
    /// daemon knows its jittered deadline, the state directory does not).
    pub fn from_state(
        credential: &Credential,
        state: &CredentialState,
        next_refresh: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> CredentialStatus {
        let token = state.token.as_ref();
        let valid = token.is_some_and(|t| t.is_valid_at(now));
        let health = if state.needs_login {
            Health::NeedsLogin
        } else if !valid {
            if token.is_none() && state.last_error.is_none() {
                Health::Pending
            } else {
                Health::Expired
            }
        } else if state.consecutive_failures > 0 {
            Health::Retrying
        } else {
            Health::Ok
        };
        CredentialStatus {
            name: credential.name.clone(),
            health,
            source: credential.source.kind().to_owned(),
            subject: token.and_then(|t| t.subject.clone()),
            client_id: token
                .and_then(|t| t.client_id.clone())
                .or_else(|| credential.source.client_id().map(str::to_owned)),
            issuer: token.and_then(|t| t.issuer.clone()),
            scopes: token.map(|t| t.scopes.clone()).unwrap_or_default(),
            fingerprint: token.map(|t| t.fingerprint()),
            served_by: token.and_then(|t| t.served.as_ref()).map(|s| s.by.clone()),
            skipped: token
                .and_then(|t| t.served.as_ref())
                .map(|s| s.skipped.clone())
                .unwrap_or_default(),
            expires_at: token.map(|t| t.expires_at),
            expiry_source: token.map(|t| t.expiry_source),
            last_rotation: state.last_rotation,
            last_error: state.last_error.clone(),
            next_refresh,
            consecutive_failures: state.consecutive_failures,
            counters: Counters::default(),
        }
    }

    /// The daemon holds this credential's state in memory only: `reason` says why.
    pub fn mark_unsaved(&mut self, reason: &str, at: OffsetDateTime) {
        self.health = Health::Unsaved;
        self.last_error = Some(LastError::new(
            at,
            crate::state::FailureKind::Transient,
            crate::state::Cause::State,
            format!("the state could not be stored, it is kept in memory: {reason}"),
        ));
    }

    /// The health as of `now`: one that was healthy when published is `expired` once its
    /// token's time is up, whether or not anything happened since.
    pub fn health_at(&self, now: OffsetDateTime) -> Health {
        if self.health.is_healthy() && !self.has_valid_token(now) {
            Health::Expired
        } else {
            self.health
        }
    }

    pub fn has_valid_token(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at > now)
    }
}

/// The whole snapshot in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// No credentials, or none has finished its first attempt.
    NoData,
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
    /// Shared, so a copy for a reader costs a pointer per credential, not a status.
    credentials: BTreeMap<Arc<str>, Arc<CredentialStatus>>,
    #[serde(skip)]
    index: SummaryIndex,
}

/// The wire form: what a daemon sends and `status --json` prints.
#[derive(Deserialize)]
struct Wire {
    from: String,
    #[serde(default)]
    daemon: Option<DaemonStatus>,
    #[serde(default)]
    store: Option<StoreStatus>,
    credentials: BTreeMap<String, CredentialStatus>,
}

impl From<Wire> for Snapshot {
    fn from(wire: Wire) -> Snapshot {
        let mut snapshot = Snapshot::new(&wire.from);
        snapshot.daemon = wire.daemon;
        snapshot.store = wire.store;
        for (_, status) in wire.credentials {
            snapshot.set(status);
        }
        snapshot
    }
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

    /// The human-readable `refreshd status` output.
    pub fn render(&self, now: OffsetDateTime) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let at = |t: Option<OffsetDateTime>| match t {
            Some(t) if t > now => {
                format!("{} (in {})", token::rfc3339(t), token::remaining(t, now))
            }
            Some(t) => format!("{} ({} ago)", token::rfc3339(t), token::remaining(now, t)),
            None => "-".to_owned(),
        };
        for c in self.credentials.values() {
            let _ = writeln!(out, "{}: {} ({})", c.name, c.health.as_str(), c.source);
            if let Some(subject) = &c.subject {
                let _ = writeln!(out, "  subject:       {subject}");
            }
            if let Some(client_id) = &c.client_id {
                let _ = writeln!(out, "  client_id:     {client_id}");
            }
            if let Some(issuer) = &c.issuer {
                let _ = writeln!(out, "  issuer:        {issuer}");
            }
            if !c.scopes.is_empty() {
                let _ = writeln!(out, "  scopes:        {}", c.scopes.join(" "));
            }
            let _ = writeln!(out, "  expires_at:    {}", at(c.expires_at));
            if let Some(fingerprint) = &c.fingerprint {
                let _ = writeln!(out, "  fingerprint:   {fingerprint}");
            }
            if let Some(served_by) = &c.served_by {
                let _ = writeln!(out, "  served by:     {served_by}");
            }
            for skipped in &c.skipped {
                let _ = writeln!(out, "  skipped:       {skipped}");
            }
            let _ = writeln!(out, "  last rotation: {}", at(c.last_rotation));
            let next = if self.from == "daemon" {
                at(c.next_refresh)
            } else {
                match c.next_refresh {
                    Some(t) => format!("{} (no daemon running)", at(Some(t))),
                    None => "- (no daemon running)".to_owned(),
                }
            };
            let _ = writeln!(out, "  next refresh:  {next}");
            if let Some(lease) = self.store.as_ref().and_then(|s| s.credentials.get(&c.name)) {
                let _ = writeln!(
                    out,
                    "  store:         {} (holder {}, lease until {}, generation {})",
                    lease.role,
                    lease.holder.as_deref().unwrap_or("none"),
                    at(lease.lease_until),
                    lease.generation
                );
            }
            if let Some(error) = &c.last_error {
                let _ = writeln!(
                    out,
                    "  last error:    {} ({:?}, {} in a row): {}",
                    token::rfc3339(error.at),
                    error.kind,
                    c.consecutive_failures.max(1),
                    error.message
                );
            }
        }
        if let Some(store) = &self.store {
            match &store.error {
                None => {
                    let _ = writeln!(out, "store: up; this node is {}", store.node);
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "store: unreachable since {}; this node is {}: {error}",
                        at(Some(store.since)),
                        store.node
                    );
                }
            }
        }
        if let Some(daemon) = self.daemon.as_ref().filter(|d| !d.config_reload_ok) {
            let _ = writeln!(
                out,
                "config: the last reload was refused (see the log); running the config loaded {}",
                at(Some(daemon.config_loaded_at))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut counters = Counters::default();
        counters.observe(true, 0.07);
        counters.observe(false, 3.0);
        assert_eq!(counters.duration_buckets, [0, 1, 1, 1, 1, 1, 2, 2, 2]);
        assert_eq!((counters.rotations_ok, counters.rotations_failed), (1, 1));
        assert_eq!(counters.duration_count, 2);
    }
}
