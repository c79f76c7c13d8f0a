//! One test per change of state, and the reminder.

use super::*;

fn t(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// A token that expires at `t(expires)`, after `failures` failed attempts in a row.
fn seen(health: Health, failures: u32, expires: i64) -> Observation {
    Observation {
        health,
        consecutive_failures: failures,
        expires_at: Some(t(expires)),
    }
}

const SINK: Thresholds = Thresholds::Sink {
    after: 3,
    min_remaining: Some(Duration::from_secs(600)),
    repeat: Some(Duration::from_secs(3600)),
};

fn all(_: EventKind) -> bool {
    true
}

/// Steps `episode` with what `seen` says at `now`.
fn step(episode: &mut Episode, seen: &Observation, now: i64) -> Option<Tell> {
    let verdict = verdict(seen, SINK, t(now));
    episode.step(verdict, SINK, t(now), all)
}

fn told(kind: EventKind) -> Option<Tell> {
    Some(Tell {
        kind,
        reminder: false,
    })
}

#[test]
fn failures_below_after_with_time_left_are_not_told() {
    let mut episode = Episode::default();
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 1, 3600), 0),
        None
    );
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 2, 3600), 10),
        None
    );
    assert!(episode.is_quiet());
    // …and their end is no recovery: nothing was told.
    assert_eq!(step(&mut episode, &seen(Health::Ok, 0, 7200), 20), None);
}

#[test]
fn after_consecutive_failures_failing_is_told_once() {
    let mut episode = Episode::default();
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 2, 3600), 0),
        None
    );
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 3, 3600), 10),
        told(EventKind::Failing)
    );
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 4, 3600), 20),
        None
    );
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 9, 3600), 600),
        None
    );
}

#[test]
fn one_failure_with_less_than_min_remaining_left_is_failing() {
    let mut episode = Episode::default();
    assert_eq!(
        step(&mut episode, &seen(Health::Retrying, 1, 599), 0),
        told(EventKind::Failing)
    );
}

#[test]
fn a_success_after_a_told_problem_is_recovered_once() {
    let mut episode = Episode::default();
    step(&mut episode, &seen(Health::Retrying, 3, 3600), 0);
    assert_eq!(
        step(&mut episode, &seen(Health::Ok, 0, 7200), 10),
        told(EventKind::Recovered)
    );
    assert!(episode.is_quiet());
    assert_eq!(step(&mut episode, &seen(Health::Ok, 0, 7200), 20), None);
}

#[test]
fn a_token_that_runs_out_while_failing_is_expiring_without_a_new_attempt() {
    let mut episode = Episode::default();
    let failing = seen(Health::Retrying, 3, 100);
    assert_eq!(step(&mut episode, &failing, 0), told(EventKind::Failing));
    // The same observation, later: time alone made it worse.
    assert_eq!(step(&mut episode, &failing, 100), told(EventKind::Expiring));
    assert_eq!(step(&mut episode, &failing, 200), None);
}

#[test]
fn invalid_grant_is_login_needed_at_the_first_failure() {
    let mut episode = Episode::default();
    assert_eq!(
        step(&mut episode, &seen(Health::NeedsLogin, 1, 3600), 0),
        told(EventKind::LoginNeeded)
    );
    // A login brings a fresh token: recovered.
    assert_eq!(
        step(&mut episode, &seen(Health::Ok, 0, 7200), 50),
        told(EventKind::Recovered)
    );
}

#[test]
fn a_problem_that_lasts_is_reminded_every_repeat() {
    let mut episode = Episode::default();
    let needs_login = seen(Health::NeedsLogin, 1, 99_999);
    assert_eq!(
        step(&mut episode, &needs_login, 0),
        told(EventKind::LoginNeeded)
    );
    assert_eq!(step(&mut episode, &needs_login, 3599), None);
    let reminder = Some(Tell {
        kind: EventKind::LoginNeeded,
        reminder: true,
    });
    assert_eq!(step(&mut episode, &needs_login, 3600), reminder);
    assert_eq!(step(&mut episode, &needs_login, 3700), None);
    assert_eq!(step(&mut episode, &needs_login, 7200), reminder);
}

#[test]
fn without_repeat_there_is_no_reminder() {
    let once = Thresholds::Sink {
        after: 1,
        min_remaining: None,
        repeat: None,
    };
    let mut episode = Episode::default();
    let failing = seen(Health::Retrying, 1, 999_999);
    let mut tells = (0..100).filter_map(|h| {
        let now = t(h * 3600);
        episode.step(verdict(&failing, once, now), once, now, all)
    });
    assert_eq!(tells.next(), told(EventKind::Failing));
    assert_eq!(tells.next(), None);
}

#[test]
fn a_sink_that_does_not_want_the_problem_gets_no_recovery_either() {
    let mut episode = Episode::default();
    let only_recovered = |kind: EventKind| kind == EventKind::Recovered;
    let failing = verdict(&seen(Health::Retrying, 3, 3600), SINK, t(0));
    assert_eq!(episode.step(failing, SINK, t(0), only_recovered), None);
    let fine = verdict(&seen(Health::Ok, 0, 7200), SINK, t(10));
    assert_eq!(episode.step(fine, SINK, t(10), only_recovered), None);
}

#[test]
fn the_store_is_unreachable_then_recovered() {
    let mut episode = Episode::default();
    let down = Verdict::Problem(EventKind::StoreUnreachable);
    assert_eq!(
        episode.step(down, SINK, t(0), all),
        told(EventKind::StoreUnreachable)
    );
    assert_eq!(episode.step(down, SINK, t(5), all), None);
    assert_eq!(
        episode.step(Verdict::Fine, SINK, t(10), all),
        told(EventKind::Recovered)
    );
}

#[test]
fn on_failure_runs_once_per_turn_to_unhealthy_and_never_on_recovery() {
    let mut episode = Episode::default();
    let mut step = |health: Health, failures: u32, expires: i64, now: i64| {
        let seen = seen(health, failures, expires);
        let verdict = verdict(&seen, Thresholds::OnFailure, t(now));
        episode.step(verdict, Thresholds::OnFailure, t(now), all)
    };
    // A failure with a valid token is healthy (retrying): no hook.
    assert_eq!(step(Health::Retrying, 5, 3600, 0), None);
    assert_eq!(step(Health::Expired, 6, 3600, 10), told(EventKind::Failing));
    // Expired, then needs-login: still the same turn.
    assert_eq!(step(Health::NeedsLogin, 7, 3600, 20), None);
    assert_eq!(step(Health::Ok, 0, 7200, 30), None);
    assert_eq!(step(Health::Expired, 1, 7200, 40), told(EventKind::Failing));
    // No reminders for a hook, however long it lasts.
    assert_eq!(step(Health::Expired, 2, 7200, 999_999), None);
}
