//! The command line as an operator meets it: exit statuses, error messages that name the
//! file, line and key, `inspect`, `token`, `check`, and the `command` source end to end.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Refreshd, assert_success, stderr};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `command` source whose program prints `output` (JSON or plain) and a stderr line.
fn command_credential(r: &Refreshd, name: &str, output: &str, stderr_line: &str) -> String {
    let script = r.path(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s' '{output}'\necho '{stderr_line}' >&2\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "[credentials.{name}]\nsource = {{ type = \"command\", argv = [\"{}\"] }}\ntargets = [ {{ type = \"dotenv\", path = \"{}\", key = \"TOKEN\" }} ]\n",
        script.display(),
        r.path(".env").display()
    )
}

#[test]
fn config_errors_name_file_line_and_key_with_ex_config() {
    let mut r = Refreshd::new();
    r.write_config("[credentials.db]\nsource = { type = \"command\", argv = [\"/bin/true\"] }\ntargets = [ { type = \"dotenv\", path = \"/tmp/x.env\", key = \"A\", colour = \"red\" } ]\n");
    let once = r.run(&["once"]);
    assert_eq!(once.status.code(), Some(78), "EX_CONFIG");
    let message = stderr(&once);
    assert!(
        message.contains(&format!("{}:6:", r.config.display())) && message.contains("colour"),
        "{message}"
    );

    let check = r.run(&["check"]);
    assert_eq!(check.status.code(), Some(2));
    assert!(stderr(&check).contains("colour"));

    r.write_config("[credentials.db]\nsource = { type = \"command\", argv = [\"/bin/true\"] }\ntargets = [ { type = \"dotenv\", path = \"relative/.env\", key = \"A\" } ]\n");
    let check = r.run(&["check"]);
    assert_eq!(check.status.code(), Some(2));
    let message = stderr(&check);
    assert!(
        message.contains(":6: credentials.db.targets[0].path:") && message.contains("absolute"),
        "{message}"
    );
}

#[test]
fn an_inline_secret_in_a_readable_config_is_refused_without_showing_it() {
    let mut r = Refreshd::new();
    r.write_config("[credentials.db]\nsource = { type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"c\", refresh_token = \"inline-refresh-token-value\" }\n");
    std::fs::set_permissions(&r.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = r.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
    r.assert_no_secrets(&["inline-refresh-token-value"]);
}

#[test]
fn check_reports_unreadable_secrets_and_missing_directories() {
    let mut r = Refreshd::new();
    let missing = r.path("missing.secret");
    r.write_config(&format!(
        "[credentials.db]\nsource = {{ type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"c\", refresh_token = {{ file = \"{}\" }} }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
        missing.display(),
        r.path("no-such-dir/token").display()
    ));
    let output = r.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("db: source.refresh_token")
            && message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&r.path("no-such-dir/token").display().to_string()),
        "{message}"
    );

    let config = command_credential(&r, "ok", "tok-abc", "");
    r.write_config(&config);
    let output = r.run(&["check"]);
    assert_success(&output);
    assert!(stdout(&output).contains("ok (1 credentials)"));
}

#[test]
fn command_source_json_and_stderr_never_shows_the_token() {
    let mut r = Refreshd::new();
    let token = "cmd.token-value-0123456789";
    let config = command_credential(
        &r,
        "databricks",
        &format!(
            "{{\"access_token\":\"{token}\",\"token_type\":\"Bearer\",\"expiry\":\"2099-01-01T01:00:00+01:00\"}}"
        ),
        &format!("notice: issued {token}"),
    );
    r.write_config(&config);
    let output = r.run(&["once"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("notice: issued [redacted]"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(r.path(".env")).unwrap(),
        format!("TOKEN={token}\n")
    );
    assert_eq!(
        r.state("databricks")["token"]["expires_at"],
        "2099-01-01T00:00:00Z"
    );
    assert_eq!(r.state("databricks")["token"]["expiry_source"], "reported");

    let printed = r.command(&["token", "databricks"]).output().unwrap();
    assert_eq!(stdout(&printed), format!("{token}\n"));
    r.assert_no_secrets(&[token]);
}

#[test]
fn a_failing_command_is_reported_and_exits_1() {
    let mut r = Refreshd::new();
    let config = command_credential(&r, "broken", "", "auth: refresh token expired");
    let script = r.path("broken.sh");
    let body = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{body}exit 3\n")).unwrap();
    r.write_config(&config);
    let output = r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("refresh failed") && stderr(&output).contains("exit status: 3"),
        "{}",
        stderr(&output)
    );
    assert!(!r.path(".env").exists());
}

#[test]
fn once_exits_5_when_only_a_reload_failed() {
    let mut r = Refreshd::new();
    let config = command_credential(&r, "db", "tok-1234567890", "");
    r.write_config(&format!(
        "{config}reload = [ {{ command = [\"/bin/sh\", \"-c\", \"echo reload broke >&2; exit 7\"] }} ]\n"
    ));
    let output = r.run(&["once"]);
    assert_eq!(
        output.status.code(),
        Some(5),
        "the token was written, the reload failed: {}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(r.path(".env")).unwrap(),
        "TOKEN=tok-1234567890\n",
        "the rotation stands"
    );
    // Nothing changed on the second pass, so no reload ran and nothing failed.
    assert_success(&r.run(&["once"]));
    // A failed refresh outranks a failed reload.
    let script = r.path("db.sh");
    let body = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{body}exit 3\n")).unwrap();
    assert_eq!(r.run(&["once", "--force"]).status.code(), Some(1));
}

#[test]
fn token_and_once_exit_statuses() {
    let mut r = Refreshd::new();
    let config = command_credential(&r, "db", "tok-1234567890", "");
    r.write_config(&config);
    assert_eq!(
        r.command(&["token", "db"]).output().unwrap().status.code(),
        Some(1),
        "no token yet"
    );
    assert_eq!(
        r.command(&["token", "nope"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    assert_eq!(r.run(&["once", "nope"]).status.code(), Some(2));
    assert_success(&r.run(&["once", "db"]));
    assert_success(&r.command(&["token", "db"]).output().unwrap());
}

#[test]
fn a_newer_state_file_is_refused() {
    let mut r = Refreshd::new();
    let config = command_credential(&r, "db", "tok-1234567890", "");
    r.write_config(&config);
    std::fs::create_dir_all(r.state_dir()).unwrap();
    std::fs::write(
        r.state_dir().join("db.json"),
        "{\"version\": 99, \"credential\": \"db\"}",
    )
    .unwrap();
    let output = r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("version 99"),
        "{}",
        stderr(&output)
    );
    assert!(!r.path(".env").exists());
}

#[test]
fn inspect_decodes_a_jwt_and_refuses_anything_else() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3000;
    let jwt = format!(
        "{}.{}.c2ln",
        b64.encode(br#"{"alg":"RS256","kid":"k1"}"#),
        b64.encode(format!(r#"{{"sub":"alice","exp":{exp}}}"#))
    );
    let r = Refreshd::new();
    let output = r.command(&["inspect", &jwt]).output().unwrap();
    assert_success(&output);
    let text = stdout(&output);
    assert!(
        text.contains("\"sub\": \"alice\"")
            && text.contains("\"kid\": \"k1\"")
            && text.contains("(in 49m"),
        "{text}"
    );

    let mut child = r
        .command(&["inspect", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ya29.opaque-google-token\n")
        .unwrap();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(2));
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = crate::common::repo().join("config.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = refreshd::config::Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.credentials.is_empty());
}

/// The `command` source's program starts with refreshd's allow-listed variables plus its
/// own `env` and `inherit_env`: another credential's `{ env = … }` secret never reaches it.
#[test]
fn a_command_source_gets_a_clean_environment_plus_what_its_config_names() {
    let mut r = Refreshd::new();
    let dump = r.path("child-env.txt");
    let script = r.path("dump-env.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv > '{}'\nprintf '%s' token-from-a-clean-child\n",
            dump.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.write_config(&format!(
        "[credentials.api]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\", env = {{ API_REGION = \"eu-1\" }}, inherit_env = [\"DATABRICKS_CONFIG_PROFILE\"] }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n\n[credentials.other]\nsource = {{ type = \"oauth-client-credentials\", token_url = \"https://idp.example.com/token\", client_id = \"c\", client_secret = {{ env = \"OTHER_CLIENT_SECRET\" }} }}\n",
        script.display(),
        r.path("token").display()
    ));
    let secret = "other-credentials-client-secret";
    let output = r
        .command(&["once", "api"])
        .env("OTHER_CLIENT_SECRET", secret)
        .env("DATABRICKS_CONFIG_PROFILE", "prod")
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .output()
        .unwrap();
    r.record(&output);
    assert_success(&output);
    assert_eq!(
        std::fs::read_to_string(r.path("token")).unwrap(),
        "token-from-a-clean-child\n"
    );
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.lines().any(|l| l == "API_REGION=eu-1"), "{env}");
    assert!(
        env.lines().any(|l| l == "DATABRICKS_CONFIG_PROFILE=prod"),
        "{env}"
    );
    assert!(
        !env.contains(secret),
        "another credential's secret reached the child:\n{env}"
    );
    for line in env.lines() {
        let key = line.split('=').next().unwrap_or_default();
        let allowed = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"].contains(&key)
            || key.starts_with("LC_")
            || key.starts_with("XDG_")
            || [
                "DBUS_SESSION_BUS_ADDRESS",
                "API_REGION",
                "DATABRICKS_CONFIG_PROFILE",
            ]
            .contains(&key)
            || ["PWD", "SHLVL", "_"].contains(&key);
        assert!(allowed, "the child inherited {key}:\n{env}");
    }
    r.assert_no_secrets(&[secret]);
}
