//! What a name in the configuration may look like: a credential's, a node's, an
//! environment variable's. Names end up in file names, store rows and child
//! environments, so each rule is checked here once rather than by every user.
//!
//! Must never: allocate, or accept a name that one of those places would misread.

/// A node's name in the fleet store: the first label of a host name fits.
pub(super) fn valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A credential's name: it names files in the state directory, so no `/` and no leading
/// `.` (no hidden files, no `..`).
pub(super) fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A variable name every shell and `.env` reader agrees on.
pub(super) fn valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
