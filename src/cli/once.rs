//! `refreshd once`: one pass over every (named) credential, bearers first.

use std::time::Duration;

use crate::cli::Exit;
use crate::config::Config;
use crate::credential::{Engine, RotationOutcome, Trigger};
use crate::state::StateDir;

pub async fn run(config: Config, force: bool, names: Vec<String>) -> anyhow::Result<Exit> {
    crate::log::init(config.log.level.as_str(), config.log.format);
    crate::audit::open(config.log.audit.as_deref());
    if names
        .iter()
        .any(|name| super::credential(&config, name).is_none())
    {
        return Ok(Exit::Invalid);
    }
    let trigger = if force {
        Trigger::Force {
            since: crate::clock::system_now(),
        }
    } else {
        Trigger::IfDue
    };
    let state = StateDir::of(&config.daemon);
    // Before any refresh: a wrong state key changes nothing.
    if let Err(e) = state.ready_to_write(config.credentials.iter().map(|c| c.name.as_str())) {
        eprintln!("refreshd: {e}");
        return Ok(Exit::Failed);
    }
    let engine = Engine::once(state).with_fleet(super::fleet(&config).await?);
    let mut all_ok = true;
    let mut reload_failed = false;
    let mut unsaved = Vec::new();
    let mut litter = crate::durable::LitterIndex::default();
    for credential in &config.credentials {
        engine.remove_litter(credential, &mut litter);
    }
    // Bearers first: an `http` source sends its bearer's fresh token.
    for credential in config.dependency_order() {
        if !names.is_empty() && !names.contains(&credential.name) {
            continue;
        }
        let result = engine.rotate(credential, trigger.clone()).await;
        if let RotationOutcome::Failed { error, .. } = &result.outcome
            && result.is_waiting()
        {
            // The daemon waits for the holder's commit quietly; a one-shot command ends
            // here and must say why it failed.
            tracing::warn!(credential = %credential.name, "{error}");
        }
        reload_failed |= result
            .report()
            .is_some_and(|report| !report.reload_errors.is_empty());
        if result.unsaved.is_some() {
            // Stored later (or exit 4); its targets count either way.
            all_ok &= result
                .report()
                .is_some_and(|report| report.target_errors.is_empty());
            unsaved.push(credential);
        } else {
            all_ok &= result.is_ok();
        }
    }
    // A new refresh token that exists only in this process's memory: keep trying to store
    // it for a while rather than exit and lose it.
    let mut wait = Duration::from_secs(1);
    let give_up = tokio::time::Instant::now() + STORE_PATIENCE;
    while !unsaved.is_empty() && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
        let mut still = Vec::with_capacity(unsaved.len());
        for credential in unsaved {
            if engine.store_unsaved(credential).await.is_some() {
                still.push(credential);
            }
        }
        unsaved = still;
    }
    if !unsaved.is_empty() {
        let names: Vec<&str> = unsaved.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "refreshd: the new state of {} could not be stored in {} within {}s: its newest refresh token is lost with this process; free space there and run `refreshd once` again (a provider that allows each refresh token once will want a new login)",
            names.join(", "),
            config.daemon.state_dir.display(),
            STORE_PATIENCE.as_secs()
        );
        return Ok(Exit::Unsaved);
    }
    Ok(match (all_ok, reload_failed) {
        (false, _) => Exit::Failed,
        (true, true) => Exit::ReloadFailed,
        (true, false) => Exit::Ok,
    })
}

/// How long `once` keeps trying to store a state the disk refused.
const STORE_PATIENCE: Duration = Duration::from_secs(60);
