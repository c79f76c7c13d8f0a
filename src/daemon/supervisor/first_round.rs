//! The first round after start: how the first attempts of every credential are getting
//! on, told in the log when there are more due than may refresh at once. It only counts
//! and tells: readiness itself is the supervisor's.

/// The first attempts after start: with more credentials due than may refresh at once, it
/// says how many there are and, once a tenth of them (at least one batch) is done, how long
/// the rest should take at the pace so far.
pub(super) struct FirstRound {
    started: tokio::time::Instant,
    /// Every credential's first attempt takes a permit, due or not.
    total: usize,
    due: usize,
    at_once: usize,
    settled: usize,
}

impl FirstRound {
    pub(super) fn new(total: usize, due: usize, at_once: usize) -> FirstRound {
        if due > at_once {
            tracing::info!(
                due,
                max_concurrent_refreshes = at_once,
                "credentials need a refresh before refreshd is ready; refreshing {at_once} at a time"
            );
        }
        FirstRound {
            started: tokio::time::Instant::now(),
            total,
            due,
            at_once,
            settled: 0,
        }
    }

    /// One more credential had its first attempt.
    pub(super) fn settled(&mut self) {
        self.settled += 1;
        if self.due > self.at_once && self.settled == (self.due / 10).max(self.at_once) {
            let took = self.started.elapsed().as_secs_f64();
            let rest = self.total.saturating_sub(self.settled) as f64;
            tracing::info!(
                "the first {} credentials took {took:.1}s: expect the other {rest} in about {:.0}s",
                self.settled,
                (took * rest / self.settled as f64).ceil()
            );
        }
    }
}
