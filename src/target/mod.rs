//! Targets: put a token into the files applications read (`.env` key, `.pgpass` line, INI,
//! TOML or JSON value, raw token file), changing nothing else in them; or render a whole
//! file from a template.
//!
//! The path is resolved safely ([`durable::chase`]: nobody else's symlinks, no step from an
//! app user's directory into what that user did not make), the file opened without
//! blocking and refused unless regular, and read with a size limit. Under a lock in
//! refreshd's own lock directory (an app cannot hold it), it computes the new content and
//! writes only when it differs: atomically (temp file, fsync, rename, fsync directory) or,
//! for a file bind-mounted on its own into a container, in place with the space reserved
//! first. A trusted symlink keeps its link. It never logs or returns a token, and every
//! error names the target's path.

mod attributes;
pub(crate) mod dotenv;
pub mod ini;
pub mod json;
mod lock;
pub(crate) mod pgpass;
mod render;
pub mod template;
pub mod toml;

use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::FileStat;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::config::{PgUser, TargetConfig, TargetKind, ValueOf, WriteMode};
use crate::durable::{self, Attributes};

use attributes::{OwnerOverride, apply_attributes, mode_for, resolve_owner, wanted_attributes};
use lock::lock;
pub use lock::remove_litter;

pub use dotenv::quote as dotenv_quote;
use render::render;
pub use render::{Sample, Values, check_render};

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

/// How long another refreshd process (`once` beside the daemon) may hold a target's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Attempts before giving up on a file that keeps changing under us.
const MAX_ATTEMPTS: usize = 8;

/// The largest target file refreshd reads: a `.env`, `.pgpass` or app config is a few KiB.
const MAX_TARGET: u64 = 4 << 20;

/// The longest token written to a target: anything longer is not a credential.
pub const MAX_TOKEN: usize = 64 << 10;

/// Writes `token` (and its expiry, for an `expires_at_key`) into `target`: [`write_values`]
/// of a bare token.
pub fn write(
    target: &TargetConfig,
    token: &SecretString,
    expires_at: OffsetDateTime,
    locks: &Path,
) -> Result<Outcome, TargetError> {
    write_values(target, &Values::of_token(token, expires_at), locks)
}

/// Writes one rotation's `values` into `target` (every key it sets, in one replacement),
/// queueing with other refreshd processes on a lock file in `locks` (refreshd's own
/// directory).
pub fn write_values(
    target: &TargetConfig,
    values: &Values<'_>,
    locks: &Path,
) -> Result<Outcome, TargetError> {
    for value in target.values() {
        let text = values.get(value).map_err(|why| failed(&target.path, why))?;
        if text.len() > MAX_TOKEN {
            return Err(failed(
                &target.path,
                format!(
                    "the {} is {} bytes long, more than the {MAX_TOKEN} a credential can be: not written",
                    value.name(),
                    text.len()
                ),
            ));
        }
    }
    // Refuse before touching the file: a value the format cannot hold.
    render(target, b"", values).map_err(|reason| failed(&target.path, reason))?;
    let owner = resolve_owner(target)?;
    let _lock = lock(locks, &target.path)?;
    for _ in 0..MAX_ATTEMPTS {
        let place = durable::chase(&target.path).map_err(|e| chase_failed(&target.path, e))?;
        match write_once(target, &place, values, owner)? {
            Some(outcome) => return Ok(outcome),
            None => continue,
        }
    }
    Err(failed(
        &target.path,
        "the file kept changing while refreshd was writing it; nothing was written",
    ))
}

/// Whether `target` already holds exactly what [`write`] would leave there: [`is_current_values`]
/// of a bare token.
pub fn is_current(target: &TargetConfig, token: &SecretString, expires_at: OffsetDateTime) -> bool {
    is_current_values(target, &Values::of_token(token, expires_at))
}

/// Whether `target` already holds exactly what [`write_values`] would leave there (content,
/// mode and owner), found by reading alone, without the writers' lock: a start with
/// thousands of credentials whose targets are current then takes no lock and writes
/// nothing. Any doubt is `false`, and the caller writes under the lock.
pub fn is_current_values(target: &TargetConfig, values: &Values<'_>) -> bool {
    let Ok(owner) = resolve_owner(target) else {
        return false;
    };
    let Ok(place) = durable::chase(&target.path) else {
        return false;
    };
    if place.existing.is_none() {
        return false;
    }
    let Ok((mut file, before)) = durable::open_existing(&place, false) else {
        return false;
    };
    let Ok(current) = durable::read_bounded(&mut file, MAX_TARGET) else {
        return false;
    };
    let Ok(content) = render(target, &current, values) else {
        return false;
    };
    content == current && wanted_attributes(target, owner, &before).3
}

fn chase_failed(path: &Path, e: durable::ChaseError) -> TargetError {
    match e {
        durable::ChaseError::Io { source, .. } => io_failed(path, "resolve the path", source),
        durable::ChaseError::Unsafe { path: at, why } => {
            failed(path, format!("{}: refused: {why}", at.display()))
        }
    }
}

/// The token the target holds now, read the way refreshd writes it, when only root and
/// refreshd's user can write the file (a token anyone else could have planted is never
/// taken over); `None` when the file is missing, unreadable, writable by others or holds
/// the value in another form. Never logged.
pub fn read_current(target: &TargetConfig) -> Option<SecretString> {
    // The place that holds the token itself; a template's text is its own business (where
    // it put the token and how it escaped it), and a field is no token.
    fn token_place<L>(places: &[(L, ValueOf)]) -> Option<&L> {
        places
            .iter()
            .find(|(_, value)| *value == ValueOf::Token)
            .map(|(place, _)| place)
    }
    let read = |target: &TargetConfig| -> Option<Vec<u8>> {
        let place = durable::chase(&target.path).ok()?;
        if !durable::chase::only_trusted_can_write(&place) {
            return None;
        }
        let (mut file, _) = durable::open_existing(&place, false).ok()?;
        durable::read_bounded(&mut file, MAX_TARGET).ok()
    };
    let value = match &target.kind {
        TargetKind::Dotenv { keys } => dotenv::get(&read(target)?, token_place(keys)?)?,
        TargetKind::Pgpass {
            host,
            port,
            database,
            username: PgUser::Fixed(username),
            password: ValueOf::Token,
        } => pgpass::get(
            &read(target)?,
            &pgpass::Entry {
                host,
                port,
                database,
                username,
            },
        )?,
        TargetKind::Ini { section, keys } => {
            ini::get(&read(target)?, section.as_deref(), token_place(keys)?)?
        }
        TargetKind::Toml { keys } => toml::get(&read(target)?, token_place(keys)?)?,
        TargetKind::Json { pointers } => json::get(&read(target)?, token_place(pointers)?)?,
        TargetKind::File {
            value: ValueOf::Token,
            ..
        } => {
            let text = String::from_utf8(read(target)?).ok()?;
            text.strip_suffix('\n').unwrap_or(&text).to_owned()
        }
        TargetKind::Pgpass { .. } | TargetKind::File { .. } | TargetKind::Template { .. } => {
            return None;
        }
    };
    (!value.is_empty()).then(|| SecretString::from(value))
}

/// One locked read-compute-write. `Ok(None)`: the file changed under us; try again.
fn write_once(
    target: &TargetConfig,
    place: &durable::Place,
    values: &Values<'_>,
    owner: Option<OwnerOverride>,
) -> Result<Option<Outcome>, TargetError> {
    let path = &target.path;
    if place.existing.is_none() {
        return create(target, place, values, owner);
    }
    let in_place = target.write == WriteMode::InPlace;
    let (mut file, before) = match durable::open_existing(place, in_place) {
        Ok(opened) => opened,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Err(failed(path, e.to_string()));
        }
        Err(e) => return Err(io_failed(path, "open", e)),
    };
    if let Some(why) = attributes::planted(place, &before, owner) {
        return Err(failed(path, why));
    }
    let current = durable::read_bounded(&mut file, MAX_TARGET)
        .map_err(|e| failed(path, format!("cannot read it: {e}")))?;
    let content = render(target, &current, values).map_err(|reason| failed(path, reason))?;
    let (mode, uid, gid, attributes_match) = wanted_attributes(target, owner, &before);
    if content == current {
        if !attributes_match {
            apply_attributes(&file, mode, owner.map(|_| (uid, gid)))
                .map_err(|e| io_failed(path, "set mode/owner", e))?;
        }
        return Ok(Some(Outcome::Unchanged));
    }
    if in_place {
        // A second name for the same inode may be anywhere (a hard link to a file of
        // someone else's): an in-place write would change every one of them.
        if before.st_nlink > 1 {
            return Err(failed(
                path,
                format!(
                    "has {} hard links: an in-place write would change the file behind every one of them; remove the extra links or use write = \"atomic\"",
                    before.st_nlink
                ),
            ));
        }
        // Tighten the mode before the new secret lands, never after.
        if !attributes_match {
            apply_attributes(&file, mode, owner.map(|_| (uid, gid)))
                .map_err(|e| io_failed(path, "set mode/owner", e))?;
        }
        // Same inode, so a container that bind-mounted this one file sees the change.
        if let Err(e) = durable::rewrite_in_place(&file, &content) {
            // Space is reserved first, so this is rare; put the old content back.
            let _ = durable::rewrite_in_place(&file, &current);
            return Err(io_failed(path, "rewrite in place", e));
        }
        return Ok(Some(Outcome::Written));
    }
    // A writer that does not lock (an editor) may have changed the file since we read it.
    match nix::sys::stat::fstatat(
        &place.dir,
        place.name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(now) if same_version(&now, &before) => {}
        _ => return Ok(None),
    }
    let keep_owner = uid.as_raw() != nix::unistd::geteuid().as_raw()
        || gid.as_raw() != nix::unistd::getegid().as_raw();
    let attributes = Attributes {
        mode,
        owner: keep_owner.then_some((uid, gid)),
    };
    durable::replace_at(place, &content, attributes).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied && keep_owner {
            failed(path, format!("cannot keep the file's owner {}:{} without root: run refreshd as that user, or set write = \"in-place\"", uid, gid))
        } else {
            io_failed(path, "replace", e)
        }
    })?;
    Ok(Some(Outcome::Written))
}

fn same_version(a: &FileStat, b: &FileStat) -> bool {
    (a.st_dev, a.st_ino, a.st_size, a.st_mtime, a.st_mtime_nsec)
        == (b.st_dev, b.st_ino, b.st_size, b.st_mtime, b.st_mtime_nsec)
}

fn create(
    target: &TargetConfig,
    place: &durable::Place,
    values: &Values<'_>,
    owner: Option<OwnerOverride>,
) -> Result<Option<Outcome>, TargetError> {
    let path = &target.path;
    let content = render(target, b"", values).map_err(|reason| failed(path, reason))?;
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
    match durable::create_at(place, &content, attributes) {
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
    let place = durable::chase(path).map_err(|e| chase_failed(path, e))?;
    let dir = place.path.parent().unwrap_or(Path::new("/"));
    use nix::unistd::{AccessFlags, access};
    if target.write == WriteMode::Atomic || place.existing.is_none() {
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
    let Some(stat) = &place.existing else {
        return Ok(());
    };
    let (file, _) = durable::open_existing(&place, false).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => failed(path, e.to_string()),
        _ => io_failed(path, "open", e),
    })?;
    drop(file);
    if target.write == WriteMode::InPlace {
        access(&place.path, AccessFlags::W_OK)
            .map_err(|e| failed(path, format!("not writable by refreshd's user: {e}")))?;
    }
    if matches!(target.kind, TargetKind::Pgpass { .. }) && stat.st_mode & 0o077 != 0 {
        tracing::warn!(target_path = %path.display(), "mode {:04o}: libpq ignores this file until refreshd tightens it to 0600 on the next write", stat.st_mode & 0o7777);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
