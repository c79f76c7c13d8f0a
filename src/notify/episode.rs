//! When a notification is due: a pure function of what a credential (or the store) last
//! looked like, a sink's thresholds, what that sink was last told, and the time. A problem
//! is told once when it starts or changes, then reminded every `repeat` while it lasts; its
//! end is told as `recovered`, to a sink that was told of it.
//!
//! Must never: read the clock, send anything, or hold a token (it sees health, counts,
//! times and error words only).

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::EventKind;
use crate::observe::Health;

/// What a credential's last publish showed, kept so that the passing of time alone (a token
/// running out between attempts) can change the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub health: Health,
    pub consecutive_failures: u32,
    pub expires_at: Option<OffsetDateTime>,
}

/// When a sink calls a run of failures a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thresholds {
    /// A `[[notify]]` sink's.
    Sink {
        after: u32,
        min_remaining: Option<Duration>,
        repeat: Option<Duration>,
    },
    /// A credential's `on_failure` hook: told once each time the credential turns unhealthy,
    /// never reminded, never told of a recovery.
    OnFailure,
}

/// How a subject stands for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refreshes work: any problem is over.
    Fine,
    /// Failures below the sink's thresholds, or nothing tried yet: no change either way.
    Undecided,
    Problem(EventKind),
}

/// The verdict of a credential's `seen` at `now` under `thresholds`.
pub fn verdict(seen: &Observation, thresholds: Thresholds, now: OffsetDateTime) -> Verdict {
    let (after, min_remaining) = match thresholds {
        Thresholds::OnFailure => {
            return match seen.health {
                Health::Ok | Health::Retrying => Verdict::Fine,
                Health::Pending => Verdict::Undecided,
                // One kind for every unhealthy state: the hook runs once per turn, not once
                // per change between them.
                _ => Verdict::Problem(EventKind::Failing),
            };
        }
        Thresholds::Sink {
            after,
            min_remaining,
            ..
        } => (after, min_remaining),
    };
    let left = seen.expires_at.map(|at| at - now);
    let valid = left.is_some_and(|left| left.is_positive());
    match seen.health {
        Health::NeedsLogin => Verdict::Problem(EventKind::LoginNeeded),
        // The disk refuses the state: a person must act, like after a failed refresh.
        Health::Unsaved => Verdict::Problem(EventKind::Failing),
        Health::Pending => Verdict::Undecided,
        _ if seen.consecutive_failures == 0 => {
            if valid {
                Verdict::Fine
            } else {
                Verdict::Undecided
            }
        }
        _ if !valid => Verdict::Problem(EventKind::Expiring),
        _ => {
            let short = match (left, min_remaining) {
                (Some(left), Some(min)) => left < min,
                _ => false,
            };
            if seen.consecutive_failures >= after || short {
                Verdict::Problem(EventKind::Failing)
            } else {
                Verdict::Undecided
            }
        }
    }
}

/// What one sink was told of one subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Episode {
    /// The problem going on, if any.
    problem: Option<EventKind>,
    /// Whether the sink wanted (and so was told of) something of this problem.
    told: bool,
    /// When the problem was last told or reminded.
    last: Option<OffsetDateTime>,
}

/// A notification to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tell {
    pub kind: EventKind,
    /// The same problem, told again after `repeat`.
    pub reminder: bool,
}

impl Episode {
    /// Whether nothing is going on (the episode can be forgotten).
    pub fn is_quiet(&self) -> bool {
        self.problem.is_none()
    }

    /// Moves to `verdict` at `now`; what to tell, if the sink `wants` it.
    pub fn step(
        &mut self,
        verdict: Verdict,
        thresholds: Thresholds,
        now: OffsetDateTime,
        wants: impl Fn(EventKind) -> bool,
    ) -> Option<Tell> {
        match verdict {
            Verdict::Undecided => None,
            Verdict::Fine => {
                let was_told = self.problem.is_some() && self.told;
                *self = Episode::default();
                let recovered = was_told
                    && !matches!(thresholds, Thresholds::OnFailure)
                    && wants(EventKind::Recovered);
                recovered.then_some(Tell {
                    kind: EventKind::Recovered,
                    reminder: false,
                })
            }
            Verdict::Problem(kind) if self.problem != Some(kind) => {
                self.problem = Some(kind);
                self.last = Some(now);
                let wanted = wants(kind);
                self.told |= wanted;
                wanted.then_some(Tell {
                    kind,
                    reminder: false,
                })
            }
            Verdict::Problem(kind) => {
                let Thresholds::Sink {
                    repeat: Some(repeat),
                    ..
                } = thresholds
                else {
                    return None;
                };
                let due = self.last.is_none_or(|last| now - last >= repeat);
                if !due || !wants(kind) {
                    return None;
                }
                self.last = Some(now);
                self.told = true;
                Some(Tell {
                    kind,
                    reminder: true,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
