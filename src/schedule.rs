//! Scheduling: when a token should next be refreshed. Pure functions of times and
//! durations, so they are table-tested; nothing here sleeps, reads a clock or a file.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Timing;

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
    let by_age = issued_at + timing.refresh_at;
    let by_remaining = expires_at - timing.min_remaining;
    let planned = by_age.min(by_remaining);
    let jittered = (planned + jitter_offset).min(by_remaining.max(planned));
    jittered.max(now)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            refresh_at: Duration::from_secs(50 * 60),
            min_remaining: Duration::from_secs(10 * 60),
            jitter: Duration::from_secs(30),
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(3600),
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn table() {
        let t = timing();
        let zero = time::Duration::ZERO;
        // (issued, expires, jitter, now) -> expected
        let cases = [
            // One-hour token: refresh at 50 minutes.
            (0, 3600, zero, 0, 3000),
            // Two-hour token: still 50 minutes after issue.
            (0, 7200, zero, 0, 3000),
            // 30-minute token: 10 minutes before expiry wins.
            (0, 1800, zero, 0, 1200),
            // Jitter moves it either way…
            (0, 7200, time::Duration::seconds(-20), 0, 2980),
            (0, 7200, time::Duration::seconds(20), 0, 3020),
            // …but never past expires_at - min_remaining.
            (0, 3600, time::Duration::seconds(20), 0, 3000),
            // Never in the past: an overdue token is due now.
            (0, 3600, zero, 5000, 5000),
            // A token already inside min_remaining is due now.
            (0, 300, zero, 10, 10),
        ];
        for (issued, expires, jitter, now, expected) in cases {
            assert_eq!(
                next_refresh(at(issued), at(expires), &t, jitter, at(now)),
                at(expected),
                "issued={issued} expires={expires} jitter={jitter} now={now}"
            );
        }
    }

    #[test]
    fn due_exactly_at_the_planned_time() {
        let t = timing();
        assert!(!is_due(at(0), at(3600), &t, at(2999)));
        assert!(is_due(at(0), at(3600), &t, at(3000)));
    }

    #[test]
    fn skew_is_reported() {
        let t = timing();
        assert!(clock_skew(at(0), at(3600), at(0), &t).is_none());
        assert!(
            clock_skew(at(0), at(300), at(0), &t)
                .unwrap()
                .contains("min_remaining")
        );
        assert!(
            clock_skew(at(900), at(4500), at(0), &t)
                .unwrap()
                .contains("iat")
        );
    }
}
