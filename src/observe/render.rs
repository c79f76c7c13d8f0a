//! The human-readable `refreshd status` output of a [`Snapshot`]: a block per credential,
//! then the store and the config. Text only: it never decides a health or an exit status,
//! and it never prints a string from outside (a name, an error, a node) but through
//! [`Shown`], so no escape sequence reaches the operator's terminal.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::shown::Shown;
use super::{CredentialStatus, LeaseStatus, Snapshot};

use crate::token;

impl Snapshot {
    /// The human-readable `refreshd status` output.
    pub fn render(&self, now: OffsetDateTime) -> String {
        let mut out = String::new();
        let at = When { now };
        for c in self.credentials() {
            let lease = self.store.as_ref().and_then(|s| s.credentials.get(&c.name));
            credential(&mut out, c, self.from == "daemon", lease, at);
        }
        self.footer(&mut out, at);
        out
    }

    /// The store's state and a refused config reload.
    fn footer(&self, out: &mut String, at: When) {
        if let Some(store) = &self.store {
            match &store.error {
                None => {
                    let _ = writeln!(out, "store: up; this node is {}", Shown(&store.node));
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "store: unreachable since {}; this node is {}: {}",
                        at.show(Some(store.since)),
                        Shown(&store.node),
                        Shown(error)
                    );
                }
            }
        }
        for reload in &self.reloads {
            let tries = if reload.attempts > 1 {
                format!(" (try {})", reload.attempts)
            } else {
                String::new()
            };
            match &reload.error {
                None => {
                    let _ = writeln!(
                        out,
                        "reload: {}: ok {}{tries}",
                        Shown(&reload.action),
                        at.show(Some(reload.at))
                    );
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "reload: {}: failed {}{tries}, retrying; last success {}: {}",
                        Shown(&reload.action),
                        at.show(Some(reload.at)),
                        at.show(reload.last_success),
                        Shown(error)
                    );
                }
            }
        }
        if let Some(daemon) = self.daemon.as_ref().filter(|d| !d.config_reload_ok) {
            let _ = writeln!(
                out,
                "config: the last reload was refused (see the log); running the config loaded {}",
                at.show(Some(daemon.config_loaded_at))
            );
        }
    }
}

/// A time as status shows it: when, and how far from now.
#[derive(Clone, Copy)]
struct When {
    now: OffsetDateTime,
}

impl When {
    fn show(self, t: Option<OffsetDateTime>) -> String {
        let now = self.now;
        match t {
            Some(t) if t > now => {
                format!("{} (in {})", token::rfc3339(t), token::remaining(t, now))
            }
            Some(t) => format!("{} ({} ago)", token::rfc3339(t), token::remaining(now, t)),
            None => "-".to_owned(),
        }
    }
}

/// One credential's block; `from_daemon` when a running daemon planned its next refresh.
fn credential(
    out: &mut String,
    c: &CredentialStatus,
    from_daemon: bool,
    lease: Option<&LeaseStatus>,
    at: When,
) {
    match c.unsaved {
        Some(cause) => {
            let health = c.health.as_str();
            let (name, source) = (Shown(&c.name), Shown(&c.source));
            let _ = writeln!(out, "{name}: {health}: {cause} ({source})");
        }
        None => {
            let (name, source) = (Shown(&c.name), Shown(&c.source));
            let _ = writeln!(out, "{name}: {} ({source})", c.health.as_str());
        }
    }
    identity(out, c);
    let _ = writeln!(out, "  expires_at:    {}", at.show(c.expires_at));
    if let Some(fingerprint) = &c.fingerprint {
        let _ = writeln!(out, "  fingerprint:   {}", Shown(fingerprint));
    }
    if let Some(served_by) = &c.served_by {
        let _ = writeln!(out, "  served by:     {}", Shown(served_by));
    }
    for skipped in &c.skipped {
        let _ = writeln!(out, "  skipped:       {}", Shown(skipped));
    }
    let _ = writeln!(out, "  last rotation: {}", at.show(c.last_rotation));
    let next = if from_daemon {
        at.show(c.next_refresh)
    } else {
        match c.next_refresh {
            Some(t) => format!("{} (no daemon running)", at.show(Some(t))),
            None => "- (no daemon running)".to_owned(),
        }
    };
    let _ = writeln!(out, "  next refresh:  {next}");
    if let Some(lease) = lease {
        let _ = writeln!(
            out,
            "  store:         {} (holder {}, lease until {}, generation {})",
            lease.role,
            Shown(lease.holder.as_deref().unwrap_or("none")),
            at.show(lease.lease_until),
            lease.generation
        );
    }
    if let Some(error) = &c.last_error {
        let _ = writeln!(
            out,
            "  last error:    {} ({:?}, {}, {} in a row): {}",
            token::rfc3339(error.at),
            error.kind,
            error.cause,
            c.consecutive_failures.max(1),
            Shown(&error.message)
        );
    }
}

/// Who the token is for and what it allows.
fn identity(out: &mut String, c: &CredentialStatus) {
    if let Some(subject) = &c.subject {
        let _ = writeln!(out, "  subject:       {}", Shown(subject));
    }
    if let Some(client_id) = &c.client_id {
        let _ = writeln!(out, "  client_id:     {}", Shown(client_id));
    }
    if let Some(issuer) = &c.issuer {
        let _ = writeln!(out, "  issuer:        {}", Shown(issuer));
    }
    if !c.scopes.is_empty() {
        let _ = writeln!(out, "  scopes:        {}", Shown(&c.scopes.join(" ")));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::observe::{Counters, Health, Role, StoreStatus};
    use crate::state::{Cause, FailureKind, LastError};

    const HOSTILE: &str = "x\u{1b}[2J\u{7}\ny\u{9b}31m\u{7f}";

    fn hostile(now: OffsetDateTime) -> Snapshot {
        let text = || Some(HOSTILE.to_owned());
        let mut snapshot = Snapshot::new("daemon");
        snapshot.set(CredentialStatus {
            name: HOSTILE.into(),
            health: Health::Retrying,
            source: HOSTILE.into(),
            subject: text(),
            client_id: text(),
            issuer: text(),
            scopes: vec![HOSTILE.into()],
            fingerprint: text(),
            served_by: text(),
            skipped: vec![HOSTILE.into()],
            expires_at: None,
            expiry_source: None,
            last_rotation: None,
            last_error: Some(LastError::new(
                now,
                FailureKind::Transient,
                Cause::default(),
                HOSTILE.into(),
            )),
            next_refresh: None,
            consecutive_failures: 1,
            unsaved: None,
            counters: Counters::default(),
        });
        let lease = LeaseStatus {
            holder: text(),
            lease_until: None,
            generation: 1,
            role: Role::Follower,
        };
        snapshot.store = Some(StoreStatus {
            node: HOSTILE.into(),
            up: false,
            error: text(),
            since: now,
            queries: 0,
            credentials: BTreeMap::from([(HOSTILE.to_owned(), lease)]),
        });
        snapshot
    }

    #[test]
    fn strings_from_outside_reach_the_terminal_escaped() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let text = hostile(now).render(now);
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
        // Each field is escaped where it stands: a value cannot add a line of its own.
        let fields = text
            .matches("x\\u{1b}[2J\\u{7}\\u{a}y\\u{9b}31m\\u{7f}")
            .count();
        assert_eq!(fields, 13, "{text}");
        assert_eq!(text.lines().count(), 14, "{text}");
    }
}
