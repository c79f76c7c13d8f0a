//! `[[notify]]`: raw → typed. A sink is a `webhook` (its URL a secret reference: a Slack or
//! Teams hook is a credential of its own) or a `command`, with the events it wants, the
//! credentials it cares about, and when a run of failures is worth telling.
//!
//! Must never: resolve the URL, send anything or start a program; that is
//! [`crate::notify`]'s job.

use std::collections::BTreeSet;
use std::time::Duration;

use super::locate::Doc;
use super::raw::RawNotify;
use super::{ConfigError, Credential};
use crate::secret::SecretRef;

/// What a notification is about; each is told once when it starts (see [`crate::notify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// Refreshes fail: `after` of them in a row, or with less than `min_remaining` left.
    Failing,
    /// A refresh worked again after one of the others (or the store answers again).
    Recovered,
    /// The provider refused the grant for good: a person must log in again.
    LoginNeeded,
    /// The token ran out and no refresh has worked since.
    Expiring,
    /// The fleet store does not answer.
    StoreUnreachable,
    /// A rolling reload stopped: a node's reload or health check failed, so the nodes after
    /// it hold the new token without reloading their apps.
    ReloadStopped,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Failing,
        EventKind::Recovered,
        EventKind::LoginNeeded,
        EventKind::Expiring,
        EventKind::StoreUnreachable,
        EventKind::ReloadStopped,
    ];

    /// The word the config and the event's `kind` use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failing => "failing",
            EventKind::Recovered => "recovered",
            EventKind::LoginNeeded => "login_needed",
            EventKind::Expiring => "expiring",
            EventKind::StoreUnreachable => "store_unreachable",
            EventKind::ReloadStopped => "reload_stopped",
        }
    }

    fn parse(word: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// How a webhook's body looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// refreshd's own versioned event (the README's "Notifications" documents it).
    Refreshd,
    /// `{"text": "…"}`: what Slack and Microsoft Teams incoming webhooks take.
    Slack,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Webhook {
        url: SecretRef,
        format: WebhookFormat,
    },
    /// Never empty.
    Command { argv: Vec<String> },
}

/// One `[[notify]]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySink {
    /// `name`, else `notify[i]`: the `sink` label of the metrics and the log.
    pub name: String,
    pub kind: SinkKind,
    pub events: BTreeSet<EventKind>,
    /// `None`: every credential.
    pub credentials: Option<BTreeSet<String>>,
    /// Consecutive failures before `failing` is told.
    pub after: u32,
    /// With less than this left on the token, one failure is enough for `failing`.
    pub min_remaining: Option<Duration>,
    /// A reminder this often while a state lasts; `None`: no reminders.
    pub repeat: Option<Duration>,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// Line of the table, for messages.
    pub line: usize,
}

/// Defaults: three failures in a row are a problem (one is a blip that the next retry
/// usually clears); a delivery that takes longer than this is not coming back.
pub const DEFAULT_AFTER: u32 = 3;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl NotifySink {
    /// Whether this sink wants events of `credential` (store events name none).
    pub fn wants(&self, kind: EventKind, credential: Option<&str>) -> bool {
        self.events.contains(&kind)
            && match (&self.credentials, credential) {
                (Some(names), Some(name)) => names.contains(name),
                _ => true,
            }
    }
}

impl Doc<'_> {
    pub(super) fn notify_sinks(
        &self,
        raw: Vec<toml::Spanned<RawNotify>>,
        credentials: &[std::sync::Arc<Credential>],
    ) -> Result<Vec<NotifySink>, ConfigError> {
        let mut names = BTreeSet::new();
        let mut sinks = Vec::with_capacity(raw.len());
        for (i, spanned) in raw.into_iter().enumerate() {
            let start = spanned.span().start;
            let sink = self.notify_sink(i, start, spanned.into_inner(), credentials)?;
            if !names.insert(sink.name.clone()) {
                return Err(self.error(
                    start,
                    format!("notify[{i}].name"),
                    format!("{:?} names another sink too: names must differ", sink.name),
                ));
            }
            sinks.push(sink);
        }
        Ok(sinks)
    }

    fn notify_sink(
        &self,
        i: usize,
        start: usize,
        raw: RawNotify,
        credentials: &[std::sync::Arc<Credential>],
    ) -> Result<NotifySink, ConfigError> {
        let key = format!("notify[{i}]");
        let error =
            |field: &str, message: String| self.error(start, format!("{key}.{field}"), message);
        let name = raw.name.clone().unwrap_or_else(|| key.clone());
        if name.is_empty() || name == "on_failure" || name.chars().any(char::is_control) {
            return Err(error(
                "name",
                format!("{name:?} cannot name a sink (empty, reserved or with control characters)"),
            ));
        }
        let kind = self.sink_kind(&raw, &error)?;
        let events = match raw.events {
            None => EventKind::ALL.into_iter().collect(),
            Some(words) => words
                .iter()
                .map(|w| {
                    EventKind::parse(w).ok_or_else(|| {
                        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                        error(
                            "events",
                            format!("unknown event {w:?}: one of {}", known.join(", ")),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(listed) = &raw.credentials
            && let Some(unknown) = listed.iter().find(|n| {
                credentials
                    .binary_search_by(|c| c.name.as_str().cmp(n))
                    .is_err()
            })
        {
            return Err(error(
                "credentials",
                format!("{unknown:?} is not a configured credential"),
            ));
        }
        let after = raw.after.unwrap_or(DEFAULT_AFTER);
        if after == 0 {
            return Err(error("after", "must be at least 1".to_owned()));
        }
        if raw.repeat.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(error("repeat", "must be at least 1s".to_owned()));
        }
        let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() || timeout > super::MAX_TIMEOUT {
            return Err(error(
                "timeout",
                format!(
                    "must be longer than zero and at most {}s",
                    super::MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(NotifySink {
            name,
            kind,
            events,
            credentials: raw.credentials.map(|names| names.into_iter().collect()),
            after,
            min_remaining: raw.min_remaining,
            repeat: raw.repeat,
            timeout,
            line: self.line(start),
        })
    }

    fn sink_kind(
        &self,
        raw: &RawNotify,
        error: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<SinkKind, ConfigError> {
        match raw.kind.as_str() {
            "webhook" => {
                if raw.argv.is_some() {
                    return Err(error("argv", "only a `command` sink has argv".to_owned()));
                }
                let Some(url) = raw.url.clone() else {
                    return Err(error(
                        "url",
                        "a webhook needs `url` (a secret: { env = \"…\" }, { file = \"…\" }, { systemd = \"…\" } or inline)".to_owned(),
                    ));
                };
                let format = match raw.format.as_deref() {
                    None | Some("refreshd") => WebhookFormat::Refreshd,
                    Some("slack") => WebhookFormat::Slack,
                    Some(other) => {
                        return Err(error(
                            "format",
                            format!("unknown format {other:?}: \"refreshd\" or \"slack\""),
                        ));
                    }
                };
                Ok(SinkKind::Webhook { url, format })
            }
            "command" => {
                if raw.url.is_some() || raw.format.is_some() {
                    return Err(error(
                        "url",
                        "a `command` sink takes argv only (the event comes on its stdin)"
                            .to_owned(),
                    ));
                }
                match &raw.argv {
                    Some(argv) if !argv.is_empty() => Ok(SinkKind::Command { argv: argv.clone() }),
                    _ => Err(error(
                        "argv",
                        "must name a program: [\"/path/to/program\", \"arg\"…]".to_owned(),
                    )),
                }
            }
            other => Err(error(
                "type",
                format!("unknown sink type {other:?}: \"webhook\" or \"command\""),
            )),
        }
    }
}
