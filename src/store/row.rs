//! A credential's row read and written outside a refresh: a follower's read, a login's new
//! grant, a bootstrap refresh token handed over, a follower's rotate request and its wait.
//!
//! Must never: spend a refresh token or commit a refresh's answer (that is [`super::fence`]),
//! or write a state unsealed.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::watch::{ASK_STAMP, CHANNEL};
use super::{Fleet, SEALED, StoreError};
use crate::seal::Binding;
use crate::state::{self, CredentialState};

/// A credential's row as a follower reads it.
#[derive(Debug, Default)]
pub struct Stored {
    /// The sealed state, opened (`None`: nothing committed yet).
    pub state: Option<CredentialState>,
    /// Fingerprints of every bootstrap refresh token the store took over.
    pub bootstraps_seen: Vec<String>,
}

impl Fleet {
    /// The state sealed in a row, if any.
    pub(super) fn unseal(
        &self,
        name: &str,
        generation: u64,
        sealed: Option<&[u8]>,
    ) -> Result<Option<CredentialState>, StoreError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if sealed.is_empty() {
            return Err(StoreError::Invalid {
                credential: name.to_owned(),
                reason: "its sealed state is empty or over 1 MiB, more than a state can be"
                    .to_owned(),
            });
        }
        let plain = self
            .key
            .open(&Binding::store(name, generation), sealed)
            .map_err(|_| StoreError::Unopenable {
                credential: name.to_owned(),
                generation,
            })?;
        let mut state =
            state::decode(name, plain.expose_secret()).map_err(|e| StoreError::Invalid {
                credential: name.to_owned(),
                reason: match e {
                    state::Decode::Invalid(reason) => reason,
                    state::Decode::Newer(found) => {
                        format!("state version {found} is newer than this refreshd")
                    }
                },
            })?;
        state.generation = Some(generation);
        Ok(Some(state))
    }

    /// The store's state of `name` (a follower's read; no lock), given up after a lease.
    pub async fn read(&self, name: &str) -> Result<Stored, StoreError> {
        match tokio::time::timeout(self.patience(), self.try_read(name)).await {
            Ok(read) => read,
            Err(_) => {
                self.reset().await;
                Err(StoreError::Unreachable(format!(
                    "{}: no answer within {}",
                    self.target.describe,
                    humantime::format_duration(self.patience())
                )))
            }
        }
    }

    async fn try_read(&self, name: &str) -> Result<Stored, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT generation, {SEALED}, bootstraps_seen FROM refreshd_credentials WHERE name = $1"
                ),
                &[&name],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        let Some(row) = row else {
            return Ok(Stored::default());
        };
        let generation = super::count(&row, 0)?;
        let sealed: Option<Vec<u8>> = super::column(&row, 1)?;
        Ok(Stored {
            state: self.unseal(name, generation, sealed.as_deref())?,
            bootstraps_seen: super::column(&row, 2)?,
        })
    }

    /// Stores a new grant (`refreshd login`) whoever holds the lease: the holder's next
    /// refresh spends it, and every node takes its token over. The generation committed.
    pub async fn store_login(
        &self,
        name: &str,
        state: &CredentialState,
    ) -> Result<u64, StoreError> {
        // The schema migrated and the key checked before anything is sealed, and before a
        // transaction is open (its session is ended after a lease of idling).
        self.client().await?;
        let client = self.transaction(self.lease).await?;
        let result = self.commit_on(&client, name, None, state).await;
        self.end(client, result.is_ok()).await?;
        result
    }

    /// A configured bootstrap refresh token the store has not seen (its fingerprint is not
    /// the one the stored refresh token descends from) becomes the stored refresh token, for
    /// the holder to spend: whichever node sees it first hands it over. Checked and written
    /// under the row's lock, so a token the holder already spent is never handed over again.
    /// Whether it was handed over.
    pub async fn hand_over_bootstrap(
        &self,
        name: &str,
        bootstrap: &secrecy::SecretString,
    ) -> Result<bool, StoreError> {
        let fingerprint = crate::token::fingerprint(bootstrap);
        let client = self.transaction(self.lease).await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT generation, {SEALED}, $2 = ANY(bootstraps_seen)
                       FROM refreshd_credentials WHERE name = $1 FOR UPDATE"
                ),
                &[&name, &fingerprint],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        let Some(row) = row else {
            self.end(client, false).await?;
            return Ok(false);
        };
        let generation = super::count(&row, 0)?;
        let sealed: Option<Vec<u8>> = super::column(&row, 1)?;
        // An empty store is seeded by the holder from its own configuration.
        let state = self.unseal(name, generation, sealed.as_deref())?;
        let Some(mut state) = state
            .filter(|state| state.bootstrap_fingerprint.as_deref() != Some(fingerprint.as_str()))
        else {
            self.end(client, false).await?;
            return Ok(false);
        };
        if super::column::<bool>(&row, 2)? {
            self.end(client, false).await?;
            return Ok(false);
        }
        state.refresh_token = Some(bootstrap.clone());
        state.bootstrap_fingerprint = Some(fingerprint);
        let result = self.commit_on(&client, name, None, &state).await;
        self.end(client, result.is_ok()).await?;
        result.map(|_| true)
    }

    /// A follower's `rotate`: asks the holder through the row (the holder hears it at once,
    /// or at its next round). The caller waits for the new generation holding nothing.
    pub async fn ask(&self, name: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        // One statement, so the notification goes out when the stamp is visible.
        client
            .execute(
                &format!(
                    "WITH asked AS (
                         UPDATE refreshd_credentials
                            SET rotate_asked_at = clock_timestamp(), rotate_asked_by = $2
                          WHERE name = $1
                         RETURNING rotate_asked_at)
                     SELECT pg_notify($3, 'a ' || rotate_asked_at::text || ' ' || $1::text)
                       FROM (SELECT {ASK_STAMP} FROM asked) stamped"
                ),
                &[&name, &self.node, &CHANNEL],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        Ok(())
    }

    /// Waits up to `wait` for a generation of `name` newer than `seen`, holding nothing: the
    /// notification raises it in a daemon; a one-shot command, which does not listen, reads
    /// the row every second. Whether one came.
    pub async fn wait_for_generation(&self, name: &str, seen: u64, wait: Duration) -> bool {
        let mut news = self.subscribe(name);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if news.borrow_and_update().generation > seen {
                return true;
            }
            let poll = tokio::time::sleep(Duration::from_secs(1));
            tokio::select! {
                changed = news.changed() => if changed.is_err() { return false },
                _ = poll => {
                    if let Ok(Stored { state: Some(state), .. }) = self.read(name).await {
                        let generation = state.generation.unwrap_or(0);
                        self.tell(name, |news| super::watch::raise(news, generation));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}
