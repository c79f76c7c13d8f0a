//! Where `refreshd exec` gets its tokens, and how it learns of new ones: one task that
//! hands the first tokens over, then every set that differs from the last one.
//!
//! - **A running daemon** (its control socket answers): `token` for each credential, then one
//!   long-lived `watch` naming them with the fingerprints last seen; when it answers, the
//!   tokens are asked for again. The daemon checks `readers`, as for any other reader. If the
//!   daemon goes away, the program keeps the tokens it has while this retries with backoff
//!   (up to 30 s): the daemon owns the credentials, and a reader may not even be able to open
//!   the state directory; a restarted daemon is followed again from where it left off.
//! - **No daemon**: the daemon's own credential tasks, run in this process
//!   ([`crate::daemon::Embedded`]), through the same state directory and per-credential
//!   locks, so a `run` started later takes turns with it. Their tokens arrive as a
//!   follower's (the channel a bearer's follower reads).
//!
//! The mode is chosen once, at start. Must never: log a token (fingerprints only), or keep
//! following after [`Follower::stop`] (the in-process tasks finish their rotations first).

use std::collections::BTreeMap;
use std::future::Future as _;
use std::path::PathBuf;
use std::task::Poll;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::{ControlError, Request, Response, client};
use crate::daemon::{Embedded, EmbeddedError, TokenWatch};

/// How long one `token` request may take: the daemon waits up to 10 s for a rotation in
/// flight before it answers one asked past the refresh point.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between two attempts to reach a daemon that went away.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A credential's token as handed to the program, with its fingerprint for the log.
#[derive(Clone)]
pub struct Held {
    pub token: SecretString,
    pub fingerprint: String,
}

impl Held {
    pub fn new(token: SecretString) -> Held {
        Held {
            fingerprint: crate::token::fingerprint(&token),
            token,
        }
    }
}

/// The current token of each followed credential, by name.
pub type Tokens = BTreeMap<String, Held>;

/// The fingerprints of `tokens`, by name.
pub fn fingerprints(tokens: &Tokens) -> BTreeMap<String, String> {
    tokens
        .iter()
        .map(|(name, held)| (name.clone(), held.fingerprint.clone()))
        .collect()
}

/// Where the tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    InProcess,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Daemon => "daemon",
            Mode::InProcess => "in-process",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the daemon refused: {0}")]
    Daemon(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("{name} has no valid token ({why}); its refresh failed, see above")]
    NoToken { name: String, why: String },
    #[error("stopped before the first tokens")]
    Stopped,
}

/// The task that follows the tokens.
pub struct Follower {
    first: Option<oneshot::Receiver<Result<(Mode, Tokens), FollowError>>>,
    updates: watch::Receiver<Tokens>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Follower {
    /// Starts following `names` of `config`.
    pub fn start(config: Config, names: Vec<String>) -> Follower {
        let (first_tx, first) = oneshot::channel();
        let (updates_tx, updates) = watch::channel(Tokens::new());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(follow(config, names, first_tx, updates_tx, stopped));
        Follower {
            first: Some(first),
            updates,
            stop: Some(stop),
            task,
        }
    }

    /// The tokens to start the program with, and where they came from.
    pub async fn first(&mut self) -> Result<(Mode, Tokens), FollowError> {
        let Some(first) = self.first.take() else {
            return Err(FollowError::Stopped);
        };
        first.await.unwrap_or(Err(FollowError::Stopped))
    }

    /// Resolves with the next set of tokens that differs from the last one (cancel-safe).
    pub async fn changed(&mut self) -> Tokens {
        if self.updates.changed().await.is_err() {
            // The task ended (it only does when stopped): nothing more will come.
            std::future::pending::<()>().await;
        }
        self.updates.borrow_and_update().clone()
    }

    /// Stops following; in-process credential tasks finish the rotations in progress first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

async fn follow(
    config: Config,
    names: Vec<String>,
    first: oneshot::Sender<Result<(Mode, Tokens), FollowError>>,
    updates: watch::Sender<Tokens>,
    mut stopped: oneshot::Receiver<()>,
) {
    let daemon = Daemon {
        socket: config.daemon.control_socket.clone(),
        state_dir: config.daemon.state_dir.clone(),
    };
    let asked = tokio::select! {
        asked = from_daemon(&daemon, &names) => asked,
        _ = &mut stopped => return,
    };
    match asked {
        Err(e) => {
            let _ = first.send(Err(e));
        }
        Ok(Some(tokens)) => {
            let _ = first.send(Ok((Mode::Daemon, tokens.clone())));
            tokio::select! {
                _ = follow_daemon(&daemon, &names, &tokens, &updates) => {}
                _ = &mut stopped => {}
            }
        }
        Ok(None) => in_process(&config, &names, first, &updates, stopped).await,
    }
}

/// Where the daemon listens, and its state directory (whose owner it must run as).
struct Daemon {
    socket: PathBuf,
    state_dir: PathBuf,
}

/// The tokens of `names` from the daemon; `None` when no daemon listens.
async fn from_daemon(daemon: &Daemon, names: &[String]) -> Result<Option<Tokens>, FollowError> {
    let (socket, state_dir) = (&daemon.socket, Some(daemon.state_dir.as_path()));
    let mut tokens = Tokens::new();
    for name in names {
        let request = Request::Token {
            name: name.clone(),
            fields: false,
        };
        match client::request(socket, &request, TOKEN_TIMEOUT, state_dir).await? {
            None => return Ok(None),
            Some(Response::Token(answer)) => {
                tokens.insert(name.clone(), Held::new(answer.token));
            }
            Some(Response::Error(message)) => return Err(FollowError::Daemon(message)),
            Some(_) => {
                return Err(FollowError::Daemon(
                    "it answered something else than a token".to_owned(),
                ));
            }
        }
    }
    Ok(Some(tokens))
}

/// Follows the daemon's rotations of `names` with `watch`, publishing each new set of
/// tokens; never ends (a daemon that goes away is waited for).
async fn follow_daemon(
    daemon: &Daemon,
    names: &[String],
    tokens: &Tokens,
    updates: &watch::Sender<Tokens>,
) {
    let mut seen = fingerprints(tokens);
    let mut held = seen.clone();
    let mut backoff = Duration::from_secs(1);
    let mut lost = false;
    loop {
        let request = Request::Watch {
            names: names.to_vec(),
            seen: seen.clone(),
        };
        let state_dir = Some(daemon.state_dir.as_path());
        let failure = match client::watch(&daemon.socket, &request, state_dir).await {
            Ok(Some(Response::Changed(now))) => {
                seen = now;
                match from_daemon(daemon, names).await {
                    Ok(Some(tokens)) => {
                        if lost {
                            tracing::info!("the daemon answers again: following its rotations");
                        }
                        (lost, backoff) = (false, Duration::from_secs(1));
                        let now = fingerprints(&tokens);
                        if now != held {
                            held = now;
                            updates.send_replace(tokens);
                        }
                        continue;
                    }
                    Ok(None) => "no daemon listens on the control socket".to_owned(),
                    Err(e) => e.to_string(),
                }
            }
            Ok(Some(Response::Error(message))) => message,
            Ok(Some(_)) => "the daemon answered something else than a watch".to_owned(),
            Ok(None) => "no daemon listens on the control socket".to_owned(),
            Err(e) => e.to_string(),
        };
        if !lost {
            tracing::warn!(
                "lost the daemon ({failure}): the program keeps its tokens; trying again with backoff (up to {}s)",
                BACKOFF_MAX.as_secs()
            );
            lost = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The credential tasks in this process: their first attempts, then their new tokens, until
/// stopped; then they finish what they are doing.
async fn in_process(
    config: &Config,
    names: &[String],
    first: oneshot::Sender<Result<(Mode, Tokens), FollowError>>,
    updates: &watch::Sender<Tokens>,
    mut stopped: oneshot::Receiver<()>,
) {
    let (mut embedded, mut watches) = match Embedded::start(config, names) {
        Ok(started) => started,
        Err(e) => {
            let _ = first.send(Err(e.into()));
            return;
        }
    };
    tracing::info!(
        credentials = %names.join(","),
        "no daemon answers on the control socket: refreshing here, through the state directory and its locks"
    );
    let settled = tokio::select! {
        _ = embedded.settled() => true,
        _ = &mut stopped => false,
    };
    if settled {
        let now = crate::clock::system_now();
        match current(&mut watches, now) {
            Ok(tokens) => {
                let _ = first.send(Ok((Mode::InProcess, tokens.clone())));
                tokio::select! {
                    _ = follow_tasks(&mut watches, tokens, updates) => {}
                    _ = &mut stopped => {}
                }
            }
            Err(e) => {
                let _ = first.send(Err(e));
            }
        }
    }
    embedded.stop().await;
}

/// The valid token each task holds now.
fn current(
    watches: &mut BTreeMap<String, TokenWatch>,
    now: time::OffsetDateTime,
) -> Result<Tokens, FollowError> {
    let mut tokens = Tokens::new();
    for (name, watch) in watches.iter_mut() {
        let held = watch.borrow_and_update();
        let no_token = |why: String| FollowError::NoToken {
            name: name.clone(),
            why,
        };
        match held.as_ref() {
            Some(token) if token.is_valid_at(now) => {
                tokens.insert(name.clone(), Held::new(token.access_token.clone()));
            }
            Some(token) => {
                let expired = crate::token::rfc3339(token.expires_at);
                return Err(no_token(format!("it expired at {expired}")));
            }
            None => return Err(no_token("none yet".to_owned())),
        }
    }
    Ok(tokens)
}

/// Publishes each new token the tasks publish; never ends.
async fn follow_tasks(
    watches: &mut BTreeMap<String, TokenWatch>,
    mut tokens: Tokens,
    updates: &watch::Sender<Tokens>,
) {
    loop {
        if !any_changed(watches).await {
            return std::future::pending().await;
        }
        let now = crate::clock::system_now();
        let mut changed = false;
        for (name, watch) in watches.iter_mut() {
            let published = watch.borrow_and_update();
            let Some(token) = published.as_ref().filter(|t| t.is_valid_at(now)) else {
                continue;
            };
            let held = Held::new(token.access_token.clone());
            if tokens.get(name).map(|h| &h.fingerprint) != Some(&held.fingerprint) {
                tokens.insert(name.clone(), held);
                changed = true;
            }
        }
        if changed {
            updates.send_replace(tokens.clone());
        }
    }
}

/// Resolves when any task publishes a token; `false` once every channel has closed.
async fn any_changed(watches: &mut BTreeMap<String, TokenWatch>) -> bool {
    let mut changes: Vec<_> = watches
        .values_mut()
        .map(|watch| Some(Box::pin(watch.changed())))
        .collect();
    std::future::poll_fn(|cx| {
        for slot in changes.iter_mut() {
            let Some(change) = slot else { continue };
            match change.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(true),
                // Never polled again: a finished future must not be.
                Poll::Ready(Err(_)) => *slot = None,
                Poll::Pending => {}
            }
        }
        if changes.iter().all(Option::is_none) {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    })
    .await
}
