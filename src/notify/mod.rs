//! Notifications: tells `[[notify]]` sinks (webhooks, commands) and each credential's
//! `on_failure` hook when a credential starts failing, recovers, needs a login or runs out
//! of token, and when the fleet store stops answering. Fed in one place, a credential
//! task's publisher ([`crate::daemon`]'s `publish.rs`), after each attempt, and by a tick
//! that lets time alone change a verdict (a token running out between attempts, a
//! reminder, the store). Whether to tell is [`episode`]'s pure decision; the telling is
//! [`deliver`]'s, on tasks of its own.
//!
//! Must never: wait (a publisher only pushes an event into a queue), rotate, or hold or
//! send a token, a refresh token, a client secret or a webhook URL in an event, a log line
//! or an error.

mod deliver;
mod episode;
mod event;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::SharedClock;
use crate::config::{Config, Credential, EventKind, NotifySink};
use crate::observe::{CredentialStatus, Health, NotificationCounts};
use deliver::{Hook, Lane};
use episode::{Episode, Observation, Tell, Thresholds, Verdict};
pub use event::{Event, Failure, VERSION};

/// How often time alone is given a say: tokens that run out between attempts, reminders,
/// the store's reachability.
const TICK: Duration = Duration::from_secs(5);

/// The daemon's notifier: cheap to clone, shared by every credential task.
#[derive(Clone)]
pub struct Notifier(Arc<Inner>);

struct Inner {
    /// This host in events: the store's node name, else the host name.
    node: String,
    clock: SharedClock,
    counts: Arc<NotificationCounts>,
    http: reqwest::Client,
    fleet: Option<Arc<crate::store::Fleet>>,
    book: Mutex<Book>,
}

/// What was seen and told. Only credentials with something going on are kept.
#[derive(Default)]
struct Book {
    lanes: Vec<Arc<Lane>>,
    credentials: HashMap<String, Watched>,
    /// Each sink's episode of the store.
    store: HashMap<String, Episode>,
}

/// One credential with failures or a problem told.
struct Watched {
    seen: Observation,
    failure: Option<Failure>,
    hook: Option<Hook>,
    on_failure: Episode,
    /// By sink name; quiet ones are dropped.
    episodes: HashMap<String, Episode>,
}

impl Notifier {
    /// Starts a lane per sink of `config` and the tick; counts go to `counts`.
    pub fn start(
        config: &Config,
        clock: SharedClock,
        counts: Arc<NotificationCounts>,
        fleet: Option<Arc<crate::store::Fleet>>,
    ) -> Notifier {
        let node = config
            .daemon
            .store
            .as_ref()
            .map(|store| store.node.clone())
            .or_else(|| {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let notifier = Notifier(Arc::new(Inner {
            node,
            clock,
            counts,
            http: crate::source::net::http_client(),
            fleet,
            book: Mutex::default(),
        }));
        notifier.update(config);
        tokio::spawn(tick(Arc::downgrade(&notifier.0)));
        notifier
    }

    /// Takes the sinks of a reloaded `config`: an unchanged sink keeps its lane and queue; a
    /// changed or removed one's lane ends. Removed credentials are forgotten.
    pub fn update(&self, config: &Config) {
        let mut book = self.book();
        let mut old: HashMap<String, Arc<Lane>> = book
            .lanes
            .drain(..)
            .map(|lane| (lane.sink.name.clone(), lane))
            .collect();
        for sink in &config.notify {
            let lane = match old.remove(&sink.name) {
                Some(lane) if *lane.sink == *sink => lane,
                other => {
                    if let Some(lane) = other {
                        lane.close();
                    }
                    Lane::start(
                        Arc::new(sink.clone()),
                        self.0.counts.clone(),
                        self.0.http.clone(),
                    )
                }
            };
            book.lanes.push(lane);
        }
        for lane in old.into_values() {
            lane.close();
        }
        book.credentials
            .retain(|name, _| config.credential(name).is_some());
        let names: Vec<&str> = config.notify.iter().map(|s| s.name.as_str()).collect();
        book.store.retain(|sink, _| names.contains(&sink.as_str()));
    }

    /// What a credential task published after an attempt (`described`: the provider's
    /// own words about a failure, when it sent some).
    pub fn credential(
        &self,
        credential: &Credential,
        status: &CredentialStatus,
        described: Option<String>,
    ) {
        let now = self.0.clock.now();
        let seen = Observation {
            health: status.health,
            consecutive_failures: status.consecutive_failures,
            expires_at: status.expires_at,
        };
        let failing = seen.consecutive_failures > 0 || !seen.health.is_healthy();
        let mut book = self.book();
        let book = &mut *book;
        if !failing && !book.credentials.contains_key(&credential.name) {
            // Nothing going on and nothing told: nothing to keep (the common case).
            return;
        }
        let failure = status
            .last_error
            .as_ref()
            .filter(|_| failing)
            .map(|e| Failure {
                class: e.cause.as_str(),
                message: e.message.clone(),
                description: described,
            });
        let hook = credential.on_failure.as_ref().map(|argv| Hook {
            argv: argv.clone(),
            timeout: credential.timing.timeout,
        });
        let watched = book
            .credentials
            .entry(credential.name.clone())
            .or_insert_with(|| Watched {
                seen: seen.clone(),
                failure: None,
                hook: None,
                on_failure: Episode::default(),
                episodes: HashMap::new(),
            });
        watched.seen = seen;
        watched.failure = failure;
        watched.hook = hook;
        if let Some(hook) = watched.hook.clone() {
            let verdict = episode::verdict(&watched.seen, Thresholds::OnFailure, now);
            if let Some(tell) = watched
                .on_failure
                .step(verdict, Thresholds::OnFailure, now, |_| true)
            {
                let event = self.on_failure_event(&credential.name, watched, tell, now);
                deliver::on_failure(hook, event, self.0.counts.clone());
            }
        }
        self.judge(&book.lanes, &credential.name, watched, now);
        if watched.is_quiet() {
            book.credentials.remove(&credential.name);
        }
    }

    /// A rolling reload of `credential` stopped on this node (`error`: why): told once to
    /// every sink that wants it, with no episode (each stopped generation is its own news).
    pub fn reload_stopped(&self, credential: &str, error: String) {
        let now = self.0.clock.now();
        let event = Event {
            version: VERSION,
            kind: EventKind::ReloadStopped,
            credential: Some(credential.to_owned()),
            node: self.0.node.clone(),
            error_class: Some("reload"),
            error: Some(error),
            error_description: None,
            expires_at: None,
            consecutive_failures: 0,
            reminder: false,
            at: now,
        };
        for lane in &self.book().lanes {
            if lane.sink.wants(EventKind::ReloadStopped, Some(credential)) {
                lane.push(event.clone());
            }
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        crate::sync::lock(&self.0.book)
    }

    /// Steps each sink's episode of `name` and queues what is to be told.
    fn judge(&self, lanes: &[Arc<Lane>], name: &str, watched: &mut Watched, now: OffsetDateTime) {
        for lane in lanes {
            let sink = &lane.sink;
            let thresholds = thresholds(sink);
            let verdict = episode::verdict(&watched.seen, thresholds, now);
            let episode = watched.episodes.entry(sink.name.clone()).or_default();
            let told = episode.step(verdict, thresholds, now, |kind| {
                sink.wants(kind, Some(name))
            });
            if episode.is_quiet() {
                watched.episodes.remove(&sink.name);
            }
            if let Some(tell) = told {
                lane.push(self.event(tell, Some(name), Some(watched), now));
            }
        }
    }

    /// Gives time its say: every watched credential again, and the store.
    fn tick(&self) {
        let now = self.0.clock.now();
        let store = self.0.fleet.as_ref().map(|fleet| fleet.unreachable());
        let mut book = self.book();
        let book = &mut *book;
        for (name, watched) in book.credentials.iter_mut() {
            self.judge(&book.lanes, name, watched, now);
        }
        book.credentials.retain(|_, watched| !watched.is_quiet());
        let Some(unreachable) = store else { return };
        let verdict = match &unreachable {
            Some(_) => Verdict::Problem(EventKind::StoreUnreachable),
            None => Verdict::Fine,
        };
        for lane in &book.lanes {
            let sink = &lane.sink;
            let thresholds = thresholds(sink);
            let episode = book.store.entry(sink.name.clone()).or_default();
            if let Some(tell) =
                episode.step(verdict, thresholds, now, |kind| sink.wants(kind, None))
            {
                let mut event = self.event(tell, None, None, now);
                if tell.kind == EventKind::StoreUnreachable {
                    event.error_class = Some("store");
                    event.error = unreachable.clone();
                }
                lane.push(event);
            }
        }
    }

    fn event(
        &self,
        tell: Tell,
        credential: Option<&str>,
        watched: Option<&Watched>,
        now: OffsetDateTime,
    ) -> Event {
        let problem = tell.kind != EventKind::Recovered;
        let failure = watched.and_then(|w| w.failure.as_ref()).filter(|_| problem);
        Event {
            version: VERSION,
            kind: tell.kind,
            credential: credential.map(str::to_owned),
            node: self.0.node.clone(),
            error_class: failure.map(|f| f.class),
            error: failure.map(|f| f.message.clone()),
            error_description: failure.and_then(|f| f.description.clone()),
            expires_at: watched.and_then(|w| w.seen.expires_at),
            consecutive_failures: watched.map_or(0, |w| w.seen.consecutive_failures),
            reminder: tell.reminder,
            at: now,
        }
    }

    /// The hook's event: its kind named after the health (one verdict covers them all),
    /// and an error always (`REFRESHD_ERROR` has always been set).
    fn on_failure_event(
        &self,
        name: &str,
        watched: &Watched,
        tell: Tell,
        now: OffsetDateTime,
    ) -> Event {
        let mut event = self.event(tell, Some(name), Some(watched), now);
        event.kind = match watched.seen.health {
            Health::NeedsLogin => EventKind::LoginNeeded,
            Health::Expired => EventKind::Expiring,
            _ => EventKind::Failing,
        };
        if event.error.is_none() {
            event.error = Some(format!("{}: no valid token", watched.seen.health.as_str()));
        }
        event
    }
}

impl Drop for Inner {
    /// The lanes' tasks end with the notifier (an `exec` that finished, a daemon stopping).
    fn drop(&mut self) {
        for lane in &crate::sync::lock(&self.book).lanes {
            lane.close();
        }
    }
}

impl Watched {
    /// Nothing failing, nothing told: no reason to keep it.
    fn is_quiet(&self) -> bool {
        self.seen.consecutive_failures == 0
            && self.seen.health.is_healthy()
            && self.on_failure.is_quiet()
            && self.episodes.is_empty()
    }
}

fn thresholds(sink: &NotifySink) -> Thresholds {
    Thresholds::Sink {
        after: sink.after,
        min_remaining: sink.min_remaining,
        repeat: sink.repeat,
    }
}

/// Runs until the notifier is dropped (the daemon or `exec` stopped).
async fn tick(notifier: Weak<Inner>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = notifier.upgrade() else {
            return;
        };
        Notifier(inner).tick();
    }
}
