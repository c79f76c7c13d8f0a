//! A notification as a sink receives it: refreshd's own versioned JSON (stable: fields are
//! only ever added, and a change of meaning takes a new `version`), or one line of text for
//! Slack and Teams, or `REFRESHD_*` variables for a command.
//!
//! Must never: hold a token, a refresh token, a client secret or a webhook URL. An event is
//! built from a status line (health, counts, times, error words), which holds none.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::EventKind;
use crate::token;

/// The version of the event's shape; the README documents it.
pub const VERSION: u32 = 1;

/// Why the last attempt failed, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The cause's word (`invalid_grant`, `network`, `provider_unavailable`…).
    pub class: &'static str,
    /// refreshd's one line about it.
    pub message: String,
    /// The provider's own words (`error_description`), when it sent some.
    pub description: Option<String>,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub version: u32,
    #[serde(serialize_with = "kind_word")]
    pub kind: EventKind,
    /// `null` for the store's events.
    pub credential: Option<String>,
    pub node: String,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub consecutive_failures: u32,
    /// The same state told again after `repeat`.
    pub reminder: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

fn kind_word<S: serde::Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

impl Event {
    /// refreshd's own body.
    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    /// `{"text": "…"}` for Slack and Teams incoming webhooks.
    pub fn slack(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "text": self.text() }))
            .expect("a string always serializes")
    }

    /// One line for a person.
    pub fn text(&self) -> String {
        let subject = match &self.credential {
            Some(name) => format!("credential `{name}`"),
            None => "the fleet store".to_owned(),
        };
        let what = match self.kind {
            EventKind::Failing => format!(
                "is failing to refresh ({} attempt{} in a row)",
                self.consecutive_failures,
                if self.consecutive_failures == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            EventKind::Recovered => "has recovered".to_owned(),
            EventKind::LoginNeeded => "needs a new login (`refreshd login`)".to_owned(),
            EventKind::Expiring => "has no valid token and refreshes keep failing".to_owned(),
            EventKind::StoreUnreachable => "is unreachable".to_owned(),
            EventKind::ReloadStopped => "stopped its rolling reload".to_owned(),
        };
        let mut line = format!(
            "{}refreshd on {}: {subject} {what}",
            if self.reminder { "Reminder: " } else { "" },
            self.node
        );
        if let Some(error) = &self.error {
            line.push_str(&format!(": {error}"));
        }
        if let (Some(at), true) = (self.expires_at, self.kind != EventKind::Recovered) {
            line.push_str(&format!(" (token expires {})", token::rfc3339(at)));
        }
        line
    }

    /// The variables a command sink gets besides the event on stdin.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("REFRESHD_EVENT".to_owned(), self.kind.as_str().to_owned()),
            ("REFRESHD_NODE".to_owned(), self.node.clone()),
        ];
        if let Some(name) = &self.credential {
            env.push(("REFRESHD_CREDENTIAL".to_owned(), name.clone()));
        }
        if let Some(error) = &self.error {
            env.push(("REFRESHD_ERROR".to_owned(), error.clone()));
        }
        if let Some(class) = self.error_class {
            env.push(("REFRESHD_ERROR_CLASS".to_owned(), class.to_owned()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_1_shape_has_every_key_always() {
        let event = Event {
            version: VERSION,
            kind: EventKind::LoginNeeded,
            credential: Some("api".into()),
            node: "web-1".into(),
            error_class: Some("invalid_grant"),
            error: Some("https://idp/token answered HTTP 400 invalid_grant: grant revoked".into()),
            error_description: Some("grant revoked".into()),
            expires_at: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()),
            consecutive_failures: 1,
            reminder: false,
            at: OffsetDateTime::from_unix_timestamp(1_799_999_000).unwrap(),
        };
        let json: serde_json::Value = serde_json::from_slice(&event.json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1,
                "kind": "login_needed",
                "credential": "api",
                "node": "web-1",
                "error_class": "invalid_grant",
                "error": "https://idp/token answered HTTP 400 invalid_grant: grant revoked",
                "error_description": "grant revoked",
                "expires_at": "2027-01-15T08:00:00Z",
                "consecutive_failures": 1,
                "reminder": false,
                "at": "2027-01-15T07:43:20Z",
            })
        );
        let store = Event {
            kind: EventKind::StoreUnreachable,
            credential: None,
            error_class: None,
            error_description: None,
            expires_at: None,
            ..event.clone()
        };
        let json: serde_json::Value = serde_json::from_slice(&store.json()).unwrap();
        assert_eq!(json["credential"], serde_json::Value::Null);
        assert_eq!(json["expires_at"], serde_json::Value::Null);
        let slack: serde_json::Value = serde_json::from_slice(&event.slack()).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("refreshd on web-1: credential `api` needs a new login"),
            "{text}"
        );
        assert_eq!(slack.as_object().unwrap().len(), 1);
    }
}
