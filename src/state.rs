//! State: the only writer of the state directory. One versioned JSON file per credential
//! (`NAME.json`, 0600, in a 0700 directory) holding the current access token, its expiry,
//! the rotated refresh token and what status needs; written durably before any target.
//! Per-credential lock files make sure two processes never refresh one credential at once.
//!
//! State files hold secrets: nothing here logs their contents, and `Debug` shows none.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::durable::chase::Dir;
use crate::durable::{self, Attributes};
use crate::token::{ExpirySource, Served, Token};

/// The state file format this build writes. Older versions are migrated on read; newer
/// ones are refused.
pub const VERSION: u32 = 1;

/// A state file is well under a KiB; anything near this is not one.
const MAX_STATE: u64 = 1 << 20;

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
        "state file {path} has version {found}, newer than this refreshd understands ({VERSION}): upgrade refreshd, or move the file away to start over (its refresh token would be lost)"
    )]
    Newer { path: PathBuf, found: u64 },
}

/// Root never writes into a state directory another user owns (the packaged service's, say):
/// what it made there, 0600 root, that user's daemon could neither read nor replace.
fn refuse_foreign(path: &Path, owner: u32) -> Result<(), StateError> {
    if !nix::unistd::geteuid().is_root() || owner == 0 {
        return Ok(());
    }
    let owner = nix::unistd::User::from_uid(owner.into())
        .ok()
        .flatten()
        .map(|user| user.name)
        .unwrap_or_else(|| format!("uid {owner}"));
    Err(StateError::ForeignOwner {
        path: path.to_owned(),
        owner,
    })
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network trouble, timeouts, 5xx, 429, `temporarily_unavailable`: back off and retry.
    Transient,
    /// The provider refused the grant or the client (`invalid_grant`, `invalid_client`, …),
    /// or the configuration is wrong: a person has to act (`needs-login`).
    Permanent,
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

/// The last failure of a credential, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: FailureKind,
    pub message: String,
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
            .finish()
    }
}

// The on-disk form. Secrets are plain strings only here, between `load` and `save`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<TokenV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bootstrap_fingerprint: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    last_rotation: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<LastError>,
    #[serde(default)]
    needs_login: bool,
    #[serde(default)]
    consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_generation: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenV1 {
    access_token: String,
    fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    expiry_source: ExpirySource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
}

/// The state directory of one configuration.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    /// Resolved once and held open (shared by clones): a rotation then finds its state file,
    /// lock and temp file with one look each rather than a walk from `/` per step.
    resolved: Arc<Mutex<Option<Arc<Dir>>>>,
}

/// Held for the life of a daemon; released on drop (or by the kernel when it dies).
pub struct DaemonLock {
    _lock: Flock<File>,
}

/// Held while a credential is being refreshed; released on drop.
pub struct CredentialLock {
    _lock: Flock<File>,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir {
            path: path.into(),
            resolved: Arc::default(),
        }
    }

    /// The directory, resolved and held open; made (0700) when missing if `create`, else
    /// `None` when missing. Resolved again if it was removed since.
    fn dir(&self, create: bool) -> Result<Option<Arc<Dir>>, StateError> {
        let mut held = crate::sync::lock(&self.resolved);
        if let Some(dir) = held.as_ref()
            && !dir.is_removed()
        {
            return Ok(Some(dir.clone()));
        }
        if create {
            self.ensure()?;
        }
        let dir = match Dir::open(&self.path) {
            Ok(dir) => Arc::new(dir),
            Err(e) if !create && e.is_not_found() => return Ok(None),
            Err(e) => {
                return Err(StateError::Dir {
                    path: self.path.clone(),
                    source: e.into(),
                });
            }
        };
        *held = Some(dir.clone());
        Ok(Some(dir))
    }

    /// The directory, made if missing, to write into: refused to root when another user owns
    /// it (checked on the held descriptor, so a directory resolved by a read counts too).
    fn dir_to_write(&self) -> Result<Arc<Dir>, StateError> {
        let dir = self.dir(true)?.expect("made when missing");
        let stat = nix::sys::stat::fstat(dir.fd()).map_err(|e| StateError::Dir {
            path: self.path.clone(),
            source: e.into(),
        })?;
        refuse_foreign(&self.path, stat.st_uid)?;
        Ok(dir)
    }

    /// For a command about to write state: `Err` when root would be writing into another
    /// user's existing directory (see [`refuse_foreign`]). Checked up front, so that nothing,
    /// not even a lock, is made there and no login is thrown away at the end.
    pub fn refuse_if_foreign(&self) -> Result<(), StateError> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => refuse_foreign(&self.path, meta.uid()),
            Err(_) => Ok(()),
        }
    }

    /// Where `name` sits in the directory (made if missing).
    fn place(&self, name: &str) -> Result<durable::Place, StateError> {
        let dir = self.dir_to_write()?;
        dir.place(name.as_ref()).map_err(|e| StateError::Io {
            path: self.path.join(name),
            source: e.into(),
        })
    }

    /// Where `credential`'s state is stored.
    pub fn file(&self, credential: &str) -> PathBuf {
        self.path.join(format!("{credential}.json"))
    }

    /// Creates the directory 0700 if needed; tightens one that others could read.
    pub fn ensure(&self) -> Result<(), StateError> {
        let err = |source| StateError::Dir {
            path: self.path.clone(),
            source,
        };
        match std::fs::metadata(&self.path) {
            Ok(meta) if !meta.is_dir() => {
                return Err(err(io::Error::other("exists and is not a directory")));
            }
            Ok(meta) => {
                if meta.mode() & 0o077 != 0 && meta.uid() == nix::unistd::geteuid().as_raw() {
                    tracing::warn!(state_dir = %self.path.display(), "state directory was mode {:04o}; tightening to 0700 (it holds tokens)", meta.mode() & 0o7777);
                    std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                        .map_err(err)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.path)
                    .map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
        Ok(())
    }

    /// Opens the lock file `name` in the directory, made if missing (see
    /// [`durable::open_lock_file`]).
    fn open_lock(&self, name: &str) -> Result<File, StateError> {
        let dir = self.dir_to_write()?;
        durable::open_lock_file(dir.fd(), name.as_ref()).map_err(|source| StateError::Io {
            path: self.path.join(name),
            source,
        })
    }

    /// Waits for and takes the credential's refresh lock.
    pub fn lock(&self, credential: &str) -> Result<CredentialLock, StateError> {
        let name = format!("{credential}.lock");
        let file = self.open_lock(&name)?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StateError::Io {
                path: self.path.join(&name),
                source: errno.into(),
            })?;
        Ok(CredentialLock { _lock: lock })
    }

    /// Takes the one-daemon-per-state-directory lock without waiting; the lock file holds
    /// the owner's pid so the refusal can name it.
    pub fn lock_daemon(&self) -> Result<DaemonLock, StateError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let path = self.path.join(".daemon.lock");
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let file = self.open_lock(".daemon.lock")?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(StateError::DaemonRunning {
                    path: self.path.clone(),
                    pid: pid.trim().to_owned(),
                });
            }
            Err((_, errno)) => return Err(io_err(errno.into())),
        };
        lock.set_len(0).map_err(io_err)?;
        lock.rewind().map_err(io_err)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_err)?;
        Ok(DaemonLock { _lock: lock })
    }

    /// Removes the temp files a crash left beside the credential's state file; how many.
    /// Only under the credential's lock, taken without waiting: every writer of the state
    /// file holds it, so whoever holds it now may have a temp file in flight. A missing
    /// directory has none (and is not made).
    pub fn remove_litter(&self, credential: &str) -> usize {
        let Ok(Some(dir)) = self.dir(false) else {
            return 0;
        };
        let name = format!("{credential}.lock");
        let Ok(file) = durable::open_lock_file(dir.fd(), name.as_ref()) else {
            return 0;
        };
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            return 0;
        };
        durable::chase(&self.file(credential))
            .map(|place| durable::remove_litter(&place))
            .unwrap_or(0)
    }

    /// Where refreshd's own locks on targets live: no app user can hold one.
    pub fn locks(&self) -> PathBuf {
        self.path.join("locks")
    }

    /// The credential's access token, if it holds one valid at `now`: what `refreshd token`
    /// prints, whether the daemon or the CLI answers.
    pub fn current_token(
        &self,
        credential: &str,
        now: OffsetDateTime,
    ) -> Result<SecretString, NoToken> {
        match self.load(credential)?.token {
            Some(token) if token.is_valid_at(now) => Ok(token.access_token),
            Some(token) => Err(NoToken::Expired {
                credential: credential.to_owned(),
                at: token.expires_at,
            }),
            None => Err(NoToken::None(credential.to_owned())),
        }
    }

    /// The credential's state; the default (empty) state when it has none yet.
    pub fn load(&self, credential: &str) -> Result<CredentialState, StateError> {
        let path = self.file(credential);
        let Some(dir) = self.dir(false)? else {
            return Ok(CredentialState::default());
        };
        let read = dir
            .place(format!("{credential}.json").as_ref())
            .map_err(io::Error::from)
            .and_then(|place| match place.existing {
                None => Ok(None),
                Some(_) => {
                    let (mut file, _) = durable::open_existing(&place, false)?;
                    durable::read_bounded(&mut file, MAX_STATE).map(Some)
                }
            });
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(CredentialState::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        decode(credential, &bytes).map_err(|e| match e {
            Decode::Newer(found) => StateError::Newer { path, found },
            Decode::Invalid(reason) => StateError::Invalid { path, reason },
        })
    }

    /// Writes the credential's state durably (fsynced file and directory) before returning.
    pub fn save(&self, credential: &str, state: &CredentialState) -> Result<(), StateError> {
        let path = self.file(credential);
        let bytes = encode(credential, state);
        let place = self.place(&format!("{credential}.json"))?;
        durable::replace_at(
            &place,
            &bytes,
            Attributes {
                mode: 0o600,
                owner: None,
            },
        )
        .map_err(|source| StateError::Io { path, source })
    }
}

/// Why bytes are not a state this build can use.
#[derive(Debug)]
pub enum Decode {
    /// Says where, never what: the text holds tokens.
    Invalid(String),
    Newer(u64),
}

/// `state` as its file holds it: also what the fleet store seals, so one format is read
/// and migrated in one place.
pub fn encode(credential: &str, state: &CredentialState) -> Vec<u8> {
    let file = FileV1 {
        version: VERSION,
        credential: credential.to_owned(),
        token: state.token.as_ref().map(|t| TokenV1 {
            access_token: t.access_token.expose_secret().to_owned(),
            fingerprint: t.fingerprint(),
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            expiry_source: t.expiry_source,
            subject: t.subject.clone(),
            issuer: t.issuer.clone(),
            client_id: t.client_id.clone(),
            scopes: t.scopes.clone(),
            served: t.served.clone(),
        }),
        refresh_token: state
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        bootstrap_fingerprint: state.bootstrap_fingerprint.clone(),
        last_rotation: state.last_rotation,
        last_error: state.last_error.clone(),
        needs_login: state.needs_login,
        consecutive_failures: state.consecutive_failures,
        store_generation: state.generation,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("state serializes");
    bytes.push(b'\n');
    bytes
}

/// The state `bytes` (in the file format) hold for `credential`.
pub fn decode(credential: &str, bytes: &[u8]) -> Result<CredentialState, Decode> {
    // A serde message can quote the text it choked on, and this text holds tokens:
    // say where, never what.
    let shape = |e: serde_json::Error| {
        format!(
            "{:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Decode::Invalid(format!("not JSON ({})", shape(e))))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(1) => {}
        Some(found) if found > u64::from(VERSION) => return Err(Decode::Newer(found)),
        Some(found) => return Err(Decode::Invalid(format!("unknown version {found}"))),
        None => return Err(Decode::Invalid("no `version` field".to_owned())),
    }
    let file: FileV1 = serde_json::from_value(value).map_err(|e| {
        Decode::Invalid(format!(
            "not a state file refreshd wrote ({:?} data in a field)",
            e.classify()
        ))
    })?;
    if file.credential != credential {
        return Err(Decode::Invalid(format!(
            "it belongs to credential {:?}",
            file.credential
        )));
    }
    Ok(CredentialState {
        token: file.token.map(|t| Token {
            access_token: SecretString::from(t.access_token),
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            expiry_source: t.expiry_source,
            subject: t.subject,
            issuer: t.issuer,
            client_id: t.client_id,
            scopes: t.scopes,
            served: t.served,
        }),
        refresh_token: file.refresh_token.map(SecretString::from),
        bootstrap_fingerprint: file.bootstrap_fingerprint,
        last_rotation: file.last_rotation,
        last_error: file.last_error,
        needs_login: file.needs_login,
        consecutive_failures: file.consecutive_failures,
        generation: file.store_generation,
    })
}

#[cfg(test)]
mod tests;
