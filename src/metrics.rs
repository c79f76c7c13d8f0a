//! `metrics_listen`: `GET /metrics` in the Prometheus text format (0.0.4), rendered from the
//! status snapshot, and three probes:
//! - `/livez`: the watchdog's verdict (the same signal as sd_notify `WATCHDOG=1`): 503 only
//!   when refreshd itself is stuck, never because a provider is down, so a liveness probe
//!   restarts a wedged daemon and leaves one riding out an outage alone;
//! - `/readyz`: every credential finished its first attempt and holds a valid token;
//! - `/healthz`: every credential holds a valid token (kept as it was).
//!
//! Read-only: it never triggers a refresh, and it never shows a token.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::observe::{CredentialStatus, DURATION_BUCKETS, Observed, Role, Snapshot, Vitals};

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Connections served at once; more are closed at once (a flood of idle connections must
/// not take the daemon's file descriptors).
const MAX_CONNECTIONS: usize = 64;

/// How long one connection may take, headers included (slow clients are cut off).
const CONNECTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, observed: Observed) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open, closing another");
            continue;
        };
        let observed = observed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let now = observed.now();
                // Only the metrics show the store (a probe must not copy every lease).
                let current = if request.uri().path() == "/metrics" {
                    observed.status(now)
                } else {
                    observed.snapshot()
                };
                let response = respond(&request, &current, observed.vitals(), now);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
        });
    }
}

fn respond<B>(
    request: &Request<B>,
    snapshot: &Snapshot,
    vitals: &Vitals,
    now: OffsetDateTime,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(snapshot, now),
        ),
        "/healthz" => probe(without_valid_token(snapshot, now)),
        "/livez" => probe(vitals.alive()),
        "/readyz" => probe(if vitals.ready() {
            without_valid_token(snapshot, now)
        } else {
            Err("the first refreshes are still under way".to_owned())
        }),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// 200 `ok`, or 503 with the reason.
fn probe(verdict: Result<(), String>) -> Response<Full<Bytes>> {
    match verdict {
        Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        Err(reason) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{reason}\n"),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// `Err` naming every credential without a valid token at `now`.
fn without_valid_token(snapshot: &Snapshot, now: OffsetDateTime) -> Result<(), String> {
    let stale: Vec<&str> = snapshot
        .credentials()
        .filter(|c| !c.has_valid_token(now))
        .map(|c| c.name.as_str())
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("no valid token: {}", stale.join(", ")))
    }
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

    for (name, help, ok, failed) in [
        (
            "refreshd_rotations_total",
            "Rotation attempts since the daemon started, by result.",
            (|c| c.counters.rotations_ok) as fn(&CredentialStatus) -> u64,
            (|c| c.counters.rotations_failed) as fn(&CredentialStatus) -> u64,
        ),
        (
            "refreshd_reloads_total",
            "Reload actions run after a rotation since the daemon started, by result.",
            |c| c.counters.reloads_ok,
            |c| c.counters.reloads_failed,
        ),
    ] {
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

    per_credential(
        out,
        snapshot,
        "refreshd_credential_healthy",
        "1 while the credential holds a valid token and needs nobody to act.",
        |c| Some(u8::from(c.health.is_healthy() && c.has_valid_token(now))),
    );
    if let Some(store) = &snapshot.store {
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
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Counters, DaemonStatus, Health};

    fn snapshot(now: OffsetDateTime) -> Snapshot {
        let mut counters = Counters::default();
        counters.observe(true, 0.2);
        counters.observe(false, 12.0);
        counters.observe_reloads(3, 1);
        let status = CredentialStatus {
            name: "db".into(),
            health: Health::Ok,
            source: "oauth-refresh".into(),
            subject: None,
            client_id: None,
            issuer: None,
            scopes: vec![],
            fingerprint: Some("3f9a1c07".into()),
            served_by: None,
            skipped: Vec::new(),
            expires_at: Some(now + time::Duration::minutes(30)),
            expiry_source: None,
            last_rotation: Some(now - time::Duration::minutes(20)),
            last_error: None,
            next_refresh: Some(now + time::Duration::minutes(10)),
            consecutive_failures: 2,
            counters,
        };
        let mut snapshot = Snapshot::default();
        snapshot.daemon = Some(DaemonStatus {
            started_at: now - time::Duration::hours(1),
            config_reload_ok: false,
            config_loaded_at: now - time::Duration::minutes(30),
        });
        snapshot.set(status);
        snapshot
    }

    #[test]
    fn metrics_have_the_designed_names_and_labels() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let text = render(&snapshot(now), now);
        for line in [
            "refreshd_token_expiry_timestamp_seconds{credential=\"db\"} 1800001800",
            "refreshd_rotations_total{credential=\"db\",result=\"success\"} 1",
            "refreshd_rotations_total{credential=\"db\",result=\"failure\"} 1",
            "refreshd_rotation_duration_seconds_bucket{credential=\"db\",le=\"0.25\"} 1",
            "refreshd_rotation_duration_seconds_bucket{credential=\"db\",le=\"+Inf\"} 2",
            "refreshd_rotation_duration_seconds_count{credential=\"db\"} 2",
            "refreshd_credential_healthy{credential=\"db\"} 1",
            &format!(
                "refreshd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "refreshd_start_time_seconds 1799996400",
            "refreshd_config_last_reload_successful 0",
            "refreshd_config_last_reload_success_timestamp_seconds 1799998200",
            "refreshd_last_success_timestamp_seconds{credential=\"db\"} 1799998800",
            "refreshd_next_refresh_timestamp_seconds{credential=\"db\"} 1800000600",
            "refreshd_consecutive_failures{credential=\"db\"} 2",
            "refreshd_reloads_total{credential=\"db\",result=\"success\"} 2",
            "refreshd_reloads_total{credential=\"db\",result=\"failure\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_answer_from_tokens_readiness_and_the_watchdog() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let snapshot = snapshot(now);
        let vitals = Vitals::new(std::time::Duration::from_secs(30));
        let status = |path: &str, at: OffsetDateTime| {
            let request = Request::get(path).body(()).unwrap();
            respond(&request, &snapshot, &vitals, at).status()
        };
        let later = now + time::Duration::hours(1);
        assert_eq!(status("/healthz", now), StatusCode::OK);
        assert_eq!(status("/healthz", later), StatusCode::SERVICE_UNAVAILABLE);
        // Not ready until the first round is done, then ready while tokens are valid.
        assert_eq!(status("/readyz", now), StatusCode::SERVICE_UNAVAILABLE);
        vitals.set_ready();
        assert_eq!(status("/readyz", now), StatusCode::OK);
        assert_eq!(status("/readyz", later), StatusCode::SERVICE_UNAVAILABLE);
        // Alive through a provider outage (an expired token), not when stuck.
        assert_eq!(status("/livez", later), StatusCode::OK);
        vitals.beat(vec!["the timer queue".to_owned()]);
        assert_eq!(status("/livez", now), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status("/nope", now), StatusCode::NOT_FOUND);
    }
}
