//! The state directory's locks: one daemon per directory, one rotation per credential, and
//! the removal of the temp files a crash left, only under the credential's lock.
//!
//! Every lock file is opened through [`durable::open_lock_file`]: never through a symlink.
//! It never waits for the daemon lock, and removes nothing but refreshd's own temp files.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};

use super::{StateDir, StateError};
use crate::durable;

/// Held for the life of a daemon; released on drop (or by the kernel when it dies).
pub struct DaemonLock {
    _lock: Flock<File>,
}

/// Held while a credential is being refreshed; released on drop.
pub struct CredentialLock {
    _lock: Flock<File>,
}

impl StateDir {
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
}
