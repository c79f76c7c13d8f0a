//! Target locks: one file per target in refreshd's own lock directory (`STATE_DIR/locks/`),
//! named after the target's path, so two refreshd processes never write one target at
//! once and no app can hold the lock. Every lock file is opened through
//! [`durable::open_lock_file`], never through a symlink; it never touches the target but
//! to remove refreshd's own temp files under the lock.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::fcntl::Flock;

use super::{LOCK_WAIT, TargetError, io_failed};
use crate::config::TargetConfig;
use crate::durable;

/// The lock for one target: a file in refreshd's lock directory named after the target's
/// path, so no app can hold it (an app that `flock`s its own file blocks nothing).
pub(super) fn lock(locks: &Path, target: &Path) -> Result<Flock<File>, TargetError> {
    lock_within(locks, target, LOCK_WAIT)
}

fn lock_within(
    locks: &Path,
    target: &Path,
    wait: std::time::Duration,
) -> Result<Flock<File>, TargetError> {
    use sha2::Digest as _;
    let key: String = sha2::Sha256::digest(target.as_os_str().as_encoded_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let err = |what: &str, e: io::Error| io_failed(target, what, e);
    let name = format!("target-{key}.lock");
    // The directory exists after the first write: make it only when it is missing.
    let dir = match durable::chase::Dir::open(locks) {
        Err(e) if e.is_not_found() => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(locks)
                .map_err(|e| err("create the lock directory", e))?;
            durable::chase::Dir::open(locks)
        }
        opened => opened,
    }
    .map_err(|e| err("open the lock directory", e.into()))?;
    let file =
        durable::open_lock_file(dir.fd(), name.as_ref()).map_err(|e| err("open its lock", e))?;
    durable::lock_exclusive(file, wait).map_err(|e| err("lock", e))
}

/// Removes refreshd's temp files left beside `target` by a crash; how many. Only under the
/// target's lock, taken without waiting: whoever holds it may have a temp file in flight.
pub fn remove_litter(target: &TargetConfig, locks: &Path) -> usize {
    let Ok(_lock) = lock_within(locks, &target.path, std::time::Duration::ZERO) else {
        return 0;
    };
    durable::chase(&target.path)
        .map(|place| durable::remove_litter(&place))
        .unwrap_or(0)
}
