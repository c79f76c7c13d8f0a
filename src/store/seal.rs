//! The store key and what it does: AES-256-GCM (aws-lc-rs) over each credential's state,
//! bound to the credential's name and generation, so the database and its backups never
//! hold a usable token, and a sealed state copied to another row or generation does not open.
//!
//! Never logs or formats a key or an opened state; an error says which credential, never what.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};

/// The key's length: AES-256.
pub const KEY_LEN: usize = 32;

/// The associated data's prefix: names this format, so a later one cannot be confused with it.
const FORMAT: &[u8] = b"refreshd/store/v1\0";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the store key is not base64 of 32 bytes (make one with `refreshd store init-key`)")]
    Shape,
}

/// A sealed value did not open: another key sealed it, or it was changed or moved.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store key does not open the state of {credential} (generation {generation}): the store was written with another key, or the row was altered; check [daemon] store.key against the other hosts'"
)]
pub struct Unopenable {
    pub credential: String,
    pub generation: u64,
}

/// The store key. `Debug` shows nothing of it.
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

    /// `plain` sealed for `credential` at `generation`: a random nonce, then the ciphertext
    /// and its tag.
    pub fn seal(&self, credential: &str, generation: u64, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the system has a random source");
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(NONCE_LEN);
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(credential, generation)),
                &mut body,
            )
            .expect("AES-GCM seals any input under 64 GiB");
        out.extend_from_slice(&body);
        out
    }

    /// What [`Key::seal`] sealed for exactly this `credential` and `generation`.
    pub fn open(
        &self,
        credential: &str,
        generation: u64,
        sealed: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, Unopenable> {
        let unopenable = || Unopenable {
            credential: credential.to_owned(),
            generation,
        };
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(unopenable());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unopenable())?;
        let mut body = body.to_vec();
        let len = self
            .0
            .open_in_place(
                nonce,
                Aad::from(associated(credential, generation)),
                &mut body,
            )
            .map_err(|_| unopenable())?
            .len();
        body.truncate(len);
        Ok(SecretBox::new(Box::new(body)))
    }
}

/// The associated data: the format, the credential's name and the generation, unambiguous
/// (a name holds no NUL).
fn associated(credential: &str, generation: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FORMAT.len() + credential.len() + 9);
    aad.extend_from_slice(FORMAT);
    aad.extend_from_slice(credential.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
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
        let sealed = a.seal("db", 7, b"refresh-token");
        assert_eq!(
            a.open("db", 7, &sealed).unwrap().expose_secret(),
            b"refresh-token"
        );
        assert!(b.open("db", 7, &sealed).is_err());
        assert!(a.open("db2", 7, &sealed).is_err());
        assert!(a.open("db", 8, &sealed).is_err());
        assert!(a.open("db", 7, &sealed[..10]).is_err());
    }

    proptest! {
        #[test]
        fn seal_then_open_is_identity_and_never_shows_the_plaintext(
            plain in proptest::collection::vec(any::<u8>(), 16..512),
            generation in any::<u64>(),
            flip in any::<usize>(),
        ) {
            let key = key();
            let sealed = key.seal("c", generation, &plain);
            prop_assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
            let opened = key.open("c", generation, &sealed).unwrap();
            prop_assert_eq!(opened.expose_secret(), &plain);
            let mut changed = sealed.clone();
            let i = flip % changed.len();
            changed[i] ^= 1;
            prop_assert!(key.open("c", generation, &changed).is_err());
        }
    }
}
