//! How the commands that hand a token to another program (`token`, `kubectl-credential`,
//! `git-credential`, the docker helper) and `status` reach it: the daemon at `--socket`
//! (`$REFRESHD_SOCKET`); else at the config's `daemon.control_socket`; else, when the
//! config cannot be read (a reader usually may not read `/etc/refreshd/config.toml`), at
//! this user's default socket and then the system daemon's `/run/refreshd/control.sock`.
//! Without a daemon, the state directory answers, as it always did for refreshd's own user.
//!
//! Must never: treat a config this user may not read as an error (one it can read but is
//! invalid still is), or read the state directory without a config that names it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use crate::config::{Config, ConfigError};
use crate::control::protocol::{HelperEntry, TokenAnswer};
use crate::control::{ControlError, Request, Response};
use crate::state::StateDir;

/// How long a token request may take: the daemon waits up to 10 s for a rotation in
/// flight before it answers.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the system daemon's socket is, whoever asks.
const SYSTEM_SOCKET: &str = "/run/refreshd/control.sock";

/// The daemon's sockets to try, and the config when this user could read it.
pub struct Reach {
    config: Option<Config>,
    sockets: Vec<PathBuf>,
    /// Why the config was not read, for the message when no daemon answers.
    unread: Option<String>,
}

/// Whether `e` says only that this user cannot read the config (no such file, or no
/// permission): not an error for a reader, who finds the daemon without it.
pub fn unreadable(e: &ConfigError) -> bool {
    let ConfigError::Read { source, .. } = e else {
        return false;
    };
    // A refusal of a config others could write is PermissionDenied too, but carries no
    // errno: that one stays an error.
    let errno = source.raw_os_error().map(Errno::from_raw);
    source.kind() == io::ErrorKind::NotFound
        || matches!(errno, Some(Errno::EACCES | Errno::ENOTDIR))
}

impl Reach {
    /// Loads the config at `path` if this user can read it. `Err` when it can be read but
    /// is invalid.
    pub fn new(path: &Path, socket: Option<PathBuf>) -> Result<Reach, ConfigError> {
        let (config, unread) = match Config::load(path) {
            Ok(config) => (Some(config), None),
            Err(e) if unreadable(&e) => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let sockets = match (socket, &config) {
            (Some(socket), _) => vec![socket],
            (None, Some(config)) => vec![config.daemon.control_socket.clone()],
            (None, None) => {
                let own = crate::config::default_control_socket();
                let system = PathBuf::from(SYSTEM_SOCKET);
                if own == system {
                    vec![own]
                } else {
                    vec![own, system]
                }
            }
        };
        Ok(Reach {
            config,
            sockets,
            unread,
        })
    }

    /// The config, when this user could read it.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// The first answer of a daemon at the sockets, in order. `Ok(None)`: no daemon listens
    /// at any of them; `Err`: none answered, and one of them failed (the first failure).
    pub async fn ask(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Option<Response>, ControlError> {
        let mut failed = None;
        for socket in &self.sockets {
            let state_dir = self.config.as_ref().map(|c| c.daemon.state_dir.as_path());
            match crate::control::client::request(socket, request, timeout, state_dir).await {
                Ok(Some(response)) => return Ok(Some(response)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(None), Err)
    }

    /// Why nothing answered: the sockets tried, and the config when it could not be read.
    pub fn nobody_answered(&self) -> String {
        let tried: Vec<String> = self
            .sockets
            .iter()
            .map(|s| s.display().to_string())
            .collect();
        let mut message = format!("no refreshd daemon answered at {}", tried.join(" or "));
        if let Some(why) = &self.unread {
            message.push_str(&format!(
                " (and {why}); name the daemon's socket with --socket or $REFRESHD_SOCKET"
            ));
        }
        message
    }

    /// `name`'s current token: from the daemon (which checks that this user may read it),
    /// else, with a config this user can read, from its state directory.
    pub async fn token(&self, name: &str) -> Result<TokenAnswer, String> {
        self.token_with(name, false).await
    }

    /// [`token`](Self::token), with the token's fields when `fields`.
    pub async fn token_with(&self, name: &str, fields: bool) -> Result<TokenAnswer, String> {
        let request = Request::Token {
            name: name.to_owned(),
            fields,
        };
        let failure = match self.ask(&request, TOKEN_TIMEOUT).await {
            Ok(Some(Response::Token(answer))) => return Ok(answer),
            Ok(Some(Response::Error(message))) => return Err(message),
            Ok(Some(_)) => return Err("the daemon answered something else than a token".into()),
            Ok(None) => self.nobody_answered(),
            Err(e) => e.to_string(),
        };
        // The daemon answers from the same state files; without one, the state directory does.
        let Some(config) = &self.config else {
            return Err(failure);
        };
        if config.credential(name).is_none() {
            return Err(format!(
                "no credential named {name:?} in {}",
                config.path.display()
            ));
        }
        let token = StateDir::of(&config.daemon)
            .current(name, crate::clock::system_now())
            .map_err(|e| e.to_string())?;
        Ok(TokenAnswer {
            token: token.access_token,
            token_type: "Bearer".to_owned(),
            expires_at: token.expires_at,
            fields: fields.then_some(token.fields),
        })
    }

    /// The credentials this user may read that declare `git` or `docker`: the daemon's
    /// list, else, with a config this user can read, the config's.
    pub async fn helpers(&self) -> Result<Vec<HelperEntry>, String> {
        let failure = match self.ask(&Request::Helpers, super::CONTROL_TIMEOUT).await {
            Ok(Some(Response::Helpers(helpers))) => return Ok(helpers),
            Ok(Some(Response::Error(message))) => return Err(message),
            Ok(Some(_)) => {
                return Err("the daemon answered something else than the helpers' list".into());
            }
            Ok(None) => self.nobody_answered(),
            Err(e) => e.to_string(),
        };
        match &self.config {
            Some(config) => Ok(config
                .credentials
                .iter()
                .filter_map(|c| HelperEntry::of(c))
                .collect()),
            None => Err(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_error(source: io::Error) -> ConfigError {
        ConfigError::Read {
            path: PathBuf::from("/etc/refreshd/config.toml"),
            source,
        }
    }

    #[test]
    fn only_a_config_this_user_cannot_read_is_skipped() {
        assert!(unreadable(&read_error(io::Error::from_raw_os_error(
            Errno::EACCES as i32
        ))));
        assert!(unreadable(&read_error(io::Error::from_raw_os_error(
            Errno::ENOENT as i32
        ))));
        assert!(unreadable(&read_error(io::Error::new(
            io::ErrorKind::NotFound,
            "no such file"
        ))));
        // Root's refusal of a config others could have written.
        assert!(!unreadable(&read_error(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refused: owned by uid 1000"
        ))));
        assert!(!unreadable(&ConfigError::Invalid {
            path: PathBuf::from("c.toml"),
            line: 1,
            key: "colour".into(),
            message: "unknown key".into(),
        }));
    }
}
