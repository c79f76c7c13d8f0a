//! `[daemon]` and its `store`: raw → typed. Paths are absolute, the metrics address
//! parses, the lease is in range and the node has a name the store accepts; what is
//! left out gets its default location from [`super::paths`].
//!
//! Must never: connect to the store, bind a socket or create a directory; loading a
//! config has no side effects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::locate::Doc;
use super::names::valid_node_name;
use super::raw::{RawDaemon, RawStore};
use super::{ConfigError, paths};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub max_concurrent_refreshes: usize,
    /// The fleet store several hosts share credentials through; `None`: each host alone.
    pub store: Option<StoreConfig>,
    /// Seals every state file; `None`: state files are plain JSON (0600).
    pub state_key: Option<StateKeyConfig>,
}

/// `[daemon] state_key`: 32 random bytes, base64, that seal every state file.
#[derive(Debug, Clone)]
pub struct StateKeyConfig {
    pub key: crate::secret::SecretRef,
    /// Line of `state_key =` in the config, for messages.
    pub line: usize,
}

/// Equal when the same key would be read: moving `state_key =` in the file is no change.
impl PartialEq for StateKeyConfig {
    fn eq(&self, other: &StateKeyConfig) -> bool {
        self.key == other.key
    }
}

impl Eq for StateKeyConfig {}

/// `[daemon] store`: where a fleet of refreshd hosts keeps its shared credentials.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A libpq URL (`postgres://…?sslmode=verify-full`); a secret: it may hold a password.
    pub url: crate::secret::SecretRef,
    /// 32 random bytes, base64: seals every token kept in the store.
    pub key: crate::secret::SecretRef,
    /// How long a node's hold on a credential lasts unless renewed.
    pub lease: Duration,
    /// This host's name in the store (`[daemon] node`, else the host name).
    pub node: String,
    /// Line of `store =` in the config, for messages.
    pub line: usize,
}

/// Equal when the store would be used the same way: moving `store =` in the file is no change.
impl PartialEq for StoreConfig {
    fn eq(&self, other: &StoreConfig) -> bool {
        (&self.url, &self.key, self.lease, &self.node)
            == (&other.url, &other.key, other.lease, &other.node)
    }
}

impl Eq for StoreConfig {}

/// The shortest and longest lease: renewed every third of it, so a shorter one costs
/// queries; a longer one delays a takeover after a host dies.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
pub const MAX_LEASE: Duration = Duration::from_secs(600);

impl Doc<'_> {
    pub(super) fn daemon(&self, raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
        let absolute = |value: Option<Spanned<PathBuf>>,
                        key: &str,
                        default: fn() -> PathBuf|
         -> Result<PathBuf, ConfigError> {
            let Some(value) = value else {
                return Ok(default());
            };
            if !value.get_ref().is_absolute() {
                return Err(self.error(
                    value.span().start,
                    key,
                    format!("{} must be an absolute path", value.get_ref().display()),
                ));
            }
            Ok(value.into_inner())
        };
        let metrics_listen = match raw.metrics_listen {
            None => None,
            Some(spanned) => Some(spanned.get_ref().parse().map_err(|_| {
                self.error(
                    spanned.span().start,
                    "daemon.metrics_listen",
                    format!(
                        "{:?} is not an address:port such as \"127.0.0.1:9813\"",
                        spanned.get_ref()
                    ),
                )
            })?),
        };
        let max_concurrent_refreshes = match raw.max_concurrent_refreshes {
            None => 16,
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.error(
                    n.span().start,
                    "daemon.max_concurrent_refreshes",
                    "must be at least 1",
                ));
            }
            Some(n) => n.into_inner(),
        };
        let store = self.store(raw.store, raw.node)?;
        let state_key = raw.state_key.map(|key| StateKeyConfig {
            line: self.line(key.span().start),
            key: key.into_inner(),
        });
        Ok(DaemonConfig {
            store,
            state_key,
            state_dir: absolute(raw.state_dir, "daemon.state_dir", paths::default_state_dir)?,
            control_socket: absolute(
                raw.control_socket,
                "daemon.control_socket",
                paths::default_control_socket,
            )?,
            metrics_listen,
            max_concurrent_refreshes,
        })
    }

    fn store(
        &self,
        raw: Option<Spanned<RawStore>>,
        node: Option<Spanned<String>>,
    ) -> Result<Option<StoreConfig>, ConfigError> {
        // A bad `node` is refused even without a store: it is a typo either way.
        let node = match node {
            Some(node) if !valid_node_name(node.get_ref()) => {
                return Err(self.error(
                    node.span().start,
                    "daemon.node",
                    format!(
                        "{:?} is not a node name: 1 to 63 letters, digits, `_`, `-` and `.`",
                        node.get_ref()
                    ),
                ));
            }
            Some(node) => Some(node.into_inner()),
            None => None,
        };
        let Some(raw) = raw else {
            return Ok(None);
        };
        let start = raw.span().start;
        let RawStore::Postgres(postgres) = raw.into_inner();
        let lease = postgres.lease.unwrap_or(Duration::from_secs(30));
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(self.error(
                start,
                "daemon.store.lease",
                format!(
                    "{} is out of range: a lease lasts from {} to {}",
                    humantime::format_duration(lease),
                    humantime::format_duration(MIN_LEASE),
                    humantime::format_duration(MAX_LEASE)
                ),
            ));
        }
        let node = match node {
            Some(node) => node,
            None => host_node_name().ok_or_else(|| {
                self.error(
                    start,
                    "daemon.node",
                    "the host name is not a usable node name: set daemon.node",
                )
            })?,
        };
        Ok(Some(StoreConfig {
            url: postgres.url,
            key: postgres.key,
            lease,
            node,
            line: self.line(start),
        }))
    }
}

/// The host name's first label, when it is a usable node name: hosts of one fleet
/// usually differ there, and a full name may exceed what the store accepts.
fn host_node_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .and_then(|name| name.split('.').next().map(str::to_owned))
        .filter(|name| valid_node_name(name))
}
