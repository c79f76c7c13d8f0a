//! A source's secret references read when a request needs them (files re-read every time:
//! they rotate), each error naming the key the secret sits under, never its value.

use secrecy::SecretString;

use super::SourceError;
use crate::secret::SecretRef;

/// The secret `secret`, configured under `key`.
pub(super) fn resolve(key: &'static str, secret: &SecretRef) -> Result<SecretString, SourceError> {
    secret
        .resolve()
        .map_err(|source| SourceError::Secret { key, source })
}
