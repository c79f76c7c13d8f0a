//! Who may spend a credential's refresh token, and where its newest state lives: this
//! host's state directory alone ([`Ledger::Local`]), or the fleet store over this host's
//! state as a cache ([`Ledger::Fleet`]). Chosen once per credential from the config: a
//! credential the config shares never runs alone because a command lacks the store, and
//! runs alone while the store is down only when its `local_fallback` says so, with a warning.
//!
//! A [`Session`] is one rotation's hold on the ledger: for the fleet's lease holder, a
//! fence (an open transaction on the row) that the answer is committed through.
//!
//! Must never: decide what to do (that is [`super::decide`]), or commit outside a fence.

use std::time::Duration;

use super::decide::Seat;
use crate::config::{Credential, Sharing, SourceConfig};
use crate::state::CredentialState;
use crate::store::{Claim, Fence, Fleet, StoreError, Stored};

/// Where one credential's newest state lives.
#[derive(Clone, Copy)]
pub(super) enum Ledger<'a> {
    Local,
    Fleet {
        fleet: &'a Fleet,
        /// Refresh alone while the store does not answer (a source that spends no refresh
        /// token only).
        local_fallback: bool,
    },
}

/// A credential the config keeps on this host (`shared = false`) whose refresh token came
/// from the fleet store: spending it here would spend the fleet's grant a second time.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}'s refresh token came from the fleet store (generation {1}), and the config now keeps the credential on this host (shared = false): spending it here would spend the fleet's grant a second time, and the provider may revoke it; set `shared = true` again, or run `refreshd login {0}` to give this host a grant of its own"
)]
pub struct FleetsGrant(pub String, pub u64);

/// Why a credential has no ledger: the config shares it, and this engine has no store.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is shared through the fleet store, and this command runs without it: nothing was refreshed (a shared refresh token is spent only by the lease holder)"
)]
pub struct NoStore(pub String);

impl<'a> Ledger<'a> {
    /// The ledger the config chose for `credential`.
    pub(super) fn of(credential: &Credential, fleet: Option<&'a Fleet>) -> Result<Self, NoStore> {
        match (credential.sharing, fleet) {
            (Sharing::Local, _) => Ok(Ledger::Local),
            (Sharing::Shared { local_fallback }, Some(fleet)) => Ok(Ledger::Fleet {
                fleet,
                local_fallback,
            }),
            (Sharing::Shared { .. }, None) => Err(NoStore(credential.name.clone())),
        }
    }

    pub(super) fn is_local(&self) -> bool {
        matches!(self, Ledger::Local)
    }

    /// `Err` when this host alone would spend a refresh token that the fleet store handed
    /// it (the config changed to `shared = false`).
    pub(super) fn may_spend(
        &self,
        credential: &Credential,
        state: &CredentialState,
    ) -> Result<(), FleetsGrant> {
        match (self, state.generation) {
            (Ledger::Local, Some(generation))
                if credential.source.oauth_refresh().is_some() && state.refresh_token.is_some() =>
            {
                Err(FleetsGrant(credential.name.clone(), generation))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn fleet(&self) -> Option<&'a Fleet> {
        match self {
            Ledger::Local => None,
            Ledger::Fleet { fleet, .. } => Some(fleet),
        }
    }

    /// Opens the ledger for one rotation of `credential`. The fleet: a transaction on the row
    /// when this node holds the lease, else a plain read; a store that does not answer is
    /// the error, unless the credential may fall back to refreshing alone.
    pub(super) async fn open(&self, credential: &Credential) -> Result<Session<'a>, StoreError> {
        let Ledger::Fleet {
            fleet,
            local_fallback,
        } = *self
        else {
            return Ok(Session::Alone);
        };
        let name = &credential.name;
        let claim = if fleet.holds(name) {
            fleet.claim(name, fetch_budget(credential)).await
        } else {
            fleet.read(name).await.map(Claim::Follower)
        };
        match claim {
            Ok(Claim::Held(fence, stored)) => {
                fleet.set_local(name, false);
                Ok(Session::Holder { fence, stored })
            }
            Ok(Claim::Follower(stored)) => {
                fleet.set_local(name, false);
                Ok(Session::Follower(stored))
            }
            Err(e) if local_fallback && !e.is_fatal() => {
                tracing::warn!(credential = %name, "{e}: refreshing on this host alone (local_fallback)");
                fleet.set_local(name, true);
                Ok(Session::Alone)
            }
            Err(e) => Err(e),
        }
    }
}

/// One rotation's hold on its ledger.
pub(super) enum Session<'a> {
    /// This host alone: nothing to commit beyond the state directory.
    Alone,
    /// The fleet's lease holder, inside a fence on the row.
    Holder {
        fence: Box<Fence<'a>>,
        stored: Option<CredentialState>,
    },
    /// A follower: the row as read.
    Follower(Stored),
}

impl Session<'_> {
    /// Where this host sits, for [`super::decide::decide`].
    pub(super) fn seat(&self) -> Seat<'_> {
        match self {
            Session::Alone => Seat::Alone,
            Session::Holder { stored, .. } => Seat::Holder {
                stored: stored.as_ref(),
            },
            Session::Follower(stored) => Seat::Follower {
                stored: stored.state.as_ref(),
            },
        }
    }

    /// The fingerprints of the bootstrap tokens the store took over (none alone).
    pub(super) fn bootstraps_seen(&self) -> &[String] {
        match self {
            Session::Alone => &[],
            Session::Holder { fence, .. } => &fence.bootstraps_seen,
            Session::Follower(stored) => &stored.bootstraps_seen,
        }
    }

    /// The store's state, when the store holds a committed one.
    pub(super) fn stored(&self) -> Option<&CredentialState> {
        match self {
            Session::Alone => None,
            Session::Holder { stored, .. } => stored.as_ref(),
            Session::Follower(stored) => stored.state.as_ref(),
        }
    }

    /// `Err` when a holder stalled so long since its fence began that the lease may have
    /// lapsed: the token request must not be sent.
    pub(super) fn may_send(&self) -> Result<(), StoreError> {
        match self {
            Session::Holder { fence, .. }
                if !super::decide::may_send(fence.elapsed(), fence.lease()) =>
            {
                Err(StoreError::Fenced(fence.name().to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Commits `state` (scrubbed of this host's own history) as the store's next generation,
    /// when this host holds the fence; `Ok(None)` alone. On `Err`, the generation whose fence
    /// the state was made under, so the caller can mark it uncommitted.
    pub(super) async fn commit(
        self,
        state: &CredentialState,
    ) -> Result<Option<u64>, (StoreError, u64)> {
        match self {
            Session::Holder { fence, .. } => {
                let fenced = fence.generation();
                fence
                    .commit(&state.sealable())
                    .await
                    .map(Some)
                    .map_err(|e| (e, fenced))
            }
            Session::Alone | Session::Follower(_) => Ok(None),
        }
    }

    /// Ends the session without a new state.
    pub(super) async fn release(self) {
        if let Session::Holder { fence, .. } = self {
            fence.release().await;
        }
    }
}

/// The longest a fetch may take: a chain tries its members one after another, each within
/// the timeout. The fence's lease and the server's idle limit cover it.
fn fetch_budget(credential: &Credential) -> Duration {
    let members = match &credential.source {
        SourceConfig::Chain(chain) => chain.sources.len().max(1),
        _ => 1,
    };
    credential.timing.timeout * u32::try_from(members).unwrap_or(u32::MAX)
}

/// How long a follower waits for the holder to answer its rotate request: a refresh the
/// holder may have in flight, the round at which it hears a missed notification (a third of
/// a lease), its own refresh, and a margin. Shorter than a lease plus its third, so a
/// stopped holder is reported as one rather than waited out until its lease lapses.
pub(super) fn ask_wait(credential: &Credential, fleet: &Fleet) -> Duration {
    credential.timing.timeout * 2 + fleet.lease / 2
}
