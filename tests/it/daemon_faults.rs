//! The running daemon (`refreshd run`) against a failing token endpoint (design §3–§4,
//! "Failures"): a fault-injecting stub sits in front of the real `oidc-provider` fixture
//! and the tests switch it between forwarding and a fault while the daemon runs.
//!
//! What this proves, each with the real refreshd binary and the real provider behind the
//! stub (every token a target ends up holding was issued by `oidc-provider`):
//! - 503 and 429 with `Retry-After` are transient: the daemon logs a warning, reports
//!   `expired`/`retrying` with the HTTP status in `refreshd status`, waits at least what
//!   `Retry-After` asked (measured at the stub, longer than its own backoff would be), and
//!   recovers by itself once the provider answers again.
//! - A request that hangs past `timeout` is transient and retried with a backoff that is
//!   neither a hot loop nor longer than `retry.max` allows.
//! - `invalid_grant` is permanent: logged at ERROR with the provider's error and description,
//!   `needs-login` in `status` (exit 1) and `status --json`, the `on_failure` hook runs once
//!   with the credential and error, there is no retry storm (the next try is 15 minutes out),
//!   and the targets keep the old, still valid token.
//! - A malformed 200 (not JSON, or JSON without `access_token`) is transient and retried; a
//!   200 without `access_token` that carries a rotated refresh token has that refresh token
//!   kept, so recovery spends it without `invalid_grant` from the real provider.
//! - No fault ever touches a target: bytes, inode and mtime stay as they were.
//!
//! Every test ends with the leak check over everything refreshd printed.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use crate::common::stub::{Arrival, INVALID_GRANT_DESCRIPTION, Mode, Stub};
use crate::common::{Daemon, Grant, Oidc, Refreshd, jwt_claims, stderr};

/// Access tokens live 10 minutes: no scheduled refresh happens during a test, so every
/// request the stub sees is a first attempt, a retry or a `refreshd rotate`.
const TTL: u32 = 600;
/// Generous: two shared cores, several daemons and providers at once.
const WAIT: Duration = Duration::from_secs(30);
/// The credential's request timeout, and its backoff bounds (design §3 `retry`).
const TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// An `on_failure` hook that appends a line per run to `on_failure.log` (one line per run
/// shows how often it ran).
const ON_FAILURE: &str = "on_failure = [\"sh\", \"-c\", \"echo \\\"$REFRESHD_CREDENTIAL $REFRESHD_ERROR\\\" >> '{DIR}/on_failure.log'\"]\n";

struct Setup {
    oidc: Oidc,
    stub: Stub,
    refreshd: Refreshd,
    grant: Grant,
}

/// A fixture, a stub in `mode` in front of it, and a config for one `oauth-refresh`
/// credential `api` (client rt-basic) whose `token_url` is the stub, writing `app/.env`
/// (which already holds other settings) and `app/token`. `extra` adds credential keys
/// (lines ending in a newline; `{DIR}` in them is the test's directory).
fn setup(mode: Mode, extra: &str) -> Setup {
    let refreshd = Refreshd::new();
    let oidc = Oidc::start(refreshd.dir.path(), TTL);
    let stub = Stub::start(&oidc.token_endpoint, mode);
    let grant = oidc.grant("rt-basic");
    let dir = refreshd.dir.path().display().to_string();
    std::fs::create_dir(refreshd.path("app")).unwrap();
    std::fs::write(
        refreshd.path("app/.env"),
        "# app settings\nAPI_URL=https://api.example.com\n",
    )
    .unwrap();
    std::fs::write(refreshd.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
    std::fs::write(refreshd.path("client.secret"), "rt-basic-secret").unwrap();
    // Written here rather than with `write_config`: the control socket must be this test's
    // own (the default under $XDG_RUNTIME_DIR would be shared by parallel tests).
    let config = format!(
        r#"[daemon]
state_dir = "{dir}/state"
control_socket = "{dir}/control.sock"

[credentials.api]
refresh_at = "9m"
min_remaining = "1m"
jitter = "0s"
retry = {{ initial = "{initial}s", max = "{max}s" }}
timeout = "{timeout}s"
{extra}source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [
  {{ type = "dotenv", path = "{dir}/app/.env", key = "API_TOKEN" }},
  {{ type = "file", path = "{dir}/app/token" }},
]
"#,
        initial = RETRY_INITIAL.as_secs(),
        max = RETRY_MAX.as_secs(),
        timeout = TIMEOUT.as_secs(),
        url = stub.url,
        extra = extra.replace("{DIR}", &dir),
    );
    std::fs::write(&refreshd.config, config).unwrap();
    Setup {
        oidc,
        stub,
        refreshd,
        grant,
    }
}

impl Setup {
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.refreshd.path(name)).unwrap()
    }

    /// The token in `app/token`, checked to be a JWT the fixture issued to rt-basic that is
    /// valid for a while yet.
    fn target_token(&self) -> String {
        let token = self.read("app/token").trim_end().to_owned();
        let claims = jwt_claims(&token);
        assert_eq!(claims["client_id"], "rt-basic", "{claims}");
        assert_eq!(claims["iss"].as_str(), Some(self.oidc.issuer.as_str()));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            claims["exp"].as_u64().unwrap() > now + 60,
            "the target's token is (nearly) expired: {claims}"
        );
        assert_eq!(
            self.read("app/.env"),
            format!("# app settings\nAPI_URL=https://api.example.com\nAPI_TOKEN={token}\n"),
            "the .env holds the same token and kept its other lines"
        );
        token
    }

    /// Lets answers through again: the next rotation must spend the refresh token refreshd
    /// kept, which the provider would refuse (and revoke the grant for) were it a spent one.
    fn forward_spends_the_kept_refresh_token(&self, daemon: &Daemon, why: &str) {
        self.stub.set_mode(Mode::Forward);
        wait_line(daemon, &["INFO", "rotated", "credential=api"], WAIT);
        self.target_token();
        assert_eq!(
            self.oidc.count("by_error", "invalid_grant"),
            0,
            "{why}: {}",
            self.oidc.stats()
        );
    }

    /// `refreshd status [--json]`, recorded for the leak check.
    fn status(&mut self) -> (Option<i32>, String) {
        let output = self.refreshd.run(&["status"]);
        (output.status.code(), stdout(&output))
    }

    fn status_json(&mut self) -> serde_json::Value {
        let output = self.refreshd.run(&["status", "--json"]);
        serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|e| panic!("status --json: {e}\n{}", stderr(&output)))
    }

    /// Seconds from now to the daemon's next planned attempt for `api`, per `status --json`.
    fn next_attempt_in(&mut self) -> f64 {
        let json = self.status_json();
        let at = json["credentials"]["api"]["next_refresh"]
            .as_str()
            .unwrap_or_else(|| panic!("no next_refresh: {json}"));
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap();
        (at - time::OffsetDateTime::now_utc()).as_seconds_f64()
    }

    /// Waits until the daemon has made its own next attempt after a failure, which for a
    /// credential holding a valid token that is not due is a look at the targets without
    /// any request: the next attempt is then the token's schedule, minutes away.
    fn wait_for_the_retry(&mut self, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let next = self.next_attempt_in();
            if next > 60.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the daemon did not come back to the credential (next attempt in {next}s)"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops the daemon with SIGTERM (it must exit 0), records all it printed and runs the
    /// leak check over everything recorded.
    fn finish(mut self, mut daemon: Daemon) {
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        let status = daemon.wait_exit(WAIT);
        self.refreshd.record_daemon(&daemon);
        assert!(status.success(), "{status}:\n{}", daemon.output());
        self.refreshd
            .assert_no_secrets(&[self.grant.refresh_token.as_str(), "rt-basic-secret"]);
        self.refreshd.assert_no_issued_tokens(&self.oidc);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits for a line of the daemon's output that contains every one of `needles`.
fn wait_line(daemon: &Daemon, needles: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let output = daemon.output();
        if let Some(line) = output
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with all of {needles:?} within {timeout:?}; refreshd printed:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gaps between consecutive arrivals.
fn gaps(arrivals: &[Arrival]) -> Vec<Duration> {
    arrivals
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

/// Bytes, inode and mtime: a target that was not rewritten keeps all three.
fn fingerprint(path: &Path) -> (Vec<u8>, u64, i64, i64) {
    let meta = std::fs::metadata(path).unwrap();
    (
        std::fs::read(path).unwrap(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// A 503 or 429 with `Retry-After` while the daemon holds no token: warnings, a status
/// naming the HTTP status, retries no sooner than asked, then recovery once the provider
/// answers. The daemon's own backoff for the first retries is at most 1 s and 2 s, so a
/// gap of `retry_after` (≥ 2 s) at every retry shows `Retry-After` was honoured.
fn retry_after_then_recovery(mode: Mode, retry_after: u64, status_code: &str, error: &str) {
    let label = mode.label();
    let mut s = setup(mode, ON_FAILURE);
    let env_before = fingerprint(&s.refreshd.path("app/.env"));
    let daemon = s.refreshd.spawn(&["run"]);

    s.stub.wait_for(label, 2, WAIT);
    // Unhealthy from the first failure on (no token): the hook runs once for the change,
    // not once per failed attempt.
    wait_line(&daemon, &["on_failure hook ran", "credential=api"], WAIT);
    let warning = wait_line(&daemon, &["WARN", "refresh failed", status_code], WAIT);
    assert!(warning.contains(error), "{warning}");
    assert!(warning.contains("credential=api"), "{warning}");
    let scheduled = wait_line(&daemon, &["next attempt scheduled"], WAIT);
    let retry_in: u64 = scheduled
        .split("retry_in=")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry_in in {scheduled}"));
    assert!(retry_in >= retry_after, "{scheduled}");

    // No valid token yet: unhealthy (exit 1), and the error names the HTTP status.
    let (code, text) = s.status();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("api: expired") || text.contains("api: retrying"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("last error:") && l.contains(status_code)),
        "{text}"
    );
    let json = s.status_json();
    let api = &json["credentials"]["api"];
    assert!(
        api["health"] == "expired" || api["health"] == "retrying",
        "{json}"
    );
    assert_eq!(api["last_error"]["kind"], "transient", "{json}");
    assert!(
        api["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains(status_code),
        "{json}"
    );
    assert!(api["consecutive_failures"].as_u64().unwrap() >= 1, "{json}");
    assert!(!s.refreshd.path("app/token").exists());
    assert_eq!(fingerprint(&s.refreshd.path("app/.env")), env_before);
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 0);

    s.stub.set_mode(Mode::Forward);
    wait_line(&daemon, &["INFO", "rotated", "credential=api"], WAIT);
    let token = s.target_token();

    let arrivals = s.stub.arrivals();
    let first_forward = arrivals
        .iter()
        .position(|a| a.mode == "forward")
        .expect("the stub forwarded the recovering request");
    assert!(
        arrivals[..first_forward].iter().all(|a| a.mode == label),
        "{arrivals:#?}"
    );
    let slack = Duration::from_millis(250);
    for gap in gaps(&arrivals[..=first_forward]) {
        assert!(
            gap + slack >= Duration::from_secs(retry_after),
            "a retry came {gap:?} after a Retry-After of {retry_after}s: {arrivals:#?}"
        );
        assert!(
            gap <= RETRY_MAX.max(Duration::from_secs(retry_after)) + Duration::from_secs(3),
            "a retry came {gap:?} later, more than retry.max allows: {arrivals:#?}"
        );
    }
    assert_eq!(s.stub.count("forward"), 1, "{arrivals:#?}");
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 1);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    let hook = s.refreshd.path("on_failure.log");
    let hook_text = std::fs::read_to_string(&hook).unwrap();
    assert_eq!(
        hook_text.lines().count(),
        1,
        "{} failed attempts in a row ran the hook more than once: {hook_text}",
        first_forward
    );
    assert!(
        hook_text.starts_with("api ") && hook_text.contains(status_code),
        "{hook_text}"
    );
    assert_eq!(daemon.count("on_failure hook ran"), 1);
    s.refreshd.record_file(&hook);

    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("api: ok"), "{text}");
    assert_eq!(s.status_json()["credentials"]["api"]["health"], "ok");
    assert_eq!(
        s.refreshd.state("api")["token"]["access_token"].as_str(),
        Some(token.as_str())
    );
    s.finish(daemon);
}

#[test]
fn unavailable_with_retry_after_is_waited_out_then_recovers() {
    retry_after_then_recovery(
        Mode::Unavailable {
            retry_after_secs: 3,
        },
        3,
        "HTTP 503",
        "answered HTTP 503",
    );
}

#[test]
fn too_many_requests_with_retry_after_is_waited_out_then_recovers() {
    retry_after_then_recovery(
        Mode::TooMany {
            retry_after_secs: 2,
        },
        2,
        "HTTP 429",
        "rate_limit_exceeded",
    );
}

#[test]
fn a_hanging_token_endpoint_times_out_and_is_retried_with_backoff() {
    let mut s = setup(Mode::Hang(TIMEOUT * 3), "");
    let env_before = fingerprint(&s.refreshd.path("app/.env"));
    let daemon = s.refreshd.spawn(&["run"]);

    s.stub.wait_for("hang", 3, WAIT);
    let warning = wait_line(
        &daemon,
        &["WARN", "refresh failed", "timed out after 2s"],
        WAIT,
    );
    assert!(warning.contains("credential=api"), "{warning}");
    // The warning is logged during the attempt; its status is published right after.
    let mut json = s.status_json();
    let published = Instant::now() + WAIT;
    while json["credentials"]["api"]["health"] == "pending" && Instant::now() < published {
        std::thread::sleep(Duration::from_millis(100));
        json = s.status_json();
    }
    assert_eq!(json["credentials"]["api"]["health"], "expired", "{json}");
    assert!(
        json["credentials"]["api"]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{json}"
    );
    // The cause is typed: it, not the message's words, drives the hint after a timeout.
    assert_eq!(
        json["credentials"]["api"]["last_error"]["cause"], "timeout",
        "{json}"
    );
    assert_eq!(fingerprint(&s.refreshd.path("app/.env")), env_before);
    assert!(!s.refreshd.path("app/token").exists());

    s.stub.set_mode(Mode::Forward);
    wait_line(&daemon, &["INFO", "rotated", "credential=api"], WAIT);
    s.target_token();

    // Each retry follows the timed-out attempt's `timeout`, then a backoff of at least 1 s
    // and at most `retry.max`.
    let arrivals = s.stub.arrivals();
    let first_forward = arrivals.iter().position(|a| a.mode == "forward").unwrap();
    assert!(first_forward >= 3, "{arrivals:#?}");
    for gap in gaps(&arrivals[..=first_forward]) {
        assert!(
            gap + Duration::from_millis(200) >= TIMEOUT + Duration::from_secs(1),
            "a retry came {gap:?} after a hanging attempt: {arrivals:#?}"
        );
        assert!(
            gap <= TIMEOUT + RETRY_MAX + Duration::from_secs(3),
            "a retry came {gap:?} after a hanging attempt, later than retry.max allows: {arrivals:#?}"
        );
    }
    assert_eq!(s.stub.count("forward"), 1);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("api: ok"), "{text}");
    s.finish(daemon);
}

#[test]
fn invalid_grant_needs_login_keeps_the_old_token_and_runs_on_failure_once() {
    let mut s = setup(Mode::Forward, ON_FAILURE);
    let hook = s.refreshd.path("on_failure.log");
    let daemon = s.refreshd.spawn(&["run"]);

    wait_line(&daemon, &["INFO", "rotated", "credential=api"], WAIT);
    let held = s.target_token();
    let targets_before = [
        fingerprint(&s.refreshd.path("app/.env")),
        fingerprint(&s.refreshd.path("app/token")),
    ];
    assert_eq!(s.status().0, Some(0));

    s.stub.set_mode(Mode::InvalidGrant);
    let rotate = s.refreshd.run(&["rotate", "api"]);
    let printed = stdout(&rotate);
    assert_eq!(
        rotate.status.code(),
        Some(1),
        "{printed}{}",
        stderr(&rotate)
    );
    assert!(
        printed.contains("api:")
            && printed.contains("invalid_grant")
            && printed.contains(INVALID_GRANT_DESCRIPTION),
        "{printed}"
    );
    let sent_at = s
        .stub
        .wait_for("invalid_grant", 1, WAIT)
        .iter()
        .find(|a| a.mode == "invalid_grant")
        .unwrap()
        .at;

    let error = wait_line(&daemon, &["refresh failed", "invalid_grant"], WAIT);
    assert!(
        error.contains("ERROR")
            && error.contains(INVALID_GRANT_DESCRIPTION)
            && error.contains("needs_login=true")
            && error.contains("credential=api"),
        "the permanent failure is logged at ERROR with the provider's error and description: {error}"
    );
    // The held token is named as what the targets keep.
    assert!(!error.contains("targets_keep=nothing"), "{error}");
    let scheduled = wait_line(&daemon, &["next attempt scheduled", "retry_in=900s"], WAIT);
    assert!(scheduled.contains("credential=api"), "{scheduled}");
    let next = s.next_attempt_in();
    assert!(
        next > 14.0 * 60.0,
        "after a permanent failure the next try is 15 minutes out, not in {next}s"
    );
    wait_line(&daemon, &["on_failure hook ran", "credential=api"], WAIT);

    let (code, text) = s.status();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("api: needs-login"), "{text}");
    assert!(text.contains(INVALID_GRANT_DESCRIPTION), "{text}");
    let json = s.status_json();
    let api = &json["credentials"]["api"];
    assert_eq!(api["health"], "needs-login", "{json}");
    assert_eq!(api["last_error"]["kind"], "permanent", "{json}");
    assert!(
        api["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains(INVALID_GRANT_DESCRIPTION),
        "{json}"
    );

    // No retry storm: five quiet seconds after the refused request.
    let quiet = Duration::from_secs(5);
    std::thread::sleep(quiet.saturating_sub(sent_at.elapsed()));
    assert_eq!(s.stub.count("invalid_grant"), 1, "{:#?}", s.stub.arrivals());
    assert_eq!(s.stub.total(), 2, "{:#?}", s.stub.arrivals());

    let hook_text = std::fs::read_to_string(&hook).unwrap_or_else(|e| {
        panic!(
            "the on_failure hook did not write {}: {e}\n{}",
            hook.display(),
            daemon.output()
        )
    });
    let lines: Vec<&str> = hook_text.lines().collect();
    assert_eq!(lines.len(), 1, "the hook ran once: {hook_text}");
    assert!(
        lines[0].starts_with("api ") && lines[0].contains("invalid_grant"),
        "{hook_text}"
    );
    assert_eq!(daemon.count("on_failure hook ran"), 1);

    // The old token is still in place and still valid.
    assert_eq!(
        [
            fingerprint(&s.refreshd.path("app/.env")),
            fingerprint(&s.refreshd.path("app/token")),
        ],
        targets_before
    );
    assert_eq!(s.target_token(), held);
    // The refusal came from the stub: the provider saw one refresh, and no reuse.
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 1);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    s.refreshd.record_file(&hook);
    s.finish(daemon);
}

#[test]
fn malformed_responses_are_transient_and_a_rotated_refresh_token_in_one_is_kept() {
    let mut s = setup(Mode::Malformed, "");
    let env_before = fingerprint(&s.refreshd.path("app/.env"));
    let daemon = s.refreshd.spawn(&["run"]);

    s.stub.wait_for("malformed", 2, WAIT);
    let warning = wait_line(
        &daemon,
        &[
            "WARN",
            "refresh failed",
            "not a usable token response",
            "not JSON",
        ],
        WAIT,
    );
    assert!(warning.contains("credential=api"), "{warning}");

    s.stub.set_mode(Mode::MalformedJson);
    s.stub.wait_for("malformed_json", 1, WAIT);
    wait_line(
        &daemon,
        &["WARN", "refresh failed", "no `access_token`"],
        WAIT,
    );
    let json = s.status_json();
    assert_eq!(json["credentials"]["api"]["health"], "expired", "{json}");
    assert_eq!(
        json["credentials"]["api"]["last_error"]["kind"], "transient",
        "{json}"
    );

    // The provider rotates the refresh token, but the answer has no access token: the old
    // refresh token is spent, the new one must be kept for the next attempt.
    s.stub.set_mode(Mode::StripAccessToken);
    s.stub.wait_for("strip_access_token", 1, WAIT);
    wait_line(
        &daemon,
        &["WARN", "refresh failed", "its new refresh token was kept"],
        WAIT,
    );
    assert_eq!(fingerprint(&s.refreshd.path("app/.env")), env_before);
    assert!(!s.refreshd.path("app/token").exists());

    s.forward_spends_the_kept_refresh_token(
        &daemon,
        "the refresh token rotated in the malformed answer was spent, not the old one",
    );
    let spent = s.stub.count("strip_access_token") + s.stub.count("forward");
    assert_eq!(
        s.oidc.count("by_grant", "refresh_token") as usize,
        spent,
        "{}",
        s.oidc.stats()
    );
    assert_eq!(s.stub.count("forward"), 1);

    // Retried, never in a hot loop: at least a second between attempts.
    let arrivals = s.stub.arrivals();
    for gap in gaps(&arrivals) {
        assert!(
            gap + Duration::from_millis(100) >= RETRY_INITIAL,
            "{arrivals:#?}"
        );
    }
    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("api: ok"), "{text}");
    s.finish(daemon);
}

/// Times no schedule can be built on (an `exp` before year 0, an `iat` near year 10000)
/// arriving with a rotated refresh token: refused as a transient error, never a crash, the
/// new refresh token kept; the next answer is used and no refresh token is spent twice.
#[test]
fn absurd_token_times_are_refused_and_the_rotated_refresh_token_kept() {
    const BEFORE_YEAR_ZERO: i64 = -62_200_000_000;
    // Within a refresh_at of the calendar's end (9999-12-31T23:59:59Z is 253_402_300_799).
    const NEAR_YEAR_10000: i64 = 253_402_300_000;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut s = setup(
        Mode::AbsurdJwt {
            exp: BEFORE_YEAR_ZERO,
            iat: now,
        },
        "",
    );
    let env_before = fingerprint(&s.refreshd.path("app/.env"));
    let daemon = s.refreshd.spawn(&["run"]);
    s.stub.wait_for("absurd_jwt", 1, WAIT);
    let warning = wait_line(
        &daemon,
        &["WARN", "refresh failed", "`exp` is not a time between 1970"],
        WAIT,
    );
    assert!(
        warning.contains("its new refresh token was kept"),
        "{warning}"
    );
    s.stub.set_mode(Mode::AbsurdJwt {
        exp: NEAR_YEAR_10000 + 700,
        iat: NEAR_YEAR_10000,
    });
    // The first warning matches these words too: wait for a second one, then for the
    // status its attempt publishes right after the line (a loaded host may lag).
    let needles = [
        "WARN",
        "refresh failed",
        "`exp` is not a time between 1970",
        "kept",
    ];
    let deadline = Instant::now() + WAIT;
    let warning = loop {
        let output = daemon.output();
        let matching: Vec<&str> = output
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect();
        if matching.len() >= 2 {
            break matching[1].to_owned();
        }
        assert!(Instant::now() < deadline, "no second warning:\n{output}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(warning.contains("credential=api"), "{warning}");
    let json = loop {
        let json = s.status_json();
        if json["credentials"]["api"]["health"] == "expired" || Instant::now() >= deadline {
            break json;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(json["credentials"]["api"]["health"], "expired", "{json}");
    assert_eq!(
        json["credentials"]["api"]["last_error"]["kind"],
        "transient"
    );
    assert_eq!(fingerprint(&s.refreshd.path("app/.env")), env_before);
    assert!(!s.refreshd.path("app/token").exists());

    s.forward_spends_the_kept_refresh_token(&daemon, "a refresh token was spent twice");
    assert!(!daemon.output().contains("panicked"), "{}", daemon.output());
    s.finish(daemon);
}

/// A provider that echoes the refresh token back in its error, in any shape: the shape
/// never reaches the log, the state file, status, or the `on_failure` hook.
#[test]
fn a_refresh_token_echoed_in_any_shape_is_redacted_everywhere() {
    let mut s = setup(Mode::Forward, ON_FAILURE);
    let hook = s.refreshd.path("on_failure.log");
    let mut daemon = s.refreshd.spawn(&["run"]);
    wait_line(&daemon, &["INFO", "rotated", "credential=api"], WAIT);
    s.stub.set_mode(Mode::EchoRefreshToken);
    let rotate = s.refreshd.run(&["rotate", "api"]);
    assert!(
        stdout(&rotate).contains("invalid_grant"),
        "{}",
        stdout(&rotate)
    );
    s.stub.wait_for("echo_refresh_token", 1, WAIT);
    daemon.wait_for("needs_login=true", WAIT);
    let json = s.status_json();
    let error = json["credentials"]["api"]["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("[redacted]"), "{error}");
    crate::common::eventually("the on_failure hook to run", WAIT, || {
        std::fs::read_to_string(&hook)
            .ok()
            .filter(|t| !t.is_empty())
    });
    s.refreshd.record_file(&hook);
    s.refreshd.record_daemon(&daemon);
    // The state file holds the raw refresh token by design: look at its last error only.
    let stored = s.refreshd.state("api")["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(stored.contains("[redacted]"), "{stored}");
    // Every refresh token the fixture issued, in every shape the stub echoes it in.
    let issued = s.oidc.issued();
    let mut shapes: Vec<String> = Vec::new();
    for token in &issued {
        let echo = crate::common::stub::echoed(token);
        shapes.extend(
            echo.split([' ', '(', ')', ',', '"'])
                // The raw token is in the state file by design; its other shapes are not.
                .filter(|part| part.len() >= 16 && part != token)
                .map(str::to_owned),
        );
    }
    assert!(shapes.len() >= issued.len() * 2, "{shapes:?}");
    s.refreshd.assert_no_secrets(&shapes);
    for shape in shapes.iter().chain(&issued) {
        assert!(
            !stored.contains(shape.as_str()),
            "a shape of a token is in state: {stored}"
        );
        assert!(
            !error.contains(shape.as_str()),
            "a shape of a token is in status: {error}"
        );
    }
    s.finish(daemon);
}

/// SIGTERM while a token request takes longer than the fixed 80 s the drain used to allow:
/// the daemon waits for the answer (its `timeout` plus 60 s), stores the rotated refresh
/// token, writes the targets, exits 0, and the next run spends that stored token.
#[test]
fn sigterm_waits_for_an_answer_slower_than_80_seconds() {
    let mut s = setup(Mode::Forward, "");
    let config = std::fs::read_to_string(&s.refreshd.config).unwrap();
    std::fs::write(
        &s.refreshd.config,
        config.replace(
            &format!("timeout = \"{}s\"", TIMEOUT.as_secs()),
            "timeout = \"120s\"",
        ),
    )
    .unwrap();
    let mut daemon = s.refreshd.spawn(&["run"]);
    daemon.wait_for("rotated credential=api", WAIT);
    s.stub.set_mode(Mode::Slow(Duration::from_secs(85)));
    let mut rotate = s.refreshd.command(&["rotate", "api"]).spawn().unwrap();
    // The stub counts a request once answered: give the rotation time to send its own.
    std::thread::sleep(Duration::from_secs(3));
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(150));
    assert!(status.success(), "{status}:\n{}", daemon.output());
    assert_eq!(
        daemon.count("rotated credential=api"),
        2,
        "{}",
        daemon.output()
    );
    let _ = rotate.wait();
    s.stub.set_mode(Mode::Forward);
    let once = s.refreshd.run(&["once", "--force"]);
    assert!(once.status.success(), "{}", stderr(&once));
    assert_eq!(
        s.oidc.count("by_error", "invalid_grant"),
        0,
        "the slow answer's refresh token was lost: {}",
        s.oidc.stats()
    );
    s.refreshd.record_daemon(&daemon);
    s.refreshd
        .assert_no_secrets(&[s.grant.refresh_token.as_str(), "rt-basic-secret"]);
    s.refreshd.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn no_fault_ever_touches_a_target() {
    let mut s = setup(Mode::Forward, "");
    let daemon = s.refreshd.spawn(&["run"]);
    wait_line(&daemon, &["INFO", "rotated", "credential=api"], WAIT);
    let held = s.target_token();
    let targets = ["app/.env", "app/token"].map(|t| s.refreshd.path(t));
    let before = targets.clone().map(|t| fingerprint(&t));

    let faults = [
        Mode::Unavailable {
            retry_after_secs: 1,
        },
        Mode::TooMany {
            retry_after_secs: 1,
        },
        Mode::Hang(TIMEOUT * 2),
        Mode::Malformed,
        Mode::MalformedJson,
        // Last: a permanent failure stops the transient retries.
        Mode::InvalidGrant,
    ];
    for fault in faults {
        let label = fault.label();
        let permanent = fault == Mode::InvalidGrant;
        s.stub.set_mode(fault);
        let rotate = s.refreshd.run(&["rotate", "api"]);
        assert_eq!(
            rotate.status.code(),
            Some(1),
            "{label}: {}{}",
            stdout(&rotate),
            stderr(&rotate)
        );
        assert_eq!(s.stub.count(label), 1, "{label}: {:#?}", s.stub.arrivals());
        if !permanent {
            // Let the daemon's own retry come and go too: it finds the held token still
            // good and not due, and must leave the targets alone as well.
            let requests = s.stub.total();
            s.wait_for_the_retry(label);
            assert_eq!(s.stub.total(), requests, "{:#?}", s.stub.arrivals());
        }
        let after = targets.clone().map(|t| fingerprint(&t));
        assert!(
            after == before,
            "{label} changed a target:\n{}\n---\n{}",
            String::from_utf8_lossy(&after[0].0),
            String::from_utf8_lossy(&after[1].0)
        );
        assert_eq!(s.target_token(), held, "{label}");
    }
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 1);
    assert_eq!(s.status().0, Some(1));

    // The targets were writable all along: the next good answer replaces the token.
    s.stub.set_mode(Mode::Forward);
    let rotate = s.refreshd.run(&["rotate", "api"]);
    assert_eq!(rotate.status.code(), Some(0), "{}", stderr(&rotate));
    assert!(
        stdout(&rotate).contains("api: rotated"),
        "{}",
        stdout(&rotate)
    );
    let fresh = s.target_token();
    assert_ne!(fresh, held);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("api: ok"), "{text}");
    s.finish(daemon);
}
