//! Shared harness for the integration tests: the real `oidc-provider` fixture on loopback,
//! the real `refreshd` binary in a private directory, and the secret-leak check over every
//! line refreshd printed. A missing peer fails loudly with the command that installs it.

pub mod pg;
pub mod receiver;
pub mod stub;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const INSTALL: &str = "run `scripts/install-test-peers` (or the README's test command) first";

/// The lock directory the library-level target writes of the tests share (the daemon uses
/// its state directory's `locks/`): writers of one file queue on it.
pub fn target_locks() -> &'static Path {
    static LOCKS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LOCKS.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with the install command when a peer is missing: never a silent skip.
pub fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing at {}: {INSTALL}",
        path.display()
    );
}

/// Runs Prometheus' `promtool` with `args` and `input` on stdin; panics with its output
/// unless it succeeds without a word of failure, warning or error.
pub fn promtool(args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let promtool = repo().join(".test-peers/prometheus/usr/bin/promtool");
    require(&promtool, "promtool");
    let mut child = Command::new(&promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success()
            && !["fail", "warn", "error"]
                .iter()
                .any(|word| text.to_lowercase().contains(word)),
        "promtool {args:?} refused it ({}):\n{text}\n--- input:\n{input}",
        output.status
    );
    text
}

/// A running oidc-provider: JWT access tokens, rotating refresh tokens, client credentials.
/// Exits with the test (its stdin is our pipe) or when dropped.
pub struct Oidc {
    _node: NodeFixture,
    pub issuer: String,
    pub token_endpoint: String,
    pub cc_jwt_key: PathBuf,
    pub cc_jwt_kid: String,
    http: reqwest::blocking::Client,
}

pub struct Grant {
    pub refresh_token: String,
    pub access_token: String,
}

impl Oidc {
    pub fn start(dir: &Path, access_token_ttl: u32) -> Oidc {
        Oidc::start_with(dir, access_token_ttl, &[], None)
    }

    /// Like [`Oidc::start`] with `envs` added to the fixture's environment (`TLS_CERT`…, see
    /// server.mjs); `ca`: the PEM CA the test's own client trusts instead of the system's
    /// (for a fixture on TLS).
    pub fn start_with(
        dir: &Path,
        access_token_ttl: u32,
        envs: &[(&str, String)],
        ca: Option<&Path>,
    ) -> Oidc {
        let mut all = vec![
            ("ACCESS_TOKEN_TTL", access_token_ttl.to_string()),
            ("FIXTURE_DIR", dir.display().to_string()),
        ];
        all.extend(envs.iter().cloned());
        let node = NodeFixture::start("server.mjs", "oidc-provider", &all, dir, "oidc.stderr");
        let text = |k: &str| node.ready[k].as_str().unwrap().to_owned();
        let mut http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap();
            http = http.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
        }
        Oidc {
            issuer: text("issuer"),
            token_endpoint: text("token_endpoint"),
            cc_jwt_key: PathBuf::from(text("cc_jwt_key")),
            cc_jwt_kid: text("cc_jwt_kid"),
            _node: node,
            http: http.build().unwrap(),
        }
    }

    /// A brand-new grant for `client_id` (the authorization-code flow done by the fixture).
    pub fn grant(&self, client_id: &str) -> Grant {
        let response = self
            .http
            .post(format!("{}/test/grant?client_id={client_id}", self.issuer))
            .send()
            .unwrap();
        assert!(
            response.status().is_success(),
            "grant failed: {}",
            response.status()
        );
        let json: Value = response.json().unwrap();
        Grant {
            refresh_token: json["refresh_token"].as_str().unwrap().to_owned(),
            access_token: json["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Token-endpoint counters: `by_grant`, `by_client`, `by_error`, `token_requests`.
    pub fn stats(&self) -> Value {
        get_json(&self.http, &format!("{}/test/stats", self.issuer))
    }

    /// Every access and refresh token the fixture has issued so far.
    pub fn issued(&self) -> Vec<String> {
        get_tokens(&self.http, &format!("{}/test/issued", self.issuer))
    }

    /// Every token exchange the fixture saw (`sub`, `jti`, parameters, `ok` or `error`).
    pub fn exchanges(&self) -> Vec<Value> {
        get_json(&self.http, &format!("{}/test/exchanges", self.issuer))["exchanges"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn count(&self, group: &str, key: &str) -> u64 {
        self.stats()[group][key].as_u64().unwrap_or(0)
    }

    /// Spends `refresh_token` outside refreshd, as a replaying client would.
    pub fn refresh_directly(&self, client_id: &str, secret: &str, refresh_token: &str) -> Value {
        self.http
            .post(&self.token_endpoint)
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

/// A running Node fixture from `tests/fixtures/oidc` (oidc-provider, Databricks- or Google-like
/// API) that has printed its one JSON ready line. It exits with the test (its stdin is our
/// pipe, kept open for its lifetime) or when dropped.
pub struct NodeFixture {
    child: Child,
    _stdin: ChildStdin,
    /// The ready line the fixture printed on stdout.
    pub ready: Value,
}

impl NodeFixture {
    /// Runs `node SCRIPT` in `tests/fixtures/oidc` with `envs` added to the environment, its
    /// stderr going to `dir/stderr_name`, and waits for the ready line. Panics with the install
    /// command when `node_modules/<module>` (the package the script needs) or node is missing,
    /// and with the fixture's stderr when it does not start.
    pub fn start(
        script: &str,
        module: &str,
        envs: &[(&str, String)],
        dir: &Path,
        stderr_name: &str,
    ) -> NodeFixture {
        let fixture = repo().join("tests/fixtures/oidc");
        require(
            &fixture.join("node_modules").join(module),
            &format!("{module} (for the {script} fixture)"),
        );
        // Node has been seen to hang while starting the oidc fixture (after loading
        // oidc-provider, before listening: every thread parked, on a loaded 2-core machine),
        // which left a test waiting forever: a start that prints nothing within the limit is
        // killed and started once more, loudly; a second hang, or a fixture that says
        // anything but its ready line, fails the test.
        match Self::try_start(script, &fixture, envs, dir, stderr_name) {
            Ok(started) => started,
            Err(why) => {
                eprintln!("the {script} fixture did not start ({why}); starting it once more");
                Self::try_start(script, &fixture, envs, dir, stderr_name)
                    .unwrap_or_else(|why| panic!("the {script} fixture did not start: {why}"))
            }
        }
    }

    /// One start: the fixture with its ready line, or why there was none in time.
    fn try_start(
        script: &str,
        fixture: &Path,
        envs: &[(&str, String)],
        dir: &Path,
        stderr_name: &str,
    ) -> Result<NodeFixture, String> {
        const READY_WITHIN: Duration = Duration::from_secs(60);
        let log = dir.join(stderr_name);
        let mut child = Command::new("node")
            .arg(fixture.join(script))
            .current_dir(fixture)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start node for the {script} fixture ({e}): {INSTALL}")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
        let Ok(line) = rx.recv_timeout(READY_WITHIN) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no ready line within {READY_WITHIN:?}; its stderr:\n{}",
                stderr()
            ));
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "the {script} fixture did not start ({e}); its stderr:\n{}",
                stderr()
            )
        });
        Ok(NodeFixture {
            child,
            _stdin: stdin,
            ready,
        })
    }
}

impl Drop for NodeFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` on a fixture's test endpoint, answered with JSON.
pub fn get_json(http: &reqwest::blocking::Client, url: &str) -> Value {
    http.get(url).send().unwrap().json().unwrap()
}

/// `GET url` answered with `{"tokens": [...]}` (a fixture's `/test/issued`): the tokens.
pub fn get_tokens(http: &reqwest::blocking::Client, url: &str) -> Vec<String> {
    get_json(http, url)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private directory with a config, a state directory, and every output of refreshd.
pub struct Refreshd {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    outputs: Vec<String>,
}

impl Refreshd {
    pub fn new() -> Refreshd {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        Refreshd {
            dir,
            config,
            outputs: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// Writes the config: `[daemon] state_dir` is filled in, the rest is `body`.
    pub fn write_config(&self, body: &str) {
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\n\n{body}",
            self.state_dir().display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(refreshd_bin());
        command
            .args(args)
            .env("REFRESHD_CONFIG", &self.config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    /// Runs refreshd to completion and keeps what it printed for the leak check.
    pub fn run(&mut self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        self.record(&output);
        output
    }

    /// Starts `refreshd ARGS` in the background (e.g. `run`), collecting its output.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        self.spawn_with(self.command(args))
    }

    pub fn spawn_with(&self, mut command: Command) -> Daemon {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            collect(child.stdout.take().unwrap(), lines.clone()),
            collect(child.stderr.take().unwrap(), lines.clone()),
        ];
        Daemon {
            child,
            lines,
            readers: readers.into(),
        }
    }

    /// Keeps everything a daemon printed (so far) for the leak check.
    pub fn record_daemon(&mut self, daemon: &Daemon) {
        self.outputs.push(daemon.output());
    }

    /// Everything recorded so far (commands' and daemons' output, files).
    pub fn recorded(&self) -> &[String] {
        &self.outputs
    }

    /// Keeps a file refreshd wrote (a log file) for the leak check.
    pub fn record_file(&mut self, path: &Path) {
        self.outputs.push(std::fs::read_to_string(path).unwrap());
    }

    /// Asserts that no token the fixture ever issued appears in anything recorded.
    pub fn assert_no_issued_tokens(&self, oidc: &Oidc) {
        let issued = oidc.issued();
        assert!(
            !issued.is_empty(),
            "the fixture issued nothing: the check would prove nothing"
        );
        self.assert_no_secrets(&issued);
    }

    pub fn record(&mut self, output: &Output) {
        self.outputs
            .push(String::from_utf8_lossy(&output.stdout).into_owned());
        self.outputs
            .push(String::from_utf8_lossy(&output.stderr).into_owned());
    }

    /// The credential's state file as JSON.
    pub fn state(&self, credential: &str) -> Value {
        let text =
            std::fs::read_to_string(self.state_dir().join(format!("{credential}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Asserts no secret appears in anything refreshd printed. `refreshd token` output is
    /// not recorded (printing the token is its job).
    pub fn assert_no_secrets<S: AsRef<str>>(&self, secrets: &[S]) {
        for secret in secrets {
            let secret = secret.as_ref();
            assert!(secret.len() >= 8, "too short to grep for: {secret:?}");
            for output in &self.outputs {
                assert!(
                    !output.contains(secret),
                    "a secret leaked into refreshd's output:\n{output}"
                );
            }
        }
        assert!(
            !self.outputs.is_empty(),
            "nothing was recorded: the leak check would prove nothing"
        );
    }
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line);
        }
    })
}

/// A refreshd running in the background; killed when dropped.
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Everything printed so far, one line each.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Lines printed so far that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `n` lines containing `needle` were printed; panics with the whole output
    /// after `timeout`.
    pub fn wait_for_n(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                let matching: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
                if matching.len() >= n {
                    return matching[n - 1].clone();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                if self.count(needle) >= n {
                    continue;
                }
                panic!(
                    "refreshd exited ({status}) before printing {n}× {needle:?}; its output:\n{}",
                    self.output()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {n}× {needle:?} within {timeout:?}; refreshd printed:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_n(needle, 1, timeout)
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "refreshd did not exit within {timeout:?}; it printed:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then a clean stop (exit status 0) within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit(timeout);
        assert_eq!(
            status.code(),
            Some(0),
            "refreshd did not stop cleanly; it printed:\n{}",
            self.output()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The refreshd binary the tests run: `REFRESHD_TEST_BIN` when set (a copy of one work tree's
/// build, so trees sharing a target directory do not run each other's binary), else cargo's.
pub fn refreshd_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("REFRESHD_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_refreshd").to_owned())
    })
}

/// Runs refreshd with `args` (no config needed), asserts success, and returns its stdout.
pub fn refreshd_output(args: &[&str]) -> String {
    let output = Command::new(refreshd_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// refreshd's fingerprint of a secret: the first 8 hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small deterministic generator for kill series: the moments differ per run only by seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "refreshd failed ({}):\n{}",
        output.status,
        stderr(output)
    );
}

/// Decodes a JWT's claims (no verification) for assertions.
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An unsigned JWT with `claims` (refreshd never verifies signatures; it reads times).
pub fn jwt_unsigned(claims: Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

/// Fails, saying why, unless the tests run as root (CI does): `needs` is what for.
pub fn require_root(needs: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: {needs} (run it as root, as CI does)"
    );
}

/// Gives `path` (a symlink itself, not its target) to `uid`, as root can.
pub fn chown(path: &Path, uid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A new grant for client rt-basic written as `bootstrap.refresh` (a new one takes over
/// from a spent one), its secret as `client.secret`, and the `source = …` line of a
/// credential that uses both.
pub fn rt_basic_source(r: &Refreshd, oidc: &Oidc) -> (Grant, String) {
    let dir = r.dir.path().display().to_string();
    let grant = oidc.grant("rt-basic");
    std::fs::write(r.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
    std::fs::write(r.path("client.secret"), "rt-basic-secret").unwrap();
    let source = format!(
        r#"source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}"#,
        url = oidc.token_endpoint
    );
    (grant, source)
}

/// Calls `rewrite(i)` for i in 0..1,000 while a thread reads `path` in a loop: every read
/// must be one of `versions` whole (never torn, truncated or missing).
pub fn rewrites_under_a_reader(path: &Path, versions: &[String], mut rewrite: impl FnMut(usize)) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, path, versions) = (done.clone(), path.to_owned(), versions.to_vec());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let content = std::fs::read_to_string(&path).expect("the target always exists");
                assert!(
                    versions.contains(&content),
                    "a reader saw a partial file ({} bytes)",
                    content.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..1000 {
        rewrite(i);
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(
        reads > 100,
        "the reader only got {reads} reads in: the test proved little"
    );
}
