//! Default locations (design §2): root gets the system paths, anyone else the XDG ones,
//! and a systemd unit's `StateDirectory=`/`RuntimeDirectory=` win over both.
//!
//! Reads the environment only; never creates a directory.

use std::path::{Path, PathBuf};

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home().join(fallback),
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
}

/// `/etc/refreshd/config.toml` for root, else `$XDG_CONFIG_HOME/refreshd/config.toml`.
pub fn default_config_path() -> PathBuf {
    if running_as_root() {
        PathBuf::from("/etc/refreshd/config.toml")
    } else {
        xdg_dir("XDG_CONFIG_HOME", ".config").join("refreshd/config.toml")
    }
}

/// The first directory systemd made for the unit (`StateDirectory=` → `$STATE_DIRECTORY`),
/// so a service running as its own unprivileged user needs no paths in its config.
fn systemd_dir(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var)?;
    let first = std::env::split_paths(&value).next()?;
    first.is_absolute().then_some(first)
}

pub(super) fn default_state_dir() -> PathBuf {
    if let Some(dir) = systemd_dir("STATE_DIRECTORY") {
        return dir;
    }
    if running_as_root() {
        PathBuf::from("/var/lib/refreshd")
    } else {
        xdg_dir("XDG_STATE_HOME", ".local/state").join("refreshd")
    }
}

/// `$RUNTIME_DIRECTORY/control.sock` under systemd, `/run/refreshd/control.sock` for root,
/// else `$XDG_RUNTIME_DIR/refreshd/control.sock` (or the state directory's).
pub fn default_control_socket() -> PathBuf {
    if let Some(dir) = systemd_dir("RUNTIME_DIRECTORY") {
        return dir.join("control.sock");
    }
    if running_as_root() {
        PathBuf::from("/run/refreshd/control.sock")
    } else {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("refreshd/control.sock"),
            _ => default_state_dir().join("control.sock"),
        }
    }
}

/// gcloud's application-default credentials: `$CLOUDSDK_CONFIG/…`, else
/// `~/.config/gcloud/…` (gcloud does not follow `XDG_CONFIG_HOME`).
pub(super) fn default_adc_file() -> PathBuf {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(&home()).join(".config/gcloud"),
    };
    dir.join("application_default_credentials.json")
}
