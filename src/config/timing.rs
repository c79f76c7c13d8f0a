//! A credential's timing: its own values, else `[defaults]`, else the built-in ones,
//! checked so the scheduler never sees a zero timeout, a backoff that starts above its
//! ceiling or a duration that overflows when added to a timestamp.
//!
//! Must never: read the clock; when a refresh happens is [`crate::credential`]'s call.

use std::time::Duration;

use super::ConfigError;
use super::locate::Doc;
use super::raw::RawTiming;

/// The longest `timeout` a credential may have: SIGTERM waits for a request in flight
/// (design §4), and the shipped units give the daemon this long plus a margin to stop.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The bound [`crate::token`] schedules within: ten years added to its latest time still
/// fit the calendar, so no date arithmetic on these durations can overflow.
const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

/// When and how patiently a credential is refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub refresh_at: Duration,
    pub min_remaining: Duration,
    pub jitter: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    pub default_lifetime: Duration,
}

impl Doc<'_> {
    /// The timing of the credential at `start`, whose dotted key is `key`.
    pub(super) fn timing(
        &self,
        start: usize,
        key: &str,
        own: &RawTiming,
        defaults: &RawTiming,
    ) -> Result<Timing, ConfigError> {
        let timing = inherit(own, defaults);
        if [
            timing.refresh_at,
            timing.min_remaining,
            timing.jitter,
            timing.retry_max,
            timing.timeout,
            timing.default_lifetime,
        ]
        .iter()
        .any(|d| *d > TEN_YEARS)
        {
            return Err(self.error(
                start,
                key,
                "durations longer than ten years are not supported",
            ));
        }
        for (field, value) in [
            ("refresh_at", timing.refresh_at),
            ("timeout", timing.timeout),
            ("default_lifetime", timing.default_lifetime),
        ] {
            if value.is_zero() {
                return Err(self.error(
                    start,
                    format!("{key}.{field}"),
                    "must be longer than zero",
                ));
            }
        }
        if timing.timeout > MAX_TIMEOUT {
            return Err(self.error(
                start,
                format!("{key}.timeout"),
                format!(
                    "at most {}s: a token request that takes longer is not coming back, and SIGTERM waits this long for one in flight (systemd's TimeoutStopSec is set for it)",
                    MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        if timing.retry_initial.is_zero() || timing.retry_initial > timing.retry_max {
            return Err(self.error(
                start,
                format!("{key}.retry"),
                "`initial` must be longer than zero and no longer than `max`",
            ));
        }
        Ok(timing)
    }
}

/// Each value from the credential, else from `[defaults]`, else built in; unchecked.
fn inherit(own: &RawTiming, defaults: &RawTiming) -> Timing {
    let pick = |own: Option<Duration>, inherited: Option<Duration>, fallback: u64| {
        own.or(inherited).unwrap_or(Duration::from_secs(fallback))
    };
    let retry_own = own.retry.clone().unwrap_or_default();
    let retry_inherited = defaults.retry.clone().unwrap_or_default();
    Timing {
        refresh_at: pick(own.refresh_at, defaults.refresh_at, 50 * 60),
        min_remaining: pick(own.min_remaining, defaults.min_remaining, 10 * 60),
        jitter: pick(own.jitter, defaults.jitter, 30),
        retry_initial: pick(retry_own.initial, retry_inherited.initial, 2),
        retry_max: pick(retry_own.max, retry_inherited.max, 5 * 60),
        timeout: pick(own.timeout, defaults.timeout, 30),
        default_lifetime: pick(own.default_lifetime, defaults.default_lifetime, 60 * 60),
    }
}
