//! The fleet store: several refreshd hosts sharing credentials through PostgreSQL. Each
//! shared credential has one row: its sealed state, a generation bumped by every commit, and
//! a lease naming the one node that may refresh it. This module keeps this node's view of
//! the store (leases held, generations seen, whether the store answers) and tells each
//! credential's task when something changed; [`fence`] is the only place a token request's
//! result is committed. Rows are sealed with [`crate::seal`] (the state directory's seal too).
//!
//! Must never: refresh (the credential engine does), hold a token in the clear in the
//! database, or log the URL, the key or a state.

pub mod connect;
pub mod fence;
mod instance;
mod nodes;
mod probe;
mod reloads;
mod row;
pub mod schema;
mod status;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_postgres::Client;

use crate::clock::SharedClock;
use crate::config::StoreConfig;
use crate::seal::{self, Key};
use crate::secret::SecretError;
use connect::Target;

pub use fence::{Claim, Fence};
pub use instance::Instance;
pub use reloads::{POLL as ROLL_POLL, Turn, TurnResult};
pub use row::Stored;
pub use status::NodeStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("[daemon] store.url: {0}")]
    Url(String),
    #[error("[daemon] store.url: {0}")]
    UrlSecret(SecretError),
    #[error("[daemon] store.key: {0}")]
    KeySecret(SecretError),
    #[error("[daemon] store.key: {0}")]
    Key(#[from] seal::KeyError),
    #[error("store unreachable: {0}")]
    Unreachable(String),
    #[error("store query failed: {message}")]
    Query {
        message: String,
        /// The server's SQLSTATE, when the server answered with an error (e.g. `55P03`, a
        /// lock not granted in time): what to do about a failure is decided on it, not on
        /// the text.
        sqlstate: Option<tokio_postgres::error::SqlState>,
    },
    #[error(
        "the store's schema is version {found}, newer than this refreshd knows ({known}): upgrade refreshd on this host; it will not read or write a store it does not understand"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error(
        "node name {node} is in use by another live refreshd (host {host}, pid {pid}): each daemon needs its own `[daemon] node`; stop that one or name this one differently"
    )]
    NodeInUse {
        node: String,
        host: String,
        pid: i32,
    },
    #[error(
        "another refreshd process took node name {0} over (its row names another instance): this one no longer acts for the node; give each daemon its own `[daemon] node`"
    )]
    NodeTaken(String),
    #[error(
        "[daemon] store.key is not the key this store was written with: every host must use the same key file; nothing was read or written"
    )]
    WrongKey,
    /// A sealed value did not open: another key sealed it, or it was changed or moved.
    #[error(
        "the store key does not open the state of {credential} (generation {generation}): the store was written with another key, or the row was altered; check [daemon] store.key against the other hosts'"
    )]
    Unopenable { credential: String, generation: u64 },
    #[error("the state of {credential} in the store is not valid: {reason}")]
    Invalid { credential: String, reason: String },
    #[error(
        "no node has stored a token of {0} in the store yet: the node holding its lease refreshes it (`refreshd status` names it), or `refreshd login {0}` gives it a grant"
    )]
    Empty(String, Duration),
    #[error(
        "the node holding the lease of {credential} did not rotate it within {}: see its log (`refreshd status` names it)",
        humantime::format_duration(*waited)
    )]
    NotRotated {
        credential: String,
        waited: Duration,
    },
    #[error(
        "this node no longer holds the lease of {0} (it lapsed, or another node took it over): nothing was committed"
    )]
    Fenced(String),
}

impl StoreError {
    fn query(e: tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.as_db_error().is_none() {
            StoreError::Unreachable(describe(&e))
        } else {
            StoreError::Query {
                message: describe(&e),
                sqlstate: e.code().cloned(),
            }
        }
    }

    /// A query refused by the server with `message` (no SQLSTATE: refreshd's own check).
    fn invalid_answer(message: String) -> StoreError {
        StoreError::Query {
            message,
            sqlstate: None,
        }
    }

    /// The server's SQLSTATE, when it refused a statement.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            StoreError::Query { sqlstate, .. } => sqlstate.as_ref(),
            _ => None,
        }
    }

    /// A row lock not granted within the connection's `lock_timeout` (SQLSTATE 55P03): the
    /// store answers, a row is busy.
    pub fn is_busy(&self) -> bool {
        self.sqlstate() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
    }

    /// Errors a person must fix (a key, a schema, the URL): the daemon refuses to start on
    /// them; the others pass when the database comes back.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Url(_)
                | StoreError::UrlSecret(_)
                | StoreError::KeySecret(_)
                | StoreError::Key(_)
                | StoreError::NewerSchema { .. }
                | StoreError::WrongKey
                | StoreError::NodeInUse { .. }
        )
    }
}

/// The `sealed` column as read: at most 1 MiB, or an empty value for a larger one. A sealed
/// state is a state file (well under a KiB) plus 28 bytes, so a row holding more was not
/// written by refreshd, and is never read whole; an empty value never opens either.
const SEALED: &str =
    "CASE WHEN sealed IS NULL OR octet_length(sealed) <= 1048576 THEN sealed ELSE ''::bytea END";

/// Column `i` of `row`: an error, never a panic, when the database holds something else
/// than this build expects (a schema changed by hand).
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::invalid_answer(format!("column {i}: {e}")))
}

/// A `bigint` column that counts (a generation, a number of leases): never below zero.
fn count(row: &tokio_postgres::Row, i: usize) -> Result<u64, StoreError> {
    Ok(column::<i64>(row, i)?.max(0) as u64)
}

/// A PostgreSQL error as one line: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

/// What a credential's task is told: any change of a field is a reason to look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct News {
    /// The newest generation seen in the store.
    pub generation: u64,
    /// Bumped when this node takes the lease over.
    pub acquired: u64,
    /// The newest rotate request this node (the holder) is to answer, in microseconds since
    /// the epoch as the database stamped it: the notification and the round both carry the
    /// same stamp, so a request heard twice is answered once.
    pub asks: u64,
}

/// A credential's row as last read.
#[derive(Debug, Clone, Default)]
struct Row {
    generation: u64,
    holder: Option<String>,
    lease_until: Option<OffsetDateTime>,
    /// The last rotate request's stamp (see [`News::asks`]).
    rotate_asked_at: Option<i64>,
}

/// This node's view of the store.
struct View {
    error: Option<String>,
    since: OffsetDateTime,
    rows: HashMap<String, Row>,
    /// The leases held, each until a local monotonic deadline a little before its end.
    held: HashMap<String, tokio::time::Instant>,
    /// Credentials refreshing on their own while the store is down.
    local: HashSet<String>,
    /// Since when this node's rounds have worked without a break, on its monotonic clock.
    answering_since: Option<tokio::time::Instant>,
}

/// One node's handle on the store, shared by the daemon's tasks.
pub struct Fleet {
    pub node: String,
    pub lease: Duration,
    target: Target,
    key: Key,
    clock: SharedClock,
    /// The connection for renewals, reads and heartbeats, (re)made when needed.
    control: tokio::sync::Mutex<Option<Arc<Client>>>,
    view: Mutex<View>,
    news: Mutex<HashMap<String, tokio::sync::watch::Sender<News>>>,
    /// The shared credentials of the running config.
    names: Mutex<Vec<String>>,
    /// Bounds the connections held by refreshes in flight.
    fences: Semaphore,
    /// Credentials whose newest state this node could not commit (the store failed after the
    /// provider answered): their leases are not given up at a clean stop, so that this node,
    /// which alone holds that state, commits it before any other refreshes.
    uncommitted: Mutex<HashSet<String>>,
    /// Their connections between refreshes (at most [`FENCES`]).
    idle: Mutex<Vec<Client>>,
    started_at: OffsetDateTime,
    /// A daemon's registration as its node's one process; `None` for one-shot commands.
    instance: Option<Instance>,
    /// Counts queries sent, for the figures (`refreshd_store_queries_total`).
    queries: std::sync::atomic::AtomicU64,
}

/// How long one round or one read may wait for the database: a lease, but never less than
/// this (a new connection's login and migration check take a moment on a loaded host).
const ANSWER_MIN: Duration = Duration::from_secs(10);

/// At most this many refreshes hold a connection (and a row lock) at once.
const FENCES: usize = 8;

impl Fleet {
    /// Reads the URL and the key (a config error when either is unusable); connects later.
    pub fn new(config: &StoreConfig, clock: SharedClock) -> Result<Arc<Fleet>, StoreError> {
        Fleet::new_as(config, clock, None)
    }

    fn new_as(
        config: &StoreConfig,
        clock: SharedClock,
        instance: Option<Instance>,
    ) -> Result<Arc<Fleet>, StoreError> {
        let url = config.url.resolve().map_err(StoreError::UrlSecret)?;
        let target = Target::parse(&url)?;
        let key = Key::from_base64(&config.key.resolve().map_err(StoreError::KeySecret)?)?;
        let now = clock.now();
        Ok(Arc::new(Fleet {
            node: config.node.clone(),
            lease: config.lease,
            target,
            key,
            clock,
            control: tokio::sync::Mutex::new(None),
            view: Mutex::new(View {
                error: Some("not connected yet".to_owned()),
                since: now,
                rows: HashMap::new(),
                held: HashMap::new(),
                local: HashSet::new(),
                answering_since: None,
            }),
            news: Mutex::default(),
            names: Mutex::default(),
            fences: Semaphore::new(FENCES),
            idle: Mutex::default(),
            uncommitted: Mutex::default(),
            started_at: now,
            instance,
            queries: Default::default(),
        }))
    }

    /// [`Fleet::new`] for the shared credentials `names`, after one round: the leases this
    /// node can take are taken, so that its rotations start as the holder's rather than read
    /// an empty store as a follower's. `Err` when the store refuses this host (another key, a
    /// newer schema); a store that does not answer yet is the round's error, beside the fleet,
    /// for the caller to report (the rounds go on retrying it). A daemon joins as an
    /// `instance`: the node's one process ([`instance`]).
    pub async fn join(
        config: &StoreConfig,
        names: Vec<String>,
        clock: SharedClock,
        instance: Option<Instance>,
    ) -> Result<(Arc<Fleet>, Option<StoreError>), StoreError> {
        let fleet = Fleet::new_as(config, clock, instance)?;
        fleet.set_names(names);
        match fleet.round().await {
            Ok(()) => Ok((fleet, None)),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => Ok((fleet, Some(e))),
        }
    }

    /// How long a round or a read waits for an answer.
    fn patience(&self) -> Duration {
        self.lease.max(ANSWER_MIN)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        crate::sync::lock(&self.view)
    }

    fn counted(&self, n: u64) {
        self.queries
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The control connection, connected, migrated and key-checked if it was not.
    pub async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut control = self.control.lock().await;
        if let Some(client) = control.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (mut client, connection) = self.target.connect().await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // Renewals and reads never queue behind a refresh's row lock for long.
        client
            .batch_execute(&format!(
                "SET lock_timeout = {}",
                (self.lease / 3).as_millis().max(100)
            ))
            .await
            .map_err(StoreError::query)?;
        schema::migrate(&mut client).await?;
        schema::check_key(&client, &self.key).await?;
        instance::register(
            &client,
            &self.node,
            self.started_at,
            self.lease,
            self.instance.as_ref(),
        )
        .await?;
        self.counted(6);
        let client = Arc::new(client);
        *control = Some(client.clone());
        Ok(client)
    }

    /// Drops the control connection after an error: the next use makes a new one.
    async fn reset(&self) {
        *self.control.lock().await = None;
    }

    /// Records whether the store answered; says so in the log when that changes.
    fn mark(&self, result: Result<(), &StoreError>) {
        let now = self.clock.now();
        let mut view = self.view();
        match result {
            Ok(()) => {
                view.answering_since
                    .get_or_insert_with(tokio::time::Instant::now);
                if view.error.is_some() {
                    tracing::info!(store = %self.target.describe, node = %self.node, "store reachable");
                    view.error = None;
                    view.since = now;
                }
            }
            Err(e) => {
                view.answering_since = None;
                let message = e.to_string();
                if view.error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(store = %self.target.describe, "{message}");
                }
                if view.error.is_none() {
                    view.since = now;
                }
                view.error = Some(message);
            }
        }
    }

    /// Why the store did not answer this node's last round, or `None` when it did (for
    /// notifications: cheaper than the whole [`crate::observe::FleetView`]).
    pub fn unreachable(&self) -> Option<String> {
        self.view().error.clone()
    }

    /// Whether this node holds `name`'s lease with time to spare.
    pub fn holds(&self, name: &str) -> bool {
        self.view()
            .held
            .get(name)
            .is_some_and(|until| *until > tokio::time::Instant::now())
    }

    /// Records that `name`'s newest state is (`true`) or is no longer (`false`) only here.
    pub fn set_uncommitted(&self, name: &str, uncommitted: bool) {
        let mut set = crate::sync::lock(&self.uncommitted);
        if uncommitted {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    }

    /// Marks `name` as refreshing on its own (store down) or not, for status.
    pub fn set_local(&self, name: &str, local: bool) {
        let mut view = self.view();
        if local {
            view.local.insert(name.to_owned());
        } else {
            view.local.remove(name);
        }
    }

    /// Sets the shared credentials of the running config.
    pub fn set_names(&self, names: Vec<String>) {
        let keep: HashSet<&String> = names.iter().collect();
        crate::sync::lock(&self.news).retain(|name, _| keep.contains(name));
        let mut view = self.view();
        view.rows.retain(|name, _| keep.contains(name));
        view.held.retain(|name, _| keep.contains(name));
        drop(view);
        *crate::sync::lock(&self.names) = names;
    }

    fn names(&self) -> Vec<String> {
        crate::sync::lock(&self.names).clone()
    }

    /// What `name`'s task waits on.
    pub fn subscribe(&self, name: &str) -> tokio::sync::watch::Receiver<News> {
        crate::sync::lock(&self.news)
            .entry(name.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(News::default()).0)
            .subscribe()
    }

    fn tell(&self, name: &str, change: impl FnOnce(&mut News) -> bool) {
        if let Some(sender) = crate::sync::lock(&self.news).get(name) {
            sender.send_if_modified(change);
        }
    }
}
