//! Shutdown after SIGTERM or SIGINT: credential tasks finish the rotations in progress
//! (bounded by the longest request timeout), then the background tasks stop, the fleet's
//! leases are handed over and the control socket is removed. It never cancels a rotation
//! before its bound (a second signal aside).

use std::path::PathBuf;
use std::time::Duration;

use super::super::systemd;
use super::Daemon;

/// What SIGTERM waits for rotations in progress beyond the longest request timeout: the
/// state save, the target writes and reloads after the answer. The units' TimeoutStopSec
/// (400 s) covers config::MAX_TIMEOUT plus this.
const DRAIN_MARGIN: Duration = Duration::from_secs(60);

impl Daemon {
    pub(super) async fn shutdown(mut self) {
        systemd::stopping();
        self.shared.model.vitals().set_stopping();
        // Long enough for the slowest request in flight to answer and be stored: dropping
        // that answer could lose a rotated refresh token.
        let drain_limit = drain_limit(self.config.credentials.iter().map(|c| &**c));
        let mut joins = std::mem::take(&mut self.retiring);
        for handle in self.workers.values() {
            handle.stop();
        }
        joins.extend(
            std::mem::take(&mut self.workers)
                .into_values()
                .map(|h| h.join),
        );
        let drain = async {
            for join in joins {
                let _ = join.await;
            }
        };
        tokio::select! {
            _ = drain => {}
            _ = tokio::time::sleep(drain_limit) => tracing::warn!("rotations still running after {}s; exiting anyway", drain_limit.as_secs()),
            _ = self.signals.terminate.recv() => tracing::warn!("second SIGTERM: exiting without waiting"),
            _ = self.signals.interrupt.recv() => tracing::warn!("second SIGINT: exiting without waiting"),
        }
        // The lease rounds stop first, so that none renews what is released next.
        for task in &self.background {
            task.abort();
        }
        // Handed over at once rather than a lease later: another node takes them next round.
        if let Some(fleet) = &self.shared.fleet {
            fleet.release().await;
        }
        remove_socket(&self.config.daemon.control_socket);
        tracing::info!("stopped");
    }
}

/// How long a stop waits for the rotations in progress of `credentials`: the longest request
/// timeout, plus [`DRAIN_MARGIN`] for the save, target writes and reloads after it.
pub(in crate::daemon) fn drain_limit<'a>(
    credentials: impl Iterator<Item = &'a crate::config::Credential>,
) -> Duration {
    credentials
        .map(|c| c.timing.timeout)
        .max()
        .unwrap_or_default()
        + DRAIN_MARGIN
}

fn remove_socket(path: &PathBuf) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(control_socket = %path.display(), "cannot remove the control socket: {e}");
    }
}
