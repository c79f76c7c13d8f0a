//! What refreshd writes into a `.env` file is read back exactly by real readers (python-dotenv,
//! npm dotenv and bash `set -a; .`), values no form can carry are refused without touching the
//! file, and every other byte of an existing file is kept.
//!
//! The readers are installed by `scripts/install-test-peers`; without them these tests fail
//! (they never skip).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use refreshd::config::{TargetConfig, WriteMode};
use refreshd::target::{self, Outcome, TargetError};
use secrecy::SecretString;
use time::OffsetDateTime;

const INSTALL_HINT: &str = "run `scripts/install-test-peers` (from the repository root) to install the .env readers these tests need";

/// Every key a reader found, with its value (python-dotenv gives `None` for a key without `=`).
type Parsed = BTreeMap<String, Option<String>>;

/// The real `.env` readers, run as child processes.
struct Readers {
    root: PathBuf,
    python: PathBuf,
}

impl Readers {
    /// Panics, saying how to install them, when a reader is missing.
    fn new() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".test-peers/venv/bin/python");
        for needed in [
            python.clone(),
            root.join("tests/readers/node_modules/dotenv/package.json"),
            root.join("tests/readers/read_dotenv.py"),
            root.join("tests/readers/read-dotenv.mjs"),
            root.join("tests/readers/read-dotenv.sh"),
        ] {
            assert!(
                needed.exists(),
                "{} is missing: {INSTALL_HINT}",
                needed.display()
            );
        }
        Readers { root, python }
    }

    /// Runs a reader from the repository root; panics, with the install hint, if it cannot start.
    fn output(&self, mut command: Command, reader: &str) -> Output {
        command
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("cannot start the {reader} reader ({e}): {INSTALL_HINT}"))
    }

    /// The JSON dict a successful reader printed.
    fn parsed(output: &Output, reader: &str) -> Parsed {
        assert!(
            output.status.success(),
            "the {reader} reader failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "the {reader} reader printed no JSON dict ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// python-dotenv, with a cleared environment: it expands `${X}` from the environment.
    fn python_dotenv(&self, file: &Path) -> Parsed {
        let mut command = Command::new(&self.python);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("tests/readers/read_dotenv.py")
            .arg(file);
        Self::parsed(&self.output(command, "python-dotenv"), "python-dotenv")
    }

    fn npm_dotenv(&self, file: &Path) -> Parsed {
        let mut command = Command::new("node");
        command.arg("tests/readers/read-dotenv.mjs").arg(file);
        Self::parsed(&self.output(command, "npm dotenv"), "npm dotenv")
    }

    /// The file read by each dict-producing reader (run side by side), named.
    fn dicts(&self, file: &Path) -> [(&'static str, Parsed); 2] {
        std::thread::scope(|scope| {
            let npm = scope.spawn(|| self.npm_dotenv(file));
            let python = self.python_dotenv(file);
            [
                ("python-dotenv", python),
                ("npm dotenv", npm.join().expect("npm dotenv reader thread")),
            ]
        })
    }

    /// `key` as bash sees it after `set -a; . FILE`; `None` when unset.
    fn bash(&self, file: &Path, key: &str) -> Option<String> {
        let mut command = Command::new(self.root.join("tests/readers/read-dotenv.sh"));
        command.arg(file).arg(key);
        let output = self.output(command, "bash");
        match output.status.code() {
            Some(0) => Some(String::from_utf8(output.stdout).expect("bash printed UTF-8")),
            Some(3) => None,
            _ => panic!(
                "the bash reader failed on {} ({}): {}",
                file.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Reads `file`, which should hold exactly the `expected` keys, once with each dict reader
    /// and once per key with bash; describes every read that is not exact.
    fn mismatches(&self, file: &Path, expected: &[Expected]) -> Vec<String> {
        let mut failures = Vec::new();
        let dicts = self.dicts(file);
        for (reader, parsed) in &dicts {
            if parsed.len() != expected.len() {
                failures.push(format!(
                    "{reader} read {} keys, want {}: {:?}",
                    parsed.len(),
                    expected.len(),
                    parsed.keys().collect::<Vec<_>>()
                ));
            }
        }
        for want in expected {
            let from_dicts = dicts
                .iter()
                .map(|(reader, parsed)| (*reader, parsed.get(&want.key).cloned().flatten()));
            let from_bash = ("bash", self.bash(file, &want.key));
            for (reader, got) in from_dicts.chain([from_bash]) {
                expect_value(
                    &mut failures,
                    &format!("written as {:?}", want.line),
                    reader,
                    &want.key,
                    got.as_deref(),
                    &want.value,
                );
            }
        }
        failures
    }
}

/// How the quoting rule writes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Bare,
    Single,
}

impl Form {
    fn quote(self, value: &str) -> String {
        match self {
            Form::Bare => value.to_owned(),
            Form::Single => format!("'{value}'"),
        }
    }
}

/// A key a file should hold, with its value and the line refreshd should have written.
struct Expected {
    key: String,
    value: String,
    line: String,
}

impl Expected {
    fn new(key: &str, value: &str, form: Form) -> Self {
        Expected {
            key: key.to_owned(),
            value: value.to_owned(),
            line: format!("{key}={}\n", form.quote(value)),
        }
    }
}

fn dotenv_target(path: &Path, key: &str, write: WriteMode) -> TargetConfig {
    TargetConfig {
        write,
        ..TargetConfig::dotenv(path, key)
    }
}

fn write_with(
    path: &Path,
    key: &str,
    value: &str,
    mode: WriteMode,
) -> Result<Outcome, TargetError> {
    target::write(
        &dotenv_target(path, key, mode),
        &SecretString::from(value),
        OffsetDateTime::now_utc(),
        crate::common::target_locks(),
    )
}

fn write(path: &Path, key: &str, value: &str) -> Result<Outcome, TargetError> {
    write_with(path, key, value, WriteMode::Atomic)
}

/// Records a failure unless a reader read `key` as `want`.
fn expect_value(
    failures: &mut Vec<String>,
    context: &str,
    reader: &str,
    key: &str,
    got: Option<&str>,
    want: &str,
) {
    if got != Some(want) {
        failures.push(format!(
            "{context}: {reader} read {key} as {got:?}, want {want:?}"
        ));
    }
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ----------------------------------------------------------------------------------------------
// 1. Round trip
// ----------------------------------------------------------------------------------------------

const RDS_IAM_TOKEN: &str = "mydb.cluster-abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261121%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20261121T201503Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123";

/// Values the rule accepts, with the form it must give them.
const CORPUS: &[(Form, &str)] = &[
    // JWTs: three base64url parts.
    (
        Form::Bare,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1qQTJOalEtX2sifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsInN1YiI6ImFwcC0xMjMiLCJleHAiOjE3OTk5OTk5OTl9.kX9_-Qm3vR-Lp2_8zT-aW0y_Bf4-JcN1uE7_oD5-sH6",
    ),
    (
        Form::Bare,
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJzY3AiOlsicmVhZCIsIndyaXRlIl0sImF1ZCI6ImFwaSJ9.MEUCIQD-_x_-9vK2LmN8pQ-rS_tUvWxYz012345-_abcdefghij",
    ),
    // Google OAuth access token.
    (
        Form::Bare,
        "ya29.a0AfB_byC-1x2Y3z4W5v6U7t8S9r0Q-pOnMlKjIhGfEdCbA_0123456789-abcdefGHIJklmnOPQRst0171",
    ),
    // Standard base64 with `+`, `/` and padding.
    (Form::Bare, "q83vASNFZ4mrze8BI0Vn+/9wHjc0a2Vu=="),
    (Form::Bare, "Zm9v+YmFy/cXV4K3Rva2Vu="),
    (Form::Bare, "==leading-equals"),
    (Form::Bare, "-leading-dash"),
    (Form::Bare, "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        Form::Bare,
        "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        Form::Bare,
        "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (Form::Bare, "svc-account@project-42.iam.gserviceaccount.com"),
    (Form::Bare, "host.internal:5432"),
    (Form::Bare, "user%40example.com%2Fpath%3Dx"),
    (Form::Bare, "scope1,scope2,scope3"),
    (Form::Bare, "v1^2^3"),
    (Form::Bare, "1234567890"),
    (Form::Bare, "-"),
    // Need single quotes.
    (Form::Single, RDS_IAM_TOKEN),
    (
        Form::Single,
        "sv=2022-11-02&ss=b&srt=co&sp=rl&se=2026-11-21T20:00:00Z&sig=AbC%2Bd%3D",
    ),
    (Form::Single, "pass#word"),
    (Form::Single, "before # after"),
    (Form::Single, "#starts-with-hash"),
    (Form::Single, "ends-with-hash #"),
    (Form::Single, "two words"),
    (Form::Single, " leading and trailing spaces "),
    (Form::Single, " "),
    (Form::Single, "~tilde-first"),
    (Form::Single, "~"),
    (Form::Single, "say \"hi\""),
    (Form::Single, "\"looks-double-quoted\""),
    (Form::Single, "bang!bang"),
    (Form::Single, "glob*star"),
    (Form::Single, "what?"),
    (Form::Single, "semi;colon"),
    (Form::Single, "pipe|line"),
    (Form::Single, "back`tick`"),
    (Form::Single, "{braces}"),
    (Form::Single, "(parens)"),
    (Form::Single, "[brackets]"),
    (Form::Single, "<angle>"),
    (Form::Single, "this&that"),
    (Form::Single, "a=b c=d"),
    (Form::Single, "caf\u{e9}-cr\u{e8}me"),
    (
        Form::Single,
        "\u{65e5}\u{672c}\u{8a9e}\u{30c8}\u{30fc}\u{30af}\u{30f3}",
    ),
    (Form::Single, "key \u{1f511} emoji"),
    (Form::Single, "no\u{a0}break\u{a0}space"),
    (Form::Single, "line\u{2028}separator"),
];

/// The corpus plus a 4 KiB base64url token.
fn corpus() -> Vec<(Form, String)> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let big: String = (0..4096)
        .map(|i| char::from(alphabet[(i * 7 + i / 64) % alphabet.len()]))
        .collect();
    CORPUS
        .iter()
        .map(|(form, value)| (*form, (*value).to_owned()))
        .chain([(Form::Bare, big)])
        .collect()
}

#[test]
fn values_round_trip_through_every_reader() {
    let readers = Readers::new();
    let corpus = corpus();
    assert!(corpus.len() >= 30, "corpus has {} values", corpus.len());
    for (form, value) in &corpus {
        assert_eq!(
            target::dotenv_quote(value).as_deref(),
            Ok(form.quote(value).as_str()),
            "quoting rule for {value:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let key = |i: usize| format!("K{i:02}");
    // First every key gets its neighbour's value, then its own: the second pass rewrites lines
    // refreshd wrote, across forms.
    for pass in [1, 0] {
        for i in 0..corpus.len() {
            let value = &corpus[(i + pass) % corpus.len()].1;
            assert_eq!(
                write(&path, &key(i), value).unwrap(),
                Outcome::Written,
                "{}",
                key(i)
            );
        }
    }
    let expected: Vec<Expected> = corpus
        .iter()
        .enumerate()
        .map(|(i, (form, value))| Expected::new(&key(i), value, *form))
        .collect();
    let lines: String = expected.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(fs::read_to_string(&path).unwrap(), lines);
    let mut failures = readers.mismatches(&path, &expected);

    // A handful on their own, as TOKEN in a fresh file.
    let bare = corpus.iter().filter(|(form, _)| *form == Form::Bare);
    let single = corpus.iter().filter(|(form, _)| *form == Form::Single);
    for (form, value) in bare.take(3).chain(single.take(3)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert_eq!(write(&path, "TOKEN", value).unwrap(), Outcome::Written);
        let expected = Expected::new("TOKEN", value, *form);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected.line);
        failures.extend(readers.mismatches(&path, &[expected]));
    }
    assert_no_failures(&failures);
}

// ----------------------------------------------------------------------------------------------
// 2. Refusals
// ----------------------------------------------------------------------------------------------

#[test]
fn values_the_rule_cannot_carry_are_refused() {
    // `zq7x` marks each value so an error that leaks any part of it is caught.
    let refused = [
        "zq7x's token",
        "zq7x'quote",
        "zq7x\\backslash",
        "C:\\zq7x",
        "zq7x$dollar",
        "zq7x${HOME}",
        "${ZQ7X_HOME}",
        "zq7x\nnewline",
        "zq7x\ttab",
        "zq7x\rcarriage",
        "zq7x\u{0}nul",
        "zq7x\u{7f}del",
        "zq7x\u{85}next-line",
        "",
    ];
    let before = "# managed by refreshd\nexport TOKEN=old-token\nOTHER='kept as is'\n";
    for value in refused {
        assert!(
            target::dotenv_quote(value).is_err(),
            "the rule accepts {value:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, before).unwrap();
        let err = write(&path, "TOKEN", value)
            .expect_err(&format!("{value:?} was written"))
            .to_string();
        assert!(
            err.contains(&path.display().to_string()),
            "{value:?}: the error does not name the target: {err}"
        );
        assert!(
            !err.to_lowercase().contains("zq7x") && (value.is_empty() || !err.contains(value)),
            "{value:?}: the error shows the value: {err}"
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            before,
            "{value:?}: file changed"
        );
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "{value:?}: litter left: {entries:?}");
    }

    // Refused before a missing file is created.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    write(&path, "TOKEN", "zq7x$x").unwrap_err();
    assert!(!path.exists(), "a refused value created the file");
}

// ----------------------------------------------------------------------------------------------
// 3. Existing files
// ----------------------------------------------------------------------------------------------

/// An existing file, the value written as TOKEN, and the file's bytes after, worked out by hand.
struct Fixture {
    name: &'static str,
    before: &'static str,
    value: &'static str,
    after: &'static str,
    /// bash can source the file (it cannot run a `KEY = value` line).
    bash: bool,
}

/// Writes the fixture and returns what went wrong: bytes, other keys as the readers see them,
/// TOKEN as every reader sees it.
fn check_fixture(readers: &Readers, fixture: &Fixture) -> Vec<String> {
    let name = fixture.name;
    let mut failures = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    fs::write(&path, fixture.before).unwrap();
    let before = readers.dicts(&path);
    match write(&path, "TOKEN", fixture.value) {
        Ok(Outcome::Written) => {}
        other => failures.push(format!("{name}: write returned {other:?}")),
    }
    let after_bytes = fs::read_to_string(&path).unwrap();
    if after_bytes != fixture.after {
        failures.push(format!(
            "{name}: file bytes\n  got:  {after_bytes:?}\n  want: {:?}",
            fixture.after
        ));
    }
    for ((reader, mut old), (_, mut new)) in before.into_iter().zip(readers.dicts(&path)) {
        let token = new.remove("TOKEN").flatten();
        expect_value(
            &mut failures,
            name,
            reader,
            "TOKEN",
            token.as_deref(),
            fixture.value,
        );
        old.remove("TOKEN");
        if old != new {
            failures.push(format!(
                "{name}: {reader} reads the other keys differently\n  before: {old:?}\n  after:  {new:?}"
            ));
        }
    }
    if fixture.bash {
        let got = readers.bash(&path, "TOKEN");
        expect_value(
            &mut failures,
            name,
            "bash",
            "TOKEN",
            got.as_deref(),
            fixture.value,
        );
    }
    failures
}

/// Checks every fixture (side by side: the readers take most of the time) and fails with all
/// that went wrong.
fn check_fixtures(fixtures: &[Fixture]) {
    let readers = Readers::new();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let checks: Vec<_> = fixtures
            .iter()
            .map(|fixture| scope.spawn(|| check_fixture(&readers, fixture)))
            .collect();
        checks
            .into_iter()
            .flat_map(|check| check.join().expect("fixture check thread"))
            .collect()
    });
    assert_no_failures(&failures);
}

const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhcHAifQ.MEUCIQD-_x_-9vK2";

#[test]
fn existing_files_keep_every_other_byte() {
    check_fixtures(&[
        Fixture {
            name: "typical app file, TOKEN bare",
            before: "# Application settings\n\
                     APP_ENV=production\n\
                     export DATABASE_URL=postgres://app@db:5432/app\n\
                     GREETING=\"Hello, world\"\n\
                     PATTERN='^[a-z]+ #not a comment'\n\
                     \n\
                     TOKEN=old.jwt.value\n\
                     LOG_LEVEL=info # or debug\n",
            value: JWT,
            after: "# Application settings\n\
                    APP_ENV=production\n\
                    export DATABASE_URL=postgres://app@db:5432/app\n\
                    GREETING=\"Hello, world\"\n\
                    PATTERN='^[a-z]+ #not a comment'\n\
                    \n\
                    TOKEN=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhcHAifQ.MEUCIQD-_x_-9vK2\n\
                    LOG_LEVEL=info # or debug\n",
            bash: true,
        },
        Fixture {
            name: "export, double-quoted TOKEN, inline comment",
            before: "export API_URL=https://api.example.com\n\
                     export TOKEN=\"old token\" # refreshed by refreshd\n\
                     export OTHER='single # quoted'\n",
            value: "new token #2",
            after: "export API_URL=https://api.example.com\n\
                    export TOKEN='new token #2' # refreshed by refreshd\n\
                    export OTHER='single # quoted'\n",
            bash: true,
        },
        Fixture {
            name: "double-quoted TOKEN holding `#`, then a comment",
            before: "A=1\nTOKEN=\"a # b\" # real comment\nB=2\n",
            value: "fresh",
            after: "A=1\nTOKEN=fresh # real comment\nB=2\n",
            bash: true,
        },
        Fixture {
            name: "TOKEN absent, no final newline",
            before: "A=1\nB=\"two words\"",
            value: "new-token",
            after: "A=1\nB=\"two words\"\nTOKEN=new-token\n",
            bash: true,
        },
        Fixture {
            name: "TOKEN last, no final newline",
            before: "A=1\nTOKEN='old value'",
            value: "new-token",
            after: "A=1\nTOKEN=new-token",
            bash: true,
        },
        Fixture {
            name: "empty file",
            before: "",
            value: RDS_IAM_TOKEN,
            after: "TOKEN='mydb.cluster-abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261121%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20261121T201503Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123'\n",
            bash: true,
        },
        Fixture {
            name: "similar keys and a commented-out TOKEN, TOKEN absent",
            before: "TOKEN_EXPIRES_AT=2026-11-21T20:00:00Z\n\
                     MY_TOKEN=x\n\
                     # TOKEN=commented-out\n\
                     TOKENS=y\n\
                     \n",
            value: "t",
            after: "TOKEN_EXPIRES_AT=2026-11-21T20:00:00Z\n\
                    MY_TOKEN=x\n\
                    # TOKEN=commented-out\n\
                    TOKENS=y\n\
                    \n\
                    TOKEN=t\n",
            bash: true,
        },
        Fixture {
            name: "CRLF, TOKEN with inline comment",
            before: "# Saved on Windows\r\n\
                     A=1\r\n\
                     TOKEN=old # keep me\r\n\
                     B='x y'\r\n\
                     \r\n\
                     C=\"z\"\r\n",
            value: "new value",
            after: "# Saved on Windows\r\n\
                    A=1\r\n\
                    TOKEN='new value' # keep me\n\
                    B='x y'\r\n\
                    \r\n\
                    C=\"z\"\r\n",
            bash: true,
        },
        Fixture {
            name: "CRLF, TOKEN absent, no final newline",
            before: "A=1\r\nexport B=\"two\"\r\nC=3",
            value: "v",
            after: "A=1\r\nexport B=\"two\"\r\nC=3\nTOKEN=v\n",
            bash: true,
        },
        Fixture {
            name: "UTF-8 BOM, TOKEN absent",
            before: "\u{feff}# Saved by Notepad\r\nA=1\r\n",
            value: "v",
            after: "\u{feff}# Saved by Notepad\r\nA=1\r\nTOKEN=v\n",
            bash: true,
        },
        Fixture {
            name: "duplicates around a multi-line value",
            before: "TOKEN=first\n\
                     PRIVATE_KEY=\"-----BEGIN PRIVATE KEY-----\n\
                     MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\
                     -----END PRIVATE KEY-----\"\n\
                     \x20 TOKEN = 'second'\n\
                     MIDDLE=1\n\
                     export   TOKEN=third\n",
            value: "new",
            after: "TOKEN=new\n\
                    PRIVATE_KEY=\"-----BEGIN PRIVATE KEY-----\n\
                    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\
                    -----END PRIVATE KEY-----\"\n\
                    \x20 TOKEN=new\n\
                    MIDDLE=1\n\
                    export   TOKEN=new\n",
            bash: false,
        },
        Fixture {
            name: "TOKEN itself multi-line double-quoted",
            before: "A=1\n\
                     TOKEN=\"line one\n\
                     line two \\\"quoted\\\"\n\
                     line three\"\n\
                     B=2\n",
            value: "one line",
            after: "A=1\nTOKEN='one line'\nB=2\n",
            bash: true,
        },
        Fixture {
            name: "spaces around `=`, tab before the comment",
            before: "A = 1\nTOKEN = old\t# note\n",
            value: "new",
            after: "A = 1\nTOKEN=new\t# note\n",
            bash: false,
        },
        Fixture {
            name: "empty TOKEN with a comment",
            before: "TOKEN= # filled in by refreshd\nA=1\n",
            value: "new",
            after: "TOKEN=new # filled in by refreshd\nA=1\n",
            bash: true,
        },
    ]);
}

/// A line inside another key's multi-line quoted value is part of that value, even when it
/// looks like `TOKEN=...`: the readers see no TOKEN, so refreshd must append one.
#[test]
fn a_lookalike_line_inside_another_keys_multiline_value_is_left_alone() {
    check_fixtures(&[
        Fixture {
            name: "`export TOKEN=` inside a double-quoted script",
            before: "SETUP_SCRIPT=\"#!/bin/sh\n\
                     export TOKEN=placeholder\n\
                     exec app\"\n\
                     A=1\n",
            value: "new",
            after: "SETUP_SCRIPT=\"#!/bin/sh\n\
                    export TOKEN=placeholder\n\
                    exec app\"\n\
                    A=1\n\
                    TOKEN=new\n",
            bash: true,
        },
        Fixture {
            name: "`TOKEN=` inside a single-quoted help text",
            before: "HELP='Put your token in this file:\n\
                     TOKEN=\"paste it here\"\n\
                     then restart.'\n\
                     A=1\n",
            value: "new",
            after: "HELP='Put your token in this file:\n\
                    TOKEN=\"paste it here\"\n\
                    then restart.'\n\
                    A=1\n\
                    TOKEN=new\n",
            bash: true,
        },
    ]);
}

/// python-dotenv and npm dotenv both skip a UTF-8 BOM and read the first line as TOKEN, so it
/// is a line that assigns the key and must be rewritten (the BOM stays).
#[test]
fn a_token_line_after_a_utf8_bom_is_rewritten() {
    check_fixtures(&[Fixture {
        name: "BOM, then TOKEN",
        before: "\u{feff}TOKEN=old\r\nA=1\r\n",
        value: "new",
        after: "\u{feff}TOKEN=new\nA=1\r\n",
        bash: false,
    }]);
}

// ----------------------------------------------------------------------------------------------
// 4. Idempotence
// ----------------------------------------------------------------------------------------------

#[test]
fn writing_the_same_value_again_changes_nothing() {
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let cases = [
        (WriteMode::Atomic, "", JWT),
        (
            WriteMode::Atomic,
            "A=1\r\nexport TOKEN=old # note\r\nB='x y'\n",
            "needs quotes",
        ),
        (
            WriteMode::Atomic,
            "TOKEN=a\nX=1\n  TOKEN = b",
            RDS_IAM_TOKEN,
        ),
        (WriteMode::InPlace, "# in place\nTOKEN=old\n", "v2"),
    ];
    for (mode, before, value) in cases {
        let case = format!("{mode:?} on {before:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        if !before.is_empty() {
            fs::write(&path, before).unwrap();
        }
        assert_eq!(
            write_with(&path, "TOKEN", value, mode).unwrap(),
            Outcome::Written,
            "{case}"
        );
        // An mtime far in the past, so a rewrite within the same clock tick still shows.
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let bytes = fs::read(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.modified().unwrap(), long_ago, "{case}");

        assert_eq!(
            write_with(&path, "TOKEN", value, mode).unwrap(),
            Outcome::Unchanged,
            "{case}"
        );
        let again = fs::metadata(&path).unwrap();
        assert_eq!(again.ino(), meta.ino(), "{case}: inode changed");
        assert_eq!(again.modified().unwrap(), long_ago, "{case}: mtime changed");
        assert_eq!(fs::read(&path).unwrap(), bytes, "{case}: bytes changed");

        // The checks above do see a write.
        assert_eq!(
            write_with(&path, "TOKEN", "different", mode).unwrap(),
            Outcome::Written,
            "{case}"
        );
        assert_ne!(
            fs::metadata(&path).unwrap().modified().unwrap(),
            long_ago,
            "{case}: a real write left the mtime"
        );
    }
}
