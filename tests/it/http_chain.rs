//! The `http` source and the `chain` source against real peers: a Databricks-like API
//! (`tests/fixtures/oidc/databricks.mjs`, which verifies every bearer JWT with jose against
//! the oidc-provider fixture's keys) that turns a workspace OAuth token into a PostgreSQL
//! password, and the oidc-provider fixture itself.
//!
//! Proves: the bearer is another credential's current token and `once` fetches bearers first;
//! a running daemon re-mints the dependent when its bearer rotates; bearer cycles and unknown
//! bearers are config errors; a chain falls through a failing member and says so in the log
//! and in `status`; an API error names the URL, the status and the API's error code, and
//! leaves the targets alone. Every test greps everything refreshd printed for every token
//! either fixture issued.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::{
    NodeFixture, Oidc, Refreshd, assert_success, eventually, get_json, get_tokens, jwt_claims,
    stderr,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Far more than any step needs on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

/// The request body of the http credential: a fresh `request_id` per request. As a JSON
/// string (in single quotes in the config)…
const DB_BODY: &str = r#"'{"request_id": "{{uuid}}", "instance_names": ["instance-1"]}'"#;
/// …or the same as a TOML table, sent as JSON.
const DB_BODY_TABLE: &str = r#"{ request_id = "{{uuid}}", instance_names = ["instance-1"] }"#;

/// The `.pgpass` line fields of the http credential's target.
const PG_LINE: &str = "instance-1.database.example.com:5432:databricks_postgres:alice@example.com:";

// ---------------------------------------------------------------------------------------------
// The Databricks-like fixture.

/// A running `databricks.mjs`: `POST /api/2.0/database/credentials` with a bearer JWT from
/// the oidc fixture. Exits with the test (its stdin is our pipe) or when dropped.
struct Databricks {
    _node: NodeFixture,
    url: String,
    http: reqwest::blocking::Client,
}

impl Databricks {
    fn start(dir: &Path, issuer: &str) -> Databricks {
        let node = NodeFixture::start(
            "databricks.mjs",
            "jose",
            &[("OIDC_ISSUER", issuer.to_owned())],
            dir,
            "databricks.stderr",
        );
        Databricks {
            url: node.ready["url"].as_str().unwrap().to_owned(),
            _node: node,
            http: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn credentials_url(&self) -> String {
        format!("{}/api/2.0/database/credentials", self.url)
    }

    /// Every request to the credentials endpoint, oldest first: `bearer_sha256`,
    /// `request_id`, `instance_names`, `content_type`, `status`, `error_code`,
    /// `expiration_time`.
    fn requests(&self) -> Vec<Value> {
        get_json(&self.http, &format!("{}/test/requests", self.url))["requests"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The requests that were answered with a password.
    fn minted(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 200)
            .collect()
    }

    /// Every password issued so far, oldest first.
    fn issued(&self) -> Vec<String> {
        get_tokens(&self.http, &format!("{}/test/issued", self.url))
    }

    /// The next `count` credential requests answer HTTP `status`.
    fn fail_next(&self, status: u16, count: u32) {
        let response = self
            .http
            .post(format!(
                "{}/test/fail?status={status}&count={count}",
                self.url
            ))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_uuid_v4(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b', 'A', 'B'])
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {rfc3339:?}"))
        .unix_timestamp()
}

/// Unique per run, so a leak check on it cannot pass by accident.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    )
}

// ---------------------------------------------------------------------------------------------
// Setup: both fixtures, secrets on disk, config templates.

/// The workspace credential `ws`: a refresh grant (client rt-basic) writing a `.env`.
const WS: &str = r#"
[credentials.ws]
refresh_at = "50s"
min_remaining = "10s"
jitter = "1s"
source = { type = "oauth-refresh", token_url = "@TOKEN_URL@", client_id = "rt-basic", client_secret = { file = "@DIR@/client.secret" }, refresh_token = { file = "@DIR@/ws.refresh" }, scopes = ["openid", "offline_access", "api"] }
targets = [ { type = "dotenv", path = "@DIR@/app/.env", key = "DATABRICKS_TOKEN" } ]
"#;

/// The database credential `pg`: the http source, bearer `@BEARER@`, writing a `.pgpass`.
const PG: &str = r#"
[credentials.pg]
jitter = "1s"
source = { type = "http", url = "@DB_URL@", body = @BODY@, bearer = { credential = "@BEARER@" }, token_field = "/token", expiry_field = "/expiration_time" }
targets = [ { type = "pgpass", path = "@DIR@/app/.pgpass", host = "instance-1.database.example.com", port = 5432, database = "databricks_postgres", username = "alice@example.com" } ]
"#;

struct Setup {
    oidc: Oidc,
    db: Databricks,
    r: Refreshd,
}

impl Setup {
    fn new() -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), 60);
        let db = Databricks::start(r.dir.path(), &oidc.issuer);
        std::fs::create_dir(r.path("app")).unwrap();
        std::fs::write(r.path("client.secret"), "rt-basic-secret").unwrap();
        std::fs::write(r.path("cc.secret"), "cc-secret-secret\n").unwrap();
        Setup { oidc, db, r }
    }

    /// A fresh rt-basic grant's refresh token as `ws`'s bootstrap.
    fn grant_ws(&self) {
        let grant = self.oidc.grant("rt-basic");
        std::fs::write(self.r.path("ws.refresh"), &grant.refresh_token).unwrap();
    }

    fn socket(&self) -> std::path::PathBuf {
        self.r.path("run/control.sock")
    }

    /// Fills the placeholders of `template` and writes it as the config, with the control
    /// socket in the test's directory (tests run as root).
    fn write_config(&self, template: &str) {
        self.write_config_with_body(template, DB_BODY);
    }

    fn write_config_with_body(&self, template: &str, db_body: &str) {
        let body = template
            .replace("@BODY@", db_body)
            .replace("@DB_URL@", &self.db.credentials_url())
            .replace("@TOKEN_URL@", &self.oidc.token_endpoint)
            .replace("@DIR@", &self.r.dir.path().display().to_string());
        self.r.write_config(&format!(
            "control_socket = \"{}\"\n{body}",
            self.socket().display()
        ));
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.r.path(name))
            .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    }

    /// `ws`'s token as the app reads it from the `.env` target.
    fn ws_token(&self) -> String {
        let text = self.read("app/.env");
        text.lines()
            .find_map(|l| l.strip_prefix("DATABRICKS_TOKEN="))
            .unwrap_or_else(|| panic!("no DATABRICKS_TOKEN in .env:\n{text}"))
            .to_owned()
    }

    /// `refreshd status --json`, recorded.
    fn status_json(&mut self) -> Value {
        let output = self.r.run(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}):\n{}\n{}",
                stdout(&output),
                stderr(&output)
            )
        })
    }

    /// Greps everything refreshd printed for every token either fixture issued, and for the
    /// client secrets.
    fn assert_no_leaks(&self) {
        self.r.assert_no_issued_tokens(&self.oidc);
        self.r.assert_no_secrets(&self.db.issued());
        self.r
            .assert_no_secrets(&["rt-basic-secret", "cc-secret-secret"]);
    }
}

// ---------------------------------------------------------------------------------------------
// a. `once`: the bearer is the other credential's current token, fetched first.

#[test]
fn once_fetches_the_bearer_first_and_sends_its_current_token() {
    let mut s = Setup::new();
    s.grant_ws();
    // `pg` comes first in the file: only dependency order gets `ws` a token in time. Its
    // body is a TOML table here; the same JSON must arrive.
    s.write_config_with_body(
        &format!("{}{WS}", PG.replace("@BEARER@", "ws")),
        DB_BODY_TABLE,
    );

    let output = s.r.run(&["once"]);
    assert_success(&output);
    let log = stderr(&output);
    for name in ["ws", "pg"] {
        let rotated = log
            .lines()
            .find(|l| l.contains(" rotated ") && l.contains(&format!("credential={name} ")))
            .unwrap_or_else(|| panic!("no rotated line for {name} in:\n{log}"));
        assert!(!rotated.contains("served_by"), "not a chain: {rotated}");
    }
    let ws_token = s.ws_token();
    assert_eq!(jwt_claims(&ws_token)["client_id"], "rt-basic");

    let requests = s.db.requests();
    assert_eq!(
        requests.len(),
        1,
        "one request, made with ws's token (no attempt before ws had one): {requests:#?}\n{}",
        stderr(&output)
    );
    let request = &requests[0];
    assert_eq!(request["status"], 200, "{request:#}");
    assert_eq!(
        request["bearer_sha256"],
        sha256_hex(&ws_token).as_str(),
        "the bearer is ws's current access token"
    );
    assert_eq!(request["instance_names"], serde_json::json!(["instance-1"]));
    assert_eq!(request["content_type"], "application/json");
    assert_eq!(request["method"], "POST");
    let first_id = request["request_id"].as_str().unwrap().to_owned();
    assert!(is_uuid_v4(&first_id), "{first_id}");

    let issued = s.db.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(s.read("app/.pgpass"), format!("{PG_LINE}{}\n", issued[0]));

    let status = s.status_json();
    let pg = &status["credentials"]["pg"];
    assert_eq!(pg["health"], "ok", "{status:#}");
    assert_eq!(status["credentials"]["ws"]["health"], "ok", "{status:#}");
    assert_eq!(
        unix(pg["expires_at"].as_str().unwrap()),
        unix(request["expiration_time"].as_str().unwrap()),
        "pg expires when the API said: {status:#}"
    );

    // Two forced runs: a fresh ws token each time, sent as the bearer; a fresh request_id
    // each time (the API refuses a reused one, so success alone says as much).
    let mut ids = vec![first_id];
    for run in 1..=2 {
        assert_success(&s.r.run(&["once", "--force"]));
        let ws_token = s.ws_token();
        let minted = s.db.minted();
        assert_eq!(minted.len(), run + 1, "{minted:#?}");
        let last = minted.last().unwrap();
        assert_eq!(last["bearer_sha256"], sha256_hex(&ws_token).as_str());
        ids.push(last["request_id"].as_str().unwrap().to_owned());
        let issued = s.db.issued();
        assert_eq!(
            s.read("app/.pgpass"),
            format!("{PG_LINE}{}\n", issued.last().unwrap())
        );
    }
    assert!(ids.iter().all(|id| is_uuid_v4(id)), "{ids:?}");
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "request_ids repeat: {ids:?}");
    assert!(
        s.db.requests().iter().all(|r| r["status"] == 200),
        "{:#?}",
        s.db.requests()
    );

    s.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// b. The daemon re-mints the dependent when its bearer's token changes.

#[test]
fn the_daemon_refreshes_the_dependent_when_its_bearer_rotates() {
    let mut s = Setup::new();
    s.grant_ws();
    s.write_config(&format!("{}{WS}", PG.replace("@BEARER@", "ws")));

    let mut daemon = s.r.spawn(&["run"]);
    daemon.wait_for("rotated credential=ws", WAIT);
    daemon.wait_for("rotated credential=pg", WAIT);
    let first_ws = s.ws_token();
    let first_pg = eventually("the first password in .pgpass", WAIT, || {
        let issued = s.db.issued();
        let expected = format!("{PG_LINE}{}\n", issued.first()?);
        (std::fs::read_to_string(s.r.path("app/.pgpass")).ok()? == expected).then_some(expected)
    });
    let minted = s.db.minted();
    assert_eq!(minted.len(), 1, "{minted:#?}");
    assert_eq!(minted[0]["bearer_sha256"], sha256_hex(&first_ws).as_str());
    eventually("status: both ok", WAIT, || {
        let status = s.status_json();
        (status["credentials"]["ws"]["health"] == "ok"
            && status["credentials"]["pg"]["health"] == "ok")
            .then_some(())
    });

    // Rotate the bearer only: pg follows within seconds, with the new token as bearer.
    let output = s.r.run(&["rotate", "ws"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let second_ws = s.ws_token();
    assert_ne!(second_ws, first_ws, "rotate ws changed the .env");
    let request = eventually(
        "a credentials request with the new ws token as bearer",
        Duration::from_secs(10),
        || {
            s.db.minted()
                .into_iter()
                .find(|r| r["bearer_sha256"] == sha256_hex(&second_ws).as_str())
        },
    );
    assert!(is_uuid_v4(request["request_id"].as_str().unwrap()));
    daemon.wait_for_n("rotated credential=pg", 2, WAIT);
    let second_pg = eventually("the new password in .pgpass", WAIT, || {
        let issued = s.db.issued();
        let expected = format!("{PG_LINE}{}\n", issued.get(1)?);
        (std::fs::read_to_string(s.r.path("app/.pgpass")).ok()? == expected).then_some(expected)
    });
    assert_ne!(second_pg, first_pg);

    // Once per bearer change: no loop, no failed attempt at the API.
    std::thread::sleep(Duration::from_secs(2));
    let requests = s.db.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}\n{}", daemon.output());
    assert!(requests.iter().all(|r| r["status"] == 200), "{requests:#?}");
    // pg never tried before ws had a token (a bearer error fails before any request).
    assert_eq!(
        daemon.count("refresh failed") + daemon.count(" ERROR "),
        0,
        "{}",
        daemon.output()
    );

    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(WAIT);
    s.r.record_daemon(&daemon);
    assert_eq!(status.code(), Some(0), "{}", daemon.output());
    s.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// c. Bearer cycles and unknown bearers are config errors.

/// An http credential `name` whose bearer is `bearer` (never contacted: config errors only).
fn http_credential(name: &str, bearer: &str) -> String {
    format!(
        r#"
[credentials.{name}]
source = {{ type = "http", url = "http://127.0.0.1:9/mint", bearer = {{ credential = "{bearer}" }}, token_field = "token" }}
targets = [ {{ type = "file", path = "@DIR@/app/{name}" }} ]
"#
    )
}

#[test]
fn bearer_cycles_and_unknown_bearers_are_config_errors() {
    let mut s = Setup::new();
    let check = |s: &mut Setup, config: &str| -> String {
        s.write_config(config);
        let output = s.r.run(&["check"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "check refuses:\n{config}\n{}{}",
            stdout(&output),
            stderr(&output)
        );
        format!("{}{}", stdout(&output), stderr(&output))
    };

    // a → b → a.
    let two = format!(
        "{}{}",
        http_credential("alpha-db", "beta-ws"),
        http_credential("beta-ws", "alpha-db")
    );
    let text = check(&mut s, &two);
    for needle in ["cycle", "alpha-db", "beta-ws"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    // `run` refuses it as an invalid config (78), and so does `once`.
    let output = s.r.run(&["run"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(stderr(&output).contains("cycle"), "{}", stderr(&output));
    let output = s.r.run(&["once"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));

    // a → a.
    let text = check(&mut s, &http_credential("selfish-db", "selfish-db"));
    for needle in ["cycle", "selfish-db"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }

    // A bearer that is not a credential of the config.
    let text = check(&mut s, &http_credential("lonely-db", "ghost-credential"));
    assert!(text.contains("ghost-credential"), "{text}");
    let output = s.r.run(&["run"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));

    // The control: the same shape without a cycle passes, so the refusals above are the
    // cycle's and the unknown name's.
    s.grant_ws();
    s.write_config(&format!("{}{WS}", PG.replace("@BEARER@", "ws")));
    let output = s.r.run(&["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    for name in ["alpha-db", "beta-ws", "selfish-db", "lonely-db"] {
        assert!(!s.r.path(&format!("app/{name}")).exists(), "{name} written");
    }
    assert!(s.db.requests().is_empty(), "config errors reach no API");
}

// ---------------------------------------------------------------------------------------------
// d. A chain falls through a failing member, and says so.

/// A chain credential `name`: a dead refresh token first, then `second`.
fn chain_credential(name: &str, second: &str) -> String {
    format!(
        r#"
[credentials.{name}]
refresh_at = "50s"
min_remaining = "10s"
source = {{ type = "chain", sources = [
  {{ type = "oauth-refresh", token_url = "@TOKEN_URL@", client_id = "rt-basic", client_secret = {{ file = "@DIR@/client.secret" }}, refresh_token = {{ file = "@DIR@/dead.refresh" }}, scopes = ["openid", "offline_access", "api"] }},
  {second},
] }}
targets = [ {{ type = "file", path = "@DIR@/app/{name}" }} ]
"#
    )
}

const CLIENT_CREDENTIALS: &str = r#"{ type = "oauth-client-credentials", token_url = "@TOKEN_URL@", client_id = "cc-secret", client_secret = { file = "@DIR@/cc.secret" }, scopes = ["api"] }"#;

#[test]
fn a_chain_falls_through_a_dead_refresh_token_to_client_credentials() {
    let mut s = Setup::new();
    // Never issued by the fixture: invalid_grant.
    let dead = unique("made-up-refresh-token");
    std::fs::write(s.r.path("dead.refresh"), &dead).unwrap();
    s.write_config(&chain_credential("m2m", CLIENT_CREDENTIALS));

    let output = s.r.run(&["once"]);
    assert_success(&output);
    let log = stderr(&output);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 1);
    assert_eq!(s.oidc.count("by_grant", "client_credentials"), 1);
    let token = s.read("app/m2m").trim_end().to_owned();
    assert_eq!(
        jwt_claims(&token)["client_id"],
        "cc-secret",
        "served by the second member"
    );

    let warn = log
        .lines()
        .find(|l| l.contains("chain source failed"))
        .unwrap_or_else(|| panic!("no `chain source failed` line in:\n{log}"));
    // The contract's fields, quoted as values with spaces must be for the line to parse.
    for needle in [
        "WARN",
        "credential=m2m",
        "source=\"sources[0] oauth-refresh\"",
        "error=\"",
        "invalid_grant",
    ] {
        assert!(warn.contains(needle), "no {needle:?} in {warn:?}");
    }
    assert!(!warn.contains("sources[1]"), "{warn}");
    assert_eq!(log.matches("chain source failed").count(), 1, "{log}");
    let rotated = log
        .lines()
        .find(|l| l.contains(" rotated ") && l.contains("credential=m2m"))
        .unwrap_or_else(|| panic!("no rotated line in:\n{log}"));
    assert!(
        rotated.contains("served_by=\"sources[1] oauth-client-credentials\""),
        "{rotated}"
    );

    let status = s.status_json();
    let m2m = &status["credentials"]["m2m"];
    assert_eq!(m2m["health"], "ok", "{status:#}");
    assert_eq!(
        m2m["served_by"], "sources[1] oauth-client-credentials",
        "{status:#}"
    );
    let skipped = m2m["skipped"].as_array().expect("skipped is a list");
    assert_eq!(skipped.len(), 1, "{status:#}");
    let skipped = skipped[0].as_str().unwrap();
    assert!(
        skipped.starts_with("sources[0] oauth-refresh: ") && skipped.contains("invalid_grant"),
        "{skipped}"
    );

    let output = s.r.run(&["status"]);
    let text = stdout(&output);
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key:?} line in:\n{text}"))
            .to_owned()
    };
    assert_eq!(line("served by:"), "sources[1] oauth-client-credentials");
    let text_skipped = line("skipped:");
    assert!(
        text_skipped.starts_with("sources[0] oauth-refresh: ")
            && text_skipped.contains("invalid_grant"),
        "{text}"
    );

    s.r.assert_no_secrets(&[&dead]);
    s.assert_no_leaks();
}

#[test]
fn a_chain_whose_members_all_fail_reports_each_and_writes_nothing() {
    let mut s = Setup::new();
    let dead = unique("made-up-refresh-token");
    std::fs::write(s.r.path("dead.refresh"), &dead).unwrap();
    let failing_command =
        r#"{ type = "command", argv = ["sh", "-c", "echo second-member-broke >&2; exit 1"] }"#;
    s.write_config(&chain_credential("broken", failing_command));

    let output = s.r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    let failure = log
        .lines()
        .find(|l| l.contains("[0]") && l.contains("[1]"))
        .unwrap_or_else(|| panic!("no error listing [0] and [1] in:\n{log}"));
    let (first, second) = failure.split_at(failure.find("[1]").unwrap());
    assert!(first.contains("invalid_grant"), "{failure}");
    assert!(second.contains("exit"), "{failure}");
    assert!(!s.r.path("app/broken").exists(), "no token, no target");
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 1);

    // Nothing was issued; the secrets refreshd held must not show either.
    s.r.assert_no_secrets(&[dead.as_str(), "rt-basic-secret"]);
}

// ---------------------------------------------------------------------------------------------
// e. The API's own error words, and untouched targets.

#[test]
fn an_api_401_names_the_url_the_status_and_the_error_code() {
    let mut s = Setup::new();
    let fake = unique("not-a-jwt-bearer");
    s.write_config(&format!(
        r#"{}
[credentials.fake-ws]
source = {{ type = "command", argv = ["printf", "%s", "{fake}"], format = "plain" }}
targets = [ {{ type = "file", path = "@DIR@/app/fake-ws" }} ]
"#,
        PG.replace("@BEARER@", "fake-ws")
    ));
    let before = "other.example.com:5432:db:bob:old-password\n";
    std::fs::write(s.r.path("app/.pgpass"), before).unwrap();
    std::fs::set_permissions(
        s.r.path("app/.pgpass"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let output = s.r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    let line = log
        .lines()
        .find(|l| l.contains("UNAUTHENTICATED"))
        .unwrap_or_else(|| panic!("no UNAUTHENTICATED in:\n{log}"));
    for needle in [s.db.credentials_url().as_str(), "401"] {
        assert!(line.contains(needle), "no {needle:?} in {line:?}");
    }
    let requests = s.db.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["status"], 401);
    assert_eq!(
        requests[0]["bearer_sha256"],
        sha256_hex(&fake).as_str(),
        "the bearer was the command's token"
    );
    assert_eq!(s.read("app/.pgpass"), before, "the target is untouched");
    assert_eq!(s.read("app/fake-ws"), format!("{fake}\n"));

    s.r.assert_no_secrets(&[&fake]);
    s.r.assert_no_secrets(&s.db.issued());
}

#[test]
fn an_api_503_is_transient_and_the_next_run_recovers() {
    let mut s = Setup::new();
    s.grant_ws();
    s.write_config(&format!("{WS}{}", PG.replace("@BEARER@", "ws")));
    s.db.fail_next(503, 1);

    let output = s.r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    let line = log
        .lines()
        .find(|l| l.contains("TEMPORARILY_UNAVAILABLE"))
        .unwrap_or_else(|| panic!("no TEMPORARILY_UNAVAILABLE in:\n{log}"));
    for needle in [s.db.credentials_url().as_str(), "503"] {
        assert!(line.contains(needle), "no {needle:?} in {line:?}");
    }
    assert!(!s.r.path("app/.pgpass").exists(), "no password, no target");
    assert_eq!(s.r.state("pg")["last_error"]["kind"], "transient");
    assert_ne!(s.r.state("ws")["needs_login"], true);

    // The fault is gone: the next run mints the password with ws's still-valid token.
    assert_success(&s.r.run(&["once"]));
    let minted = s.db.minted();
    assert_eq!(minted.len(), 1, "{minted:#?}");
    assert_eq!(
        minted[0]["bearer_sha256"],
        sha256_hex(&s.ws_token()).as_str()
    );
    assert_eq!(
        s.read("app/.pgpass"),
        format!("{PG_LINE}{}\n", s.db.issued()[0])
    );
    assert_eq!(
        s.oidc.count("by_grant", "refresh_token"),
        1,
        "ws was not refreshed again"
    );
    s.assert_no_leaks();
}
