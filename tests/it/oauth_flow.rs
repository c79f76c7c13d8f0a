//! `refreshd once` against a real OAuth server (`oidc-provider` from npm, on loopback):
//! rotating refresh tokens, client credentials with a secret and with a private-key
//! assertion, `invalid_grant`, and concurrent runs on one credential.

use crate::common::{Oidc, Refreshd, assert_success, jwt_claims, stderr};

/// Tokens live 60 s; refresh 50 s after issue, so a fresh token is not due right away.
const TIMING: &str = "refresh_at = \"50s\"\nmin_remaining = \"10s\"\n";

struct Setup {
    oidc: Oidc,
    refreshd: Refreshd,
}

fn setup() -> Setup {
    let refreshd = Refreshd::new();
    let oidc = Oidc::start(refreshd.dir.path(), 60);
    std::fs::create_dir(refreshd.path("app")).unwrap();
    Setup { oidc, refreshd }
}

impl Setup {
    /// A refresh-grant credential named `databricks` writing all three target kinds.
    fn refresh_config(&self, client_id: &str, secret: &str, auth: &str, refresh_token: &str) {
        let r = &self.refreshd;
        std::fs::write(r.path("bootstrap.refresh"), format!("{refresh_token}\n")).unwrap();
        std::fs::write(r.path("client.secret"), secret).unwrap();
        r.write_config(&format!(
            r#"[credentials.databricks]
{TIMING}source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "{client_id}", auth = "{auth}", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [
  {{ type = "dotenv", path = "{dir}/app/.env", key = "DATABRICKS_OAUTH_TOKEN", expires_at_key = "DATABRICKS_OAUTH_TOKEN_EXPIRES_AT" }},
  {{ type = "pgpass", path = "{dir}/app/.pgpass", host = "db.example.com", port = 5432, database = "postgres", username = "alice" }},
  {{ type = "file", path = "{dir}/app/token" }},
]
"#,
            url = self.oidc.token_endpoint,
            dir = r.dir.path().display(),
        ));
    }

    fn access_token(&self) -> String {
        self.refreshd.state("databricks")["token"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn refresh_token(&self) -> String {
        self.refreshd.state("databricks")["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.refreshd.path(name)).unwrap()
    }
}

#[test]
fn rotating_refresh_tokens_end_to_end() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &grant.refresh_token);
    std::fs::write(
        s.refreshd.path("app/.env"),
        "# app settings\nAPI_URL=https://api.example.com\n",
    )
    .unwrap();

    assert_success(&s.refreshd.run(&["once"]));
    let first_access = s.access_token();
    let first_refresh = s.refresh_token();
    assert_ne!(
        first_refresh, grant.refresh_token,
        "the rotated refresh token is stored"
    );
    let claims = jwt_claims(&first_access);
    assert_eq!(
        (claims["client_id"].as_str(), claims["sub"].as_str()),
        (Some("rt-basic"), Some("alice"))
    );
    let expires_at = s.refreshd.state("databricks")["token"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.read("app/.env"),
        format!(
            "# app settings\nAPI_URL=https://api.example.com\nDATABRICKS_OAUTH_TOKEN={first_access}\nDATABRICKS_OAUTH_TOKEN_EXPIRES_AT={expires_at}\n"
        )
    );
    assert_eq!(
        s.read("app/.pgpass"),
        format!("db.example.com:5432:postgres:alice:{first_access}\n")
    );
    assert_eq!(s.read("app/token"), format!("{first_access}\n"));
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 1);

    // --force spends the rotated refresh token: the bootstrap one would get invalid_grant.
    assert_success(&s.refreshd.run(&["once", "--force"]));
    let second_access = s.access_token();
    let second_refresh = s.refresh_token();
    assert_ne!(second_access, first_access);
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 2);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    assert_eq!(s.read("app/token"), format!("{second_access}\n"));

    // Not due yet: no token request, targets already current.
    assert_success(&s.refreshd.run(&["once"]));
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 2);

    let printed = s
        .refreshd
        .command(&["token", "databricks"])
        .output()
        .unwrap();
    assert_success(&printed);
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        format!("{second_access}\n")
    );

    s.refreshd.assert_no_secrets(&[
        &grant.refresh_token,
        &grant.access_token,
        &first_access,
        &first_refresh,
        &second_access,
        &second_refresh,
        "rt-basic-secret",
    ]);
}

#[test]
fn rotated_refresh_token_survives_a_target_that_cannot_be_written() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &grant.refresh_token);
    std::fs::remove_dir(s.refreshd.path("app")).unwrap();

    let failed = s.refreshd.run(&["once"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stderr(&failed).contains(&format!("target {}", s.refreshd.path("app/.env").display())),
        "{}",
        stderr(&failed)
    );
    // The provider rotated the refresh token; it is on disk although no target was written.
    let stored = s.refresh_token();
    assert_ne!(stored, grant.refresh_token);

    std::fs::create_dir(s.refreshd.path("app")).unwrap();
    assert_success(&s.refreshd.run(&["once"]));
    assert_eq!(s.read("app/token"), format!("{}\n", s.access_token()));
    assert_eq!(
        s.oidc.count("by_grant", "refresh_token"),
        1,
        "the still-valid token was reused"
    );

    assert_success(&s.refreshd.run(&["once", "--force"]));
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    s.refreshd
        .assert_no_secrets(&[&grant.refresh_token, &stored, &s.access_token()]);
}

#[test]
fn a_new_bootstrap_refresh_token_takes_over_from_the_stored_one() {
    let mut s = setup();
    let first = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &first.refresh_token);
    assert_success(&s.refreshd.run(&["once"]));
    let stored = s.refresh_token();

    // An operator logs in again and puts the new refresh token in place.
    let second = s.oidc.grant("rt-basic");
    std::fs::write(s.refreshd.path("bootstrap.refresh"), &second.refresh_token).unwrap();
    let output = s.refreshd.run(&["once", "--force"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("the configured refresh token is new"),
        "{}",
        stderr(&output)
    );
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    // The first grant's stored token was not spent: it still refreshes.
    let still_alive = s
        .oidc
        .refresh_directly("rt-basic", "rt-basic-secret", &stored);
    assert!(still_alive.get("access_token").is_some(), "{still_alive}");

    // The next run carries on with the token rotated from the new bootstrap.
    assert_success(&s.refreshd.run(&["once", "--force"]));
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    s.refreshd.assert_no_secrets(&[
        &first.refresh_token,
        &second.refresh_token,
        &stored,
        &s.refresh_token(),
    ]);
}

#[test]
fn client_secret_post_authentication() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-post");
    s.refresh_config("rt-post", "rt-post-secret", "post", &grant.refresh_token);
    assert_success(&s.refreshd.run(&["once"]));
    assert_eq!(jwt_claims(&s.access_token())["client_id"], "rt-post");
    assert_eq!(s.oidc.count("by_auth", "client_secret_post"), 1);
    s.refreshd.assert_no_secrets(&[
        &grant.refresh_token,
        &s.refresh_token(),
        &s.access_token(),
        "rt-post-secret",
    ]);
}

#[test]
fn invalid_grant_is_permanent_and_targets_keep_the_old_token() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &grant.refresh_token);
    assert_success(&s.refreshd.run(&["once"]));
    let before: Vec<String> = ["app/.env", "app/.pgpass", "app/token"]
        .iter()
        .map(|f| s.read(f))
        .collect();
    let held = s.access_token();

    // Someone replays the spent bootstrap token: the provider revokes the whole grant.
    let replay = s
        .oidc
        .refresh_directly("rt-basic", "rt-basic-secret", &grant.refresh_token);
    assert_eq!(replay["error"], "invalid_grant");

    let failed = s.refreshd.run(&["once", "--force"]);
    assert_eq!(failed.status.code(), Some(1));
    let log = stderr(&failed);
    assert!(
        log.contains("invalid_grant") && log.contains("grant request is invalid"),
        "{log}"
    );
    assert!(log.contains("needs_login=true"), "{log}");
    let state = s.refreshd.state("databricks");
    assert_eq!(state["needs_login"], true);
    assert_eq!(state["last_error"]["kind"], "permanent");
    let after: Vec<String> = ["app/.env", "app/.pgpass", "app/token"]
        .iter()
        .map(|f| s.read(f))
        .collect();
    assert_eq!(
        before, after,
        "a failed refresh leaves the targets as they were"
    );
    assert_eq!(s.access_token(), held);
    s.refreshd
        .assert_no_secrets(&[&grant.refresh_token, &s.refresh_token(), &held]);
}

#[test]
fn concurrent_once_processes_make_one_token_request() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &grant.refresh_token);
    let children: Vec<_> = (0..4)
        .map(|_| {
            s.refreshd
                .command(&["once"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_success(&output);
        s.refreshd.record(&output);
    }
    assert_eq!(
        s.oidc.count("by_grant", "refresh_token"),
        1,
        "{}",
        s.oidc.stats()
    );
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    assert_eq!(s.read("app/token"), format!("{}\n", s.access_token()));
    s.refreshd
        .assert_no_secrets(&[&grant.refresh_token, &s.refresh_token(), &s.access_token()]);
}

#[test]
fn client_credentials_with_a_secret() {
    let mut s = setup();
    let dir = s.refreshd.dir.path().display().to_string();
    std::fs::write(s.refreshd.path("cc.secret"), "cc-secret-secret\n").unwrap();
    std::fs::write(s.refreshd.path("cc-post.secret"), "cc-post-secret").unwrap();
    s.refreshd.write_config(&format!(
        r#"[credentials.m2m]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-secret", client_secret = {{ file = "{dir}/cc.secret" }}, scopes = ["api"] }}
targets = [ {{ type = "file", path = "{dir}/app/m2m", newline = false }} ]

[credentials.m2m-post]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-post", auth = "post", client_secret = {{ file = "{dir}/cc-post.secret" }}, scopes = ["api"] }}
targets = [ {{ type = "dotenv", path = "{dir}/app/.env", key = "TOKEN" }} ]
"#,
        url = s.oidc.token_endpoint
    ));
    assert_success(&s.refreshd.run(&["once"]));
    let token = s.read("app/m2m");
    let claims = jwt_claims(&token);
    assert_eq!(
        (claims["client_id"].as_str(), claims["scope"].as_str()),
        (Some("cc-secret"), Some("api"))
    );
    let state = s.refreshd.state("m2m");
    assert_eq!(state["token"]["expiry_source"], "jwt_exp");
    assert!(state.get("refresh_token").is_none());
    let post_token = s.refreshd.state("m2m-post")["token"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.read("app/.env"), format!("TOKEN={post_token}\n"));
    assert_eq!(jwt_claims(&post_token)["client_id"], "cc-post");
    assert_eq!(s.oidc.count("by_grant", "client_credentials"), 2);
    s.refreshd
        .assert_no_secrets(&[&token, &post_token, "cc-secret-secret", "cc-post-secret"]);
}

#[test]
fn client_credentials_with_a_private_key_assertion() {
    let mut s = setup();
    let dir = s.refreshd.dir.path().display().to_string();
    s.refreshd.write_config(&format!(
        r#"[credentials.m2m]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-jwt", private_key = {{ file = "{key}" }}, key_id = "{kid}", scopes = ["api"] }}
targets = [ {{ type = "file", path = "{dir}/app/m2m" }} ]
"#,
        url = s.oidc.token_endpoint,
        key = s.oidc.cc_jwt_key.display(),
        kid = s.oidc.cc_jwt_kid,
    ));
    assert_success(&s.refreshd.run(&["once"]));
    let token = s.read("app/m2m").trim_end().to_owned();
    assert_eq!(jwt_claims(&token)["client_id"], "cc-jwt");
    assert_eq!(s.oidc.count("by_auth", "private_key_jwt"), 1);
    // A second assertion must carry a fresh jti (the provider refuses a replayed one).
    assert_success(&s.refreshd.run(&["once", "--force"]));
    assert_eq!(s.oidc.count("by_auth", "private_key_jwt"), 2);
    assert_eq!(s.oidc.count("by_error", "invalid_client"), 0);
    let key = std::fs::read_to_string(&s.oidc.cc_jwt_key).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();
    s.refreshd.assert_no_secrets(&[&token, &key_body]);
}

#[test]
fn a_wrong_client_secret_is_invalid_client() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "not-the-secret", "basic", &grant.refresh_token);
    let failed = s.refreshd.run(&["once"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stderr(&failed).contains("invalid_client"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(s.refreshd.state("databricks")["needs_login"], true);
    assert!(
        !s.refreshd.path("app/token").exists(),
        "no target is written without a token"
    );
    s.refreshd
        .assert_no_secrets(&[&grant.refresh_token, "not-the-secret"]);
}

/// design §4: on a first start (no state), a still-valid JWT already in a target is taken
/// over instead of spending the refresh token; an expired or opaque one is not.
#[test]
fn a_valid_token_already_in_a_target_is_reused_on_first_start() {
    let mut s = setup();
    let grant = s.oidc.grant("rt-basic");
    s.refresh_config("rt-basic", "rt-basic-secret", "basic", &grant.refresh_token);
    // The token an earlier script (or a lost state directory) left in the app's .env.
    std::fs::write(
        s.refreshd.path("app/.env"),
        format!("DATABRICKS_OAUTH_TOKEN={}\n", grant.access_token),
    )
    .unwrap();
    let before = s.oidc.count("by_grant", "refresh_token");

    let output = s.refreshd.run(&["once"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("reusing the still-valid token found in a target"),
        "{}",
        stderr(&output)
    );
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), before);
    assert_eq!(s.access_token(), grant.access_token);
    // The other targets were brought up to date with it.
    assert_eq!(s.read("app/token"), format!("{}\n", grant.access_token));

    // A forced run still refreshes, with the bootstrap refresh token.
    assert_success(&s.refreshd.run(&["once", "--force"]));
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), before + 1);
    assert_ne!(s.access_token(), grant.access_token);
    s.refreshd.assert_no_issued_tokens(&s.oidc);
}

/// The provider's reuse counters, which the fleet's kill series relies on, tell a refresh token
/// spent again after an answer nobody presented from one spent again after its answer was used.
#[test]
fn the_provider_tells_a_reuse_after_a_lost_answer_from_one_after_a_used_answer() {
    let s = setup();
    let refresh = |token: &str| {
        s.oidc
            .refresh_directly("rt-basic", "rt-basic-secret", token)
    };
    let counters = || {
        let stats = s.oidc.stats();
        (
            stats["reuse_after_answer_lost"].as_u64().unwrap(),
            stats["reuse_after_answer_used"].as_u64().unwrap(),
        )
    };
    let lost = s.oidc.grant("rt-basic");
    assert!(refresh(&lost.refresh_token)["refresh_token"].is_string());
    assert_eq!(refresh(&lost.refresh_token)["error"], "invalid_grant");
    assert_eq!(counters(), (1, 0));

    let used = s.oidc.grant("rt-basic");
    let answer = refresh(&used.refresh_token)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(refresh(&answer)["access_token"].is_string());
    assert_eq!(refresh(&used.refresh_token)["error"], "invalid_grant");
    assert_eq!(counters(), (1, 1));
}
