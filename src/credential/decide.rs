//! What one rotation does, given what this host holds and what the ledger (this host alone,
//! or the fleet store) says: refresh, write what is current, take a newer stored generation
//! over, commit an answer the store never got, hand a new bootstrap token over, ask the
//! holder, or wait for it. The rotation path carries the step out.
//!
//! Pure, like [`super::policy`]: no file, clock, lock or network; every case is a table row
//! in `decide/tests.rs`. Must never decide by comparing times written by two hosts' clocks:
//! "ahead of the store" is a matter of generations and of who holds the lease.

use std::time::Duration;

use time::OffsetDateTime;

use super::policy::{self, Trigger};
use crate::config::Timing;
use crate::state::CredentialState;

/// Who may spend the credential's refresh token, and the ledger's newest state.
#[derive(Debug, Clone, Copy)]
pub enum Seat<'a> {
    /// This host alone: its state directory is the ledger.
    Alone,
    /// The fleet: this node holds the lease, inside a fence on the row; `stored` is the row's
    /// state (`None`: nothing committed yet).
    Holder { stored: Option<&'a CredentialState> },
    /// The fleet: another node (or, until a round takes it, nobody) holds the lease.
    Follower { stored: Option<&'a CredentialState> },
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// This host's state (the state file, or a newer one the disk refused).
    pub local: &'a CredentialState,
    pub seat: Seat<'a>,
    /// The fingerprint of the bootstrap refresh token in this host's config, when it has one
    /// that can be read.
    pub bootstrap: Option<&'a str>,
    /// The fingerprints of every bootstrap token the store took over already.
    pub bootstraps_seen: &'a [String],
    pub trigger: &'a Trigger,
    pub now: OffsetDateTime,
    pub timing: &'a Timing,
}

/// The step to carry out. The ones that say "then decide again" change what the next
/// decision sees; the rotation path decides again after them (a bounded number of times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The token held is not due: bring the targets in line with it.
    Current,
    /// Spend the refresh token (in a fleet, inside the holder's fence) and record the answer.
    Refresh,
    /// Holder: the store holds a newer generation than this host: take it over, then decide
    /// again (an older refresh token is never spent).
    TakeOver,
    /// Holder: this host holds an answer the store never got (a commit that failed after the
    /// provider answered, or an empty row while this host holds a token): commit it first,
    /// then decide again.
    CommitKept,
    /// Follower: write the committed token (taking the stored state over when it is newer).
    Follow,
    /// Follower: this host's config holds a bootstrap refresh token the store has never seen:
    /// hand it over for the holder to spend, then decide again.
    HandOver,
    /// Follower asked to rotate now: ask the holder, then wait, holding neither the lock nor
    /// a refresh permit, for a generation after `seen`.
    AskHolder { seen: u64 },
    /// Follower: no token anywhere yet: wait for the holder's first commit.
    WaitForHolder,
}

/// The generation a state was taken from or committed as; 0 for none.
fn generation(state: &CredentialState) -> u64 {
    state.generation.unwrap_or(0)
}

/// The step for `situation`.
pub fn decide(situation: &Situation<'_>) -> Step {
    match situation.seat {
        Seat::Alone => refresh_or_current(situation),
        Seat::Holder { stored } => hold(situation, stored),
        Seat::Follower { stored } => follow(situation, stored),
    }
}

fn refresh_or_current(situation: &Situation<'_>) -> Step {
    let local = situation.local;
    let fetch = policy::should_fetch(
        local.token.as_ref(),
        local.last_rotation,
        situation.trigger,
        situation.now,
        situation.timing,
    );
    if fetch { Step::Refresh } else { Step::Current }
}

fn hold(situation: &Situation<'_>, stored: Option<&CredentialState>) -> Step {
    let local = situation.local;
    match stored {
        Some(stored) if generation(stored) > generation(local) => Step::TakeOver,
        Some(stored) if local.uncommitted == Some(generation(stored)) => Step::CommitKept,
        // An empty row while this host holds a token that is not due: the store starts from
        // it (a due one is refreshed, and the answer is the store's first state).
        None => match refresh_or_current(situation) {
            Step::Current => Step::CommitKept,
            step => step,
        },
        _ => refresh_or_current(situation),
    }
}

fn follow(situation: &Situation<'_>, stored: Option<&CredentialState>) -> Step {
    if let (Some(bootstrap), Some(stored)) = (situation.bootstrap, stored)
        && stored.bootstrap_fingerprint.as_deref() != Some(bootstrap)
        && !situation
            .bootstraps_seen
            .iter()
            .any(|seen| seen == bootstrap)
    {
        return Step::HandOver;
    }
    let seen = stored.map(generation).unwrap_or(0);
    if let Trigger::Force { .. } = situation.trigger {
        return Step::AskHolder { seen };
    }
    let committed = stored.and_then(|stored| stored.token.as_ref());
    // This follower's own deadline came, the store has nothing newer than it holds, and the
    // committed token is due by this host's clock: the holder did not refresh in time (it
    // stalled, or its clock is off). Ask it rather than hold a token that is expiring.
    if let (Trigger::Scheduled { .. }, Some(token)) = (situation.trigger, committed)
        && seen <= generation(situation.local)
        && (!token.is_valid_at(situation.now)
            || policy::is_due(
                token.issued_at,
                token.expires_at,
                situation.timing,
                situation.now,
            ))
    {
        return Step::AskHolder { seen };
    }
    if committed.or(situation.local.token.as_ref()).is_none() {
        return Step::WaitForHolder;
    }
    Step::Follow
}

/// Whether a holder whose fence began `elapsed` ago (on this host's monotonic clock) may
/// still send the token request: not once half the lease is gone, because a host that
/// stalled that long may find another node already spending the same refresh token.
pub fn may_send(elapsed: Duration, lease: Duration) -> bool {
    elapsed < lease / 2
}

/// What a follower takes from the store: the store's state, when its generation is newer
/// than this host's.
pub fn newer<'a>(
    local: &CredentialState,
    stored: Option<&'a CredentialState>,
) -> Option<&'a CredentialState> {
    stored.filter(|stored| generation(stored) > generation(local))
}

#[cfg(test)]
mod tests;
