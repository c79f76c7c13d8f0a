//! The secret an `azure-managed-identity` endpoint expects back in `X-IDENTITY-HEADER`: 32
//! random bytes, hex, one file per credential beside its state (`NAME.identity-header`,
//! 0600). Kept across restarts, so the apps that read it once keep working; made once,
//! never overwritten.
//!
//! Never logs the secret, never follows a symlink to it, and never replaces one that is
//! there: a second maker finds the first one's.

use std::io;

use secrecy::SecretString;

use super::{StateDir, StateError};
use crate::durable::{self, Attributes};

/// 32 bytes as hex.
const LEN: usize = 64;

impl StateDir {
    /// `credential`'s App Service secret, made on first use.
    pub fn identity_header(&self, credential: &str) -> Result<SecretString, StateError> {
        let name = format!("{credential}.identity-header");
        let path = self.path.join(&name);
        let err = |source: io::Error| StateError::Io {
            path: path.clone(),
            source,
        };
        let dir = self.dir_to_write()?;
        // Twice at most: if another maker wins the race to create it, its secret is read.
        for _ in 0..2 {
            let place = dir
                .place(name.as_ref())
                .map_err(|e| err(io::Error::from(e)))?;
            if place.existing.is_some() {
                let (mut file, _) = durable::open_existing(&place, false).map_err(err)?;
                let bytes = durable::read_bounded(&mut file, LEN as u64 + 1).map_err(err)?;
                return parse(&bytes).ok_or_else(|| StateError::Invalid {
                    path: path.clone(),
                    reason: format!(
                        "not {LEN} hex digits; remove it to have a new secret made (apps then need the new one)"
                    ),
                });
            }
            let secret = fresh().map_err(err)?;
            let attributes = Attributes {
                mode: 0o600,
                owner: None,
            };
            if durable::create_at(&place, secret.as_bytes(), attributes).map_err(err)? {
                return Ok(SecretString::from(secret));
            }
        }
        Err(err(io::Error::other(
            "it keeps appearing and vanishing while refreshd makes it",
        )))
    }
}

fn fresh() -> io::Result<String> {
    let mut bytes = [0u8; LEN / 2];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn parse(bytes: &[u8]) -> Option<SecretString> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    (text.len() == LEN && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_secret_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let first = state.identity_header("app").unwrap();
        assert_eq!(first.expose_secret().len(), LEN);
        let path = dir.path().join("state/app.identity-header");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A restart (a new StateDir) finds the same one; another credential gets its own.
        let again = StateDir::new(dir.path().join("state"));
        assert_eq!(
            again.identity_header("app").unwrap().expose_secret(),
            first.expose_secret()
        );
        assert_ne!(
            again.identity_header("other").unwrap().expose_secret(),
            first.expose_secret()
        );
        // A damaged file is refused, not replaced behind the apps' backs.
        std::fs::write(&path, "short").unwrap();
        let err = again.identity_header("app").unwrap_err().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
    }

    #[test]
    fn a_symlink_in_its_place_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "a".repeat(LEN)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("state/app.identity-header"))
            .unwrap();
        assert!(state.identity_header("app").is_err());
    }
}
