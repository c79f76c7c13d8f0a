//! The control socket: a Unix socket (0600, in a 0700 directory) serving one JSON request
//! per connection — `status`, `rotate` and `token` — and the client the CLI uses.
//!
//! Only the daemon's own user (or root) is answered: the peer's uid is checked on every
//! connection, because `token` hands out a secret. Nothing here logs a token.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::daemon::worker::Outcome;
use crate::state::StateDir;
use crate::status::Snapshot;

/// A request is one line of JSON; nothing legitimate comes near this.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Status,
    /// Refresh the named credentials (all when `names` is empty) and wait for the results.
    Rotate {
        names: Vec<String>,
        /// Only if due: pick up what another process (e.g. `refreshd login`) stored, and
        /// refresh only if that is not good enough.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        if_due: bool,
    },
    Token {
        name: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Snapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<Outcome>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Response {
    fn success() -> Response {
        Response {
            ok: true,
            error: None,
            status: None,
            results: None,
            token: None,
        }
    }

    fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::success()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "control socket {0} is in use by another running refreshd (a different state directory?)"
    )]
    InUse(PathBuf),
    #[error("control socket {path}: the daemon's answer is not valid: {reason}")]
    BadResponse { path: PathBuf, reason: String },
    #[error("control socket {path}: no answer within {}s", timeout.as_secs())]
    Timeout { path: PathBuf, timeout: Duration },
}

/// A `rotate` request handed to the supervisor.
pub struct RotateRequest {
    pub names: Vec<String>,
    pub if_due: bool,
    pub reply: oneshot::Sender<Result<Vec<Outcome>, String>>,
}

/// What the server needs from the daemon.
#[derive(Clone)]
pub struct Server {
    pub snapshot: watch::Receiver<Snapshot>,
    pub rotate: mpsc::Sender<RotateRequest>,
    pub state: StateDir,
}

/// Binds `path`: creates its directory 0700 if missing, replaces a stale socket (none
/// answers on it), refuses one that another daemon serves, and makes the socket 0600.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

impl Server {
    /// Serves connections until the listener fails or the task is dropped.
    pub async fn serve(self, listener: UnixListener) {
        let own_uid = nix::unistd::geteuid().as_raw();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = stream.peer_cred().map(|c| c.uid());
            if !matches!(peer, Ok(uid) if uid == own_uid || uid == 0) {
                tracing::warn!(peer_uid = ?peer.ok(), "control socket: refused a connection from another user");
                continue;
            }
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.answer(stream).await {
                    tracing::debug!("control socket: {e}");
                }
            });
        }
    }

    async fn answer(&self, stream: UnixStream) -> io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read.take(MAX_REQUEST))
            .read_line(&mut line)
            .await?;
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => self.handle(request).await,
            Err(e) => Response::error(format!("not a valid request: {e}")),
        };
        let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
        write.shutdown().await
    }

    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => Response {
                status: Some(self.snapshot.borrow().clone()),
                ..Response::success()
            },
            Request::Rotate { names, if_due } => {
                let (reply, result) = oneshot::channel();
                if self
                    .rotate
                    .send(RotateRequest {
                        names,
                        if_due,
                        reply,
                    })
                    .await
                    .is_err()
                {
                    return Response::error("the daemon is stopping");
                }
                match result.await {
                    Ok(Ok(results)) => Response {
                        results: Some(results),
                        ..Response::success()
                    },
                    Ok(Err(message)) => Response::error(message),
                    Err(_) => Response::error("the daemon is stopping"),
                }
            }
            Request::Token { name } => {
                if !self.snapshot.borrow().credentials.contains_key(&name) {
                    return Response::error(format!("no credential named {name:?}"));
                }
                let state = match self.state.load(&name) {
                    Ok(state) => state,
                    Err(e) => return Response::error(e.to_string()),
                };
                match state.token {
                    Some(token) if token.is_valid_at(OffsetDateTime::now_utc()) => Response {
                        token: Some(token.access_token.expose_secret().to_owned()),
                        ..Response::success()
                    },
                    Some(token) => Response::error(format!(
                        "the token of {name} expired at {}",
                        crate::token::rfc3339(token.expires_at)
                    )),
                    None => Response::error(format!("no token for {name} yet")),
                }
            }
        }
    }
}

/// Sends one request to the daemon at `path`. `Ok(None)` means no daemon is listening
/// there (no socket, or a stale one), so the caller may fall back to the state directory.
pub async fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Option<Response>, ControlError> {
    let err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(err(e)),
    };
    let exchange = async {
        let mut text = serde_json::to_string(request).map_err(io::Error::other)?;
        text.push('\n');
        stream.write_all(text.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).await?;
        Ok::<_, io::Error>(line)
    };
    let line = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(err(e)),
        Err(_) => {
            return Err(ControlError::Timeout {
                path: path.to_owned(),
                timeout,
            });
        }
    };
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| ControlError::BadResponse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}
