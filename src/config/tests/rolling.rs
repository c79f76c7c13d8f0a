//! `reload_order`, `reload_timeout` and `health_check`: defaults, and each refusal naming
//! the file, line and key.

use super::*;

const STORE: &str = r#"store = { type = "postgres", url = { env = "U" }, key = { file = "/k" }, lease = "20s" }
node = "web-1"
"#;

/// MINIMAL with a store, and `keys` added to `[credentials.db]`.
fn shared(keys: &str) -> Result<Config, ConfigError> {
    let text = MINIMAL
        .replacen(
            "\n[credentials.db]",
            &format!("{STORE}\n[credentials.db]"),
            1,
        )
        .replacen("reload = [", &format!("{keys}\nreload = ["), 1);
    parse(&text)
}

#[test]
fn together_is_the_default_and_rolling_takes_its_keys() {
    let config = shared("").unwrap();
    assert_eq!(config.credential("db").unwrap().rolling, None);
    let config = shared(
        "reload_order = \"rolling\"\nreload_timeout = \"45s\"\nhealth_check = [\"/usr/bin/check\", \"db\"]",
    )
    .unwrap();
    let rolling = config.credential("db").unwrap().rolling.clone().unwrap();
    assert_eq!(rolling.timeout, Duration::from_secs(45));
    assert_eq!(
        rolling.health_check,
        Some(vec!["/usr/bin/check".to_owned(), "db".to_owned()])
    );
    let config = shared("reload_order = \"rolling\"").unwrap();
    let rolling = config.credential("db").unwrap().rolling.clone().unwrap();
    assert_eq!(rolling.timeout, Duration::from_secs(120));
    assert_eq!(rolling.health_check, None);
}

#[test]
fn rolling_refusals_name_file_line_and_key() {
    let refused = |text: &str| parse(text).unwrap_err().to_string();
    // Not shared: no store.
    let e = refused(&MINIMAL.replacen("reload = [", "reload_order = \"rolling\"\nreload = [", 1));
    assert!(
        e.starts_with("/etc/refreshd/config.toml:5:")
            && e.contains("credentials.db.reload_order")
            && e.contains("shared"),
        "{e}"
    );
    // No reload actions.
    let no_reload = MINIMAL
        .replacen(
            "\n[credentials.db]",
            &format!("{STORE}\n[credentials.db]"),
            1,
        )
        .replace(
            "reload = [ { signal = \"HUP\", pid_file = \"/run/app.pid\" } ]",
            "reload_order = \"rolling\"",
        );
    let e = refused(&no_reload);
    assert!(
        e.contains("credentials.db.reload_order") && e.contains("reload actions"),
        "{e}"
    );
    let e = shared("reload_order = \"staggered\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("credentials.db.reload_order") && e.contains("staggered"),
        "{e}"
    );
    let e = shared("health_check = [\"/bin/true\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("credentials.db.health_check") && e.contains("rolling"),
        "{e}"
    );
    let e = shared("reload_order = \"rolling\"\nhealth_check = []")
        .unwrap_err()
        .to_string();
    assert!(e.contains("credentials.db.health_check"), "{e}");
    let e = shared("reload_order = \"rolling\"\nreload_timeout = \"0s\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("credentials.db.reload_timeout"), "{e}");
}
