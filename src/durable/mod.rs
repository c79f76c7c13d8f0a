//! Durable, safe file work: paths resolved without following anyone else's symlinks
//! ([`chase`]), files opened without blocking and refused unless regular, reads bounded,
//! and replacement that a reader or a crash sees whole or not at all (temp file in the same
//! directory, mode and owner set on the descriptor before the data lands, fsync, rename,
//! fsync the directory), and lock files opened one way ([`open_lock_file`]). Everything
//! after resolution happens on directory descriptors.
//!
//! Used by `state`, `target` and `reload`; it knows nothing of tokens and never logs a
//! file's contents. A temp file that is not renamed into place is removed.

pub mod chase;
mod lock;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

pub use chase::{ChaseError, Place, chase};
pub use lock::{lock_exclusive, open_lock_file};

/// What every temp file of refreshd's ends with (`.NAME.RANDOM.refreshd-tmp`).
pub const TEMP_SUFFIX: &str = ".refreshd-tmp";

/// What the replaced file should look like besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub mode: u32,
    /// `None` leaves the owner the writer's.
    pub owner: Option<(Uid, Gid)>,
}

impl From<ChaseError> for io::Error {
    fn from(e: ChaseError) -> io::Error {
        match e {
            ChaseError::Io { source, .. } => source,
            unsafe_path @ ChaseError::Unsafe { .. } => {
                io::Error::new(io::ErrorKind::PermissionDenied, unsafe_path.to_string())
            }
        }
    }
}

/// A hidden name for a temp file beside `file`, so globs like `*.env` never pick it up.
fn temp_name(file: &OsStr) -> OsString {
    let mut random = [0u8; 6];
    // Without entropy the name is still unique enough: O_EXCL refuses a clash.
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = OsString::from(".");
    name.push(file);
    name.push(format!(".{hex}{TEMP_SUFFIX}"));
    name
}

/// A new temp file in `place`'s directory holding `contents`, with `attributes`, fsynced.
fn write_temp(place: &Place, contents: &[u8], attributes: Attributes) -> io::Result<OsString> {
    let name = temp_name(&place.name);
    let fd = nix::fcntl::openat(
        &place.dir,
        name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let written = (|| -> io::Result<()> {
        let mut file = File::from(fd);
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(attributes.mode))?;
        if let Some((uid, gid)) = attributes.owner {
            let current = nix::sys::stat::fstat(&file)?;
            if current.st_uid != uid.as_raw() || current.st_gid != gid.as_raw() {
                nix::unistd::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        file.write_all(contents)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(name),
        Err(e) => {
            let _ = nix::unistd::unlinkat(&place.dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            Err(e)
        }
    }
}

/// Replaces the file at `place` with `contents`.
pub fn replace_at(place: &Place, contents: &[u8], attributes: Attributes) -> io::Result<()> {
    let temp = write_temp(place, contents, attributes)?;
    if let Err(e) = nix::fcntl::renameat(
        &place.dir,
        temp.as_os_str(),
        &place.dir,
        place.name.as_os_str(),
    ) {
        let _ = nix::unistd::unlinkat(&place.dir, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e.into());
    }
    sync(&place.dir)
}

/// Creates the file at `place` unless something is there already: `Ok(false)` then, and
/// nothing was written.
pub fn create_at(place: &Place, contents: &[u8], attributes: Attributes) -> io::Result<bool> {
    let temp = write_temp(place, contents, attributes)?;
    let linked = nix::unistd::linkat(
        &place.dir,
        temp.as_os_str(),
        &place.dir,
        place.name.as_os_str(),
        AtFlags::empty(),
    );
    let _ = nix::unistd::unlinkat(&place.dir, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    match linked {
        Ok(()) => sync(&place.dir).map(|()| true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Replaces `path` (resolved safely; a trusted symlink stays a link) with `contents`.
pub fn replace(path: &Path, contents: &[u8], attributes: Attributes) -> io::Result<()> {
    replace_at(&chase(path)?, contents, attributes)
}

/// Creates `path` with `contents` unless something is there already (`Ok(false)`).
#[cfg(test)]
pub fn create_new(path: &Path, contents: &[u8], attributes: Attributes) -> io::Result<bool> {
    create_at(&chase(path)?, contents, attributes)
}

/// Opens the file resolved at `place`, for reading (and writing, for an in-place edit),
/// without blocking (a FIFO would) and without following a link swapped in since; refuses
/// anything but the regular file that was resolved.
pub fn open_existing(place: &Place, write: bool) -> io::Result<(File, FileStat)> {
    let access = if write {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let fd = nix::fcntl::openat(
        &place.dir,
        place.name.as_os_str(),
        access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    let stat = nix::sys::stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file (a FIFO, device or directory is never read or written)",
        ));
    }
    if let Some(resolved) = &place.existing
        && (resolved.st_dev, resolved.st_ino) != (stat.st_dev, stat.st_ino)
    {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "was replaced while refreshd opened it",
        ));
    }
    Ok((File::from(fd), stat))
}

/// Reads all of `file`, refusing one longer than `limit` bytes.
pub fn read_bounded(file: &mut File, limit: u64) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    file.take(limit + 1).read_to_end(&mut content)?;
    if content.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {limit} bytes"),
        ));
    }
    Ok(content)
}

/// Reads the regular file at `path` (resolved safely), at most `limit` bytes; `None` when
/// there is none.
pub fn read_file(path: &Path, limit: u64) -> io::Result<Option<(Vec<u8>, Place)>> {
    let place = match chase(path) {
        Ok(place) => place,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if place.existing.is_none() {
        return Ok(None);
    }
    let (mut file, _) = open_existing(&place, false)?;
    Ok(Some((read_bounded(&mut file, limit)?, place)))
}

/// Rewrites `file` in place (same inode): the space for `content` is reserved first, so a
/// full disk fails before a byte changes instead of leaving a truncated file.
pub fn rewrite_in_place(file: &File, content: &[u8]) -> io::Result<()> {
    let len = content.len() as u64;
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    match nix::fcntl::posix_fallocate(file, 0, len as nix::libc::off_t) {
        // A file system that cannot reserve (some network ones) is written as before.
        Ok(()) | Err(Errno::EOPNOTSUPP) | Err(Errno::EINVAL) | Err(Errno::ENODEV) => {}
        Err(e) => return Err(e.into()),
    }
    file.write_all_at(content, 0)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Makes a rename in a directory survive a crash.
fn sync(dir: &OwnedFd) -> io::Result<()> {
    nix::unistd::fsync(dir.as_fd())?;
    Ok(())
}

/// Which directories hold any of refreshd's temp files, each listed once: a start with
/// thousands of state files and targets in a few directories then lists each directory
/// once, instead of once per file, and takes the writers' lock only where a crash left
/// something. Only a hint: removal itself goes through [`remove_litter`].
#[derive(Debug, Default)]
pub struct LitterIndex {
    /// A directory's temp files' names; `None` when it cannot be listed.
    dirs: std::collections::HashMap<std::path::PathBuf, Option<Vec<OsString>>>,
}

impl LitterIndex {
    /// Whether a crash may have left a temp file of `file` (`true` when unsure: the path
    /// is a symlink, whose temp files lie beside its target, or the directory is unreadable).
    pub fn may_have(&mut self, file: &Path) -> bool {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return true;
        };
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
            return true;
        }
        let listed = self.dirs.entry(dir.to_owned()).or_insert_with(|| {
            let entries = std::fs::read_dir(dir).ok()?;
            Some(
                entries
                    .flatten()
                    .map(|entry| entry.file_name())
                    .filter(|n| n.as_bytes().ends_with(TEMP_SUFFIX.as_bytes()))
                    .collect(),
            )
        });
        match listed {
            Some(names) => names.iter().any(|n| chase::is_temp_of(n, name)),
            None => true,
        }
    }
}

/// Removes refreshd's own temp files for the file at `place` left by a crash: only names
/// of its pattern, only regular files owned by refreshd's user. The caller holds the lock
/// every writer of that file takes, so none is being written. How many it removed.
pub fn remove_litter(place: &Place) -> usize {
    let Some(dir) = place.path.parent() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let own = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !chase::is_temp_of(&name, &place.name) {
            continue;
        }
        // Checked and removed through the resolved directory, never through the listing.
        let Ok(stat) =
            nix::sys::stat::fstatat(&place.dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        if regular
            && stat.st_uid == own
            && nix::unistd::unlinkat(&place.dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests;
