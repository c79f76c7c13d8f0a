use super::*;

/// The timing of a one-hour token refreshed at 50 minutes (the defaults), for the tests of
/// the pure decisions (`decide` uses it too).
pub(crate) fn timing() -> Timing {
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

#[test]
fn backoff_grows_to_the_cap_and_stays_within_it() {
    let initial = Duration::from_secs(2);
    let max = Duration::from_secs(300);
    let ceilings: Vec<u64> = (1..=10)
        .map(|a| backoff_ceiling(initial, max, a).as_secs())
        .collect();
    assert_eq!(ceilings, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(backoff_ceiling(initial, max, u32::MAX).as_secs(), 300);
    for attempt in 1..=40 {
        for random in [0.0, 0.3, 0.999_999] {
            let wait = backoff(initial, max, attempt, random);
            assert!(wait >= Duration::from_secs(1) && wait <= max, "{wait:?}");
        }
    }
    // Full jitter spreads over the whole range below the ceiling.
    assert_eq!(backoff(initial, max, 20, 0.5), Duration::from_secs(150));
    assert_eq!(backoff(initial, max, 20, 0.0), Duration::from_secs(1));
}

#[test]
fn jitter_stays_within_its_spread() {
    for random in [0.0, 0.25, 0.5, 0.75, 0.999_999] {
        let offset = jitter(Duration::from_secs(30), random);
        assert!(offset.abs() <= time::Duration::seconds(30), "{offset}");
    }
    assert_eq!(
        jitter(Duration::from_secs(30), 0.0),
        time::Duration::seconds(-30)
    );
    assert_eq!(jitter(Duration::ZERO, 0.7), time::Duration::ZERO);
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table, a row per kind of attempt"
)]
fn plans_after_each_kind_of_attempt() {
    let t = timing();
    let now = at(0);
    let held = |next: i64, target_failed: bool| Attempted::Held {
        fingerprint: "3f9a1c07",
        next_refresh: at(next),
        target_failed,
        unsaved: false,
    };
    let unsaved = Attempted::Held {
        fingerprint: "3f9a1c07",
        next_refresh: at(3000),
        target_failed: false,
        unsaved: true,
    };
    let failed = |kind, retry_after: Option<u64>| Attempted::Failed {
        kind,
        retry_after: retry_after.map(Duration::from_secs),
    };
    let scheduled = Trigger::Scheduled {
        fingerprint: "3f9a1c07".into(),
    };
    // (attempted, attempts so far, random) -> (at, attempt, trigger, backoff)
    let cases = [
        // A good token: its own schedule, the counter reset, that token's deadline.
        (
            held(3000, false),
            4,
            0.5,
            (3000, 0, scheduled.clone(), None),
        ),
        // The state could not be stored: try again soon, never wait for the schedule.
        (
            unsaved,
            3,
            0.5,
            (8, 4, Trigger::IfDue, Some(Backoff::Unsaved)),
        ),
        // A target failed: back off from the first step (2 s · 0.5 = 1 s).
        (
            held(3000, true),
            0,
            0.5,
            (1, 1, Trigger::IfDue, Some(Backoff::TargetFailed)),
        ),
        // Due again at once: back off instead of looping (third step: 8 s · 0.5).
        (
            held(1, false),
            2,
            0.5,
            (4, 3, Trigger::IfDue, Some(Backoff::AlreadyDue)),
        ),
        // Transient: full-jitter backoff…
        (
            failed(FailureKind::Transient, None),
            0,
            0.5,
            (
                1,
                1,
                Trigger::IfDue,
                Some(Backoff::Failed(FailureKind::Transient)),
            ),
        ),
        // …but never sooner than Retry-After…
        (
            failed(FailureKind::Transient, Some(120)),
            0,
            0.5,
            (
                120,
                1,
                Trigger::IfDue,
                Some(Backoff::Failed(FailureKind::Transient)),
            ),
        ),
        // …which is capped at an hour.
        (
            failed(FailureKind::Transient, Some(86_400)),
            0,
            0.5,
            (
                3600,
                1,
                Trigger::IfDue,
                Some(Backoff::Failed(FailureKind::Transient)),
            ),
        ),
        // Permanent: look again rarely.
        (
            failed(FailureKind::Permanent, None),
            7,
            0.5,
            (
                900,
                8,
                Trigger::IfDue,
                Some(Backoff::Failed(FailureKind::Permanent)),
            ),
        ),
    ];
    for (attempted, attempt, random, (when, next_attempt, trigger, why)) in cases {
        let plan = plan(attempted, attempt, now, &t, &mut || random);
        assert_eq!(
            plan,
            Plan {
                at: at(when),
                attempt: next_attempt,
                trigger,
                backoff: why,
            },
            "{attempted:?}"
        );
    }
}

#[test]
fn fetch_decisions_follow_the_trigger() {
    let t = timing();
    let token = crate::token::tests::token_at(at(0), at(3600));
    let fp = token.fingerprint();
    let other = Trigger::Scheduled {
        fingerprint: "00000000".into(),
    };
    let cases = [
        (None, None, Trigger::IfDue, 0, true),
        (Some(&token), None, Trigger::IfDue, 100, false),
        (Some(&token), None, Trigger::IfDue, 3000, true),
        (Some(&token), None, Trigger::IfDue, 4000, true),
        (
            Some(&token),
            None,
            Trigger::Scheduled {
                fingerprint: fp.clone(),
            },
            2990,
            true,
        ),
        (Some(&token), None, other, 2990, false),
        (
            Some(&token),
            Some(at(50)),
            Trigger::Force { since: at(40) },
            60,
            false,
        ),
        (
            Some(&token),
            Some(at(30)),
            Trigger::Force { since: at(40) },
            60,
            true,
        ),
    ];
    for (held, last, trigger, now, expected) in cases {
        assert_eq!(
            should_fetch(held, last, &trigger, at(now), &t),
            expected,
            "{trigger:?} at {now}"
        );
    }
    assert!(bearer(Some(&token), at(3569)).is_ok());
    assert!(
        bearer(Some(&token), at(3570))
            .unwrap_err()
            .contains("expires at")
    );
    assert_eq!(bearer(None, at(0)).unwrap_err(), "it has none yet");
}
