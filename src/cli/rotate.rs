//! `refreshd rotate`: asks the running daemon to refresh now and prints each result.

use std::time::Duration;

use crate::cli::Exit;
use crate::config::Config;
use crate::control::{Request, Response};
use crate::token;

pub async fn run(config: Config, all: bool, names: Vec<String>) -> anyhow::Result<Exit> {
    if names
        .iter()
        .any(|name| super::credential(&config, name).is_none())
    {
        return Ok(Exit::Failed);
    }
    let names = if all { Vec::new() } else { names };
    // A rotation may wait for its lock, its request timeout and its reloads.
    let longest = config
        .credentials
        .iter()
        .map(|c| c.timing.timeout)
        .max()
        .unwrap_or_default();
    let timeout = longest * 4 + Duration::from_secs(60);
    let request = Request::Rotate {
        names,
        if_due: false,
    };
    let results = match super::ask_daemon(&config, &request, timeout).await? {
        None => {
            eprintln!(
                "refreshd: no daemon is listening on {}; start `refreshd run`, or use `refreshd once --force`",
                config.daemon.control_socket.display()
            );
            return Ok(Exit::Failed);
        }
        Some(Response::Rotated(results)) => results,
        Some(Response::Error(message)) => {
            eprintln!("refreshd: {message}");
            return Ok(Exit::Failed);
        }
        Some(_) => anyhow::bail!("the daemon answered something else than rotation results"),
    };
    let mut all_ok = true;
    for outcome in results {
        all_ok &= outcome.ok;
        let detail = match (&outcome.fingerprint, outcome.expires_at) {
            (Some(fp), Some(at)) => format!(" (fingerprint {fp}, expires {})", token::rfc3339(at)),
            _ => String::new(),
        };
        println!("{}: {}{detail}", outcome.name, outcome.message);
    }
    Ok(Exit::from_ok(all_ok))
}
