//! The human-readable `refreshd status` output of a [`Snapshot`]: a block per credential,
//! then the store and the config. Text only: it never decides a health or an exit status.

use std::fmt::Write as _;

use time::OffsetDateTime;

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
                    let _ = writeln!(out, "store: up; this node is {}", store.node);
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "store: unreachable since {}; this node is {}: {error}",
                        at.show(Some(store.since)),
                        store.node
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
            let _ = writeln!(out, "{}: {health}: {cause} ({})", c.name, c.source);
        }
        None => {
            let _ = writeln!(out, "{}: {} ({})", c.name, c.health.as_str(), c.source);
        }
    }
    identity(out, c);
    let _ = writeln!(out, "  expires_at:    {}", at.show(c.expires_at));
    if let Some(fingerprint) = &c.fingerprint {
        let _ = writeln!(out, "  fingerprint:   {fingerprint}");
    }
    if let Some(served_by) = &c.served_by {
        let _ = writeln!(out, "  served by:     {served_by}");
    }
    for skipped in &c.skipped {
        let _ = writeln!(out, "  skipped:       {skipped}");
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
            lease.holder.as_deref().unwrap_or("none"),
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
            error.message
        );
    }
}

/// Who the token is for and what it allows.
fn identity(out: &mut String, c: &CredentialStatus) {
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
}
