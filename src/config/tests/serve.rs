//! `serve` entries: what each protocol takes, and the listen addresses no two endpoints
//! (nor an endpoint and the metrics port) may share.

use super::*;

fn config(daemon: &str, credentials: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        "[daemon]\nstate_dir = \"/tmp/refreshd-state\"\n{daemon}\n{credentials}"
    ))
}

const SOURCE: &str = "source = { type = \"command\", argv = [\"mint\"] }";

#[test]
fn each_protocol_parses_with_its_fields_and_line() {
    let config = config(
        "",
        &format!(
            r#"[credentials.db]
{SOURCE}
serve = [
  {{ type = "databricks-metadata", listen = "127.0.0.1:8181", host = "https://adb-1.azuredatabricks.net/" }},
  {{ type = "gce-metadata", listen = "127.0.0.1:8182", email = "app@example.iam.gserviceaccount.com", scopes = ["https://www.googleapis.com/auth/cloud-platform"], project_id = "demo" }},
  {{ type = "azure-managed-identity", listen = "[::1]:8183", header = {{ type = "dotenv", path = "/srv/app/.env", key = "IDENTITY_HEADER" }} }},
]
"#
        ),
    )
    .unwrap();
    let serve = &config.credential("db").unwrap().access.serve;
    assert_eq!(serve.len(), 3);
    assert_eq!(
        serve[0].kind,
        ServeKind::DatabricksMetadata {
            host: "https://adb-1.azuredatabricks.net".into()
        }
    );
    assert_eq!(serve[0].line, 7);
    assert!(matches!(
        &serve[1].kind,
        ServeKind::GceMetadata { project_id: Some(p), scopes, .. } if p == "demo" && scopes.len() == 1
    ));
    assert_eq!(serve[2].listen.to_string(), "[::1]:8183");
    assert_eq!(serve[2].line, 9);
}

#[test]
fn a_listen_address_is_one_endpoints_alone() {
    let entry = |port: u16| {
        format!("serve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:{port}\" }} ]\n")
    };
    let err = config(
        "",
        &format!(
            "[credentials.a]\n{SOURCE}\n{}\n[credentials.b]\n{SOURCE}\n{}",
            entry(8181),
            entry(8181)
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("/etc/refreshd/config.toml:10: credentials.b.serve[0].listen:")
            && err.contains("credentials.a.serve[0] (line 6)"),
        "{err}"
    );
    let err = config(
        "metrics_listen = \"127.0.0.1:9813\"",
        &format!("[credentials.a]\n{SOURCE}\n{}", entry(9813)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(":6: credentials.a.serve[0].listen:") && err.contains("daemon.metrics_listen"),
        "{err}"
    );
    // The same port on another loopback address is another address.
    let two = format!(
        "[credentials.a]\n{SOURCE}\nserve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:8181\" }}, {{ type = \"gce-metadata\", listen = \"127.0.0.2:8181\" }} ]\n"
    );
    config("", &two).unwrap();
}

#[test]
fn bad_entries_are_refused_with_their_key() {
    for (entry, key, says) in [
        (
            r#"{ type = "gce-metadata", listen = "0.0.0.0:8181" }"#,
            "serve[0].listen",
            "not a loopback address",
        ),
        (
            r#"{ type = "gce-metadata", listen = "127.0.0.1:0" }"#,
            "serve[0].listen",
            "fixed port",
        ),
        (
            r#"{ type = "gce-metadata", listen = "127.0.0.1:1", scopes = ["a b"] }"#,
            "serve[0].scopes[0]",
            "one word",
        ),
        (
            r#"{ type = "databricks-metadata", listen = "127.0.0.1:1", host = "adb-1" }"#,
            "serve[0].host",
            "not a workspace URL",
        ),
        (
            r#"{ type = "azure-managed-identity", listen = "127.0.0.1:1", header = { type = "dotenv", path = "/a/.env", key = "IDENTITY_HEADER", expires_at_key = "X" } }"#,
            "serve[0].header",
            "does not expire",
        ),
        (
            r#"{ type = "azure-managed-identity", listen = "127.0.0.1:1", header = { type = "pgpass", path = "/a/.pgpass", host = "h", port = 5432, database = "d", username = "u" } }"#,
            "serve[0].header",
            "not a .pgpass line",
        ),
        (
            r#"{ type = "azure-managed-identity", listen = "127.0.0.1:1", header = { type = "template", path = "/a/h", inline = "{{ token }}" } }"#,
            "serve[0].header.type",
            "a template renders a credential's token",
        ),
    ] {
        let err = config(
            "",
            &format!("[credentials.a]\n{SOURCE}\nserve = [ {entry} ]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(":6: credentials.a.{key}:")) && err.contains(says),
            "{entry}: {err}"
        );
    }
}

#[test]
fn moving_an_entry_in_the_file_is_no_change() {
    let text = format!(
        "[credentials.a]\n{SOURCE}\nserve = [ {{ type = \"gce-metadata\", listen = \"127.0.0.1:8181\" }} ]\n"
    );
    let one = config("", &text).unwrap();
    let two = config("\n\n", &text).unwrap();
    let (a, b) = (
        &one.credential("a").unwrap().access.serve[0],
        &two.credential("a").unwrap().access.serve[0],
    );
    assert_ne!(a.line, b.line);
    assert_eq!(a, b);
}
