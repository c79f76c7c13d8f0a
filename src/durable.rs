//! Durable file replacement: a reader or a crash sees the old file or the new one, never a
//! mix. Temp file in the same directory (a rename across filesystems fails), mode and owner
//! set before the data lands, fsync, rename, fsync the directory.
//!
//! Used by `state` and `target`; it knows nothing of tokens and never logs file contents.
//! A temp file that is not renamed into place is removed (tempfile deletes it on drop).

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

/// What the replaced file should look like besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub mode: u32,
    /// `None` leaves the owner the writer's.
    pub owner: Option<(Uid, Gid)>,
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn temp_in(
    path: &Path,
    contents: &[u8],
    attributes: Attributes,
) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden, so globs like `*.env` never pick up a half-written file.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".refreshd-tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(parent_dir(path))?;
    let file = temp.as_file();
    file.set_permissions(Permissions::from_mode(attributes.mode))?;
    if let Some((uid, gid)) = attributes.owner {
        let current = nix::sys::stat::fstat(file)?;
        if current.st_uid != uid.as_raw() || current.st_gid != gid.as_raw() {
            nix::unistd::fchown(file, Some(uid), Some(gid))?;
        }
    }
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

/// Replaces `path` (which must not be a symlink the caller wants kept: resolve it first)
/// with `contents`.
pub fn replace(path: &Path, contents: &[u8], attributes: Attributes) -> io::Result<()> {
    let temp = temp_in(path, contents, attributes)?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent_dir(path))
}

/// Creates `path` with `contents` unless something is there already: `Ok(false)` then,
/// and nothing was written.
pub fn create_new(path: &Path, contents: &[u8], attributes: Attributes) -> io::Result<bool> {
    let temp = temp_in(path, contents, attributes)?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            sync_dir(parent_dir(path))?;
            Ok(true)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// An exclusive `flock`, waiting at most `wait`: a tool that holds a lock on a target
/// forever must not stall a rotation forever.
pub fn lock_exclusive(
    file: File,
    wait: std::time::Duration,
) -> io::Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::{Flock, FlockArg};
    const STEP: std::time::Duration = std::time::Duration::from_millis(20);
    // Counted in steps rather than read from a clock: a blocking thread, a bounded wait.
    let mut steps_left = wait.as_millis() / STEP.as_millis();
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if steps_left > 0 => {
                steps_left -= 1;
                file = back;
                std::thread::sleep(STEP);
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("another process held the lock for {}s", wait.as_secs()),
                ));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

/// Makes a rename in `dir` survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Follows symlinks to the file that is really replaced, so a link stays a link. A
/// dangling link resolves to the path it names (the file will be created there).
pub fn resolve_link(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent_dir(&current).join(link)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        replace(
            &path,
            b"new",
            Attributes {
                mode: 0o640,
                owner: None,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let attributes = Attributes {
            mode: 0o600,
            owner: None,
        };
        assert!(create_new(&path, b"first", attributes).unwrap());
        assert!(!create_new(&path, b"second", attributes).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn links_resolve_to_their_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_eq!(resolve_link(&dir.path().join("b")).unwrap(), real);
        std::os::unix::fs::symlink("missing", dir.path().join("c")).unwrap();
        assert_eq!(
            resolve_link(&dir.path().join("c")).unwrap(),
            dir.path().join("missing")
        );
    }
}
