//! What each credential's rotations added up to since the daemon started, for `/metrics`:
//! results, reloads and a duration histogram. Counts only: it never decides anything.

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the rotation-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters since the daemon started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub rotations_ok: u64,
    pub rotations_failed: u64,
    /// Reload actions run after a rotation, by result.
    #[serde(default)]
    pub reloads_ok: u64,
    #[serde(default)]
    pub reloads_failed: u64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then the total count.
    pub duration_buckets: [u64; 9],
    pub duration_count: u64,
    pub duration_sum: f64,
}

impl Counters {
    pub fn observe(&mut self, ok: bool, seconds: f64) {
        if ok {
            self.rotations_ok += 1;
        } else {
            self.rotations_failed += 1;
        }
        for (bucket, bound) in self.duration_buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.duration_count += 1;
        self.duration_sum += seconds;
    }

    /// `run` reload actions ran after a rotation; `failed` of them failed.
    pub fn observe_reloads(&mut self, run: usize, failed: usize) {
        self.reloads_ok += run.saturating_sub(failed) as u64;
        self.reloads_failed += failed as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut counters = Counters::default();
        counters.observe(true, 0.07);
        counters.observe(false, 3.0);
        assert_eq!(counters.duration_buckets, [0, 1, 1, 1, 1, 1, 2, 2, 2]);
        assert_eq!((counters.rotations_ok, counters.rotations_failed), (1, 1));
        assert_eq!(counters.duration_count, 2);
    }
}
