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
