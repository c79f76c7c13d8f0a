//! A look at the files a config names for secrets (`{ file = … }`, Google credentials
//! files) when it is loaded: one in `/proc` or `/sys`, or a FIFO, socket or device, is a
//! config error; one that others can read is a warning, once per file per process.
//!
//! Must never: open or read any of these files (only `lstat`, through
//! [`crate::durable::chase`]), or fail a config for what is only a warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{Config, ConfigError, SourceConfig, StateKeyConfig};
use crate::secret::SecretRef;

/// A secret file and where the config names it.
struct Named {
    path: PathBuf,
    key: String,
    line: usize,
}

/// Refuses a config naming a secret file refreshd would never read; warns about secret
/// files others can read.
pub(super) fn inspect(config: &Config) -> Result<(), ConfigError> {
    for named in named_files(config) {
        if let Some(why) = crate::secure_read::refusal(&named.path) {
            return Err(ConfigError::Invalid {
                path: config.path.clone(),
                line: named.line,
                key: named.key,
                message: format!("{why} (a secret is read only from a regular file)"),
            });
        }
        if let Some(why) = readable_by_others(&named.path) {
            warn_once(&named.path, &why);
        }
    }
    Ok(())
}

fn named_files(config: &Config) -> Vec<Named> {
    let mut out = Vec::new();
    if let Some(StateKeyConfig {
        key: SecretRef::File(path),
        line,
    }) = &config.daemon.state_key
    {
        out.push(Named {
            path: path.clone(),
            key: "daemon.state_key".to_owned(),
            line: *line,
        });
    }
    if let Some(store) = &config.daemon.store {
        for (key, secret) in [("url", &store.url), ("key", &store.key)] {
            if let SecretRef::File(path) = secret {
                out.push(Named {
                    path: path.clone(),
                    key: format!("daemon.store.{key}"),
                    line: store.line,
                });
            }
        }
    }
    for credential in &config.credentials {
        let key = |name: &str| format!("credentials.{}.source.{name}", credential.name);
        for (name, secret) in credential.source.secrets() {
            if let SecretRef::File(path) = secret {
                out.push(Named {
                    path: path.clone(),
                    key: key(name),
                    line: credential.line,
                });
            }
        }
        for (name, path) in google_files(&credential.source) {
            out.push(Named {
                path,
                key: key(name),
                line: credential.line,
            });
        }
    }
    out
}

/// The Google credentials files a source names itself (gcloud's default is left alone:
/// gcloud writes it 0600).
fn google_files(source: &SourceConfig) -> Vec<(&'static str, PathBuf)> {
    match source {
        SourceConfig::GoogleServiceAccount(s) => vec![("key_file", s.key_file.clone())],
        SourceConfig::GoogleAuthorizedUser(s) => {
            s.file.iter().map(|f| ("file", f.clone())).collect()
        }
        SourceConfig::Chain(chain) => chain.sources.iter().flat_map(google_files).collect(),
        _ => Vec::new(),
    }
}

/// Why others can read the file at `path`, if they can: others have read permission, or
/// its group does and that group is not refreshd's own (a service user's group, as
/// packaged, is how it is meant to be shared).
fn readable_by_others(path: &Path) -> Option<String> {
    let place = crate::durable::chase(&crate::secure_read::absolute(path).ok()?).ok()?;
    let stat = place.existing?;
    let mode = stat.st_mode & 0o7777;
    let group = stat.st_gid != nix::unistd::getegid().as_raw();
    if mode & 0o004 != 0 || (group && mode & 0o040 != 0) {
        Some(format!(
            "secret file {} can be read by {} (mode {mode:04o}): run `chmod 600 {}`",
            path.display(),
            if mode & 0o004 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ))
    } else {
        None
    }
}

/// Says `why` once per file for the life of the process (a reload does not repeat it).
fn warn_once(path: &Path, why: &str) {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let warned = WARNED.get_or_init(Default::default);
    let first = warned
        .lock()
        .map(|mut set| set.insert(path.to_owned()))
        .unwrap_or(true);
    if !first {
        return;
    }
    // Before the log is set up (a config is loaded first) it waits for the log.
    crate::warnings::warn(why.to_owned());
}
