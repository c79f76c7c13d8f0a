//! A target's mode, owner and group: what a write leaves on the file. It only computes
//! them and sets them on an opened descriptor; it never resolves a path.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;

use nix::sys::stat::FileStat;
use nix::unistd::{Gid, Group, Uid, User};

use super::{TargetError, failed};
use crate::config::{TargetConfig, TargetKind};

/// A configured owner and/or group; `None` parts keep the file's.
pub(super) type OwnerOverride = (Option<Uid>, Option<Gid>);

/// The mode, owner and group a write leaves on the file found as `before`, and whether it
/// has them already.
pub(super) fn wanted_attributes(
    target: &TargetConfig,
    owner: Option<OwnerOverride>,
    before: &FileStat,
) -> (u32, Uid, Gid, bool) {
    let existing_mode = before.st_mode & 0o7777;
    let mode = mode_for(target, Some(existing_mode));
    let uid = owner
        .and_then(|(u, _)| u)
        .unwrap_or(Uid::from_raw(before.st_uid));
    let gid = owner
        .and_then(|(_, g)| g)
        .unwrap_or(Gid::from_raw(before.st_gid));
    let matching =
        mode == existing_mode && uid.as_raw() == before.st_uid && gid.as_raw() == before.st_gid;
    (mode, uid, gid, matching)
}

/// The mode a written file gets: the configured one, else the existing file's, else 0600.
/// A `.pgpass` is never left looser than 0600, or libpq ignores it.
pub(super) fn mode_for(target: &TargetConfig, existing: Option<u32>) -> u32 {
    let mode = target.mode.or(existing).unwrap_or(0o600);
    match target.kind {
        TargetKind::Pgpass { .. } => mode & 0o600,
        _ => mode,
    }
}

pub(super) fn resolve_owner(target: &TargetConfig) -> Result<Option<OwnerOverride>, TargetError> {
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

pub(super) fn apply_attributes(
    file: &File,
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(file, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Why the existing file `before` at a target in `place`'s directory is one refreshd must
/// not read and rewrite, if it is: a file of root's or refreshd's own in a directory another
/// user controls that refreshd did not leave there. Such a file was moved or linked there by
/// that user, and rewriting it (every other line kept, the file then given to the configured
/// owner) would hand its content to them. refreshd itself leaves a target there either owned
/// by the configured `owner`, or, without one, by its own user with a single link.
pub(super) fn planted(
    place: &crate::durable::Place,
    before: &FileStat,
    owner: Option<OwnerOverride>,
) -> Option<String> {
    let dir_owner = place.dir_stat.st_uid;
    if crate::durable::chase::trusted(dir_owner) || !crate::durable::chase::trusted(before.st_uid) {
        return None;
    }
    if before.st_nlink > 1 {
        return Some(format!(
            "is a file of uid {} with {} hard links, in a directory uid {dir_owner} controls: a link to a file that is not that user's; refreshd will not read or rewrite it (remove the link)",
            before.st_uid, before.st_nlink
        ));
    }
    match owner.and_then(|(uid, _)| uid) {
        Some(wanted) if wanted.as_raw() != before.st_uid => Some(format!(
            "is a file of uid {}, in a directory uid {dir_owner} controls, where the config gives it to uid {wanted}: refreshd never leaves it so, so it was moved there; refreshd will not read or rewrite it (remove it, or chown it to uid {wanted})",
            before.st_uid
        )),
        _ => None,
    }
}
