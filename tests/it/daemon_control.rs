//! The running daemon as an operator talks to it (design §2 and §4): the control socket and
//! its clients `refreshd status`, `rotate` and `token`; `status` without a daemon; the
//! socket's owner-only access; `/metrics` and `/healthz`; the rolling log file and JSON
//! logs; and `refreshd demo` end to end.
//!
//! Every token comes from the real `oidc-provider` fixture on loopback (JWT access tokens,
//! rotating refresh tokens), except in the `command`-source and demo tests, which grep for
//! the tokens they produced instead. Everything refreshd printed or logged is recorded and
//! checked for leaked tokens at the end of each test; `refreshd token`'s output (whose job
//! is to print one) is never recorded.
//!
//! Waits are on log lines and files with generous timeouts: the tests share two cores with
//! others running concurrently.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{
    Daemon, Oidc, Refreshd, assert_success, eventually, fingerprint, jwt_claims, promtool, stderr,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Far more than any step needs on an idle machine.
const WAIT: Duration = Duration::from_secs(30);

/// The text-format line the daemon logs once every credential settled.
const READY: &str = "INFO ready status=";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_owned()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// One refresh-grant credential (`api`, client `rt-basic`) against the fixture, writing a
/// `.env` key and a raw token file, with its control socket in the test's directory.
struct Setup {
    oidc: Oidc,
    r: Refreshd,
}

impl Setup {
    fn new() -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), 60);
        std::fs::create_dir(r.path("app")).unwrap();
        let grant = oidc.grant("rt-basic");
        std::fs::write(r.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
        std::fs::write(r.path("client.secret"), "rt-basic-secret").unwrap();
        Setup { oidc, r }
    }

    fn socket(&self) -> PathBuf {
        self.r.path("run/control.sock")
    }

    /// `daemon` goes in `[daemon]`, `rest` after the `api` credential (e.g. `[log]`).
    fn write_config(&self, daemon: &str, rest: &str) {
        let dir = self.r.dir.path().display();
        self.r.write_config(&format!(
            r#"control_socket = "{socket}"
{daemon}

[credentials.api]
refresh_at = "50s"
min_remaining = "10s"
jitter = "1s"
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [
  {{ type = "dotenv", path = "{dir}/app/.env", key = "API_TOKEN" }},
  {{ type = "file", path = "{dir}/app/token" }},
]

{rest}
"#,
            socket = self.socket().display(),
            url = self.oidc.token_endpoint,
        ));
    }

    /// The token in the `.env` target, as the app would read it.
    fn env_token(&self) -> String {
        let text = std::fs::read_to_string(self.r.path("app/.env")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("API_TOKEN="))
            .unwrap_or_else(|| panic!("no API_TOKEN in .env:\n{text}"))
            .to_owned()
    }

    fn file_token(&self) -> String {
        std::fs::read_to_string(self.r.path("app/token")).unwrap()
    }

    fn refresh_grants(&self) -> u64 {
        self.oidc.count("by_grant", "refresh_token")
    }

    /// Starts `refreshd run` and waits until its first rotation is published.
    fn start(&self) -> Daemon {
        let mut daemon = self.r.spawn(&["run"]);
        daemon.wait_for("rotated credential=api", WAIT);
        daemon.wait_for(READY, WAIT);
        daemon
    }

    /// `refreshd status --json`, recorded; (exit code, parsed snapshot).
    fn status_json(&mut self) -> (Option<i32>, Value) {
        let output = self.r.run(&["status", "--json"]);
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}):\n{}\n{}",
                stdout(&output),
                stderr(&output)
            )
        });
        (output.status.code(), json)
    }

    fn stop(&mut self, mut daemon: Daemon, signal: Signal) {
        daemon.signal(signal);
        let status = daemon.wait_exit(WAIT);
        self.r.record_daemon(&daemon);
        assert_eq!(
            status.code(),
            Some(0),
            "a clean stop exits 0:\n{}",
            daemon.output()
        );
        assert!(
            !self.socket().exists(),
            "the control socket is removed on exit"
        );
    }
}

#[test]
fn control_socket_serves_status_rotate_and_token_then_status_falls_back_to_state() {
    let mut s = Setup::new();
    s.write_config("", "");
    let mut daemon = s.start();
    let first_line = daemon.wait_for("rotated credential=api", WAIT);
    assert_eq!(s.refresh_grants(), 1);

    // The socket: owner-only.
    let meta = std::fs::metadata(s.socket()).unwrap();
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "srw------- (got {:o})",
        meta.permissions().mode()
    );
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let dir = std::fs::metadata(s.r.path("run")).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o7777,
        0o700,
        "the daemon creates the socket's directory 0700"
    );

    // A request that is not one: an error answer, and the daemon carries on.
    let answer = raw_request(&s.socket(), "not json\n");
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a valid request")),
        "{answer}"
    );

    // status, human-readable.
    let token = s.env_token();
    let claims = jwt_claims(&token);
    let output = s.r.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let issuer = claims["iss"].as_str().unwrap();
    let expires = rfc3339(claims["exp"].as_i64().unwrap());
    for expected in [
        "api: ok (oauth-refresh)".to_owned(),
        "  subject:       alice".to_owned(),
        "  client_id:     rt-basic".to_owned(),
        format!("  issuer:        {issuer}"),
        format!("  expires_at:    {expires} (in "),
        format!("  fingerprint:   {}", fingerprint(&token)),
        "  last rotation: ".to_owned(),
        "  next refresh:  ".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&expected)),
            "no line starting {expected:?} in:\n{text}"
        );
    }
    let scopes = text
        .lines()
        .find_map(|l| l.strip_prefix("  scopes:        "))
        .unwrap_or_else(|| panic!("no scopes line in:\n{text}"));
    assert!(scopes.split(' ').any(|s| s == "api"), "{scopes}");
    assert!(!text.contains("no daemon running"), "{text}");

    // status --json: from the daemon, with the fingerprint of the logged rotation.
    let (code, json) = s.status_json();
    assert_eq!(code, Some(0));
    assert_eq!(json["from"], "daemon", "{json:#}");
    let api = &json["credentials"]["api"];
    assert_eq!(api["health"], "ok", "{json:#}");
    assert_eq!(api["subject"], "alice");
    assert_eq!(api["client_id"], "rt-basic");
    assert_eq!(api["issuer"], issuer);
    assert_eq!(api["fingerprint"], field(&first_line, "fingerprint"));
    assert_eq!(api["fingerprint"], fingerprint(&token).as_str());
    assert!(api["next_refresh"].is_string() && api["last_rotation"].is_string());

    // token: exactly what the targets hold (not recorded: printing it is its job).
    let printed = s.r.command(&["token", "api"]).output().unwrap();
    assert_success(&printed);
    assert_eq!(stdout(&printed), format!("{token}\n"));
    assert_eq!(s.file_token(), format!("{token}\n"));

    // rotate NAME: one refresh grant, new token in the targets.
    let output = s.r.run(&["rotate", "api"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("api: rotated"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        s.refresh_grants(),
        2,
        "exactly one refresh for `rotate api`"
    );
    let second = s.env_token();
    assert_ne!(second, token, "the target changed");
    assert!(
        stdout(&output).contains(&fingerprint(&second)),
        "{}",
        stdout(&output)
    );
    let line = daemon.wait_for_n("rotated credential=api", 2, WAIT);
    assert_eq!(field(&line, "fingerprint"), fingerprint(&second));

    // rotate --all: likewise.
    let output = s.r.run(&["rotate", "--all"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("api: rotated"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        s.refresh_grants(),
        3,
        "exactly one refresh for `rotate --all`"
    );
    let third = s.env_token();
    assert_ne!(third, second);
    assert_eq!(s.file_token(), format!("{third}\n"));
    // The daemon publishes the new status right after answering.
    eventually("status shows the --all rotation", WAIT, || {
        let (_, json) = s.status_json();
        (json["credentials"]["api"]["fingerprint"] == fingerprint(&third).as_str()).then_some(())
    });

    // An unknown name fails and refreshes nothing.
    let output = s.r.run(&["rotate", "nosuch"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("nosuch"), "{}", stderr(&output));
    assert_eq!(s.refresh_grants(), 3);
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);

    // Stopped: exit 0, socket gone, and status answers from the state directory.
    s.stop(daemon, Signal::SIGTERM);
    let output = s.r.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("api: ok (oauth-refresh)"), "{text}");
    assert!(text.contains("(no daemon running)"), "{text}");
    let (code, json) = s.status_json();
    assert_eq!(code, Some(0));
    assert_eq!(json["from"], "state", "{json:#}");
    assert_eq!(json["credentials"]["api"]["health"], "ok");
    assert_eq!(
        json["credentials"]["api"]["fingerprint"],
        fingerprint(&third).as_str()
    );
    let printed = s.r.command(&["token", "api"]).output().unwrap();
    assert_success(&printed);
    assert_eq!(stdout(&printed), format!("{third}\n"));
    assert_eq!(s.refresh_grants(), 3, "status and token never refresh");

    s.r.assert_no_issued_tokens(&s.oidc);
}

/// Sends `text` on the control socket as this (the daemon's own) user; the answer line.
fn raw_request(socket: &Path, text: &str) -> Value {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

#[test]
fn status_without_a_daemon_reports_no_data_then_ok_then_expired() {
    let mut r = Refreshd::new();
    // Unique per run, so the leak check below cannot pass by accident.
    let secret = format!(
        "cmd-token-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    r.write_config(&format!(
        r#"control_socket = "{socket}"

[credentials.short]
refresh_at = "1s"
min_remaining = "1s"
jitter = "0s"
default_lifetime = "6s"
source = {{ type = "command", argv = ["printf", "%s", "{secret}"], format = "plain" }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        socket = r.path("run/control.sock").display(),
        dir = r.dir.path().display(),
    ));
    let status_json = |r: &mut Refreshd| {
        let output = r.run(&["status", "--json"]);
        let json: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)));
        (output.status.code(), json)
    };

    // Never ran: no data.
    let output = r.run(&["status"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "no data: {}",
        stdout(&output)
    );
    let (code, json) = status_json(&mut r);
    assert_eq!(code, Some(3));
    assert_eq!(json["from"], "state", "{json:#}");
    assert_eq!(
        json["credentials"]["short"]["health"], "pending",
        "{json:#}"
    );
    let token = r.command(&["token", "short"]).output().unwrap();
    assert_eq!(token.status.code(), Some(1), "no token yet");
    assert!(stdout(&token).is_empty());

    // One run: a 6-second token, ok for now.
    let started = Instant::now();
    assert_success(&r.run(&["once"]));
    assert_eq!(
        std::fs::read_to_string(r.path("token")).unwrap(),
        format!("{secret}\n")
    );
    let (code, json) = status_json(&mut r);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "too slow to see the token valid"
    );
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["credentials"]["short"]["health"], "ok", "{json:#}");
    let token = r.command(&["token", "short"]).output().unwrap();
    assert_success(&token);
    assert_eq!(stdout(&token), format!("{secret}\n"));

    // Past its expiry: unhealthy, and `token` refuses.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    let output = r.run(&["status"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).starts_with("short: expired (command)"),
        "{}",
        stdout(&output)
    );
    let (code, json) = status_json(&mut r);
    assert_eq!(code, Some(1));
    assert_eq!(json["from"], "state");
    assert_eq!(
        json["credentials"]["short"]["health"], "expired",
        "{json:#}"
    );
    let token = r.command(&["token", "short"]).output().unwrap();
    assert_eq!(token.status.code(), Some(1));
    assert!(stdout(&token).is_empty(), "an expired token is not printed");
    assert!(stderr(&token).contains("expired"), "{}", stderr(&token));

    // No daemon to ask: `rotate` says so and fails.
    let output = r.run(&["rotate", "short"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no daemon is listening"),
        "{}",
        stderr(&output)
    );

    r.assert_no_secrets(&[&secret]);
}

/// What a client running as `nobody` gets from the socket: `connect-error EACCES`, or
/// `answer '…'` with whatever the daemon sent before closing.
fn connect_as_nobody(socket: &Path, request: &str) -> String {
    const CLIENT: &str = r#"
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-error", errno.errorcode.get(e.errno, e.errno))
    sys.exit(0)
try:
    s.sendall(sys.argv[2].encode() + b"\n")
except OSError as e:
    print("send-error", errno.errorcode.get(e.errno, e.errno))
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print("recv-error", errno.errorcode.get(e.errno, e.errno))
print("answer", repr(data.decode(errors="replace")))
"#;
    let output = Command::new("/usr/bin/python3")
        .args(["-c", CLIENT])
        .arg(socket)
        .arg(request)
        .current_dir("/")
        .env_clear()
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the client as uid 65534 failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn only_the_daemons_own_user_gets_an_answer() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it connects to the control socket as another uid (65534)"
    );
    let mut s = Setup::new();
    // Let `nobody` reach the socket's directory, so only the socket itself keeps it out.
    std::fs::set_permissions(s.r.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(s.r.path("run")).unwrap();
    std::fs::set_permissions(s.r.path("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write_config("", "");
    let mut daemon = s.start();

    // First line of defence: the socket is 0600, so another user cannot connect.
    let answer = connect_as_nobody(&s.socket(), r#"{"op":"status"}"#);
    s.r.record_text(&answer);
    assert_eq!(answer.trim(), "connect-error EACCES", "{answer}");

    // Second: with the mode loosened, the daemon checks the peer's uid and says nothing.
    std::fs::set_permissions(s.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    for request in [r#"{"op":"token","name":"api"}"#, r#"{"op":"status"}"#] {
        let answer = connect_as_nobody(&s.socket(), request);
        s.r.record_text(&answer);
        let last = answer.lines().last().unwrap_or_default();
        assert_eq!(
            last, "answer ''",
            "another user got an answer to {request}: {answer}"
        );
    }
    let refused = daemon.wait_for("refused a connection from another user", WAIT);
    assert!(refused.contains("peer_uid=Some(65534)"), "{refused}");
    // Logged by the daemon as it refuses; read here by a thread: wait for the second line.
    daemon.wait_for_n("refused a connection from another user", 2, WAIT);
    assert!(daemon.count("refused a connection from another user") >= 2);
    // The owner is still served.
    let output = s.r.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    s.stop(daemon, Signal::SIGTERM);
    s.r.assert_no_issued_tokens(&s.oidc);
}

/// Records what the other-user client printed, through the leak check's own entry point.
trait RecordText {
    fn record_text(&mut self, text: &str);
}

impl RecordText for Refreshd {
    fn record_text(&mut self, text: &str) {
        use std::os::unix::process::ExitStatusExt;
        self.record(&Output {
            status: std::process::ExitStatus::from_raw(0),
            stdout: text.as_bytes().to_vec(),
            stderr: Vec::new(),
        });
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An operator who just broke the config file can still ask the daemon what it runs: the
/// daemon refused the edit and kept its config; `status` says both, and exits 78.
#[test]
fn status_reports_the_running_daemon_while_the_config_file_is_invalid() {
    let mut s = Setup::new();
    s.write_config("", "");
    let mut daemon = s.start();
    let text = std::fs::read_to_string(&s.r.config).unwrap();
    // Still TOML, so the socket can be found; not a valid config.
    std::fs::write(&s.r.config, format!("{text}\ncolour = \"red\"\n")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for("the new configuration is invalid", WAIT);

    let output = s.r.run(&["status"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        err.contains(&format!("{}:", s.r.config.display())) && err.contains("colour"),
        "the config error, with file and key: {err}"
    );
    assert!(
        err.contains("runs the configuration it last loaded"),
        "{err}"
    );
    assert!(out.contains("api: ok (oauth-refresh)"), "{out}");
    assert!(
        out.contains(
            "config: the last reload was refused (see the log); running the config loaded "
        ),
        "{out}"
    );
    let output = s.r.run(&["status", "--json"]);
    assert_eq!(output.status.code(), Some(78));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["daemon"]["config_reload_ok"], false, "{json:#}");
    assert_eq!(json["credentials"]["api"]["health"], "ok", "{json:#}");

    s.stop(daemon, Signal::SIGTERM);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn metrics_and_probes_follow_the_credentials_and_pass_promtool() {
    let mut s = Setup::new();
    let port = free_port();
    s.write_config(&format!("metrics_listen = \"127.0.0.1:{port}\""), "");
    let daemon = s.start();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let response = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().unwrap())
    };

    let exp = jwt_claims(&s.env_token())["exp"].as_i64().unwrap();
    let (status, content_type, body) = get("/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let has = |body: &str, line: &str| body.lines().any(|l| l == line);
    for line in [
        format!("refreshd_token_expiry_timestamp_seconds{{credential=\"api\"}} {exp}"),
        "refreshd_rotations_total{credential=\"api\",result=\"success\"} 1".to_owned(),
        "refreshd_rotations_total{credential=\"api\",result=\"failure\"} 0".to_owned(),
        "refreshd_rotation_duration_seconds_bucket{credential=\"api\",le=\"30\"} 1".to_owned(),
        "refreshd_rotation_duration_seconds_bucket{credential=\"api\",le=\"+Inf\"} 1".to_owned(),
        "refreshd_rotation_duration_seconds_count{credential=\"api\"} 1".to_owned(),
        "refreshd_credential_healthy{credential=\"api\"} 1".to_owned(),
        "# TYPE refreshd_rotation_duration_seconds histogram".to_owned(),
        format!(
            "refreshd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "refreshd_config_last_reload_successful 1".to_owned(),
        "refreshd_consecutive_failures{credential=\"api\"} 0".to_owned(),
        "refreshd_reloads_total{credential=\"api\",result=\"failure\"} 0".to_owned(),
    ] {
        assert!(has(&body, &line), "no line {line:?} in /metrics:\n{body}");
    }
    let value = |body: &str, prefix: &str| -> i64 {
        body.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = value(&body, "refreshd_start_time_seconds");
    assert!(now - 120 < started && started <= now, "{started} vs {now}");
    assert_eq!(
        value(
            &body,
            "refreshd_config_last_reload_success_timestamp_seconds"
        ),
        started
    );
    let success = value(
        &body,
        "refreshd_last_success_timestamp_seconds{credential=\"api\"}",
    );
    assert!(started <= success && success <= now, "{success}");
    let next = value(
        &body,
        "refreshd_next_refresh_timestamp_seconds{credential=\"api\"}",
    );
    assert!(success < next && next < exp, "{success} < {next} < {exp}");
    promtool(&["check", "metrics"], &body);
    assert_eq!(get("/livez"), (200, "text/plain".into(), "ok\n".into()));
    assert_eq!(get("/readyz"), (200, "text/plain".into(), "ok\n".into()));
    let sum: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("refreshd_rotation_duration_seconds_sum{credential=\"api\"} "))
        .unwrap_or_else(|| panic!("no _sum in:\n{body}"))
        .parse()
        .unwrap();
    assert!(sum > 0.0 && sum < 30.0, "{sum}");
    assert_eq!(get("/healthz"), (200, "text/plain".into(), "ok\n".into()));
    let post = http
        .post(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .unwrap();
    assert_eq!(post.status().as_u16(), 405, "read-only");

    // A rotation from the control socket counts, and the expiry follows the new token.
    assert_success(&s.r.run(&["rotate", "api"]));
    let exp = jwt_claims(&s.env_token())["exp"].as_i64().unwrap();
    let body = eventually("/metrics counts the second rotation", WAIT, || {
        let (_, _, body) = get("/metrics");
        has(
            &body,
            "refreshd_rotations_total{credential=\"api\",result=\"success\"} 2",
        )
        .then_some(body)
    });
    assert!(
        has(
            &body,
            &format!("refreshd_token_expiry_timestamp_seconds{{credential=\"api\"}} {exp}")
        ),
        "{body}"
    );
    assert!(
        has(
            &body,
            "refreshd_rotation_duration_seconds_count{credential=\"api\"} 2"
        ),
        "{body}"
    );

    // A credential that never gets a token: /healthz 503 naming it, healthy 0.
    s.write_config(
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        &format!(
            "[credentials.broken]\nsource = {{ type = \"command\", argv = [\"false\"] }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
            s.r.path("app/broken").display()
        ),
    );
    daemon.signal(Signal::SIGHUP);
    let (status, _, body) = eventually("/healthz turns 503", WAIT, || {
        let reply = get("/healthz");
        (reply.0 != 200).then_some(reply)
    });
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "no valid token: broken\n");
    assert_eq!(
        get("/readyz"),
        (503, "text/plain".into(), "no valid token: broken\n".into())
    );
    // A source that fails is not refreshd being stuck: a liveness probe must not restart it.
    assert_eq!(get("/livez").0, 200);
    let (_, _, body) = get("/metrics");
    promtool(&["check", "metrics"], &body);
    assert!(
        value(
            &body,
            "refreshd_consecutive_failures{credential=\"broken\"}"
        ) >= 1,
        "{body}"
    );
    for line in [
        "refreshd_config_last_reload_successful 1",
        "refreshd_credential_healthy{credential=\"broken\"} 0",
        "refreshd_credential_healthy{credential=\"api\"} 1",
        "refreshd_rotations_total{credential=\"api\",result=\"success\"} 2",
    ] {
        assert!(has(&body, line), "no line {line:?} in /metrics:\n{body}");
    }
    assert!(
        !body.contains("refreshd_token_expiry_timestamp_seconds{credential=\"broken\"}"),
        "{body}"
    );
    s.r.record_text(&body);

    // A config that does not parse is refused, the running one kept, and the gauge says so.
    std::fs::write(&s.r.config, "[credentials.api\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let body = eventually("the refused reload shows in /metrics", WAIT, || {
        let (_, _, body) = get("/metrics");
        has(&body, "refreshd_config_last_reload_successful 0").then_some(body)
    });
    assert!(
        has(
            &body,
            "refreshd_rotations_total{credential=\"api\",result=\"success\"} 2"
        ),
        "the running config stays: {body}"
    );
    s.r.record_text(&body);

    s.stop(daemon, Signal::SIGTERM);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn rotation_log_file_and_json_logs() {
    let mut s = Setup::new();
    let logs = s.r.path("logs");
    s.write_config(
        "",
        &format!(
            "[log]\nfile = \"{}/rotation.log\"\nrotate = \"never\"\n",
            logs.display()
        ),
    );
    let daemon = s.start();
    let token = s.env_token();
    let claims = jwt_claims(&token);
    let file = logs.join("rotation.log");
    let line = eventually("the rotated line in rotation.log", WAIT, || {
        let text = std::fs::read_to_string(&file).ok()?;
        text.lines()
            .find(|l| l.contains(" rotated credential=api "))
            .map(str::to_owned)
    });
    assert_eq!(
        field(&line, "expires_at"),
        rfc3339(claims["exp"].as_i64().unwrap())
    );
    let next = field(&line, "next_refresh");
    assert!(
        time::OffsetDateTime::parse(&next, &time::format_description::well_known::Rfc3339).is_ok(),
        "{line}"
    );
    assert_eq!(field(&line, "targets"), "2");
    let took = field(&line, "took");
    assert!(
        took.strip_suffix("ms")
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "{line}"
    );
    assert_eq!(field(&line, "fingerprint"), fingerprint(&token));
    s.stop(daemon, Signal::SIGTERM);
    s.r.record_file(&file);
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&logs), ["rotation.log"]);

    // Daily files, JSON lines. The token is still valid, so `rotate` makes the rotation.
    let daily = s.r.path("daily");
    s.write_config(
        "",
        &format!(
            "[log]\nfile = \"{}/rotation.log\"\nrotate = \"daily\"\nformat = \"json\"\n",
            daily.display()
        ),
    );
    let rotated = |text: &str, source: &str| -> Value {
        let mut found = None;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let json: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a {source} line is not JSON ({e}): {line:?}"));
            assert!(json["level"].is_string(), "{line}");
            if json["message"] == "rotated" {
                found = Some(json);
            }
        }
        found.unwrap_or_else(|| panic!("no rotated line in {source}:\n{text}"))
    };
    let before = time::OffsetDateTime::now_utc().date();
    let mut daemon = s.r.spawn(&["run"]);
    daemon.wait_for("\"message\":\"ready\"", WAIT);
    let output = s.r.run(&["rotate", "api"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let second = s.env_token();
    assert_ne!(second, token);
    daemon.wait_for("\"message\":\"rotated\"", WAIT);
    let after = time::OffsetDateTime::now_utc().date();
    // Every line the daemon printed is JSON; the rotation's carries its fields.
    let json = rotated(&daemon.output(), "stderr");
    assert_eq!(json["credential"], "api", "{json}");
    assert_eq!(json["fingerprint"], fingerprint(&second).as_str(), "{json}");
    assert_eq!(
        json["expires_at"],
        rfc3339(jwt_claims(&second)["exp"].as_i64().unwrap()).as_str(),
        "{json}"
    );
    assert_eq!(json["targets"], 2, "{json}");
    s.stop(daemon, Signal::SIGTERM);

    let files = names(&daily);
    let day = |d: time::Date| {
        format!(
            "rotation.{:04}-{:02}-{:02}.log",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    };
    assert!(
        files.len() == 1 && (files[0] == day(before) || files[0] == day(after)),
        "expected rotation.YYYY-MM-DD.log (UTC), got {files:?}"
    );
    let file = daily.join(&files[0]);
    s.r.record_file(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    let json = rotated(&text, "log file");
    assert_eq!(json["credential"], "api", "{json}");
    assert_eq!(json["fingerprint"], fingerprint(&second).as_str(), "{json}");
    assert!(json["expires_at"].is_string() && json["took"].is_string());
    assert_eq!(
        std::fs::read_to_string(logs.join("rotation.log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("rotated"))
            .count(),
        1,
        "the first run's file is left alone"
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn demo_rotates_30_second_tokens_into_its_directory_until_ctrl_c() {
    let mut r = Refreshd::new();
    let cwd = r.dir.path().to_owned();
    let demo = cwd.join("refreshd-demo");
    let config = demo.join("config.toml");
    let mut command = r.command(&["demo"]);
    command.current_dir(&cwd);
    let mut daemon = r.spawn_with(command);
    daemon.wait_for("rotated credential=demo", WAIT);
    let first = std::fs::read_to_string(demo.join("token")).unwrap();
    let first = first.trim_end_matches('\n').to_owned();
    let bootstrap = std::fs::read_to_string(demo.join("bootstrap.refresh")).unwrap();

    // The second comes from the schedule: refresh_at 20 s ± 2 s.
    let line = daemon.wait_for_n("rotated credential=demo", 2, Duration::from_secs(50));
    let token = std::fs::read_to_string(demo.join("token")).unwrap();
    let token = token
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("the token file ends with a newline: {token:?}"))
        .to_owned();
    assert_ne!(token, first, "the second rotation changed the token file");
    assert_eq!(field(&line, "fingerprint"), fingerprint(&token));

    // python-dotenv reads the same token back from .env (not recorded: it is the token).
    let python = crate::common::repo().join(".test-peers/venv/bin/python");
    crate::common::require(&python, "the python-dotenv venv");
    let read = Command::new(&python)
        .args([
            "-c",
            "import sys; from dotenv import dotenv_values; sys.stdout.write(dotenv_values(sys.argv[1])['DEMO_ACCESS_TOKEN'])",
        ])
        .arg(demo.join(".env"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(
        stdout(&read),
        token,
        "python-dotenv reads the token file's value"
    );
    let pgpass = std::fs::read_to_string(demo.join(".pgpass")).unwrap();
    assert!(
        pgpass
            .lines()
            .any(|l| l == format!("localhost:5432:demo:demo:{token}")),
        ".pgpass has no line for the current token"
    );
    assert_eq!(
        std::fs::metadata(demo.join(".pgpass"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let output = r.run(&["status", "-c", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("demo: ok (oauth-refresh)"),
        "{}",
        stdout(&output)
    );
    let refresh = serde_json::from_str::<Value>(
        &std::fs::read_to_string(demo.join("state/demo.json")).unwrap(),
    )
    .unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    daemon.signal(Signal::SIGINT);
    let status = daemon.wait_exit(WAIT);
    r.record_daemon(&daemon);
    assert_eq!(
        status.code(),
        Some(0),
        "Ctrl-C ends the demo with 0:\n{}",
        daemon.output()
    );
    assert!(
        !demo.join("control.sock").exists(),
        "the control socket is removed"
    );
    r.assert_no_secrets(&[&first, &token, bootstrap.trim(), &refresh]);
}

/// `log.audit`: the rotation, a reader's token read (uid 65534 is among `api`'s readers),
/// its refused read of a name it may not read and its refused `rotate`, and a config reload
/// each leave one line chained to the one before; `audit verify` passes on the real log,
/// and fails once a line is edited. No token is in the file.
#[test]
fn the_audit_log_chains_rotations_reads_refusals_and_reloads() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it reads a token through the control socket as uid 65534"
    );
    let mut s = Setup::new();
    std::fs::set_permissions(s.r.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir(s.r.path("run")).unwrap();
    let audit = s.r.path("audit.jsonl");
    s.write_config(
        "",
        &format!(
            "readers = [\"uid:65534\"]\n\n[log]\naudit = \"{}\"",
            audit.display()
        ),
    );
    let mut daemon = s.start();
    // Readers configured: the socket lets other users connect, each request is checked.
    let mode = std::fs::metadata(s.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "socket mode {mode:o}");
    // Not recorded: it holds the token, handed out on purpose.
    let read = connect_as_nobody(&s.socket(), r#"{"op":"token","name":"api"}"#);
    assert!(read.contains(r#"{"ok":true,"token":""#), "{read}");
    assert!(
        read.contains(&s.env_token()),
        "the reader got another token"
    );
    for (request, said) in [
        (
            r#"{"op":"token","name":"nope"}"#,
            "\"nope\\\\\" that this user may read",
        ),
        (
            r#"{"op":"rotate","names":["api"]}"#,
            "own user and root may rotate",
        ),
    ] {
        let answer = connect_as_nobody(&s.socket(), request);
        s.r.record_text(&answer);
        assert!(answer.contains(said), "{request}: {answer}");
    }
    daemon.wait_for("token read refused", WAIT);
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for("config reloaded", WAIT);
    s.stop(daemon, Signal::SIGTERM);

    let verified = s.r.run(&["audit", "verify", audit.to_str().unwrap()]);
    assert_success(&verified);
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |kind: &str, check: &dyn Fn(&Value) -> bool| {
        lines.iter().any(|l| l["event"] == kind && check(l))
    };
    assert!(has("rotation", &|l| l["credential"] == "api"), "{text}");
    assert!(
        has("token_read", &|l| l["uid"] == 65534 && l["via"] == "socket"),
        "{text}"
    );
    assert!(
        has("refused", &|l| l["credential"] == "nope"
            && l["what"] == "token"),
        "{text}"
    );
    assert!(has("refused", &|l| l["what"] == "rotate"), "{text}");
    assert!(has("config_reload", &|l| l["ok"] == true), "{text}");
    s.r.record_file(&audit);
    s.r.assert_no_issued_tokens(&s.oidc);

    // An edited line (not the newest) breaks the chain at the line after it.
    let edited = text.replacen("\"event\":\"rotation\"", "\"event\":\"rotatio\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&audit, edited).unwrap();
    let broken = s.r.run(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("was edited"),
        "{}",
        stderr(&broken)
    );
}
