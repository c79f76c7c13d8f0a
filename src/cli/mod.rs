//! The command line: parses arguments ([`args`]), loads the config, hands each command to
//! its own module and maps what it returns to an [`Exit`] status. The only place `anyhow`
//! is used. Only `refreshd token` ever prints a token; every other output shows
//! fingerprints.

mod args;
mod check;
mod exec;
mod exit;
mod inspect;
mod login;
mod once;
mod rotate;
mod status;
mod token;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

pub use exit::Exit;

use crate::config::{Config, Credential};
use crate::control::{ControlError, Request, Response};
use args::{AuditCommand, Cli, Command, ConfigArg, StoreCommand};

/// How long `status` and `token` wait for the daemon; `rotate` waits for the refreshes.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line's definition, for the man page and shell completions generated from it.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = dispatch(cli.command);
    // What a command recorded reaches the audit log before the process ends.
    crate::audit::flush(Duration::from_secs(5));
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("refreshd: {e:#}");
            Exit::Failed.into()
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Run { config } => Ok(crate::daemon::main(&config.path()).into()),
        Command::Exec {
            config,
            env,
            on_change,
            grace,
            program,
        } => {
            let options = crate::exec::Options {
                bindings: env,
                on_change,
                grace,
                program,
            };
            // As PID 1, this process becomes the init that reaps orphans, and runs `exec`
            // again as its child.
            if std::process::id() == 1 {
                return Ok(Exit::Program(crate::exec::reaper::run()));
            }
            with_config(&config, Exit::Config, |c| exec::run(c, options))
        }
        Command::Demo => Ok(crate::demo::main().into()),
        Command::Inspect { token } => inspect::run(token),
        Command::Audit { command } => Ok(audit(&command)),
        Command::Once {
            config,
            force,
            names,
        } => with_config(&config, Exit::Config, |c| once::run(c, force, names)),
        Command::Check { config, online } => {
            with_config(&config, Exit::Invalid, |c| check::run(c, online))
        }
        Command::Store {
            command: StoreCommand::InitKey,
        } => {
            println!(
                "{}",
                secrecy::ExposeSecret::expose_secret(&crate::store::seal::Key::generate())
            );
            Ok(Exit::Ok)
        }
        Command::Status {
            config,
            json,
            nodes: true,
        } => with_config(&config, Exit::Config, |c| status::nodes(c, json)),
        Command::Status { config, json, .. } => {
            let path = config.path();
            match Config::load(&path) {
                Ok(config) => block_on(status::run(config, json)),
                Err(e) => {
                    eprintln!("refreshd: {e}");
                    block_on(status::run_despite_invalid_config(&path, json))
                }
            }
        }
        Command::Rotate { config, all, names } => {
            with_config(&config, Exit::Config, |c| rotate::run(c, all, names))
        }
        Command::Token { config, name } => {
            with_config(&config, Exit::Config, |c| token::run(c, name))
        }
        Command::Login {
            config,
            name,
            device,
            no_browser,
            port,
            timeout,
        } => {
            let options = login::Flags {
                device,
                open_browser: !no_browser,
                port,
                timeout,
            };
            with_config(&config, Exit::Config, |c| login::run(c, name, options))
        }
    }
}

/// `refreshd audit verify FILE`.
fn audit(command: &AuditCommand) -> Exit {
    let AuditCommand::Verify { file } = command;
    match crate::audit::verify(file) {
        Ok(lines) => {
            println!(
                "{}: {lines} lines, each chained to the one before",
                file.display()
            );
            Exit::Ok
        }
        Err(broken) => {
            eprintln!("refreshd: {broken}");
            Exit::Failed
        }
    }
}

/// Loads the config (an invalid one exits with `invalid`, after saying why) and runs
/// `command` on a runtime of its own: one per process, however many requests it makes.
fn with_config<F, Fut>(arg: &ConfigArg, invalid: Exit, command: F) -> anyhow::Result<Exit>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Exit>>,
{
    let config = match Config::load(&arg.path()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("refreshd: {e}");
            return Ok(invalid);
        }
    };
    block_on(command(config))
}

/// Runs `command` on a runtime of its own.
fn block_on(command: impl Future<Output = anyhow::Result<Exit>>) -> anyhow::Result<Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command)
}

/// The config's fleet store, connected (and this node's free leases taken, so that a
/// one-shot command on a fleet without a running daemon still refreshes); `None` without
/// one. A store that refuses this host is an error; one that does not answer is not (the
/// shared credentials then report it, or fall back to refreshing here).
async fn fleet(config: &Config) -> anyhow::Result<Option<std::sync::Arc<crate::store::Fleet>>> {
    let Some(store) = &config.daemon.store else {
        return Ok(None);
    };
    let (fleet, unreachable) =
        crate::store::Fleet::join(store, config.shared_names(), crate::clock::system(), None)
            .await?;
    if let Some(e) = unreachable {
        eprintln!("refreshd: {e}");
    }
    Ok(Some(fleet))
}

/// The named credential; `None` after saying there is none.
fn credential<'a>(config: &'a Config, name: &str) -> Option<&'a Credential> {
    let found = config.credential(name);
    if found.is_none() {
        eprintln!(
            "refreshd: no credential named {name:?} in {}",
            config.path.display()
        );
    }
    found.map(|credential| &**credential)
}

/// One request to the running daemon; `None` when no daemon listens.
async fn ask_daemon(
    config: &Config,
    request: &Request,
    timeout: Duration,
) -> Result<Option<Response>, ControlError> {
    crate::control::client::request(&config.daemon.control_socket, request, timeout).await
}
