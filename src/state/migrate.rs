//! `refreshd state seal|unseal`: a state directory's files sealed with the state key, or
//! opened back into plain ones, byte for byte, offline: refused while a daemon holds the
//! directory, and done under every credential's lock.
//!
//! Everything is read and checked before anything is written: a file the key does not open,
//! or that is not a state file, stops the migration with nothing changed. It never logs or
//! prints what a file holds, and never touches a file that is not `NAME.json`.

use std::path::Path;

use secrecy::ExposeSecret;

use super::sealed;
use super::{CredentialLock, StateDir, StateError, format};

/// Which way a migration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Plain files sealed with the state key.
    Seal,
    /// Sealed files opened back into plain ones (what they were before sealing).
    Unseal,
}

/// What a migration did: the credentials whose files it rewrote, and those already so.
#[derive(Debug, Default)]
pub struct Migrated {
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl StateDir {
    /// Seals or unseals every state file in the directory (see the module's doc). A missing
    /// directory has nothing to migrate (and is not made).
    pub fn migrate(&self, direction: Direction) -> Result<Migrated, StateError> {
        let key = self.key()?.ok_or(StateError::NoKey)?;
        if self.dir(false)?.is_none() {
            return Ok(Migrated::default());
        }
        let _daemon = self.lock_daemon()?;
        let mut locks: Vec<CredentialLock> = Vec::new();
        let mut rewrites: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for credential in self.credentials()? {
            locks.push(self.lock(&credential)?);
            let path = self.file(&credential);
            let Some(bytes) = self.read(&credential)? else {
                continue;
            };
            let rewrite = match (direction, sealed::is_sealed(&bytes)) {
                (Direction::Seal, false) => {
                    is_state(&credential, &path, &bytes)?;
                    Some(sealed::seal(&key, &credential, &bytes))
                }
                (Direction::Unseal, true) => {
                    let plain = sealed::open(&key, &credential, &path, &bytes)?;
                    Some(plain.expose_secret().clone())
                }
                // Already so: opened all the same, so that a file of another key is found now.
                (Direction::Seal, true) => {
                    sealed::open(&key, &credential, &path, &bytes)?;
                    None
                }
                (Direction::Unseal, false) => None,
            };
            rewrites.push((credential, rewrite));
        }
        let mut migrated = Migrated::default();
        for (credential, rewrite) in rewrites {
            match rewrite {
                Some(bytes) => {
                    self.write(&credential, &bytes)?;
                    migrated.changed.push(credential);
                }
                None => migrated.unchanged.push(credential),
            }
        }
        Ok(migrated)
    }

    /// The credentials that have a state file: every `NAME.json` but hidden files (temp
    /// files and locks), in name order.
    fn credentials(&self) -> Result<Vec<String>, StateError> {
        let entries = std::fs::read_dir(&self.path).map_err(|source| StateError::Dir {
            path: self.path.clone(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Dir {
                path: self.path.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(credential) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !credential.is_empty() && !credential.starts_with('.') {
                names.push(credential.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Refuses to seal what is not a state file of `credential` (one newer than this build is
/// sealed all the same: it is sealed byte for byte, never read).
fn is_state(credential: &str, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    match format::decode(credential, bytes) {
        Ok(_) | Err(format::Decode::Newer(_)) => Ok(()),
        Err(format::Decode::Invalid(reason)) => Err(StateError::Invalid {
            path: path.to_owned(),
            reason,
        }),
    }
}
