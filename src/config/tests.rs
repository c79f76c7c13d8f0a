use std::path::Path;
use std::time::Duration;

use super::*;

mod access;
mod aws;
mod exchange;
mod formats;
mod many;
mod network;
mod notify;
mod rolling;
mod serve;
mod state_key;
mod templates;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/refreshd/config.toml"), text)
}

const MINIMAL: &str = r#"
[daemon]
state_dir = "/tmp/refreshd-state"

[credentials.db]
source = { type = "oauth-refresh", token_url = "https://idp.example.com/token", client_id = "cli", refresh_token = { file = "/etc/refreshd/rt" } }
targets = [
  { type = "dotenv", path = "/srv/app/.env", key = "TOKEN" },
  { type = "pgpass", path = "/home/app/.pgpass", host = "db.example.com", port = 5432, database = "postgres", username = "app@example.com" },
  { type = "file", path = "/run/app/token" },
]
reload = [ { signal = "HUP", pid_file = "/run/app.pid" } ]
"#;

#[test]
fn parses_the_design_example_shape_with_defaults() {
    let config = parse(MINIMAL).unwrap();
    let credential = config.credential("db").unwrap();
    assert_eq!(credential.timing.refresh_at, Duration::from_secs(3000));
    assert_eq!(credential.timing.min_remaining, Duration::from_secs(600));
    assert_eq!(credential.targets.len(), 3);
    assert_eq!(credential.line, 5);
    assert!(
        matches!(&credential.targets[1].kind, TargetKind::Pgpass { port, .. } if port == "5432")
    );
    assert!(
        matches!(&credential.reload[0].action, ReloadAction::SignalPidFile { signal, .. } if *signal == nix::sys::signal::Signal::SIGHUP)
    );
}

#[test]
fn credential_values_override_defaults() {
    let text = format!(
        "[defaults]\nrefresh_at = \"20m\"\nretry = {{ initial = \"1s\", max = \"1m\" }}\n{MINIMAL}"
    )
    .replace(
        "[credentials.db]\n",
        "[credentials.db]\nrefresh_at = \"5m\"\n",
    );
    let config = parse(&text).unwrap();
    let timing = &config.credentials[0].timing;
    assert_eq!(timing.refresh_at, Duration::from_secs(300));
    assert_eq!(timing.retry_max, Duration::from_secs(60));
}

#[test]
fn unknown_keys_are_errors_naming_line_and_key() {
    let text = MINIMAL.replace("state_dir =", "stat_dir =");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("/etc/refreshd/config.toml:3:"), "{err}");
    assert!(err.contains("stat_dir"), "{err}");

    let text = MINIMAL.replace("key = \"TOKEN\"", "key = \"TOKEN\", colour = \"red\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains(":8:") && err.contains("colour"), "{err}");
}

#[test]
fn semantic_errors_name_line_and_key() {
    let text = MINIMAL.replace("key = \"TOKEN\"", "key = \"MY-TOKEN\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains(":8: credentials.db.targets[0].key:"), "{err}");

    let text = MINIMAL.replace("port = 5432,", "port = 5432, key = \"X\",");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.targets[1].key: `key` is not a field of a pgpass target"),
        "{err}"
    );

    let text = MINIMAL.replace("https://idp", "http://idp");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.source.token_url") && err.contains("https"),
        "{err}"
    );

    let text = MINIMAL.replace("signal = \"HUP\"", "signal = \"SIGNOPE\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.reload[0]") && err.contains("SIGNOPE"),
        "{err}"
    );
}

#[test]
fn bad_durations_and_source_types_are_explained() {
    let text = MINIMAL.replace(
        "[credentials.db]\n",
        "[credentials.db]\nrefresh_at = \"soon\"\n",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains(":6:") && err.contains("invalid duration \"soon\""),
        "{err}"
    );

    let text = MINIMAL.replace("\"oauth-refresh\"", "\"oauth-magic\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("oauth-magic") && err.contains(":6:"), "{err}");
}

#[test]
fn bearer_references_must_exist_and_not_cycle() {
    let http = |bearer: &str| {
        format!(
            "{{ type = \"http\", url = \"https://x.example.com/api\", body = '{{\"request_id\": \"{{{{uuid}}}}\"}}', bearer = {{ credential = \"{bearer}\" }}, token_field = \"/token\" }}"
        )
    };
    let rt = "{ type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"cli\", refresh_token = { file = \"/etc/refreshd/rt\" } }";
    let with = |db: &str, extra: &str| format!("{}{extra}", MINIMAL.replace(rt, db));
    let err = parse(&with(&http("nope"), "")).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.source.bearer") && err.contains("`nope`"),
        "{err}"
    );
    let err = parse(&with(&http("db"), "")).unwrap_err().to_string();
    assert!(err.contains("cycle: db → db"), "{err}");
    let pg = format!("\n[credentials.pg]\nsource = {}\n", http("db"));
    let err = parse(&with(&http("pg"), &pg)).unwrap_err().to_string();
    assert!(err.contains("cycle: db → pg → db"), "{err}");
    // A proper chain of bearers is fine, and `once` visits the bearer first.
    let ws = format!("\n[credentials.ws]\nsource = {rt}\n");
    let config = parse(&with(&http("ws"), &ws)).unwrap();
    let order: Vec<&str> = config
        .dependency_order()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(order, ["ws", "db"]);
    let err = parse(&with(&http("ws").replace("{{uuid}}\"}", "\""), &ws))
        .unwrap_err()
        .to_string();
    assert!(err.contains("body") && err.contains("not JSON"), "{err}");
}

#[test]
fn ambiguous_chains_and_relative_state_dirs_are_refused() {
    let rt = "{ type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"cli\", refresh_token = { file = \"/etc/refreshd/rt\" } }";
    let text = MINIMAL.replace(
        rt,
        &format!("{{ type = \"chain\", sources = [{rt}, {rt}] }}"),
    );
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("one `oauth-refresh`")
    );
    let text = MINIMAL.replace("/tmp/refreshd-state", "relative/state");
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("daemon.state_dir")
    );
}

#[test]
fn pid_one_and_loose_pgpass_modes_are_refused() {
    let text = MINIMAL.replace("pid_file = \"/run/app.pid\"", "pid = 1");
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("greater than 1")
    );
    let text = MINIMAL.replace(
        "username = \"app@example.com\"",
        "username = \"app@example.com\", mode = \"0640\"",
    );
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("libpq ignores")
    );
}

#[test]
fn inline_secrets_need_a_private_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = MINIMAL.replace(
        "refresh_token = { file = \"/etc/refreshd/rt\" }",
        "refresh_token = \"rt-inline\"",
    );
    std::fs::write(&path, &text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.source.refresh_token") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("rt-inline"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).unwrap();
}

#[test]
fn a_pgpass_field_with_a_line_break_is_refused() {
    let text = MINIMAL.replace("host = \"db.example.com\"", "host = \"db.example.com\\n*\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("credentials.db.targets[1].host") && err.contains("line break"),
        "{err}"
    );
}

mod shape {
    use std::path::Path;

    use super::super::*;

    fn error(text: &str) -> String {
        Config::parse(Path::new("/etc/refreshd/config.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parser_errors_have_the_same_shape_as_ours() {
        let base = "[daemon]\nstate_dir = \"/tmp/s\"\n\n[credentials.db]\nsource = { type = \"command\", argv = [\"x\"] }\ntargets = [ { type = \"file\", path = \"/tmp/t\" } ]\n";
        for (text, expected) in [
            (
                base.replace("state_dir", "stat_dir"),
                "/etc/refreshd/config.toml:2: daemon.stat_dir: unknown field `stat_dir`",
            ),
            (
                base.replace("path = \"/tmp/t\"", "path = \"/tmp/t\", colour = 1"),
                "/etc/refreshd/config.toml:6: credentials.db.targets[0].colour: unknown field `colour`",
            ),
            (
                base.replace(
                    "[credentials.db]\n",
                    "[credentials.db]\njitter = \"soon\"\n",
                ),
                "/etc/refreshd/config.toml:5: credentials.db.jitter: invalid duration \"soon\"",
            ),
            (
                base.replace("\"command\"", "\"magic\""),
                "/etc/refreshd/config.toml:5: credentials.db.source",
            ),
            (
                base.replace("state_dir = \"/tmp/s\"", "state_dir = \"relative\""),
                "/etc/refreshd/config.toml:2: daemon.state_dir: relative must be an absolute path",
            ),
            (
                format!("{base}[log]\nlevel = \"info,,=[\"\n"),
                "/etc/refreshd/config.toml:8: log.level: ",
            ),
            (
                base.replace(
                    "argv = [\"x\"]",
                    "argv = [\"x\"], env = { \"A B\" = \"1\" }",
                ),
                "/etc/refreshd/config.toml:5: credentials.db.source.env: \"A B\" is not a variable name",
            ),
        ] {
            let err = error(&text);
            assert!(err.starts_with(expected), "{err}\nexpected: {expected}");
        }
    }
}

#[test]
fn lines_are_found_by_offset_as_counting_from_the_top_would() {
    let text = "a = 1\n\n[b]\r\nc = \"x\ny\"\nlast";
    let doc = super::locate::Doc::new(Path::new("c.toml"), text);
    for offset in 0..=text.len() + 3 {
        let counted = text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        assert_eq!(doc.line(offset), counted, "offset {offset}");
    }
}

#[test]
fn an_http_body_may_be_a_toml_table_sent_as_json() {
    let with_body = |body: &str| {
        format!(
            "[credentials.db]\nsource = {{ type = \"http\", url = \"https://x.example.com/api\", body = {body}, token_field = \"/token\" }}\ntargets = [ {{ type = \"file\", path = \"/run/app/token\" }} ]\n"
        )
    };
    let rendered = |text: &str| {
        let config = parse(text).unwrap();
        let SourceConfig::Http(http) = &config.credentials[0].source else {
            panic!("not an http source");
        };
        let body = http.body.as_ref().expect("a body").render(|| "U".into());
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let table = rendered(&with_body(
        r#"{ request_id = "{{uuid}}", instance_names = ["instance-1"], n = 2, nested = { on = true, at = 1979-05-27T07:32:00Z } }"#,
    ));
    assert_eq!(
        table,
        serde_json::json!({
            "request_id": "U",
            "instance_names": ["instance-1"],
            "n": 2,
            "nested": { "on": true, "at": "1979-05-27T07:32:00Z" },
        })
    );
    let string = rendered(&with_body(
        r#"'{"request_id": "{{uuid}}", "instance_names": ["instance-1"], "n": 2, "nested": {"on": true, "at": "1979-05-27T07:32:00Z"}}'"#,
    ));
    assert_eq!(table, string, "the two forms send the same JSON");

    let err = parse(&with_body("42")).unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/refreshd/config.toml:2:") && err.contains("a JSON string or a table"),
        "{err}"
    );
}

#[test]
fn a_store_shares_every_credential_unless_told_otherwise() {
    let store = r#"store = { type = "postgres", url = { env = "REFRESHD_STORE_URL" }, key = { file = "/etc/refreshd/store.key" }, lease = "20s" }
node = "web-1"
"#;
    let machine = r#"
[credentials.machine]
source = { type = "command", argv = ["/usr/bin/mint"] }

[credentials.mine]
source = { type = "command", argv = ["/usr/bin/mint"] }
shared = false
"#;
    let text = MINIMAL.replacen(
        "\n[credentials.db]",
        &format!("{store}\n[credentials.db]"),
        1,
    );
    let config = parse(&format!("{text}{machine}")).unwrap();
    let store = config.daemon.store.as_ref().unwrap();
    assert_eq!(
        (store.node.as_str(), store.lease),
        ("web-1", Duration::from_secs(20))
    );
    // A rotating grant never falls back to refreshing alone; a command may.
    let sharing = |name: &str| config.credential(name).unwrap().sharing;
    assert_eq!(
        sharing("db"),
        Sharing::Shared {
            local_fallback: false
        }
    );
    assert_eq!(
        sharing("machine"),
        Sharing::Shared {
            local_fallback: true
        }
    );
    assert_eq!(sharing("mine"), Sharing::Local);
    // Without a store, nothing is shared.
    assert_eq!(
        parse(MINIMAL).unwrap().credential("db").unwrap().sharing,
        Sharing::Local
    );
}

#[test]
fn store_errors_name_line_and_key() {
    let with = |store: &str, extra: &str| {
        let text = MINIMAL.replacen(
            "\n[credentials.db]",
            &format!("{store}\n[credentials.db]"),
            1,
        );
        parse(&format!("{text}{extra}")).unwrap_err().to_string()
    };
    let url = r#"url = { env = "U" }, key = { file = "/k" }"#;
    let e = with(
        &format!(r#"store = {{ type = "postgres", {url}, lease = "1h" }}"#),
        "",
    );
    assert!(
        e.contains(":4: daemon.store.lease: 1h is out of range"),
        "{e}"
    );
    let e = with(&format!(r#"store = {{ type = "mysql", {url} }}"#), "");
    assert!(e.contains(":4: daemon.store") && e.contains("mysql"), "{e}");
    let e = with(
        &format!(r#"store = {{ type = "postgres", {url}, leese = "1s" }}"#),
        "",
    );
    assert!(e.contains("leese"), "{e}");
    let e = with(
        &format!("store = {{ type = \"postgres\", {url} }}\nnode = \"web 1\""),
        "",
    );
    assert!(
        e.contains(":5: daemon.node: \"web 1\" is not a node name"),
        "{e}"
    );
    let e = with(
        &format!(r#"store = {{ type = "postgres", {url} }}"#),
        "local_fallback = true\n",
    );
    assert!(
        e.contains("credentials.db.local_fallback: an oauth-refresh source may not refresh without the store"),
        "{e}"
    );
}

#[test]
fn an_inline_store_url_or_key_needs_a_private_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    use std::os::unix::fs::PermissionsExt;
    for (store, key) in [
        (
            r#"store = { type = "postgres", url = "postgres://app:pw-inline@db/fleet", key = { file = "/k" } }"#,
            "daemon.store.url",
        ),
        (
            r#"store = { type = "postgres", url = { env = "U" }, key = "a2V5LWlubGluZQ==" }"#,
            "daemon.store.key",
        ),
    ] {
        let text = MINIMAL.replacen(
            "\n[credentials.db]",
            &format!("{store}\n[credentials.db]"),
            1,
        );
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!(":4: {key}")) && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("pw-inline") && !err.contains("a2V5"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Config::load(&path).unwrap();
    }
}

#[test]
fn secret_variables_are_every_env_reference_and_inherit_env() {
    let config = parse(
        r#"
[credentials.a]
source = { type = "oauth-refresh", token_url = "https://idp.example.com/token", client_id = "cli", client_secret = { env = "A_SECRET" }, refresh_token = { env = "A_RT" } }

[credentials.b]
source = { type = "oauth-client-credentials", token_url = "https://idp.example.com/token", client_id = "cli", client_secret = { file = "/etc/refreshd/b" } }

[credentials.c]
source = { type = "command", argv = ["mint"], env = { MODE = "x" }, inherit_env = ["VAULT_TOKEN"] }
"#,
    )
    .unwrap();
    let names: Vec<String> = config.secret_variables().into_iter().collect();
    assert_eq!(names, ["A_RT", "A_SECRET", "VAULT_TOKEN"]);
}
