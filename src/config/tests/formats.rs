//! The `ini`, `toml` and `json` target keys: parsed into their typed form at load, and every
//! mistake named with its line and key.

use super::*;

fn with_target(target: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "/tmp/refreshd-state"

[credentials.db]
source = {{ type = "command", argv = ["/bin/true"] }}
targets = [
  {target},
]
"#
    )
}

pub(super) fn target(target: &str) -> TargetKind {
    let config = parse(&with_target(target)).unwrap();
    config.credentials[0].targets[0].kind.clone()
}

pub(super) fn error(target: &str) -> String {
    parse(&with_target(target)).unwrap_err().to_string()
}

#[test]
fn ini_toml_and_json_targets_parse() {
    assert_eq!(
        target(
            r#"{ type = "ini", path = "/home/a/.databrickscfg", section = "DEFAULT", key = "token", expires_at_key = "token_expiry" }"#
        ),
        TargetKind::Ini {
            section: Some("DEFAULT".into()),
            keys: vec![
                ("token".into(), ValueOf::Token),
                ("token_expiry".into(), ValueOf::ExpiresAt)
            ],
        }
    );
    assert!(matches!(
        target(r#"{ type = "ini", path = "/srv/app/app.ini", key = "token" }"#),
        TargetKind::Ini { section: None, .. }
    ));
    let TargetKind::Toml { keys } = target(
        r#"{ type = "toml", path = "/srv/app/config.toml", key = 'database."pass.word"', expires_at_key = "database.expires" }"#,
    ) else {
        panic!("not a toml target");
    };
    assert_eq!(keys[0].0.segments(), ["database", "pass.word"]);
    assert_eq!(keys[0].1, ValueOf::Token);
    assert_eq!(keys[1].0.segments(), ["database", "expires"]);
    assert_eq!(keys[1].1, ValueOf::ExpiresAt);
    let TargetKind::Json { pointers } = target(
        r#"{ type = "json", path = "/srv/app/config.json", pointer = "/db/pass~1word", expires_at_pointer = "/db/expires" }"#,
    ) else {
        panic!("not a json target");
    };
    assert_eq!(pointers[0].0.tokens(), ["db", "pass/word"]);
    assert_eq!(pointers[1].0.to_string(), "/db/expires");
    assert_eq!(pointers[1].1, ValueOf::ExpiresAt);
}

/// A target, the key its error names, and what the error says.
const MISTAKES: &[(&str, &str, &str)] = &[
    (
        r#"{ type = "ini", path = "/a", section = "p" }"#,
        "key",
        "needs `key`",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "to ken" }"#,
        "key",
        "printable ASCII",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "a=b" }"#,
        "key",
        "must not hold `=`",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "t", section = "" }"#,
        "section",
        "must not be empty",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "t", section = "a]b" }"#,
        "section",
        "`[` or `]`",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "t", section = " a" }"#,
        "section",
        "blank",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "token", expires_at_key = "TOKEN" }"#,
        "expires_at_key",
        "must differ",
    ),
    (
        r#"{ type = "ini", path = "/a", key = "t", pointer = "/a" }"#,
        "pointer",
        "`pointer` is not a field of an ini target",
    ),
    (r#"{ type = "toml", path = "/a" }"#, "key", "needs `key`"),
    (
        r#"{ type = "toml", path = "/a", key = "a..b" }"#,
        "key",
        "not a TOML key path",
    ),
    (
        r#"{ type = "toml", path = "/a", key = "a.b", expires_at_key = "a" }"#,
        "expires_at_key",
        "inside, or around",
    ),
    (
        r#"{ type = "toml", path = "/a", key = "a.b", expires_at_key = "a.b.c" }"#,
        "expires_at_key",
        "inside, or around",
    ),
    (
        r#"{ type = "toml", path = "/a", key = "a", section = "s" }"#,
        "section",
        "not a field of a toml target",
    ),
    (
        r#"{ type = "json", path = "/a" }"#,
        "pointer",
        "needs `pointer`",
    ),
    (
        r#"{ type = "json", path = "/a", pointer = "db/password" }"#,
        "pointer",
        "must start with `/`",
    ),
    (
        r#"{ type = "json", path = "/a", pointer = "" }"#,
        "pointer",
        "not the whole document",
    ),
    (
        r#"{ type = "json", path = "/a", pointer = "/a~2" }"#,
        "pointer",
        "RFC 6901",
    ),
    (
        r#"{ type = "json", path = "/a", pointer = "/a", expires_at_pointer = "/a" }"#,
        "expires_at_pointer",
        "inside, or around",
    ),
    (
        r#"{ type = "json", path = "/a", pointer = "/a", key = "k" }"#,
        "key",
        "not a field of a json target",
    ),
    (
        r#"{ type = "dotenv", path = "/a", key = "K", section = "s" }"#,
        "section",
        "not a field of a dotenv target",
    ),
    (
        r#"{ type = "file", path = "/a", pointer = "/a" }"#,
        "pointer",
        "not a field of a file target",
    ),
    (
        r#"{ type = "yaml", path = "/a" }"#,
        "type",
        "\"ini\", \"toml\", \"json\"",
    ),
];

#[test]
fn mistakes_name_the_line_and_key() {
    for (target, key, says) in MISTAKES {
        let err = error(target);
        assert!(
            err.starts_with("/etc/refreshd/config.toml:7: ")
                && err.contains(&format!("credentials.db.targets[0].{key}:"))
                && err.contains(says),
            "{target}: {err}"
        );
    }
}
