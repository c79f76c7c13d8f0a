//! The command line: parses arguments ([`args`]), loads the config, hands each command to
//! its own module and maps what it returns to an [`Exit`] status. The only place `anyhow`
//! is used. Only `refreshd token` and the credential helpers (`kubectl-credential`,
//! `git-credential`, `docker-credential-refreshd`) ever print a token; every other output
//! shows fingerprints. Started as `docker-credential-refreshd` (a link), it is docker's
//! credential helper and takes no clap arguments.

mod args;
mod check;
mod docker;
mod exec;
mod exit;
mod git;
mod inspect;
mod kubectl;
mod login;
mod once;
mod reach;
mod rotate;
mod state;
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
use args::{AuditCommand, Cli, Command, ConfigArg, SocketArg, StoreCommand};

/// How long `status` and `token` wait for the daemon; `rotate` waits for the refreshes.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line's definition, for the man page and shell completions generated from it.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub fn main() -> ExitCode {
    if docker::called_as_helper() {
        return docker::main();
    }
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
        } => exec(
            &config,
            crate::exec::Options {
                bindings: env,
                on_change,
                grace,
                program,
            },
        ),
        Command::Demo => Ok(crate::demo::main().into()),
        Command::Inspect { token } => inspect::run(token),
        Command::Audit { command } => Ok(audit(&command)),
        Command::State { command } => state::command(&command),
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
            let key = crate::seal::Key::generate();
            println!("{}", secrecy::ExposeSecret::expose_secret(&key));
            Ok(Exit::Ok)
        }
        Command::Status {
            config,
            json,
            nodes: true,
            ..
        } => with_config(&config, Exit::Config, |c| status::nodes(c, json)),
        Command::Status {
            config,
            socket,
            json,
            ..
        } => status(&config, socket, json),
        Command::Rotate { config, all, names } => {
            with_config(&config, Exit::Config, |c| rotate::run(c, all, names))
        }
        Command::Token {
            config,
            socket,
            format,
            name,
        } => with_reach(&config, socket, |reach| token::run(reach, name, format)),
        Command::KubectlCredential {
            config,
            socket,
            name,
        } => with_reach(&config, socket, |reach| kubectl::run(reach, name)),
        Command::GitCredential {
            config,
            socket,
            operation,
        } => with_reach(&config, socket, |reach| git::run(reach, operation)),
        Command::Login {
            config,
            name,
            device,
            no_browser,
            port,
            timeout,
        } => {
            let flags = login::Flags::new(device, no_browser, port, timeout);
            with_config(&config, Exit::Config, |c| login::run(c, name, flags))
        }
    }
}

/// `refreshd exec`. As PID 1, this process becomes the init that reaps orphans, and runs
/// `exec` again as its child.
fn exec(config: &ConfigArg, options: crate::exec::Options) -> anyhow::Result<Exit> {
    if std::process::id() == 1 {
        return Ok(Exit::Program(crate::exec::reaper::run()));
    }
    with_config(config, Exit::Config, |c| exec::run(c, options))
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

/// `status`: from the daemon at `--socket` or the config's socket; with a config this user
/// cannot read, from the daemon at the default sockets (a reader sees its credentials);
/// with an invalid one, what the running daemon still runs.
fn status(config: &ConfigArg, socket: SocketArg, json: bool) -> anyhow::Result<Exit> {
    let path = config.path();
    match Config::load(&path) {
        Ok(mut config) => {
            if let Some(socket) = socket.socket {
                config.daemon.control_socket = socket;
            }
            block_on(status::run(config, json))
        }
        Err(e) if reach::unreadable(&e) => {
            let reach = reach::Reach::new(&path, socket.socket)?;
            block_on(status::run_unread(reach, &path, json))
        }
        Err(e) => {
            eprintln!("refreshd: {e}");
            block_on(status::run_despite_invalid_config(
                &path,
                socket.socket,
                json,
            ))
        }
    }
}

/// Finds the daemon for a command that reads a token ([`reach`]): a config this user
/// cannot read is no error, an invalid one exits `Config` after saying why.
fn with_reach<F, Fut>(config: &ConfigArg, socket: SocketArg, command: F) -> anyhow::Result<Exit>
where
    F: FnOnce(reach::Reach) -> Fut,
    Fut: Future<Output = anyhow::Result<Exit>>,
{
    match reach::Reach::new(&config.path(), socket.socket) {
        Ok(reach) => block_on(command(reach)),
        Err(e) => {
            eprintln!("refreshd: {e}");
            Ok(Exit::Config)
        }
    }
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
    let state_dir = Some(config.daemon.state_dir.as_path());
    crate::control::client::request(&config.daemon.control_socket, request, timeout, state_dir)
        .await
}
