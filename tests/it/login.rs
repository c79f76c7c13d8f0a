//! `refreshd login` against the real `oidc-provider` fixture on loopback: the authorization
//! code flow with PKCE through refreshd's loopback listener (the fixture's `/test/authorize`
//! plays the user's browser), the `state` check, an `error=` callback, the device flow
//! (`/test/device` plays the user approving or denying the code, `/test/slowdown` makes the
//! provider answer `slow_down`), and a running daemon that takes the new login without a
//! restart.
//!
//! The credential (`cli`, the fixture's native public client `login-native`) has no refresh
//! token in the config: only `refreshd login` can give it one. Its endpoints come from the
//! issuer's discovery document. After every login, `refreshd once --force` must spend the
//! stored refresh token. Everything refreshd printed is recorded and checked for every token
//! the fixture issued.

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{
    Daemon, Oidc, Refreshd, assert_success, eventually, fingerprint, jwt_claims, stderr, stdout,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use url::Url;

/// Far more than any step needs on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

const NAME: &str = "cli";
const CLIENT: &str = "login-native";
const RESOURCE: &str = "urn:refreshd:test";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// A running `refreshd login`, with its stdout and stderr kept apart (the contract puts the
/// URL and the code on stderr, the result on stdout). Killed when dropped.
struct Login {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

impl Login {
    /// `refreshd login -c CONFIG cli --no-browser EXTRA…`
    fn start(r: &Refreshd, extra: &[&str]) -> Login {
        let config = r.config.display().to_string();
        let mut args = vec!["login", "-c", &config, NAME, "--no-browser"];
        args.extend_from_slice(extra);
        let mut command = r.command(&args);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // No display and no browser, whatever the machine running the tests has.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("BROWSER", "false");
        let mut child = command.spawn().unwrap();
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Login {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn printed(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The first stderr line for which `find` gives `Some`; panics (with everything printed)
    /// if login exits first or after `WAIT`.
    fn wait_stderr<T>(&mut self, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.stderr.lock().unwrap().iter().find_map(|l| find(l)) {
                return found;
            }
            if !self.running() {
                std::thread::sleep(Duration::from_millis(100));
                if let Some(found) = self.stderr.lock().unwrap().iter().find_map(|l| find(l)) {
                    return found;
                }
                panic!("login exited before printing {what}:\n{}", self.printed());
            }
            assert!(
                Instant::now() < deadline,
                "login printed no {what} within {WAIT:?}:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The authorization URL printed on stderr.
    fn authorization_url(&mut self, oidc: &Oidc) -> Url {
        let prefix = format!("{}/auth?", oidc.issuer);
        let text = self.wait_stderr("authorization URL", |line| {
            let start = line.find(&prefix)?;
            Some(line[start..].split_whitespace().next().unwrap().to_owned())
        });
        Url::parse(&text).unwrap_or_else(|e| panic!("not a URL ({e}): {text:?}"))
    }

    /// The user code from `… enter the code <USER_CODE>` on stderr.
    fn user_code(&mut self) -> String {
        self.wait_stderr("`enter the code`", |line| {
            let rest = &line[line.find("enter the code ")? + "enter the code ".len()..];
            let code: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!code.is_empty()).then_some(code)
        })
    }

    /// Waits for the exit, records everything printed for the leak check, returns it.
    fn finish(&mut self, r: &mut Refreshd) -> Output {
        let deadline = Instant::now() + WAIT;
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "login did not exit within {WAIT:?}:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let join = |lines: &Arc<Mutex<Vec<String>>>| {
            let lines = lines.lock().unwrap();
            let mut text = lines.join("\n");
            if !lines.is_empty() {
                text.push('\n');
            }
            text.into_bytes()
        };
        let output = Output {
            status,
            stdout: join(&self.stdout),
            stderr: join(&self.stderr),
        };
        r.record(&output);
        output
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `cli` credential's config in `r`, with `daemon` lines added to `[daemon]`.
fn write_config(r: &Refreshd, oidc: &Oidc, daemon: &str) {
    let dir = r.dir.path().display();
    r.write_config(&format!(
        r#"control_socket = "{dir}/ctl.sock"
{daemon}
[credentials.{NAME}]
refresh_at = "50s"
min_remaining = "10s"
jitter = "1s"
source = {{ type = "oauth-refresh", issuer = "{issuer}", token_url = "{token_url}", client_id = "{CLIENT}", scopes = ["openid", "offline_access", "api"], params = {{ resource = "{RESOURCE}" }} }}
targets = [ {{ type = "dotenv", path = "{dir}/app/.env", key = "API_TOKEN" }} ]
"#,
        issuer = oidc.issuer,
        token_url = oidc.token_endpoint,
    ));
}

/// The fixture, a refreshd directory with the `cli` credential (no refresh token), its
/// control socket in the test's directory.
struct Setup {
    oidc: Oidc,
    r: Refreshd,
}

impl Setup {
    fn new() -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), 60);
        std::fs::create_dir(r.path("app")).unwrap();
        write_config(&r, &oidc, "");
        Setup { oidc, r }
    }

    /// POSTs `body` as JSON to the fixture's `path`: (HTTP status, JSON answer).
    fn fixture(&self, path: &str, body: Value) -> (u16, Value) {
        let response = http()
            .post(format!("{}{path}", self.oidc.issuer))
            .json(&body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap())
    }

    /// The user's browser at `url`: through login and consent, then to refreshd's loopback
    /// redirect. Returns the fixture's report of refreshd's answer.
    fn authorize(&self, url: &Url) -> Value {
        let (status, answer) = self.fixture("/test/authorize", json!({ "url": url.as_str() }));
        assert_eq!(status, 200, "/test/authorize failed: {answer:#}");
        answer
    }

    /// The user entering (and confirming, or aborting) the device code.
    fn device(&self, user_code: &str, deny: bool) {
        let (status, answer) = self.fixture(
            "/test/device",
            json!({ "user_code": user_code, "deny": deny }),
        );
        assert_eq!(status, 200, "/test/device failed: {answer:#}");
        assert_eq!(answer["ok"], true, "{answer:#}");
    }

    fn set_device_interval(&self, seconds: u64) {
        let (status, answer) =
            self.fixture("/test/device/interval", json!({ "interval": seconds }));
        assert_eq!(status, 200, "{answer:#}");
    }

    /// The token-endpoint requests the fixture saw, oldest first.
    fn requests(&self) -> Vec<Value> {
        self.oidc.stats()["requests"].as_array().unwrap().clone()
    }

    /// Arrival times (epoch ms) and errors of the device_code token requests so far.
    fn device_polls(&self) -> Vec<(u64, Option<String>)> {
        self.requests()
            .iter()
            .filter(|r| r["grant_type"] == DEVICE_GRANT)
            .map(|r| {
                (
                    r["at"].as_u64().unwrap(),
                    r["error"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    fn env_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.r.path("app/.env")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("API_TOKEN="))
            .map(str::to_owned)
    }

    /// The stored refresh token, when a state file exists and holds one.
    fn stored_refresh_token(&self) -> Option<String> {
        let path = self.r.state_dir().join(format!("{NAME}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        let state: Value = serde_json::from_str(&text).unwrap();
        state["refresh_token"].as_str().map(str::to_owned)
    }

    fn state_refresh_token(&self) -> String {
        let state = self.r.state(NAME);
        state["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh token in the state: {}", redact(&state)))
            .to_owned()
    }

    fn state_access_token(&self) -> String {
        let state = self.r.state(NAME);
        state["token"]["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token in the state: {}", redact(&state)))
            .to_owned()
    }

    /// The login's stdout line: `logged in: credential=cli fingerprint=… expires_at=…`.
    fn assert_logged_in(&self, output: &Output) -> String {
        assert_success(output);
        let out = stdout(output);
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("logged in: credential={NAME} ")))
            .unwrap_or_else(|| panic!("no `logged in: credential={NAME}` on stdout:\n{out}"));
        assert!(line.contains(" expires_at="), "{line}");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("fingerprint="))
            .unwrap_or_else(|| panic!("no fingerprint= in {line:?}"))
            .to_owned()
    }

    /// What a login must leave behind: a refresh token and the access token in the state,
    /// and that access token (a JWT for alice from login-native) in the `.env` target.
    fn assert_stored(&self, fingerprint_printed: &str) -> String {
        let refresh = self.state_refresh_token();
        assert!(refresh.len() >= 8, "a refresh token is stored");
        let access = self.state_access_token();
        assert_eq!(fingerprint(&access), fingerprint_printed);
        let claims = jwt_claims(&access);
        assert_eq!(claims["client_id"], CLIENT, "{claims:#}");
        assert_eq!(claims["sub"], "alice", "{claims:#}");
        assert_eq!(claims["aud"], RESOURCE, "{claims:#}");
        assert_eq!(
            self.env_token().as_deref(),
            Some(access.as_str()),
            "the .env target holds the login's token"
        );
        refresh
    }

    /// `once --force` spends the stored refresh token with login-native (it rotates).
    fn assert_once_force_refreshes(&mut self, refresh_before: &str) {
        let grants_before = self.oidc.count("by_grant", "refresh_token");
        let output = self.r.run(&["once", "--force", NAME]);
        assert_success(&output);
        assert_eq!(
            self.oidc.count("by_grant", "refresh_token"),
            grants_before + 1
        );
        let last = self.requests().last().unwrap().clone();
        assert_eq!(last["grant_type"], "refresh_token", "{last:#}");
        assert_eq!(last["client_id"], CLIENT, "{last:#}");
        assert_eq!(last["status"], 200, "{last:#}");
        assert_ne!(
            self.state_refresh_token(),
            refresh_before,
            "the rotated refresh token is stored"
        );
        assert_eq!(
            self.env_token().as_deref(),
            Some(self.state_access_token().as_str())
        );
    }
}

/// The state file without token values, for panic messages.
fn redact(state: &Value) -> String {
    let mut copy = state.clone();
    if copy.get("refresh_token").is_some() {
        copy["refresh_token"] = json!("<redacted>");
    }
    if copy["token"].get("access_token").is_some() {
        copy["token"]["access_token"] = json!("<redacted>");
    }
    copy.to_string()
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The loopback redirect_uri of an authorization URL, checked as RFC 8252 wants it.
fn redirect_uri(url: &Url) -> Url {
    let redirect = query(url, "redirect_uri").expect("redirect_uri");
    let redirect = Url::parse(&redirect).unwrap();
    assert_eq!(redirect.scheme(), "http", "{redirect}");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"), "{redirect}");
    assert!(
        redirect.port().is_some_and(|p| p != 0),
        "an explicit port: {redirect}"
    );
    assert_eq!(redirect.path(), "/callback", "{redirect}");
    redirect
}

#[test]
fn authorization_code_with_pkce_stores_a_refresh_token_that_once_spends() {
    let mut s = Setup::new();
    let mut login = Login::start(&s.r, &[]);
    let url = s.oidc.issuer.clone();
    let auth = login.authorization_url(&s.oidc);

    // The authorization request, from discovery and the credential.
    assert_eq!(
        format!("{}{}", auth.origin().ascii_serialization(), auth.path()),
        format!("{url}/auth"),
        "the discovered authorization_endpoint"
    );
    assert_eq!(query(&auth, "client_id").as_deref(), Some(CLIENT));
    assert_eq!(query(&auth, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&auth, "scope").as_deref(),
        Some("openid offline_access api")
    );
    assert_eq!(query(&auth, "resource").as_deref(), Some(RESOURCE));
    assert_eq!(
        query(&auth, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = query(&auth, "code_challenge").expect("code_challenge");
    assert!(
        challenge.len() == 43
            && challenge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "an S256 challenge is 43 base64url characters: {challenge:?}"
    );
    let state = query(&auth, "state").expect("state");
    assert!(state.len() >= 16, "an unguessable state: {state:?}");
    let redirect = redirect_uri(&auth);
    assert!(login.running(), "login waits for the browser");

    // The user's browser: logs in, consents, lands on refreshd's loopback listener.
    let answer = s.authorize(&auth);
    assert_eq!(
        answer["status"], 200,
        "refreshd's loopback answer: {answer:#}"
    );
    let followed = answer["redirect"].as_str().unwrap();
    assert!(
        followed.starts_with(&format!("{redirect}?")) && followed.contains("code=<code>"),
        "{followed}"
    );

    let output = login.finish(&mut s.r);
    let printed_fingerprint = s.assert_logged_in(&output);
    let refresh = s.assert_stored(&printed_fingerprint);

    // One code exchange, by the public client, with the PKCE verifier and the redirect_uri.
    assert_eq!(s.oidc.count("by_grant", "authorization_code"), 1);
    let exchange = s
        .requests()
        .into_iter()
        .find(|r| r["grant_type"] == "authorization_code")
        .unwrap();
    assert_eq!(exchange["status"], 200, "{exchange:#}");
    assert_eq!(exchange["client_id"], CLIENT, "{exchange:#}");
    for param in ["code", "code_verifier", "redirect_uri"] {
        assert!(
            exchange["params"]
                .as_array()
                .unwrap()
                .contains(&json!(param)),
            "the exchange sends {param}: {exchange:#}"
        );
    }
    assert_eq!(s.oidc.count("by_grant", "refresh_token"), 0);

    s.assert_once_force_refreshes(&refresh);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn a_callback_with_the_wrong_state_is_refused_and_login_keeps_waiting() {
    let mut s = Setup::new();
    let mut login = Login::start(&s.r, &[]);
    let auth = login.authorization_url(&s.oidc);
    let mut forged = redirect_uri(&auth);
    forged
        .query_pairs_mut()
        .append_pair("code", "forged-authorization-code")
        .append_pair("state", "not-the-state-refreshd-sent");

    let response = http().get(forged.as_str()).send().unwrap();
    assert_eq!(response.status().as_u16(), 400, "a wrong state is refused");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        login.running(),
        "login keeps waiting after a wrong state:\n{}",
        login.printed()
    );
    assert_eq!(
        s.oidc.stats()["token_requests"],
        0,
        "the forged code is never exchanged"
    );

    // The real browser still completes the login.
    let answer = s.authorize(&auth);
    assert_eq!(answer["status"], 200, "{answer:#}");
    let output = login.finish(&mut s.r);
    let printed_fingerprint = s.assert_logged_in(&output);
    let refresh = s.assert_stored(&printed_fingerprint);
    assert_eq!(s.oidc.count("by_grant", "authorization_code"), 1);

    s.assert_once_force_refreshes(&refresh);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn an_error_in_the_callback_fails_the_login() {
    let mut s = Setup::new();
    let mut login = Login::start(&s.r, &[]);
    let auth = login.authorization_url(&s.oidc);
    let state = query(&auth, "state").unwrap();
    let mut callback = redirect_uri(&auth);
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "the user said no")
        .append_pair("state", &state);

    let response = http().get(callback.as_str()).send().unwrap();
    assert!(
        response.status().is_client_error() || response.status().is_success(),
        "refreshd answers the browser: {}",
        response.status()
    );
    let output = login.finish(&mut s.r);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("access_denied"),
        "the provider's error is reported:\n{}",
        stderr(&output)
    );
    assert!(
        !stdout(&output).contains("logged in"),
        "{}",
        stdout(&output)
    );
    assert_eq!(s.oidc.stats()["token_requests"], 0);
    assert_eq!(s.stored_refresh_token(), None, "no refresh token is stored");
    // Nothing was issued to refreshd; issue a grant so the leak check has tokens to look for.
    s.oidc.grant("rt-public");
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn device_flow_approved_stores_a_refresh_token_that_once_spends() {
    let mut s = Setup::new();
    s.set_device_interval(1);
    let mut login = Login::start(&s.r, &["--device"]);
    let user_code = login.user_code();
    let verification = format!("{}/device", s.oidc.issuer);
    assert!(
        login
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!(
                "Open {verification} and enter the code {user_code}"
            ))),
        "{}",
        login.printed()
    );

    // It polls while the user has not approved yet, and the provider says so.
    eventually("a pending device poll", WAIT, || {
        s.device_polls()
            .iter()
            .any(|(_, e)| e.as_deref() == Some("authorization_pending"))
            .then_some(())
    });
    assert!(login.running(), "{}", login.printed());

    s.device(&user_code, false);
    let output = login.finish(&mut s.r);
    let printed_fingerprint = s.assert_logged_in(&output);
    let refresh = s.assert_stored(&printed_fingerprint);
    let polls = s.device_polls();
    assert_eq!(
        polls.last().unwrap().1,
        None,
        "the last poll got the tokens: {polls:?}"
    );
    assert_eq!(s.oidc.count("by_grant", "authorization_code"), 0);

    s.assert_once_force_refreshes(&refresh);
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn device_flow_denied_fails_with_access_denied() {
    let mut s = Setup::new();
    s.set_device_interval(1);
    let mut login = Login::start(&s.r, &["--device"]);
    let user_code = login.user_code();

    s.device(&user_code, true);
    let output = login.finish(&mut s.r);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("access_denied"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stdout(&output).contains("logged in"),
        "{}",
        stdout(&output)
    );
    assert!(
        s.device_polls()
            .iter()
            .any(|(_, e)| e.as_deref() == Some("access_denied")),
        "the provider answered access_denied"
    );
    assert_eq!(s.stored_refresh_token(), None, "no refresh token is stored");
    // Nothing was issued to refreshd; issue a grant so the leak check has tokens to look for.
    s.oidc.grant("rt-public");
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn device_flow_backs_off_five_seconds_on_slow_down() {
    let mut s = Setup::new();
    s.set_device_interval(1);
    let mut login = Login::start(&s.r, &["--device"]);
    let user_code = login.user_code();

    // Two polls at the announced 1 s interval, then one slow_down.
    eventually("two device polls", WAIT, || {
        (s.device_polls().len() >= 2).then_some(())
    });
    let (status, answer) = s.fixture("/test/slowdown", json!({}));
    assert_eq!(status, 200, "{answer:#}");
    eventually("the slow_down answer", WAIT, || {
        s.device_polls()
            .iter()
            .any(|(_, e)| e.as_deref() == Some("slow_down"))
            .then_some(())
    });
    // One more pending poll after it, then approve: the next poll gets the tokens.
    eventually("a poll after slow_down", WAIT, || {
        let polls = s.device_polls();
        let i = polls
            .iter()
            .position(|(_, e)| e.as_deref() == Some("slow_down"))?;
        (polls.len() > i + 1).then_some(())
    });
    s.device(&user_code, false);
    let output = login.finish(&mut s.r);
    let printed_fingerprint = s.assert_logged_in(&output);
    s.assert_stored(&printed_fingerprint);

    let polls = s.device_polls();
    let slow = polls
        .iter()
        .position(|(_, e)| e.as_deref() == Some("slow_down"))
        .unwrap();
    let gaps = |range: &[(u64, Option<String>)]| -> Vec<u64> {
        range.windows(2).map(|w| w[1].0 - w[0].0).collect()
    };
    let before = gaps(&polls[..=slow]);
    let after = gaps(&polls[slow..]);
    assert!(after.len() >= 2, "two polls after slow_down: {polls:?}");
    // interval 1 s: polls came well under 6 s apart before…
    assert!(
        before.iter().any(|&gap| gap < 4_000),
        "refreshd polls at the announced 1 s interval before slow_down: {before:?} ms"
    );
    // …and at least interval + 5 s (less a second of slack) apart after.
    assert!(
        after.iter().all(|&gap| gap >= 5_000),
        "after slow_down every poll waits interval + 5 s: {after:?} ms"
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

#[test]
fn a_running_daemon_takes_the_login_without_a_restart() {
    let mut s = Setup::new();
    let mut daemon: Daemon = s.r.spawn(&["run"]);

    let status_json = |r: &mut Refreshd| -> Value {
        let output = r.run(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}):\n{}\n{}",
                stdout(&output),
                stderr(&output)
            )
        })
    };
    let before = eventually("the daemon reports needs-login", WAIT, || {
        let json = status_json(&mut s.r);
        (json["from"] == "daemon" && json["credentials"][NAME]["health"] == "needs-login")
            .then_some(json)
    });
    assert!(
        before["credentials"][NAME]
            .to_string()
            .contains("refreshd login"),
        "the status tells what to do: {before:#}"
    );
    assert_eq!(s.env_token(), None, "nothing to write yet");

    let mut login = Login::start(&s.r, &[]);
    let auth = login.authorization_url(&s.oidc);
    let answer = s.authorize(&auth);
    assert_eq!(answer["status"], 200, "{answer:#}");
    let output = login.finish(&mut s.r);
    let printed_fingerprint = s.assert_logged_in(&output);

    // Same daemon, no restart: healthy, and the .env holds the login's token.
    let after = eventually("the daemon reports ok", Duration::from_secs(5), || {
        let json = status_json(&mut s.r);
        (json["from"] == "daemon" && json["credentials"][NAME]["health"] == "ok").then_some(json)
    });
    assert_eq!(
        after["credentials"][NAME]["fingerprint"], printed_fingerprint,
        "{after:#}"
    );
    let token = eventually("the .env target", Duration::from_secs(5), || s.env_token());
    assert_eq!(fingerprint(&token), printed_fingerprint);
    assert_eq!(jwt_claims(&token)["client_id"], CLIENT);
    s.state_refresh_token();

    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(WAIT);
    s.r.record_daemon(&daemon);
    assert_eq!(
        status.code(),
        Some(0),
        "the daemon ran throughout and stops cleanly:\n{}",
        daemon.output()
    );
    s.r.assert_no_issued_tokens(&s.oidc);
}

/// With a fleet store, `login` on one node stores the new grant in the store, and every node
/// (the one that logged in and another, both running) writes its token without a restart.
#[test]
fn a_login_goes_to_the_fleet_store_and_every_node_takes_it_over() {
    let mut s = Setup::new();
    s.set_device_interval(1);
    let cluster = crate::common::pg::Cluster::start();
    cluster.set_password("login-store-pw");
    cluster.admin_sql("CREATE DATABASE fleet OWNER app");
    let shared = s.r.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(
        shared.join("store.url"),
        format!(
            "postgres://app:login-store-pw@127.0.0.1:{}/fleet?sslmode=disable",
            cluster.port
        ),
    )
    .unwrap();
    let key = crate::common::refreshd_output(&["store", "init-key"]);
    std::fs::write(shared.join("store.key"), key).unwrap();
    let mut other = Refreshd::new();
    std::fs::create_dir(other.path("app")).unwrap();
    for (r, node) in [(&s.r, "a"), (&other, "b")] {
        let store = format!(
            r#"node = "{node}"
store = {{ type = "postgres", url = {{ file = "{shared}/store.url" }}, key = {{ file = "{shared}/store.key" }}, lease = "2s" }}"#,
            shared = shared.display()
        );
        write_config(r, &s.oidc, &store);
    }
    let mut a = s.r.spawn(&["run"]);
    let mut b = other.spawn(&["run"]);
    // Neither has a grant yet: both finished their first attempt without one.
    for daemon in [&mut a, &mut b] {
        daemon.wait_for(" ready ", WAIT);
    }

    let mut login = Login::start(&other, &["--device"]);
    let user_code = login.user_code();
    s.device(&user_code, false);
    let output = login.finish(&mut other);
    let fingerprint = s.assert_logged_in(&output);
    assert!(
        stdout(&output).contains("stored in the fleet store as generation 1"),
        "{}",
        stdout(&output)
    );
    let token = |r: &Refreshd| {
        std::fs::read_to_string(r.path("app/.env"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("API_TOKEN=").map(str::to_owned))
    };
    let taken = eventually("both nodes write the logged-in token", WAIT, || {
        let here = token(&s.r)?;
        (token(&other).as_deref() == Some(here.as_str())).then_some(here)
    });
    assert_eq!(fingerprint, self::fingerprint(&taken));
    assert_eq!(s.oidc.count("by_error", "invalid_grant"), 0);
    for (daemon, r) in [(&mut a, &mut s.r), (&mut b, &mut other)] {
        daemon.terminate(WAIT);
        r.record_daemon(daemon);
    }
    s.r.assert_no_issued_tokens(&s.oidc);
    other.assert_no_issued_tokens(&s.oidc);
}
