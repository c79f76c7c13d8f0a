//! INI, TOML and JSON targets, read back by the programs that read those files: the
//! Databricks SDK from a `~/.databrickscfg` profile, botocore from a `~/.aws/credentials`
//! profile, Python's `configparser`, `tomllib` and `json`, and `jq`. Tokens are real ones,
//! issued by the oidc-provider fixture to `refreshd once`; every other byte of each file is
//! kept; each format survives 1,000 rewrites under a concurrent reader.
//!
//! The readers are installed by `scripts/install-test-peers`; without them these tests fail
//! (they never skip).

use std::path::{Path, PathBuf};
use std::process::Command;

use refreshd::config::{TargetConfig, TargetKind, ValueOf};
use refreshd::target::{self, json::Pointer, toml::KeyPath};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::common::{INSTALL, Oidc, Refreshd, assert_success, repo, rt_basic_source, stdout};

/// The real readers, run as child processes with a cleared environment.
struct Readers {
    python: PathBuf,
    script: PathBuf,
}

impl Readers {
    /// Panics, saying how to install them, when a reader is missing.
    fn new() -> Readers {
        let python = repo().join(".test-peers/venv/bin/python");
        let script = repo().join("tests/readers/read_formats.py");
        for needed in [&python, &script] {
            assert!(
                needed.exists(),
                "{} is missing: {INSTALL}",
                needed.display()
            );
        }
        let jq = Command::new("jq").arg("--version").output();
        assert!(
            jq.is_ok_and(|o| o.status.success()),
            "jq is missing: {INSTALL}, or as root: apt-get install -y jq"
        );
        Readers { python, script }
    }

    /// What `read_formats.py READER FILE ARGS…` printed.
    fn read(&self, reader: &str, file: &Path, args: &[&str]) -> Value {
        let home = tempfile::tempdir().unwrap();
        let output = Command::new(&self.python)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .arg(&self.script)
            .arg(reader)
            .arg(file)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot start the {reader} reader ({e}): {INSTALL}"));
        assert!(
            output.status.success(),
            "the {reader} reader failed on {} ({}): {}",
            file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "the {reader} reader printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// The string at `path` as `jq -j 'getpath(…)'` prints it.
    fn jq(&self, file: &Path, path: &[&str]) -> String {
        let output = Command::new("jq")
            .arg("-e")
            .arg("-j")
            .arg("--argjson")
            .arg("p")
            .arg(json!(path).to_string())
            .arg("getpath($p)")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "jq found no {path:?} in {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `section.key` as Python's ConfigParser (default interpolation) and RawConfigParser
    /// read it: both must be `want`.
    fn assert_configparser(&self, file: &Path, section: &str, key: &str, want: &str) {
        let read = self.read("configparser", file, &[section, key]);
        assert_eq!(
            read,
            json!({"basic": want, "raw": want}),
            "{}",
            file.display()
        );
    }
}

/// The token the credential holds now, as `refreshd token` prints it (printing it is that
/// command's job, so its output is not recorded for the leak check).
fn current_token(r: &Refreshd, name: &str) -> String {
    let output = r.command(&["token", name]).output().unwrap();
    assert_success(&output);
    let token = stdout(&output).trim_end().to_owned();
    assert!(token.len() > 20, "no token printed");
    token
}

fn rotate(r: &mut Refreshd, first: bool) {
    let args: &[&str] = if first {
        &["once"]
    } else {
        &["once", "--force"]
    };
    let output = r.run(args);
    assert_success(&output);
}

const DATABRICKSCFG: &str = "; Databricks CLI profiles: refreshd keeps [staging]'s token\r\n\
[DEFAULT]\r\n\
host = https://adb-1111111111111111.11.azuredatabricks.net\r\n\
token = dapi-default-profile-not-ours\r\n\
\r\n\
[staging]\r\n\
host  =  http://127.0.0.1:9\r\n\
token  =  dapi-placeholder\r\n\
cluster_id: 0123-456789-abcdefgh\r\n\
\r\n\
# production belongs to someone else\r\n\
[prod]\r\n\
host = https://adb-2222222222222222.22.azuredatabricks.net\r\n\
token = dapi-prod-profile-not-ours\r\n";

#[test]
fn the_databricks_sdk_reads_each_rotated_token_from_its_profile() {
    let readers = Readers::new();
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    let (_, source) = rt_basic_source(&r, &oidc);
    let cfg = r.path(".databrickscfg");
    std::fs::write(&cfg, DATABRICKSCFG).unwrap();
    r.write_config(&format!(
        "[credentials.databricks]\n{source}\ntargets = [ {{ type = \"ini\", path = \"{}\", section = \"staging\", key = \"token\" }} ]\n",
        cfg.display()
    ));
    let mut seen = Vec::new();
    for first in [true, false] {
        rotate(&mut r, first);
        let token = current_token(&r, "databricks");
        assert!(!seen.contains(&token), "not rotated");
        assert_eq!(
            std::fs::read_to_string(&cfg).unwrap(),
            DATABRICKSCFG.replace("dapi-placeholder", &token),
            "only the token's bytes change"
        );
        let sdk = readers.read("databricks", &cfg, &["staging"]);
        assert_eq!(
            sdk,
            json!({"token": token, "host": "http://127.0.0.1:9", "auth_type": "pat"})
        );
        readers.assert_configparser(&cfg, "staging", "token", &token);
        readers.assert_configparser(&cfg, "prod", "token", "dapi-prod-profile-not-ours");
        seen.push(token);
    }
    r.assert_no_issued_tokens(&oidc);
}

const AWS_CREDENTIALS: &str = "[default]\n\
aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
\n\
[refreshd]\n\
aws_access_key_id=ASIAREFRESHDEXAMPLE\n\
aws_secret_access_key=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY\n\
# the session token below is refreshd's\n\
\n\
[other]\n\
region = eu-west-1\n";

#[test]
fn botocore_reads_the_session_token_beside_the_key_pair_it_belongs_to() {
    let readers = Readers::new();
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    let (_, source) = rt_basic_source(&r, &oidc);
    let credentials = r.path("credentials");
    std::fs::write(&credentials, AWS_CREDENTIALS).unwrap();
    r.write_config(&format!(
        "[credentials.aws]\n{source}\ntargets = [ {{ type = \"ini\", path = \"{}\", section = \"refreshd\", key = \"aws_session_token\" }} ]\n",
        credentials.display()
    ));
    for first in [true, false] {
        rotate(&mut r, first);
        let token = current_token(&r, "aws");
        // The missing key comes in after the section's last key, spaced like it.
        let expected = AWS_CREDENTIALS.replace(
            "EXAMPLEKEY\n# the session",
            &format!("EXAMPLEKEY\naws_session_token={token}\n# the session"),
        );
        assert_eq!(std::fs::read_to_string(&credentials).unwrap(), expected);
        assert_eq!(
            readers.read("botocore", &credentials, &["refreshd"]),
            json!({
                "access_key": "ASIAREFRESHDEXAMPLE",
                "secret_key": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
                "token": token,
                "method": "shared-credentials-file",
            })
        );
        assert_eq!(
            readers.read("botocore", &credentials, &["default"])["token"],
            Value::Null
        );
    }
    r.assert_no_issued_tokens(&oidc);
}

const APP_TOML: &str = "# billing service\r\n\
title = \"billing\"\r\n\
\r\n\
[database]\r\n\
host = \"db.internal\"   # primary\r\n\
password = ''           # refreshd rotates this\r\n\
\r\n\
[database.pool]\r\n\
size = 8\r\n";

const APP_JSON: &str = "{\n    \"service\": \"billing\",\n    \"db\": {\n        \"host\": \"db.internal\",\n        \"password\": \"\",\n        \"port\": 5432\n    },\n    \"features\": [\"a\", \"b\"]\n}\n";

#[test]
fn tomllib_python_json_and_jq_read_each_rotated_token_and_its_expiry() {
    let readers = Readers::new();
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    let (_, source) = rt_basic_source(&r, &oidc);
    let (toml_file, json_file, new_json) =
        (r.path("app.toml"), r.path("app.json"), r.path("new.json"));
    std::fs::write(&toml_file, APP_TOML).unwrap();
    std::fs::write(&json_file, APP_JSON).unwrap();
    r.write_config(&format!(
        r#"[credentials.app]
{source}
targets = [
  {{ type = "toml", path = "{}", key = "database.password", expires_at_key = "database.password_expires_at" }},
  {{ type = "json", path = "{}", pointer = "/db/password", expires_at_pointer = "/db/expires_at" }},
  {{ type = "json", path = "{}", pointer = "/auth/bearer" }},
]
"#,
        toml_file.display(),
        json_file.display(),
        new_json.display()
    ));
    for first in [true, false] {
        rotate(&mut r, first);
        let token = current_token(&r, "app");
        let expires = r.state("app")["token"]["expires_at"]
            .as_str()
            .unwrap()
            .to_owned();

        let toml_text = std::fs::read_to_string(&toml_file).unwrap();
        assert_eq!(
            toml_text,
            APP_TOML.replace(
                "password = ''           # refreshd rotates this\r\n",
                &format!("password = \"{token}\"           # refreshd rotates this\r\npassword_expires_at = \"{expires}\"\r\n"),
            )
        );
        assert_eq!(
            readers.read("tomllib", &toml_file, &[]),
            json!({
                "title": "billing",
                "database": {
                    "host": "db.internal",
                    "password": token,
                    "password_expires_at": expires,
                    "pool": {"size": 8},
                },
            })
        );

        assert_eq!(
            std::fs::read_to_string(&json_file).unwrap(),
            APP_JSON.replace(
                "\"password\": \"\",\n        \"port\": 5432\n",
                &format!("\"password\": \"{token}\",\n        \"port\": 5432,\n        \"expires_at\": \"{expires}\"\n"),
            )
        );
        let mut expected = serde_json::from_str::<Value>(APP_JSON).unwrap();
        expected["db"]["password"] = json!(token);
        expected["db"]["expires_at"] = json!(expires);
        assert_eq!(readers.read("json", &json_file, &[]), expected);
        assert_eq!(readers.jq(&json_file, &["db", "password"]), token);
        assert_eq!(readers.jq(&json_file, &["db", "expires_at"]), expires);

        // A file that did not exist: a new document with the path created.
        assert_eq!(
            readers.read("json", &new_json, &[]),
            json!({"auth": {"bearer": token}})
        );
        assert_eq!(readers.jq(&new_json, &["auth", "bearer"]), token);
    }
    r.assert_no_issued_tokens(&oidc);
}

fn write(target: &TargetConfig, value: &str) -> Result<target::Outcome, target::TargetError> {
    target::write(
        target,
        &SecretString::from(value),
        OffsetDateTime::now_utc(),
        crate::common::target_locks(),
    )
}

fn ini_target(path: &Path) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Ini {
            section: Some("profile x".into()),
            keys: vec![("token".into(), ValueOf::Token)],
        },
    )
}

fn toml_target(path: &Path) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Toml {
            keys: vec![(
                KeyPath::parse(r#"servers."eu.1".token"#).unwrap(),
                ValueOf::Token,
            )],
        },
    )
}

fn json_target(path: &Path) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Json {
            pointers: vec![(
                Pointer::parse("/servers/eu~11/token").unwrap(),
                ValueOf::Token,
            )],
        },
    )
}

/// Values every INI reader reads back bare: what providers issue, and the characters around.
const INI_VALUES: &[&str] = &[
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2ln-_",
    "FwoGZXIvYXdzEDoaDHN0c+/=",
    "dapi0123456789abcdef0123456789abcdef-3",
    "a=b:c",
    "x$y!z&w(1)*[2]{3}<4>|5~6^7@8,9?",
    "inner space",
    "tök€n",
];

/// Values only an escaping format holds: quotes, backslashes, line breaks, NUL, DEL.
const ESCAPED_VALUES: &[&str] = &[
    "\"quoted\" and 'single' and '''triple'''",
    "back\\slash\\",
    "line\nbreak\r\nand\ttab",
    "nul\u{0}del\u{7f}esc\u{1b}",
    "unicode é € 😀 \u{2028}",
    "%(interpolation)s and 50%",
    "# not a comment ; nor this",
];

#[test]
fn every_value_reads_back_exactly_or_is_refused() {
    let readers = Readers::new();
    let dir = tempfile::tempdir().unwrap();
    let (ini, toml, json) = (
        ini_target(&dir.path().join("x.ini")),
        toml_target(&dir.path().join("x.toml")),
        json_target(&dir.path().join("x.json")),
    );
    std::fs::write(
        &ini.path,
        "[DEFAULT]\nregion = eu\n\n[profile x]\ntoken = old\n",
    )
    .unwrap();
    for value in INI_VALUES {
        write(&ini, value).unwrap();
        readers.assert_configparser(&ini.path, "profile x", "token", value);
    }
    for value in INI_VALUES.iter().chain(ESCAPED_VALUES) {
        write(&toml, value).unwrap();
        let read = readers.read("tomllib", &toml.path, &[]);
        assert_eq!(read, json!({"servers": {"eu.1": {"token": value}}}));
        write(&json, value).unwrap();
        let read = readers.read("json", &json.path, &[]);
        assert_eq!(read, json!({"servers": {"eu/1": {"token": value}}}));
        assert_eq!(
            readers.jq(&json.path, &["servers", "eu/1", "token"]),
            *value
        );
    }
    // What INI cannot carry bare is refused, the file untouched.
    let before = std::fs::read(&ini.path).unwrap();
    for value in ESCAPED_VALUES
        .iter()
        .chain(&[" lead", "trail ", "\"q\"", "end\\"])
    {
        let err = write(&ini, value).unwrap_err().to_string();
        assert!(err.contains("cannot be written to an INI file"), "{err}");
        assert_eq!(std::fs::read(&ini.path).unwrap(), before);
    }
    // `%` is refused because an app's ConfigParser (default interpolation) cannot read it.
    let by_hand = dir.path().join("percent.ini");
    std::fs::write(&by_hand, "[s]\ntoken = 50%off\n").unwrap();
    assert_eq!(
        readers.read("configparser", &by_hand, &["s", "token"]),
        json!({"basic": {"error": "InterpolationSyntaxError"}, "raw": "50%off"})
    );
}

/// `target` rewritten 1,000 times, alternating two tokens of different lengths, while a
/// thread reads the file in a loop: every read is one whole version.
fn rewrites_under_a_reader(target: &TargetConfig, before: &str) {
    std::fs::write(&target.path, before).unwrap();
    let tokens = ["a".repeat(900), "b".repeat(1400)];
    let versions: Vec<String> = tokens
        .iter()
        .map(|t| {
            write(target, t).unwrap();
            std::fs::read_to_string(&target.path).unwrap()
        })
        .collect();
    assert!(versions[0].contains(&tokens[0]) && versions[1].contains(&tokens[1]));
    crate::common::rewrites_under_a_reader(&target.path, &versions, |i| {
        write(target, &tokens[i % 2]).unwrap();
    });
    assert_eq!(std::fs::read_to_string(&target.path).unwrap(), versions[1]);
}

#[test]
fn each_format_survives_1000_rewrites_under_a_concurrent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            ini_target(&dir.path().join("x.ini")),
            "[DEFAULT]\nregion = eu\n\n[profile x]\ntoken = old\ncolour = blue\n",
        ),
        (
            toml_target(&dir.path().join("x.toml")),
            "title = \"x\"\n\n[servers.\"eu.1\"]\ntoken = \"old\" # rotated\nport = 1\n",
        ),
        (
            json_target(&dir.path().join("x.json")),
            "{\"servers\": {\"eu/1\": {\"token\": \"old\", \"port\": 1}}, \"n\": [1, 2]}",
        ),
    ];
    // Side by side: the time is the writes' fsyncs, which overlap.
    std::thread::scope(|scope| {
        for (target, before) in &cases {
            scope.spawn(move || rewrites_under_a_reader(target, before));
        }
    });
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["x.ini", "x.json", "x.toml"],
        "no temp file is left behind"
    );
}
