//! What a reload of the configuration changes: which credentials start, stop or restart,
//! and which settings only a restart applies. Pure: the supervisor acts on the answer.

use crate::config::Config;

/// The difference between the running configuration and a new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Keys that changed but take effect only when refreshd restarts.
    pub restart_needed: Vec<&'static str>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Credentials that would behave differently (moving one in the file is no change).
    pub changed: Vec<String>,
}

impl ConfigChanges {
    pub fn between(old: &Config, new: &Config) -> ConfigChanges {
        let mut changes = ConfigChanges::default();
        let daemon = [
            (
                "daemon.state_dir",
                old.daemon.state_dir != new.daemon.state_dir,
            ),
            (
                "daemon.control_socket",
                old.daemon.control_socket != new.daemon.control_socket,
            ),
            (
                "daemon.metrics_listen",
                old.daemon.metrics_listen != new.daemon.metrics_listen,
            ),
            (
                "daemon.max_concurrent_refreshes",
                old.daemon.max_concurrent_refreshes != new.daemon.max_concurrent_refreshes,
            ),
            ("daemon.store", old.daemon.store != new.daemon.store),
            (
                "daemon.state_key",
                old.daemon.state_key != new.daemon.state_key,
            ),
            ("log", old.log != new.log),
        ];
        changes.restart_needed = daemon
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(key, _)| key)
            .collect();
        for credential in &old.credentials {
            match new.credential(&credential.name) {
                None => changes.removed.push(credential.name.clone()),
                Some(updated) if **updated != **credential => {
                    changes.changed.push(credential.name.clone())
                }
                Some(_) => {}
            }
        }
        for credential in &new.credentials {
            if old.credential(&credential.name).is_none() {
                changes.added.push(credential.name.clone());
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/refreshd/config.toml"), text).unwrap()
    }

    #[test]
    fn credentials_start_stop_restart_and_moves_are_no_change() {
        let a = "[credentials.a]\nsource = { type = \"command\", argv = [\"a\"] }\n";
        let b = "[credentials.b]\nsource = { type = \"command\", argv = [\"b\"] }\n";
        let b2 = "[credentials.b]\nsource = { type = \"command\", argv = [\"b2\"] }\n";
        let c = "[credentials.c]\nsource = { type = \"command\", argv = [\"c\"] }\n";
        let old = config(&format!("[daemon]\nstate_dir = \"/s\"\n{a}{b}"));
        let new = config(&format!("[daemon]\nstate_dir = \"/t\"\n\n\n{b2}{c}"));
        let changes = ConfigChanges::between(&old, &new);
        assert_eq!(
            changes,
            ConfigChanges {
                restart_needed: vec!["daemon.state_dir"],
                added: vec!["c".into()],
                removed: vec!["a".into()],
                changed: vec!["b".into()],
            }
        );
        let moved = config(&format!("[daemon]\nstate_dir = \"/s\"\n\n{b}\n{a}"));
        assert_eq!(
            ConfigChanges::between(&old, &moved),
            ConfigChanges::default()
        );
    }

    #[test]
    fn a_new_state_key_takes_a_restart_and_a_moved_one_does_not() {
        let plain = config("[daemon]\nstate_dir = \"/s\"\n");
        let key = "state_key = { file = \"/etc/refreshd/state.key\" }";
        let sealed = config(&format!("[daemon]\nstate_dir = \"/s\"\n{key}\n"));
        let moved = config(&format!("[daemon]\n\n{key}\nstate_dir = \"/s\"\n"));
        assert_eq!(
            ConfigChanges::between(&plain, &sealed).restart_needed,
            ["daemon.state_key"]
        );
        assert_eq!(
            ConfigChanges::between(&sealed, &moved),
            ConfigChanges::default()
        );
    }
}
