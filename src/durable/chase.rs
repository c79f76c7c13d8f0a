//! Safe path resolution, after systemd's `chase()` with `CHASE_SAFE`: a path is walked from
//! `/` one component at a time on directory file descriptors, so that what was checked is
//! what is used, and
//! - a symlink is followed only when it is owned by root or by refreshd's own user (a user
//!   who can write a directory cannot make refreshd follow a link of theirs);
//! - no step goes from a directory owned by an unprivileged user into a file or directory
//!   owned by someone else than that user or refreshd's user (a root-owned file planted, or
//!   hard-linked, into an app's directory is refused).
//!
//! Never creates, writes or removes anything; the caller acts on the [`Place`] it returns.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// Links followed in one resolution before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Where a file is, or will be: its directory, opened, and its name in it.
#[derive(Debug)]
pub struct Place {
    pub dir: OwnedFd,
    pub dir_stat: FileStat,
    pub name: OsString,
    /// The file as it was when resolved; `None` when there is none yet.
    pub existing: Option<FileStat>,
    /// The resolved path, for messages.
    pub path: PathBuf,
}

/// Why a path was not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ChaseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: refused: {why}")]
    Unsafe { path: PathBuf, why: String },
}

impl ChaseError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ChaseError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn io(path: &Path, errno: Errno) -> ChaseError {
    ChaseError::Io {
        path: path.to_owned(),
        source: errno.into(),
    }
}

/// Whose files refreshd trusts without question: root's and its own.
pub fn trusted(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Whether stepping from `from` (a directory) to `to` would take an unprivileged user's
/// directory into something that user did not make.
fn unsafe_step(from: &FileStat, to: &FileStat) -> bool {
    !trusted(from.st_uid)
        && to.st_uid != from.st_uid
        && to.st_uid != nix::unistd::geteuid().as_raw()
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

fn open_dir<Fd: AsFd>(dir: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The directories a [`chase`] walked so far: (fd, stat, path); never empty.
type Walked = Vec<(OwnedFd, FileStat, PathBuf)>;

/// Resolves an absolute `path` to the directory that holds its file and the file's name.
pub fn chase(path: &Path) -> Result<Place, ChaseError> {
    if !path.is_absolute() {
        return Err(ChaseError::Unsafe {
            path: path.to_owned(),
            why: "not an absolute path".to_owned(),
        });
    }
    let root = open_dir(nix::fcntl::AT_FDCWD, OsStr::new("/")).map_err(|e| io(path, e))?;
    let root_stat = nix::sys::stat::fstat(&root).map_err(|e| io(path, e))?;
    let mut stack: Walked = vec![(root, root_stat, PathBuf::from("/"))];
    let mut pending: VecDeque<OsString> = components(path);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (dir, dir_stat, dir_path) = stack.last().expect("never empty");
        let here = dir_path.join(&name);
        let last = pending.is_empty();
        let stat =
            match nix::sys::stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) if last => return Ok(found(&mut stack, name, None, here)),
                Err(e) => return Err(io(&here, e)),
            };
        match kind(&stat) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io(&here, Errno::ELOOP));
                }
                let target = read_trusted_link(dir, &name, &here, &stat)?;
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for component in components(&target).into_iter().rev() {
                    pending.push_front(component);
                }
            }
            _ if unsafe_step(dir_stat, &stat) => {
                return Err(ChaseError::Unsafe {
                    path: here,
                    why: format!(
                        "owned by uid {}, inside a directory of uid {}: refreshd does not step from a user's directory into what that user did not make",
                        stat.st_uid, dir_stat.st_uid
                    ),
                });
            }
            SFlag::S_IFDIR if !last => {
                let (fd, opened) = open_same_dir(dir, &name, &here, &stat)?;
                stack.push((fd, opened, here));
            }
            _ if !last => return Err(io(&here, Errno::ENOTDIR)),
            _ => return Ok(found(&mut stack, name, Some(stat), here)),
        }
    }
    Err(ChaseError::Unsafe {
        path: path.to_owned(),
        why: "names a directory, not a file".to_owned(),
    })
}

/// The place of `name` in the last directory walked.
fn found(stack: &mut Walked, name: OsString, existing: Option<FileStat>, here: PathBuf) -> Place {
    let (dir, dir_stat, _) = stack.pop().expect("never empty");
    Place {
        dir,
        dir_stat,
        name,
        existing,
        path: here,
    }
}

/// Where the symlink `name` (found as `stat`) in `dir` points, if root or refreshd's user
/// owns it.
fn read_trusted_link(
    dir: &OwnedFd,
    name: &OsStr,
    here: &Path,
    stat: &FileStat,
) -> Result<PathBuf, ChaseError> {
    if !trusted(stat.st_uid) {
        return Err(ChaseError::Unsafe {
            path: here.to_owned(),
            why: format!(
                "a symlink owned by uid {}, neither root nor refreshd's user (a link its directory's owner could have planted)",
                stat.st_uid
            ),
        });
    }
    let target = nix::fcntl::readlinkat(dir, name).map_err(|e| io(here, e))?;
    Ok(PathBuf::from(target))
}

/// Opens the directory `name` in `dir`, refused unless it is the one found as `stat`.
fn open_same_dir(
    dir: &OwnedFd,
    name: &OsStr,
    here: &Path,
    stat: &FileStat,
) -> Result<(OwnedFd, FileStat), ChaseError> {
    let fd = open_dir(dir, name).map_err(|e| io(here, e))?;
    let opened = nix::sys::stat::fstat(&fd).map_err(|e| io(here, e))?;
    if (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino) {
        return Err(ChaseError::Unsafe {
            path: here.to_owned(),
            why: "it was replaced while refreshd looked at it".to_owned(),
        });
    }
    Ok((fd, opened))
}

/// A directory resolved once by [`chase`] and held open: files in it are then found with
/// one look each, instead of a walk from `/` (refreshd's own state directory, where only
/// root and refreshd's user can change anything).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Resolves the directory at `path` as [`chase`] resolves a file's.
    pub fn open(path: &Path) -> Result<Dir, ChaseError> {
        let place = chase(path)?;
        let Some(stat) = place.existing else {
            return Err(io(path, Errno::ENOENT));
        };
        if kind(&stat) != SFlag::S_IFDIR {
            return Err(io(path, Errno::ENOTDIR));
        }
        let (fd, _) = open_same_dir(&place.dir, &place.name, path, &stat)?;
        Ok(Dir {
            fd,
            path: place.path,
        })
    }

    /// Whether the directory was removed since it was opened (files made in it now would be
    /// lost with it).
    pub fn is_removed(&self) -> bool {
        nix::sys::stat::fstat(&self.fd).map_or(true, |stat| stat.st_nlink == 0)
    }

    /// The file `name` in this directory; a symlink or a directory there is refused.
    pub fn place(&self, name: &OsStr) -> Result<Place, ChaseError> {
        let here = self.path.join(name);
        let dir_stat = nix::sys::stat::fstat(&self.fd).map_err(|e| io(&here, e))?;
        let dir = self.fd.try_clone().map_err(|source| ChaseError::Io {
            path: here.clone(),
            source,
        })?;
        let existing = match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(stat),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(io(&here, e)),
        };
        if let Some(stat) = &existing {
            let refuse = |why: String| ChaseError::Unsafe {
                path: here.clone(),
                why,
            };
            match kind(stat) {
                SFlag::S_IFLNK => {
                    return Err(refuse(
                        "a symlink, in a directory where refreshd makes none".into(),
                    ));
                }
                SFlag::S_IFDIR => return Err(io(&here, Errno::EISDIR)),
                _ if unsafe_step(&dir_stat, stat) => {
                    return Err(refuse(format!(
                        "owned by uid {}, inside a directory of uid {}",
                        stat.st_uid, dir_stat.st_uid
                    )));
                }
                _ => {}
            }
        }
        Ok(Place {
            dir,
            dir_stat,
            name: name.to_owned(),
            existing,
            path: here,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The path's names, without `.` and the root.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Whether the file at `place` can be written by nobody but root and refreshd's user: it
/// and its directory are theirs, and neither is writable by group or others.
pub fn only_trusted_can_write(place: &Place) -> bool {
    let private = |stat: &FileStat| trusted(stat.st_uid) && stat.st_mode & 0o022 == 0;
    private(&place.dir_stat) && place.existing.as_ref().is_some_and(private)
}

/// Whether `name` is one of refreshd's temp files for `file` (see [`super::temp_name`]).
pub fn is_temp_of(name: &OsStr, file: &OsStr) -> bool {
    let name = name.as_bytes();
    let prefix = [b".", file.as_bytes(), b"."].concat();
    name.starts_with(&prefix) && name.ends_with(super::TEMP_SUFFIX.as_bytes())
}
