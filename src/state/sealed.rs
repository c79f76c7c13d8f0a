//! Sealed state files (`[daemon] state_key`): a state file's bytes, the whole serialized
//! state, sealed with [`crate::seal`] for its credential's name, after a line that says so.
//! With a key, every write seals; a plain file is still read, and sealed at its next write.
//! Without one, a sealed file is refused, never guessed at.
//!
//! Never logs, formats or returns the key or the bytes a file opens to; an error names the
//! file, never what it holds.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use secrecy::SecretBox;

use super::StateError;
use crate::seal::{Binding, Key};
use crate::secret::SecretRef;

/// What a sealed state file starts with: readable by `head`, and never the start of a
/// plain one (JSON starts with `{`).
pub const MAGIC: &[u8] = b"refreshd sealed state v1\n";

/// The state key: where it comes from, read once on first use (or by [`StateKey::resolve`]
/// at start-up, so that an unreadable key stops the daemon before anything is done).
pub struct StateKey {
    reference: SecretRef,
    resolved: OnceLock<Arc<Key>>,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateKey")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl StateKey {
    pub fn new(reference: SecretRef) -> StateKey {
        StateKey {
            reference,
            resolved: OnceLock::new(),
        }
    }

    /// The key, read now if it was not yet.
    pub fn resolve(&self) -> Result<Arc<Key>, StateError> {
        if let Some(key) = self.resolved.get() {
            return Ok(key.clone());
        }
        let text = self.reference.resolve().map_err(StateError::KeySecret)?;
        let key = Arc::new(Key::from_base64(&text)?);
        Ok(self.resolved.get_or_init(|| key).clone())
    }
}

/// Whether `bytes` are a sealed state file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// `plain` (a state file's bytes) as the sealed file of `credential`.
pub fn seal(key: &Key, credential: &str, plain: &[u8]) -> Vec<u8> {
    let sealed = key.seal(&Binding::state(credential), plain);
    let mut file = Vec::with_capacity(MAGIC.len() + sealed.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&sealed);
    file
}

/// The plain bytes of `credential`'s sealed state file `file`, read from `path`; refused,
/// naming the file, when the key does not open it for this credential.
pub fn open(
    key: &Key,
    credential: &str,
    path: &Path,
    file: &[u8],
) -> Result<SecretBox<Vec<u8>>, StateError> {
    let unopenable = || StateError::Unopenable {
        path: path.to_owned(),
    };
    let sealed = file.strip_prefix(MAGIC).ok_or_else(unopenable)?;
    key.open(&Binding::state(credential), sealed)
        .map_err(|_| unopenable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    fn key() -> Key {
        Key::from_base64(&Key::generate()).unwrap()
    }

    fn opens(key: &Key, credential: &str, file: &[u8]) -> Option<Vec<u8>> {
        open(key, credential, Path::new("/s/x.json"), file)
            .ok()
            .map(|plain| plain.expose_secret().clone())
    }

    #[test]
    fn a_sealed_file_is_recognisable_and_a_plain_one_is_not() {
        let file = seal(&key(), "db", b"{\"version\": 1}\n");
        assert!(is_sealed(&file));
        assert!(!is_sealed(b"{\"version\": 1}\n"));
        assert!(!is_sealed(b""));
    }

    #[test]
    fn the_error_names_the_file_and_says_what_to_do() {
        let file = seal(&key(), "db", b"{}");
        let err = open(&key(), "db", Path::new("/var/lib/refreshd/db.json"), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/var/lib/refreshd/db.json"), "{err}");
        assert!(err.contains("state_key"), "{err}");
    }

    proptest! {
        #[test]
        fn sealed_state_opens_only_with_its_key_and_name_and_whole(
            plain in proptest::collection::vec(any::<u8>(), 16..2048),
            name in "[a-z][a-z0-9_-]{0,20}",
            other in "[a-z][a-z0-9_-]{0,20}",
            cut in any::<usize>(),
            flip in any::<usize>(),
        ) {
            let (key, wrong) = (key(), key());
            let file = seal(&key, &name, &plain);
            prop_assert!(is_sealed(&file));
            // Nothing of the state is readable in the file.
            prop_assert!(!file.windows(plain.len()).any(|w| w == plain.as_slice()));
            prop_assert_eq!(opens(&key, &name, &file), Some(plain.clone()));
            prop_assert_eq!(opens(&wrong, &name, &file), None);
            if other != name {
                prop_assert_eq!(opens(&key, &other, &file), None);
            }
            // Truncated anywhere, or changed anywhere after the magic line: refused.
            prop_assert_eq!(opens(&key, &name, &file[..cut % file.len()]), None);
            let mut changed = file.clone();
            let at = MAGIC.len() + flip % (changed.len() - MAGIC.len());
            changed[at] ^= 0x20;
            prop_assert_eq!(opens(&key, &name, &changed), None);
        }
    }
}
