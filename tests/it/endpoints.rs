//! The SDK endpoints (`serve`), with the real clients: the Databricks SDK for Python
//! (`metadata-service` auth), google-auth (`compute_engine.Credentials`, found by
//! `google.auth.default()` through the metadata server probe) and azure-identity
//! (`ManagedIdentityCredential`, App Service). Each gets the daemon's current token with its
//! real expiry; the Databricks SDK asks again only once its cached token expires, and then
//! gets the rotated one. Another uid is refused on every endpoint until it is a reader; the
//! GCE endpoint refuses a request without `Metadata-Flavor: Google` or with
//! `X-Forwarded-For`; the Databricks one refuses another workspace. A thousand clients
//! around a refresh point make one token request at the provider, and those after the point
//! get the new token. A reload opens and closes listeners; a busy port is named.
//!
//! Every token comes from the oidc-provider fixture. The SDK scripts print the tokens they
//! got on their own stdout, which the test reads and never records; everything refreshd
//! printed is recorded and checked for leaked tokens (and the App Service secret) at the end.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{
    Daemon, INSTALL, Oidc, Refreshd, assert_success, jwt_claims, repo, require_root,
    rt_basic_source, stderr, stdout,
};

/// Far more than any step needs on an idle machine.
const WAIT: Duration = Duration::from_secs(30);

/// The line the daemon logs once every credential settled.
const READY: &str = "INFO ready status=";

/// The workspace the Databricks endpoints of the security test serve.
const WORKSPACE: &str = "https://dbc-1234.cloud.databricks.com";

/// One refresh-grant credential (`api`, client `rt-basic`) against the fixture, with its
/// control socket in the test's directory.
struct Setup {
    oidc: Oidc,
    r: Refreshd,
    source: String,
}

impl Setup {
    /// Tokens live `ttl` seconds.
    fn new(ttl: u32) -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), ttl);
        std::fs::create_dir(r.path("app")).unwrap();
        let (_, source) = rt_basic_source(&r, &oidc);
        Setup { oidc, r, source }
    }

    /// `api` with `timing` and `access` (its `serve`, `readers`) lines.
    fn write_config(&self, timing: &str, access: &str) {
        self.r.write_config(&format!(
            "control_socket = \"{socket}\"\n\n[credentials.api]\n{timing}\n{source}\n{access}\n",
            socket = self.r.path("run/control.sock").display(),
            source = self.source,
        ));
    }

    /// Starts `refreshd run` and waits until its first rotation is published.
    fn start(&self) -> Daemon {
        let mut daemon = self.r.spawn(&["run"]);
        daemon.wait_for("rotated credential=api", WAIT);
        daemon.wait_for(READY, WAIT);
        daemon
    }

    /// Starts `refreshd run` again: it finds a valid token and is ready at once.
    fn restart(&self) -> Daemon {
        let mut daemon = self.r.spawn(&["run"]);
        daemon.wait_for(READY, WAIT);
        daemon
    }

    /// The daemon's current token (`refreshd token`, whose output is not recorded).
    fn current(&self) -> String {
        let output = self.r.command(&["token", "api"]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    }

    /// The current token's expiry, per the state file.
    fn expires_at(&self) -> OffsetDateTime {
        let state = self.r.state("api");
        let at = state["token"]["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no token.expires_at in the state: {state}"));
        OffsetDateTime::parse(at, &Rfc3339).unwrap()
    }

    fn refresh_requests(&self) -> u64 {
        self.oidc.count("by_grant", "refresh_token")
    }

    fn stop(&mut self, mut daemon: Daemon) {
        daemon.terminate(WAIT);
        self.r.record_daemon(&daemon);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Standard timing for 60-second tokens: refreshed at 50 s, well after any test step.
const TIMING: &str = "refresh_at = \"50s\"\nmin_remaining = \"10s\"\njitter = \"1s\"";

/// `python tests/readers/SCRIPT` from the venv, with an empty environment but for a private
/// HOME (no SDK config of the machine's user is read) and PATH.
fn sdk(r: &Refreshd, script: &str) -> Command {
    let python = repo().join(".test-peers/venv/bin/python");
    assert!(
        python.exists(),
        "the SDKs' venv is missing at {}: {INSTALL}",
        python.display()
    );
    let home = r.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(python);
    command
        .arg(repo().join("tests/readers").join(script))
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    command
}

/// The words after `key` on the line of `text` that starts with it.
fn line<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{text}"))
        .split(' ')
        .collect()
}

fn sdk_output(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn databricks_sdk_gets_the_current_token_then_the_rotated_one_once_its_copy_expires() {
    // 45-second tokens: the SDK holds one until 40 s before it expires, so 5 s.
    let mut s = Setup::new(45);
    let port = free_port();
    // The workspace is the fixture, the token's issuer: the SDK's `Config` asks the host for
    // `/.well-known/databricks-config` (best effort, 404 here) before it authenticates, and an
    // unreachable host would hold it up for its 5-minute retry budget.
    let workspace = s.oidc.issuer.clone();
    s.write_config(
        "refresh_at = \"40s\"\nmin_remaining = \"5s\"\njitter = \"1s\"",
        &format!(
            "serve = [ {{ type = \"databricks-metadata\", listen = \"127.0.0.1:{port}\", host = \"{workspace}/\" }} ]"
        ),
    );
    let daemon = s.start();
    let first = s.current();
    let first_expiry = s.expires_at();

    let mut child = sdk(&s.r, "sdk_databricks.py")
        .args([
            &workspace,
            &format!("http://127.0.0.1:{port}/metadata/token"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = || {
        let mut text = String::new();
        out.read_line(&mut text).unwrap();
        text
    };
    let auth = read_line();
    assert_eq!(auth.trim(), "auth metadata-service", "{auth}");
    let seen = read_line();
    assert_eq!(line(&seen, "token")[0], first, "the SDK's first token");

    let rotated = s.r.run(&["rotate", "api"]);
    assert_success(&rotated);
    let second = s.current();
    assert_ne!(second, first);
    writeln!(child.stdin.as_mut().unwrap(), "next").unwrap();
    let seen = read_line();
    let words = line(&seen, "token");
    assert_eq!(
        words[0], second,
        "after its copy expired, the SDK got the rotated token"
    );
    // It asked again only once its copy was about to expire (40 s before the real expiry):
    // it held on to the token it had, and refreshd's answer carried that real expiry.
    let asked_at: f64 = words[1].parse().unwrap();
    assert!(
        asked_at >= (first_expiry.unix_timestamp() - 40) as f64 - 1.0,
        "asked at {asked_at}, before its copy (expiring {first_expiry}) was due"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "the SDK script failed: {status}");

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn google_auth_finds_the_metadata_server_and_gets_the_current_token() {
    let mut s = Setup::new(60);
    let port = free_port();
    s.write_config(
        TIMING,
        &format!(
            "serve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:{port}\", project_id = \"demo-project\" }} ]"
        ),
    );
    let daemon = s.start();
    let current = s.current();
    let host = format!("127.0.0.1:{port}");
    let text = sdk_output(
        sdk(&s.r, "sdk_google.py")
            .env("GCE_METADATA_HOST", &host)
            .env("GCE_METADATA_IP", &host),
        "google-auth",
    );
    assert_eq!(line(&text, "on_gce"), ["True"], "{text}");
    assert_eq!(
        line(&text, "type"),
        ["google.auth.compute_engine.credentials.Credentials"]
    );
    assert_eq!(line(&text, "project"), ["demo-project"]);
    assert_eq!(line(&text, "token"), [current.as_str()]);
    // Without an `email`, the account is the token's subject.
    let subject = jwt_claims(&current)["sub"].as_str().unwrap().to_owned();
    assert_eq!(line(&text, "email"), [subject.as_str()]);
    // Its expiry is the token's (google-auth counts from `expires_in`, whole seconds down).
    let expiry = line(&text, "expiry")[0];
    let expiry = OffsetDateTime::parse(&format!("{expiry}Z"), &Rfc3339).unwrap();
    let real = s.expires_at();
    assert!(
        expiry <= real && real - expiry < time::Duration::seconds(10),
        "google-auth's expiry {expiry}, the token's {real}"
    );

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

/// The `IDENTITY_HEADER` refreshd wrote into the app's `.env`.
fn identity_header(s: &Setup) -> String {
    let text = std::fs::read_to_string(s.r.path("app/.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("IDENTITY_HEADER="))
        .unwrap_or_else(|| panic!("no IDENTITY_HEADER in .env:\n{text}"))
        .to_owned()
}

#[test]
fn azure_identity_gets_the_token_with_the_written_header_and_a_wrong_one_gets_401() {
    let s = Setup::new(60);
    let port = free_port();
    let env = s.r.path("app/.env");
    std::fs::write(&env, "# the app's settings\nDEBUG=0\n").unwrap();
    s.write_config(
        TIMING,
        &format!(
            "serve = [ {{ type = \"azure-managed-identity\", listen = \"127.0.0.1:{port}\", header = {{ type = \"dotenv\", path = \"{}\", key = \"IDENTITY_HEADER\" }} }} ]",
            env.display()
        ),
    );
    let daemon = s.start();
    let secret = identity_header(&s);
    assert_eq!(secret.len(), 64, "32 random bytes, hex: {secret}");
    assert!(
        std::fs::read_to_string(&env)
            .unwrap()
            .starts_with("# the app's settings\nDEBUG=0\n"),
        "the rest of the app's .env is kept"
    );
    // Kept beside the credential's state, for refreshd alone.
    let kept = s.r.state_dir().join("api.identity-header");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), secret);
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let endpoint = format!("http://127.0.0.1:{port}/msi/token");
    let resource = "https://management.azure.com";
    let current = s.current();
    let text = sdk_output(
        sdk(&s.r, "sdk_azure.py")
            .arg(resource)
            .env("IDENTITY_ENDPOINT", &endpoint)
            .env("IDENTITY_HEADER", &secret),
        "azure-identity",
    );
    let words = line(&text, "token");
    assert_eq!(words[0], current, "{text}");
    assert_eq!(
        words[1].parse::<i64>().unwrap(),
        s.expires_at().unix_timestamp()
    );

    // A wrong secret: the SDK fails, and says the endpoint answered 401.
    let output = sdk(&s.r, "sdk_azure.py")
        .arg(resource)
        .env("IDENTITY_ENDPOINT", &endpoint)
        .env("IDENTITY_HEADER", "0".repeat(64))
        .output()
        .unwrap();
    let (text, log) = (stdout(&output), stderr(&output));
    assert!(text.starts_with("error "), "{text}\n{log}");
    assert!(!text.contains(&current), "{text}");
    assert!(log.contains("Response status: 401"), "{log}");

    // A restart keeps the secret: the app's copy still works.
    let mut s = s;
    s.stop(daemon);
    let daemon = s.restart();
    assert_eq!(identity_header(&s), secret);
    let text = sdk_output(
        sdk(&s.r, "sdk_azure.py")
            .arg(resource)
            .env("IDENTITY_ENDPOINT", &endpoint)
            .env("IDENTITY_HEADER", &secret),
        "azure-identity after a restart",
    );
    assert_eq!(line(&text, "token")[0], s.current());

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
    s.r.assert_no_secrets(&[&secret]);
}

/// `curl` run as `nobody` (uid 65534): (HTTP status, body).
fn curl_as_nobody(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut command = Command::new("/usr/bin/curl");
    command.args(["-sS", "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}"]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    let output = command
        .arg(url)
        .current_dir("/")
        .env_clear()
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl as uid 65534 failed: {}",
        stderr(&output)
    );
    let text = stdout(&output);
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// The three endpoints of `api`, on `ports`, the Azure secret going to the app's `.env`.
fn three_endpoints(s: &Setup, ports: [u16; 3], readers: &str) -> String {
    let env = s.r.path("app/.env");
    format!(
        r#"{readers}
serve = [
  {{ type = "databricks-metadata", listen = "127.0.0.1:{}", host = "{WORKSPACE}" }},
  {{ type = "gce-metadata", listen = "127.0.0.1:{}" }},
  {{ type = "azure-managed-identity", listen = "127.0.0.1:{}", header = {{ type = "dotenv", path = "{}", key = "IDENTITY_HEADER" }} }},
]"#,
        ports[0],
        ports[1],
        ports[2],
        env.display()
    )
}

#[test]
fn another_user_is_refused_everywhere_until_it_is_a_reader() {
    require_root("it connects to the endpoints as another uid (65534)");
    let mut s = Setup::new(60);
    let ports = [free_port(), free_port(), free_port()];
    s.write_config(TIMING, &three_endpoints(&s, ports, ""));
    let mut daemon = s.start();
    let secret = identity_header(&s);
    let asks = |secret: &str| {
        [
            (
                format!("http://127.0.0.1:{}/", ports[0]),
                vec![
                    ("X-Databricks-Metadata-Version", "1".to_owned()),
                    ("X-Databricks-Host", WORKSPACE.to_owned()),
                ],
            ),
            (
                format!(
                    "http://127.0.0.1:{}/computeMetadata/v1/instance/service-accounts/default/token",
                    ports[1]
                ),
                vec![("Metadata-Flavor", "Google".to_owned())],
            ),
            (
                format!(
                    "http://127.0.0.1:{}/msi/token?resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01",
                    ports[2]
                ),
                vec![("X-IDENTITY-HEADER", secret.to_owned())],
            ),
        ]
    };
    let current = s.current();
    // Every right header, from a user that is not a reader: 403, nothing more, logged.
    for (url, headers) in asks(&secret) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, body) = curl_as_nobody(&url, &headers);
        assert_eq!(code, 403, "{url}: {body}");
        assert!(!body.contains(&current) && !body.contains("api"), "{body}");
    }
    for via in [
        "databricks-metadata",
        "gce-metadata",
        "azure-managed-identity",
    ] {
        let line = daemon.wait_for(&format!("via=\"{via}\""), WAIT);
        assert!(
            line.contains("WARN")
                && line.contains("token read refused")
                && line.contains("uid=65534"),
            "{line}"
        );
    }

    // What the protocols refuse whoever asks (here refreshd's own user, root).
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let gce = format!(
        "http://127.0.0.1:{}/computeMetadata/v1/instance/service-accounts/default/token",
        ports[1]
    );
    let no_flavor = http.get(&gce).send().unwrap();
    assert_eq!(no_flavor.status(), 403);
    assert_eq!(no_flavor.headers()["metadata-flavor"], "Google");
    let proxied = http
        .get(&gce)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .unwrap();
    assert_eq!(proxied.status(), 403);
    let other = http
        .get(format!("http://127.0.0.1:{}/", ports[0]))
        .header("X-Databricks-Metadata-Version", "1")
        .header("X-Databricks-Host", "https://dbc-9999.cloud.databricks.com")
        .send()
        .unwrap();
    assert_eq!(other.status(), 403);
    let line = daemon.wait_for("another workspace than the endpoint's host", WAIT);
    assert!(line.contains("WARN") && line.contains("dbc-9999"), "{line}");
    let version = http
        .get(format!("http://127.0.0.1:{}/", ports[0]))
        .header("X-Databricks-Metadata-Version", "2")
        .header("X-Databricks-Host", WORKSPACE)
        .send()
        .unwrap();
    assert_eq!(version.status(), 400);

    // Once a reader, the same user gets the token from each; the listeners stay as they are.
    s.write_config(
        TIMING,
        &three_endpoints(&s, ports, "readers = [\"uid:65534\"]"),
    );
    daemon.wait_for("config reloaded", WAIT);
    for (url, headers) in asks(&secret) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, body) = curl_as_nobody(&url, &headers);
        assert_eq!(code, 200, "{url}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["access_token"], s.current().as_str(), "{url}");
    }
    assert_eq!(daemon.count("endpoint listening"), 3);
    assert_eq!(daemon.count("endpoint closed"), 0);
    // Even a reader needs the Azure secret.
    let (url, _) = &asks(&secret)[2];
    let (code, _) = curl_as_nobody(url, &[("X-IDENTITY-HEADER", &"0".repeat(64))]);
    assert_eq!(code, 401);

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
    s.r.assert_no_secrets(&[&secret]);
}

/// The next refresh of `api` the daemon plans, per `status --json`.
fn next_refresh(s: &mut Setup) -> OffsetDateTime {
    let output = s.r.run(&["status", "--json"]);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let at = json["credentials"]["api"]["next_refresh"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_refresh: {json}"));
    OffsetDateTime::parse(at, &Rfc3339).unwrap()
}

/// Lets this process hold `n` sockets at once (a soft limit of 1,024 would not do).
fn allow_descriptors(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < n {
        assert!(
            hard >= n,
            "this test holds {n} sockets at once; the hard limit on descriptors is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, n, hard).unwrap();
    }
}

/// What one client got: when it sent its request, and the token and its `expires_in`.
struct Got {
    sent: OffsetDateTime,
    token: String,
    expires_in: i64,
}

/// `clients` GCE token requests, the i-th sent `spread * i / clients` after `from`, each on
/// a connection of its own, all at once.
fn burst(port: u16, clients: usize, from: OffsetDateTime, spread: Duration) -> Vec<Got> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let url = format!(
            "http://127.0.0.1:{port}/computeMetadata/v1/instance/service-accounts/default/token"
        );
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                let at = from + spread.mul_f64(i as f64 / clients as f64);
                tokio::spawn(async move {
                    let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                    tokio::time::sleep(wait.try_into().unwrap()).await;
                    let sent = OffsetDateTime::now_utc();
                    let response = http
                        .get(&url)
                        .header("Metadata-Flavor", "Google")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    let json: Value = response.json().await.unwrap();
                    Got {
                        sent,
                        token: json["access_token"].as_str().unwrap().to_owned(),
                        expires_in: json["expires_in"].as_i64().unwrap(),
                    }
                })
            })
            .collect();
        let mut got = Vec::with_capacity(clients);
        for task in tasks {
            got.push(task.await.unwrap());
        }
        got
    })
}

#[test]
fn a_thousand_clients_around_a_refresh_point_make_one_token_request() {
    allow_descriptors(4096);
    // 40-second tokens refreshed at exactly 15 s (no jitter): the burst comes around the
    // first scheduled refresh, 15 s before the next one.
    let mut s = Setup::new(40);
    let port = free_port();
    s.write_config(
        "refresh_at = \"15s\"\nmin_remaining = \"5s\"\njitter = \"0s\"",
        &format!("serve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:{port}\" }} ]"),
    );
    let mut daemon = s.start();
    let first = s.current();
    let before = s.refresh_requests();
    let at = next_refresh(&mut s);

    let got = burst(
        port,
        1000,
        at - time::Duration::milliseconds(400),
        Duration::from_millis(800),
    );
    let rotated = daemon.wait_for_n("rotated credential=api", 2, WAIT);
    let rotated = OffsetDateTime::parse(rotated.split_whitespace().next().unwrap(), &Rfc3339)
        .unwrap_or_else(|e| panic!("{e}: {rotated}"));
    let second = s.current();
    assert_ne!(second, first);
    assert_eq!(
        s.refresh_requests() - before,
        1,
        "1,000 clients around the refresh point: one token request, the daemon's own"
    );
    let (mut old, mut new, mut waited) = (0, 0, 0);
    for g in &got {
        assert!(g.expires_in > 0, "an expired token was handed out");
        if g.token == first {
            old += 1;
            // A client past the refresh point waited for the rotation in flight.
            assert!(
                g.sent < at,
                "a request sent at {} (after the refresh point {at}) got the old token",
                g.sent
            );
        } else {
            assert_eq!(g.token, second, "every client got the current token");
            new += 1;
            // Sent past the refresh point, before the new token was there: it waited.
            if g.sent >= at && g.sent < rotated {
                waited += 1;
            }
        }
    }
    println!(
        "{old} clients got the old token, {new} the new one, {waited} of them having waited for it (refresh point {at}, rotated {rotated})"
    );
    assert!(
        waited > 0,
        "no client came while the rotation was in flight"
    );

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn a_reload_opens_and_closes_listeners_and_a_busy_port_is_named() {
    let mut s = Setup::new(60);
    let (port, busy_port) = (free_port(), free_port());
    let busy = std::net::TcpListener::bind(("127.0.0.1", busy_port)).unwrap();
    s.write_config(TIMING, "");
    let mut daemon = s.start();
    let probe = |port: u16| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/"))
            .header("Metadata-Flavor", "Google")
            .send()
    };
    assert!(probe(port).is_err(), "nothing listens before the reload");

    // Added: served at once; one whose port is taken is logged, the other still opens.
    s.write_config(
        TIMING,
        &format!(
            "serve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:{port}\" }}, {{ type = \"gce-metadata\", listen = \"127.0.0.1:{busy_port}\" }} ]"
        ),
    );
    let line = daemon.wait_for("endpoint listening", WAIT);
    assert!(line.contains(&format!("listen=127.0.0.1:{port}")), "{line}");
    let line = daemon.wait_for(&format!("listen 127.0.0.1:{busy_port}"), WAIT);
    assert!(line.contains("ERROR") && line.contains("in use"), "{line}");
    let response = probe(port).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["metadata-flavor"], "Google");

    // Removed: closed.
    s.write_config(TIMING, "");
    let line = daemon.wait_for("endpoint closed", WAIT);
    assert!(line.contains(&format!("listen=127.0.0.1:{port}")), "{line}");
    assert!(probe(port).is_err(), "the listener is closed");
    s.stop(daemon);

    // At start, a taken port fails the start and is named.
    s.write_config(
        TIMING,
        &format!("serve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:{busy_port}\" }} ]"),
    );
    let output = s.r.run(&["run"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "credentials.api.serve (gce-metadata) listen 127.0.0.1:{busy_port}"
        )),
        "{text}"
    );
    drop(busy);
    s.r.assert_no_issued_tokens(&s.oidc);
}
