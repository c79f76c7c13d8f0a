//! `metrics_listen`: `GET /metrics` in the Prometheus text format (0.0.4), rendered from the
//! read model ([`render`]), and three probes:
//! - `/livez`: the watchdog's verdict (the same signal as sd_notify `WATCHDOG=1`): 503 only
//!   when refreshd itself is stuck, never because a provider is down, so a liveness probe
//!   restarts a wedged daemon and leaves one riding out an outage alone;
//! - `/readyz`: every credential finished its first attempt and holds a valid token;
//! - `/healthz`: every credential holds a valid token (kept as it was).
//!
//! Read-only: it never triggers a refresh, and it never shows a token.

mod render;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};

pub use render::render;

use crate::observe::{NotificationCounts, Observed, ReadCounts, Snapshot, Vitals};
use crate::serve::{HEAD, Handler, Limits, Place, Reserve, Timed};

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// At most 64 connections at once; each has [`HEAD`] to send its request head (slow
/// clients are cut off) and 10 s in all. Beyond those, eight reserved places answer the
/// probes only ([`Reserve`] says why they evict rather than refuse), so whoever holds the 64
/// cannot make a liveness probe fail and have refreshd restarted.
const LIMITS: Limits = Limits {
    connections: 64,
    head: HEAD,
    connection: Some(Duration::from_secs(10)),
    reserve: Some(Reserve {
        places: 8,
        head: Duration::from_secs(1),
    }),
    queue: false,
};

/// The paths a reserved place answers: what an orchestrator's probes ask, from memory.
const PROBES: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, observed: Observed) {
    crate::serve::serve("metrics", listener, LIMITS, Http { observed }).await;
}

/// Answers HTTP/1 requests from the read model.
#[derive(Clone)]
struct Http {
    observed: Observed,
}

impl Handler<TcpStream> for Http {
    async fn serve(self, stream: Timed<TcpStream>, place: Place) {
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            if place == Place::Reserved && !PROBES.contains(&request.uri().path()) {
                let busy = reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "too many connections open: only /livez, /readyz and /healthz are answered now\n".into(),
                );
                return std::future::ready(Ok::<_, Infallible>(busy));
            }
            let now = self.observed.now();
            // Only the metrics show the store (a probe must not copy every lease).
            let current = if request.uri().path() == "/metrics" {
                self.observed.status(now)
            } else {
                self.observed.snapshot()
            };
            let reads = self.observed.read_counts();
            let notifications = self.observed.notification_counts();
            let counts = Counts {
                reads: &reads,
                notifications: &notifications,
            };
            let response = respond(&request, &current, self.observed.vitals(), counts, now);
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service);
        let _ = connection.await;
    }
}

/// The counters kept beside the snapshot.
#[derive(Clone, Copy)]
struct Counts<'a> {
    reads: &'a ReadCounts,
    notifications: &'a NotificationCounts,
}

fn respond<B>(
    request: &Request<B>,
    snapshot: &Snapshot,
    vitals: &Vitals,
    counts: Counts<'_>,
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
            render(snapshot, now)
                + &render::reads(&counts.reads.all())
                + &render::notifications(&counts.notifications.all()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Counters, CredentialStatus, DaemonStatus, Health};

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
            unsaved: None,
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
        let (reads, notifications) = (ReadCounts::default(), NotificationCounts::default());
        let counts = Counts {
            reads: &reads,
            notifications: &notifications,
        };
        let status = |path: &str, at: OffsetDateTime| {
            let request = Request::get(path).body(()).unwrap();
            respond(&request, &snapshot, &vitals, counts, at).status()
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

    #[test]
    fn notifications_are_counted_by_sink_kind_and_result() {
        let counts = NotificationCounts::default();
        counts.add("ops", "failing", crate::observe::Delivery::Error);
        counts.add("ops", "failing", crate::observe::Delivery::Sent);
        counts.add("ops", "recovered", crate::observe::Delivery::Dropped);
        let text = render::notifications(&counts.all());
        for line in [
            "# TYPE refreshd_notifications_total counter",
            "refreshd_notifications_total{sink=\"ops\",kind=\"failing\",result=\"sent\"} 1",
            "refreshd_notifications_total{sink=\"ops\",kind=\"failing\",result=\"error\"} 1",
            "refreshd_notifications_total{sink=\"ops\",kind=\"recovered\",result=\"dropped\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
