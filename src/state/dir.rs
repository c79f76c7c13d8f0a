//! The state directory: made 0700 and kept so, resolved once and held open, never written
//! by root when another user owns it; one credential's state loaded and saved durably,
//! sealed when the config has a `state_key` (see [`super::sealed`]).
//!
//! It never follows a symlink to a state file it writes, never logs a state's content, and
//! never writes a state unsealed when it has a key.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use secrecy::{ExposeSecret, SecretBox};

use super::sealed::{self, StateKey};
use super::{CredentialState, NoToken, StateError, format};
use crate::config::DaemonConfig;
use crate::durable::chase::Dir;
use crate::durable::{self, Attributes};
use crate::token::Token;

/// A state file is well under a KiB; anything near this is not one.
const MAX_STATE: u64 = 1 << 20;

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

/// The state directory of one configuration.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub(super) path: PathBuf,
    /// Resolved once and held open (shared by clones): a rotation then finds its state file,
    /// lock and temp file with one look each rather than a walk from `/` per step.
    resolved: Arc<Mutex<Option<Arc<Dir>>>>,
    /// `[daemon] state_key`: seals every state file written; `None`: plain files.
    key: Option<Arc<StateKey>>,
}

impl StateDir {
    /// The config's state directory, with its `state_key`: the one way the program gets
    /// one, so every reader and writer of state seals and unseals alike.
    pub fn of(daemon: &DaemonConfig) -> StateDir {
        StateDir {
            path: daemon.state_dir.clone(),
            resolved: Arc::default(),
            key: daemon
                .state_key
                .as_ref()
                .map(|state_key| Arc::new(StateKey::new(state_key.key.clone()))),
        }
    }

    /// A state directory of plain files (tests).
    #[cfg(test)]
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir {
            path: path.into(),
            resolved: Arc::default(),
            key: None,
        }
    }

    /// A state directory sealed with `key` (tests).
    #[cfg(test)]
    pub fn sealed(path: impl Into<PathBuf>, key: crate::secret::SecretRef) -> StateDir {
        StateDir {
            key: Some(Arc::new(StateKey::new(key))),
            ..StateDir::new(path)
        }
    }

    /// The state key, read (once) if there is one: `Err` when it cannot be read or is no key.
    pub fn key(&self) -> Result<Option<Arc<crate::seal::Key>>, StateError> {
        self.key.as_ref().map(|key| key.resolve()).transpose()
    }

    /// What a state directory without a running daemon must check before anything is
    /// refreshed: the key can be read, and opens the state file of every one of `credentials`
    /// (a sealed file without a key, or with another key, is refused, naming the file, with
    /// nothing changed). Other faults of a file are its credential's own, reported when it
    /// rotates.
    pub fn check_key<'a>(
        &self,
        credentials: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StateError> {
        self.key()?;
        for credential in credentials {
            match self.load(credential) {
                Err(e) if e.is_key() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The directory, resolved and held open; made (0700) when missing if `create`, else
    /// `None` when missing. Resolved again if it was removed since.
    pub(super) fn dir(&self, create: bool) -> Result<Option<Arc<Dir>>, StateError> {
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
    pub(super) fn dir_to_write(&self) -> Result<Arc<Dir>, StateError> {
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

    /// For a command about to refresh and write state for `credentials`: `Err` when root
    /// would be writing into another user's directory, or the state key is missing,
    /// unreadable or wrong (see [`StateDir::check_key`]), before anything is done.
    pub fn ready_to_write<'a>(
        &self,
        credentials: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StateError> {
        self.refuse_if_foreign()?;
        self.check_key(credentials)
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

    /// Where refreshd's own locks on targets live: no app user can hold one.
    pub fn locks(&self) -> PathBuf {
        self.path.join("locks")
    }

    /// The credential's token, if it holds one valid at `now`: what `refreshd token`
    /// prints when no daemon answers.
    pub fn current(&self, credential: &str, now: OffsetDateTime) -> Result<Token, NoToken> {
        match self.load(credential)?.token {
            Some(token) if token.is_valid_at(now) => Ok(token),
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
        let Some(bytes) = self.read(credential)? else {
            return Ok(CredentialState::default());
        };
        let plain = self.plain(credential, &path, bytes)?;
        format::decode(credential, plain.expose_secret()).map_err(|e| match e {
            format::Decode::Newer(found) => StateError::Newer { path, found },
            format::Decode::Invalid(reason) => StateError::Invalid { path, reason },
        })
    }

    /// The bytes of `credential`'s state file as they are on disk; `None` when it has none.
    pub(super) fn read(&self, credential: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file(credential);
        let Some(dir) = self.dir(false)? else {
            return Ok(None);
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
        read.map_err(|source| StateError::Io { path, source })
    }

    /// The plain bytes of a state file read from `path`: opened with the key when sealed.
    fn plain(
        &self,
        credential: &str,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<SecretBox<Vec<u8>>, StateError> {
        if !sealed::is_sealed(&bytes) {
            return Ok(SecretBox::new(Box::new(bytes)));
        }
        let Some(key) = self.key()? else {
            return Err(StateError::Sealed {
                path: path.to_owned(),
            });
        };
        sealed::open(&key, credential, path, &bytes)
    }

    /// Writes the credential's state durably (fsynced file and directory) before returning.
    pub fn save(&self, credential: &str, state: &CredentialState) -> Result<(), StateError> {
        let plain = format::encode(credential, state);
        match self.key()? {
            Some(key) => {
                let plain = SecretBox::new(Box::new(plain));
                self.write(
                    credential,
                    &sealed::seal(&key, credential, plain.expose_secret()),
                )
            }
            None => self.write(credential, &plain),
        }
    }

    /// Replaces `credential`'s state file with `bytes`, durably (0600).
    pub(super) fn write(&self, credential: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.file(credential);
        let place = self.place(&format!("{credential}.json"))?;
        durable::replace_at(
            &place,
            bytes,
            Attributes {
                mode: 0o600,
                owner: None,
            },
        )
        .map_err(|source| StateError::Io { path, source })
    }
}
