//! One task per credential: it only waits, rotates, plans and publishes. It rotates when
//! due (through [`crate::credential`]), asks [`policy::plan`] when to try next, hands the
//! result to its [`Publisher`], and waits for that moment (in the daemon's one timer queue,
//! [`Timers`]), a `rotate` request, a change of a bearer's token or of a watched subject
//! token file, or a stop.
//!
//! A rotation that has started is never cancelled: a stop waits for it, because dropping a
//! token response on the floor can lose a rotated refresh token, and a target write must
//! finish rather than leave a half-done edit.

use std::sync::Arc;

use std::sync::Mutex;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::liveness::Liveness;
use super::publish::{Publisher, TokenWatch};
use super::timers::Timers;
use crate::clock::SharedClock;
use crate::config::Credential;
use crate::credential::policy::{self, Trigger};
use crate::credential::{Engine, Rotation};
use crate::observe::{Model, RotationReply};
use crate::source::BearerTokens;
use crate::store::{Fleet, News};
use crate::token::Token;

/// What other tasks ask of a credential task: a few words, not a channel's buffers (with
/// ten thousand credentials, every idle byte counts ten thousand times).
#[derive(Default)]
struct Inbox {
    asked: Mutex<Asked>,
    knock: Notify,
}

#[derive(Default)]
struct Asked {
    /// `rotate` requests waiting for the next attempt's outcome.
    replies: Vec<oneshot::Sender<RotationReply>>,
    /// Rotate now; `Some(true)` only when every request asked for `if_due`.
    rotate: Option<bool>,
    stop: bool,
}

impl Inbox {
    fn asked(&self) -> std::sync::MutexGuard<'_, Asked> {
        // Plain fields, never left half-changed: a poisoned lock is usable.
        crate::sync::lock(&self.asked)
    }
}

/// What every credential task shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    /// The fleet store: a shared credential's task also wakes on its news.
    pub fleet: Option<Arc<Fleet>>,
    pub clock: SharedClock,
    pub timers: Timers,
    pub liveness: Arc<Liveness>,
    pub permits: Arc<Semaphore>,
    /// What the daemon shows: each task publishes its credential's status here.
    pub model: Model,
    /// Receives a credential's name after its first attempt (for `READY=1`).
    pub settled: mpsc::UnboundedSender<String>,
    /// Where each publisher reports, to tell the `[[notify]]` sinks and `on_failure` hooks.
    pub notifier: crate::notify::Notifier,
}

impl Shared {
    /// What every credential task of one process shares: `engine` rotates, at most
    /// `max_concurrent_refreshes` at once, publishing into `model`.
    pub fn new(
        config: &crate::config::Config,
        engine: Arc<Engine>,
        fleet: Option<Arc<Fleet>>,
        clock: SharedClock,
        timers: Timers,
        model: Model,
        settled: mpsc::UnboundedSender<String>,
    ) -> Shared {
        let notifier = crate::notify::Notifier::start(
            config,
            clock.clone(),
            model.observed().notification_counts(),
            fleet.clone(),
        );
        engine.set_notifier(notifier.clone());
        Shared {
            engine,
            fleet,
            clock,
            timers,
            liveness: Arc::new(Liveness::default()),
            permits: Arc::new(Semaphore::new(
                config.daemon.max_concurrent_refreshes.max(1),
            )),
            model,
            settled,
            notifier,
        }
    }
}

/// The supervisor's side of a running credential task.
pub struct Handle {
    inbox: Arc<Inbox>,
    pub join: JoinHandle<()>,
}

impl Handle {
    /// Asks the task to stop once any rotation in progress has finished.
    pub fn stop(&self) {
        self.inbox.asked().stop = true;
        self.inbox.knock.notify_one();
    }

    /// Asks for a rotation now (unless another process just did one), answered on `reply`
    /// after the attempt; with `if_due`, only when the stored token is due (another process
    /// stored a new one).
    pub fn rotate(&self, reply: oneshot::Sender<RotationReply>, if_due: bool) {
        let mut asked = self.inbox.asked();
        asked.replies.push(reply);
        asked.rotate = Some(asked.rotate.unwrap_or(true) && if_due);
        drop(asked);
        self.inbox.knock.notify_one();
    }
}

/// Starts the task of `credential`: it publishes its token on `token` (when another
/// credential follows it) and follows the tokens of its `bearers` (a change refreshes it)
/// and of the credentials its templates use (`rendered`: a change writes its targets
/// again).
pub fn spawn(
    credential: Arc<Credential>,
    shared: Shared,
    token: Option<watch::Sender<Option<Token>>>,
    bearers: Vec<(String, TokenWatch)>,
    rendered: Vec<(String, TokenWatch)>,
) -> Handle {
    let inbox = Arc::new(Inbox::default());
    let publisher = Publisher::new(
        credential.clone(),
        shared.model.clone(),
        shared.settled.clone(),
        token,
        shared.notifier.clone(),
    );
    let news = shared
        .fleet
        .as_ref()
        .filter(|_| credential.sharing.is_shared())
        .map(|fleet| fleet.subscribe(&credential.name));
    // Requests from before this task started were another task's to answer.
    let seen = news.as_ref().map(|news| *news.borrow()).unwrap_or_default();
    let subjects = super::watch::subjects(&credential);
    let task = Task {
        news,
        seen,
        subjects,
        credential,
        shared,
        inbox: inbox.clone(),
        bearers,
        rendered,
        publisher,
    };
    Handle {
        inbox,
        join: tokio::spawn(run(task)),
    }
}

struct Task {
    /// What the store says of this credential (shared credentials only), and what of it
    /// this task last acted on.
    news: Option<watch::Receiver<News>>,
    seen: News,
    credential: Arc<Credential>,
    shared: Shared,
    inbox: Arc<Inbox>,
    bearers: Vec<(String, TokenWatch)>,
    /// The credentials its templates use.
    rendered: Vec<(String, TokenWatch)>,
    /// A token exchange's subject token files: a new token there exchanges again at once.
    subjects: Option<super::watch::SubjectWatch>,
    publisher: Publisher,
}

/// Why a wait ended.
enum Wake {
    Deadline,
    Rotate {
        if_due: bool,
    },
    BearerChanged,
    SubjectChanged,
    /// A follower asked this node, the holder, to rotate now.
    Asked,
    Stop,
}

/// What a task does at its next attempt.
enum Attempt {
    Rotate(Trigger),
    /// The holder did not answer this follower's rotate request within this long.
    HolderSilent(std::time::Duration),
}

/// A follower's rotate request the task waits on, holding neither the credential's lock
/// nor a refresh permit: a generation after `seen`, for at most `wait`.
#[derive(Clone, Copy)]
struct Awaiting {
    seen: u64,
    wait: std::time::Duration,
    /// The leases this node had taken when it asked: taking this one over ends the wait
    /// (this node then answers the request itself).
    acquired: u64,
}

async fn run(mut task: Task) {
    let alive = task.shared.liveness.alive(&task.credential.name);
    if !task.wait_for_bearers().await {
        return alive.stopped();
    }
    let mut next = Attempt::Rotate(Trigger::IfDue);
    let mut attempt = 0;
    loop {
        let (at, planned, awaiting) = {
            let started = tokio::time::Instant::now();
            let permits = task.shared.permits.clone();
            let _permit = permits.acquire().await;
            match task.attempt(next).await {
                Rotation::Done(result) => {
                    let now = task.shared.clock.now();
                    let timing = &task.credential.timing;
                    let plan =
                        policy::plan(result.attempted(), attempt, now, timing, &mut unit_random);
                    let stopped = task.inbox.asked().stop;
                    task.publisher
                        .publish(&result, &plan, started.elapsed(), now, stopped);
                    attempt = plan.attempt;
                    (plan.at, plan.trigger, None)
                }
                // The request's replies are answered when the holder's commit has been
                // followed, or when the wait is over.
                Rotation::Asked { seen, wait } => {
                    let until = task.shared.clock.now() + wait;
                    let acquired = task.seen.acquired;
                    let awaiting = Awaiting {
                        seen,
                        wait,
                        acquired,
                    };
                    (until, Trigger::IfDue, Some(awaiting))
                }
            }
        };
        next = match task.wait_while(at, awaiting).await {
            Wake::Deadline => match awaiting {
                Some(awaiting) => Attempt::HolderSilent(awaiting.wait),
                None => Attempt::Rotate(planned),
            },
            Wake::Rotate { if_due: true } => Attempt::Rotate(Trigger::IfDue),
            Wake::Rotate { if_due: false }
            | Wake::BearerChanged
            | Wake::SubjectChanged
            | Wake::Asked => Attempt::Rotate(Trigger::Force {
                since: task.shared.clock.now(),
            }),
            Wake::Stop => break,
        };
    }
    tracing::debug!(credential = %task.credential.name, "stopped");
    alive.stopped();
}

impl Task {
    /// One attempt (the caller holds a permit). What the store said before it is answered
    /// by it (a rotate request that came while this task waited makes it a forced one);
    /// what it says during the attempt wakes the task again, unless it is only this
    /// attempt's own commit.
    async fn attempt(&mut self, next: Attempt) -> Rotation {
        let mut trigger = match next {
            Attempt::Rotate(trigger) => trigger,
            Attempt::HolderSilent(waited) => {
                let engine = &self.shared.engine;
                // Boxed like a rotation: inline, its state would sit in every idle task.
                let silent = Box::pin(engine.holder_silent(&self.credential, waited)).await;
                return Rotation::Done(silent);
            }
        };
        if let Some(news) = self.news.as_mut() {
            let before = *news.borrow_and_update();
            if before.asks != self.seen.asks && !matches!(trigger, Trigger::Force { .. }) {
                trigger = Trigger::Force {
                    since: self.shared.clock.now(),
                };
            }
            self.seen = before;
        }
        // Boxed, and only once it holds a permit: a waiting task then holds only what
        // waiting needs, not the ~16 KiB of a rotation in progress (with ten thousand
        // credentials, that was most of their memory).
        let rotation = Box::pin(self.rotate(trigger)).await;
        if let (Some(news), Rotation::Done(result)) = (self.news.as_mut(), &rotation) {
            let now = *news.borrow();
            let own = now.generation <= result.state.generation.unwrap_or(0);
            if own && now.asks == self.seen.asks && now.acquired == self.seen.acquired {
                self.seen = *news.borrow_and_update();
            }
        }
        rotation
    }

    /// One rotation, with the bearers' current tokens.
    async fn rotate(&mut self, trigger: Trigger) -> Rotation {
        let bearers = self.bearer_tokens();
        let jitter = policy::jitter(self.credential.timing.jitter, unit_random());
        let _rotating = self.shared.liveness.rotating(&self.credential.name);
        self.shared
            .engine
            .rotate_with(&self.credential, trigger, jitter, &bearers)
            .await
    }

    /// [`Task::wait`]; while `awaiting` the holder's answer to a rotate request, news of the
    /// store that is neither a newer generation nor this node taking the lease over is not
    /// a reason to stop waiting. Taking it over makes the request this node's to answer.
    async fn wait_while(
        &mut self,
        deadline: time::OffsetDateTime,
        awaiting: Option<Awaiting>,
    ) -> Wake {
        loop {
            let wake = self.wait(deadline).await;
            let (Some(awaiting), Wake::Rotate { if_due: true }, Some(news)) =
                (awaiting, &wake, self.news.as_ref())
            else {
                return wake;
            };
            let news = *news.borrow();
            if news.acquired != awaiting.acquired {
                return Wake::Asked;
            }
            if news.generation > awaiting.seen {
                return wake;
            }
        }
    }

    /// The bearers' tokens as now published; what is read counts as seen.
    fn bearer_tokens(&mut self) -> BearerTokens {
        let now = self.shared.clock.now();
        self.bearers
            .iter_mut()
            .map(|(name, rx)| {
                (
                    name.clone(),
                    policy::bearer(rx.borrow_and_update().as_ref(), now),
                )
            })
            .collect()
    }

    /// Waits for `deadline`, a `rotate` request (answered after the next attempt), a new
    /// token of a bearer, or a stop.
    async fn wait(&mut self, deadline: time::OffsetDateTime) -> Wake {
        tokio::select! {
            _ = self.shared.timers.sleep_until(deadline) => Wake::Deadline,
            knock = knocked(&self.inbox, true) => match knock {
                Knock::Stop => Wake::Stop,
                Knock::Rotate { if_due, mut replies } => {
                    self.publisher.replies.append(&mut replies);
                    Wake::Rotate { if_due }
                }
            },
            asked = store_news(&mut self.news, &mut self.seen) => if asked {
                tracing::info!(credential = %self.credential.name, "another node asked for a rotation");
                Wake::Asked
            } else {
                Wake::Rotate { if_due: true }
            },
            _ = bearer_changed(&mut self.bearers) => {
                let names: Vec<&str> = self.bearers.iter().map(|(n, _)| n.as_str()).collect();
                tracing::info!(credential = %self.credential.name, bearers = %names.join(","), "a bearer credential's token changed: refreshing");
                Wake::BearerChanged
            }
            _ = bearer_changed(&mut self.rendered) => {
                tracing::debug!(credential = %self.credential.name, "a credential its templates use has a new token: writing its targets again");
                Wake::Rotate { if_due: true }
            }
            () = super::watch::subject_changed(&mut self.subjects) => {
                tracing::info!(credential = %self.credential.name, "the subject token file holds a new token: exchanging it");
                Wake::SubjectChanged
            }
        }
    }

    /// On start, gives the bearers and the credentials its templates use (started at the
    /// same moment) up to twice the request
    /// timeout to get a token before this credential's first attempt, instead of failing
    /// it at once. `false` when the task was stopped meanwhile.
    async fn wait_for_bearers(&mut self) -> bool {
        let patience = tokio::time::sleep(self.credential.timing.timeout * 2);
        tokio::pin!(patience);
        loop {
            let now = self.shared.clock.now();
            let ready = self
                .bearers
                .iter_mut()
                .chain(&mut self.rendered)
                .all(|(_, rx)| {
                    rx.borrow_and_update()
                        .as_ref()
                        .is_some_and(|t| t.is_valid_at(now))
                });
            if ready {
                return true;
            }
            tokio::select! {
                _ = bearer_changed(&mut self.bearers) => {}
                _ = bearer_changed(&mut self.rendered) => {}
                _ = &mut patience => return true,
                _ = knocked(&self.inbox, false) => return false,
            }
        }
    }
}

/// What the inbox held.
enum Knock {
    Stop,
    Rotate {
        if_due: bool,
        replies: Vec<oneshot::Sender<RotationReply>>,
    },
}

/// Resolves when the inbox holds a stop, or (with `rotate_too`) a rotate request.
async fn knocked(inbox: &Inbox, rotate_too: bool) -> Knock {
    loop {
        {
            let mut asked = inbox.asked();
            if asked.stop {
                return Knock::Stop;
            }
            if rotate_too && let Some(if_due) = asked.rotate.take() {
                let replies = std::mem::take(&mut asked.replies);
                return Knock::Rotate { if_due, replies };
            }
        }
        inbox.knock.notified().await;
    }
}

/// Resolves when the store has news of the credential: whether it is a rotate request.
/// Never for a credential that is not shared.
/// `seen` is what the task last acted on: a rotate request that came during an attempt
/// counts even though the attempt's end looked at the news.
async fn store_news(news: &mut Option<watch::Receiver<News>>, seen: &mut News) -> bool {
    let Some(news) = news else {
        return std::future::pending().await;
    };
    if news.changed().await.is_err() {
        // The credential left the store's list (a reload): its task is being replaced.
        return std::future::pending().await;
    }
    let now = *news.borrow_and_update();
    let asked = now.asks != seen.asks;
    *seen = now;
    asked
}

/// Resolves when any bearer publishes a token not yet seen; never without bearers.
async fn bearer_changed(bearers: &mut [(String, TokenWatch)]) {
    if bearers.is_empty() {
        return std::future::pending().await;
    }
    let mut changes: Vec<_> = bearers
        .iter_mut()
        .map(|(_, rx)| Box::pin(rx.changed()))
        .collect();
    let result = std::future::poll_fn(|cx| {
        for change in changes.iter_mut() {
            if let std::task::Poll::Ready(result) = change.as_mut().poll(cx) {
                return std::task::Poll::Ready(result);
            }
        }
        std::task::Poll::Pending
    })
    .await;
    // A closed channel (the daemon is stopping) never resolves: the stop ends the task.
    if result.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A uniform random number in `[0, 1)`.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    // getrandom fails only without any entropy source; then the spread is lost, nothing else.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
