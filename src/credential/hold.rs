//! A rotation's hold on a credential on this host: its lock, its state (the file's, or a
//! newer one the disk refused earlier) and every save of it, on the blocking pool (an fsync
//! must never stall other credentials' timers). A state the disk refuses stays here, with
//! its lock held, until it can be stored: it is what the next rotation spends, and no other
//! process may spend the older refresh token on file meanwhile.
//!
//! Must never: save a state without its credential's lock, or drop a refused state.

use super::engine::Engine;
use super::outcome::{Refused, RotationError};
use crate::config::Credential;
use crate::state::{CredentialLock, CredentialState, Unsaved};

/// A credential's lock and state, held for one rotation.
pub(super) struct Hold {
    lock: CredentialLock,
    pub state: CredentialState,
    /// Why `state` could not be stored, when the last save failed.
    pub unsaved: Option<Refused>,
}

impl Engine {
    /// The credential's lock and newest state: a state the disk refused earlier (stored now if
    /// the disk takes it), else the file's, read under the lock (another process may have
    /// just rotated).
    pub(super) async fn hold(&self, credential: &Credential) -> Result<Hold, RotationError> {
        if let Some((state, lock)) = self.take_unsaved(&credential.name) {
            let mut hold = Hold {
                lock,
                state,
                unsaved: None,
            };
            self.save(credential, &mut hold).await;
            if hold.unsaved.is_none() {
                tracing::info!(credential = %credential.name, "the state that could not be stored earlier is stored now");
            }
            return Ok(hold);
        }
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        // The lock may be held by another process, and the disk may be slow.
        let (lock, state) = tokio::task::spawn_blocking(move || {
            let lock = state_dir.lock(&name)?;
            let state = state_dir.load(&name)?;
            Ok::<_, RotationError>((lock, state))
        })
        .await
        .unwrap_or_else(|e| Err(RotationError::Internal(e.to_string())))?;
        Ok(Hold {
            lock,
            state,
            unsaved: None,
        })
    }

    /// Stores the held state, on the blocking pool; a refusal is recorded in the hold.
    pub(super) async fn save(&self, credential: &Credential, hold: &mut Hold) {
        let state_dir = self.state.clone();
        let name = credential.name.clone();
        let copy = hold.state.clone();
        let saved = tokio::task::spawn_blocking(move || state_dir.save(&name, &copy)).await;
        let refused = match saved {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((e.unsaved(), e.to_string())),
            Err(e) => Some((Unsaved::Io, e.to_string())),
        };
        hold.unsaved =
            refused.map(|(cause, reason)| unsaved_because(credential, &hold.state, cause, reason));
    }

    /// Ends a rotation's hold: the lock is released, unless the state could not be stored
    /// (then both are kept for the next rotation).
    pub(super) fn let_go(&self, name: &str, hold: Hold) {
        if hold.unsaved.is_some() {
            self.unsaved()
                .insert(name.to_owned(), (hold.state, hold.lock));
        }
    }

    /// Tries to store what is still unsaved for `credential` (`once` retries this before it
    /// gives up); the reason it still cannot be stored, if so.
    pub async fn store_unsaved(&self, credential: &Credential) -> Option<Refused> {
        let (state, lock) = self.take_unsaved(&credential.name)?;
        let mut hold = Hold {
            lock,
            state,
            unsaved: None,
        };
        self.save(credential, &mut hold).await;
        let reason = hold.unsaved.clone();
        self.let_go(&credential.name, hold);
        reason
    }

    /// Whether a state of `name` waits to be stored.
    pub(super) fn has_unsaved(&self, name: &str) -> bool {
        self.unsaved().contains_key(name)
    }

    fn take_unsaved(&self, name: &str) -> Option<(CredentialState, CredentialLock)> {
        self.unsaved().remove(name)
    }
}

/// Says why `state` could not be stored and what is at risk; the refusal.
fn unsaved_because(
    credential: &Credential,
    state: &CredentialState,
    cause: Unsaved,
    reason: String,
) -> Refused {
    tracing::error!(
        credential = %credential.name,
        unsaved = %cause,
        "{reason}: the new state is kept in memory, and this credential's lock held, until it can be stored (retried with backoff); if refreshd stops before then, {}",
        if state.refresh_token.is_some() {
            "the newest refresh token is lost and, where the provider allows each refresh token once, the credential needs a new login"
        } else {
            "only its status history is lost"
        }
    );
    Refused { cause, reason }
}
