//! Every ```toml example in README.md that configures a credential is accepted by
//! `refreshd check`, and together the examples show every source type.
//!
//! Each example runs in its own temp directory: absolute paths in its string values move
//! under that directory, and everything `check` looks at is created there (secret files, a
//! systemd credentials directory, Google key and ADC files with real keys, a fake program
//! on PATH for `command` sources, the targets' directories).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Refreshd, stderr};
use refreshd::config::{Config, SourceConfig};
use refreshd::secret::SecretRef;

const ALL_KINDS: [&str; 8] = [
    "oauth-refresh",
    "oauth-client-credentials",
    "google-service-account",
    "google-authorized-user",
    "command",
    "http",
    "chain",
    "oauth-token-exchange",
];

/// Keys whose string values start with `/` but are JSON pointers, not paths.
const POINTER_KEYS: [&str; 4] = [
    "token_field",
    "expiry_field",
    "pointer",
    "expires_at_pointer",
];

/// The README's ```toml blocks that configure a credential, without their fences.
fn readme_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => current = Some(String::new()),
            None => {}
            Some(block) if line.trim_start().starts_with("```") => {
                if block.contains("[credentials.") {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        blocks.len() >= 7,
        "expected at least 7 ```toml credential examples in README.md (one per source type), found {}",
        blocks.len()
    );
    blocks
}

/// The credentials a block defines and the credentials its `http` sources use as a bearer
/// (also inside a chain), read with plain TOML: a block that names a credential it does
/// not define would not pass `Config::parse` on its own.
fn defined_and_bearers(block: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    fn bearers(source: &toml::Value, out: &mut BTreeSet<String>) {
        if let Some(name) = source
            .get("bearer")
            .and_then(|b| b.get("credential"))
            .and_then(toml::Value::as_str)
        {
            out.insert(name.to_owned());
        }
        for inner in source
            .get("sources")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            bearers(inner, out);
        }
    }
    let table: toml::Table = toml::from_str(block)
        .unwrap_or_else(|e| panic!("README example is not valid TOML: {e}\n{block}"));
    let credentials = table
        .get("credentials")
        .and_then(toml::Value::as_table)
        .unwrap_or_else(|| panic!("README example has no [credentials.*] table:\n{block}"));
    let mut used = BTreeSet::new();
    for credential in credentials.values() {
        if let Some(source) = credential.get("source") {
            bearers(source, &mut used);
        }
    }
    (credentials.keys().cloned().collect(), used)
}

/// The example at `index`, followed by the other examples that define the credentials it
/// uses as a bearer (and theirs, transitively). The README's examples are independent
/// blocks, but one may lean on another: the `http` (Lakebase) example authenticates with
/// `bearer = { credential = "sp" }`, which the service-principal example defines. Such a
/// block is checked together with the block that defines the credential it names, as an
/// operator copying both would.
fn with_dependencies(blocks: &[String], index: usize) -> String {
    let mut text = blocks[index].clone();
    let mut included = vec![index];
    loop {
        let (defined, used) = defined_and_bearers(&text);
        let Some(missing) = used.difference(&defined).next().cloned() else {
            return text;
        };
        let provider = (0..blocks.len())
            .filter(|i| !included.contains(i))
            .find(|&i| defined_and_bearers(&blocks[i]).0.contains(&missing))
            .unwrap_or_else(|| {
                panic!(
                    "README example uses bearer credential {missing:?}, which no README example defines:\n{}",
                    blocks[index]
                )
            });
        included.push(provider);
        text.push('\n');
        text.push_str(&blocks[provider]);
    }
}

/// Moves every absolute path in a basic ("…") string under `root`. URLs (`"https://…"`) do
/// not start with `/`; literal ('…') strings (the JSON `body`) and comments are left alone,
/// and so are JSON pointers (`token_field = "/token"`).
fn relocate_paths(text: &str, root: &Path) -> String {
    let root = root.to_str().expect("a UTF-8 temp dir");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                out.push(c);
                while let Some(&next) = chars.peek() {
                    if next == '\n' {
                        break;
                    }
                    out.push(chars.next().unwrap());
                }
            }
            '\'' => {
                out.push(c);
                for next in chars.by_ref() {
                    out.push(next);
                    if next == '\'' {
                        break;
                    }
                }
            }
            '"' => {
                let mut content = String::new();
                while let Some(next) = chars.next() {
                    if next == '"' {
                        break;
                    }
                    content.push(next);
                    if next == '\\' {
                        content.extend(chars.next());
                    }
                }
                let key = out
                    .trim_end()
                    .strip_suffix('=')
                    .map(|before| {
                        before
                            .trim_end()
                            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                            .next()
                            .unwrap_or("")
                    })
                    .unwrap_or("");
                let relocate = content.starts_with('/') && !POINTER_KEYS.contains(&key);
                out.push('"');
                if relocate {
                    out.push_str(root);
                }
                out.push_str(&content);
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Target `owner`/`group` names (the README's `group = "app"`) are the operator's; this
/// machine may not have them. They become this process's uid/gid, which `check` accepts as
/// numbers.
fn local_owners(text: &str) -> String {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [("owner", uid.to_string()), ("group", gid.to_string())]
            .into_iter()
            .filter_map(|(key, id)| {
                let pattern = format!("{key} = \"");
                rest.find(&pattern).map(|at| (at, pattern.len(), id))
            })
            .min_by_key(|(at, _, _)| *at);
        let Some((at, len, id)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let end = rest.find('"').expect("a closed string");
        out.push_str(&id);
        rest = &rest[end..];
    }
}

fn write_private(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A PEM private key from `openssl genpkey` (a real key: `check` parses Google keys).
fn openssl_key(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it (apt-get install openssl)")
        });
    assert!(
        output.status.success(),
        "openssl genpkey {args:?} failed: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A real CA certificate at `path` (`check` parses a credential's `ca_file`).
fn ca_file(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let key = path.with_extension("key");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=readme-example-ca",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it (apt-get install openssl)")
        });
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        stderr(&output)
    );
}

/// What `check` needs on disk and in its environment for one example.
struct Environment {
    bin: PathBuf,
    credentials_dir: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
}

impl Environment {
    fn new(root: &Path) -> Environment {
        let environment = Environment {
            bin: root.join("bin"),
            credentials_dir: root.join("credentials"),
            home: root.join("home"),
            env: Vec::new(),
        };
        for dir in [
            &environment.bin,
            &environment.credentials_dir,
            &environment.home,
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        environment
    }

    fn secret(&mut self, key: &str, secret: &SecretRef) {
        let value = if key == "private_key" {
            openssl_key(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
        } else {
            format!("dummy-{key}-value\n")
        };
        match secret {
            SecretRef::File(path) => write_private(path, &value),
            SecretRef::Systemd(name) => write_private(&self.credentials_dir.join(name), &value),
            SecretRef::Env(name) => self.env.push((name.clone(), value)),
            SecretRef::Inline(_) => {}
        }
    }

    fn source(&mut self, source: &SourceConfig) {
        for (key, secret) in source.secrets() {
            self.secret(key, secret);
        }
        match source {
            SourceConfig::GoogleServiceAccount(s) => {
                let key = serde_json::json!({
                    "type": "service_account",
                    "project_id": "readme-example",
                    "private_key_id": "0123456789abcdef",
                    "private_key": openssl_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                    "client_email": "readme@readme-example.iam.gserviceaccount.com",
                    "token_uri": "https://oauth2.googleapis.com/token",
                });
                write_private(&s.key_file, &key.to_string());
            }
            SourceConfig::GoogleAuthorizedUser(s) => {
                // Without `file`, refreshd looks under $HOME (CLOUDSDK_CONFIG is removed).
                let path = match &s.file {
                    Some(_) => s.path(),
                    None => self
                        .home
                        .join(".config/gcloud/application_default_credentials.json"),
                };
                let adc = r#"{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}"#;
                write_private(&path, adc);
            }
            SourceConfig::Command(s) => {
                let program = Path::new(&s.argv[0]);
                let path = if program.is_absolute() {
                    program.to_path_buf()
                } else {
                    self.bin.join(program)
                };
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, "#!/bin/sh\necho readme-example-token\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            SourceConfig::Chain(chain) => {
                for inner in &chain.sources {
                    self.source(inner);
                }
            }
            _ => {}
        }
    }

    fn command(&self, r: &Refreshd) -> Command {
        let path = std::env::join_paths(std::iter::once(self.bin.clone()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let config = r.config.to_str().unwrap();
        let mut command = r.command(&["check", "-c", config]);
        command
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("CREDENTIALS_DIRECTORY", &self.credentials_dir)
            .env_remove("CLOUDSDK_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

fn collect_kinds(source: &SourceConfig, kinds: &mut BTreeSet<&'static str>) {
    kinds.insert(source.kind());
    if let SourceConfig::Chain(chain) = source {
        for inner in &chain.sources {
            collect_kinds(inner, kinds);
        }
    }
}

#[test]
fn every_readme_toml_example_passes_check() {
    let blocks = readme_examples();
    let mut failures = Vec::new();
    for index in 0..blocks.len() {
        let block = &blocks[index];
        let r = Refreshd::new();
        let root = r.dir.path();
        let body = local_owners(&relocate_paths(&with_dependencies(&blocks, index), root));
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\ncontrol_socket = \"{}\"\n\n{body}",
            r.state_dir().display(),
            r.path("ctl.sock").display()
        );
        let config = Config::parse(&r.config, &text).unwrap_or_else(|e| {
            panic!("README example {index} does not parse: {e}\n--- example ---\n{block}--- as checked ---\n{text}")
        });

        let mut environment = Environment::new(root);
        for credential in &config.credentials {
            environment.source(&credential.source);
            if let Some(ca) = &credential.network.ca_file {
                ca_file(&ca.path);
            }
            for target in &credential.targets {
                std::fs::create_dir_all(target.path.parent().unwrap()).unwrap();
            }
        }
        write_private(&r.config, &text);

        let output = environment.command(&r).output().unwrap();
        if !output.status.success() {
            failures.push(format!(
                "README example {index} fails `refreshd check` ({}):\n--- example ---\n{block}--- as checked ---\n{text}--- stdout ---\n{}--- stderr ---\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                stderr(&output)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn readme_examples_cover_every_source_type() {
    let blocks = readme_examples();
    let mut kinds = BTreeSet::new();
    for index in 0..blocks.len() {
        let text = format!(
            "[daemon]\nstate_dir = \"/nonexistent/state\"\ncontrol_socket = \"/nonexistent/ctl.sock\"\n\n{}",
            with_dependencies(&blocks, index)
        );
        let config = Config::parse(Path::new("README.md"), &text)
            .unwrap_or_else(|e| panic!("README example {index} does not parse: {e}\n{text}"));
        // Only the example's own credentials: an appended dependency counts for its own block.
        let (own, _) = defined_and_bearers(&blocks[index]);
        for credential in config.credentials.iter().filter(|c| own.contains(&c.name)) {
            collect_kinds(&credential.source, &mut kinds);
        }
    }
    let missing: Vec<&str> = ALL_KINDS
        .iter()
        .copied()
        .filter(|kind| !kinds.contains(kind))
        .collect();
    assert!(
        missing.is_empty(),
        "no README ```toml example uses source type(s) {missing:?}; covered: {kinds:?}"
    );
}

/// The README's ```yaml block that starts with `# NAME`.
fn readme_yaml(name: &str) -> String {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    let marker = format!("```yaml\n# {name}\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no ```yaml block starting with `# {name}`"))
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_owned()
}

/// Feeds the alert rules series and says when each must fire: a credential unhealthy for
/// 10 minutes, and a token within `min_remaining` (600 s) of its expiry. promtool's clock
/// starts at Unix time 0.
const ALERT_TESTS: &str = r#"
rule_files: [refreshd-alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'refreshd_credential_healthy{credential="db", instance="web-1:9813", job="refreshd"}'
        values: '1 1 0x20'
      - series: 'refreshd_token_expiry_timestamp_seconds{credential="db", instance="web-1:9813", job="refreshd"}'
        values: '3600x60'
    alert_rule_test:
      - eval_time: 10m
        alertname: RefreshdCredentialUnhealthy
        exp_alerts: []
      - eval_time: 13m
        alertname: RefreshdCredentialUnhealthy
        exp_alerts:
          - exp_labels: { severity: warning, credential: db, instance: "web-1:9813", job: refreshd }
            exp_annotations:
              summary: "refreshd credential db has been unhealthy for 10 minutes"
              description: "Run `refreshd status` on web-1:9813: it shows the last error."
      - eval_time: 50m
        alertname: RefreshdTokenExpiringUnrefreshed
        exp_alerts: []
      - eval_time: 55m
        alertname: RefreshdTokenExpiringUnrefreshed
        exp_alerts:
          - exp_labels: { severity: critical, credential: db, instance: "web-1:9813", job: refreshd }
            exp_annotations:
              summary: "refreshd credential db's token expires in 5m 0s and no refresh has succeeded"
              description: "The apps reading its targets lose access when it expires. `refreshd status` on web-1:9813 shows why."
"#;

#[test]
fn readme_prometheus_config_and_alert_rules_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let rules = dir.path().join("refreshd-alerts.yml");
    let tests = dir.path().join("refreshd-alerts.test.yml");
    std::fs::write(&config, readme_yaml("prometheus.yml")).unwrap();
    std::fs::write(&rules, readme_yaml("refreshd-alerts.yml")).unwrap();
    std::fs::write(&tests, ALERT_TESTS).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let checked = crate::common::promtool(&["check", "config", &path(&config)], "");
    assert!(checked.contains("2 rules found"), "{checked}");
    crate::common::promtool(&["check", "rules", &path(&rules)], "");
    crate::common::promtool(&["test", "rules", &path(&tests)], "");
}
