//! `gce-metadata`: the paths of the Compute Engine metadata server that Google's auth
//! libraries read (`GCE_METADATA_HOST`, `GCE_METADATA_IP`): the probe of `/` (they look for
//! the `Metadata-Flavor: Google` response header), the default service account's `token`
//! (`{"access_token", "expires_in", "token_type"}`), `email`, `scopes`, `aliases` and its
//! recursive listing (`…/default/?recursive=true`, which google-auth's
//! `compute_engine.Credentials` reads before every token), the same under the account's
//! email, and `project/project-id` when the entry names one.
//!
//! As the real server, it requires `Metadata-Flavor: Google` (a browser or a plain proxy
//! does not send it) and refuses any request that carries `X-Forwarded-For` (one relayed by
//! a proxy, perhaps at someone else's request); every response carries the flavor header.
//! It never mints a token for the scopes asked: it serves the credential's one token.

use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::{Asking, Protocol, Reply, Route, header, query, reply};
use crate::access::{Issued, Via};

pub(super) const FLAVOR: &str = "Metadata-Flavor";
const GOOGLE: &str = "Google";
/// What the real server calls a text answer.
const TEXT: &str = "application/text";
const ACCOUNTS: &str = "/computeMetadata/v1/instance/service-accounts";

pub(super) struct Gce {
    email: Option<String>,
    scopes: Vec<String>,
    project_id: Option<String>,
}

impl Gce {
    pub(super) fn new(
        email: Option<String>,
        scopes: Vec<String>,
        project_id: Option<String>,
    ) -> Gce {
        Gce {
            email,
            scopes,
            project_id,
        }
    }

    /// The account's email: the entry's, else the token's subject, else `default`.
    fn email(&self, asking: &Asking<'_>) -> String {
        self.email
            .clone()
            .or_else(|| {
                let snapshot = asking.observed.snapshot();
                snapshot.get(asking.credential)?.subject.clone()
            })
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The entry's scopes, else the token's.
    fn scopes(&self, asking: &Asking<'_>) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        let snapshot = asking.observed.snapshot();
        snapshot
            .get(asking.credential)
            .map(|status| status.scopes.clone())
            .unwrap_or_default()
    }

    /// What a path under `service-accounts/ACCOUNT/` asks; `None` for an account or item
    /// that is not there.
    fn account<B>(&self, request: &Request<B>, rest: &str, asking: &Asking<'_>) -> Option<Route> {
        let (account, item) = rest.split_once('/').unwrap_or((rest, ""));
        let email = self.email(asking);
        if account != "default" && account != email {
            return None;
        }
        let text = |body: String| Route::Answer(reply(StatusCode::OK, TEXT, body));
        Some(match item {
            "token" => Route::Token,
            "email" => text(email),
            "scopes" => text(lines(&self.scopes(asking))),
            "aliases" => text("default\n".to_owned()),
            "" if query(request, "recursive").as_deref() == Some("true") => {
                Route::Answer(super::json(
                    StatusCode::OK,
                    &json!({
                        "aliases": ["default"],
                        "email": email,
                        "scopes": self.scopes(asking),
                    }),
                ))
            }
            "" => text("aliases\nemail\nscopes\ntoken\n".to_owned()),
            _ => return None,
        })
    }
}

/// Each item on a line of its own, as the real server lists them.
fn lines(items: &[String]) -> String {
    items.iter().map(|item| format!("{item}\n")).collect()
}

impl Protocol for Gce {
    const VIA: Via = Via::GceMetadata;

    fn route<B>(&self, request: &Request<B>, asking: &Asking<'_>) -> Route {
        if request.headers().contains_key("x-forwarded-for") {
            tracing::warn!(
                credential = %asking.credential,
                uid = asking.caller.uid,
                "gce-metadata: refused a request relayed by a proxy (X-Forwarded-For)"
            );
            return Route::Answer(self.error(
                StatusCode::FORBIDDEN,
                "Request had an X-Forwarded-For header and was refused",
            ));
        }
        if header(request, FLAVOR) != Some(GOOGLE) {
            return Route::Answer(self.error(
                StatusCode::FORBIDDEN,
                "Missing required header: \"Metadata-Flavor: Google\"",
            ));
        }
        if request.method() != Method::GET {
            return Route::Answer(self.error(StatusCode::METHOD_NOT_ALLOWED, "GET only"));
        }
        let path = request.uri().path();
        let text = |body: &str| Route::Answer(reply(StatusCode::OK, TEXT, body.to_owned()));
        match path {
            "/" => return text("computeMetadata/\n"),
            "/computeMetadata/" | "/computeMetadata" => return text("v1/\n"),
            "/computeMetadata/v1/" | "/computeMetadata/v1" => return text("instance/\nproject/\n"),
            "/computeMetadata/v1/project/project-id" => {
                if let Some(project) = &self.project_id {
                    return text(project);
                }
            }
            _ => {}
        }
        let rest = path
            .strip_prefix(ACCOUNTS)
            .and_then(|r| r.strip_prefix('/'));
        match rest {
            Some("") => text(&format!("default/\n{}/\n", self.email(asking))),
            Some(rest) => self
                .account(request, rest, asking)
                .unwrap_or_else(|| Route::Answer(self.error(StatusCode::NOT_FOUND, "not found"))),
            None if path == ACCOUNTS => text(&format!("default/\n{}/\n", self.email(asking))),
            None => Route::Answer(self.error(StatusCode::NOT_FOUND, "not found")),
        }
    }

    fn token<B>(&self, _request: &Request<B>, issued: &Issued, now: OffsetDateTime) -> Reply {
        use secrecy::ExposeSecret as _;
        // Whole seconds left, rounded down: the library's expiry is never later than ours.
        let expires_in = (issued.expires_at - now).whole_seconds().max(0);
        super::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.token.expose_secret(),
                "expires_in": expires_in,
                "token_type": issued.token_type,
            }),
        )
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        reply(status, "text/plain; charset=utf-8", format!("{message}\n"))
    }

    fn finish(&self, mut reply: Reply) -> Reply {
        reply
            .headers_mut()
            .insert(FLAVOR, HeaderValue::from_static(GOOGLE));
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::{asking, body, issued, observed};

    fn get(path: &str) -> Request<()> {
        Request::get(path).header(FLAVOR, GOOGLE).body(()).unwrap()
    }

    /// (status, body) of what `request` gets short of a token; `TOKEN` for the token.
    fn ask(p: &Gce, request: &Request<()>, asking: &Asking<'_>) -> (StatusCode, String) {
        match p.route(request, asking) {
            Route::Token => (StatusCode::OK, "TOKEN".to_owned()),
            Route::Answer(reply) => {
                let reply = p.finish(reply);
                assert_eq!(
                    reply.headers()[FLAVOR],
                    GOOGLE,
                    "every answer has the flavor"
                );
                (reply.status(), String::from_utf8(body(reply)).unwrap())
            }
        }
    }

    #[test]
    fn the_paths_google_auth_reads_are_answered() {
        let p = Gce::new(None, vec![], Some("demo-project".into()));
        let observed = observed(Some("sa@demo.iam.gserviceaccount.com"), &["openid", "api"]);
        let a = asking(&observed);
        let base = "/computeMetadata/v1/instance/service-accounts";
        for (path, expected) in [
            ("/", "computeMetadata/\n"),
            (
                &format!("{base}/default/email"),
                "sa@demo.iam.gserviceaccount.com",
            ),
            (&format!("{base}/default/scopes"), "openid\napi\n"),
            (
                &format!("{base}/default/"),
                "aliases\nemail\nscopes\ntoken\n",
            ),
            (
                &format!("{base}/"),
                "default/\nsa@demo.iam.gserviceaccount.com/\n",
            ),
            ("/computeMetadata/v1/project/project-id", "demo-project"),
            (&format!("{base}/default/token?scopes=a,b"), "TOKEN"),
            (
                &format!("{base}/sa@demo.iam.gserviceaccount.com/token"),
                "TOKEN",
            ),
        ] {
            assert_eq!(
                ask(&p, &get(path), &a),
                (StatusCode::OK, expected.to_owned()),
                "{path}"
            );
        }
        let (status, text) = ask(&p, &get(&format!("{base}/default/?recursive=true")), &a);
        assert_eq!(status, StatusCode::OK);
        let info: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            info,
            json!({"aliases": ["default"], "email": "sa@demo.iam.gserviceaccount.com", "scopes": ["openid", "api"]})
        );
        for path in [
            format!("{base}/other@demo.iam.gserviceaccount.com/token"),
            format!("{base}/default/identity?audience=x"),
            "/computeMetadata/v1/instance/zone".to_owned(),
        ] {
            assert_eq!(ask(&p, &get(&path), &a).0, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn the_entrys_email_and_scopes_come_first_and_project_id_is_optional() {
        let p = Gce::new(
            Some("app@x.iam.gserviceaccount.com".into()),
            vec!["cloud".into()],
            None,
        );
        let observed = observed(Some("someone-else"), &["api"]);
        let a = asking(&observed);
        let base = "/computeMetadata/v1/instance/service-accounts/default";
        assert_eq!(
            ask(&p, &get(&format!("{base}/email")), &a).1,
            "app@x.iam.gserviceaccount.com"
        );
        assert_eq!(ask(&p, &get(&format!("{base}/scopes")), &a).1, "cloud\n");
        assert_eq!(
            ask(&p, &get("/computeMetadata/v1/project/project-id"), &a).0,
            StatusCode::NOT_FOUND
        );
        // Without an email or a subject, the account is `default`.
        let p = Gce::new(None, vec![], None);
        let observed = super::super::tests::observed(None, &[]);
        assert_eq!(
            ask(&p, &get(&format!("{base}/email")), &asking(&observed)).1,
            "default"
        );
    }

    #[test]
    fn no_flavor_or_a_proxy_is_refused() {
        let p = Gce::new(None, vec![], None);
        let observed = observed(None, &[]);
        let a = asking(&observed);
        let path = "/computeMetadata/v1/instance/service-accounts/default/token";
        let bare = Request::get(path).body(()).unwrap();
        assert_eq!(ask(&p, &bare, &a).0, StatusCode::FORBIDDEN);
        let wrong = Request::get(path)
            .header(FLAVOR, "google")
            .body(())
            .unwrap();
        assert_eq!(ask(&p, &wrong, &a).0, StatusCode::FORBIDDEN);
        let proxied = Request::get(path)
            .header(FLAVOR, GOOGLE)
            .header("X-Forwarded-For", "10.0.0.1")
            .body(())
            .unwrap();
        assert_eq!(ask(&p, &proxied, &a).0, StatusCode::FORBIDDEN);
        let post = Request::post(path).header(FLAVOR, GOOGLE).body(()).unwrap();
        assert_eq!(ask(&p, &post, &a).0, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_token_answer_counts_whole_seconds_down() {
        let p = Gce::new(None, vec![], None);
        let (issued, expires_at) = issued();
        let now = expires_at - time::Duration::milliseconds(90_500);
        let reply = p.finish(p.token(&get("/"), &issued, now));
        assert_eq!(reply.headers()[FLAVOR], GOOGLE);
        let json: serde_json::Value = serde_json::from_slice(&body(reply)).unwrap();
        assert_eq!(
            json,
            json!({"access_token": "tok-en", "expires_in": 90, "token_type": "Bearer"})
        );
    }
}
