//! The commands other programs get their token through, against the real clients: `refreshd
//! token --format json|env` (the env form evaluated by bash), `git credential fill` (Debian
//! `git`) with `refreshd git-credential` as its helper, `kubectl` (Debian
//! `kubernetes-client`) with `refreshd kubectl-credential` as its exec plugin talking to a
//! loopback HTTPS server, and `docker-credential-refreshd` (a link to the binary) speaking
//! docker's helper protocol. As root, users the test creates: a credential's readers (by name
//! and through a group) get its token through the daemon with a config they cannot read, and
//! another user gets nothing from any path, each refusal logged.
//!
//! Every token comes from the oidc-provider fixture. Everything refreshd printed is recorded
//! and checked for issued tokens, except the outputs whose job is to hand one over (`token`,
//! the helpers' answers, what git and kubectl print or send).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Daemon, Oidc, Refreshd, assert_success, eventually, jwt_claims, require_root, rt_basic_source,
    stderr, stdout,
};

const WAIT: Duration = Duration::from_secs(30);

/// The text-format line the daemon logs once every credential settled.
const READY: &str = "INFO ready status=";

const REFUSED: &str = "token read refused";

const GIT_URL: &str = "https://git.example.com/org";
const REGISTRY: &str = "registry.example.com";

fn refreshd() -> &'static Path {
    Path::new(crate::common::refreshd_bin())
}

/// Panics with the apt command when a client is missing: never a silent skip.
fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is missing: install it with `apt-get install -y {package}` (the README's test command does)"
    );
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Two credentials from the fixture: `api` (a rotating refresh grant, declaring a git URL
/// and a registry) and `m2m-svc` (client credentials), with the control socket in a
/// directory every user can reach, as `/run/refreshd` is.
struct Setup {
    oidc: Oidc,
    r: Refreshd,
    /// Root's, 0755: the socket's directory, homes and links live here.
    public: tempfile::TempDir,
    api_source: String,
}

impl Setup {
    fn new() -> Setup {
        let r = Refreshd::new();
        let oidc = Oidc::start(r.dir.path(), 600);
        let (_, api_source) = rt_basic_source(&r, &oidc);
        std::fs::write(r.path("cc.secret"), "cc-secret-secret").unwrap();
        let public = tempfile::Builder::new()
            .prefix("refreshd-readers-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(public.path().join("home")).unwrap();
        std::fs::set_permissions(
            public.path().join("home"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Setup {
            oidc,
            r,
            public,
            api_source,
        }
    }

    fn public(&self, name: &str) -> PathBuf {
        self.public.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.public("run/control.sock")
    }

    /// `api_readers` and `m2m_readers` are TOML arrays' items.
    fn write_config(&self, api_readers: &str, m2m_readers: &str) {
        let dir = self.r.dir.path().display();
        self.r.write_config(&format!(
            r#"control_socket = "{socket}"

[credentials.api]
refresh_at = "500s"
min_remaining = "60s"
jitter = "1s"
{source}
readers = [{api_readers}]
git = {{ url = "{GIT_URL}", username = "x-token" }}
docker = {{ server = "{REGISTRY}", username = "oauth2accesstoken" }}
targets = [ {{ type = "file", path = "{dir}/api.token" }} ]

[credentials.m2m-svc]
refresh_at = "500s"
min_remaining = "60s"
jitter = "1s"
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-secret", client_secret = {{ file = "{dir}/cc.secret" }}, scopes = ["api"] }}
readers = [{m2m_readers}]
targets = [ {{ type = "file", path = "{dir}/m2m.token" }} ]
"#,
            socket = self.socket().display(),
            source = self.api_source,
            url = self.oidc.token_endpoint,
        ));
    }

    /// `refreshd run`, once both credentials hold a token.
    fn start(&self) -> Daemon {
        let mut daemon = self.r.spawn(&["run"]);
        daemon.wait_for("rotated credential=api", WAIT);
        daemon.wait_for("rotated credential=m2m-svc", WAIT);
        daemon.wait_for(READY, WAIT);
        daemon
    }

    /// `refreshd token NAME` as the daemon's own user (not recorded: it prints the token).
    fn token(&self, name: &str) -> String {
        let output = self.r.command(&["token", name]).output().unwrap();
        assert_success(&output);
        stdout(&output).trim_end().to_owned()
    }

    fn stop(&mut self, mut daemon: Daemon) {
        daemon.terminate(WAIT);
        self.r.record_daemon(&daemon);
    }
}

#[test]
fn token_prints_json_and_shell_assignments_that_bash_evaluates() {
    let mut s = Setup::new();
    s.write_config("", "");
    let mut daemon = s.start();
    let token = s.token("api");
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap();

    let output =
        s.r.command(&["token", "api", "--format", "json"])
            .output()
            .unwrap();
    assert_success(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["token"], token.as_str());
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_at"], rfc3339(exp).as_str());
    let expires_in = json["expires_in"].as_i64().expect("an integer");
    assert!((500..=600).contains(&expires_in), "{json}");
    assert_eq!(json.as_object().unwrap().len(), 4, "{json}");

    // The env form, evaluated by bash, exported to what the shell starts; `m2m-svc` makes
    // `M2M_SVC_…`.
    let script = r#"set -eu
eval "$("$0" token api --format env)"
eval "$("$0" token m2m-svc --format env)"
printf '%s\n%s\n' "$API_TOKEN" "$API_EXPIRES_AT"
bash -c 'printf "%s\n" "$M2M_SVC_TOKEN"'
"#;
    let output = Command::new("bash")
        .args(["-c", script])
        .arg(refreshd())
        .env("REFRESHD_CONFIG", &s.r.config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "bash: {}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], token);
    assert_eq!(lines[1], rfc3339(exp));
    assert_eq!(lines[2], s.token("m2m-svc"));

    // A config this user cannot read is no error: the daemon is found at --socket or
    // $REFRESHD_SOCKET.
    let missing = s.r.path("missing.toml");
    let missing = missing.to_str().unwrap();
    let socket = s.socket();
    let via_flag =
        s.r.command(&["token", "api", "-c", missing, "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
    assert_success(&via_flag);
    assert_eq!(stdout(&via_flag), format!("{token}\n"));
    let via_env =
        s.r.command(&["token", "api", "-c", missing])
            .env("REFRESHD_SOCKET", &socket)
            .output()
            .unwrap();
    assert_success(&via_env);
    assert_eq!(stdout(&via_env), format!("{token}\n"));
    // Without either, and no daemon where the defaults point: a clear error.
    let lost =
        s.r.command(&["token", "api", "-c", missing, "--socket"])
            .arg(s.public("nowhere.sock"))
            .output()
            .unwrap();
    s.r.record(&lost);
    assert_eq!(lost.status.code(), Some(1), "{}", stderr(&lost));
    assert!(
        stderr(&lost).contains("no refreshd daemon answered at")
            && stderr(&lost).contains("nowhere.sock")
            && stderr(&lost).contains("cannot read the configuration"),
        "{}",
        stderr(&lost)
    );
    // A config that can be read but is invalid is still a config error.
    let invalid = s.r.path("invalid.toml");
    std::fs::write(&invalid, "colour = \"red\"\n").unwrap();
    let output =
        s.r.command(&["token", "api", "-c", invalid.to_str().unwrap(), "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());

    // Without a daemon, the owner still reads the state directory.
    daemon.terminate(WAIT);
    s.r.record_daemon(&daemon);
    let output =
        s.r.command(&["token", "api", "--format", "json"])
            .output()
            .unwrap();
    assert_success(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["token"], token.as_str());
    assert_eq!(json["expires_at"], rfc3339(exp).as_str());

    s.r.assert_no_issued_tokens(&s.oidc);
}

/// `git credential fill` with refreshd (`binary`, asking the daemon at `socket`) as its
/// only helper. Prompts are off, so without an answer git fails.
fn git_fill(socket: &Path, home: &Path, use_http_path: bool, binary: &Path) -> Command {
    let helper = format!(
        "!'{}' git-credential --socket '{}'",
        binary.display(),
        socket.display()
    );
    let mut command = Command::new("git");
    command
        .args(["-c", "credential.helper="])
        .arg("-c")
        .arg(format!("credential.helper={helper}"))
        .arg("-c")
        .arg(format!("credential.useHttpPath={use_http_path}"))
        .args(["credential", "fill"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", home)
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .current_dir(home)
        .stdin(Stdio::piped());
    command
}

/// Runs `command` with `input` on stdin.
fn with_input(mut command: Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = command
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
    child.wait_with_output().unwrap()
}

/// The value of `key=` in git's `credential fill` output.
fn git_value(output: &Output, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    stdout(output)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

#[test]
fn git_and_docker_get_the_token_for_what_the_credential_declares_and_nothing_else() {
    require_program("git", "git");
    let mut s = Setup::new();
    s.write_config("", "");
    let daemon = s.start();
    let token = s.token("api");
    let exp = jwt_claims(&token)["exp"].as_i64().unwrap();
    let (socket, home) = (s.socket(), s.public("home"));
    let fill = |input: &str, use_http_path: bool| {
        with_input(git_fill(&socket, &home, use_http_path, refreshd()), input)
    };

    // The declared URL: with the repository's path (credential.useHttpPath), and without a
    // path (git's default: protocol and host only).
    for (input, use_http_path) in [
        (
            "protocol=https\nhost=git.example.com\npath=org/repo.git\n\n",
            true,
        ),
        ("url=https://git.example.com/org/sub/repo.git\n\n", true),
        (
            "protocol=https\nhost=git.example.com\npath=elsewhere/repo.git\n\n",
            false,
        ),
    ] {
        let output = fill(input, use_http_path);
        assert!(output.status.success(), "{input:?}: {}", stderr(&output));
        assert_eq!(git_value(&output, "username").as_deref(), Some("x-token"));
        assert_eq!(
            git_value(&output, "password").as_deref(),
            Some(token.as_str())
        );
        assert_eq!(
            git_value(&output, "password_expiry_utc"),
            Some(exp.to_string()),
            "{input:?}"
        );
    }
    // Another host, another protocol, another port, or a path outside the URL's: refreshd
    // says nothing, and git (no prompts, no other helper) gives up.
    for (input, use_http_path) in [
        ("protocol=https\nhost=git.example.org\n\n", false),
        ("protocol=http\nhost=git.example.com\n\n", false),
        ("protocol=https\nhost=git.example.com:8443\n\n", false),
        (
            "protocol=https\nhost=git.example.com\npath=elsewhere/repo.git\n\n",
            true,
        ),
        (
            "protocol=https\nhost=git.example.com\nusername=someone\n\n",
            false,
        ),
    ] {
        let output = fill(input, use_http_path);
        s.r.record(&output);
        assert!(
            !output.status.success(),
            "{input:?}: git got {}",
            stdout(&output)
        );
        assert_eq!(git_value(&output, "password"), None, "{input:?}");
        assert!(
            stderr(&output).contains("terminal prompts disabled"),
            "{input:?}: {}",
            stderr(&output)
        );
    }
    // store and erase (git's calls after a login worked or failed) do nothing.
    for operation in ["store", "erase", "capability"] {
        let mut command = s.r.command(&["git-credential", operation]);
        command.arg("--socket").arg(&socket);
        let output = with_input(
            command,
            "protocol=https\nhost=git.example.com\nusername=x-token\npassword=whatever\n\n",
        );
        s.r.record(&output);
        assert_success(&output);
        assert!(
            stdout(&output).is_empty(),
            "{operation}: {}",
            stdout(&output)
        );
    }

    // docker-credential-refreshd: the binary under docker's helper name.
    let link = s.public("docker-credential-refreshd");
    std::os::unix::fs::symlink(refreshd(), &link).unwrap();
    let missing = s.r.path("missing.toml");
    let docker = |operation: &str| {
        let mut command = Command::new(&link);
        command
            .arg(operation)
            .env("REFRESHD_CONFIG", &missing)
            .env("REFRESHD_SOCKET", &socket)
            .env_remove("RUST_LOG");
        command
    };
    for server in [
        "https://registry.example.com",
        "registry.example.com\n",
        "https://Registry.example.com/v2/",
    ] {
        let output = with_input(docker("get"), server);
        assert!(output.status.success(), "{server:?}: {}", stdout(&output));
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ServerURL": server.trim(), "Username": "oauth2accesstoken", "Secret": token}),
        );
    }
    for server in [
        "registry.example.org",
        "registry.example.com:5000",
        "https://index.docker.io/v1/",
    ] {
        let output = with_input(docker("get"), server);
        s.r.record(&output);
        assert_eq!(output.status.code(), Some(1), "{server}");
        assert_eq!(
            stdout(&output),
            "credentials not found in native keychain\n"
        );
    }
    let output = with_input(docker("list"), "");
    s.r.record(&output);
    assert_success(&output);
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed, serde_json::json!({REGISTRY: "oauth2accesstoken"}));
    for operation in ["store", "erase"] {
        let output = with_input(
            docker(operation),
            r#"{"ServerURL":"registry.example.com","Username":"u","Secret":"s"}"#,
        );
        s.r.record(&output);
        assert_eq!(output.status.code(), Some(1), "{operation}");
        assert!(
            stdout(&output).contains("refreshd manages"),
            "{}",
            stdout(&output)
        );
    }
    let output = with_input(docker("version"), "");
    s.r.record(&output);
    assert_success(&output);
    assert!(stdout(&output).starts_with("docker-credential-refreshd (refreshd) "));

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

/// A loopback HTTPS server (Python's `http.server` with a certificate made now) that
/// answers every GET like a Kubernetes `/version` and appends each request's path and
/// `Authorization` header to a file.
struct Apiserver {
    child: std::process::Child,
    port: u16,
    seen: PathBuf,
}

impl Apiserver {
    fn start(dir: &Path) -> Apiserver {
        require_program("openssl", "openssl");
        let (cert, key, seen) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("seen"));
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(output.status.success(), "openssl: {}", stderr(&output));
        const SERVER: &str = r#"
import http.server, json, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[3], "a") as seen:
            seen.write(self.path + " " + (self.headers.get("Authorization") or "-") + "\n")
        body = json.dumps({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SERVER])
            .args([&cert, &key, &seen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("the server's port");
        Apiserver { child, port, seen }
    }

    /// The Authorization header of each request so far.
    fn seen(&self) -> Vec<String> {
        std::fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|line| line.split_once(' ').unwrap().1.to_owned())
            .collect()
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig whose user is `refreshd kubectl-credential NAME` as an exec plugin.
fn kubeconfig(s: &Setup, port: u16, api_version: &str, name: &str) -> PathBuf {
    let path = s.r.path(&format!(
        "kubeconfig-{}",
        api_version.rsplit('/').next().unwrap()
    ));
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: loopback
  cluster:
    server: https://127.0.0.1:{port}
    insecure-skip-tls-verify: true
users:
- name: refreshd
  user:
    exec:
      apiVersion: {api_version}
      command: {binary}
      args: [kubectl-credential, {name}, --socket, {socket}]
      interactiveMode: Never
contexts:
- name: loopback
  context:
    cluster: loopback
    user: refreshd
current-context: loopback
"#,
            binary = refreshd().display(),
            socket = s.socket().display(),
        ),
    )
    .unwrap();
    path
}

fn kubectl(s: &Setup, kubeconfig: &Path) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", "/version"])
        .env("HOME", s.public("home"))
        .env_remove("KUBECONFIG")
        .env_remove("REFRESHD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn kubectl_sends_the_current_token_and_the_new_one_after_a_rotation() {
    require_program("kubectl", "kubernetes-client");
    let mut s = Setup::new();
    s.write_config("", "");
    let daemon = s.start();
    let apiserver = Apiserver::start(s.r.dir.path());
    let v1 = kubeconfig(&s, apiserver.port, "client.authentication.k8s.io/v1", "api");

    let first = s.token("api");
    let output = kubectl(&s, &v1);
    assert!(output.status.success(), "kubectl: {}", stderr(&output));
    assert!(stdout(&output).contains("v1.32.0"), "{}", stdout(&output));
    let seen = apiserver.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|h| *h == format!("Bearer {first}")),
        "{} requests, not all with the current token",
        seen.len()
    );

    let output = s.r.run(&["rotate", "api"]);
    assert_success(&output);
    let second = s.token("api");
    assert_ne!(first, second);
    let output = kubectl(&s, &v1);
    assert!(output.status.success(), "kubectl: {}", stderr(&output));
    assert_eq!(apiserver.seen().last(), Some(&format!("Bearer {second}")));

    // A kubeconfig that asks for v1beta1 gets a v1beta1 ExecCredential.
    let beta = kubeconfig(
        &s,
        apiserver.port,
        "client.authentication.k8s.io/v1beta1",
        "api",
    );
    let output = kubectl(&s, &beta);
    assert!(output.status.success(), "kubectl: {}", stderr(&output));
    assert_eq!(apiserver.seen().last(), Some(&format!("Bearer {second}")));
    let plugin = |s: &Setup, exec_info: &str, name: &str| {
        s.r.command(&["kubectl-credential", name, "--socket"])
            .arg(s.socket())
            .env("KUBERNETES_EXEC_INFO", exec_info)
            .output()
            .unwrap()
    };
    let output = plugin(
        &s,
        r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#,
        "api",
    );
    assert_success(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let exp = jwt_claims(&second)["exp"].as_i64().unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "kind": "ExecCredential",
            "status": {"token": second, "expirationTimestamp": rfc3339(exp)},
        })
    );
    // A version refreshd does not speak, and a credential it does not have: exit 1 with
    // why on stderr, nothing on stdout; kubectl then fails saying so.
    let output = plugin(
        &s,
        r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1"}"#,
        "api",
    );
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(stderr(&output).contains("v1alpha1"), "{}", stderr(&output));
    let missing = kubeconfig(
        &s,
        apiserver.port,
        "client.authentication.k8s.io/v1",
        "nope",
    );
    let output = kubectl(&s, &missing);
    s.r.record(&output);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no credential named \\\"nope\\\"")
            || stderr(&output).contains("no credential named \"nope\""),
        "{}",
        stderr(&output)
    );
    let seen = apiserver.seen();
    assert!(
        seen.iter().all(|h| h.starts_with("Bearer ey")),
        "a request went out without a token: {} requests",
        seen.len()
    );

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
}

/// Users and a group the test creates, removed when it ends, also on failure.
struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Accounts {
    fn new() -> Accounts {
        Accounts {
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// A name no other test run uses: `rfd` + this process + `tag`.
    fn name(tag: &str) -> String {
        format!("rfd{}{tag}", std::process::id())
    }

    fn group(&mut self, tag: &str) -> String {
        let name = Accounts::name(tag);
        run_ok(Command::new("groupadd").args(["--system", &name]));
        self.groups.push(name.clone());
        name
    }

    /// A system user without a home; in `group` when given. Its (uid, name).
    fn user(&mut self, tag: &str, group: Option<&str>) -> (u32, String) {
        let name = Accounts::name(tag);
        let mut useradd = Command::new("useradd");
        useradd.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if let Some(group) = group {
            useradd.args(["--groups", group]);
        }
        run_ok(useradd.arg(&name));
        self.users.push(name.clone());
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        (user.uid.as_raw(), name)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = Command::new("userdel").arg(user).output();
        }
        for group in &self.groups {
            let _ = Command::new("groupdel").arg(group).output();
        }
    }
}

fn run_ok(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        stderr(&output)
    );
}

/// Whether every user may run `path`: every directory above it searchable by others.
fn reachable_by_all(path: &Path) -> bool {
    let executable = std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    executable
        && path
            .ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Runs commands as one of the test's users, the way a reader would: its own uid, gid and
/// groups, a clean environment, and the config path refreshd is given (which it cannot
/// read).
struct As {
    name: String,
    binary: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    /// Reachable by every user: the working directory and `HOME`.
    home: PathBuf,
}

impl As {
    fn new(s: &Setup, name: &str, binary: &Path) -> As {
        As {
            name: name.to_owned(),
            binary: binary.to_owned(),
            socket: s.socket(),
            config: s.r.config.clone(),
            home: s.public("home"),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid",
                &self.name,
                "--regid",
                &self.name,
                "--init-groups",
                "--",
            ])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("REFRESHD_CONFIG", &self.config)
            .current_dir(&self.home)
            .stdin(Stdio::null());
        command
    }

    fn refreshd(&self, args: &[&str]) -> Command {
        let mut command = self.command(&self.binary);
        command.args(args);
        command
    }

    /// `refreshd ARGS --socket SOCKET`.
    fn with_socket(&self, args: &[&str]) -> Output {
        self.refreshd(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .unwrap()
    }

    /// `git credential fill` as this user, with `input`.
    fn git_fill(&self, input: &str) -> Output {
        let git = git_fill(&self.socket, &self.home, true, &self.binary);
        let mut command = self.command(Path::new("/usr/bin/git"));
        command.args(git.get_args());
        for (key, value) in git.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        with_input(command, input)
    }

    /// The daemon's answer to one raw request line, sent as this user.
    fn raw_request(&self, request: &str) -> String {
        const CLIENT: &str = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(sys.argv[2].encode()+b'\\n')\nprint(s.makefile().readline(),end='')\n";
        let output = self
            .command(Path::new("/usr/bin/python3"))
            .args(["-c", CLIENT])
            .arg(&self.socket)
            .arg(request)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    }
}

/// Keeps `text` (something refreshd answered) for the leak check.
fn record_text(r: &mut Refreshd, text: &str) {
    use std::os::unix::process::ExitStatusExt as _;
    r.record(&Output {
        status: std::process::ExitStatus::from_raw(0),
        stdout: text.as_bytes().to_vec(),
        stderr: Vec::new(),
    });
}

#[test]
fn readers_get_their_credentials_token_and_nobody_else_gets_anything() {
    require_root("it creates users and runs refreshd as them");
    require_program("git", "git");
    require_program("setpriv", "util-linux");
    let mut accounts = Accounts::new();
    let group = accounts.group("grp");
    let (reader_uid, reader) = accounts.user("rdr", None);
    let (member_uid, member) = accounts.user("mbr", Some(&group));
    let (other_uid, other) = accounts.user("oth", None);

    let mut s = Setup::new();
    s.write_config(&format!("\"{reader}\", \"group:{group}\""), "");
    // As packaged: 0640, root's, in a group none of them is in.
    std::fs::set_permissions(&s.r.config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut daemon = s.start();
    let token = s.token("api");
    // The socket's directory lets readers reach the socket, which any user may connect to;
    // each request is checked by the caller's uid.
    let run_dir = std::fs::metadata(s.public("run")).unwrap();
    assert_eq!(run_dir.mode() & 0o777, 0o711);
    assert_eq!(std::fs::metadata(s.socket()).unwrap().mode() & 0o777, 0o666);

    let binary = if reachable_by_all(refreshd()) {
        refreshd().to_owned()
    } else {
        let copy = s.public("refreshd");
        std::fs::copy(refreshd(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    };
    let (reader, member, other) = (
        As::new(&s, &reader, &binary),
        As::new(&s, &member, &binary),
        As::new(&s, &other, &binary),
    );

    // As in a real install, none of them may read the config.
    for user in [&reader, &member, &other] {
        let output = user
            .command(Path::new("/usr/bin/test"))
            .arg("-r")
            .arg(&s.r.config)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{} can read the config",
            user.name
        );
    }

    // A reader by name and one through its group get the token, by --socket and by
    // $REFRESHD_SOCKET.
    for user in [&reader, &member] {
        let output = user.with_socket(&["token", "api"]);
        assert_success(&output);
        assert_eq!(stdout(&output), format!("{token}\n"), "{}", user.name);
        let output = user
            .refreshd(&["token", "api", "--format", "json"])
            .env("REFRESHD_SOCKET", s.socket())
            .output()
            .unwrap();
        assert_success(&output);
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["token"], token.as_str());
    }
    let fill = "protocol=https\nhost=git.example.com\npath=org/repo.git\n\n";
    let output = reader.git_fill(fill);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        git_value(&output, "password").as_deref(),
        Some(token.as_str())
    );
    for (uid, via) in [(reader_uid, "socket"), (member_uid, "socket")] {
        eventually("the daemon logs each reader's read", WAIT, || {
            daemon
                .output()
                .lines()
                .any(|l| {
                    l.contains("token read")
                        && l.contains("credential=api")
                        && l.contains(&format!("uid={uid}"))
                        && l.contains(via)
                })
                .then_some(())
        });
    }

    // A reader sees only its credential's status, cannot read the other credential, and
    // cannot rotate: not through the CLI (which needs the config), nor by asking directly.
    let output = reader.with_socket(&["status", "--json"]);
    s.r.record(&output);
    assert_success(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&String> = json["credentials"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["api"], "{json:#}");
    let output = reader.with_socket(&["token", "m2m-svc"]);
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("no credential named \"m2m-svc\" that this user may read"),
        "{}",
        stderr(&output)
    );
    let refused = daemon.wait_for(REFUSED, WAIT);
    assert!(
        refused.contains("credential=m2m-svc") && refused.contains(&format!("uid={reader_uid}")),
        "{refused}"
    );
    let output = reader.refreshd(&["rotate", "api"]).output().unwrap();
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    let answer = reader.raw_request(r#"{"op":"rotate","names":["api"]}"#);
    record_text(&mut s.r, &answer);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("may rotate"),
        "{answer}"
    );
    let logged = daemon.wait_for("refused `rotate` from a reader", WAIT);
    assert!(logged.contains(&format!("uid={reader_uid}")), "{logged}");
    assert_eq!(s.token("api"), token, "nothing rotated");

    // Another user gets nothing from any path, and each token read it tries is logged.
    let refusals = daemon.count(REFUSED);
    for args in [["token", "api"], ["kubectl-credential", "api"]] {
        let output = other.with_socket(&args);
        s.r.record(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
        assert!(
            stderr(&output).contains("no credential named \"api\" that this user may read"),
            "{}",
            stderr(&output)
        );
    }
    let output = other
        .refreshd(&["token", "api"])
        .env("REFRESHD_SOCKET", s.socket())
        .output()
        .unwrap();
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    daemon.wait_for_n(REFUSED, refusals + 3, WAIT);
    let other_refusals = daemon
        .output()
        .lines()
        .filter(|l| l.contains(REFUSED) && l.contains(&format!("uid={other_uid}")))
        .count();
    assert_eq!(other_refusals, 3, "{}", daemon.output());
    // Without --socket it looks at the default sockets, where no daemon of its own is.
    let output = other.refreshd(&["token", "api"]).output().unwrap();
    s.r.record(&output);
    assert_ne!(output.status.code(), Some(0));
    assert!(stdout(&output).is_empty());

    let output = other.with_socket(&["status", "--json"]);
    s.r.record(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["credentials"], serde_json::json!({}), "{json:#}");
    assert!(!stdout(&output).contains("api"), "{}", stdout(&output));

    let output = other.git_fill(fill);
    s.r.record(&output);
    assert!(!output.status.success());
    assert_eq!(git_value(&output, "password"), None);

    let link = s.public("docker-credential-refreshd");
    std::os::unix::fs::symlink(&binary, &link).unwrap();
    let mut get = other.command(&link);
    get.arg("get").env("REFRESHD_SOCKET", s.socket());
    let output = with_input(get, REGISTRY);
    s.r.record(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "credentials not found in native keychain\n"
    );
    let mut list = other.command(&link);
    list.arg("list").env("REFRESHD_SOCKET", s.socket());
    let output = with_input(list, "");
    s.r.record(&output);
    assert_success(&output);
    assert_eq!(stdout(&output).trim(), "{}");
    // The helpers never asked for a token they would not get: the count stands at three.
    let other_reads = daemon
        .output()
        .lines()
        .filter(|l| l.contains("token read") && l.contains(&format!("uid={other_uid}")))
        .count();
    assert_eq!(other_reads, 3, "{}", daemon.output());

    // The reader's docker helper, for completeness: the registry's token.
    let mut get = reader.command(&link);
    get.arg("get").env("REFRESHD_SOCKET", s.socket());
    let output = with_input(get, REGISTRY);
    assert_success(&output);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["Secret"], token.as_str());

    s.stop(daemon);
    s.r.assert_no_issued_tokens(&s.oidc);
    drop(accounts);
}
