//! `refreshd once`: one pass over every (named) credential, bearers first.

use crate::cli::Exit;
use crate::config::Config;
use crate::credential::{Engine, Trigger};
use crate::state::StateDir;

pub async fn run(config: Config, force: bool, names: Vec<String>) -> anyhow::Result<Exit> {
    crate::log::init(config.log.level.as_str(), config.log.format);
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
    let engine = Engine::once(StateDir::new(&config.daemon.state_dir));
    let mut all_ok = true;
    // Bearers first: an `http` source sends its bearer's fresh token.
    for credential in config.dependency_order() {
        if !names.is_empty() && !names.contains(&credential.name) {
            continue;
        }
        all_ok &= engine.rotate(credential, trigger.clone()).await.is_ok();
    }
    Ok(Exit::from_ok(all_ok))
}
