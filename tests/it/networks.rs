//! Token endpoints behind a proxy, a private CA and mutual TLS, with real peers: Debian's
//! `tinyproxy` on loopback (its log shows which requests went through it), the oidc-provider
//! fixture served over TLS with certificates the `openssl` command makes for each test, and
//! oidc-provider's own RFC 8705 client authentication (`tls_client_auth`,
//! `self_signed_tls_client_auth`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::{INSTALL, Oidc, Refreshd, assert_success, eventually, stderr};

/// Every proxy variable reqwest reads: removed from each refreshd run, then set as a test
/// says, so the environment the tests run in decides nothing.
const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

const PROXY_USER: &str = "refreshd";
const PROXY_PASSWORD: &str = "proxy-pw-5f1c9a";

/// A tinyproxy on a loopback port that wants Basic credentials, logging every request.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    fn start(dir: &Path) -> Tinyproxy {
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tinyproxy ({e}): {INSTALL}"));
        let proxy = Tinyproxy { child, port, log };
        eventually("tinyproxy listens", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        proxy
    }

    /// The proxy's URL with its credentials.
    fn url(&self) -> String {
        format!(
            "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    /// How many requests the proxy forwarded to `host_port` (`127.0.0.1:PORT`).
    fn requests_to(&self, host_port: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Request (file descriptor") && line.contains(host_port))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `host:port` of a URL on loopback, as tinyproxy logs it.
fn host_port(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    format!("127.0.0.1:{}", url.port().unwrap())
}

/// `refreshd once` with exactly the proxy variables in `env`.
fn once(r: &mut Refreshd, env: &[(&str, &str)]) -> Output {
    let mut command = r.command(&["once"]);
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    r.record(&output);
    output
}

/// A client-credentials credential `api` at `token_url`, with `extra` keys.
fn cc_config(r: &Refreshd, token_url: &str, extra: &str) {
    std::fs::write(r.path("cc.secret"), "cc-secret-secret").unwrap();
    r.write_config(&format!(
        r#"[credentials.api]
{extra}
source = {{ type = "oauth-client-credentials", token_url = "{token_url}", client_id = "cc-secret", client_secret = {{ file = "{dir}/cc.secret" }}, scopes = ["api"] }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        dir = r.dir.path().display(),
    ));
}

#[test]
fn token_requests_follow_the_proxy_environment_and_the_credential_proxy() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 60);
    let proxy = Tinyproxy::start(r.dir.path());
    let provider = host_port(&oidc.token_endpoint);
    let proxy_url = proxy.url();
    let via = |n: usize| {
        eventually("the proxy's log", Duration::from_secs(5), || {
            (proxy.requests_to(&provider) == n).then_some(())
        })
    };

    // HTTP_PROXY, and nothing exempts loopback: through the proxy.
    cc_config(&r, &oidc.token_endpoint, "");
    assert_success(&once(&mut r, &[("HTTP_PROXY", &proxy_url)]));
    via(1);
    // The lower-case form too.
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    assert_success(&once(&mut r, &[("http_proxy", &proxy_url)]));
    via(2);
    // NO_PROXY naming the provider's host: direct.
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    assert_success(&once(&mut r, &env));
    // `proxy = "none"` wins over HTTP_PROXY: direct.
    cc_config(&r, &oidc.token_endpoint, r#"proxy = "none""#);
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    assert_success(&once(&mut r, &[("HTTP_PROXY", &proxy_url)]));
    // The credential's proxy wins over NO_PROXY: through the proxy.
    cc_config(
        &r,
        &oidc.token_endpoint,
        &format!("proxy = \"{proxy_url}\""),
    );
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    assert_success(&once(&mut r, &[("NO_PROXY", "127.0.0.1,localhost")]));
    via(3);
    assert_eq!(oidc.count("by_client", "cc-secret"), 5);

    // Wrong proxy credentials: refused by the proxy (tinyproxy answers 407 and closes at
    // once, so the client may see a reset), and no password is in any message.
    let wrong = proxy_url.replace(PROXY_PASSWORD, "wrong-pw-77e1b0");
    cc_config(&r, &oidc.token_endpoint, &format!("proxy = \"{wrong}\""));
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    let output = once(&mut r, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&oidc.token_endpoint), "{err}");
    assert_eq!(oidc.count("by_client", "cc-secret"), 5);
    r.assert_no_secrets(&[PROXY_PASSWORD, "wrong-pw-77e1b0", "cc-secret-secret"]);
    r.assert_no_issued_tokens(&oidc);
}

/// A private CA and what it signs, made by `openssl` in `dir`: `ca.pem`, the server's
/// `server.pem`/`server.key` for 127.0.0.1, `client.pem`/`client.key` (CN=refreshd-client,
/// signed by the CA), `rogue.pem`/`rogue.key` (same subject, signed by another CA),
/// `self.pem`/`self.key` and `other-self.pem`/`other-self.key` (self-signed).
fn make_pki(dir: &Path) {
    let sh = r#"set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() { key "$1"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1"; }
signed() { # name subject ca extensions
  key "$1"; openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca; ca rogue-ca
signed server /CN=127.0.0.1 ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
signed client /CN=refreshd-client ca "extendedKeyUsage=clientAuth"
signed rogue /CN=refreshd-client rogue-ca "extendedKeyUsage=clientAuth"
for s in self other-self; do key $s; openssl req -x509 -new -key $s.key -out $s.pem -days 2 -subj /CN=refreshd-client; done
"#;
    let output = Command::new("sh")
        .arg("-c")
        .arg(sh)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh ({e})"));
    assert!(
        output.status.success(),
        "making the test PKI with openssl failed ({INSTALL}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The fixture on TLS with the server certificate of [`make_pki`], and both mTLS clients.
fn tls_oidc(r: &Refreshd) -> Oidc {
    let pki = |name: &str| r.path(name).display().to_string();
    Oidc::start_with(
        r.dir.path(),
        60,
        &[
            ("TLS_CERT", pki("server.pem")),
            ("TLS_KEY", pki("server.key")),
            ("MTLS_CA", pki("ca.pem")),
            ("MTLS_SELF_SIGNED_CERT", pki("self.pem")),
            ("NODE_EXTRA_CA_CERTS", pki("ca.pem")),
        ],
        Some(&r.path("ca.pem")),
    )
}

#[test]
fn a_provider_behind_a_private_ca_needs_its_ca_file() {
    let mut r = Refreshd::new();
    make_pki(r.dir.path());
    let oidc = tls_oidc(&r);
    assert!(oidc.token_endpoint.starts_with("https://"));

    // The system's roots do not know the private CA: a clear refusal naming the URL.
    cc_config(&r, &oidc.token_endpoint, "");
    let output = once(&mut r, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(&oidc.token_endpoint)
            && err.contains("certificate is not trusted")
            && err.contains("ca_file"),
        "{err}"
    );
    assert_eq!(oidc.count("by_client", "cc-secret"), 0);

    // With the CA: it works, also through the proxy (a CONNECT tunnel, verified end to end).
    let ca = r.path("ca.pem").display().to_string();
    cc_config(&r, &oidc.token_endpoint, &format!("ca_file = \"{ca}\""));
    assert_success(&once(&mut r, &[]));
    let proxy = Tinyproxy::start(r.dir.path());
    std::fs::remove_file(r.state_dir().join("api.json")).unwrap();
    assert_success(&once(&mut r, &[("HTTPS_PROXY", &proxy.url())]));
    eventually(
        "the CONNECT in the proxy's log",
        Duration::from_secs(5),
        || (proxy.requests_to(&host_port(&oidc.token_endpoint)) == 1).then_some(()),
    );
    assert_eq!(oidc.count("by_client", "cc-secret"), 2);

    // A CA file that is not one: `check` names the file, line and key.
    std::fs::write(r.path("ca.pem"), "not a certificate\n").unwrap();
    let output = r.run(&["check"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(":5: credentials.api.ca_file: ") && err.contains("no PEM certificate"),
        "{err}"
    );
    r.assert_no_issued_tokens(&oidc);
}

/// The mTLS credential `api` for `client_id` with the certificate and key `name`.
fn mtls_config(r: &Refreshd, oidc: &Oidc, client_id: &str, auth: &str, name: &str) {
    let dir = r.dir.path().display();
    r.write_config(&format!(
        r#"[credentials.api]
ca_file = "{dir}/ca.pem"
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "{client_id}", auth = "{auth}", client_cert = {{ file = "{dir}/{name}.pem" }}, client_key = {{ file = "{dir}/{name}.key" }}, scopes = ["api"] }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        url = oidc.token_endpoint,
    ));
}

#[test]
fn mutual_tls_client_authentication_accepts_the_right_certificate_only() {
    let mut r = Refreshd::new();
    make_pki(r.dir.path());
    let oidc = tls_oidc(&r);
    for (client_id, auth, right, wrong) in [
        ("mtls-ca", "tls_client_auth", "client", "rogue"),
        (
            "mtls-self",
            "self_signed_tls_client_auth",
            "self",
            "other-self",
        ),
    ] {
        let _ = std::fs::remove_file(r.state_dir().join("api.json"));
        mtls_config(&r, &oidc, client_id, auth, right);
        assert_success(&once(&mut r, &[]));
        let token = std::fs::read_to_string(r.path("token")).unwrap();
        assert_eq!(
            crate::common::jwt_claims(token.trim())["client_id"],
            client_id
        );
        // The request named the client and carried no secret: the certificate was the proof.
        let stats = oidc.stats();
        let request = stats["requests"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|q| q["client_id"] == client_id)
            .unwrap()
            .clone();
        assert_eq!(request["auth"], "tls_client_certificate", "{request}");
        assert_eq!(request["status"], 200, "{request}");
        let params: Vec<&str> = request["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(params, ["client_id", "grant_type", "scope"]);

        // Another certificate: the provider's refusal, in its own words.
        let _ = std::fs::remove_file(r.state_dir().join("api.json"));
        mtls_config(&r, &oidc, client_id, auth, wrong);
        let output = once(&mut r, &[]);
        assert!(!output.status.success());
        let err = stderr(&output);
        assert!(
            err.contains(&oidc.token_endpoint) && err.contains("invalid_client"),
            "{err}"
        );
    }
    assert_eq!(oidc.count("by_error", "invalid_client"), 2);
    r.assert_no_issued_tokens(&oidc);
}
