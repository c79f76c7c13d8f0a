//! Secret references: where a client secret, refresh token or private key comes from
//! (`{ env }`, `{ file }`, `{ systemd }` or an inline string) and how it is read.
//!
//! A resolved value is only ever held as a [`SecretString`]; this module never logs,
//! formats or returns a secret's value inside an error. A secret file is read as
//! [`crate::secure_read`] reads: no one else's symlink followed, regular files only, at most
//! [`SECRET_LIMIT`] bytes, off the async workers.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::secure_read::{self, SECRET_LIMIT};
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Where a secret lives. `Debug` never shows an inline value.
#[derive(Clone)]
pub enum SecretRef {
    /// An environment variable of the refreshd process.
    Env(String),
    /// A file; one trailing newline is dropped.
    File(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`.
    Systemd(String),
    /// Written in the config itself: allowed only when the config is private to its owner.
    Inline(SecretString),
}

/// Inline values compare by content (a config reload must notice a changed secret); the
/// comparison is not constant-time, which is fine: both sides come from the config file.
impl Eq for SecretRef {}

impl PartialEq for SecretRef {
    fn eq(&self, other: &SecretRef) -> bool {
        use secrecy::ExposeSecret;
        match (self, other) {
            (SecretRef::Env(a), SecretRef::Env(b)) => a == b,
            (SecretRef::File(a), SecretRef::File(b)) => a == b,
            (SecretRef::Systemd(a), SecretRef::Systemd(b)) => a == b,
            (SecretRef::Inline(a), SecretRef::Inline(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "{{ env = {name:?} }}"),
            SecretRef::File(path) => write!(f, "{{ file = {path:?} }}"),
            SecretRef::Systemd(name) => write!(f, "{{ systemd = {name:?} }}"),
            SecretRef::Inline(_) => f.write_str("\"[inline secret]\""),
        }
    }
}

/// Why a secret could not be read. Names the reference, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (or not valid UTF-8)")]
    EnvMissing(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    Empty(PathBuf),
    #[error(
        "systemd credential {0}: $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
    )]
    NoCredentialsDirectory(String),
}

impl SecretRef {
    /// Reads the secret now. Files are read on every call so a rotated secret file is
    /// picked up without a restart; on a multi-threaded runtime's worker the read hands the
    /// worker's other tasks to another thread first.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| SecretError::EnvMissing(name.clone())),
            SecretRef::File(path) => read_secret_file(path),
            SecretRef::Systemd(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDirectory(name.clone()))?;
                read_secret_file(&Path::new(&dir).join(name))
            }
            SecretRef::Inline(value) => Ok(value.clone()),
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self, SecretRef::Inline(_))
    }
}

fn read_secret_file(path: &Path) -> Result<SecretString, SecretError> {
    let file_error = |source| SecretError::File {
        path: path.to_path_buf(),
        source,
    };
    let bytes = secure_read::read(path, SECRET_LIMIT).map_err(file_error)?;
    // The error names the file only: a UTF-8 error's message would say nothing of the value,
    // but the bytes stay here all the same.
    let mut text = String::from_utf8(bytes).map_err(|_| {
        file_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "is not UTF-8 text",
        ))
    })?;
    // Files written by `echo` or an editor end in a newline that is not part of the secret.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretError::Empty(path.to_path_buf()));
    }
    Ok(SecretString::from(text))
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference: { env = \"NAME\" }, { file = \"/path\" }, { systemd = \"NAME\" } or a string")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretRef, E> {
                if value.is_empty() {
                    return Err(E::custom("an inline secret must not be empty"));
                }
                Ok(SecretRef::Inline(SecretString::from(value)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty secret reference: use { env = \"NAME\" }, { file = \"/path\" } or { systemd = \"NAME\" }",
                    ));
                };
                let value: String = map.next_value()?;
                if value.is_empty() {
                    return Err(de::Error::custom(format!("`{kind}` must not be empty")));
                }
                let secret = match kind.as_str() {
                    "env" => SecretRef::Env(value),
                    "file" => SecretRef::File(PathBuf::from(value)),
                    "systemd" => SecretRef::Systemd(value),
                    other => {
                        return Err(de::Error::unknown_field(other, &["env", "file", "systemd"]));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a secret reference takes exactly one of `env`, `file`, `systemd` (found `{kind}` and `{extra}`)"
                    )));
                }
                Ok(secret)
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[derive(Deserialize)]
    struct Holder {
        s: SecretRef,
    }

    fn parse(text: &str) -> Result<SecretRef, toml::de::Error> {
        toml::from_str::<Holder>(text).map(|h| h.s)
    }

    #[test]
    fn parses_every_form_and_hides_inline_values() {
        assert!(matches!(parse("s = { env = \"X\" }").unwrap(), SecretRef::Env(n) if n == "X"));
        assert!(
            matches!(parse("s = { file = \"/a\" }").unwrap(), SecretRef::File(p) if p == Path::new("/a"))
        );
        assert!(
            matches!(parse("s = { systemd = \"c\" }").unwrap(), SecretRef::Systemd(n) if n == "c")
        );
        let inline = parse("s = \"hunter2\"").unwrap();
        assert!(!format!("{inline:?}").contains("hunter2"));
        assert_eq!(inline.resolve().unwrap().expose_secret(), "hunter2");
    }

    #[test]
    fn rejects_unknown_and_double_references() {
        assert!(
            parse("s = { vault = \"x\" }")
                .unwrap_err()
                .to_string()
                .contains("vault")
        );
        let err = parse("s = { env = \"A\", file = \"/b\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one"), "{err}");
    }

    #[test]
    fn file_secret_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\r\n").unwrap();
        let value = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(value.expose_secret(), "abc");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            SecretRef::File(path).resolve(),
            Err(SecretError::Empty(_))
        ));
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = SecretRef::File(fifo).resolve().unwrap_err().to_string();
        assert!(err.contains("is a FIFO"), "{err}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = SecretRef::File(zero).resolve().unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
    }
}
