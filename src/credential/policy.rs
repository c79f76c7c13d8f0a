//! The refresh policy: when a credential's token is due, whether a rotation should fetch,
//! when to try next after a success or a failure (schedule, jitter, exponential backoff,
//! `Retry-After`, the rare retry after a permanent failure), and which tokens are good
//! enough to adopt or to send as a bearer.
//!
//! Pure functions of times, durations and (for the spread) a random number the caller
//! draws: nothing here sleeps, reads a clock, a file or the network, so every rule is
//! table-tested below.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Timing;
use crate::state::FailureKind;
use crate::token::{self, ExpirySource, Token};

/// After a permanent failure (`needs-login`), how often to look again: the config, the
/// bootstrap refresh token or the provider may be fixed without telling us.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(15 * 60);

/// The longest wait a `Retry-After` can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// A bearer token with this little life left is not sent (Databricks refuses a token with
/// 30 s or less to live).
pub const BEARER_MARGIN: time::Duration = time::Duration::seconds(30);

/// Why a rotation is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Refresh only if the schedule says the token is due (or there is none).
    IfDue,
    /// Refresh unless some process already rotated it at or after `since` (two `--force`
    /// runs at once make one token request, not two).
    Force { since: OffsetDateTime },
    /// The daemon's (jittered) deadline for the token with this fingerprint has come:
    /// refresh it, unless another process already replaced it (then as `IfDue`).
    Scheduled { fingerprint: String },
}

/// next refresh = min(issued_at + refresh_at, expires_at − min_remaining) + jitter_offset,
/// never before `now`. `jitter_offset` is drawn by the caller in ±`timing.jitter`, and is
/// never allowed to push the refresh past `expires_at − min_remaining`.
pub fn next_refresh(
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    timing: &Timing,
    jitter_offset: time::Duration,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let by_age = add(issued_at, time::Duration::try_from(timing.refresh_at).ok());
    let by_remaining = add(
        expires_at,
        time::Duration::try_from(timing.min_remaining)
            .ok()
            .map(|d| -d),
    );
    let planned = by_age.min(by_remaining);
    let jittered = add(planned, Some(jitter_offset)).min(by_remaining.max(planned));
    jittered.max(now)
}

/// `at + by`, held at the calendar's ends instead of overflowing (a state file written by
/// an older refreshd may hold a time no provider should have sent).
fn add(at: OffsetDateTime, by: Option<time::Duration>) -> OffsetDateTime {
    let end = if by.is_some_and(|d| d.is_negative()) {
        time::PrimitiveDateTime::MIN.assume_utc()
    } else {
        time::PrimitiveDateTime::MAX.assume_utc()
    };
    by.and_then(|by| at.checked_add(by)).unwrap_or(end)
}

/// Whether a token issued at `issued_at` and expiring at `expires_at` is due at `now`
/// (without jitter: the deterministic answer `refreshd once` uses).
pub fn is_due(
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    timing: &Timing,
    now: OffsetDateTime,
) -> bool {
    next_refresh(issued_at, expires_at, timing, time::Duration::ZERO, now) <= now
}

/// A token whose whole life is shorter than `min_remaining`, or whose `iat` is far from our
/// clock, points at clock skew (or a misconfigured provider): worth a warning.
pub fn clock_skew(
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    received_at: OffsetDateTime,
    timing: &Timing,
) -> Option<String> {
    const TOLERANCE: Duration = Duration::from_secs(5 * 60);
    let life = expires_at - received_at;
    if life < timing.min_remaining {
        return Some(format!(
            "the token arrived with {}s of life, less than min_remaining ({}s): check the clock or lower min_remaining",
            life.whole_seconds(),
            timing.min_remaining.as_secs()
        ));
    }
    let offset = (issued_at - received_at).abs();
    if offset > TOLERANCE {
        return Some(format!(
            "the token's iat is {}s away from the local clock: check NTP on this machine",
            offset.whole_seconds()
        ));
    }
    None
}

/// Whether a rotation should fetch a new token, given the one held (if any), when the
/// credential was last rotated, and why the rotation was asked for.
pub fn should_fetch(
    held: Option<&Token>,
    last_rotation: Option<OffsetDateTime>,
    trigger: &Trigger,
    now: OffsetDateTime,
    timing: &Timing,
) -> bool {
    let Some(token) = held else {
        return true;
    };
    match trigger {
        Trigger::Force { since } => last_rotation.is_none_or(|at| at < *since),
        Trigger::Scheduled { fingerprint } if token.fingerprint() == *fingerprint => true,
        Trigger::IfDue | Trigger::Scheduled { .. } => {
            !token.is_valid_at(now) || is_due(token.issued_at, token.expires_at, timing, now)
        }
    }
}

/// Whether a token found in a target may be taken over instead of fetching one: a JWT
/// (an opaque token's expiry cannot be known), valid, not yet due, and claiming no longer
/// a life than `default_lifetime` (a planted token that says it lives for centuries is
/// refreshed, not trusted).
pub fn adoptable(found: &Token, now: OffsetDateTime, timing: &Timing) -> bool {
    let longest = time::Duration::try_from(timing.default_lifetime).unwrap_or(time::Duration::MAX);
    found.expiry_source == ExpirySource::JwtExp
        && found.is_valid_at(now)
        && found.expires_at - found.issued_at <= longest
        && found.expires_at - now <= longest
        && !is_due(found.issued_at, found.expires_at, timing, now)
}

/// The token to send as a bearer, or why there is none worth sending.
pub fn bearer(held: Option<&Token>, now: OffsetDateTime) -> Result<Token, String> {
    match held {
        Some(token) if token.expires_at > now + BEARER_MARGIN => Ok(token.clone()),
        Some(token) => Err(format!(
            "its token expires at {}",
            token::rfc3339(token.expires_at)
        )),
        None => Err("it has none yet".to_owned()),
    }
}

/// What an attempt left behind, as far as planning the next one is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Attempted<'a> {
    /// A token is held (new or current); `target_failed` when a target could not be written,
    /// `unsaved` when the state could not be stored.
    Held {
        fingerprint: &'a str,
        next_refresh: OffsetDateTime,
        target_failed: bool,
        unsaved: bool,
    },
    Failed {
        kind: FailureKind,
        retry_after: Option<Duration>,
    },
}

/// When and how to try next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub at: OffsetDateTime,
    /// Consecutive attempts that did not leave a token good for a while: the backoff step.
    pub attempt: u32,
    pub trigger: Trigger,
    /// Why the plan is not the token's own schedule, when it is not.
    pub backoff: Option<Backoff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The fresh token was due again at once (its expiry did not move forward, or it lives
    /// shorter than `min_remaining`): refreshing again now would loop.
    AlreadyDue,
    /// A target could not be written.
    TargetFailed,
    /// The state could not be stored: it is kept in memory and stored at the next attempt.
    Unsaved,
    Failed(FailureKind),
}

/// The next attempt after `attempted`, given `attempt` attempts in a row that did not leave
/// a good token; `random` draws uniformly from `[0, 1)` for the backoff's full jitter.
pub fn plan(
    attempted: Attempted<'_>,
    attempt: u32,
    now: OffsetDateTime,
    timing: &Timing,
    random: &mut dyn FnMut() -> f64,
) -> Plan {
    let retry = |attempt: u32, why: Backoff, wait: Duration| Plan {
        at: now + wait,
        attempt,
        trigger: Trigger::IfDue,
        backoff: Some(why),
    };
    let next = attempt.saturating_add(1);
    let backoff_wait = |random: &mut dyn FnMut() -> f64| {
        backoff(timing.retry_initial, timing.retry_max, next, random())
    };
    match attempted {
        Attempted::Held { unsaved: true, .. } => {
            retry(next, Backoff::Unsaved, backoff_wait(random))
        }
        Attempted::Held {
            target_failed: true,
            ..
        } => retry(next, Backoff::TargetFailed, backoff_wait(random)),
        Attempted::Held { next_refresh, .. } if next_refresh <= now + time::Duration::SECOND => {
            retry(next, Backoff::AlreadyDue, backoff_wait(random))
        }
        // When the deadline comes, the token it was planned for is refreshed even if the
        // jitter put it a little before the schedule's own due time.
        Attempted::Held {
            fingerprint,
            next_refresh,
            ..
        } => Plan {
            at: next_refresh,
            attempt: 0,
            trigger: Trigger::Scheduled {
                fingerprint: fingerprint.to_owned(),
            },
            backoff: None,
        },
        Attempted::Failed {
            kind: FailureKind::Transient,
            retry_after,
        } => {
            let wait = backoff_wait(random);
            let wait = match retry_after {
                Some(asked) => wait.max(asked.min(RETRY_AFTER_CAP)),
                None => wait,
            };
            retry(next, Backoff::Failed(FailureKind::Transient), wait)
        }
        Attempted::Failed {
            kind: FailureKind::Permanent,
            ..
        } => retry(
            next,
            Backoff::Failed(FailureKind::Permanent),
            PERMANENT_RETRY.max(timing.retry_max),
        ),
    }
}

/// An offset in `±spread` from a uniform `random` in `[0, 1)`, so a fleet does not refresh
/// in lockstep.
pub fn jitter(spread: Duration, random: f64) -> time::Duration {
    let offset = (random * 2.0 - 1.0) * spread.as_secs_f64();
    time::Duration::seconds_f64(offset)
}

/// Exponential backoff with full jitter: `random` (uniform in `[0, 1)`) of
/// `min(max, initial·2^(attempt−1))`, but at least a second, so a burst of failures never
/// becomes a hot loop.
pub fn backoff(initial: Duration, max: Duration, attempt: u32, random: f64) -> Duration {
    let ceiling = backoff_ceiling(initial, max, attempt);
    ceiling
        .mul_f64(random.clamp(0.0, 1.0))
        .max(Duration::from_secs(1).min(ceiling))
}

fn backoff_ceiling(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
pub(crate) mod tests;
