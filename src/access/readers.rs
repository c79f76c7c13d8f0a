//! Which users may read which credential, from the running config: its `readers`
//! resolved to uids and gids at load, and group membership asked of the user database
//! at each read (a user added to a group is a reader at once; one removed is not).
//!
//! Never consults anything the client sent.

use std::sync::Arc;

use crate::config::{Config, Credential, Reader};

/// The running config's credentials, for their `readers` and helper declarations.
#[derive(Debug, Default)]
pub struct Grants {
    /// Sorted by name, as the config keeps them.
    credentials: Vec<Arc<Credential>>,
}

impl Grants {
    pub fn of(config: &Config) -> Grants {
        Grants {
            credentials: config.credentials.clone(),
        }
    }

    pub fn credential(&self, name: &str) -> Option<Arc<Credential>> {
        let i = self
            .credentials
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()?;
        Some(self.credentials[i].clone())
    }

    pub fn any(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| !c.access.readers.is_empty())
    }

    /// Whether `uid` is among `name`'s readers (refreshd's own user and root are checked
    /// by the caller).
    pub fn admits(&self, name: &str, uid: u32) -> bool {
        let Some(credential) = self.credential(name) else {
            return false;
        };
        let readers = &credential.access.readers;
        if readers.contains(&Reader::Uid(uid)) {
            return true;
        }
        let gids: Vec<u32> = readers
            .iter()
            .filter_map(|r| match r {
                Reader::Gid(gid) => Some(*gid),
                Reader::Uid(_) => None,
            })
            .collect();
        !gids.is_empty() && groups_of(uid).iter().any(|g| gids.contains(g))
    }
}

/// The primary and supplementary groups of `uid`'s user; none for a uid with no user.
fn groups_of(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name.clone()) else {
        return vec![user.gid.as_raw()];
    };
    match nix::unistd::getgrouplist(&name, user.gid) {
        Ok(groups) => groups.into_iter().map(nix::unistd::Gid::as_raw).collect(),
        Err(_) => vec![user.gid.as_raw()],
    }
}
