//! The state file format: the bytes a [`CredentialState`] is stored as, in a file and in
//! the fleet store's sealed rows, its version, and the migration of older versions. One
//! format, read and migrated in this one place.
//!
//! It never touches a file, and an error it returns says where the bytes went wrong, never
//! what they hold (they hold tokens).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::last_error::LastErrorV1;
use super::{CredentialState, LastError};
use crate::token::{ExpirySource, Served, Token};

/// The state file format this build writes. Older versions are migrated on read; newer
/// ones are refused.
///
/// - 1: the first.
/// - 2: a last error holds its `cause`; `uncommitted` (fleet credentials). A state that
///   has neither is still written as 1 (see [`encode`]).
/// - 3: the token's named `fields`. A state without them is written as 2 or 1.
pub const VERSION: u32 = 3;

// The on-disk form. Secrets are plain strings only here, between `load` and `save`.
// Versions differ only in the last error (`E`): 1 had no cause.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "E: Deserialize<'de>"))]
struct File<E> {
    version: u32,
    credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<TokenV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bootstrap_fingerprint: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    last_rotation: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<E>,
    #[serde(default)]
    needs_login: bool,
    #[serde(default)]
    consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncommitted: Option<u64>,
}

impl File<LastErrorV1> {
    /// Version 1 read as version 2: the last error's cause from its message (the one
    /// place text is matched, see [`LastErrorV1::migrate`]); nothing else changed.
    fn migrate(self) -> File<LastError> {
        File {
            version: VERSION,
            credential: self.credential,
            token: self.token,
            refresh_token: self.refresh_token,
            bootstrap_fingerprint: self.bootstrap_fingerprint,
            last_rotation: self.last_rotation,
            last_error: self.last_error.map(LastErrorV1::migrate),
            needs_login: self.needs_login,
            consecutive_failures: self.consecutive_failures,
            store_generation: self.store_generation,
            uncommitted: self.uncommitted,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenV1 {
    access_token: String,
    fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    expiry_source: ExpirySource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
    /// Version 3 on: versions 1 and 2 never hold it, so reading them is unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<String, String>,
}

/// Why bytes are not a state this build can use.
#[derive(Debug)]
pub enum Decode {
    /// Says where, never what: the text holds tokens.
    Invalid(String),
    Newer(u64),
}

/// `state` as its file holds it: also what the fleet store seals, so one format is read
/// and migrated in one place. Written as the lowest version that holds it: a state with
/// neither a last error nor an uncommitted answer (every state the fleet store seals) is
/// version 1, so that a node not yet upgraded still reads what upgraded nodes commit, and a
/// downgraded binary still reads a healthy state file. Only a token with fields makes a
/// version 3 file.
pub fn encode(credential: &str, state: &CredentialState) -> Vec<u8> {
    let version = if state.token.as_ref().is_some_and(|t| !t.fields.is_empty()) {
        VERSION
    } else if state.last_error.is_none() && state.uncommitted.is_none() {
        1
    } else {
        2
    };
    let file = File {
        version,
        credential: credential.to_owned(),
        token: state.token.as_ref().map(|t| TokenV1 {
            access_token: t.access_token.expose_secret().to_owned(),
            fingerprint: t.fingerprint(),
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            expiry_source: t.expiry_source,
            subject: t.subject.clone(),
            issuer: t.issuer.clone(),
            client_id: t.client_id.clone(),
            scopes: t.scopes.clone(),
            served: t.served.clone(),
            fields: t
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), value.expose_secret().to_owned()))
                .collect(),
        }),
        refresh_token: state
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        bootstrap_fingerprint: state.bootstrap_fingerprint.clone(),
        last_rotation: state.last_rotation,
        last_error: state.last_error.clone(),
        needs_login: state.needs_login,
        consecutive_failures: state.consecutive_failures,
        store_generation: state.generation,
        uncommitted: state.uncommitted,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("state serializes");
    bytes.push(b'\n');
    bytes
}

/// The state `bytes` (in the file format) hold for `credential`.
pub fn decode(credential: &str, bytes: &[u8]) -> Result<CredentialState, Decode> {
    // A serde message can quote the text it choked on, and this text holds tokens:
    // say where, never what.
    let shape = |e: serde_json::Error| {
        format!(
            "{:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Decode::Invalid(format!("not JSON ({})", shape(e))))?;
    let file: File<LastError> = match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(1) => parse::<File<LastErrorV1>>(value)?.migrate(),
        Some(2 | 3) => parse(value)?,
        Some(found) if found > u64::from(VERSION) => return Err(Decode::Newer(found)),
        Some(found) => return Err(Decode::Invalid(format!("unknown version {found}"))),
        None => return Err(Decode::Invalid("no `version` field".to_owned())),
    };
    if file.credential != credential {
        return Err(Decode::Invalid(format!(
            "it belongs to credential {:?}",
            file.credential
        )));
    }
    Ok(CredentialState {
        token: file.token.map(|t| Token {
            access_token: SecretString::from(t.access_token),
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            expiry_source: t.expiry_source,
            subject: t.subject,
            issuer: t.issuer,
            client_id: t.client_id,
            scopes: t.scopes,
            served: t.served,
            fields: t
                .fields
                .into_iter()
                .map(|(name, value)| (name, SecretString::from(value)))
                .collect(),
        }),
        refresh_token: file.refresh_token.map(SecretString::from),
        bootstrap_fingerprint: file.bootstrap_fingerprint,
        last_rotation: file.last_rotation,
        last_error: file.last_error,
        needs_login: file.needs_login,
        consecutive_failures: file.consecutive_failures,
        generation: file.store_generation,
        uncommitted: file.uncommitted,
    })
}

/// One version's file; says where it does not fit, never what is there.
fn parse<F: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<F, Decode> {
    serde_json::from_value(value).map_err(|e| {
        Decode::Invalid(format!(
            "not a state file refreshd wrote ({:?} data in a field)",
            e.classify()
        ))
    })
}
