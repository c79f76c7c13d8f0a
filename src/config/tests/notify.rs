//! `[[notify]]`: defaults, each key's checks, and the webhook URL treated as a secret.

use super::*;

fn with_sinks(sinks: &str) -> Result<Config, ConfigError> {
    parse(&format!("{MINIMAL}\n{sinks}"))
}

fn refused(sinks: &str) -> String {
    with_sinks(sinks).unwrap_err().to_string()
}

#[test]
fn a_webhook_with_only_a_url_gets_every_event_and_the_defaults() {
    let config =
        with_sinks("[[notify]]\ntype = \"webhook\"\nurl = { env = \"SLACK_HOOK\" }\n").unwrap();
    let sink = &config.notify[0];
    assert_eq!(sink.name, "notify[0]");
    assert_eq!(sink.events.len(), EventKind::ALL.len());
    assert_eq!(sink.after, 3);
    assert_eq!((sink.min_remaining, sink.repeat), (None, None));
    assert_eq!(sink.timeout, Duration::from_secs(10));
    assert_eq!(sink.line, 14);
    assert!(matches!(
        &sink.kind,
        SinkKind::Webhook { format: WebhookFormat::Refreshd, url: crate::secret::SecretRef::Env(v) } if v == "SLACK_HOOK"
    ));
    // The variable holds a secret: `refreshd exec` keeps it from its program.
    assert!(config.secret_variables().contains("SLACK_HOOK"));
}

#[test]
fn a_command_sink_with_filters() {
    let config = with_sinks(
        r#"[[notify]]
name = "pager"
type = "command"
argv = ["/usr/local/bin/page", "--team", "db"]
events = ["login_needed", "expiring"]
credentials = ["db"]
after = 5
min_remaining = "10m"
repeat = "1h"
"#,
    )
    .unwrap();
    let sink = &config.notify[0];
    assert!(sink.wants(EventKind::LoginNeeded, Some("db")));
    assert!(!sink.wants(EventKind::LoginNeeded, Some("other")));
    assert!(!sink.wants(EventKind::Failing, Some("db")));
    assert_eq!(sink.min_remaining, Some(Duration::from_secs(600)));
    assert_eq!(sink.repeat, Some(Duration::from_secs(3600)));
}

#[test]
fn each_key_is_checked_with_its_line() {
    for (sink, key, words) in [
        ("type = \"email\"", "notify[0].type", "unknown sink type"),
        (
            "type = \"webhook\"",
            "notify[0].url",
            "a webhook needs `url`",
        ),
        (
            "type = \"command\"\nargv = []",
            "notify[0].argv",
            "must name a program",
        ),
        (
            "type = \"webhook\"\nurl = { env = \"H\" }\nformat = \"teams\"",
            "notify[0].format",
            "unknown format",
        ),
        (
            "type = \"webhook\"\nurl = { env = \"H\" }\nevents = [\"failed\"]",
            "notify[0].events",
            "unknown event \"failed\"",
        ),
        (
            "type = \"webhook\"\nurl = { env = \"H\" }\ncredentials = [\"nope\"]",
            "notify[0].credentials",
            "not a configured credential",
        ),
        (
            "type = \"webhook\"\nurl = { env = \"H\" }\nafter = 0",
            "notify[0].after",
            "at least 1",
        ),
        (
            "type = \"webhook\"\nurl = { env = \"H\" }\nname = \"on_failure\"",
            "notify[0].name",
            "reserved",
        ),
    ] {
        let message = refused(&format!("[[notify]]\n{sink}\n"));
        assert!(
            message.starts_with("/etc/refreshd/config.toml:14: ")
                && message.contains(key)
                && message.contains(words),
            "{sink}: {message}"
        );
    }
    let twice = refused(
        "[[notify]]\nname = \"a\"\ntype = \"command\"\nargv = [\"x\"]\n\n[[notify]]\nname = \"a\"\ntype = \"command\"\nargv = [\"y\"]\n",
    );
    assert!(twice.contains(":19: notify[1].name"), "{twice}");
    let typo = refused("[[notify]]\ntype = \"command\"\nargv = [\"x\"]\nrepaet = \"1h\"\n");
    assert!(typo.contains("repaet"), "{typo}");
}

#[test]
fn an_inline_webhook_url_is_a_secret_in_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let sinks =
        "[[notify]]\ntype = \"webhook\"\nurl = \"https://hooks.slack.com/services/T0/B0/secret\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{MINIMAL}\n{sinks}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = Config::load(&path).unwrap_err().to_string();
    assert!(
        message.contains(":14: notify[0].url: an inline secret is allowed only"),
        "{message}"
    );
    assert!(!message.contains("B0/secret"), "{message}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Config::load(&path).unwrap();
    assert!(!format!("{config:?}").contains("B0/secret"));
}
