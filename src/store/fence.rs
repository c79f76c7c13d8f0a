//! The fencing of a shared credential's refresh: the token request and the commit of its
//! result happen inside one transaction that has locked the credential's row and checked
//! that this node holds the lease, so a node whose lease lapsed (a pause, a partition)
//! can never commit; and the commit comes before any host writes a target. The one place a
//! credential's row gets a new generation ([`super::row`] asks it to for a login's grant or a
//! bootstrap token handed over).
//!
//! Must never: send a request outside a fence it holds, or write a state unsealed.

use std::time::Duration;

use tokio::sync::SemaphorePermit;
use tokio_postgres::Client;

use super::row::Stored;
use super::watch::CHANNEL;
use super::{Fleet, SEALED, StoreError};
use crate::seal::Binding;
use crate::state::{self, CredentialState};

/// How long a refresh waits for the row when a login (or a stalled holder's transaction)
/// has it locked, before it counts as a transient failure.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// What claiming a credential found.
pub enum Claim<'a> {
    /// This node holds the lease: refresh (or not) inside the fence, then commit or drop it.
    Held(Box<Fence<'a>>, Option<CredentialState>),
    /// Another node holds it (or nobody, until a round takes it): the store's state.
    Follower(Stored),
}

/// An open transaction holding a credential's row, while this node holds its lease.
/// Dropped without [`Fence::commit`], it rolls back: nothing changes in the store.
pub struct Fence<'a> {
    fleet: &'a Fleet,
    client: Client,
    name: String,
    generation: u64,
    began: tokio::time::Instant,
    /// Fingerprints of every bootstrap refresh token the store took over: a configured one
    /// among them is spent already and never spent again.
    pub bootstraps_seen: Vec<String>,
    _permit: SemaphorePermit<'a>,
}

impl Fleet {
    /// Begins a refresh of `name` when this node holds its lease: the lease is extended by
    /// `timeout` (the request and the commit must fit in it) and the intent recorded, both
    /// committed before the token request is sent (a database that restarts while the
    /// answer is on its way keeps them: see `migrations/003_refresh_intent.sql`). When this
    /// node does not hold the lease after all, the row as a follower reads it.
    pub async fn claim(&self, name: &str, timeout: Duration) -> Result<Claim<'_>, StoreError> {
        let permit = self
            .fences
            .acquire()
            .await
            .map_err(|_| StoreError::Unreachable("stopping".to_owned()))?;
        let client = self.pooled().await?;
        let lease = (self.lease + timeout).as_secs_f64();
        let row = client
            .query_opt(
                &format!(
                    "UPDATE refreshd_credentials
                        SET lease_until = clock_timestamp() + make_interval(secs => $3),
                            refreshing = $2, refreshing_since = clock_timestamp()
                      WHERE name = $1 AND holder = $2 AND lease_until > clock_timestamp()
                  RETURNING generation, {SEALED}, bootstraps_seen"
                ),
                &[&name, &self.node, &lease],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        let Some(row) = row else {
            self.put_back(client);
            return self.read(name).await.map(Claim::Follower);
        };
        let generation = super::count(&row, 0)?;
        let sealed: Option<Vec<u8>> = super::column(&row, 1)?;
        let bootstraps_seen: Vec<String> = super::column(&row, 2)?;
        let state = self.unseal(name, generation, sealed.as_deref())?;
        Ok(Claim::Held(
            Box::new(Fence {
                fleet: self,
                client,
                name: name.to_owned(),
                generation,
                began: tokio::time::Instant::now(),
                bootstraps_seen,
                _permit: permit,
            }),
            state,
        ))
    }

    /// A connection of its own (a kept one, or a new one): statements on it wait at most
    /// [`LOCK_WAIT`] for a row that a login or another transaction holds.
    async fn pooled(&self) -> Result<Client, StoreError> {
        // A kept connection first; one the server closed meanwhile is replaced.
        let kept = crate::sync::lock(&self.idle).pop();
        if let Some(client) = kept.filter(|client| !client.is_closed()) {
            return Ok(client);
        }
        let (client, connection) = self.target.connect().await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(&format!("SET lock_timeout = {}", LOCK_WAIT.as_millis()))
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        Ok(client)
    }

    /// Keeps `client` for the next refresh (which then costs no new connection and login).
    fn put_back(&self, client: Client) {
        let mut idle = crate::sync::lock(&self.idle);
        if idle.len() < super::FENCES {
            idle.push(client);
        }
    }

    /// A pooled connection with a transaction open, ended by the server when this process
    /// stalls in it longer than `stall`.
    pub(super) async fn transaction(&self, stall: Duration) -> Result<Client, StoreError> {
        let client = self.pooled().await?;
        begin(&client, stall).await?;
        self.counted(1);
        Ok(client)
    }

    /// Ends a transaction and keeps its connection for the next one.
    pub(super) async fn end(&self, client: Client, commit: bool) -> Result<(), StoreError> {
        client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        self.put_back(client);
        Ok(())
    }

    /// Inside an open transaction: locks the row (made if missing), checks the holder and
    /// generation when `fenced` says whose and which, writes `state` sealed as the next
    /// generation and announces it at commit. The generation written.
    pub(super) async fn commit_on(
        &self,
        client: &Client,
        name: &str,
        fenced: Option<u64>,
        state: &CredentialState,
    ) -> Result<u64, StoreError> {
        client
            .execute(
                "INSERT INTO refreshd_credentials (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .await
            .map_err(StoreError::query)?;
        let row = client
            .query_one(
                // Under the row lock this transaction has held since the claim (fenced), the
                // holder and generation prove nobody else committed; the lease's end does not
                // matter then (a slow answer must still be committed).
                "SELECT generation, holder = $2
                   FROM refreshd_credentials WHERE name = $1 FOR UPDATE",
                &[&name, &self.node],
            )
            .await
            .map_err(StoreError::query)?;
        let current = super::count(&row, 0)?;
        if let Some(expected) = fenced
            && (current != expected || super::column::<Option<bool>>(&row, 1)? != Some(true))
        {
            return Err(StoreError::Fenced(name.to_owned()));
        }
        let next = current
            .max(state.generation.unwrap_or(0))
            .checked_add(1)
            .filter(|next| i64::try_from(*next).is_ok())
            .ok_or_else(|| StoreError::Invalid {
                credential: name.to_owned(),
                reason: format!("generation {current} cannot grow"),
            })?;
        // What is sealed is what every node may take over: the caller scrubbed this host's
        // own history from it (credential::transition), the generation is the store's.
        let mut sealed_state = state.clone();
        sealed_state.generation = Some(next);
        let sealed = self.key.seal(
            &Binding::store(name, next),
            &state::encode(name, &sealed_state),
        );
        let expires_at = state.token.as_ref().map(|t| t.expires_at);
        client
            .execute(
                "UPDATE refreshd_credentials
                    SET generation = $2, sealed = $3, expires_at = $4, last_error = NULL,
                        updated_at = clock_timestamp(), updated_by = $5,
                        bootstraps_seen = CASE WHEN $6::text IS NULL OR $6 = ANY(bootstraps_seen)
                                               THEN bootstraps_seen
                                               ELSE array_append(bootstraps_seen, $6) END
                  WHERE name = $1",
                &[
                    &name,
                    &(next as i64),
                    &sealed,
                    &expires_at,
                    &self.node,
                    &state.bootstrap_fingerprint,
                ],
            )
            .await
            .map_err(StoreError::query)?;
        client
            .execute(
                "SELECT pg_notify($1, 'g ' || $2::text || ' ' || $3)",
                &[&CHANNEL, &(next as i64).to_string(), &name],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(4);
        Ok(next)
    }

    /// Back to a plain lease and no intent once the request is over and its answer, if
    /// any, is in the store: the extension by its timeout would otherwise delay a takeover if
    /// this node died right after.
    async fn shorten(&self, client: &Client, name: &str) -> Result<(), StoreError> {
        let lease = self.lease.as_secs_f64();
        client
            .execute(
                "UPDATE refreshd_credentials
                    SET lease_until = clock_timestamp() + make_interval(secs => $2),
                        refreshing = NULL, refreshing_since = NULL
                  WHERE name = $1 AND holder = $3",
                &[&name, &lease, &self.node],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        Ok(())
    }
}

impl Fence<'_> {
    /// How long ago this fence began, on this host's monotonic clock (a holder that stalled
    /// for half a lease must not send the token request: `credential::decide::may_send`).
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// The lease this fence was taken under.
    pub fn lease(&self) -> Duration {
        self.fleet.lease
    }

    /// The name of the credential whose row this fence holds.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generation this fence holds the row at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Commits `state` (a refresh's result) as the next generation, if the lease and the
    /// generation are still this fence's; the generation committed.
    pub async fn commit(self, state: &CredentialState) -> Result<u64, StoreError> {
        let (fleet, name) = (self.fleet, self.name.clone());
        let committed = self.try_commit(state).await;
        // A state that could not be committed after the provider answered exists only here.
        fleet.set_uncommitted(&name, committed.is_err());
        if let Ok(next) = committed {
            fleet.tell(&name, |news| super::watch::raise(news, next));
        }
        committed
    }

    async fn try_commit(self, state: &CredentialState) -> Result<u64, StoreError> {
        let fleet = self.fleet;
        begin(&self.client, fleet.lease).await?;
        let committed = fleet
            .commit_on(&self.client, &self.name, Some(self.generation), state)
            .await;
        let next = match committed {
            Ok(next) => next,
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        fleet.shorten(&self.client, &self.name).await?;
        fleet.end(self.client, true).await?;
        Ok(next)
    }

    /// Ends the fence without a new state: a plain lease again, and no intent (this fence
    /// has no answer the store lacks).
    pub async fn release(self) {
        if self.fleet.shorten(&self.client, &self.name).await.is_ok() {
            self.fleet.put_back(self.client);
        }
    }
}

/// Opens a transaction on `client`, ended by the server when idle in it longer than `stall`.
async fn begin(client: &Client, stall: Duration) -> Result<(), StoreError> {
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}; BEGIN",
            stall.as_millis()
        ))
        .await
        .map_err(StoreError::query)
}
