//! AWS: an `aws-web-identity` credential against STS (moto in server mode, on loopback) whose
//! keys botocore reads from a `~/.aws/credentials` target and uses; a SigV4 RDS IAM token
//! compared with botocore's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::pg::free_port;
use crate::common::{INSTALL, Refreshd, assert_success, eventually, jwt_unsigned, repo};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/app";

/// `moto_server` on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = repo().join(".test-peers/venv/bin/moto_server");
        assert!(bin.exists(), "{} is missing: {INSTALL}", bin.display());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): {INSTALL}", bin.display()));
        let url = format!("http://127.0.0.1:{port}/");
        eventually("moto_server listening", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let python = repo().join(".test-peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {INSTALL}",
        python.display()
    );
    python
}

/// Runs `code` with the venv's Python and a cleared environment (botocore reads its own):
/// stdout, which must be a success.
fn run_python(code: &str, env: &[(&str, &Path)]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(python());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .args(["-c", code]);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start python ({e}): {INSTALL}"));
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Who STS says the keys of `profile` in `credentials` belong to, asked by botocore.
fn caller_arn(credentials: &Path, profile: &str, sts: &str) -> String {
    run_python(
        &format!(
            "import botocore.session\n\
             s = botocore.session.Session(profile={profile:?})\n\
             c = s.create_client('sts', region_name='eu-west-1', endpoint_url={sts:?})\n\
             print(c.get_caller_identity()['Arn'])\n"
        ),
        &[("AWS_SHARED_CREDENTIALS_FILE", credentials)],
    )
    .trim()
    .to_owned()
}

#[test]
fn web_identity_keys_reach_botocore_through_the_credentials_file() {
    let moto = Moto::start();
    let mut r = Refreshd::new();
    let token_file = r.path("web-identity-token");
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    std::fs::write(
        &token_file,
        jwt_unsigned(serde_json::json!({ "sub": "system:serviceaccount:ns:app", "exp": exp })),
    )
    .unwrap();
    let credentials = r.path("credentials");
    std::fs::write(&credentials, "[default]\nregion = eu-west-1\n").unwrap();
    r.write_config(&format!(
        r#"[credentials.aws]
source = {{ type = "aws-web-identity", role_arn = "{ROLE_ARN}", web_identity_token = {{ file = "{token}" }}, sts_endpoint = "{sts}", duration_seconds = 900 }}
targets = [ {{ type = "ini", path = "{credentials}", section = "refreshd", keys = {{ aws_access_key_id = "access_key_id", aws_secret_access_key = "secret_access_key", aws_session_token = "token" }} }} ]
"#,
        token = token_file.display(),
        sts = moto.url,
        credentials = credentials.display(),
    ));
    assert_success(&r.run(&["once"]));
    let written = std::fs::read_to_string(&credentials).unwrap();
    assert!(written.contains("aws_access_key_id = ASIA"), "{written}");
    // STS knows the keys botocore read as the role's session, named after the credential.
    assert_eq!(
        caller_arn(&credentials, "refreshd", &moto.url),
        "arn:aws:sts::123456789012:assumed-role/app/refreshd-aws"
    );
    // The same keys through AWS's credential_process: botocore runs `refreshd token`.
    let aws_config = r.path("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile viaprocess]\ncredential_process = {} token --config {} --format aws-credential-process aws\n",
            crate::common::refreshd_bin(),
            r.config.display()
        ),
    )
    .unwrap();
    let empty = r.path("no-credentials");
    std::fs::write(&empty, "").unwrap();
    let arn = run_python(
        &format!(
            "import botocore.session\n\
             s = botocore.session.Session(profile='viaprocess')\n\
             c = s.create_client('sts', region_name='eu-west-1', endpoint_url={:?})\n\
             print(s.get_credentials().method, c.get_caller_identity()['Arn'])\n",
            moto.url
        ),
        &[
            ("AWS_CONFIG_FILE", &aws_config),
            ("AWS_SHARED_CREDENTIALS_FILE", &empty),
        ],
    );
    assert_eq!(
        arn.trim(),
        "custom-process arn:aws:sts::123456789012:assumed-role/app/refreshd-aws"
    );
    let first = written;
    assert_success(&r.run(&["once", "--force"]));
    assert_ne!(std::fs::read_to_string(&credentials).unwrap(), first);
    let secrets: Vec<String> = first
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .filter(|(k, _)| *k != "aws_access_key_id" && *k != "region")
        .map(|(_, v)| v.to_owned())
        .collect();
    assert_eq!(secrets.len(), 2, "{first}");
    r.assert_no_secrets(&secrets);
}

/// botocore's `generate_db_auth_token` with the keys of `profile` and its clock frozen at
/// `amz_date` (`20261208T001530Z`).
fn botocore_rds_token(credentials: &Path, profile: &str, amz_date: &str, db: &str) -> String {
    run_python(
        &format!(
            "import datetime, botocore.session\n\
             from unittest import mock\n\
             frozen = datetime.datetime.strptime({amz_date:?}, '%Y%m%dT%H%M%SZ')\n\
             class F(datetime.datetime):\n\
             \x20   @classmethod\n\
             \x20   def utcnow(cls): return frozen\n\
             \x20   @classmethod\n\
             \x20   def now(cls, tz=None): return frozen.replace(tzinfo=tz) if tz else frozen\n\
             s = botocore.session.Session(profile={profile:?})\n\
             c = s.create_client('rds', region_name='eu-west-1')\n\
             with mock.patch('botocore.auth.datetime.datetime', F):\n\
             \x20   print(c.generate_db_auth_token({db}))\n"
        ),
        &[("AWS_SHARED_CREDENTIALS_FILE", credentials)],
    )
    .trim()
    .to_owned()
}

#[test]
fn an_rds_token_signed_with_web_identity_keys_is_botocores_byte_for_byte() {
    let moto = Moto::start();
    let mut r = Refreshd::new();
    let token_file = r.path("web-identity-token");
    std::fs::write(&token_file, "opaque-web-identity-token").unwrap();
    let credentials = r.path("credentials");
    std::fs::write(&credentials, "").unwrap();
    r.write_config(&format!(
        r#"[credentials.aws]
source = {{ type = "aws-web-identity", role_arn = "{ROLE_ARN}", session_name = "ci", web_identity_token = {{ file = "{token}" }}, sts_endpoint = "{sts}" }}
targets = [ {{ type = "ini", path = "{credentials}", section = "refreshd", keys = {{ aws_access_key_id = "access_key_id", aws_secret_access_key = "secret_access_key", aws_session_token = "token" }} }} ]

[credentials.rds]
source = {{ type = "aws-rds-iam", host = "mydb.abc123.eu-west-1.rds.amazonaws.com", user = "app_user", region = "eu-west-1", aws = {{ credential = "aws" }} }}
targets = [ {{ type = "dotenv", path = "{env}", key = "PGPASSWORD" }} ]
"#,
        token = token_file.display(),
        sts = moto.url,
        credentials = credentials.display(),
        env = r.path("db.env").display(),
    ));
    assert_success(&r.run(&["once"]));
    let output = r.run(&["token", "rds"]);
    assert_success(&output);
    let ours = crate::common::stdout(&output).trim().to_owned();
    assert!(
        ours.starts_with("mydb.abc123.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app_user&X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
        "{ours}"
    );
    let amz_date = ours
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Date="))
        .expect("X-Amz-Date");
    let theirs = botocore_rds_token(
        &credentials,
        "refreshd",
        amz_date,
        "'mydb.abc123.eu-west-1.rds.amazonaws.com', 5432, 'app_user'",
    );
    assert_eq!(ours, theirs);
    // 15 minutes, well before the keys' hour is up.
    let state = r.state("rds");
    let issued = state["token"]["issued_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expires = state["token"]["expires_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!expires.is_empty(), "{state}");
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let lifetime = parse(&expires) - parse(&issued);
    assert!(
        lifetime <= time::Duration::seconds(900),
        "{issued} → {expires}"
    );
}
