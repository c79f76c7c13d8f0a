//! `refreshd status`: what the running daemon reports, or, without one, what the state
//! directory says (with the schedule's plan, unjittered, as the next refresh). With a config
//! file that does not load, still what the running daemon reports; with one this user may
//! not read (a credential's reader), what the daemon at `--socket` or the default sockets
//! shows it: its own credentials only.
//!
//! Everything it prints that came from outside (the daemon's or the store's words, node
//! names, a provider's or a program's error) is escaped ([`Shown`]): it never writes an
//! escape sequence to the operator's terminal. `status --nodes` only reads the store.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::CONTROL_TIMEOUT;
use super::reach::Reach;
use crate::cli::Exit;
use crate::config::Config;
use crate::control::{Request, Response};
use crate::credential::policy;
use crate::observe::{CredentialStatus, JsonWriter, Shown, Snapshot, Verdict, shown};
use crate::state::StateDir;

pub async fn run(config: Config, json: bool) -> anyhow::Result<Exit> {
    status(config, json).await.map_err(escaped)
}

/// An error as it may reach the terminal: its whole chain, escaped.
fn escaped(e: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(shown(&format!("{e:#}")))
}

async fn status(config: Config, json: bool) -> anyhow::Result<Exit> {
    let now = crate::clock::system_now();
    let snapshot = match super::ask_daemon(&config, &Request::Status, CONTROL_TIMEOUT).await? {
        Some(Response::Status(snapshot)) => *snapshot,
        Some(Response::Error(message)) => anyhow::bail!("the daemon refused: {}", Shown(&message)),
        Some(_) => anyhow::bail!("the daemon answered something else than a status"),
        None => from_state(&config, now),
    };
    print(&snapshot, json, &config.path, now)?;
    Ok(verdict(&snapshot))
}

/// The config file does not load (the caller said why): the running daemon, which keeps the
/// configuration it last loaded, is still asked at the socket the file names. Exits `Config`
/// (78) either way, so nobody mistakes this for a healthy answer.
pub async fn run_despite_invalid_config(
    path: &Path,
    socket: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<Exit> {
    let socket = socket.unwrap_or_else(|| crate::config::control_socket_despite_errors(path));
    let answer =
        crate::control::client::request(&socket, &Request::Status, CONTROL_TIMEOUT, None).await;
    match answer {
        Ok(Some(Response::Status(snapshot))) => {
            eprintln!(
                "refreshd: the daemon at {} runs the configuration it last loaded:",
                socket.display()
            );
            print(&snapshot, json, path, crate::clock::system_now())?;
        }
        Ok(_) => eprintln!("refreshd: no daemon answered at {}", socket.display()),
        Err(e) => eprintln!("refreshd: {}", shown(&e.to_string())),
    }
    Ok(Exit::Config)
}

/// This user cannot read the config at `path`: a reader asks the daemon at
/// `--socket` or the default sockets, which shows it the credentials it may read. With no
/// daemon there is nothing else to ask, and it exits `Config` (78), as for a config that
/// does not load.
pub async fn run_unread(reach: Reach, path: &Path, json: bool) -> anyhow::Result<Exit> {
    let now = crate::clock::system_now();
    match reach.ask(&Request::Status, CONTROL_TIMEOUT).await {
        Ok(Some(Response::Status(snapshot))) => {
            print(&snapshot, json, path, now)?;
            Ok(verdict(&snapshot))
        }
        Ok(Some(Response::Error(message))) => {
            Err(anyhow::anyhow!("the daemon refused: {}", Shown(&message)))
        }
        Ok(Some(_)) => anyhow::bail!("the daemon answered something else than a status"),
        Ok(None) => {
            eprintln!("refreshd: {}", shown(&reach.nobody_answered()));
            Ok(Exit::Config)
        }
        Err(e) => {
            eprintln!("refreshd: {}", shown(&e.to_string()));
            Ok(Exit::Config)
        }
    }
}

fn verdict(snapshot: &Snapshot) -> Exit {
    match snapshot.verdict() {
        Verdict::Healthy => Exit::Ok,
        Verdict::Unhealthy => Exit::Failed,
        Verdict::NoData => Exit::NoData,
    }
}

/// `status --nodes`: the fleet store's nodes, their versions, heartbeats and leases, read
/// without joining the fleet (no migration, no heartbeat of this host, no lease).
pub async fn nodes(config: Config, json: bool) -> anyhow::Result<Exit> {
    list_nodes(config, json).await.map_err(escaped)
}

async fn list_nodes(config: Config, json: bool) -> anyhow::Result<Exit> {
    let Some(store) = &config.daemon.store else {
        eprintln!(
            "refreshd: {} has no [daemon] store: there are no nodes to list",
            config.path.display()
        );
        return Ok(Exit::Invalid);
    };
    let fleet = crate::store::Fleet::new(store, crate::clock::system())?;
    let Some(nodes) = fleet.nodes().await? else {
        eprintln!(
            "refreshd: the store has no refreshd schema yet: no node has joined it (a daemon creates it when it starts); nothing was written"
        );
        return Ok(Exit::NoData);
    };
    if json {
        write_json(&nodes)?;
        return Ok(Exit::Ok);
    }
    let now = crate::clock::system_now();
    for node in &nodes {
        let this = if node.name == fleet.node {
            " (this node)"
        } else {
            ""
        };
        println!(
            "{}{this}: refreshd {}, heartbeat {} ago, {} lease{} held, started {}",
            Shown(&node.name),
            Shown(&node.version),
            crate::token::remaining(now, now - node.heartbeat_age),
            node.leases,
            if node.leases == 1 { "" } else { "s" },
            crate::token::rfc3339(node.started_at),
        );
    }
    Ok(if nodes.is_empty() {
        Exit::NoData
    } else {
        Exit::Ok
    })
}

fn print(
    snapshot: &Snapshot,
    json: bool,
    config: &Path,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if json {
        write_json(snapshot)?;
    } else if snapshot.is_empty() {
        println!("no credentials configured in {}", config.display());
    } else {
        print!("{}", snapshot.render(now));
    }
    Ok(())
}

/// `value` as pretty JSON on stdout, streamed (ten thousand credentials make megabytes), with
/// DEL and C1 escaped too ([`JsonWriter`]).
fn write_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = JsonWriter::new(std::io::BufWriter::new(std::io::stdout().lock()));
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn from_state(config: &Config, now: OffsetDateTime) -> Snapshot {
    let state_dir = StateDir::of(&config.daemon);
    let mut snapshot = Snapshot::new("state");
    for credential in &config.credentials {
        let state = state_dir.load(&credential.name).unwrap_or_else(|e| {
            eprintln!("refreshd: {}", shown(&e.to_string()));
            Default::default()
        });
        let next = state.token.as_ref().map(|t| {
            policy::next_refresh(
                t.issued_at,
                t.expires_at,
                &credential.timing,
                time::Duration::ZERO,
                now,
            )
        });
        snapshot.set(CredentialStatus::from_state(credential, &state, next, now));
    }
    snapshot
}
