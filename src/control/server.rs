//! The daemon's side of the control socket: binds it safely and answers each connection
//! (accepted by [`crate::serve`]) from the read model, the supervisor (for `rotate`) and
//! the state directory (for `token`). The peer's uid is checked on every connection; it
//! never answers another user, and never logs a token.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::ControlError;
use super::protocol::{Request, Response, RotateOutcome};
use crate::observe::{Observed, RotationReply};
use crate::serve::{HEAD, Handler, Limits, Place, Timed};
use crate::state::StateDir;

/// A request is one line of JSON; nothing legitimate comes near this.
const MAX_REQUEST: u64 = 64 * 1024;

/// At most 64 connections answered at once (they must not take all descriptors); a client
/// has [`HEAD`] to send its request line, and its answer may take as long as the rotations
/// it asked for. No reserve: only this user and root are admitted, and there are no probes.
const LIMITS: Limits = Limits {
    connections: 64,
    head: HEAD,
    connection: None,
    reserve: None,
};

/// A `rotate` request handed to the supervisor.
pub struct RotateRequest {
    pub names: Vec<String>,
    pub if_due: bool,
    pub reply: oneshot::Sender<Result<Vec<RotationReply>, String>>,
}

/// What the server needs from the daemon.
#[derive(Clone)]
pub struct Server {
    pub observed: Observed,
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
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    // Whoever can write the socket's directory can replace the socket and answer for
    // refreshd (`token` included): only refreshd's own directory will do.
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    let own = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != own || meta.mode() & 0o022 != 0 {
        return Err(ControlError::UnsafeDir {
            dir: dir.to_owned(),
            why: format!(
                "it is {}owned by uid {} with mode {:04o}; the socket's directory must be refreshd's own and writable by nobody else: use a directory of its own (`mkdir -m 0700`), or the default",
                if meta.file_type().is_symlink() {
                    "a symlink, "
                } else {
                    ""
                },
                meta.uid(),
                meta.mode() & 0o7777
            ),
        });
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
    /// Serves connections until the task is dropped.
    pub async fn serve(self, listener: UnixListener) {
        crate::serve::serve("control socket", listener, LIMITS, self).await;
    }

    async fn answer(&self, stream: Timed<UnixStream>) -> io::Result<()> {
        let (read, mut write) = tokio::io::split(stream);
        let mut line = String::new();
        BufReader::new(read.take(MAX_REQUEST))
            .read_line(&mut line)
            .await?;
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => self.handle(request).await,
            Err(e) => Response::Error(format!("not a valid request: {e}")),
        };
        let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
        write.shutdown().await
    }

    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => {
                Response::Status(Box::new(self.observed.status(self.observed.now())))
            }
            Request::Rotate { names, if_due } => {
                let (reply, result) = oneshot::channel();
                let request = RotateRequest {
                    names,
                    if_due,
                    reply,
                };
                if self.rotate.send(request).await.is_err() {
                    return Response::Error("the daemon is stopping".into());
                }
                match result.await {
                    Ok(Ok(replies)) => {
                        Response::Rotated(replies.into_iter().map(RotateOutcome::from).collect())
                    }
                    Ok(Err(message)) => Response::Error(message),
                    Err(_) => Response::Error("the daemon is stopping".into()),
                }
            }
            Request::Token { name } => {
                if !self.observed.has(&name) {
                    return Response::Error(format!("no credential named {name:?}"));
                }
                match self.state.current_token(&name, self.observed.now()) {
                    Ok(token) => Response::Token(token),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        }
    }
}

impl Handler<UnixStream> for Server {
    /// Only the daemon's own user and root are answered: `token` hands out a secret.
    fn admit(&self, stream: &UnixStream) -> bool {
        let peer = stream.peer_cred().map(|c| c.uid());
        let own_uid = nix::unistd::geteuid().as_raw();
        let admitted = matches!(peer, Ok(uid) if uid == own_uid || uid == 0);
        if !admitted {
            tracing::warn!(peer_uid = ?peer.ok(), "control socket: refused a connection from another user");
        }
        admitted
    }

    async fn serve(self, stream: Timed<UnixStream>, _: Place) {
        if let Err(e) = self.answer(stream).await {
            tracing::debug!("control socket: {e}");
        }
    }
}
