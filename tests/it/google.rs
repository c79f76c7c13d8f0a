//! The Google sources against real peers: `google-service-account` against a Google-like
//! token endpoint (`tests/fixtures/oidc/google-token.mjs`, which verifies every assertion
//! with `jose`), and `google-authorized-user` against the oidc-provider fixture's `adc-user`
//! client (client_secret_post, refresh tokens that do not rotate, like Google's).
//!
//! Proven here: the assertion's header and every claim, the `ya29.` token in the target, its
//! expiry from `expires_in`; Google's clock-skew answer is a transient clock problem
//! (`retrying`) that leaves the target alone, and a bad signature is `needs-login`; `check`
//! refuses a broken key file naming its path; application-default credentials are read from
//! `file`, `$CLOUDSDK_CONFIG` and `$HOME`, spent with client_secret_post and never rewritten.
//! Every test ends with the leak check over everything refreshd printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{
    NodeFixture, Oidc, Refreshd, assert_success, get_json, get_tokens, jwt_claims, stderr,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_EMAIL: &str = "refreshd-test@refreshd-test.iam.gserviceaccount.com";
const KID: &str = "6f1c2a9d0b3e4f5a6b7c8d9e0f1a2b3c4d5e6f70";
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/bigquery",
    "https://www.googleapis.com/auth/devstorage.read_only",
];
const TIME_ERROR: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
const ENV_BEFORE: &str = "# app settings\nPROJECT=refreshd-test\n";

// ---------------------------------------------------------------------------------------------
// The Google-like token endpoint.

/// A running `google-token.mjs`. Exits with the test (its stdin is our pipe) or when dropped.
struct GoogleToken {
    _node: NodeFixture,
    token_uri: String,
    base_url: String,
    http: reqwest::blocking::Client,
}

impl GoogleToken {
    /// Verifies assertions against `public_key` (SPKI PEM) for `CLIENT_EMAIL` and `KID`;
    /// `subject` is the `sub` it requires (none: it refuses one).
    fn start(dir: &Path, public_key: &Path, subject: Option<&str>) -> GoogleToken {
        // An empty SA_SUBJECT is the fixture's "unset": it overrides any SA_SUBJECT around us.
        let node = NodeFixture::start(
            "google-token.mjs",
            "jose",
            &[
                ("SA_PUBLIC_KEY", public_key.display().to_string()),
                ("SA_CLIENT_EMAIL", CLIENT_EMAIL.to_owned()),
                ("SA_KID", KID.to_owned()),
                ("SA_SUBJECT", subject.unwrap_or_default().to_owned()),
            ],
            dir,
            "google-token.stderr",
        );
        GoogleToken {
            token_uri: node.ready["token_uri"].as_str().unwrap().to_owned(),
            base_url: node.ready["base_url"].as_str().unwrap().to_owned(),
            _node: node,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn get(&self, path: &str) -> Value {
        get_json(&self.http, &format!("{}{path}", self.base_url))
    }

    /// Every assertion whose signature verified: `grant_type`, `header`, `claims`, `outcome`.
    fn assertions(&self) -> Vec<Value> {
        self.get("/test/assertions")["assertions"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every access token issued so far.
    fn issued(&self) -> Vec<String> {
        get_tokens(&self.http, &format!("{}/test/issued", self.base_url))
    }

    /// `{count, requests: [{grant_type, status, error?, error_description?}]}`.
    fn requests(&self) -> Value {
        self.get("/test/requests")
    }

    /// Moves the fixture's clock `offset` seconds away from the real one.
    fn shift_clock(&self, offset: i64) {
        let response = self
            .http
            .post(format!("{}/test/clock?offset={offset}", self.base_url))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, key files, configs.

/// A fresh RSA 2048 key: (PKCS#8 PEM text, path of its SPKI public key PEM).
fn rsa_key(dir: &Path, name: &str) -> (String, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path_str(&private),
    ]);
    openssl(&[
        "pkey",
        "-in",
        path_str(&private),
        "-pubout",
        "-out",
        path_str(&public),
    ]);
    let pem = std::fs::read_to_string(&private).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    (pem, public)
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install openssl"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The lines of a PEM's base64 body: none of them may ever be printed.
fn pem_body(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 8)
        .map(str::to_owned)
        .collect()
}

/// Writes `text` to a new file with mode 0600.
fn write_private(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// A service-account key file as the Cloud console hands it out.
fn key_file_json(private_key: &str, token_uri: &str) -> String {
    let cert_url = format!(
        "https://www.googleapis.com/robot/v1/metadata/x509/{}",
        CLIENT_EMAIL.replace('@', "%40")
    );
    serde_json::to_string_pretty(&json!({
        "type": "service_account",
        "project_id": "refreshd-test",
        "private_key_id": KID,
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "104761234567890123456",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": cert_url,
        "universe_domain": "googleapis.com",
    }))
    .unwrap()
}

/// `[credentials.bigquery]`: a service account (key file `sa.json`) into `app/.env`.
fn service_account_config(r: &Refreshd, subject: Option<&str>) {
    let dir = r.dir.path().display();
    let subject = subject
        .map(|s| format!(", subject = \"{s}\""))
        .unwrap_or_default();
    r.write_config(&format!(
        r#"control_socket = "{dir}/ctl.sock"

[credentials.bigquery]
source = {{ type = "google-service-account", key_file = "{dir}/sa.json", scopes = ["{}", "{}"]{subject} }}
targets = [{{ type = "dotenv", path = "{dir}/app/.env", key = "GOOGLE_ACCESS_TOKEN" }}]
"#,
        SCOPES[0], SCOPES[1],
    ));
}

/// A service-account setup: the fixture knows `key`'s public half; `sa.json` holds
/// `signing_key` (the same key unless a test wants a wrong one).
struct ServiceAccount {
    google: GoogleToken,
    refreshd: Refreshd,
    private_key: String,
}

fn service_account(subject: Option<&str>, wrong_key: bool) -> ServiceAccount {
    let refreshd = Refreshd::new();
    let dir = refreshd.dir.path();
    let (pem, public) = rsa_key(dir, "sa-key");
    let google = GoogleToken::start(dir, &public, subject);
    let private_key = if wrong_key {
        rsa_key(dir, "other-key").0
    } else {
        pem
    };
    write_private(
        &refreshd.path("sa.json"),
        &key_file_json(&private_key, &google.token_uri),
    );
    std::fs::create_dir(refreshd.path("app")).unwrap();
    std::fs::write(refreshd.path("app/.env"), ENV_BEFORE).unwrap();
    service_account_config(&refreshd, subject);
    ServiceAccount {
        google,
        refreshd,
        private_key,
    }
}

impl ServiceAccount {
    fn env_file(&self) -> String {
        std::fs::read_to_string(self.refreshd.path("app/.env")).unwrap()
    }

    /// `refreshd status --json`, recorded: (exit code, this credential's entry).
    fn status(&mut self) -> (Option<i32>, Value) {
        status_json(&mut self.refreshd, "bigquery")
    }

    /// The leak check: every issued access token and every line of the private key.
    fn assert_no_leaks(&self) {
        let mut secrets = self.google.issued();
        secrets.extend(pem_body(&self.private_key));
        self.refreshd.assert_no_secrets(&secrets);
    }
}

fn status_json(r: &mut Refreshd, name: &str) -> (Option<i32>, Value) {
    let output = r.run(&["status", "--json"]);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        )
    });
    (output.status.code(), json["credentials"][name].clone())
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

/// Checks one verified assertion, claim by claim, against what the contract asks for.
fn assert_assertion(
    google: &GoogleToken,
    assertion: &Value,
    subject: Option<&str>,
    sent: (i64, i64),
) {
    assert_eq!(assertion["grant_type"], JWT_BEARER, "{assertion:#}");
    assert_eq!(
        assertion["header"],
        json!({ "alg": "RS256", "typ": "JWT", "kid": KID }),
        "{assertion:#}"
    );
    let claims = &assertion["claims"];
    assert_eq!(claims["iss"], CLIENT_EMAIL, "{claims:#}");
    assert_eq!(claims["scope"], SCOPES.join(" "), "{claims:#}");
    assert_eq!(claims["aud"], google.token_uri.as_str(), "{claims:#}");
    let iat = claims["iat"]
        .as_i64()
        .unwrap_or_else(|| panic!("iat is not whole seconds: {claims:#}"));
    assert!(
        iat >= sent.0 - 1 && iat <= sent.1 + 1,
        "iat {iat} is not the time of sending ({}..{})",
        sent.0,
        sent.1
    );
    assert_eq!(claims["exp"].as_i64(), Some(iat + 3600), "{claims:#}");
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    match subject {
        Some(subject) => {
            assert_eq!(claims["sub"], subject, "{claims:#}");
            assert_eq!(names, ["aud", "exp", "iat", "iss", "scope", "sub"]);
        }
        None => assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "scope"],
            "no sub without a subject: {claims:#}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// google-service-account

/// `check`, then `once`: one JWT-bearer request, the `ya29.` token in the `.env`, its expiry
/// from `expires_in`, and an assertion that is right in every header field and claim.
fn service_account_end_to_end(subject: Option<&str>) {
    let mut s = service_account(subject, false);
    assert_success(&s.refreshd.run(&["check"]));
    assert_eq!(s.google.requests()["count"], 0, "check is offline");

    let before = unix_now();
    assert_success(&s.refreshd.run(&["once"]));
    let after = unix_now();

    let issued = s.google.issued();
    assert_eq!(issued.len(), 1, "{:#}", s.google.requests());
    let token = &issued[0];
    assert!(token.starts_with("ya29."), "{token}");
    assert_eq!(
        s.env_file(),
        format!("{ENV_BEFORE}GOOGLE_ACCESS_TOKEN={token}\n"),
        "the .env holds the issued token, every other line kept"
    );

    let state = s.refreshd.state("bigquery");
    assert_eq!(state["token"]["access_token"], token.as_str());
    assert_eq!(state["token"]["expiry_source"], "expires_in", "{state:#}");
    let expires_at = rfc3339(&state["token"]["expires_at"]);
    assert!(
        expires_at >= before + 3599 - 1 && expires_at <= after + 3599 + 1,
        "expires_at {expires_at} is not now + 3599 s ({before}..{after})"
    );
    assert!(
        state.get("refresh_token").is_none_or(Value::is_null),
        "a service account has no refresh token: {state:#}"
    );

    let (code, status) = s.status();
    assert_eq!(code, Some(0), "{status:#}");
    assert_eq!(status["health"], "ok", "{status:#}");
    assert_eq!(status["source"], "google-service-account", "{status:#}");
    assert_eq!(status["expiry_source"], "expires_in", "{status:#}");
    assert_eq!(rfc3339(&status["expires_at"]), expires_at);

    // What the fixture verified (signature, with jose), checked here claim by claim.
    let assertions = s.google.assertions();
    assert_eq!(assertions.len(), 1, "{assertions:#?}");
    assert_eq!(assertions[0]["outcome"], "ok");
    assert_assertion(&s.google, &assertions[0], subject, (before, after));
    let requests = s.google.requests();
    assert_eq!(
        requests,
        json!({ "count": 1, "requests": [{ "grant_type": JWT_BEARER, "status": 200 }] })
    );

    // Not due for 50 minutes: the next run makes no request and leaves the .env as it is.
    assert_success(&s.refreshd.run(&["once"]));
    assert_eq!(s.google.requests()["count"], 1);
    assert_eq!(
        s.env_file(),
        format!("{ENV_BEFORE}GOOGLE_ACCESS_TOKEN={token}\n")
    );

    s.assert_no_leaks();
}

#[test]
fn service_account_assertion_and_token_end_to_end() {
    service_account_end_to_end(None);
}

#[test]
fn service_account_with_a_subject_sends_sub() {
    service_account_end_to_end(Some("user@example.com"));
}

#[test]
fn clock_skew_is_a_transient_clock_problem_and_leaves_the_target_alone() {
    let mut s = service_account(None, false);
    assert_success(&s.refreshd.run(&["once"]));
    let env_before = std::fs::read(s.refreshd.path("app/.env")).unwrap();
    let held = s.google.issued();
    assert_eq!(held.len(), 1);

    // Google's clock (or ours) is two hours off: every assertion is "not in a reasonable
    // timeframe".
    s.google.shift_clock(7200);
    let before = unix_now();
    let failed = s.refreshd.run(&["once", "--force"]);
    let after = unix_now();
    let log = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{log}");
    assert!(log.contains("clock"), "the error names the clock:\n{log}");

    // The request went out and was refused for its times, not for anything else.
    let requests = s.google.requests();
    assert_eq!(requests["count"], 2, "{requests:#}");
    assert_eq!(requests["requests"][1]["status"], 400, "{requests:#}");
    assert_eq!(requests["requests"][1]["error"], "invalid_grant");
    assert_eq!(requests["requests"][1]["error_description"], TIME_ERROR);
    let assertions = s.google.assertions();
    assert_eq!(assertions.len(), 2);
    assert_eq!(assertions[1]["outcome"], TIME_ERROR);
    assert_assertion(&s.google, &assertions[1], None, (before, after));

    let state = s.refreshd.state("bigquery");
    assert_eq!(state["needs_login"], false, "{state:#}");
    assert_eq!(state["last_error"]["kind"], "transient", "{state:#}");
    assert_eq!(state["token"]["access_token"], held[0].as_str());

    let (code, status) = s.status();
    assert_eq!(status["health"], "retrying", "not needs-login: {status:#}");
    assert_eq!(
        code,
        Some(0),
        "retrying still holds a valid token: {status:#}"
    );
    assert_eq!(
        std::fs::read(s.refreshd.path("app/.env")).unwrap(),
        env_before,
        "a failed refresh leaves the .env byte for byte"
    );
    assert_eq!(s.google.issued(), held, "nothing new was issued");

    s.assert_no_leaks();
}

#[test]
fn a_key_the_provider_does_not_know_is_permanent() {
    let mut s = service_account(None, true);
    let failed = s.refreshd.run(&["once"]);
    let log = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{log}");
    assert!(
        log.contains("Invalid JWT Signature."),
        "the provider's own words:\n{log}"
    );

    let requests = s.google.requests();
    assert_eq!(
        requests,
        json!({ "count": 1, "requests": [{
            "grant_type": JWT_BEARER,
            "status": 400,
            "error": "invalid_grant",
            "error_description": "Invalid JWT Signature.",
        }] }),
        "one request, not retried"
    );
    assert!(
        s.google.assertions().is_empty(),
        "no assertion verified with the fixture's key"
    );

    let state = s.refreshd.state("bigquery");
    assert_eq!(state["needs_login"], true, "{state:#}");
    assert_eq!(state["last_error"]["kind"], "permanent", "{state:#}");
    let (code, status) = s.status();
    assert_eq!(status["health"], "needs-login", "{status:#}");
    assert_eq!(code, Some(1), "needs-login is unhealthy: {status:#}");
    assert_eq!(s.env_file(), ENV_BEFORE, "the .env is left alone");

    assert!(s.google.issued().is_empty());
    s.assert_no_leaks();
}

/// `refreshd check` on a broken key file: exit 2, and the message names the file.
fn assert_check_refuses(name: &str, key_file: Option<&str>, secrets: &[String]) {
    let mut r = Refreshd::new();
    let path = r.path("sa.json");
    if let Some(text) = key_file {
        write_private(&path, text);
    }
    std::fs::create_dir(r.path("app")).unwrap();
    service_account_config(&r, None);
    let output = r.run(&["check"]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{name}: {log}");
    assert!(
        log.contains(path_str(&path)),
        "{name}: the message names the key file {}:\n{log}",
        path.display()
    );
    r.assert_no_secrets(secrets);
}

#[test]
fn check_refuses_a_missing_key_file() {
    assert_check_refuses("missing", None, &[]);
}

#[test]
fn check_refuses_a_key_file_that_is_not_json() {
    // A common slip: the bare PEM where the JSON key file belongs.
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = rsa_key(dir.path(), "key");
    assert_check_refuses("a bare PEM", Some(&pem), &pem_body(&pem));
    assert_check_refuses(
        "truncated JSON",
        Some("{\"type\": \"service_account\", "),
        &[],
    );
}

#[test]
fn check_refuses_authorized_user_credentials_as_a_service_account_key() {
    let adc = json!({
        "type": "authorized_user",
        "client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
        "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
        "refresh_token": "1//0gFAKE-refresh-token-for-the-leak-check",
    });
    assert_check_refuses(
        "authorized_user",
        Some(&adc.to_string()),
        &[
            "d-FL95Q19q7MQmFpd7hHD0Ty".to_owned(),
            "1//0gFAKE-refresh-token-for-the-leak-check".to_owned(),
        ],
    );
}

#[test]
fn check_refuses_a_private_key_that_is_not_an_rsa_pem() {
    assert_check_refuses(
        "not a PEM",
        Some(&key_file_json(
            "not a key",
            "https://oauth2.googleapis.com/token",
        )),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let ec = dir.path().join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path_str(&ec),
    ]);
    let pem = std::fs::read_to_string(&ec).unwrap();
    assert_check_refuses(
        "a P-256 key",
        Some(&key_file_json(&pem, "https://oauth2.googleapis.com/token")),
        &pem_body(&pem),
    );
}

// ---------------------------------------------------------------------------------------------
// google-authorized-user

/// An `application_default_credentials.json` as `gcloud auth application-default login`
/// writes it, for the fixture's client `client_id`.
fn adc_json(oidc: &Oidc, client_id: &str, secret: &str, refresh_token: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "account": "",
        "client_id": client_id,
        "client_secret": secret,
        "quota_project_id": "refreshd-test",
        "refresh_token": refresh_token,
        "token_uri": oidc.token_endpoint,
        "type": "authorized_user",
        "universe_domain": "googleapis.com",
    }))
    .unwrap()
}

/// `[credentials.gcloud]` into `app/.env`; `file` only when given.
fn authorized_user_config(r: &Refreshd, file: Option<&Path>) {
    let dir = r.dir.path().display();
    let file = file
        .map(|f| format!(", file = \"{}\"", f.display()))
        .unwrap_or_default();
    r.write_config(&format!(
        r#"control_socket = "{dir}/ctl.sock"

[credentials.gcloud]
source = {{ type = "google-authorized-user"{file} }}
targets = [{{ type = "dotenv", path = "{dir}/app/.env", key = "GOOGLE_ACCESS_TOKEN" }}]
"#
    ));
}

/// Runs `refreshd ARGS` with `env` set, recorded for the leak check.
fn run_with_env(r: &mut Refreshd, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = r.command(args);
    command.env_remove("CLOUDSDK_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    r.record(&output);
    output
}

/// The access token in `app/.env`, which must be a JWT the fixture issued to `client_id`.
fn env_token(r: &Refreshd, oidc: &Oidc, client_id: &str) -> String {
    let text = std::fs::read_to_string(r.path("app/.env")).unwrap();
    let token = text
        .strip_prefix("GOOGLE_ACCESS_TOKEN=")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not one GOOGLE_ACCESS_TOKEN line: {text:?}"))
        .to_owned();
    assert!(oidc.issued().contains(&token), "not issued by the fixture");
    let claims = jwt_claims(&token);
    assert_eq!(claims["client_id"], client_id, "{claims:#}");
    assert_eq!(claims["sub"], "alice", "{claims:#}");
    token
}

/// The refresh-grant requests the fixture saw: client_secret_post by `client_id`, with the
/// refresh token and the secret in the body and no scope.
fn assert_refresh_grants(oidc: &Oidc, client_id: &str, n: u64) {
    let stats = oidc.stats();
    assert_eq!(oidc.count("by_grant", "refresh_token"), n, "{stats:#}");
    assert_eq!(oidc.count("by_client", client_id), n, "{stats:#}");
    assert_eq!(oidc.count("by_auth", "client_secret_post"), n, "{stats:#}");
    assert_eq!(stats["token_requests"], n, "{stats:#}");
    assert!(
        stats["by_error"].as_object().unwrap().is_empty(),
        "{stats:#}"
    );
    for request in stats["requests"].as_array().unwrap() {
        assert_eq!(
            request["params"],
            json!(["client_id", "client_secret", "grant_type", "refresh_token"]),
            "one refresh grant with the secret in the body, no scope: {stats:#}"
        );
    }
}

#[test]
fn authorized_user_refreshes_with_the_file_and_never_rewrites_it() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    let grant = oidc.grant("adc-user");
    let adc = r.path("adc.json");
    let adc_text = adc_json(&oidc, "adc-user", "adc-user-secret", &grant.refresh_token);
    write_private(&adc, &adc_text);
    std::fs::create_dir(r.path("app")).unwrap();
    authorized_user_config(&r, Some(&adc));

    assert_success(&r.run(&["check"]));
    assert_success(&r.run(&["once"]));
    let first = env_token(&r, &oidc, "adc-user");
    assert_refresh_grants(&oidc, "adc-user", 1);

    // Google never rotates the refresh token: the same one, read from the file, is spent again.
    assert_success(&r.run(&["once", "--force"]));
    let second = env_token(&r, &oidc, "adc-user");
    assert_ne!(second, first, "--force fetched a new token");
    assert_refresh_grants(&oidc, "adc-user", 2);

    assert_eq!(
        std::fs::read_to_string(&adc).unwrap(),
        adc_text,
        "the ADC file is never rewritten"
    );
    let state = r.state("gcloud");
    assert!(
        state.get("refresh_token").is_none_or(Value::is_null),
        "no refresh token is stored for ADC: {state:#}"
    );
    assert_eq!(state["token"]["access_token"], second.as_str());
    let (code, status) = status_json(&mut r, "gcloud");
    assert_eq!(code, Some(0), "{status:#}");
    assert_eq!(status["health"], "ok", "{status:#}");
    assert_eq!(status["source"], "google-authorized-user", "{status:#}");

    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[&grant.refresh_token, "adc-user-secret"]);
}

#[test]
fn authorized_user_default_path_is_cloudsdk_config_else_home() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    std::fs::create_dir(r.path("app")).unwrap();
    authorized_user_config(&r, None);

    // $CLOUDSDK_CONFIG/application_default_credentials.json; $HOME has none.
    let gcloud = r.path("gcloud");
    let home = r.path("home");
    std::fs::create_dir_all(home.join(".config/gcloud")).unwrap();
    std::fs::create_dir(&gcloud).unwrap();
    let adc_grant = oidc.grant("adc-user");
    write_private(
        &gcloud.join("application_default_credentials.json"),
        &adc_json(
            &oidc,
            "adc-user",
            "adc-user-secret",
            &adc_grant.refresh_token,
        ),
    );
    let env = [
        ("CLOUDSDK_CONFIG", gcloud.as_path()),
        ("HOME", home.as_path()),
    ];
    assert_success(&run_with_env(&mut r, &["check"], &env));
    assert_success(&run_with_env(&mut r, &["once"], &env));
    env_token(&r, &oidc, "adc-user");
    assert_refresh_grants(&oidc, "adc-user", 1);

    // Without $CLOUDSDK_CONFIG: $HOME/.config/gcloud/…, here holding another client's grant,
    // so the request shows which file was read.
    let post_grant = oidc.grant("rt-post");
    write_private(
        &home.join(".config/gcloud/application_default_credentials.json"),
        &adc_json(
            &oidc,
            "rt-post",
            "rt-post-secret",
            &post_grant.refresh_token,
        ),
    );
    let env = [("HOME", home.as_path())];
    assert_success(&run_with_env(&mut r, &["once", "--force"], &env));
    env_token(&r, &oidc, "rt-post");
    assert_eq!(oidc.count("by_client", "rt-post"), 1, "{:#}", oidc.stats());
    assert_eq!(oidc.count("by_client", "adc-user"), 1, "{:#}", oidc.stats());
    assert_eq!(oidc.count("by_error", "invalid_grant"), 0);

    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[
        adc_grant.refresh_token.as_str(),
        &post_grant.refresh_token,
        "adc-user-secret",
        "rt-post-secret",
    ]);
}
