//! `readers`, `serve`, `git` and `docker`: what is accepted, and that a mistake names its
//! line and key.

use super::*;

fn with(extra: &str) -> Result<Config, ConfigError> {
    parse(&MINIMAL.replace(
        "reload = [ { signal",
        &format!("{extra}\nreload = [ {{ signal"),
    ))
}

#[test]
fn readers_resolve_users_groups_and_numbers_sorted_once() {
    let config =
        with(r#"readers = ["root", "group:root", "uid:65534", "gid:7", "uid:0"]"#).unwrap();
    let readers = &config.credential("db").unwrap().access.readers;
    assert_eq!(
        readers,
        &[
            Reader::Uid(0),
            Reader::Uid(65534),
            Reader::Gid(0),
            Reader::Gid(7)
        ]
    );
}

#[test]
fn an_unknown_reader_is_an_error_naming_line_and_entry() {
    let err = with(r#"readers = ["no-such-user-refreshd"]"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":12: credentials.db.readers[0]: no user named"),
        "{err}"
    );
    let err = with(r#"readers = ["group:no-such-group-refreshd"]"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no group named"), "{err}");
    let err = with(r#"readers = ["uid:x"]"#).unwrap_err().to_string();
    assert!(err.contains("is not a number"), "{err}");
}

#[test]
fn endpoints_listen_on_loopback_only() {
    let config = with(
        r#"serve = [ { type = "gce-metadata", listen = "127.0.0.1:8181" }, { type = "databricks-metadata", listen = "[::1]:8182", host = "https://adb-1.azuredatabricks.net/" } ]"#,
    )
    .unwrap();
    let serve = &config.credential("db").unwrap().access.serve;
    assert_eq!(serve[0].kind.name(), "gce-metadata");
    assert!(
        matches!(&serve[1].kind, ServeKind::DatabricksMetadata { host } if host == "https://adb-1.azuredatabricks.net")
    );
    for (listen, why) in [
        ("0.0.0.0:8181", "not a loopback address"),
        ("192.168.1.5:8181", "not a loopback address"),
        ("127.0.0.1:0", "needs a fixed port"),
        ("localhost:8181", "is not an address and port"),
    ] {
        let err = with(&format!(
            r#"serve = [ {{ type = "gce-metadata", listen = "{listen}" }} ]"#
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("credentials.db.serve[0].listen") && err.contains(why),
            "{listen}: {err}"
        );
    }
    let err = with(
        r#"serve = [ { type = "databricks-metadata", listen = "127.0.0.1:1", host = "adb" } ]"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("serve[0].host"), "{err}");
}

#[test]
fn git_and_docker_declarations_are_checked() {
    let config = with(
        r#"git = { url = "https://git.example.com/org", username = "x-token" }
docker = { server = "registry.example.com", username = "oauth2accesstoken" }"#,
    )
    .unwrap();
    let access = &config.credential("db").unwrap().access;
    assert_eq!(
        access.git.as_ref().unwrap().url.as_str(),
        "https://git.example.com/org"
    );
    assert_eq!(
        access.docker.as_ref().unwrap().server,
        "registry.example.com"
    );
    let err = with(r#"git = { url = "https://me:pw@git.example.com", username = "x" }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("credentials.db.git.url"), "{err}");
    let err = with(r#"git = { url = "ssh://git.example.com", username = "x" }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not an https://host"), "{err}");
}
