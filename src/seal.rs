//! The seal: AES-256-GCM (aws-lc-rs) over a credential's state, bound to what it is for (a
//! fleet store row or a state file), the credential's name and, in the store, the
//! generation; so the database, its backups and the state directory never hold a usable
//! token, and a sealed state copied to another row, generation, file or purpose does not open.
//! One key type and one seal for the fleet store (`[daemon] store.key`) and the state
//! directory (`[daemon] state_key`).
//!
//! Never logs or formats a key or an opened state; an error says that a value did not open,
//! never what it holds (its callers say which credential or file).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};

/// The key's length: AES-256.
pub const KEY_LEN: usize = 32;

/// The least a sealed value adds to what it seals: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not base64 of 32 bytes (make one with `refreshd store init-key`)")]
    Shape,
}

/// A sealed value did not open: another key sealed it, it was changed, or it was sealed for
/// another binding. The caller says which value.
#[derive(Debug, thiserror::Error)]
#[error("the key does not open it")]
pub struct Unopenable;

/// What a sealed value is for: the first part of what it is bound to, so that a value sealed
/// for one purpose never opens as another's, even under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A fleet store row (and the store's key check).
    Store,
    /// A state file in the state directory.
    State,
}

impl Purpose {
    /// Names the format, so a later one cannot be confused with it. The store's is what
    /// rows already written were bound to: it never changes.
    fn format(self) -> &'static [u8] {
        match self {
            Purpose::Store => b"refreshd/store/v1\0",
            Purpose::State => b"refreshd/state/v1\0",
        }
    }
}

/// What a sealed value is bound to: it opens only for exactly this.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub purpose: Purpose,
    pub credential: &'a str,
    /// The store's generation; 0 for a state file (a file has one version at a time).
    pub generation: u64,
}

impl<'a> Binding<'a> {
    /// A fleet store row of `credential` at `generation`.
    pub fn store(credential: &'a str, generation: u64) -> Binding<'a> {
        Binding {
            purpose: Purpose::Store,
            credential,
            generation,
        }
    }

    /// The state file of `credential`.
    pub fn state(credential: &'a str) -> Binding<'a> {
        Binding {
            purpose: Purpose::State,
            credential,
            generation: 0,
        }
    }

    /// The associated data: the format, the credential's name and the generation,
    /// unambiguous (a name holds no NUL).
    fn associated(&self) -> Vec<u8> {
        let format = self.purpose.format();
        let mut aad = Vec::with_capacity(format.len() + self.credential.len() + 9);
        aad.extend_from_slice(format);
        aad.extend_from_slice(self.credential.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.generation.to_be_bytes());
        aad
    }
}

/// A seal key. `Debug` shows nothing of it.
pub struct Key(LessSafeKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key([hidden])")
    }
}

impl Key {
    /// The key written as base64 (surrounding whitespace ignored).
    pub fn from_base64(text: &SecretString) -> Result<Key, KeyError> {
        let bytes = SecretBox::new(Box::new(
            STANDARD
                .decode(text.expose_secret().trim())
                .map_err(|_| KeyError::Shape)?,
        ));
        if bytes.expose_secret().len() != KEY_LEN {
            return Err(KeyError::Shape);
        }
        let key =
            UnboundKey::new(&AES_256_GCM, bytes.expose_secret()).map_err(|_| KeyError::Shape)?;
        Ok(Key(LessSafeKey::new(key)))
    }

    /// A new random key, as base64 (`refreshd store init-key`).
    pub fn generate() -> SecretString {
        let mut bytes = SecretBox::new(Box::new([0u8; KEY_LEN]));
        getrandom::fill(bytes.expose_secret_mut()).expect("the system has a random source");
        SecretString::from(STANDARD.encode(bytes.expose_secret()))
    }

    /// `plain` sealed for `binding`: a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, binding: &Binding<'_>, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the system has a random source");
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(NONCE_LEN);
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(binding.associated()),
                &mut body,
            )
            .expect("AES-GCM seals any input under 64 GiB");
        out.extend_from_slice(&body);
        out
    }

    /// What [`Key::seal`] sealed for exactly this `binding`.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, Unopenable> {
        if sealed.len() < OVERHEAD {
            return Err(Unopenable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unopenable)?;
        let mut body = SecretBox::new(Box::new(body.to_vec()));
        let len = self
            .0
            .open_in_place(
                nonce,
                Aad::from(binding.associated()),
                body.expose_secret_mut(),
            )
            .map_err(|_| Unopenable)?
            .len();
        body.expose_secret_mut().truncate(len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Key {
        Key::from_base64(&Key::generate()).unwrap()
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        for bad in [
            "",
            "not base64!",
            &STANDARD.encode([0u8; 31]),
            &STANDARD.encode([0u8; 33]),
        ] {
            assert!(
                Key::from_base64(&SecretString::from(bad)).is_err(),
                "{bad:?}"
            );
        }
        let padded = format!("  {}\n", STANDARD.encode([7u8; 32]));
        assert!(Key::from_base64(&SecretString::from(padded)).is_ok());
    }

    #[test]
    fn another_key_name_or_generation_does_not_open() {
        let (a, b) = (key(), key());
        let sealed = a.seal(&Binding::store("db", 7), b"refresh-token");
        assert_eq!(
            a.open(&Binding::store("db", 7), &sealed)
                .unwrap()
                .expose_secret(),
            b"refresh-token"
        );
        assert!(b.open(&Binding::store("db", 7), &sealed).is_err());
        assert!(a.open(&Binding::store("db2", 7), &sealed).is_err());
        assert!(a.open(&Binding::store("db", 8), &sealed).is_err());
        assert!(a.open(&Binding::store("db", 7), &sealed[..10]).is_err());
        // A store row's seal never opens as a state file's, nor the other way round.
        assert!(a.open(&Binding::state("db"), &sealed).is_err());
        let file = a.seal(&Binding::state("db"), b"refresh-token");
        assert!(a.open(&Binding::store("db", 0), &file).is_err());
        assert!(a.open(&Binding::state("db"), &file).is_ok());
    }

    proptest! {
        #[test]
        fn seal_then_open_is_identity_and_never_shows_the_plaintext(
            plain in proptest::collection::vec(any::<u8>(), 16..512),
            generation in any::<u64>(),
            flip in any::<usize>(),
        ) {
            let key = key();
            let binding = Binding::store("c", generation);
            let sealed = key.seal(&binding, &plain);
            prop_assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
            let opened = key.open(&binding, &sealed).unwrap();
            prop_assert_eq!(opened.expose_secret(), &plain);
            let mut changed = sealed.clone();
            let i = flip % changed.len();
            changed[i] ^= 1;
            prop_assert!(key.open(&binding, &changed).is_err());
        }
    }
}
