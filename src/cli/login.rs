//! `refreshd login`: gets a refresh token (see [`crate::login`]), then has the running
//! daemon take it over, or, without one, writes the targets itself.

use std::time::Duration;

use super::CONTROL_TIMEOUT;
use crate::cli::Exit;
use crate::config::{Config, Credential};
use crate::control::{Request, Response};
use crate::credential::{Engine, SeedError, Trigger};
use crate::state::StateDir;
use crate::token;

/// What the command line says about the login.
pub struct Flags {
    pub device: bool,
    pub open_browser: bool,
    pub port: Option<u16>,
    pub timeout: Duration,
}

impl Flags {
    /// The flags as the command line gives them (`--no-browser`).
    pub fn new(device: bool, no_browser: bool, port: Option<u16>, timeout: Duration) -> Flags {
        Flags {
            device,
            open_browser: !no_browser,
            port,
            timeout,
        }
    }
}

pub async fn run(config: Config, name: String, flags: Flags) -> anyhow::Result<Exit> {
    crate::log::init(config.log.level.as_str(), config.log.format);
    crate::audit::open(config.log.audit.as_deref());
    let Some(credential) = super::credential(&config, &name) else {
        return Ok(Exit::Invalid);
    };
    let options = crate::login::Options {
        device: flags.device,
        open_browser: flags.open_browser,
        port: flags.port,
        timeout: flags.timeout,
        request_timeout: credential.timing.timeout,
    };
    let state = StateDir::of(&config.daemon);
    // Before the flow: a login whose result cannot be stored is a login thrown away.
    if let Err(e) = state.ready_to_write([name.as_str()]) {
        eprintln!("refreshd: login {name}: {e}");
        return Ok(Exit::Failed);
    }
    let grant = match login(credential, &options).await {
        Ok(grant) => grant,
        Err(e) => {
            eprintln!("refreshd: login {name}: {e}");
            return Ok(Exit::Failed);
        }
    };
    let (fingerprint, expires_at) = (grant.token.fingerprint(), grant.token.expires_at);
    let fleet = if credential.sharing.is_shared() {
        match super::fleet(&config).await {
            Ok(fleet) => fleet,
            Err(e) => {
                eprintln!("refreshd: login {name}: {e}");
                None
            }
        }
    } else {
        None
    };
    let engine = Engine::once(state.clone()).with_fleet(fleet);
    match engine.seed(credential, grant).await {
        Ok(Some(generation)) => println!(
            "stored in the fleet store as generation {generation}: every node takes it over"
        ),
        Ok(None) => {}
        Err(SeedError::Store(e)) => anyhow::bail!(
            "login {name}: the new refresh token is kept in {} but could not be stored in the fleet store: {e}; run `refreshd login {name}` again when the store answers",
            state.file(&name).display()
        ),
        Err(e) => anyhow::bail!("login {name}: {e}"),
    }
    println!(
        "logged in: credential={name} fingerprint={fingerprint} expires_at={}",
        token::rfc3339(expires_at)
    );
    // A running daemon takes the stored token over at once (it may be waiting in
    // needs-login); without one, write the targets here.
    let request = Request::Rotate {
        names: vec![name.clone()],
        if_due: true,
    };
    let wait = CONTROL_TIMEOUT + credential.timing.timeout;
    let refused = match super::ask_daemon(&config, &request, wait).await {
        Ok(Some(Response::Rotated(results))) => {
            let message: Vec<String> = results.into_iter().map(|o| o.message).collect();
            println!("the running daemon picked it up: {}", message.join("; "));
            return Ok(Exit::Ok);
        }
        Ok(Some(Response::Error(message))) => message,
        Ok(Some(_)) => "the daemon answered something else than rotation results".to_owned(),
        Ok(None) => {
            let result = engine.rotate(credential, Trigger::IfDue).await;
            return Ok(Exit::from_ok(result.is_ok()));
        }
        Err(e) => e.to_string(),
    };
    eprintln!(
        "refreshd: the running daemon did not take the login over ({refused}); it will at its next attempt"
    );
    Ok(Exit::Ok)
}

/// The login, through the credential's own proxy, CAs and TLS client certificate.
async fn login(
    credential: &Credential,
    options: &crate::login::Options,
) -> Result<crate::credential::Grant, crate::login::LoginError> {
    let tls = credential
        .source
        .oauth_refresh()
        .and_then(|s| s.tls_client.as_ref());
    let http = crate::source::HttpClients::new().client(&credential.network, tls)?;
    crate::login::login(credential, &http, options).await
}
