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
/// daemon's `/run/refreshd`, asked by one of its readers.
fn trusted(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
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
pub async fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Option<Response>, ControlError> {
    exchange(path, request, Some(timeout)).await
}

/// Sends a `watch` request and waits, however long it takes, for its answer: a daemon that
/// stops or goes away ends the wait with an error (or `Ok(None)` when none listens at all).
pub async fn watch(path: &Path, request: &Request) -> Result<Option<Response>, ControlError> {
    exchange(path, request, None).await
}

async fn exchange(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
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
    if !trusted(path, server) {
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
