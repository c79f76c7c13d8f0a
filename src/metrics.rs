//! `metrics_listen`: `GET /metrics` in the Prometheus text format (0.0.4) and `GET /healthz`
//! (200 while every credential holds a valid token, else 503), rendered from the status
//! snapshot. Read-only: it never triggers a refresh, and it never shows a token.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::status::{DURATION_BUCKETS, Snapshot};

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Connections served at once; more are closed at once (a flood of idle connections must
/// not take the daemon's file descriptors).
const MAX_CONNECTIONS: usize = 64;

/// How long one connection may take, headers included (slow clients are cut off).
const CONNECTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, snapshot: watch::Receiver<Snapshot>, clock: SharedClock) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let snapshot = snapshot.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                // Copied under the lock (a pointer per credential), so rendering thousands
                // of credentials never holds up a rotation that publishes.
                let current = snapshot.borrow().clone();
                let response = respond(&request, &current, clock.now());
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
    now: OffsetDateTime,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
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
        "/healthz" => {
            let stale: Vec<&str> = snapshot
                .credentials()
                .filter(|c| !c.has_valid_token(now))
                .map(|c| c.name.as_str())
                .collect();
            if stale.is_empty() {
                reply(StatusCode::OK, "text/plain", "ok\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("no valid token: {}\n", stale.join(", ")),
                )
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Label values are credential names (`[A-Za-z0-9_.-]`), but escape anyway.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let credentials = || snapshot.credentials();

    out.push_str("# HELP refreshd_token_expiry_timestamp_seconds When the credential's current token expires (Unix time).\n");
    out.push_str("# TYPE refreshd_token_expiry_timestamp_seconds gauge\n");
    for c in credentials() {
        if let Some(at) = c.expires_at {
            let _ = writeln!(
                out,
                "refreshd_token_expiry_timestamp_seconds{{credential=\"{}\"}} {}",
                label(&c.name),
                at.unix_timestamp()
            );
        }
    }

    out.push_str(
        "# HELP refreshd_rotations_total Rotation attempts since the daemon started, by result.\n",
    );
    out.push_str("# TYPE refreshd_rotations_total counter\n");
    for c in credentials() {
        for (result, count) in [
            ("success", c.counters.rotations_ok),
            ("failure", c.counters.rotations_failed),
        ] {
            let _ = writeln!(
                out,
                "refreshd_rotations_total{{credential=\"{}\",result=\"{result}\"}} {count}",
                label(&c.name)
            );
        }
    }

    out.push_str("# HELP refreshd_rotation_duration_seconds How long a rotation took: fetch, persist, targets, reloads.\n");
    out.push_str("# TYPE refreshd_rotation_duration_seconds histogram\n");
    for c in credentials() {
        let name = label(&c.name);
        for (bound, count) in DURATION_BUCKETS.iter().zip(c.counters.duration_buckets) {
            let _ = writeln!(
                out,
                "refreshd_rotation_duration_seconds_bucket{{credential=\"{name}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "refreshd_rotation_duration_seconds_bucket{{credential=\"{name}\",le=\"+Inf\"}} {}",
            c.counters.duration_count
        );
        let _ = writeln!(
            out,
            "refreshd_rotation_duration_seconds_sum{{credential=\"{name}\"}} {}",
            c.counters.duration_sum
        );
        let _ = writeln!(
            out,
            "refreshd_rotation_duration_seconds_count{{credential=\"{name}\"}} {}",
            c.counters.duration_count
        );
    }

    out.push_str("# HELP refreshd_credential_healthy 1 while the credential holds a valid token and needs nobody to act.\n");
    out.push_str("# TYPE refreshd_credential_healthy gauge\n");
    for c in credentials() {
        let healthy = c.health.is_healthy() && c.has_valid_token(now);
        let _ = writeln!(
            out,
            "refreshd_credential_healthy{{credential=\"{}\"}} {}",
            label(&c.name),
            u8::from(healthy)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Counters, CredentialStatus, Health};

    fn snapshot(now: OffsetDateTime) -> Snapshot {
        let mut counters = Counters::default();
        counters.observe(true, 0.2);
        counters.observe(false, 12.0);
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
            last_rotation: None,
            last_error: None,
            next_refresh: None,
            consecutive_failures: 0,
            counters,
        };
        let mut snapshot = Snapshot::default();
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
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn healthz_turns_503_when_a_token_expired() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let request = Request::get("/healthz").body(()).unwrap();
        let snapshot = snapshot(now);
        assert_eq!(respond(&request, &snapshot, now).status(), StatusCode::OK);
        let later = now + time::Duration::hours(1);
        assert_eq!(
            respond(&request, &snapshot, later).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let other = Request::get("/nope").body(()).unwrap();
        assert_eq!(
            respond(&other, &snapshot, now).status(),
            StatusCode::NOT_FOUND
        );
    }
}
