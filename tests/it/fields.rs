//! Credentials with several fields: a source that mints a user and a password (or an AWS key
//! triple) together, every target of the credential mapping its keys to those fields, and
//! real readers that never see a user of one rotation beside a password of another;
//! templates that render several credentials and are written again when any changes.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{INSTALL, Refreshd, assert_success, eventually, repo};

/// A program that mints a new user and password on each run, as a database's credential
/// API does: user `app_N`, password `pw-N-…`, N counting runs.
fn minting_script(r: &Refreshd) -> std::path::PathBuf {
    let script = r.path("mint.sh");
    let counter = r.path("minted");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(( $(cat {c} 2>/dev/null || echo 0) + 1 ))\necho $n > {c}\nprintf '{{\"data\":{{\"user\":\"app_%s\",\"password\":\"pw-%s-s3cr3t\"}},\"expires_in\":3600}}' $n $n\n",
            c = counter.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn python() -> std::path::PathBuf {
    let python = repo().join(".test-peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {INSTALL}",
        python.display()
    );
    python
}

/// Every target type that can hold a user and a password: a .env, a JSON app config, a
/// .pgpass line whose user changes with each rotation, and a JDBC URL from a template.
fn pair_config(r: &Refreshd) -> String {
    format!(
        r#"[credentials.db]
source = {{ type = "command", argv = ["{script}"], format = "json", token_field = "/data/password", fields = {{ user = "/data/user" }} }}
targets = [
  {{ type = "dotenv", path = "{env}", keys = {{ DB_USER = "user", DB_PASSWORD = "token" }} }},
  {{ type = "json", path = "{json}", pointers = {{ "/db/user" = "user", "/db/password" = "token" }} }},
  {{ type = "pgpass", path = "{pgpass}", host = "db", database = "app", username = {{ field = "user" }} }},
  {{ type = "template", path = "{jdbc}", inline = "url=jdbc:postgresql://db/app?user={{{{ fields.user }}}}&password={{{{ token | urlencode }}}}\n" }},
]
"#,
        script = minting_script(r).display(),
        env = r.path(".env").display(),
        json = r.path("app.json").display(),
        pgpass = r.path(".pgpass").display(),
        jdbc = r.path("jdbc.properties").display(),
    )
}

#[test]
fn readers_never_see_a_user_of_one_rotation_with_a_password_of_another() {
    let mut r = Refreshd::new();
    std::fs::write(r.path(".env"), "# app settings\nDB_HOST=db\n").unwrap();
    std::fs::write(r.path("app.json"), "{\n  \"db\": {\"host\": \"db\"}\n}\n").unwrap();
    std::fs::write(r.path(".pgpass"), "other:5432:*:bob:keep\n").unwrap();
    r.write_config(&pair_config(&r));
    assert_success(&r.run(&["once"]));
    let stop = r.path("stop");
    let reader = Command::new(python())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg(repo().join("tests/readers/read_pairs.py"))
        .args([
            r.path(".env"),
            r.path("app.json"),
            r.path(".pgpass"),
            stop.clone(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the reader ({e}): {INSTALL}"));
    for _ in 0..100 {
        assert_success(&r.run(&["once", "--force"]));
    }
    std::fs::write(&stop, "").unwrap();
    let output = reader.wait_with_output().unwrap();
    assert!(output.status.success(), "the reader failed");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["mismatched"], 0, "{seen}");
    assert_eq!(seen["missing"], 0, "{seen}");
    assert!(seen["reads"].as_u64().unwrap() >= 3, "{seen}");
    // After the last rotation every file holds the 101st pair, and nothing else changed.
    let env = std::fs::read_to_string(r.path(".env")).unwrap();
    assert_eq!(
        env,
        "# app settings\nDB_HOST=db\nDB_PASSWORD=pw-101-s3cr3t\nDB_USER=app_101\n"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(r.path("app.json")).unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({"db": {"host": "db", "user": "app_101", "password": "pw-101-s3cr3t"}})
    );
    assert_eq!(
        std::fs::read_to_string(r.path(".pgpass")).unwrap(),
        "db:5432:app:app_101:pw-101-s3cr3t\nother:5432:*:bob:keep\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.path("jdbc.properties")).unwrap(),
        "url=jdbc:postgresql://db/app?user=app_101&password=pw-101-s3cr3t\n"
    );
    let state = r.state("db");
    assert_eq!(state["version"], 3);
    assert_eq!(state["token"]["fields"]["user"], "app_101");
    r.assert_no_secrets(&["pw-1-s3cr3t", "pw-50-s3cr3t", "pw-101-s3cr3t"]);
}

/// `aws configure export-credentials`-style output, as a `credential_process` prints it.
const AWS_PROCESS: &str = r#"#!/bin/sh
n=$(( $(cat "$0.n" 2>/dev/null || echo 0) + 1 ))
echo $n > "$0.n"
printf '{"Version":1,"AccessKeyId":"ASIA%sEXAMPLE","SecretAccessKey":"secret/%s+key","SessionToken":"session-%s-token","Expiration":"2099-01-01T00:00:00Z"}' $n $n $n
"#;

#[test]
fn botocore_reads_a_key_triple_minted_together() {
    let mut r = Refreshd::new();
    let script = r.path("aws-process.sh");
    std::fs::write(&script, AWS_PROCESS).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let credentials = r.path("credentials");
    std::fs::write(
        &credentials,
        "[default]\nregion = eu-west-1\n\n[refreshd]\n# keys below are refreshd's\n",
    )
    .unwrap();
    r.write_config(&format!(
        r#"[credentials.aws]
source = {{ type = "command", argv = ["{}"], token_field = "/SessionToken", expiry_field = "/Expiration", fields = {{ key_id = "/AccessKeyId", secret = "/SecretAccessKey" }} }}
targets = [ {{ type = "ini", path = "{}", section = "refreshd", keys = {{ aws_access_key_id = "key_id", aws_secret_access_key = "secret", aws_session_token = "token" }} }} ]
"#,
        script.display(),
        credentials.display()
    ));
    for (n, args) in [(1, &["once"][..]), (2, &["once", "--force"][..])] {
        assert_success(&r.run(args));
        let home = tempfile::tempdir().unwrap();
        let output = Command::new(python())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .arg(repo().join("tests/readers/read_formats.py"))
            .arg("botocore")
            .arg(&credentials)
            .arg("refreshd")
            .output()
            .unwrap_or_else(|e| panic!("cannot start the botocore reader ({e}): {INSTALL}"));
        assert!(output.status.success(), "{output:?}");
        let read: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            read,
            json!({
                "access_key": format!("ASIA{n}EXAMPLE"),
                "secret_key": format!("secret/{n}+key"),
                "token": format!("session-{n}-token"),
                "method": "shared-credentials-file",
            })
        );
    }
    // Missing keys go in after the section's last key (here its header: the comment
    // may introduce what follows), in the order of `keys`; every other byte stays.
    assert_eq!(
        std::fs::read_to_string(&credentials).unwrap(),
        "[default]\nregion = eu-west-1\n\n[refreshd]\naws_access_key_id = ASIA2EXAMPLE\naws_secret_access_key = secret/2+key\naws_session_token = session-2-token\n# keys below are refreshd's\n"
    );
    r.assert_no_secrets(&["secret/1+key", "secret/2+key", "session-2-token"]);
}

/// A program printing a new opaque token on each run, prefixed with its name.
fn counting_token(r: &Refreshd, name: &str) -> std::path::PathBuf {
    let script = r.path(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(( $(cat \"$0.n\" 2>/dev/null || echo 0) + 1 ))\necho $n > \"$0.n\"\nprintf '{{\"token\":\"{name}-token-%s\",\"user\":\"u{name}\",\"expires_in\":3600}}' $n\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_template_of_two_credentials_is_written_again_when_either_rotates() {
    let mut r = Refreshd::new();
    let out = r.path("app.properties");
    r.write_config(&format!(
        r#"[credentials.api]
source = {{ type = "command", argv = ["{api}"], fields = {{ user = "/user" }} }}
targets = [ {{ type = "template", path = "{out}", uses = ["db"], inline = "api={{{{ token }}}}\ndb.user={{{{ credentials.db.fields.user }}}}\ndb.password={{{{ credentials.db.token }}}}\n" }} ]

[credentials.db]
source = {{ type = "command", argv = ["{db}"], fields = {{ user = "/user" }} }}
"#,
        api = counting_token(&r, "api").display(),
        db = counting_token(&r, "db").display(),
        out = out.display(),
    ));
    let check = r.run(&["check"]);
    assert_success(&check);
    let mut daemon = r.spawn(&["run"]);
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    eventually("the first render", Duration::from_secs(20), || {
        (read() == "api=api-token-1\ndb.user=udb\ndb.password=db-token-1\n").then_some(())
    });
    assert_success(&r.run(&["rotate", "db"]));
    eventually(
        "the render with db's new token",
        Duration::from_secs(20),
        || (read() == "api=api-token-1\ndb.user=udb\ndb.password=db-token-2\n").then_some(()),
    );
    assert_success(&r.run(&["rotate", "api"]));
    eventually(
        "the render with api's new token",
        Duration::from_secs(20),
        || (read() == "api=api-token-2\ndb.user=udb\ndb.password=db-token-2\n").then_some(()),
    );
    daemon.terminate(Duration::from_secs(10));
    r.record_daemon(&daemon);
    r.assert_no_secrets(&["api-token-2", "db-token-2"]);
}

#[test]
fn check_refuses_a_field_no_source_declares_and_a_template_of_an_unknown_credential() {
    let r = Refreshd::new();
    let cases = [
        (
            format!(
                r#"[credentials.db]
source = {{ type = "command", argv = ["/bin/true"], fields = {{ user = "/user" }} }}
targets = [ {{ type = "dotenv", path = "{}", keys = {{ DB_USER = "usr" }} }} ]
"#,
                r.path(".env").display()
            ),
            "credentials.db.targets[0].keys.DB_USER: \"usr\" is not a value this credential has: one of \"token\", \"expires_at\", \"token_type\", \"user\"",
        ),
        (
            format!(
                r#"[credentials.db]
source = {{ type = "command", argv = ["/bin/true"] }}
targets = [ {{ type = "template", path = "{}", uses = ["nosuch"], inline = "x" }} ]
"#,
                r.path("t").display()
            ),
            "a template uses credential `nosuch`, which this config does not define",
        ),
        (
            r#"[credentials.db]
source = { type = "command", argv = ["/bin/true"], format = "json", fields = { token = "/t" } }
"#
            .to_owned(),
            "credentials.db.source.fields.token: `token` is a value every credential has",
        ),
    ];
    for (config, expected) in cases {
        r.write_config(&config);
        let output = r.command(&["check"]).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    // A template naming a field its credential does not declare fails `check`, by line.
    r.write_config(&format!(
        r#"[credentials.db]
source = {{ type = "command", argv = ["/bin/true"], fields = {{ user = "/user" }} }}
targets = [ {{ type = "template", path = "{}", inline = "u={{{{ fields.user }}}}\np={{{{ fields.pass }}}}\n" }} ]
"#,
        r.path("t").display()
    ));
    let output = r.command(&["check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("line 2") && stderr.contains("fields.pass"),
        "{stderr}"
    );
}
