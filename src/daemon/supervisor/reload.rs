//! A reload: the config file is read again (on SIGHUP or an edit) and, if valid, applied:
//! credentials start, stop or restart, and the read model records how the load went. An
//! invalid file is logged and the running config kept; a rotation in progress is never
//! cancelled.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::super::reconfigure::ConfigChanges;
use super::super::systemd;
use super::{Daemon, followed};
use crate::config::Config;

impl Daemon {
    /// Whether the file differs from what was last loaded: saving an unchanged file, or a
    /// `touch`, is not worth a reload.
    pub(super) fn config_text_changed(&mut self) -> bool {
        let text = std::fs::read(&self.config.path).unwrap_or_default();
        let digest = digest(&text);
        let changed = digest != self.config_digest;
        self.config_digest = digest;
        changed
    }

    /// Re-reads the config; an invalid one is logged and the running one kept.
    pub(super) fn reload(&mut self, why: &str) {
        systemd::reloading();
        self.config_text_changed();
        match Config::load(&self.config.path) {
            Err(e) => {
                tracing::error!(
                    "{why}: the new configuration is invalid, keeping the running one: {e}"
                );
                crate::audit::record(&crate::audit::Event::ConfigReload {
                    ok: false,
                    detail: &e.to_string(),
                });
                self.config_loaded(false);
            }
            Ok(new) => {
                self.apply(new, why);
                self.config_loaded(true);
                // Removing the last credentials still waiting for a first attempt is ready.
                self.announce_ready();
            }
        }
        let summary = self.summary();
        if self.ready {
            systemd::ready(&summary);
        } else {
            systemd::status(&summary);
        }
    }

    /// Records the outcome of loading the config file for status and metrics.
    fn config_loaded(&self, ok: bool) {
        self.shared.model.config_loaded(ok, self.shared.clock.now());
    }

    fn apply(&mut self, new: Config, why: &str) {
        let ConfigChanges {
            restart_needed,
            added,
            removed,
            changed,
        } = ConfigChanges::between(&self.config, &new);
        if !restart_needed.is_empty() {
            tracing::warn!(
                "{} changed: takes effect when refreshd restarts",
                restart_needed.join(", ")
            );
        }
        // A running credential that another one now sends as a bearer restarts, so that it
        // publishes its token (only followed credentials do).
        let newly_followed: BTreeSet<String> = new
            .credentials
            .iter()
            .flat_map(|c| c.source.bearers().into_iter().chain(c.uses()))
            .filter(|bearer| {
                !self.tokens.contains_key(*bearer)
                    && self.workers.contains_key(*bearer)
                    && !changed.iter().chain(&removed).any(|name| name == bearer)
            })
            .map(str::to_owned)
            .collect();
        self.config = new;
        self.reads.update(&self.config);
        self.shared.notifier.update(&self.config);
        self.endpoints.update(&self.config);
        crate::control::server::permit(
            &self.config.daemon.control_socket,
            self.reads.any_readers(),
        );
        if let Some(fleet) = &self.shared.fleet {
            fleet.set_names(self.config.shared_names());
        }
        self.followed = followed(&self.config);
        for name in removed.iter().chain(&changed).chain(&newly_followed) {
            self.stop_worker(name);
        }
        self.shared.model.remove(&removed);
        for name in &removed {
            self.tokens.remove(name);
        }
        for name in added.iter().chain(&changed).chain(&newly_followed) {
            let credential = Arc::clone(self.config.credential(name).expect("listed from new"));
            self.start_worker(credential);
        }
        crate::audit::open(self.config.log.audit.as_deref());
        crate::audit::record(&crate::audit::Event::ConfigReload {
            ok: true,
            detail: &format!(
                "added={} removed={} changed={} ({why})",
                added.join(","),
                removed.join(","),
                changed.join(",")
            ),
        });
        tracing::info!(
            added = %added.join(","),
            removed = %removed.join(","),
            changed = %changed.join(","),
            "config reloaded ({why})"
        );
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
