//! The control socket: a Unix socket (0600, in a 0700 directory) serving one JSON request
//! per connection — `status`, `rotate` and `token` ([`protocol`]) — answered by the
//! daemon's [`server`] and asked by the CLI's [`client`].
//!
//! The daemon's own user (or root) may ask anything; a credential's `readers` only its
//! token and status ([`crate::access`]). Nothing here logs a token.

pub mod client;
pub mod protocol;
pub mod server;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use protocol::{Request, Response};

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
    #[error("control socket directory {dir}: {why}")]
    UnsafeDir { dir: PathBuf, why: String },
    #[error(
        "control socket {path} is served by uid {uid}, neither root, this user nor the owner of a directory only root could have given it: not asking it (another user may have put it there)"
    )]
    Impostor { path: PathBuf, uid: u32 },
}
