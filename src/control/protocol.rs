//! What travels on the control socket: one request line, one response line, both JSON.
//! The wire form of a response is `{"ok": true, "status" | "results" | "token": …}` or
//! `{"ok": false, "error": "…"}`; in code it is the [`Response`] enum.
//!
//! A token crosses here only in [`Response::Token`], to the daemon's own user or a reader
//! of that credential ([`crate::access`]).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::access::Issued;
use crate::config::Credential;
use crate::observe::{RotationReply, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Status,
    /// Refresh the named credentials (all when `names` is empty) and wait for the results.
    Rotate {
        names: Vec<String>,
        /// Only if due: pick up what another process (e.g. `refreshd login`) stored, and
        /// refresh only if that is not good enough.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        if_due: bool,
    },
    Token {
        name: String,
        /// Also the token's fields (`refreshd token --format aws-credential-process`): asked
        /// for, so no other answer carries them.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fields: bool,
    },
    /// Answer once any of `names` holds a token other than the one `seen` names (by
    /// fingerprint; a name missing from `seen` counts as changed): `refreshd exec` follows
    /// the daemon's rotations this way.
    Watch {
        names: Vec<String>,
        #[serde(default)]
        seen: BTreeMap<String, String>,
    },
    /// The credentials the caller may read that declare `git` or `docker`: what the
    /// credential helpers match a URL or registry against.
    Helpers,
}

/// A credential a credential helper may answer for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerEntry>,
}

impl HelperEntry {
    /// What a credential helper may answer for `credential`; `None` when it declares
    /// neither `git` nor `docker`.
    pub fn of(credential: &Credential) -> Option<HelperEntry> {
        let access = &credential.access;
        if access.git.is_none() && access.docker.is_none() {
            return None;
        }
        Some(HelperEntry {
            name: credential.name.clone(),
            git: access.git.as_ref().map(|g| GitEntry {
                url: g.url.to_string(),
                username: g.username.clone(),
            }),
            docker: access.docker.as_ref().map(|d| DockerEntry {
                server: d.server.clone(),
                username: d.username.clone(),
            }),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitEntry {
    pub url: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEntry {
    pub server: String,
    pub username: String,
}

/// A token as the daemon hands it out.
pub struct TokenAnswer {
    pub token: SecretString,
    pub token_type: String,
    pub expires_at: OffsetDateTime,
    /// The token's fields, when the request asked for them.
    pub fields: Option<crate::token::Fields>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl From<Issued> for TokenAnswer {
    fn from(issued: Issued) -> TokenAnswer {
        TokenAnswer {
            token: issued.token,
            token_type: issued.token_type.to_owned(),
            expires_at: issued.expires_at,
            fields: None,
        }
    }
}

/// The daemon's answer.
#[derive(Debug)]
pub enum Response {
    Status(Box<Snapshot>),
    Rotated(Vec<RotateOutcome>),
    Token(TokenAnswer),
    /// A `watch`'s answer: the current fingerprint of each watched name.
    Changed(BTreeMap<String, String>),
    Helpers(Vec<HelperEntry>),
    Error(String),
}

/// The result of one credential's `rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateOutcome {
    pub name: String,
    pub ok: bool,
    /// "rotated", "current" or the error.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

impl From<RotationReply> for RotateOutcome {
    fn from(reply: RotationReply) -> RotateOutcome {
        let RotationReply {
            name,
            ok,
            message,
            fingerprint,
            expires_at,
        } = reply;
        RotateOutcome {
            name,
            ok,
            message,
            fingerprint,
            expires_at,
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Snapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<&'a [RotateOutcome]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'a str>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    helpers: Option<&'a [HelperEntry]>,
}

#[derive(Deserialize)]
struct WireIn {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    status: Option<Snapshot>,
    #[serde(default)]
    results: Option<Vec<RotateOutcome>>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    fields: Option<BTreeMap<String, String>>,
    #[serde(default)]
    changed: Option<BTreeMap<String, String>>,
    #[serde(default)]
    helpers: Option<Vec<HelperEntry>>,
}

impl Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut wire = WireOut {
            ok: true,
            error: None,
            status: None,
            results: None,
            token: None,
            token_type: None,
            expires_at: None,
            fields: None,
            changed: None,
            helpers: None,
        };
        match self {
            Response::Status(snapshot) => wire.status = Some(snapshot),
            Response::Rotated(results) => wire.results = Some(results),
            Response::Token(answer) => {
                wire.token = Some(answer.token.expose_secret());
                wire.token_type = Some(&answer.token_type);
                wire.expires_at = Some(answer.expires_at);
                wire.fields = answer.fields.as_ref().map(|fields| {
                    fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.expose_secret()))
                        .collect()
                });
            }
            Response::Changed(changed) => wire.changed = Some(changed),
            Response::Helpers(helpers) => wire.helpers = Some(helpers),
            Response::Error(message) => {
                wire.ok = false;
                wire.error = Some(message);
            }
        }
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        Ok(match wire {
            WireIn {
                ok: false, error, ..
            } => Response::Error(error.unwrap_or_default()),
            WireIn {
                status: Some(snapshot),
                ..
            } => Response::Status(Box::new(snapshot)),
            WireIn {
                results: Some(results),
                ..
            } => Response::Rotated(results),
            WireIn {
                token: Some(token),
                token_type,
                expires_at,
                fields,
                ..
            } => Response::Token(TokenAnswer {
                token: SecretString::from(token),
                token_type: token_type.unwrap_or_else(|| "Bearer".to_owned()),
                // An older daemon's answer carries no expiry; none is claimed.
                expires_at: expires_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                fields: fields.map(|fields| {
                    fields
                        .into_iter()
                        .map(|(k, v)| (k, SecretString::from(v)))
                        .collect()
                }),
            }),
            WireIn {
                changed: Some(changed),
                ..
            } => Response::Changed(changed),
            WireIn {
                helpers: Some(helpers),
                ..
            } => Response::Helpers(helpers),
            WireIn { .. } => {
                return Err(serde::de::Error::custom(
                    "an ok answer without status, results or token",
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_travel_only_when_asked_for() {
        let ask = serde_json::to_string(&Request::Token {
            name: "aws".into(),
            fields: false,
        })
        .unwrap();
        assert_eq!(ask, r#"{"op":"token","name":"aws"}"#);
        let ask: Request =
            serde_json::from_str(r#"{"op":"token","name":"aws","fields":true}"#).unwrap();
        assert!(matches!(ask, Request::Token { fields: true, .. }));
        let answer = Response::Token(TokenAnswer {
            token: SecretString::from("t".to_owned()),
            token_type: "Bearer".into(),
            expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            fields: Some(
                [(
                    "access_key_id".to_owned(),
                    SecretString::from("AK".to_owned()),
                )]
                .into(),
            ),
        });
        let wire = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            wire,
            r#"{"ok":true,"token":"t","token_type":"Bearer","expires_at":"2027-01-15T08:00:00Z","fields":{"access_key_id":"AK"}}"#
        );
        let Response::Token(back) = serde_json::from_str(&wire).unwrap() else {
            panic!("not a token answer");
        };
        assert_eq!(back.fields.unwrap()["access_key_id"].expose_secret(), "AK");
    }

    #[test]
    fn responses_keep_their_wire_form() {
        let error = serde_json::to_value(Response::Error("no".into())).unwrap();
        assert_eq!(error, serde_json::json!({"ok": false, "error": "no"}));
        let token = serde_json::to_string(&Response::Token(TokenAnswer {
            token: SecretString::from("t".to_owned()),
            token_type: "Bearer".into(),
            expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            fields: None,
        }));
        assert_eq!(
            token.unwrap(),
            r#"{"ok":true,"token":"t","token_type":"Bearer","expires_at":"2027-01-15T08:00:00Z"}"#
        );
        let back: Response = serde_json::from_str(r#"{"ok":true,"changed":{"a":"f"}}"#).unwrap();
        assert!(matches!(back, Response::Changed(c) if c["a"] == "f"));
        let back: Response = serde_json::from_str(r#"{"ok":true,"results":[]}"#).unwrap();
        assert!(matches!(back, Response::Rotated(r) if r.is_empty()));
        assert!(serde_json::from_str::<Response>(r#"{"ok":true}"#).is_err());
        let request: Request = serde_json::from_str(r#"{"op":"rotate","names":["a"]}"#).unwrap();
        assert_eq!(
            request,
            Request::Rotate {
                names: vec!["a".into()],
                if_due: false
            }
        );
    }
}
