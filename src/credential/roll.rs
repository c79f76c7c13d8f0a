//! Rolling reloads (`reload_order = "rolling"`): after a node has written a committed
//! generation's token into its targets, its reload actions wait their turn on a task of
//! their own: they run once every live node before this one (in node-name order) has
//! reported its reload of that generation done in the store, or `reload_timeout` after the
//! last progress seen. Then the optional health check runs, and the result is reported.
//! A failed report stops the roll: the nodes after it keep the new token in their targets
//! but do not reload, and say so (log and notification).
//!
//! Must never: run on the rotation path (the wait holds no lock and no refresh permit, and a
//! rotation never waits for it), or let an older generation's roll run on after a newer one
//! was written (it is aborted).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::Engine;
use crate::child::Child;
use crate::config::{Credential, ReloadConfig, Rolling};
use crate::notify::Notifier;
use crate::reload::{self, Reloader};
use crate::store::{Fleet, ROLL_POLL, Turn, TurnResult};

/// One roll, moved onto its task.
struct Roll {
    credential: String,
    generation: u64,
    actions: Vec<ReloadConfig>,
    rolling: Rolling,
    context: reload::Context,
    reloader: Reloader,
    fleet: Arc<Fleet>,
    notifier: Option<Notifier>,
}

impl Engine {
    /// Starts the roll of `generation`'s reloads; an older roll of `credential` still
    /// waiting is aborted (its generation is superseded), one of the same generation kept.
    pub(super) fn roll(
        &self,
        credential: &Credential,
        rolling: &Rolling,
        fleet: Arc<Fleet>,
        generation: u64,
        context: reload::Context,
        reloader: &Reloader,
    ) {
        let mut rolls = self.rolls();
        if let Some((running, handle)) = rolls.get(&credential.name) {
            if !handle.is_finished() {
                if *running >= generation {
                    return;
                }
                tracing::info!(credential = %credential.name, generation = running, "rolling reload superseded by generation {generation}");
                handle.abort();
            }
        }
        let roll = Roll {
            credential: credential.name.clone(),
            generation,
            actions: credential.reload.clone(),
            rolling: rolling.clone(),
            context,
            reloader: reloader.clone(),
            fleet,
            notifier: self.notifier(),
        };
        let handle = tokio::spawn(roll.run()).abort_handle();
        rolls.insert(credential.name.clone(), (generation, handle));
    }
}

impl Roll {
    async fn run(self) {
        let name = &self.credential;
        let generation = self.generation;
        match self.wait_turn().await {
            Ok(()) => {}
            Err(stopped_by) => {
                let error = format!(
                    "the reload of generation {generation} failed on node {stopped_by}: this node holds the new token but did not reload"
                );
                tracing::warn!(credential = %name, "rolling reload stopped: {error}");
                if let Some(notifier) = &self.notifier {
                    notifier.reload_stopped(name, error);
                }
                return;
            }
        }
        let result = match self.reload_and_check().await {
            Ok(()) => {
                tracing::info!(credential = %name, generation, "rolling reload done on this node");
                TurnResult::Done
            }
            Err(error) => {
                tracing::warn!(credential = %name, generation, "rolling reload failed on this node, the nodes after it will not reload: {error}");
                if let Some(notifier) = &self.notifier {
                    notifier.reload_stopped(name, error);
                }
                TurnResult::Failed
            }
        };
        // A report lost to a store outage costs the next nodes `reload_timeout`, no more.
        for _ in 0..3 {
            match self.fleet.report_reload(name, generation, result).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(credential = %name, generation, "rolling reload: cannot report to the store: {e}");
                    tokio::time::sleep(ROLL_POLL * 2).await;
                }
            }
        }
    }

    /// Waits until this node's turn: `Err` names the node whose failure stopped the roll.
    async fn wait_turn(&self) -> Result<(), String> {
        let name = &self.credential;
        let mut progress = Instant::now();
        let mut reported = 0;
        loop {
            match self.fleet.reload_turn(name, self.generation).await {
                Ok(Turn::Go) => return Ok(()),
                Ok(Turn::Stopped { node }) => return Err(node),
                Ok(Turn::Wait {
                    reported: now,
                    pending,
                }) => {
                    if now != reported {
                        reported = now;
                        progress = Instant::now();
                    }
                    if progress.elapsed() >= self.rolling.timeout {
                        tracing::warn!(credential = %name, generation = self.generation, "rolling reload: node {pending} did not report within {}: reloading anyway", humantime::format_duration(self.rolling.timeout));
                        return Ok(());
                    }
                }
                Err(e) => {
                    if progress.elapsed() >= self.rolling.timeout {
                        tracing::warn!(credential = %name, generation = self.generation, "rolling reload: the store does not answer ({e}): reloading anyway");
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(ROLL_POLL).await;
        }
    }

    /// This node's reload actions, then the health check: the first failure, in words.
    async fn reload_and_check(&self) -> Result<(), String> {
        for action in &self.actions {
            self.reloader
                .reload(action, self.context.clone())
                .await
                .map_err(|e| format!("reload: {e}"))?;
        }
        let Some(argv) = &self.rolling.health_check else {
            return Ok(());
        };
        let env = [
            ("REFRESHD_CREDENTIAL", self.credential.clone()),
            (
                "REFRESHD_EXPIRES_AT",
                crate::token::rfc3339(self.context.expires_at),
            ),
        ];
        health_check(argv, self.rolling.timeout, env).await
    }
}

/// Runs the health check like any child program (no token in its argv or environment).
async fn health_check(
    argv: &[String],
    timeout: Duration,
    env: [(&str, String); 2],
) -> Result<(), String> {
    let child = Child::new(argv, timeout).envs(env);
    let program = child.program();
    let output = child
        .run()
        .await
        .map_err(|e| format!("health check: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let lines = output.stderr_lines(None);
    let last = lines.last().map(|l| format!(": {l}")).unwrap_or_default();
    Err(format!(
        "health check {program} exited with {}{last}",
        output.status
    ))
}
