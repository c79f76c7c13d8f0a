//! `refreshd state seal|unseal`: migrates the config's state directory to sealed files or
//! back (see [`crate::state::StateDir::migrate`]), and says what it did, by credential name.
//!
//! Never prints what a state file holds.

use super::args::StateCommand;
use crate::cli::Exit;
use crate::config::Config;
use crate::state::{Direction, StateDir};

/// `refreshd state seal|unseal`.
pub fn command(command: &StateCommand) -> anyhow::Result<Exit> {
    let (config, direction) = match command {
        StateCommand::Seal { config } => (config, Direction::Seal),
        StateCommand::Unseal { config } => (config, Direction::Unseal),
    };
    super::with_config(config, Exit::Config, |c| run(c, direction))
}

async fn run(config: Config, direction: Direction) -> anyhow::Result<Exit> {
    let state = StateDir::of(&config.daemon);
    if let Err(e) = state.refuse_if_foreign() {
        eprintln!("refreshd: {e}");
        return Ok(Exit::Failed);
    }
    // Blocking file work (and a wait for a credential's lock), off the runtime.
    let migrated = tokio::task::spawn_blocking(move || state.migrate(direction)).await?;
    let (done, already) = match direction {
        Direction::Seal => ("sealed", "already sealed"),
        Direction::Unseal => ("unsealed", "already plain"),
    };
    match migrated {
        Ok(migrated) => {
            println!(
                "{}: {done} {} state files{}; {} {already}{}",
                config.daemon.state_dir.display(),
                migrated.changed.len(),
                names(&migrated.changed),
                migrated.unchanged.len(),
                names(&migrated.unchanged),
            );
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprintln!("refreshd: {e}");
            // A key to set is the config's to fix; anything else (a daemon running, a disk
            // error) is a failure of this run.
            Ok(if e.is_key() {
                Exit::Config
            } else {
                Exit::Failed
            })
        }
    }
}

/// ` (a, b)`, or nothing for none.
fn names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}
