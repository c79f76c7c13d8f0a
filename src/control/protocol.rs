//! What travels on the control socket: one request line, one response line, both JSON.
//! The wire form of a response is `{"ok": true, "status" | "results" | "token": …}` or
//! `{"ok": false, "error": "…"}`; in code it is the [`Response`] enum.
//!
//! A token crosses here only in [`Response::Token`], to the daemon's own user.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    },
}

/// The daemon's answer.
#[derive(Debug)]
pub enum Response {
    Status(Box<Snapshot>),
    Rotated(Vec<RotateOutcome>),
    Token(SecretString),
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
}

impl Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut wire = WireOut {
            ok: true,
            error: None,
            status: None,
            results: None,
            token: None,
        };
        match self {
            Response::Status(snapshot) => wire.status = Some(snapshot),
            Response::Rotated(results) => wire.results = Some(results),
            Response::Token(token) => wire.token = Some(token.expose_secret()),
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
                token: Some(token), ..
            } => Response::Token(SecretString::from(token)),
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
    fn responses_keep_their_wire_form() {
        let error = serde_json::to_value(Response::Error("no".into())).unwrap();
        assert_eq!(error, serde_json::json!({"ok": false, "error": "no"}));
        let token = serde_json::to_string(&Response::Token(SecretString::from("t".to_owned())));
        assert_eq!(token.unwrap(), r#"{"ok":true,"token":"t"}"#);
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
