//! The one read model: the snapshot the credential tasks publish, the fleet store's view
//! and the daemon's vitals, kept together. The daemon writes it through [`Model`];
//! `status` (over the control socket), `/metrics` and the probes read it through
//! [`Observed`], so they cannot disagree.
//!
//! It never triggers anything: writing it only changes what is shown.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{
    Counters, CredentialStatus, FleetView, NotificationCounts, ReadCounts, ReloadResults, Snapshot,
    Vitals,
};
use crate::clock::SharedClock;

/// The writing side, kept by the daemon: its credential tasks' publishers set their
/// statuses, the supervisor the daemon's own status and vitals. One pointer: every
/// credential task holds a clone (ten thousand of them).
#[derive(Clone)]
pub struct Model(Arc<Written>);

struct Written {
    snapshot: watch::Sender<Snapshot>,
    observed: Observed,
}

/// The reading side: what anyone outside the daemon may be shown.
#[derive(Clone)]
pub struct Observed {
    snapshot: watch::Receiver<Snapshot>,
    /// The store's view is asked for when read: it changes with every lease round.
    fleet: Option<Arc<dyn FleetView>>,
    vitals: Arc<Vitals>,
    /// Tokens handed to other processes ([`crate::access`]).
    reads: Arc<ReadCounts>,
    /// Each reload action's last result ([`crate::reload`]).
    reloads: Arc<ReloadResults>,
    /// Each notification sink's deliveries ([`crate::notify`]).
    notifications: Arc<NotificationCounts>,
    clock: SharedClock,
}

impl Model {
    /// A model that starts from `snapshot` (what the state directory holds).
    pub fn new(
        snapshot: Snapshot,
        fleet: Option<Arc<dyn FleetView>>,
        vitals: Vitals,
        clock: SharedClock,
    ) -> Model {
        let (sender, receiver) = watch::channel(snapshot);
        Model(Arc::new(Written {
            snapshot: sender,
            observed: Observed {
                snapshot: receiver,
                fleet,
                vitals: Arc::new(vitals),
                reads: Arc::default(),
                reloads: Arc::default(),
                notifications: Arc::default(),
                clock,
            },
        }))
    }

    /// A reader of this model.
    pub fn observed(&self) -> Observed {
        self.0.observed.clone()
    }

    pub fn vitals(&self) -> &Vitals {
        &self.0.observed.vitals
    }

    /// Sets the status of `status.name`, replacing any earlier one.
    pub fn set(&self, status: CredentialStatus) {
        self.0.snapshot.send_modify(|snapshot| snapshot.set(status));
    }

    /// Takes the statuses of `names` out (their credentials were removed).
    pub fn remove(&self, names: &[String]) {
        self.0.snapshot.send_modify(|snapshot| {
            for name in names {
                snapshot.remove(name);
            }
        });
    }

    /// The counters of `name` so far (a reload restarts its task, the counts carry on).
    pub fn counters(&self, name: &str) -> Counters {
        self.0
            .snapshot
            .borrow()
            .get(name)
            .map(|status| status.counters.clone())
            .unwrap_or_default()
    }

    /// Records the outcome of loading the config file at `now`.
    pub fn config_loaded(&self, ok: bool, now: OffsetDateTime) {
        self.0.snapshot.send_modify(|snapshot| {
            if let Some(daemon) = &mut snapshot.daemon {
                daemon.config_reload_ok = ok;
                if ok {
                    daemon.config_loaded_at = now;
                }
            }
        });
    }

    /// The one-line summary for the service manager and the log.
    pub fn summary(&self) -> String {
        self.0.observed.summary()
    }
}

impl Observed {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Everything there is to show, as it stands at `now`: the snapshot with the store's
    /// view (see [`Snapshot::at`]).
    pub fn status(&self, now: OffsetDateTime) -> Snapshot {
        let mut current = self.snapshot();
        current.store = self.fleet.as_ref().map(|fleet| fleet.status());
        current.reloads = self.reloads.all();
        current.at(now)
    }

    /// The snapshot as last published, without the store's view (a probe must not copy
    /// every lease). Copied under the lock (a pointer per credential), so working on it
    /// never holds up a rotation that publishes.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Whether a credential named `name` is configured.
    pub fn has(&self, name: &str) -> bool {
        self.snapshot.borrow().get(name).is_some()
    }

    pub fn vitals(&self) -> &Vitals {
        &self.vitals
    }

    /// Where the reload runner records each action's result.
    pub fn reload_results(&self) -> Arc<ReloadResults> {
        self.reloads.clone()
    }

    /// The count of tokens handed to other processes.
    pub fn read_counts(&self) -> Arc<ReadCounts> {
        self.reads.clone()
    }

    /// The count of notifications delivered, failed and dropped.
    pub fn notification_counts(&self) -> Arc<NotificationCounts> {
        self.notifications.clone()
    }

    /// The one-line summary as of now.
    pub fn summary(&self) -> String {
        self.snapshot.borrow().summary(self.clock.now())
    }

    /// Resolves when the snapshot changed since this reader last looked at it; `false`
    /// once the daemon dropped the model.
    pub async fn changed(&mut self) -> bool {
        let changed = self.snapshot.changed().await.is_ok();
        self.snapshot.borrow_and_update();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;
    use crate::clock::fake::FakeClock;
    use crate::observe::{DaemonStatus, Health};

    fn status(name: &str, expires_at: OffsetDateTime) -> CredentialStatus {
        CredentialStatus {
            name: name.into(),
            health: Health::Ok,
            source: "command".into(),
            subject: None,
            client_id: None,
            issuer: None,
            scopes: vec![],
            fingerprint: None,
            served_by: None,
            skipped: vec![],
            expires_at: Some(expires_at),
            expiry_source: None,
            last_rotation: None,
            last_error: None,
            next_refresh: None,
            consecutive_failures: 0,
            unsaved: None,
            counters: Counters::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readers_see_what_the_daemon_writes_as_of_asking() {
        let clock = FakeClock::new();
        let now = clock.now();
        let mut start = Snapshot::new("daemon");
        start.daemon = Some(DaemonStatus {
            started_at: now,
            config_reload_ok: true,
            config_loaded_at: now,
        });
        let model = Model::new(
            start,
            None,
            Vitals::new(std::time::Duration::from_secs(30)),
            clock,
        );
        let mut observed = model.observed();
        model.set(status("a", now + time::Duration::minutes(5)));
        assert!(observed.changed().await);
        assert!(observed.has("a") && !observed.has("b"));
        assert_eq!(observed.status(now).get("a").unwrap().health, Health::Ok);
        // Nothing was published since, but the token's time is up.
        let later = observed.status(now + time::Duration::minutes(6));
        assert_eq!(later.get("a").unwrap().health, Health::Expired);
        assert_eq!(later.store, None);
        model.config_loaded(false, now);
        assert!(!observed.snapshot().daemon.unwrap().config_reload_ok);
        model.remove(&["a".to_owned()]);
        assert_eq!(observed.summary(), "no credentials configured");
        assert!(observed.changed().await);
        drop(model);
        assert!(!observed.changed().await);
    }
}
