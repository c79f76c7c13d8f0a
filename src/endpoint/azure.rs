//! `azure-managed-identity`: App Service's managed-identity protocol (api-version
//! 2019-08-01), as Azure Identity's `ManagedIdentityCredential` speaks it when
//! `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set: `GET IDENTITY_ENDPOINT?resource=…&
//! api-version=2019-08-01` with the secret in `X-IDENTITY-HEADER`; the answer is
//! `{"access_token", "expires_on", "resource", "token_type"}` with `expires_on` in epoch
//! seconds as a string, as App Service sends it (MSAL and the Go, .NET and JS libraries
//! read it so).
//!
//! The secret is refreshd's own (32 random bytes, kept beside the credential's state) and
//! written for the app through the entry's `header` target; a request without it is 401.
//! Never logs the secret, and compares it in constant time.

use hyper::{Method, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use super::{Asking, Protocol, Reply, Route, header, query};
use crate::access::{Issued, Via};
use crate::config::TargetConfig;
use crate::state::{StateDir, StateError};

pub(super) const SECRET_HEADER: &str = "X-IDENTITY-HEADER";
pub(super) const API_VERSION: &str = "2019-08-01";

pub(super) struct Azure {
    secret: SecretString,
}

impl Azure {
    pub(super) fn new(secret: SecretString) -> Azure {
        Azure { secret }
    }
}

/// `credential`'s secret (made on first use), written to `header` when the file lacks it or
/// holds another. Blocking. A target that cannot be written is logged: the apps that read
/// the secret before still get their tokens.
pub(super) fn secret(
    state: &StateDir,
    credential: &str,
    header: &TargetConfig,
) -> Result<SecretString, StateError> {
    let secret = state.identity_header(credential)?;
    // The secret never expires: the target has no expiry key to write this into.
    let never = OffsetDateTime::UNIX_EPOCH;
    match crate::target::write(header, &secret, never, &state.locks()) {
        Ok(crate::target::Outcome::Written) => tracing::info!(
            credential = %credential,
            target = %header.path.display(),
            "azure-managed-identity: wrote the endpoint's secret for the app (IDENTITY_HEADER)"
        ),
        Ok(crate::target::Outcome::Unchanged) => {}
        Err(e) => tracing::error!(credential = %credential, "azure-managed-identity: {e}"),
    }
    Ok(secret)
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let differ = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    differ == 0
}

impl Protocol for Azure {
    const VIA: Via = Via::AzureManagedIdentity;

    fn route<B>(&self, request: &Request<B>, asking: &Asking<'_>) -> Route {
        if request.method() != Method::GET {
            return Route::Answer(self.error(StatusCode::METHOD_NOT_ALLOWED, "GET only"));
        }
        let sent = header(request, SECRET_HEADER).unwrap_or_default();
        if !same(sent.as_bytes(), self.secret.expose_secret().as_bytes()) {
            tracing::warn!(
                credential = %asking.credential,
                uid = asking.caller.uid,
                "azure-managed-identity: refused a request without the endpoint's X-IDENTITY-HEADER (401)"
            );
            return Route::Answer(self.error(
                StatusCode::UNAUTHORIZED,
                "X-IDENTITY-HEADER is missing or wrong: send the IDENTITY_HEADER refreshd wrote",
            ));
        }
        if query(request, "api-version").as_deref() != Some(API_VERSION) {
            return Route::Answer(self.error(
                StatusCode::BAD_REQUEST,
                "api-version must be 2019-08-01 (App Service)",
            ));
        }
        if query(request, "resource").is_none_or(|r| r.is_empty()) {
            return Route::Answer(self.error(StatusCode::BAD_REQUEST, "resource is required"));
        }
        Route::Token
    }

    fn token<B>(&self, request: &Request<B>, issued: &Issued, _now: OffsetDateTime) -> Reply {
        super::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.token.expose_secret(),
                "expires_on": issued.expires_at.unix_timestamp().to_string(),
                "resource": query(request, "resource").unwrap_or_default(),
                "token_type": issued.token_type,
            }),
        )
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        super::json(
            status,
            &json!({ "statusCode": status.as_u16(), "message": message }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::{asking, body, issued, observed};

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(secret: Option<&str>, query: &str) -> Request<()> {
        let mut builder = Request::get(format!("/msi/token?{query}"));
        if let Some(s) = secret {
            builder = builder.header(SECRET_HEADER, s);
        }
        builder.body(()).unwrap()
    }

    fn status(p: &Azure, request: &Request<()>) -> StatusCode {
        let observed = observed(None, &[]);
        match p.route(request, &asking(&observed)) {
            Route::Token => StatusCode::OK,
            Route::Answer(reply) => reply.status(),
        }
    }

    #[test]
    fn the_secret_the_version_and_a_resource_are_required() {
        let p = Azure::new(SecretString::from(SECRET));
        let good = "resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01";
        assert_eq!(status(&p, &request(Some(SECRET), good)), StatusCode::OK);
        let wrong = SECRET.replace('f', "e");
        for (secret, query, expected) in [
            (None, good, StatusCode::UNAUTHORIZED),
            (Some(wrong.as_str()), good, StatusCode::UNAUTHORIZED),
            (Some(&SECRET[1..]), good, StatusCode::UNAUTHORIZED),
            (Some(""), good, StatusCode::UNAUTHORIZED),
            (
                Some(SECRET),
                "resource=x&api-version=2017-09-01",
                StatusCode::BAD_REQUEST,
            ),
            (
                Some(SECRET),
                "api-version=2019-08-01",
                StatusCode::BAD_REQUEST,
            ),
            (
                Some(SECRET),
                "resource=&api-version=2019-08-01",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            assert_eq!(
                status(&p, &request(secret, query)),
                expected,
                "{secret:?} {query}"
            );
        }
    }

    #[test]
    fn the_answer_is_what_app_service_sends() {
        let p = Azure::new(SecretString::from(SECRET));
        let (issued, expires_at) = issued();
        let request = request(
            Some(SECRET),
            "resource=https%3A%2F%2Fmanagement.azure.com&api-version=2019-08-01",
        );
        let reply = p.token(&request, &issued, expires_at);
        let json: serde_json::Value = serde_json::from_slice(&body(reply)).unwrap();
        assert_eq!(
            json,
            json!({
                "access_token": "tok-en",
                "expires_on": expires_at.unix_timestamp().to_string(),
                "resource": "https://management.azure.com",
                "token_type": "Bearer",
            })
        );
        let error = p.error(StatusCode::UNAUTHORIZED, "no");
        let json: serde_json::Value = serde_json::from_slice(&body(error)).unwrap();
        assert_eq!(json, json!({"statusCode": 401, "message": "no"}));
    }

    #[test]
    fn equal_is_equal_and_nothing_else_is() {
        assert!(same(b"abc", b"abc"));
        assert!(same(b"", b""));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
