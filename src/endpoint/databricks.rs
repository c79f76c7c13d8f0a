//! `databricks-metadata`: what the Databricks SDKs' `metadata-service` auth asks
//! (`DATABRICKS_METADATA_SERVICE_URL`): a `GET` of that URL, any path, with
//! `X-Databricks-Metadata-Version: 1` and `X-Databricks-Host: <workspace URL>`; the answer is
//! `{"access_token", "token_type", "expires_on"}`, `expires_on` in epoch seconds as a JSON
//! number (the Python SDK hands it to `datetime.fromtimestamp`, the Go SDK reads a
//! `json.Number`).
//!
//! Never answers for a workspace other than the entry's `host`: a token for one workspace
//! sent to another would be refused there at best, and shown to it at worst.

use hyper::{Method, Request, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::{Asking, Protocol, Reply, Route, header};
use crate::access::{Issued, Via};

pub(super) const VERSION: &str = "X-Databricks-Metadata-Version";
pub(super) const HOST: &str = "X-Databricks-Host";

pub(super) struct Databricks {
    /// The workspace URL, without a trailing slash, lowercase.
    host: String,
}

impl Databricks {
    pub(super) fn new(host: &str) -> Databricks {
        Databricks { host: normal(host) }
    }
}

/// A workspace URL as compared: no trailing slash, and case does not matter (scheme and
/// host names are case-insensitive).
fn normal(host: &str) -> String {
    host.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Protocol for Databricks {
    const VIA: Via = Via::DatabricksMetadata;

    fn route<B>(&self, request: &Request<B>, asking: &Asking<'_>) -> Route {
        if request.method() != Method::GET {
            return Route::Answer(self.error(StatusCode::METHOD_NOT_ALLOWED, "GET only"));
        }
        if header(request, VERSION) != Some("1") {
            return Route::Answer(self.error(
                StatusCode::BAD_REQUEST,
                "this metadata service speaks X-Databricks-Metadata-Version: 1",
            ));
        }
        let host = header(request, HOST);
        if host.map(normal).as_deref() != Some(self.host.as_str()) {
            tracing::warn!(
                credential = %asking.credential,
                uid = asking.caller.uid,
                asked_for = ?host.map(|h| h.chars().take(200).collect::<String>()),
                "databricks-metadata: refused a token for another workspace than the endpoint's host"
            );
            return Route::Answer(self.error(
                StatusCode::FORBIDDEN,
                "this endpoint serves another workspace: X-Databricks-Host must be its host",
            ));
        }
        Route::Token
    }

    fn token<B>(&self, _request: &Request<B>, issued: &Issued, _now: OffsetDateTime) -> Reply {
        use secrecy::ExposeSecret as _;
        super::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.token.expose_secret(),
                "token_type": issued.token_type,
                "expires_on": issued.expires_at.unix_timestamp(),
            }),
        )
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        super::json(
            status,
            &json!({ "error_code": status.canonical_reason().unwrap_or("error"), "message": message }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::{asking, body, issued, observed};

    fn request(version: Option<&str>, host: Option<&str>) -> Request<()> {
        let mut builder = Request::get("/anything");
        if let Some(v) = version {
            builder = builder.header(VERSION, v);
        }
        if let Some(h) = host {
            builder = builder.header(HOST, h);
        }
        builder.body(()).unwrap()
    }

    fn status(result: Route) -> StatusCode {
        match result {
            Route::Token => StatusCode::OK,
            Route::Answer(reply) => reply.status(),
        }
    }

    #[test]
    fn the_version_and_the_workspace_must_be_the_ones_served() {
        let p = Databricks::new("https://adb-1.azuredatabricks.net");
        let observed = observed(None, &[]);
        let a = asking(&observed);
        let host = "https://adb-1.azuredatabricks.net";
        assert_eq!(
            status(p.route(&request(Some("1"), Some(host)), &a)),
            StatusCode::OK
        );
        // A trailing slash and case make no difference.
        let same = "HTTPS://ADB-1.azuredatabricks.net/";
        assert_eq!(
            status(p.route(&request(Some("1"), Some(same)), &a)),
            StatusCode::OK
        );
        for (version, host, expected) in [
            (None, Some(host), StatusCode::BAD_REQUEST),
            (Some("2"), Some(host), StatusCode::BAD_REQUEST),
            (Some("1"), None, StatusCode::FORBIDDEN),
            (
                Some("1"),
                Some("https://adb-2.azuredatabricks.net"),
                StatusCode::FORBIDDEN,
            ),
            (
                Some("1"),
                Some("https://adb-1.azuredatabricks.net.evil"),
                StatusCode::FORBIDDEN,
            ),
        ] {
            assert_eq!(
                status(p.route(&request(version, host), &a)),
                expected,
                "{version:?} {host:?}"
            );
        }
        let post = Request::post("/")
            .header(VERSION, "1")
            .header(HOST, host)
            .body(())
            .unwrap();
        assert_eq!(status(p.route(&post, &a)), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_answer_is_what_the_sdks_parse() {
        let p = Databricks::new("https://adb-1.azuredatabricks.net");
        let (issued, expires_at) = issued();
        let reply = p.token(
            &request(Some("1"), None),
            &issued,
            expires_at - time::Duration::minutes(5),
        );
        assert_eq!(reply.headers()["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body(reply)).unwrap();
        assert_eq!(json["access_token"], "tok-en");
        assert_eq!(json["token_type"], "Bearer");
        // A number of epoch seconds, not a string: datetime.fromtimestamp takes no string.
        assert_eq!(
            json["expires_on"],
            serde_json::json!(expires_at.unix_timestamp())
        );
    }
}
