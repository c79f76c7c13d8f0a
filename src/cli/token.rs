//! `refreshd token`: the current access token on stdout, from the daemon or, without one,
//! from the state directory. The only command that prints a token.

use secrecy::ExposeSecret;

use super::CONTROL_TIMEOUT;
use crate::cli::Exit;
use crate::config::Config;
use crate::control::{Request, Response};
use crate::state::StateDir;

pub async fn run(config: Config, name: String) -> anyhow::Result<Exit> {
    if super::credential(&config, &name).is_none() {
        return Ok(Exit::Failed);
    }
    let request = Request::Token { name: name.clone() };
    // The daemon answers from the same state files; without one, the state directory does.
    let token = match super::ask_daemon(&config, &request, CONTROL_TIMEOUT).await {
        Ok(Some(Response::Token(answer))) => Ok(answer.token),
        Ok(Some(Response::Error(message))) => Err(message),
        Ok(Some(_)) => Err("the daemon answered something else than a token".to_owned()),
        Ok(None) | Err(_) => StateDir::new(&config.daemon.state_dir)
            .current_token(&name, crate::clock::system_now())
            .map_err(|e| e.to_string()),
    };
    match token {
        Ok(token) => {
            println!("{}", token.expose_secret());
            Ok(Exit::Ok)
        }
        Err(message) => {
            eprintln!("refreshd: {message}");
            Ok(Exit::Failed)
        }
    }
}
