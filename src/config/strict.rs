//! The config file's own safety, like sshd's `StrictModes`: running as root, refreshd runs
//! the config's commands and reloads as root, so it refuses a config that anyone but root
//! could have changed (the file, a directory on its path, or a symlink to it). Also reads
//! the file as [`crate::secure_read`] reads: never a FIFO or a device, never without limit.
//!
//! Must never: accept, as root, a config that another user could have written, or read
//! one through another user's symlink.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::durable::chase::trusted;
use crate::secure_read::{self, Resolved};

/// The largest config read: a fleet's ten thousand credentials take a few megabytes.
const CONFIG_LIMIT: u64 = 64 << 20;

/// The config file's text; refused, when running as root, unless only root could have
/// written it.
pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
    read_limited(path, CONFIG_LIMIT)
}

/// A file the config names whose text decides what refreshd writes as root (a template),
/// at most `limit` bytes, under the config's own rule.
pub(super) fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let root = nix::unistd::geteuid().is_root();
    secure_read::read_checked(
        path,
        limit,
        |resolved| {
            if root { strict(resolved) } else { Ok(()) }
        },
    )
}

fn refused(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refused: {why}; refreshd runs as root, and runs this file's commands as root"),
    )
}

/// The file is root's (or refreshd's user's), not writable by group or others, and so is
/// every directory above it, except that a sticky directory (`/tmp`) may be writable by
/// all: there no one can rename or remove what is not theirs, and what is below must
/// pass the same rule.
fn strict(resolved: Resolved<'_>) -> io::Result<()> {
    let path = &resolved.place.path;
    let (uid, mode) = (resolved.stat.st_uid, resolved.stat.st_mode);
    if !trusted(uid) {
        return Err(refused(format!(
            "{} is owned by uid {uid}, not root (run `chown root {}`)",
            path.display(),
            path.display()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(refused(format!(
            "{} can be written by its group or others (mode {:04o}; run `chmod go-w {}`)",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    for dir in path.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(refused(format!(
                "{} changed while it was read",
                dir.display()
            )));
        }
        if !trusted(meta.uid()) {
            return Err(refused(format!(
                "its directory {} is owned by uid {}, not root",
                dir.display(),
                meta.uid()
            )));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(refused(format!(
                "its directory {} can be written by its group or others (mode {:04o})",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}
