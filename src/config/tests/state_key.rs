//! `[daemon] state_key`: every secret reference form, its line, an inline key only in a
//! private file, its variable kept from `exec`'s program (a change needs a restart: see
//! `daemon::reconfigure`).

use super::*;

fn with_key(line: &str) -> String {
    MINIMAL.replacen(
        "state_dir = \"/tmp/refreshd-state\"\n",
        &format!("state_dir = \"/tmp/refreshd-state\"\n{line}\n"),
        1,
    )
}

#[test]
fn a_state_key_is_any_secret_reference() {
    assert!(parse(MINIMAL).unwrap().daemon.state_key.is_none());
    let config = parse(&with_key("state_key = { systemd = \"state-key\" }")).unwrap();
    let state_key = config.daemon.state_key.unwrap();
    assert_eq!(
        state_key.key,
        crate::secret::SecretRef::Systemd("state-key".into())
    );
    assert_eq!(state_key.line, 4);
    let config = parse(&with_key("state_key = { env = \"STATE_KEY\" }")).unwrap();
    assert!(config.secret_variables().contains("STATE_KEY"));
    let err = parse(&with_key("state_key = { vault = \"x\" }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("daemon.state_key"), "{err}");
}

#[test]
fn an_inline_state_key_needs_a_private_config_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, with_key("state_key = \"a2V5LWlubGluZQ==\"")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(":4: daemon.state_key") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("a2V5"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).unwrap();
}
