//! Every read of a credential's token by a process other than refreshd goes through
//! [`Reads::token`]: the control socket's `token` and `watch`, and the SDK endpoints. It
//! checks the caller (learned from the kernel by [`crate::peer`], never from what the
//! client sends) against the credential's `readers`, waits for a rotation in flight when
//! the token is past its refresh point, answers from the state directory, and logs and
//! counts the read.
//!
//! Must never: start a refresh (a reader only ever gets what the credential's own task
//! made), log a token, or tell a caller that a credential it may not read exists.

mod readers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

pub use readers::Grants;

use crate::config::{Config, Credential};
use crate::observe::{Observed, ReadCounts};
use crate::state::StateDir;
use crate::token;

/// Who asked, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// The path a read came through, as counted in `refreshd_token_reads_total{via}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    Socket,
    DatabricksMetadata,
    GceMetadata,
    AzureManagedIdentity,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Socket => "socket",
            Via::DatabricksMetadata => "databricks-metadata",
            Via::GceMetadata => "gce-metadata",
            Via::AzureManagedIdentity => "azure-managed-identity",
        }
    }
}

/// A token handed to a reader, with what the protocols around it need to say.
pub struct Issued {
    pub token: SecretString,
    pub token_type: &'static str,
    pub expires_at: OffsetDateTime,
    pub fingerprint: String,
    /// The values minted with the token; only a request that asks gets them.
    pub fields: crate::token::Fields,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("fingerprint", &self.fingerprint)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a read got nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Also what a caller hears of a credential that does not exist: which names exist is
    /// not for everyone to learn.
    #[error("no credential named {0:?} that this user may read")]
    Refused(String),
    #[error("{0}")]
    NoToken(String),
}

/// The one way other processes read tokens. Cheap to clone.
#[derive(Clone)]
pub struct Reads(Arc<Inner>);

struct Inner {
    grants: RwLock<Grants>,
    observed: Observed,
    state: StateDir,
    counts: Arc<ReadCounts>,
    /// The token last handed to each (credential, uid, via): a repeat is logged at debug.
    seen: Mutex<BTreeMap<(String, u32, Via), String>>,
}

impl Reads {
    pub fn new(config: &Config, observed: Observed, state: StateDir) -> Reads {
        let counts = observed.read_counts();
        Reads(Arc::new(Inner {
            grants: RwLock::new(Grants::of(config)),
            observed,
            state,
            counts,
            seen: Mutex::new(BTreeMap::new()),
        }))
    }

    /// A reloaded config's readers apply to the next request.
    pub fn update(&self, config: &Config) {
        *self.grants_mut() = Grants::of(config);
    }

    fn grants(&self) -> std::sync::RwLockReadGuard<'_, Grants> {
        self.0
            .grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn grants_mut(&self) -> std::sync::RwLockWriteGuard<'_, Grants> {
        self.0
            .grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `caller` runs as refreshd's own user or root: everything is theirs.
    pub fn is_owner(caller: Caller) -> bool {
        caller.uid == 0 || caller.uid == nix::unistd::geteuid().as_raw()
    }

    /// Whether `caller` may read `name`'s token and status.
    pub fn may_read(&self, name: &str, caller: Caller) -> bool {
        Reads::is_owner(caller) || self.grants().admits(name, caller.uid)
    }

    /// The credentials `caller` may read, of `names`.
    pub fn readable<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        caller: Caller,
    ) -> Vec<String> {
        let owner = Reads::is_owner(caller);
        let grants = self.grants();
        names
            .filter(|name| owner || grants.admits(name, caller.uid))
            .map(str::to_owned)
            .collect()
    }

    /// Whether any credential grants readers beyond the owner (the control socket then
    /// lets other users connect).
    pub fn any_readers(&self) -> bool {
        self.grants().any()
    }

    /// Logs and refuses a read `caller` may not make.
    pub fn refuse(&self, name: &str, caller: Caller, via: Via) -> ReadError {
        crate::audit::record(&crate::audit::Event::Refused {
            credential: Some(name),
            uid: caller.uid,
            pid: caller.pid,
            via: via.as_str(),
            what: "token",
        });
        tracing::warn!(
            credential = %crate::observe::shown(name),
            uid = caller.uid,
            pid = ?caller.pid,
            via = via.as_str(),
            "token read refused: the caller is not among the credential's readers"
        );
        ReadError::Refused(name.to_owned())
    }

    /// `name`'s current token for `caller`. Past its refresh point, waits up to `wait` for
    /// the rotation the credential's task has in flight (it never starts one), then answers
    /// whatever is current.
    pub async fn token(
        &self,
        name: &str,
        caller: Caller,
        via: Via,
        wait: Duration,
    ) -> Result<Issued, ReadError> {
        if !self.0.observed.has(name) || !self.may_read(name, caller) {
            return Err(self.refuse(name, caller, via));
        }
        self.settle(name, wait).await;
        let now = self.0.observed.now();
        let state = self.0.state.clone();
        let owned = name.to_owned();
        let token = tokio::task::spawn_blocking(move || state.load(&owned))
            .await
            .map_err(|e| ReadError::NoToken(e.to_string()))?
            .map_err(|e| ReadError::NoToken(e.to_string()))?
            .token;
        let token = match token {
            Some(token) if token.is_valid_at(now) => token,
            Some(token) => {
                return Err(ReadError::NoToken(format!(
                    "{name}: the token expired at {}; the daemon is still trying to refresh it",
                    token::rfc3339(token.expires_at)
                )));
            }
            None => return Err(ReadError::NoToken(format!("{name}: no token yet"))),
        };
        let issued = Issued {
            fingerprint: token.fingerprint(),
            token: token.access_token,
            token_type: "Bearer",
            expires_at: token.expires_at,
            fields: token.fields,
        };
        self.record(name, caller, via, &issued.fingerprint);
        Ok(issued)
    }

    /// Waits (up to `wait`) while `name`'s refresh point has passed and its task has not
    /// published a newer plan: a reader then gets the new token, not one about to go.
    async fn settle(&self, name: &str, wait: Duration) {
        let mut observed = self.0.observed.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let due = observed
                .snapshot()
                .get(name)
                .and_then(|status| status.next_refresh)
                .is_some_and(|at| at <= observed.now());
            if !due {
                return;
            }
            match tokio::time::timeout_at(deadline, observed.changed()).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    fn record(&self, name: &str, caller: Caller, via: Via, fingerprint: &str) {
        self.0.counts.add(name, via.as_str());
        crate::audit::record(&crate::audit::Event::TokenRead {
            credential: name,
            uid: caller.uid,
            pid: caller.pid,
            via: via.as_str(),
            fingerprint,
        });
        let first = {
            let mut seen = self
                .0
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (name.to_owned(), caller.uid, via);
            let first = seen.get(&key).is_none_or(|last| last != fingerprint);
            if first {
                seen.insert(key, fingerprint.to_owned());
            }
            first
        };
        // Each token handed to each reader is logged once at info; repeats (an SDK asking
        // every few seconds) at debug, so a busy endpoint does not drown the rotation log.
        if first {
            tracing::info!(credential = %name, uid = caller.uid, pid = ?caller.pid, via = via.as_str(), fingerprint = %fingerprint, "token read");
        } else {
            tracing::debug!(credential = %name, uid = caller.uid, pid = ?caller.pid, via = via.as_str(), fingerprint = %fingerprint, "token read");
        }
    }

    /// The credential `name` of the running config, if any.
    pub fn credential(&self, name: &str) -> Option<Arc<Credential>> {
        self.grants().credential(name)
    }
}
