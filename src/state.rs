//! State: the only writer of the state directory. One versioned JSON file per credential
//! (`NAME.json`, 0600, in a 0700 directory) holding the current access token, its expiry,
//! the rotated refresh token and what status needs; written durably before any target.
//! Per-credential lock files make sure two processes never refresh one credential at once.
//! With `[daemon] state_key`, every state file is sealed (see [`sealed`]); every reader of
//! state goes through [`StateDir::load`], so every reader unseals.
//!
//! State files hold secrets: nothing here logs their contents, and `Debug` shows none.
//! This file holds what a credential's state is; its parts each do one job:
//! `format` the bytes of a state file (versions, migration), `dir` the directory and its
//! files, `lock` the directory's locks and the litter a crash leaves, `last_error` what a
//! failure is recorded as, `identity` the secret an Azure managed-identity endpoint expects,
//! `sealed` the sealing of a file's bytes, `migrate` `refreshd state seal|unseal`.

mod dir;
mod format;
mod identity;
mod last_error;
mod lock;
mod migrate;
mod sealed;

use std::io;
use std::path::PathBuf;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::token::Token;

pub use dir::StateDir;
pub use format::{Decode, VERSION, decode, encode};
pub use last_error::{Cause, FailureKind, LastError};
pub use lock::{CredentialLock, DaemonLock};
pub use migrate::Direction;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "another refreshd (pid {pid}) is already running with state directory {path}; stop it first, or give this one its own state_dir"
    )]
    DaemonRunning { path: PathBuf, pid: String },
    #[error(
        "state directory {path} belongs to {owner}: run this as that user, with the same config (sudo -u {owner} refreshd … -c FILE), or give the directory to root if root is meant to run refreshd on it; as root it would leave state files {owner}'s daemon can neither read nor update, the newest refresh token among them"
    )]
    ForeignOwner { path: PathBuf, owner: String },
    #[error("state file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "state file {path} is sealed: set [daemon] state_key to the key it was sealed with (nothing was read or changed)"
    )]
    Sealed { path: PathBuf },
    #[error(
        "state file {path} does not open with [daemon] state_key: it was sealed with another key, or altered; set the key it was sealed with (nothing was read or changed)"
    )]
    Unopenable { path: PathBuf },
    #[error("[daemon] state_key: {0}")]
    KeySecret(crate::secret::SecretError),
    #[error("[daemon] state_key: {0}")]
    Key(#[from] crate::seal::KeyError),
    #[error("[daemon] state_key is not set: `refreshd state seal` and `unseal` need the key")]
    NoKey,
    #[error(
        "state file {path} has version {found}, newer than this refreshd understands ({VERSION}): upgrade refreshd, or move the file away to start over (its refresh token would be lost)"
    )]
    Newer { path: PathBuf, found: u64 },
}

/// Why the disk refused a state: what health `unsaved` says, and what an operator fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unsaved {
    /// The file system or the user's quota is full (`ENOSPC`, `EDQUOT`).
    NoSpace,
    /// refreshd may not write there (`EACCES`, `EPERM`, `EROFS`, a refused path, or a
    /// directory root must leave to its owner).
    Permission,
    /// Any other failure.
    Io,
}

impl std::fmt::Display for Unsaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsaved::NoSpace => "no space",
            Unsaved::Permission => "permission denied",
            Unsaved::Io => "I/O error",
        })
    }
}

impl Unsaved {
    /// The cause of an I/O failure: by its `errno`, else by its kind (a path
    /// [`durable::chase`](crate::durable::chase) refused is a permission one).
    pub fn of(error: &io::Error) -> Unsaved {
        use nix::libc;
        match error.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Unsaved::NoSpace,
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => Unsaved::Permission,
            Some(_) => Unsaved::Io,
            None => match error.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Unsaved::NoSpace,
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    Unsaved::Permission
                }
                _ => Unsaved::Io,
            },
        }
    }
}

impl StateError {
    /// Whether this is about the state key (missing, unreadable, or not the one a file was
    /// sealed with): then nothing may be refreshed until a person sets the right key.
    pub fn is_key(&self) -> bool {
        matches!(
            self,
            StateError::Sealed { .. }
                | StateError::Unopenable { .. }
                | StateError::KeySecret(_)
                | StateError::Key(_)
                | StateError::NoKey
        )
    }

    /// Why the disk refused a state that [`StateDir::save`] could not store.
    pub fn unsaved(&self) -> Unsaved {
        match self {
            StateError::Dir { source, .. } | StateError::Io { source, .. } => Unsaved::of(source),
            StateError::ForeignOwner { .. } => Unsaved::Permission,
            StateError::DaemonRunning { .. }
            | StateError::Invalid { .. }
            | StateError::Newer { .. }
            | StateError::Sealed { .. }
            | StateError::Unopenable { .. }
            | StateError::KeySecret(_)
            | StateError::Key(_)
            | StateError::NoKey => Unsaved::Io,
        }
    }
}

/// Why `refreshd token` has nothing to print.
#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    #[error("the token of {credential} expired at {}", crate::token::rfc3339(*at))]
    Expired {
        credential: String,
        at: OffsetDateTime,
    },
    #[error("no token stored for {0} yet: run `refreshd once {0}`")]
    None(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Everything refreshd keeps about one credential.
#[derive(Clone, Default)]
pub struct CredentialState {
    pub token: Option<Token>,
    /// The newest refresh token: the provider's rotation, or the bootstrap one.
    pub refresh_token: Option<SecretString>,
    /// Fingerprint of the configured bootstrap refresh token the stored one descends from,
    /// so a new bootstrap token (after a manual re-login) takes over from a dead one.
    pub bootstrap_fingerprint: Option<String>,
    pub last_rotation: Option<OffsetDateTime>,
    pub last_error: Option<LastError>,
    /// A permanent failure: a person must act (new refresh token, fixed client).
    pub needs_login: bool,
    pub consecutive_failures: u32,
    /// The fleet store's generation this state was taken from or committed as (shared
    /// credentials only): a node applies the store's state only when it is newer.
    pub generation: Option<u64>,
    /// The store generation whose fence this state's newest answer was fetched under, and
    /// that the store never got (the commit failed after the provider answered); `None` once
    /// committed. Fleet only: "ahead of the store" is decided by generations, not clocks.
    pub uncommitted: Option<u64>,
}

impl std::fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialState")
            .field("token", &self.token)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("last_rotation", &self.last_rotation)
            .field("last_error", &self.last_error)
            .field("needs_login", &self.needs_login)
            .field("generation", &self.generation)
            .field("uncommitted", &self.uncommitted)
            .finish()
    }
}

#[cfg(test)]
mod sealed_tests;
#[cfg(test)]
mod tests;
