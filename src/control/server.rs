//! The daemon's side of the control socket: binds it safely and answers each connection
//! (accepted by [`crate::serve`]) from the read model, the supervisor (for `rotate`) and
//! [`crate::access`] (for `token`, `watch` and the helpers' list). The caller's uid comes
//! from `SO_PEERCRED` on every connection: refreshd's own user and root may ask anything, a
//! credential's readers only its token and status; it never logs a token.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::ControlError;
use super::protocol::{HelperEntry, Request, Response, RotateOutcome, TokenAnswer};
use crate::access::{Caller, Reads, Via};
use crate::observe::{Observed, RotationReply, Snapshot};
use crate::serve::{HEAD, Handler, Limits, Place, Timed};

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
    queue: false,
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
    pub reads: Reads,
}

/// How long a `token` read past the refresh point waits for the rotation in flight.
const TOKEN_WAIT: Duration = Duration::from_secs(10);

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

/// Lets other users connect to the socket at `path` (socket 0666, and its directory
/// searchable: they can reach the socket but neither list nor change the directory) when a
/// credential has `readers`; only refreshd's own user otherwise (socket 0600; the
/// directory as the operator made it). Each request is still checked against the caller's
/// uid. A directory that is not refreshd's own is left alone (`bind` refused an unsafe one).
pub fn permit(path: &Path, readers: bool) {
    let own = nix::unistd::geteuid().as_raw();
    if readers
        && let Some(parent) = path.parent()
        && let Ok(meta) = std::fs::symlink_metadata(parent)
        && meta.is_dir()
        && meta.uid() == own
        && meta.mode() & 0o011 != 0o011
    {
        let mode = (meta.mode() & 0o7777) | 0o011;
        if let Err(e) = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(dir = %parent.display(), "control socket: cannot let readers reach the socket: {e}");
        }
    }
    let socket = if readers { 0o666 } else { 0o600 };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket)) {
        tracing::warn!(socket = %path.display(), "control socket: cannot set its mode: {e}");
    }
}

impl Server {
    /// Serves connections until the task is dropped.
    pub async fn serve(self, listener: UnixListener) {
        crate::serve::serve("control socket", listener, LIMITS, self).await;
    }

    async fn answer(&self, mut stream: Timed<UnixStream>, caller: Caller) -> io::Result<()> {
        let mut line = String::new();
        BufReader::new((&mut stream).take(MAX_REQUEST))
            .read_line(&mut line)
            .await?;
        let mut stream = stream.into_inner();
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Watch { names, seen }) => {
                match self.watch(&names, &seen, caller, &mut stream).await {
                    Some(response) => response,
                    // The client went away: nobody to answer.
                    None => return Ok(()),
                }
            }
            Ok(request) => self.handle(request, caller).await,
            Err(e) => Response::Error(format!("not a valid request: {e}")),
        };
        let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
        text.push('\n');
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    }

    async fn handle(&self, request: Request, caller: Caller) -> Response {
        let owner = Reads::is_owner(caller);
        match request {
            Request::Status => {
                let snapshot = self.observed.status(self.observed.now());
                if owner {
                    return Response::Status(Box::new(snapshot));
                }
                // A reader sees its credentials and the daemon's own line; not the others,
                // nor the store's nodes and leases.
                let names = snapshot.credentials().map(|c| c.name.as_str());
                let readable = self.reads.readable(names, caller);
                let mut shown = Snapshot::new(&snapshot.from);
                shown.daemon.clone_from(&snapshot.daemon);
                for name in &readable {
                    if let Some(status) = snapshot.get(name) {
                        shown.set(status.clone());
                    }
                }
                Response::Status(Box::new(shown))
            }
            Request::Rotate { .. } if !owner => {
                crate::audit::record(&crate::audit::Event::Refused {
                    credential: None,
                    uid: caller.uid,
                    pid: caller.pid,
                    via: Via::Socket.as_str(),
                    what: "rotate",
                });
                tracing::warn!(
                    uid = caller.uid,
                    pid = ?caller.pid,
                    "control socket: refused `rotate` from a reader (only refreshd's own user and root may rotate)"
                );
                Response::Error("only refreshd's own user and root may rotate".into())
            }
            Request::Rotate { names, if_due } => self.rotate(names, if_due).await,
            Request::Token { name, fields } => {
                match self
                    .reads
                    .token(&name, caller, Via::Socket, TOKEN_WAIT)
                    .await
                {
                    Ok(issued) => {
                        let minted = issued.fields.clone();
                        let mut answer = TokenAnswer::from(issued);
                        answer.fields = fields.then_some(minted);
                        Response::Token(answer)
                    }
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::Helpers => Response::Helpers(self.helpers(caller)),
            Request::Watch { .. } => Response::Error("`watch` is answered on its own".into()),
        }
    }

    async fn rotate(&self, names: Vec<String>, if_due: bool) -> Response {
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

    /// The credentials `caller` may read that a credential helper could answer for.
    fn helpers(&self, caller: Caller) -> Vec<HelperEntry> {
        let snapshot = self.observed.snapshot();
        let names: Vec<&str> = snapshot.credentials().map(|c| c.name.as_str()).collect();
        self.reads
            .readable(names.into_iter(), caller)
            .into_iter()
            .filter_map(|name| HelperEntry::of(&*self.reads.credential(&name)?))
            .collect()
    }

    /// Waits until one of `names` holds a token other than `seen` says, or the client
    /// hangs up (`None`). Readers apply to every name.
    async fn watch(
        &self,
        names: &[String],
        seen: &BTreeMap<String, String>,
        caller: Caller,
        stream: &mut UnixStream,
    ) -> Option<Response> {
        if names.is_empty() {
            return Some(Response::Error("`watch` needs at least one name".into()));
        }
        for name in names {
            if !self.observed.has(name) || !self.reads.may_read(name, caller) {
                let refused = self.reads.refuse(name, caller, Via::Socket);
                return Some(Response::Error(refused.to_string()));
            }
        }
        let mut observed = self.observed.clone();
        let mut probe = [0u8; 1];
        loop {
            let snapshot = observed.snapshot();
            let current: BTreeMap<String, String> = names
                .iter()
                .map(|name| {
                    let fingerprint = snapshot
                        .get(name)
                        .and_then(|status| status.fingerprint.clone())
                        .unwrap_or_default();
                    (name.clone(), fingerprint)
                })
                .collect();
            if current.iter().any(|(name, fp)| seen.get(name) != Some(fp)) {
                return Some(Response::Changed(current));
            }
            tokio::select! {
                alive = observed.changed() => if !alive {
                    return Some(Response::Error("the daemon is stopping".into()));
                },
                // A watcher only listens; anything it sends, or its hanging up, ends it.
                _ = stream.read(&mut probe) => return None,
            }
        }
    }
}

impl Handler<UnixStream> for Server {
    /// Anyone who can connect is served: the socket's mode says who can (readers need
    /// to), and each request is checked against the caller's uid from `SO_PEERCRED`.
    fn admit(&self, stream: &UnixStream) -> bool {
        let peer = stream.peer_cred();
        let admitted = peer.as_ref().is_ok_and(|c| {
            let caller = Caller {
                uid: c.uid(),
                pid: c.pid(),
            };
            Reads::is_owner(caller) || self.reads.any_readers()
        });
        if !admitted {
            tracing::warn!(peer_uid = ?peer.ok().map(|c| c.uid()), "control socket: refused a connection from another user");
        }
        admitted
    }

    async fn serve(self, stream: Timed<UnixStream>, _: Place) {
        let Ok(cred) = stream.get_ref().peer_cred() else {
            return;
        };
        let caller = Caller {
            uid: cred.uid(),
            pid: cred.pid(),
        };
        if let Err(e) = self.answer(stream, caller).await {
            tracing::debug!("control socket: {e}");
        }
    }
}
