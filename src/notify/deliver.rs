//! Delivery: each `[[notify]]` sink has a lane, a bounded queue and a task of its own, so a
//! receiver that is down delays neither a rotation (which only pushes into the queue) nor
//! another sink. A failed try is retried with exponential backoff until it lands; a full
//! queue drops its oldest event and counts it. The `on_failure` hooks share one lane whose
//! runs start at once, side by side, and are never retried (as before they were events).
//!
//! Must never: put a webhook URL in a log line, an error or a metric (reqwest's errors are
//! stripped of it), or a token anywhere (events hold none).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::Notify;

use super::event::Event;
use crate::child::{Child, ChildError};
use crate::config::{NotifySink, SinkKind, WebhookFormat};
use crate::observe::{Delivery, NotificationCounts};

/// Events a lane holds while its receiver is away; then the oldest go.
pub const QUEUE: usize = 256;
/// The first wait after a failed try, doubled after each, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The sink name the `on_failure` hooks are counted under.
pub const ON_FAILURE: &str = "on_failure";

/// An `on_failure` hook to run for an event.
#[derive(Debug, Clone)]
pub struct Hook {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// One sink's queue.
pub struct Lane {
    pub sink: Arc<NotifySink>,
    queue: Mutex<VecDeque<Event>>,
    knock: Notify,
    closed: AtomicBool,
    counts: Arc<NotificationCounts>,
}

impl Lane {
    /// A lane for `sink`, with its task started.
    pub fn start(
        sink: Arc<NotifySink>,
        counts: Arc<NotificationCounts>,
        http: reqwest::Client,
    ) -> Arc<Lane> {
        let lane = Lane::idle(sink, counts);
        tokio::spawn(run(lane.clone(), http));
        lane
    }

    /// A lane whose task is not started.
    fn idle(sink: Arc<NotifySink>, counts: Arc<NotificationCounts>) -> Arc<Lane> {
        Arc::new(Lane {
            sink,
            queue: Mutex::new(VecDeque::new()),
            knock: Notify::new(),
            closed: AtomicBool::new(false),
            counts,
        })
    }

    /// Queues `event`; never waits. A full queue loses its oldest event.
    pub fn push(&self, event: Event) {
        let mut queue = crate::sync::lock(&self.queue);
        if queue.len() >= QUEUE
            && let Some(old) = queue.pop_front()
        {
            self.counts
                .add(&self.sink.name, old.kind.as_str(), Delivery::Dropped);
            tracing::warn!(sink = %self.sink.name, kind = old.kind.as_str(), "notification queue full: the oldest event was dropped");
        }
        queue.push_back(event);
        drop(queue);
        self.knock.notify_one();
    }

    /// Ends the lane's task (its sink was removed or changed); what it holds is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.knock.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    async fn next(&self) -> Option<Event> {
        loop {
            if self.is_closed() {
                return None;
            }
            if let Some(event) = crate::sync::lock(&self.queue).pop_front() {
                return Some(event);
            }
            self.knock.notified().await;
        }
    }
}

/// Why a try failed, and whether another may work.
struct Failed {
    reason: String,
    retry: bool,
}

async fn run(lane: Arc<Lane>, http: reqwest::Client) {
    while let Some(event) = lane.next().await {
        let kind = event.kind.as_str();
        let mut wait = BACKOFF_FIRST;
        loop {
            match send(&lane.sink, &event, &http).await {
                Ok(()) => {
                    lane.counts.add(&lane.sink.name, kind, Delivery::Sent);
                    tracing::info!(sink = %lane.sink.name, kind, credential = event.credential.as_deref().unwrap_or("-"), "notification sent");
                    break;
                }
                Err(Failed { reason, retry }) if retry => {
                    lane.counts.add(&lane.sink.name, kind, Delivery::Error);
                    tracing::warn!(sink = %lane.sink.name, kind, retry_in = %format!("{}s", wait.as_secs()), "notification not delivered: {reason}");
                }
                Err(Failed { reason, .. }) => {
                    lane.counts.add(&lane.sink.name, kind, Delivery::Failed);
                    tracing::warn!(sink = %lane.sink.name, kind, "notification refused, not retried: {reason}");
                    break;
                }
            }
            tokio::time::sleep(wait).await;
            // A closed lane's sink is gone or changed: its successor gets the next events.
            if lane.is_closed() {
                return;
            }
            wait = (wait * 2).min(BACKOFF_MAX);
        }
    }
}

async fn send(sink: &NotifySink, event: &Event, http: &reqwest::Client) -> Result<(), Failed> {
    match &sink.kind {
        SinkKind::Webhook { url, format } => {
            let body = match format {
                WebhookFormat::Refreshd => event.json(),
                WebhookFormat::Slack => event.slack(),
            };
            post(http, url, body, sink.timeout).await
        }
        SinkKind::Command { argv } => command(argv, event, sink.timeout, &event.env()).await,
    }
}

async fn post(
    http: &reqwest::Client,
    url: &crate::secret::SecretRef,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), Failed> {
    let retry = |reason: String| Failed {
        reason,
        retry: true,
    };
    // Read at each try: a rotated URL file is picked up. Errors name the reference only.
    let secret = url.resolve().map_err(|e| retry(format!("url: {e}")))?;
    let url = reqwest::Url::parse(secret.expose_secret()).map_err(|_| Failed {
        reason: "url: not a valid URL".to_owned(),
        retry: false,
    })?;
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| retry(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // Another 4xx will not change by asking again (a revoked hook, a bad body).
    let again = status.is_server_error()
        || matches!(status.as_u16(), 408 | 425 | 429)
        || status.is_redirection();
    Err(Failed {
        reason: format!("the receiver answered HTTP {}", status.as_u16()),
        retry: again,
    })
}

/// Runs `argv` with the event on stdin and `env`.
async fn command(
    argv: &[String],
    event: &Event,
    timeout: Duration,
    env: &[(String, String)],
) -> Result<(), Failed> {
    let child = Child::new(argv, timeout)
        .envs(env.iter().cloned())
        .stdin(event.json());
    let program = child.program();
    let output = child.run().await.map_err(|e| Failed {
        retry: !matches!(e, ChildError::Spawn { .. }),
        reason: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let lines = output.stderr_lines(None);
    let last: Vec<&str> = lines
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    Err(Failed {
        reason: format!(
            "{program} exited with {}{}",
            output.status,
            if last.is_empty() {
                String::new()
            } else {
                format!(": {}", last.join(" / "))
            }
        ),
        retry: true,
    })
}

/// Runs a credential's `on_failure` hook for `event` in the background, once: with
/// `REFRESHD_CREDENTIAL` and `REFRESHD_ERROR` as always, and now the event on stdin too.
pub fn on_failure(hook: Hook, event: Event, counts: Arc<NotificationCounts>) {
    tokio::spawn(async move {
        let credential = event.credential.clone().unwrap_or_default();
        let kind = event.kind.as_str();
        match command(&hook.argv, &event, hook.timeout, &event.env()).await {
            Ok(()) => {
                counts.add(ON_FAILURE, kind, Delivery::Sent);
                tracing::info!(credential = %credential, "on_failure hook ran");
            }
            Err(failed) => {
                counts.add(ON_FAILURE, kind, Delivery::Failed);
                tracing::warn!(credential = %credential, "on_failure hook failed: {}", failed.reason);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventKind;

    fn event(failures: u32) -> Event {
        Event {
            version: super::super::VERSION,
            kind: EventKind::Failing,
            credential: Some("api".into()),
            node: "web-1".into(),
            error_class: None,
            error: None,
            error_description: None,
            expires_at: None,
            consecutive_failures: failures,
            reminder: false,
            at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_event_and_counts_it() {
        let sink = NotifySink {
            name: "ops".into(),
            kind: SinkKind::Command {
                argv: vec!["true".into()],
            },
            events: EventKind::ALL.into_iter().collect(),
            credentials: None,
            after: 1,
            min_remaining: None,
            repeat: None,
            timeout: Duration::from_secs(1),
            line: 1,
        };
        let counts = Arc::new(NotificationCounts::default());
        let lane = Lane::idle(Arc::new(sink), counts.clone());
        for n in 0..(QUEUE as u32 + 2) {
            lane.push(event(n));
        }
        let queue = crate::sync::lock(&lane.queue);
        assert_eq!(queue.len(), QUEUE);
        assert_eq!(queue.front().unwrap().consecutive_failures, 2);
        assert_eq!(counts.all(), [("ops".to_owned(), "failing", "dropped", 2)]);
    }

    #[tokio::test]
    async fn a_command_sink_gets_the_event_on_stdin_and_its_variables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo \"$REFRESHD_EVENT $REFRESHD_CREDENTIAL $(cat)\" > {}",
                out.display()
            ),
        ];
        let event = event(3);
        command(&argv, &event, Duration::from_secs(10), &event.env())
            .await
            .unwrap_or_else(|f| panic!("{}", f.reason));
        let got = std::fs::read_to_string(&out).unwrap();
        let (words, json) = got.split_at(got.find('{').unwrap());
        assert_eq!(words, "failing api ");
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(json["consecutive_failures"], 3);
    }
}
