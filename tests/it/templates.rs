//! `template` targets: a JDBC URL in a properties file, rendered from a template for each
//! token the oidc-provider fixture issues to `refreshd once`, read back by a program that
//! parses the file and the URL (`tests/readers/read_jdbc.py`: `urllib.parse`); tokens with
//! `+`, `/`, `=` and `&` survive `urlencode`; `check` refuses a template naming an undefined
//! variable; the file survives 1,000 rewrites under a concurrent reader.
//!
//! The reader runs in the venv `scripts/install-test-peers` makes; without it these tests
//! fail (they never skip).

use std::path::{Path, PathBuf};
use std::process::Command;

use refreshd::config::{Config, TargetConfig};
use refreshd::target;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::common::{
    INSTALL, Oidc, Refreshd, assert_success, repo, require_root, rt_basic_source, stderr,
};

const JDBC_TEMPLATE: &str = "# app database, rendered by refreshd for {{ credential }}\n\
driver=org.postgresql.Driver\n\
url=jdbc:postgresql://db.internal:5432/app?user={{ claims.client_id | urlencode }}&password={{ token | urlencode }}&ssl=true\n\
# expires {{ expires_at }} ({{ expires_at_unix }})\n";

/// What `read_jdbc.py FILE url` printed about the JDBC URL in `file`.
fn read_jdbc(file: &Path) -> Value {
    let python = repo().join(".test-peers/venv/bin/python");
    let script = repo().join("tests/readers/read_jdbc.py");
    for needed in [&python, &script] {
        assert!(
            needed.exists(),
            "{} is missing: {INSTALL}",
            needed.display()
        );
    }
    let output = Command::new(&python)
        .env_clear()
        .arg(&script)
        .arg(file)
        .arg("url")
        .output()
        .unwrap_or_else(|e| panic!("cannot start the JDBC reader ({e}): {INSTALL}"));
    assert!(
        output.status.success(),
        "the JDBC reader failed on {} ({}): {}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the reader must see for `password` (and the user `user`).
fn expected(user: &str, password: &str) -> Value {
    json!({
        "scheme": "postgresql",
        "host": "db.internal",
        "port": 5432,
        "path": "/app",
        "user": user,
        "password_sha256": sha256(password),
        "query_keys": ["password", "ssl", "user"],
    })
}

/// The token the credential holds now, as `refreshd token` prints it (not recorded).
fn current_token(r: &Refreshd, name: &str) -> String {
    let output = r.command(&["token", name]).output().unwrap();
    assert_success(&output);
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn a_jdbc_url_is_rendered_for_each_rotated_token_and_read_by_an_app() {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 3600);
    let (_, source) = rt_basic_source(&r, &oidc);
    let template = r.path("jdbc.properties.j2");
    std::fs::write(&template, JDBC_TEMPLATE).unwrap();
    let properties = r.path("jdbc.properties");
    r.write_config(&format!(
        "[credentials.db]\n{source}\ntargets = [ {{ type = \"template\", path = \"{}\", template = \"{}\" }} ]\n",
        properties.display(),
        template.display()
    ));
    assert_success(&r.run(&["check"]));
    let mut seen = Vec::new();
    for args in [&["once"][..], &["once", "--force"]] {
        assert_success(&r.run(args));
        let token = current_token(&r, "db");
        assert!(token.len() > 20 && !seen.contains(&token), "not rotated");
        assert_eq!(read_jdbc(&properties), expected("rt-basic", &token));
        let text = std::fs::read_to_string(&properties).unwrap();
        let expires = r.state("db")["token"]["expires_at"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.starts_with("# app database, rendered by refreshd for db\ndriver=")
                && text.ends_with(&format!(
                    "# expires {expires} ({})\n",
                    time::OffsetDateTime::parse(
                        &expires,
                        &time::format_description::well_known::Rfc3339
                    )
                    .unwrap()
                    .unix_timestamp()
                )),
            "{}",
            text.len()
        );
        seen.push(token);
    }
    // With a token stored, `check` renders against its real claims: one it lacks is named.
    std::fs::write(
        &template,
        JDBC_TEMPLATE.replace("claims.client_id", "claims.db_user"),
    )
    .unwrap();
    let output = r.run(&["check"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("line 3: undefined value in `claims.db_user`"),
        "{err}"
    );
    r.assert_no_issued_tokens(&oidc);
}

#[test]
fn check_refuses_an_undefined_variable_and_a_syntax_error_by_name_and_line() {
    let mut r = Refreshd::new();
    let template = r.path("app.j2");
    let config = |r: &Refreshd| {
        r.write_config(&format!(
            "[credentials.db]\nsource = {{ type = \"command\", argv = [\"/bin/true\"] }}\ntargets = [ {{ type = \"template\", path = \"{}\", template = \"{}\" }} ]\n",
            r.path("app.properties").display(),
            template.display()
        ));
    };
    // Without a stored token any claim passes: which claims come is unknown until they do.
    std::fs::write(
        &template,
        "user={{ claims.anything }}\npassword={{ token }}\n",
    )
    .unwrap();
    config(&r);
    let output = r.run(&["check"]);
    assert_success(&output);

    // A variable the context lacks is refused as the config is read, with its line.
    std::fs::write(&template, "user=app\npassword={{ tokne | urlencode }}\n").unwrap();
    let output = r.run(&["check"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "credentials.db.targets[0].template: template {}, line 2: unknown variable `tokne`",
            template.display()
        )),
        "{err}"
    );
    // A claim is looked for when the template is rendered: without a stored token `check`
    // cannot know it is missing, but a filter never turns a missing one into "".
    std::fs::write(&template, "user={{ claims.db_user | urlencode }}\n").unwrap();
    assert_success(&r.run(&["check"]));

    std::fs::write(&template, "user=app\npassword={{ token | }}\n").unwrap();
    let output = r.run(&["check"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{} / {}",
        stderr(&output),
        crate::common::stdout(&output)
    );
    let err = stderr(&output);
    assert!(
        err.contains("credentials.db.targets[0].template: template")
            && err.contains("app.j2, line 2: syntax error"),
        "{err}"
    );
}

/// As root, a template file decides what root writes: like the config, it is read only when
/// nobody but root could have changed it.
#[test]
fn as_root_a_template_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    require_root("a template writable by others is refused only when refreshd runs as root");
    let mut r = Refreshd::new();
    let template = r.path("app.j2");
    std::fs::write(&template, "password={{ token }}\n").unwrap();
    std::fs::set_permissions(&template, std::fs::Permissions::from_mode(0o666)).unwrap();
    r.write_config(&format!(
        "[credentials.db]\nsource = {{ type = \"command\", argv = [\"/bin/true\"] }}\ntargets = [ {{ type = \"template\", path = \"{}\", template = \"{}\" }} ]\n",
        r.path("app.properties").display(),
        template.display()
    ));
    let output = r.run(&["check"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("can be written by its group or others"),
        "{}",
        stderr(&output)
    );
    std::fs::set_permissions(&template, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_success(&r.run(&["check"]));
}

fn jdbc_target(path: PathBuf) -> TargetConfig {
    let dir = path.parent().unwrap().to_owned();
    let config_path = dir.join("config.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n[credentials.db]\nsource = {{ type = \"command\", argv = [\"/bin/true\"] }}\ntargets = [ {{ type = \"template\", path = \"{}\", inline = {} }} ]\n",
        dir.join("state").display(),
        path.display(),
        json!(JDBC_TEMPLATE.replace("claims.client_id", "credential"))
    );
    let config = Config::parse(&config_path, &text).unwrap();
    config.credentials[0].targets[0].clone()
}

fn write(target: &TargetConfig, token: &str) {
    target::write(
        target,
        &SecretString::from(token),
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        crate::common::target_locks(),
    )
    .unwrap();
}

#[test]
fn tokens_with_url_metacharacters_reach_the_app_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let target = jdbc_target(dir.path().join("jdbc.properties"));
    for token in [
        "FwoGZXIvYXdzEDoaDHN0c+/=",
        "a&user=evil&password=x",
        "p%20q+r s#frag?x=1",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2ln-_",
        "tök€n~!*'();:@$,[]",
    ] {
        write(&target, token);
        assert_eq!(
            read_jdbc(&target.path),
            expected("db", token),
            "{}",
            sha256(token)
        );
    }
}

#[test]
fn a_rendered_file_survives_1000_rewrites_under_a_concurrent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let target = jdbc_target(dir.path().join("jdbc.properties"));
    let tokens = ["a".repeat(900), "b+/=".repeat(350)];
    let versions: Vec<String> = tokens
        .iter()
        .map(|t| {
            write(&target, t);
            std::fs::read_to_string(&target.path).unwrap()
        })
        .collect();
    crate::common::rewrites_under_a_reader(&target.path, &versions, |i| {
        write(&target, &tokens[i % 2]);
    });
    assert_eq!(std::fs::read_to_string(&target.path).unwrap(), versions[1]);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["jdbc.properties"], "no temp file is left behind");
}
