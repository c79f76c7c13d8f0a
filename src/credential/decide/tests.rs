use proptest::prelude::*;

use super::*;
use crate::credential::policy::tests::timing;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
}

/// The token a state holds, as far as a decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    None,
    /// Valid and not due at `NOW`.
    Fresh,
    /// Past its refresh time at `NOW`.
    Due,
}

const NOW: i64 = 1000;

fn state(generation: u64, held: Held, uncommitted: Option<u64>, boot: &str) -> CredentialState {
    let token = match held {
        Held::None => None,
        Held::Fresh => Some(crate::token::tests::token_at(at(NOW - 60), at(NOW + 3540))),
        Held::Due => Some(crate::token::tests::token_at(at(NOW - 3500), at(NOW + 100))),
    };
    CredentialState {
        last_rotation: token.as_ref().map(|t| t.issued_at),
        token,
        generation: (generation > 0).then_some(generation),
        uncommitted,
        bootstrap_fingerprint: (!boot.is_empty()).then(|| boot.to_owned()),
        ..CredentialState::default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Alone,
    Holder,
    Follower,
}

struct Row {
    why: &'static str,
    who: Who,
    local: CredentialState,
    stored: Option<CredentialState>,
    bootstrap: Option<&'static str>,
    seen: &'static [&'static str],
    trigger: Trigger,
    expected: Step,
}

fn decided(row: &Row) -> Step {
    let seat = match row.who {
        Who::Alone => Seat::Alone,
        Who::Holder => Seat::Holder {
            stored: row.stored.as_ref(),
        },
        Who::Follower => Seat::Follower {
            stored: row.stored.as_ref(),
        },
    };
    let seen: Vec<String> = row.seen.iter().map(|s| (*s).to_owned()).collect();
    decide(&Situation {
        local: &row.local,
        seat,
        bootstrap: row.bootstrap,
        bootstraps_seen: &seen,
        trigger: &row.trigger,
        now: at(NOW),
        timing: &timing(),
    })
}

fn force() -> Trigger {
    Trigger::Force { since: at(NOW) }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table, a row per case")]
fn table() {
    use Held::{Due, Fresh};
    let rows = [
        Row {
            why: "alone, nothing held: refresh",
            who: Who::Alone,
            local: state(0, Held::None, None, ""),
            stored: None,
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Refresh,
        },
        Row {
            why: "alone, a fresh token: current",
            who: Who::Alone,
            local: state(0, Fresh, None, ""),
            stored: None,
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Current,
        },
        Row {
            why: "alone, forced: refresh even a fresh token",
            who: Who::Alone,
            local: state(0, Fresh, None, ""),
            stored: None,
            bootstrap: None,
            seen: &[],
            trigger: force(),
            expected: Step::Refresh,
        },
        Row {
            why: "holder, same generation, due: refresh under the fence",
            who: Who::Holder,
            local: state(4, Due, None, ""),
            stored: Some(state(4, Due, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Refresh,
        },
        Row {
            why: "holder, same generation, fresh: current",
            who: Who::Holder,
            local: state(4, Fresh, None, ""),
            stored: Some(state(4, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Current,
        },
        Row {
            why: "holder behind the store (a lease just taken over): take the newer generation over, never spend the older refresh token",
            who: Who::Holder,
            local: state(3, Due, None, ""),
            stored: Some(state(5, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: force(),
            expected: Step::TakeOver,
        },
        Row {
            why: "holder ahead of a restored store: its own newer state is spent, not the store's",
            who: Who::Holder,
            local: state(7, Due, None, ""),
            stored: Some(state(5, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Refresh,
        },
        Row {
            why: "a commit failed after the provider answered: the kept answer goes in first",
            who: Who::Holder,
            local: state(4, Fresh, Some(4), ""),
            stored: Some(state(4, Due, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::CommitKept,
        },
        Row {
            why: "the kept answer goes in first even when due again",
            who: Who::Holder,
            local: state(4, Due, Some(4), ""),
            stored: Some(state(4, Due, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: force(),
            expected: Step::CommitKept,
        },
        Row {
            why: "an uncommitted answer another node superseded: the store's newer generation wins",
            who: Who::Holder,
            local: state(4, Fresh, Some(4), ""),
            stored: Some(state(5, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::TakeOver,
        },
        Row {
            why: "same generation, later local clock: not ahead (no clocks compared)",
            who: Who::Holder,
            local: state(4, Fresh, None, ""),
            stored: Some(state(4, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Current,
        },
        Row {
            why: "holder of an empty row holding a fresh token: the store starts from it",
            who: Who::Holder,
            local: state(0, Fresh, None, ""),
            stored: None,
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::CommitKept,
        },
        Row {
            why: "holder of an empty row, nothing held: refresh (the answer is generation 1)",
            who: Who::Holder,
            local: state(0, Held::None, None, ""),
            stored: None,
            bootstrap: Some("boot1"),
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Refresh,
        },
        Row {
            why: "follower: the store is newer: follow it",
            who: Who::Follower,
            local: state(3, Due, None, ""),
            stored: Some(state(5, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::Follow,
        },
        Row {
            why: "follower, nothing anywhere yet (a fleet's cold start): wait for the holder",
            who: Who::Follower,
            local: state(0, Held::None, None, ""),
            stored: None,
            bootstrap: Some("boot1"),
            seen: &[],
            trigger: Trigger::IfDue,
            expected: Step::WaitForHolder,
        },
        Row {
            why: "follower at its own deadline, the store newer: follow (never refresh)",
            who: Who::Follower,
            local: state(4, Due, None, ""),
            stored: Some(state(5, Due, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::Scheduled {
                fingerprint: "x".to_owned(),
            },
            expected: Step::Follow,
        },
        Row {
            why: "follower at its own deadline, nothing newer, the token due by this host's clock (a holder that stalled, or whose clock is off): ask the holder early",
            who: Who::Follower,
            local: state(5, Due, None, ""),
            stored: Some(state(5, Due, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::Scheduled {
                fingerprint: "x".to_owned(),
            },
            expected: Step::AskHolder { seen: 5 },
        },
        Row {
            why: "follower at its own deadline, the token fresh by this host's clock: follow",
            who: Who::Follower,
            local: state(5, Fresh, None, ""),
            stored: Some(state(5, Fresh, None, "")),
            bootstrap: None,
            seen: &[],
            trigger: Trigger::Scheduled {
                fingerprint: "x".to_owned(),
            },
            expected: Step::Follow,
        },
        Row {
            why: "follower asked to rotate: ask the holder, wait for a generation after the stored one",
            who: Who::Follower,
            local: state(5, Fresh, None, "boot1"),
            stored: Some(state(5, Fresh, None, "boot1")),
            bootstrap: Some("boot1"),
            seen: &["boot1"],
            trigger: force(),
            expected: Step::AskHolder { seen: 5 },
        },
        Row {
            why: "follower with a bootstrap token the store never saw: hand it over",
            who: Who::Follower,
            local: state(5, Fresh, None, "boot1"),
            stored: Some(state(5, Fresh, None, "boot1")),
            bootstrap: Some("boot2"),
            seen: &["boot1"],
            trigger: Trigger::IfDue,
            expected: Step::HandOver,
        },
        Row {
            why: "follower with an old bootstrap token the store took over before: never again",
            who: Who::Follower,
            local: state(5, Fresh, None, "boot2"),
            stored: Some(state(5, Fresh, None, "boot2")),
            bootstrap: Some("boot1"),
            seen: &["boot1", "boot2"],
            trigger: Trigger::IfDue,
            expected: Step::Follow,
        },
        Row {
            why: "a new bootstrap token is handed over before a rotate request is asked",
            who: Who::Follower,
            local: state(5, Fresh, None, "boot1"),
            stored: Some(state(5, Fresh, None, "boot1")),
            bootstrap: Some("boot2"),
            seen: &["boot1"],
            trigger: force(),
            expected: Step::HandOver,
        },
        Row {
            why: "an empty store with a bootstrap token: nothing to hand over to (the holder seeds it)",
            who: Who::Follower,
            local: state(0, Held::None, None, ""),
            stored: None,
            bootstrap: Some("boot2"),
            seen: &[],
            trigger: force(),
            expected: Step::AskHolder { seen: 0 },
        },
    ];
    for row in &rows {
        assert_eq!(decided(row), row.expected, "{}", row.why);
    }
}

#[test]
fn half_a_lease_gone_before_the_request_stops_it() {
    let lease = Duration::from_secs(30);
    assert!(may_send(Duration::ZERO, lease));
    assert!(may_send(Duration::from_millis(14_999), lease));
    assert!(!may_send(Duration::from_secs(15), lease));
    assert!(!may_send(Duration::from_secs(3600), lease));
}

#[test]
fn a_follower_takes_only_a_newer_generation() {
    let local = state(5, Held::Fresh, None, "");
    assert!(newer(&local, Some(&state(4, Held::Fresh, None, ""))).is_none());
    assert!(newer(&local, Some(&state(5, Held::Fresh, None, ""))).is_none());
    assert!(newer(&local, Some(&state(6, Held::Fresh, None, ""))).is_some());
    assert!(newer(&local, None).is_none());
}

fn any_held() -> impl Strategy<Value = Held> {
    prop_oneof![Just(Held::None), Just(Held::Fresh), Just(Held::Due)]
}

fn any_state() -> impl Strategy<Value = CredentialState> {
    (
        0u64..6,
        any_held(),
        proptest::option::of(0u64..6),
        prop_oneof![Just(""), Just("boot1"), Just("boot2")],
    )
        .prop_map(|(generation, held, uncommitted, boot)| {
            state(generation, held, uncommitted, boot)
        })
}

fn any_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::IfDue),
        Just(force()),
        Just(Trigger::Scheduled {
            fingerprint: "x".to_owned()
        })
    ]
}

proptest! {
    /// Only a holder (or a host alone) ever spends a refresh token; a holder never spends
    /// one while the store holds a newer generation, nor before the answer it kept is in.
    #[test]
    fn only_an_up_to_date_holder_spends(
        local in any_state(),
        stored in proptest::option::of(any_state()),
        holder in any::<bool>(),
        bootstrap in prop_oneof![Just(None), Just(Some("boot1")), Just(Some("boot2"))],
        trigger in any_trigger(),
    ) {
        let seat = if holder {
            Seat::Holder { stored: stored.as_ref() }
        } else {
            Seat::Follower { stored: stored.as_ref() }
        };
        let step = decide(&Situation {
            local: &local,
            seat,
            bootstrap,
            bootstraps_seen: &[],
            trigger: &trigger,
            now: at(NOW),
            timing: &timing(),
        });
        if step == Step::Refresh {
            prop_assert!(holder);
            let stored_generation = stored.as_ref().map(generation).unwrap_or(0);
            prop_assert!(stored_generation <= generation(&local));
            prop_assert!(stored.is_none() || local.uncommitted != Some(stored_generation));
        }
        if step == Step::TakeOver {
            prop_assert!(holder && stored.as_ref().is_some_and(|s| generation(s) > generation(&local)));
        }
        if !holder {
            prop_assert!(!matches!(step, Step::Refresh | Step::TakeOver | Step::CommitKept | Step::Current));
        }
    }

    /// The steps that say "then decide again" change what the next decision sees, so a
    /// holder never repeats one: after taking over or committing, it refreshes or is current.
    #[test]
    fn a_holder_settles_in_two_decisions(
        local in any_state(),
        stored in proptest::option::of(any_state()),
        trigger in any_trigger(),
    ) {
        let mut local = local;
        let mut stored = stored;
        for _ in 0..3 {
            let step = decide(&Situation {
                local: &local,
                seat: Seat::Holder { stored: stored.as_ref() },
                bootstrap: None,
                bootstraps_seen: &[],
                trigger: &trigger,
                now: at(NOW),
                timing: &timing(),
            });
            match step {
                Step::TakeOver => {
                    let taken = stored.clone().expect("a newer stored state");
                    local.take_over(taken);
                }
                Step::CommitKept => {
                    let next = stored.as_ref().map(generation).unwrap_or(0).max(generation(&local)) + 1;
                    local.record_committed(next);
                    stored = Some(local.clone());
                }
                Step::Refresh | Step::Current => return Ok(()),
                other => prop_assert!(false, "a holder decided {other:?}"),
            }
        }
        prop_assert!(false, "no settled step after three decisions");
    }
}
