//! Targets: put a token into the files applications read (`.env` key, `.pgpass` line, raw
//! token file), changing nothing else in them.
//!
//! Under an advisory lock on the target, it reads the file, computes the new content, and
//! writes only when it differs: atomically (temp file, fsync, rename, fsync directory) or,
//! for a file bind-mounted on its own into a container, in place. A symlinked target keeps
//! its link. It never logs or returns a token, and every error names the target's path.

pub(crate) mod dotenv;
pub(crate) mod pgpass;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use nix::unistd::{Gid, Group, Uid, User};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::config::{TargetConfig, TargetKind, WriteMode};
use crate::durable::{self, Attributes};

pub use dotenv::quote as dotenv_quote;

/// A configured owner and/or group; `None` parts keep the file's.
type OwnerOverride = (Option<Uid>, Option<Gid>);

/// What writing a target did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file already held this value: nothing was written.
    Unchanged,
    Written,
}

/// Why a target was not written. The file is as it was.
#[derive(Debug, thiserror::Error)]
#[error("target {path}: {reason}")]
pub struct TargetError {
    pub path: PathBuf,
    pub reason: String,
}

fn failed(path: &Path, reason: impl Into<String>) -> TargetError {
    TargetError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_failed(path: &Path, what: &str, e: io::Error) -> TargetError {
    let hint = match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (does refreshd's user may write this file and its directory?)"
        }
        io::ErrorKind::NotFound => " (does the directory exist?)",
        _ => "",
    };
    failed(path, format!("cannot {what}: {e}{hint}"))
}

/// How long a target's lock may be held by someone else before refreshd gives up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Attempts before giving up on a file that keeps changing under us.
const MAX_ATTEMPTS: usize = 8;

/// Writes `token` (and its expiry, for an `expires_at_key`) into `target`.
pub fn write(
    target: &TargetConfig,
    token: &SecretString,
    expires_at: OffsetDateTime,
) -> Result<Outcome, TargetError> {
    let value = token.expose_secret();
    // Refuse before touching the file: a value the format cannot hold.
    render(target, b"", value, expires_at).map_err(|reason| failed(&target.path, reason))?;
    let owner = resolve_owner(target)?;
    let real = durable::resolve_link(&target.path)
        .map_err(|e| io_failed(&target.path, "resolve the symlink", e))?;
    // The file's own lock is on an inode that the next atomic write replaces, so a waiter
    // would wake on a dead file; writers of one directory queue on the directory instead.
    // The file lock is still taken, for tools that `flock` the file themselves.
    let _dir_lock = lock_dir(&real);
    for _ in 0..MAX_ATTEMPTS {
        match write_once(target, &real, value, expires_at, owner)? {
            Some(outcome) => return Ok(outcome),
            None => continue,
        }
    }
    Err(failed(
        &target.path,
        "the file kept changing while refreshd was writing it; nothing was written",
    ))
}

/// An exclusive lock on the directory holding `path`; `None` when the directory cannot be
/// opened for reading (the file lock and the inode check still apply).
fn lock_dir(path: &Path) -> Option<Flock<File>> {
    let dir = File::open(path.parent().unwrap_or(Path::new("/"))).ok()?;
    durable::lock_exclusive(dir, LOCK_WAIT).ok()
}

/// The file's new content given its current content.
fn render(
    target: &TargetConfig,
    current: &[u8],
    value: &str,
    expires_at: OffsetDateTime,
) -> Result<Vec<u8>, String> {
    match &target.kind {
        TargetKind::Dotenv {
            key,
            expires_at_key,
        } => {
            let quoted = dotenv::quote(value).map_err(|e| e.to_string())?;
            let mut content = dotenv::set(current, key, &quoted);
            if let Some(expiry_key) = expires_at_key {
                content = dotenv::set(&content, expiry_key, &crate::token::rfc3339(expires_at));
            }
            Ok(content)
        }
        TargetKind::Pgpass {
            host,
            port,
            database,
            username,
        } => {
            let entry = pgpass::Entry {
                host,
                port,
                database,
                username,
            };
            let edited = pgpass::set(current, &entry, value).map_err(|e| e.to_string())?;
            if let Some(line) = edited.shadowed_by_line {
                tracing::warn!(
                    target_path = %target.path.display(),
                    "line {line} of the .pgpass matches this host/port/database/username with wildcards and comes first: libpq will use its password, not refreshd's"
                );
            }
            Ok(edited.content)
        }
        TargetKind::File { newline } => {
            let mut content = value.as_bytes().to_vec();
            if *newline {
                content.push(b'\n');
            }
            Ok(content)
        }
    }
}

/// The token the target holds now, read the way refreshd writes it; `None` when the file
/// is missing, unreadable or holds the value in another form. Never logged.
pub fn read_current(target: &TargetConfig) -> Option<SecretString> {
    let content = std::fs::read(&target.path).ok()?;
    let value = match &target.kind {
        TargetKind::Dotenv { key, .. } => dotenv::get(&content, key)?,
        TargetKind::Pgpass {
            host,
            port,
            database,
            username,
        } => pgpass::get(
            &content,
            &pgpass::Entry {
                host,
                port,
                database,
                username,
            },
        )?,
        TargetKind::File { .. } => {
            let text = String::from_utf8(content).ok()?;
            text.strip_suffix('\n').unwrap_or(&text).to_owned()
        }
    };
    (!value.is_empty()).then(|| SecretString::from(value))
}

/// The mode a written file gets: the configured one, else the existing file's, else 0600.
/// A `.pgpass` is never left looser than 0600, or libpq ignores it.
fn mode_for(target: &TargetConfig, existing: Option<u32>) -> u32 {
    let mode = target.mode.or(existing).unwrap_or(0o600);
    match target.kind {
        TargetKind::Pgpass { .. } => mode & 0o600,
        _ => mode,
    }
}

fn resolve_owner(target: &TargetConfig) -> Result<Option<OwnerOverride>, TargetError> {
    if target.owner.is_none() && target.group.is_none() {
        return Ok(None);
    }
    let uid = match &target.owner {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        failed(
                            &target.path,
                            format!("owner {name:?} is not a user on this machine"),
                        )
                    })?
                    .uid
            }
        }),
    };
    let gid = match &target.group {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        failed(
                            &target.path,
                            format!("group {name:?} is not a group on this machine"),
                        )
                    })?
                    .gid
            }
        }),
    };
    Ok(Some((uid, gid)))
}

/// One locked read-compute-write. `Ok(None)`: the file changed under us; try again.
fn write_once(
    target: &TargetConfig,
    real: &Path,
    value: &str,
    expires_at: OffsetDateTime,
    owner: Option<OwnerOverride>,
) -> Result<Option<Outcome>, TargetError> {
    let path = &target.path;
    let in_place = target.write == WriteMode::InPlace;
    let opened = OpenOptions::new().read(true).write(in_place).open(real);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return create(target, real, value, expires_at, owner);
        }
        Err(e) => return Err(io_failed(path, "open", e)),
    };
    let mut file =
        durable::lock_exclusive(file, LOCK_WAIT).map_err(|e| io_failed(path, "lock", e))?;
    let before = file.metadata().map_err(|e| io_failed(path, "stat", e))?;
    // Another writer may have renamed a new file over the path while we waited for the lock.
    match std::fs::metadata(real) {
        Ok(now) if now.dev() == before.dev() && now.ino() == before.ino() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failed(path, "stat", e)),
    }
    if !before.is_file() {
        return Err(failed(path, "is not a regular file"));
    }
    let mut current = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut current)
        .map_err(|e| io_failed(path, "read", e))?;
    let content =
        render(target, &current, value, expires_at).map_err(|reason| failed(path, reason))?;
    let existing_mode = before.mode() & 0o7777;
    let mode = mode_for(target, Some(existing_mode));
    let uid = owner
        .and_then(|(u, _)| u)
        .unwrap_or(Uid::from_raw(before.uid()));
    let gid = owner
        .and_then(|(_, g)| g)
        .unwrap_or(Gid::from_raw(before.gid()));
    let attributes_match =
        mode == existing_mode && uid.as_raw() == before.uid() && gid.as_raw() == before.gid();
    if content == current {
        if !attributes_match {
            apply_attributes(&file, mode, owner.map(|_| (uid, gid)))
                .map_err(|e| io_failed(path, "set mode/owner", e))?;
        }
        return Ok(Some(Outcome::Unchanged));
    }
    if in_place {
        // Tighten the mode before the new secret lands, never after.
        if !attributes_match {
            apply_attributes(&file, mode, owner.map(|_| (uid, gid)))
                .map_err(|e| io_failed(path, "set mode/owner", e))?;
        }
        // Same inode, so a container that bind-mounted this one file sees the change.
        if let Err(e) = rewrite(&mut file, &content) {
            // Put the old content back rather than leave a truncated file (best effort).
            let _ = rewrite(&mut file, &current);
            return Err(io_failed(path, "rewrite in place", e));
        }
        return Ok(Some(Outcome::Written));
    }
    // A writer that does not lock (an editor) may have changed the file since we read it.
    match std::fs::metadata(real) {
        Ok(now) if same_version(&now, &before) => {}
        _ => return Ok(None),
    }
    let keep_owner = uid.as_raw() != nix::unistd::geteuid().as_raw()
        || gid.as_raw() != nix::unistd::getegid().as_raw();
    let attributes = Attributes {
        mode,
        owner: keep_owner.then_some((uid, gid)),
    };
    durable::replace(real, &content, attributes).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied && keep_owner {
            failed(path, format!("cannot keep the file's owner {}:{} without root: run refreshd as that user, or set write = \"in-place\"", uid, gid))
        } else {
            io_failed(path, "replace", e)
        }
    })?;
    drop(file);
    Ok(Some(Outcome::Written))
}

fn rewrite(file: &mut File, content: &[u8]) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(content)?;
    file.sync_all()
}

fn same_version(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev()
        && a.ino() == b.ino()
        && a.len() == b.len()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
}

fn apply_attributes(file: &File, mode: u32, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(file, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn create(
    target: &TargetConfig,
    real: &Path,
    value: &str,
    expires_at: OffsetDateTime,
    owner: Option<OwnerOverride>,
) -> Result<Option<Outcome>, TargetError> {
    let path = &target.path;
    let content = render(target, b"", value, expires_at).map_err(|reason| failed(path, reason))?;
    let owner = owner.map(|(u, g)| {
        (
            u.unwrap_or_else(nix::unistd::geteuid),
            g.unwrap_or_else(nix::unistd::getegid),
        )
    });
    let attributes = Attributes {
        mode: mode_for(target, None),
        owner,
    };
    match durable::create_new(real, &content, attributes) {
        Ok(true) => Ok(Some(Outcome::Written)),
        // Someone created it meanwhile: edit theirs.
        Ok(false) => Ok(None),
        Err(e) => Err(io_failed(path, "create", e)),
    }
}

/// Checks, without writing, that the target could be written: its directory exists and is
/// writable, an existing file is a regular file we may read and replace, the owner resolves.
pub fn check(target: &TargetConfig) -> Result<(), TargetError> {
    let path = &target.path;
    resolve_owner(target)?;
    let real =
        durable::resolve_link(path).map_err(|e| io_failed(path, "resolve the symlink", e))?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let dir_meta = std::fs::metadata(dir)
        .map_err(|e| io_failed(path, &format!("use directory {}", dir.display()), e))?;
    if !dir_meta.is_dir() {
        return Err(failed(
            path,
            format!("{} is not a directory", dir.display()),
        ));
    }
    use nix::unistd::{AccessFlags, access};
    if target.write == WriteMode::Atomic || !real.exists() {
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            failed(
                path,
                format!(
                    "directory {} is not writable by refreshd's user: {e}",
                    dir.display()
                ),
            )
        })?;
    }
    match std::fs::metadata(&real) {
        Ok(meta) if !meta.is_file() => Err(failed(path, "is not a regular file")),
        Ok(meta) => {
            access(
                &real,
                AccessFlags::R_OK
                    | if target.write == WriteMode::InPlace {
                        AccessFlags::W_OK
                    } else {
                        AccessFlags::R_OK
                    },
            )
            .map_err(|e| failed(path, format!("not accessible to refreshd's user: {e}")))?;
            if matches!(target.kind, TargetKind::Pgpass { .. }) && meta.mode() & 0o077 != 0 {
                tracing::warn!(target_path = %path.display(), "mode {:04o}: libpq ignores this file until refreshd tightens it to 0600 on the next write", meta.mode() & 0o7777);
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failed(path, "stat", e)),
    }
}

#[cfg(test)]
mod tests;
