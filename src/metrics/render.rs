//! The Prometheus text exposition (0.0.4) of a snapshot: the daemon's own families, one
//! sample per credential of each gauge and counter, the rotation-duration histogram and
//! the store's. Text only: it never shows a token, and never reads anything but its input.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::observe::{
    CredentialStatus, DURATION_BUCKETS, DaemonStatus, Role, Snapshot, StoreStatus,
};

/// The Prometheus text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot, now: OffsetDateTime) -> String {
    let mut text = String::new();
    let out = &mut text;
    family(
        out,
        "refreshd_build_info",
        "gauge",
        "Always 1; the version of the running refreshd as a label.",
    );
    let _ = writeln!(
        out,
        "refreshd_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    if let Some(daemon) = &snapshot.daemon {
        daemon_families(out, daemon);
    }
    times(out, snapshot);
    results(out, snapshot);
    durations(out, snapshot);
    per_credential(
        out,
        snapshot,
        "refreshd_credential_healthy",
        "1 while the credential holds a valid token and needs nobody to act.",
        |c| Some(u8::from(c.health.is_healthy() && c.has_valid_token(now))),
    );
    if let Some(store) = &snapshot.store {
        store_families(out, snapshot, store);
    }
    reload_families(out, snapshot);
    text
}

/// `refreshd_token_reads_total{credential,via}`: tokens handed to other processes
/// (`(credential, via, count)` as [`crate::observe::ReadCounts::all`] lists them).
pub fn reads(counts: &[(String, &'static str, u64)]) -> String {
    let mut text = String::new();
    family(
        &mut text,
        "refreshd_token_reads_total",
        "counter",
        "Tokens handed to other processes (readers), by credential and path.",
    );
    for (name, via, n) in counts {
        let _ = writeln!(
            text,
            "refreshd_token_reads_total{{credential=\"{}\",via=\"{via}\"}} {n}",
            label(name)
        );
    }
    text
}

/// Each reload action's last result and last success.
fn reload_families(out: &mut String, snapshot: &Snapshot) {
    family(
        out,
        "refreshd_reload_last_result",
        "gauge",
        "1 if the reload action's last try worked, 0 while it fails (it is retried).",
    );
    for reload in &snapshot.reloads {
        let _ = writeln!(
            out,
            "refreshd_reload_last_result{{action=\"{}\"}} {}",
            label(&reload.action),
            u8::from(reload.ok)
        );
    }
    family(
        out,
        "refreshd_reload_last_success_timestamp_seconds",
        "gauge",
        "When the reload action last worked (Unix time).",
    );
    for reload in &snapshot.reloads {
        if let Some(at) = reload.last_success {
            let _ = writeln!(
                out,
                "refreshd_reload_last_success_timestamp_seconds{{action=\"{}\"}} {}",
                label(&reload.action),
                at.unix_timestamp()
            );
        }
    }
}

/// When the daemon started and how its config loads went.
fn daemon_families(out: &mut String, daemon: &DaemonStatus) {
    family(
        out,
        "refreshd_start_time_seconds",
        "gauge",
        "When the daemon started (Unix time).",
    );
    let _ = writeln!(
        out,
        "refreshd_start_time_seconds {}",
        daemon.started_at.unix_timestamp()
    );
    family(
        out,
        "refreshd_config_last_reload_successful",
        "gauge",
        "1 if the last load of the config file (start, SIGHUP or an edit) worked; 0 if it was refused and the previous config kept.",
    );
    let _ = writeln!(
        out,
        "refreshd_config_last_reload_successful {}",
        u8::from(daemon.config_reload_ok)
    );
    family(
        out,
        "refreshd_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the config file was last loaded successfully (Unix time).",
    );
    let _ = writeln!(
        out,
        "refreshd_config_last_reload_success_timestamp_seconds {}",
        daemon.config_loaded_at.unix_timestamp()
    );
}

/// Each credential's expiry, last success, next refresh and failures in a row.
fn times(out: &mut String, snapshot: &Snapshot) {
    per_credential(
        out,
        snapshot,
        "refreshd_token_expiry_timestamp_seconds",
        "When the credential's current token expires (Unix time).",
        |c| c.expires_at.map(OffsetDateTime::unix_timestamp),
    );
    per_credential(
        out,
        snapshot,
        "refreshd_last_success_timestamp_seconds",
        "When the credential last got a new token (Unix time).",
        |c| c.last_rotation.map(OffsetDateTime::unix_timestamp),
    );
    per_credential(
        out,
        snapshot,
        "refreshd_next_refresh_timestamp_seconds",
        "When the daemon next tries to refresh the credential (Unix time).",
        |c| c.next_refresh.map(OffsetDateTime::unix_timestamp),
    );
    per_credential(
        out,
        snapshot,
        "refreshd_consecutive_failures",
        "Refresh attempts that failed in a row since the last success.",
        |c| Some(c.consecutive_failures),
    );
    unsaved(out, snapshot);
}

/// The credentials whose newest state the disk refused (kept in memory), with why.
fn unsaved(out: &mut String, snapshot: &Snapshot) {
    let name = "refreshd_state_unsaved";
    family(
        out,
        name,
        "gauge",
        "1 while the credential's newest state is held in memory only, because the state directory refused it (cause: no_space, permission, io).",
    );
    for c in snapshot.credentials() {
        if let Some(cause) = c.unsaved {
            let cause = serde_json::to_value(cause).ok();
            let cause = cause.as_ref().and_then(|v| v.as_str()).unwrap_or("io");
            let _ = writeln!(
                out,
                "{name}{{credential=\"{}\",cause=\"{cause}\"}} 1",
                label(&c.name)
            );
        }
    }
}

/// The rotation and reload counters, by result.
fn results(out: &mut String, snapshot: &Snapshot) {
    type Count = fn(&CredentialStatus) -> u64;
    let families: [(&str, &str, Count, Count); 2] = [
        (
            "refreshd_rotations_total",
            "Rotation attempts since the daemon started, by result.",
            |c| c.counters.rotations_ok,
            |c| c.counters.rotations_failed,
        ),
        (
            "refreshd_reloads_total",
            "Reload actions run after a rotation since the daemon started, by result.",
            |c| c.counters.reloads_ok,
            |c| c.counters.reloads_failed,
        ),
    ];
    for (name, help, ok, failed) in families {
        family(out, name, "counter", help);
        for c in snapshot.credentials() {
            for (result, count) in [("success", ok(c)), ("failure", failed(c))] {
                let _ = writeln!(
                    out,
                    "{name}{{credential=\"{}\",result=\"{result}\"}} {count}",
                    label(&c.name)
                );
            }
        }
    }
}

/// The rotation-duration histogram of each credential.
fn durations(out: &mut String, snapshot: &Snapshot) {
    family(
        out,
        "refreshd_rotation_duration_seconds",
        "histogram",
        "How long a rotation took: fetch, persist, targets, reloads.",
    );
    for c in snapshot.credentials() {
        let name = label(&c.name);
        for (bound, count) in DURATION_BUCKETS.iter().zip(c.counters.duration_buckets) {
            let _ = writeln!(
                out,
                "refreshd_rotation_duration_seconds_bucket{{credential=\"{name}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "refreshd_rotation_duration_seconds_bucket{{credential=\"{name}\",le=\"+Inf\"}} {}\n\
             refreshd_rotation_duration_seconds_sum{{credential=\"{name}\"}} {}\n\
             refreshd_rotation_duration_seconds_count{{credential=\"{name}\"}} {}",
            c.counters.duration_count, c.counters.duration_sum, c.counters.duration_count
        );
    }
}

/// Whether the store answers, how much this node asked of it, and the leases it holds.
fn store_families(out: &mut String, snapshot: &Snapshot, store: &StoreStatus) {
    family(
        out,
        "refreshd_store_up",
        "gauge",
        "1 while the fleet store answers this node.",
    );
    let _ = writeln!(out, "refreshd_store_up {}", u8::from(store.up));
    family(
        out,
        "refreshd_store_queries_total",
        "counter",
        "Statements this node sent to the fleet store.",
    );
    let _ = writeln!(out, "refreshd_store_queries_total {}", store.queries);
    per_credential(
        out,
        snapshot,
        "refreshd_lease_held",
        "1 while this node holds the shared credential's lease (it refreshes it).",
        |c| {
            store
                .credentials
                .get(&c.name)
                .map(|lease| u8::from(lease.role == Role::Leader))
        },
    );
}

/// `refreshd_notifications_total{sink,kind,result}` (`(sink, kind, result, count)` as
/// [`crate::observe::NotificationCounts::all`] lists them).
pub fn notifications(counts: &[(String, &'static str, &'static str, u64)]) -> String {
    let mut text = String::new();
    family(
        &mut text,
        "refreshd_notifications_total",
        "counter",
        "Notifications by sink, event kind and result (sent, error: a try failed and is retried, failed: given up, dropped: pushed out of a full queue).",
    );
    for (sink, kind, result, n) in counts {
        let _ = writeln!(
            text,
            "refreshd_notifications_total{{sink=\"{}\",kind=\"{kind}\",result=\"{result}\"}} {n}",
            label(sink)
        );
    }
    text
}

/// Label values are credential names (`[A-Za-z0-9_.-]`), but escape anyway.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One gauge family with a sample per credential that has a value.
fn per_credential<V: std::fmt::Display>(
    out: &mut String,
    snapshot: &Snapshot,
    name: &str,
    help: &str,
    value: impl Fn(&CredentialStatus) -> Option<V>,
) {
    family(out, name, "gauge", help);
    for c in snapshot.credentials() {
        if let Some(v) = value(c) {
            let _ = writeln!(out, "{name}{{credential=\"{}\"}} {v}", label(&c.name));
        }
    }
}
