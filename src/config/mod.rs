//! Configuration: reads the TOML file into private serde structs ([`raw`]; unknown keys are
//! errors), then turns each section into types that hold only a usable configuration
//! ([`source`], [`target`], [`reload`]; bearer checks in [`graph`]; default paths in
//! [`paths`]). Every error has one shape, `FILE:LINE: dotted.key: message`, with the line
//! taken from the TOML parser's spans.
//!
//! It never reads a secret's value (see [`crate::secret`]), never creates a directory and
//! never touches a target: loading a config has no side effects.

mod graph;
mod locate;
mod paths;
mod raw;
mod reload;
mod source;
mod target;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use paths::default_config_path;
pub use reload::{ReloadAction, ReloadConfig, SystemdAction, parse_signal};
pub use source::{
    BearerRef, BodyTemplate, ChainSource, ClientAuth, ClientCredentialsSource, CommandFormat,
    CommandSource, DEFAULT_REDIRECT_URI, GoogleAuthorizedUserSource, GoogleServiceAccountSource,
    HttpMethod, HttpSource, JsonFields, OauthRefreshSource, SecretAuth, SourceConfig,
};
pub use target::{TargetConfig, TargetKind, WriteMode};

use locate::{Doc, key_at};
use raw::{RawConfig, RawCredential, RawTiming};

/// Why a configuration was refused: the file, the line, the dotted key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub log: LogConfig,
    /// Sorted by name.
    pub credentials: Vec<Arc<Credential>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub max_concurrent_refreshes: usize,
    /// The fleet store several hosts share credentials through; `None`: each host alone.
    pub store: Option<StoreConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
    pub rotate: LogRotate,
    pub keep: usize,
}

/// A tracing filter (`info`, `warn,refreshd=debug`) that parses: only [`LogLevel::new`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    pub fn new(filter: &str) -> Result<LogLevel, String> {
        tracing_subscriber::EnvFilter::try_new(filter)
            .map(|_| LogLevel(filter.to_owned()))
            .map_err(|e| e.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotate {
    Daily,
    Hourly,
    Never,
}

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

/// Whether a credential is refreshed by this host alone or by the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Local,
    /// Through the store: one holder refreshes; with `local_fallback`, a host refreshes on
    /// its own while the store is unreachable (only safe for sources that spend no refresh
    /// token).
    Shared {
        local_fallback: bool,
    },
}

impl Sharing {
    /// Whether the credential goes through the fleet store.
    pub fn is_shared(self) -> bool {
        matches!(self, Sharing::Shared { .. })
    }
}

/// The longest `timeout` a credential may have: SIGTERM waits for a request in flight
/// (design §4), and the shipped units give the daemon this long plus a margin to stop.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// When and how patiently a credential is refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub refresh_at: Duration,
    pub min_remaining: Duration,
    pub jitter: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    pub default_lifetime: Duration,
}

/// One managed credential: where its token comes from and where it goes.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub source: SourceConfig,
    pub targets: Vec<TargetConfig>,
    pub reload: Vec<ReloadConfig>,
    pub on_failure: Option<Vec<String>>,
    pub timing: Timing,
    pub sharing: Sharing,
    /// Line of `[credentials.NAME]` in the config, for messages.
    pub line: usize,
}

/// Equal when a running credential would behave the same: the line it sits on is ignored,
/// so moving it in the file does not restart it on a reload.
impl PartialEq for Credential {
    fn eq(&self, other: &Credential) -> bool {
        self.name == other.name
            && self.source == other.source
            && self.targets == other.targets
            && self.reload == other.reload
            && self.on_failure == other.on_failure
            && self.timing == other.timing
            && self.sharing == other.sharing
    }
}

/// The control socket a config file names even when the file as a whole is invalid: its
/// `daemon.control_socket` when the file still parses as TOML, else the default. For
/// `status`, so an operator who broke the file can ask the daemon what it still runs.
pub fn control_socket_despite_errors(path: &Path) -> PathBuf {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            let socket = table.get("daemon")?.get("control_socket")?.as_str()?;
            Some(PathBuf::from(socket))
        })
        .filter(|socket| socket.is_absolute())
        .unwrap_or_else(paths::default_control_socket)
}

impl Config {
    /// Reads and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let config = Config::parse(path, &text)?;
        if let Some((key, line)) = config.first_inline_secret() {
            let meta = std::fs::metadata(path).map_err(read_error)?;
            if meta.mode() & 0o077 != 0 {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key,
                    message: format!(
                        "an inline secret is allowed only when the config file is private to its owner (mode is {:04o}): run `chmod 600 {}` or use {{ env = \"…\" }}, {{ file = \"…\" }} or {{ systemd = \"…\" }}",
                        meta.mode() & 0o7777,
                        path.display()
                    ),
                });
            }
        }
        Ok(config)
    }

    /// Validates configuration text; `path` is used only in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let doc = Doc::new(path, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|span| span.start).unwrap_or(0);
            let key = key_at(text, offset).unwrap_or_else(|| "syntax".to_owned());
            doc.error(offset, key, e.message().trim())
        })?;
        doc.config(raw)
    }

    pub fn credential(&self, name: &str) -> Option<&Arc<Credential>> {
        self.credentials.iter().find(|c| c.name == name)
    }

    /// The credentials shared through the fleet store.
    pub fn shared_names(&self) -> Vec<String> {
        self.credentials
            .iter()
            .filter(|c| c.sharing.is_shared())
            .map(|c| c.name.clone())
            .collect()
    }

    /// The credentials in an order where every bearer comes before the credentials that
    /// use its token, otherwise as configured.
    pub fn dependency_order(&self) -> Vec<&Credential> {
        graph::dependency_order(&self.credentials)
    }

    /// The key (and line) of the first secret written inline, if any.
    fn first_inline_secret(&self) -> Option<(String, usize)> {
        if let Some(store) = &self.daemon.store {
            for (key, secret) in [("url", &store.url), ("key", &store.key)] {
                if secret.is_inline() {
                    return Some((format!("daemon.store.{key}"), store.line));
                }
            }
        }
        self.credentials.iter().find_map(|credential| {
            credential
                .source
                .secrets()
                .into_iter()
                .find(|(_, secret)| secret.is_inline())
                .map(|(key, _)| {
                    (
                        format!("credentials.{}.source.{key}", credential.name),
                        credential.line,
                    )
                })
        })
    }
}

impl Doc<'_> {
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let daemon = self.daemon(raw.daemon)?;
        let log = self.log(raw.log)?;
        let defaults = raw.defaults;
        let mut credentials = Vec::with_capacity(raw.credentials.len());
        for (name, spanned) in raw.credentials {
            let start = spanned.span().start;
            credentials.push(Arc::new(self.credential(
                name,
                start,
                spanned.into_inner(),
                &defaults,
                daemon.store.is_some(),
            )?));
        }
        graph::check(self, &credentials)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            daemon,
            log,
            credentials,
        })
    }

    fn daemon(&self, raw: raw::RawDaemon) -> Result<DaemonConfig, ConfigError> {
        let absolute = |value: Option<toml::Spanned<PathBuf>>,
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
        Ok(DaemonConfig {
            store,
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
        raw: Option<toml::Spanned<raw::RawStore>>,
        node: Option<toml::Spanned<String>>,
    ) -> Result<Option<StoreConfig>, ConfigError> {
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
        let raw::RawStore::Postgres(postgres) = raw.into_inner();
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
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .and_then(|name| name.split('.').next().map(str::to_owned))
                .filter(|name| valid_node_name(name))
                .ok_or_else(|| {
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

    fn log(&self, raw: raw::RawLog) -> Result<LogConfig, ConfigError> {
        let level = match raw.level {
            None => LogLevel("info".to_owned()),
            Some(level) => LogLevel::new(level.get_ref()).map_err(|e| {
                self.error(
                    level.span().start,
                    "log.level",
                    format!(
                        "{:?} is not a level or filter such as \"info\" or \"warn,refreshd=debug\": {e}",
                        level.get_ref()
                    ),
                )
            })?,
        };
        Ok(LogConfig {
            level,
            format: raw.format.unwrap_or(LogFormat::Text),
            file: raw.file,
            rotate: raw.rotate.unwrap_or(LogRotate::Daily),
            keep: raw.keep.unwrap_or(14),
        })
    }

    fn credential(
        &self,
        name: String,
        start: usize,
        raw: RawCredential,
        defaults: &RawTiming,
        store: bool,
    ) -> Result<Credential, ConfigError> {
        let key = format!("credentials.{name}");
        if !valid_credential_name(&name) {
            return Err(self.error(
                start,
                &key,
                "a credential name may hold only letters, digits, `_`, `-` and `.`, and may not start with `.` (it names files in the state directory)",
            ));
        }
        let timing = self.timing(start, &key, &raw.own_timing(), defaults)?;
        let source_start = raw.source.span().start;
        let source = source::source(
            self,
            source_start,
            &format!("{key}.source"),
            raw.source.into_inner(),
        )?;
        let mut targets = Vec::with_capacity(raw.targets.len());
        for (i, spanned) in raw.targets.into_iter().enumerate() {
            let at = spanned.span().start;
            let target_key = format!("{key}.targets[{i}]");
            let target = target::target(self, at, &target_key, spanned.into_inner())?;
            if let Some(other) = targets.iter().find(|b: &&TargetConfig| {
                b.path == target.path && b.kind.name() != target.kind.name()
            }) {
                return Err(self.error(
                    start,
                    target_key,
                    format!(
                        "{} is also a {} target of this credential",
                        target.path.display(),
                        other.kind.name()
                    ),
                ));
            }
            targets.push(target);
        }
        let mut reloads = Vec::with_capacity(raw.reload.len());
        for (i, spanned) in raw.reload.into_iter().enumerate() {
            let at = spanned.span().start;
            reloads.push(reload::reload(
                self,
                at,
                &format!("{key}.reload[{i}]"),
                spanned.into_inner(),
            )?);
        }
        let sharing = match (store, raw.shared) {
            (false, _) | (true, Some(false)) => Sharing::Local,
            (true, _) => Sharing::Shared {
                // A source that spends no refresh token may refresh on every host at once.
                local_fallback: raw
                    .local_fallback
                    .unwrap_or(source.oauth_refresh().is_none()),
            },
        };
        if raw.local_fallback == Some(true) && source.oauth_refresh().is_some() {
            return Err(self.error(
                start,
                format!("{key}.local_fallback"),
                "an oauth-refresh source may not refresh without the store: two hosts would spend one refresh token, and a provider that rotates them revokes the grant",
            ));
        }
        let on_failure = raw.on_failure.or_else(|| defaults.on_failure.clone());
        if on_failure.as_ref().is_some_and(|argv| argv.is_empty()) {
            return Err(self.error(
                start,
                format!("{key}.on_failure"),
                "must name a program: [\"/path/to/program\", \"arg\"…]",
            ));
        }
        Ok(Credential {
            name,
            source,
            targets,
            reload: reloads,
            on_failure,
            timing,
            sharing,
            line: self.line(start),
        })
    }

    fn timing(
        &self,
        start: usize,
        key: &str,
        own: &RawTiming,
        defaults: &RawTiming,
    ) -> Result<Timing, ConfigError> {
        let pick = |own: Option<Duration>, inherited: Option<Duration>, fallback: u64| {
            own.or(inherited).unwrap_or(Duration::from_secs(fallback))
        };
        let retry_own = own.retry.clone().unwrap_or_default();
        let retry_inherited = defaults.retry.clone().unwrap_or_default();
        let timing = Timing {
            refresh_at: pick(own.refresh_at, defaults.refresh_at, 50 * 60),
            min_remaining: pick(own.min_remaining, defaults.min_remaining, 10 * 60),
            jitter: pick(own.jitter, defaults.jitter, 30),
            retry_initial: pick(retry_own.initial, retry_inherited.initial, 2),
            retry_max: pick(retry_own.max, retry_inherited.max, 5 * 60),
            timeout: pick(own.timeout, defaults.timeout, 30),
            default_lifetime: pick(own.default_lifetime, defaults.default_lifetime, 60 * 60),
        };
        const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);
        if [
            timing.refresh_at,
            timing.min_remaining,
            timing.jitter,
            timing.retry_max,
            timing.timeout,
            timing.default_lifetime,
        ]
        .iter()
        .any(|d| *d > TEN_YEARS)
        {
            return Err(self.error(
                start,
                key,
                "durations longer than ten years are not supported",
            ));
        }
        for (field, value) in [
            ("refresh_at", timing.refresh_at),
            ("timeout", timing.timeout),
            ("default_lifetime", timing.default_lifetime),
        ] {
            if value.is_zero() {
                return Err(self.error(
                    start,
                    format!("{key}.{field}"),
                    "must be longer than zero",
                ));
            }
        }
        if timing.timeout > MAX_TIMEOUT {
            return Err(self.error(
                start,
                format!("{key}.timeout"),
                format!(
                    "at most {}s: a token request that takes longer is not coming back, and SIGTERM waits this long for one in flight (systemd's TimeoutStopSec is set for it)",
                    MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        if timing.retry_initial.is_zero() || timing.retry_initial > timing.retry_max {
            return Err(self.error(
                start,
                format!("{key}.retry"),
                "`initial` must be longer than zero and no longer than `max`",
            ));
        }
        Ok(timing)
    }
}

fn valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
