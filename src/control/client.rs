//! The CLI's side of the control socket: one request, one answer, within a timeout.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::ControlError;
use super::protocol::{Request, Response};

/// Whether a socket served by `uid` at `path` is refreshd's: served by root or this user,
/// or by the user who owns the socket's directory when only root could have made that
/// directory theirs (its parent is root's and writable by nobody else) — a system
/// daemon's `/run/refreshd`. With the config at hand (`state_dir`), that user must also own
/// the state directory: a directory root gave some other user is not the daemon's. A reader
/// without the config has only the directory to go by.
fn trusted(path: &Path, uid: u32, state_dir: Option<&Path>) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    if let Some(state_dir) = state_dir
        && !std::fs::symlink_metadata(state_dir).is_ok_and(|m| m.is_dir() && m.uid() == uid)
    {
        return false;
    }
    let Some(dir) = path.parent() else {
        return false;
    };
    let Some(parent) = dir.parent() else {
        return false;
    };
    let owned_by_uid = std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0);
    let made_by_root = std::fs::symlink_metadata(parent)
        .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0);
    owned_by_uid && made_by_root
}

/// Sends one request to the daemon at `path`. `Ok(None)` means no daemon is listening
/// there (no socket, or a stale one), so the caller may fall back to the state directory.
/// `state_dir`: the config's, when this user could read it (see [`trusted`]).
pub async fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
    state_dir: Option<&Path>,
) -> Result<Option<Response>, ControlError> {
    exchange(path, request, Some(timeout), state_dir).await
}

/// Sends a `watch` request and waits, however long it takes, for its answer: a daemon that
/// stops or goes away ends the wait with an error (or `Ok(None)` when none listens at all).
pub async fn watch(
    path: &Path,
    request: &Request,
    state_dir: Option<&Path>,
) -> Result<Option<Response>, ControlError> {
    exchange(path, request, None, state_dir).await
}

async fn exchange(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
    state_dir: Option<&Path>,
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
    // Only root, this user or the daemon's own user may answer: a socket someone else put
    // there could lie.
    let server = stream.peer_cred().map_err(err)?.uid();
    if !trusted(path, server, state_dir) {
        return Err(ControlError::Impostor {
            path: path.to_owned(),
            uid: server,
        });
    }
    let exchange = async {
        let mut text = serde_json::to_string(request).map_err(io::Error::other)?;
        text.push('\n');
        stream.write_all(text.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).await?;
        Ok::<_, io::Error>(line)
    };
    let answered =
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, exchange).await.map_err(|_| {
                ControlError::Timeout {
                    path: path.to_owned(),
                    timeout,
                }
            })?,
            None => exchange.await,
        };
    let line = answered.map_err(err)?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| ControlError::BadResponse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// Root's view of a system daemon running as its own user in `/run/refreshd`: trusted
    /// through the directory root gave it, unless the config names a state directory that
    /// user does not own (then it is some other user's socket).
    #[test]
    fn a_daemon_users_socket_is_trusted_only_where_root_put_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it gives directories to uid 65534"
        );
        let nobody = nix::unistd::Uid::from_raw(65534);
        let run = tempfile::tempdir().unwrap();
        std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let given = run.path().join("refreshd");
        std::fs::create_dir(&given).unwrap();
        nix::unistd::chown(&given, Some(nobody), None).unwrap();
        let socket = given.join("control.sock");
        assert!(trusted(&socket, 65534, None));
        assert!(!trusted(&socket, 65533, None), "not the directory's owner");
        let state = run.path().join("state");
        std::fs::create_dir(&state).unwrap();
        assert!(
            !trusted(&socket, 65534, Some(&state)),
            "root's state directory"
        );
        nix::unistd::chown(&state, Some(nobody), None).unwrap();
        assert!(trusted(&socket, 65534, Some(&state)));
        // A directory anyone may write (the parent) gives nobody a claim.
        std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!trusted(&socket, 65534, None));
    }
}
