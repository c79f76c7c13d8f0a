//! A login's grant, stored as a rotation's answer is: under the credential's lock, through
//! its ledger (committed to the fleet store first when the config shares the credential),
//! then saved in this host's state directory. Lock → load → record → persist is written
//! once, in [`super::hold`]; this is its use by `refreshd login`.
//!
//! Must never: write a target or run a reload (the rotation that follows does).

use secrecy::SecretString;
use time::OffsetDateTime;

use super::engine::Engine;
use super::ledger::Ledger;
use super::outcome::{Refused, RotationError};
use crate::config::Credential;
use crate::token::Token;

/// What a login obtained.
pub struct Grant {
    pub token: Token,
    pub refresh_token: SecretString,
    /// The fingerprint of the configured bootstrap token, which must not take over from
    /// this newer login.
    pub bootstrap_fingerprint: Option<String>,
    pub at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("the state could not be stored: {0}")]
    Unsaved(Refused),
    /// Stored on this host, not in the fleet store (it refused, or this command could not
    /// join it): why.
    #[error("{0}")]
    Store(String),
}

impl Engine {
    /// Stores `grant` for `credential`; the fleet store's generation, when it went there.
    pub async fn seed(
        &self,
        credential: &Credential,
        grant: Grant,
    ) -> Result<Option<u64>, SeedError> {
        // A shared credential whose store this command could not join is still stored here:
        // a login thrown away is worse than one the store gets later.
        let ledger = Ledger::of(credential, self.fleet());
        let mut hold = self.hold(credential).await?;
        let Grant {
            token,
            refresh_token,
            bootstrap_fingerprint,
            at,
        } = grant;
        hold.state
            .record_login(token, refresh_token, bootstrap_fingerprint, at);
        // Every node takes the new grant over from the store, the holder spends it next;
        // under the lock, so that no rotation here spends it before the commit.
        let committed = match &ledger {
            Ok(Ledger::Fleet { fleet, .. }) => fleet
                .store_login(&credential.name, &hold.state.sealable())
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
            Ok(Ledger::Local) => Ok(None),
            Err(no_store) => Err(no_store.to_string()),
        };
        if let Ok(Some(generation)) = committed {
            hold.state.record_committed(generation);
        }
        if let Some(token) = &hold.state.token {
            crate::audit::record(&crate::audit::Event::Login {
                credential: &credential.name,
                fingerprint: &token.fingerprint(),
            });
        }
        self.save(credential, &mut hold).await;
        let unsaved = hold.unsaved.take();
        self.let_go(&credential.name, hold);
        if let Some(refused) = unsaved {
            return Err(SeedError::Unsaved(refused));
        }
        committed.map_err(SeedError::Store)
    }
}
