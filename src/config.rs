//! Configuration: reads the TOML file into plain serde structs (unknown keys are errors),
//! then validates them into types that hold only a usable configuration. Every error names
//! the file, the line and the key.
//!
//! It never reads a secret's value (see [`crate::secret`]), never creates a directory and
//! never touches a target: loading a config has no side effects.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use url::Url;

use crate::secret::SecretRef;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
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
    pub credentials: Vec<Credential>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub max_concurrent_refreshes: usize,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
    pub rotate: LogRotate,
    pub keep: usize,
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
    }
}

// ---------------------------------------------------------------------------------------
// Sources: deserialized directly into their final form; `validate_source` checks the rest.

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceConfig {
    // Boxed: its login endpoints make it several times larger than the other variants.
    OauthRefresh(Box<OauthRefreshSource>),
    OauthClientCredentials(ClientCredentialsSource),
    GoogleServiceAccount(GoogleServiceAccountSource),
    GoogleAuthorizedUser(GoogleAuthorizedUserSource),
    Command(CommandSource),
    Http(HttpSource),
    Chain(ChainSource),
}

/// How a confidential client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Basic,
    Post,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthRefreshSource {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    /// The bootstrap refresh token; a rotated one (or one from `refreshd login`) lives in
    /// the state directory. Absent: `refreshd login NAME` provides the first one.
    pub refresh_token: Option<SecretRef>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub auth: ClientAuth,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// For `refreshd login`: the authorization endpoint (or found through `issuer`).
    pub authorize_url: Option<Url>,
    /// For `refreshd login --device` (RFC 8628), or found through `issuer`.
    pub device_authorization_url: Option<Url>,
    /// Where `refreshd login` discovers the endpoints it is not given
    /// (`.well-known/openid-configuration`).
    pub issuer: Option<Url>,
    /// The loopback redirect for `refreshd login` (RFC 8252); without a port, an ephemeral one.
    pub redirect_uri: Option<Url>,
    /// Extra parameters for the authorization URL only (Google: `access_type = "offline"`).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
}

/// The redirect `refreshd login` uses when the credential names none.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/callback";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsSource {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    /// PEM private key for an RFC 7523 client assertion (`private_key_jwt`).
    pub private_key: Option<SecretRef>,
    pub key_id: Option<String>,
    /// The certificate's base64url SHA-1 thumbprint, for the assertion's `x5t` header
    /// (Entra ID identifies a certificate credential by it).
    pub x5t: Option<String>,
    /// Assertion audience; the token URL when absent.
    pub audience: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub auth: ClientAuth,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleServiceAccountSource {
    /// The JSON key Google issues for a service account.
    pub key_file: PathBuf,
    pub scopes: Vec<String>,
    /// The user to impersonate (domain-wide delegation): the assertion's `sub`.
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAuthorizedUserSource {
    /// gcloud's application-default credentials file; its standard path when absent.
    pub file: Option<PathBuf>,
}

impl GoogleAuthorizedUserSource {
    /// `file`, else `$CLOUDSDK_CONFIG/application_default_credentials.json`, else
    /// `~/.config/gcloud/application_default_credentials.json` (where gcloud writes it).
    pub fn path(&self) -> PathBuf {
        if let Some(file) = &self.file {
            return file.clone();
        }
        let dir = match std::env::var_os("CLOUDSDK_CONFIG") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            // gcloud does not follow XDG_CONFIG_HOME.
            _ => Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
                .join(".config/gcloud"),
        };
        dir.join("application_default_credentials.json")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandFormat {
    #[default]
    Auto,
    Plain,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    pub argv: Vec<String>,
    #[serde(default)]
    pub format: CommandFormat,
    /// JSON pointer (`/access_token`) or a top-level field name.
    pub token_field: Option<String>,
    pub expiry_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub url: Url,
    #[serde(default = "default_http_method")]
    pub method: String,
    pub body: Option<String>,
    pub bearer: Option<BearerRef>,
    pub token_field: String,
    pub expiry_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerRef {
    pub credential: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSource {
    pub sources: Vec<SourceConfig>,
}

fn default_http_method() -> String {
    "POST".to_owned()
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::OauthRefresh(_) => "oauth-refresh",
            SourceConfig::OauthClientCredentials(_) => "oauth-client-credentials",
            SourceConfig::GoogleServiceAccount(_) => "google-service-account",
            SourceConfig::GoogleAuthorizedUser(_) => "google-authorized-user",
            SourceConfig::Command(_) => "command",
            SourceConfig::Http(_) => "http",
            SourceConfig::Chain(_) => "chain",
        }
    }

    /// The configured client id, for status output.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            SourceConfig::OauthRefresh(s) => Some(&s.client_id),
            SourceConfig::OauthClientCredentials(s) => Some(&s.client_id),
            _ => None,
        }
    }

    /// The `oauth-refresh` source, at the top or inside a chain (validation allows at most
    /// one: a credential keeps one rotated refresh token).
    pub fn oauth_refresh(&self) -> Option<&OauthRefreshSource> {
        match self {
            SourceConfig::OauthRefresh(s) => Some(s),
            SourceConfig::Chain(chain) => chain.sources.iter().find_map(|s| s.oauth_refresh()),
            _ => None,
        }
    }

    /// The credentials whose tokens this source uses as a bearer (`http`, also in a chain).
    pub fn bearers(&self) -> Vec<&str> {
        match self {
            SourceConfig::Http(s) => s.bearer.iter().map(|b| b.credential.as_str()).collect(),
            SourceConfig::Chain(chain) => chain.sources.iter().flat_map(|s| s.bearers()).collect(),
            _ => Vec::new(),
        }
    }

    /// Every secret reference with the key it sits under.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut out = Vec::new();
        match self {
            SourceConfig::OauthRefresh(s) => {
                if let Some(token) = &s.refresh_token {
                    out.push(("refresh_token", token));
                }
                if let Some(secret) = &s.client_secret {
                    out.push(("client_secret", secret));
                }
            }
            SourceConfig::OauthClientCredentials(s) => {
                if let Some(secret) = &s.client_secret {
                    out.push(("client_secret", secret));
                }
                if let Some(key) = &s.private_key {
                    out.push(("private_key", key));
                }
            }
            SourceConfig::Chain(chain) => {
                for source in &chain.sources {
                    out.extend(source.secrets());
                }
            }
            _ => {}
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Targets and reloads: flat raw structs, so a misplaced field gets a precise message.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub path: PathBuf,
    pub kind: TargetKind,
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub write: WriteMode,
}

impl TargetConfig {
    /// A target with no mode, owner or group override, written atomically.
    pub fn new(path: impl Into<PathBuf>, kind: TargetKind) -> TargetConfig {
        TargetConfig {
            path: path.into(),
            kind,
            mode: None,
            owner: None,
            group: None,
            write: WriteMode::Atomic,
        }
    }

    /// A `dotenv` target setting `key`, without an expiry key.
    pub fn dotenv(path: impl Into<PathBuf>, key: &str) -> TargetConfig {
        TargetConfig::new(
            path,
            TargetKind::Dotenv {
                key: key.to_owned(),
                expires_at_key: None,
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    Dotenv {
        key: String,
        expires_at_key: Option<String>,
    },
    Pgpass {
        host: String,
        port: String,
        database: String,
        username: String,
    },
    File {
        newline: bool,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    #[default]
    Atomic,
    InPlace,
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Dotenv { .. } => "dotenv",
            TargetKind::Pgpass { .. } => "pgpass",
            TargetKind::File { .. } => "file",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(rename = "type")]
    kind: String,
    path: PathBuf,
    key: Option<String>,
    expires_at_key: Option<String>,
    host: Option<String>,
    port: Option<PortValue>,
    database: Option<String>,
    username: Option<String>,
    newline: Option<bool>,
    mode: Option<ModeValue>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default)]
    write: WriteMode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u16),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ModeValue {
    Number(u32),
    Text(String),
}

/// A reload action, run after every target of the credential is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    pub action: ReloadAction,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReloadAction {
    SignalPidFile {
        signal: String,
        pid_file: PathBuf,
        process_name: Option<String>,
    },
    SignalPid {
        signal: String,
        pid: i32,
    },
    SystemdUnit {
        unit: String,
        action: String,
        signal: Option<String>,
    },
    Launchd {
        label: String,
    },
    Command {
        argv: Vec<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    signal: Option<String>,
    pid_file: Option<PathBuf>,
    pid: Option<i64>,
    process_name: Option<String>,
    systemd_unit: Option<String>,
    action: Option<String>,
    launchd_label: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
}

// ---------------------------------------------------------------------------------------
// The raw file.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    defaults: RawTiming,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<RawCredential>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    metrics_listen: Option<Spanned<String>>,
    max_concurrent_refreshes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
    file: Option<PathBuf>,
    rotate: Option<LogRotate>,
    keep: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    #[serde(default, deserialize_with = "de_opt_duration")]
    refresh_at: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    min_remaining: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    jitter: Option<Duration>,
    retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    default_lifetime: Option<Duration>,
    on_failure: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default, deserialize_with = "de_opt_duration")]
    initial: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    max: Option<Duration>,
}

// The timing keys repeat `RawTiming`'s on purpose: serde's `flatten` cannot be combined
// with `deny_unknown_fields`, and a typo in a credential must stay an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    source: Spanned<SourceConfig>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    reload: Vec<Spanned<RawReload>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    refresh_at: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    min_remaining: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    jitter: Option<Duration>,
    retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    default_lifetime: Option<Duration>,
    on_failure: Option<Vec<String>>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write e.g. \"90s\", \"50m\", \"1h 5m\")"
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Default locations (DESIGN §2).

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            Path::new(&home).join(fallback)
        }
    }
}

/// `/etc/refreshd/config.toml` for root, else `$XDG_CONFIG_HOME/refreshd/config.toml`.
pub fn default_config_path() -> PathBuf {
    if running_as_root() {
        PathBuf::from("/etc/refreshd/config.toml")
    } else {
        xdg_dir("XDG_CONFIG_HOME", ".config").join("refreshd/config.toml")
    }
}

/// The first directory systemd made for the unit (`StateDirectory=` → `$STATE_DIRECTORY`),
/// so a service running as its own unprivileged user needs no paths in its config.
fn systemd_dir(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var)?;
    let first = std::env::split_paths(&value).next()?;
    first.is_absolute().then_some(first)
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = systemd_dir("STATE_DIRECTORY") {
        return dir;
    }
    if running_as_root() {
        PathBuf::from("/var/lib/refreshd")
    } else {
        xdg_dir("XDG_STATE_HOME", ".local/state").join("refreshd")
    }
}

fn default_control_socket() -> PathBuf {
    if let Some(dir) = systemd_dir("RUNTIME_DIRECTORY") {
        return dir.join("control.sock");
    }
    if running_as_root() {
        PathBuf::from("/run/refreshd/control.sock")
    } else {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("refreshd/control.sock"),
            _ => default_state_dir().join("control.sock"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading and validation.

impl Config {
    /// Reads and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(path, &text)?;
        if let Some(key) = config.first_inline_secret() {
            let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if meta.mode() & 0o077 != 0 {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: key.1,
                    key: key.0,
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        Validator { path, text }.config(raw)
    }

    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| c.name == name)
    }

    /// The key (and line) of the first secret written inline, if any.
    fn first_inline_secret(&self) -> Option<(String, usize)> {
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

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn error(
        &self,
        span_start: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: line_col(self.text, span_start).0,
            key: key.into(),
            message: message.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let daemon = DaemonConfig {
            state_dir: raw.daemon.state_dir.unwrap_or_else(default_state_dir),
            control_socket: raw
                .daemon
                .control_socket
                .unwrap_or_else(default_control_socket),
            metrics_listen: match raw.daemon.metrics_listen {
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
            },
            max_concurrent_refreshes: raw.daemon.max_concurrent_refreshes.unwrap_or(16),
        };
        if daemon.max_concurrent_refreshes == 0 {
            return Err(self.error(0, "daemon.max_concurrent_refreshes", "must be at least 1"));
        }
        for (key, dir) in [
            ("daemon.state_dir", &daemon.state_dir),
            ("daemon.control_socket", &daemon.control_socket),
        ] {
            if !dir.is_absolute() {
                let at = self
                    .text
                    .find(key.trim_start_matches("daemon."))
                    .unwrap_or(0);
                return Err(self.error(
                    at,
                    key,
                    format!("{} must be an absolute path", dir.display()),
                ));
            }
        }
        let log = LogConfig {
            level: raw.log.level.unwrap_or_else(|| "info".to_owned()),
            format: raw.log.format.unwrap_or(LogFormat::Text),
            file: raw.log.file,
            rotate: raw.log.rotate.unwrap_or(LogRotate::Daily),
            keep: raw.log.keep.unwrap_or(14),
        };
        let defaults = raw.defaults;
        let mut credentials = Vec::with_capacity(raw.credentials.len());
        for (name, spanned) in raw.credentials {
            let start = spanned.span().start;
            credentials.push(self.credential(name, start, spanned.into_inner(), &defaults)?);
        }
        self.bearers(&credentials)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            daemon,
            log,
            credentials,
        })
    }

    /// Every `bearer` names another credential, and no chain of bearers comes back to
    /// where it started (each would wait for the other's token forever).
    fn bearers(&self, credentials: &[Credential]) -> Result<(), ConfigError> {
        let error = |credential: &Credential, message: String| ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: credential.line,
            key: format!("credentials.{}.source.bearer", credential.name),
            message,
        };
        for credential in credentials {
            for bearer in credential.source.bearers() {
                if !credentials.iter().any(|c| c.name == bearer) {
                    return Err(error(
                        credential,
                        format!("names credential `{bearer}`, which this config does not define"),
                    ));
                }
            }
        }
        for credential in credentials {
            // Depth-first from each credential; the path so far is the would-be cycle.
            let mut path = vec![credential.name.as_str()];
            if let Some(cycle) = find_cycle(credentials, &mut path) {
                return Err(error(
                    credential,
                    format!("bearer references form a cycle: {}", cycle.join(" → ")),
                ));
            }
        }
        Ok(())
    }

    fn credential(
        &self,
        name: String,
        start: usize,
        raw: RawCredential,
        defaults: &RawTiming,
    ) -> Result<Credential, ConfigError> {
        let key = format!("credentials.{name}");
        if !valid_credential_name(&name) {
            return Err(self.error(
                start,
                &key,
                "a credential name may hold only letters, digits, `_`, `-` and `.`, and may not start with `.` (it names files in the state directory)",
            ));
        }
        let timing = self.timing(start, &key, &raw, defaults)?;
        let source_start = raw.source.span().start;
        let source = raw.source.into_inner();
        self.source(source_start, &format!("{key}.source"), &source)?;
        let mut targets = Vec::with_capacity(raw.targets.len());
        for (i, target) in raw.targets.into_iter().enumerate() {
            let at = target.span().start;
            targets.push(self.target(at, &format!("{key}.targets[{i}]"), target.into_inner())?);
        }
        for (i, a) in targets.iter().enumerate() {
            if let Some(b) = targets[..i]
                .iter()
                .find(|b| b.path == a.path && b.kind.name() != a.kind.name())
            {
                return Err(self.error(
                    start,
                    format!("{key}.targets[{i}]"),
                    format!(
                        "{} is also a {} target of this credential",
                        a.path.display(),
                        b.kind.name()
                    ),
                ));
            }
        }
        let mut reload = Vec::with_capacity(raw.reload.len());
        for (i, action) in raw.reload.into_iter().enumerate() {
            let at = action.span().start;
            reload.push(self.reload(at, &format!("{key}.reload[{i}]"), action.into_inner())?);
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
            reload,
            on_failure,
            timing,
            line: line_col(self.text, start).0,
        })
    }

    fn timing(
        &self,
        start: usize,
        key: &str,
        raw: &RawCredential,
        defaults: &RawTiming,
    ) -> Result<Timing, ConfigError> {
        let pick = |own: Option<Duration>, inherited: Option<Duration>, fallback: u64| {
            own.or(inherited).unwrap_or(Duration::from_secs(fallback))
        };
        let retry_own = raw.retry.clone().unwrap_or_default();
        let retry_inherited = defaults.retry.clone().unwrap_or_default();
        let timing = Timing {
            refresh_at: pick(raw.refresh_at, defaults.refresh_at, 50 * 60),
            min_remaining: pick(raw.min_remaining, defaults.min_remaining, 10 * 60),
            jitter: pick(raw.jitter, defaults.jitter, 30),
            retry_initial: pick(retry_own.initial, retry_inherited.initial, 2),
            retry_max: pick(retry_own.max, retry_inherited.max, 5 * 60),
            timeout: pick(raw.timeout, defaults.timeout, 30),
            default_lifetime: pick(raw.default_lifetime, defaults.default_lifetime, 60 * 60),
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
        if timing.refresh_at.is_zero() {
            return Err(self.error(
                start,
                format!("{key}.refresh_at"),
                "must be longer than zero",
            ));
        }
        if timing.timeout.is_zero() {
            return Err(self.error(start, format!("{key}.timeout"), "must be longer than zero"));
        }
        if timing.default_lifetime.is_zero() {
            return Err(self.error(
                start,
                format!("{key}.default_lifetime"),
                "must be longer than zero",
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

    fn source(&self, start: usize, key: &str, source: &SourceConfig) -> Result<(), ConfigError> {
        let http_url = |url: &Url, field: &str| -> Result<(), ConfigError> {
            match url.scheme() {
                "https" => Ok(()),
                "http" if is_loopback_url(url) => Ok(()),
                _ => Err(self.error(
                    start,
                    format!("{key}.{field}"),
                    format!("{url} must be https (plain http is allowed only on loopback)"),
                )),
            }
        };
        match source {
            SourceConfig::OauthRefresh(s) => {
                http_url(&s.token_url, "token_url")?;
                if s.client_id.is_empty() {
                    return Err(self.error(start, format!("{key}.client_id"), "must not be empty"));
                }
                for (field, url) in [
                    ("authorize_url", &s.authorize_url),
                    ("device_authorization_url", &s.device_authorization_url),
                    ("issuer", &s.issuer),
                ] {
                    if let Some(url) = url {
                        http_url(url, field)?;
                    }
                }
                if let Some(uri) = &s.redirect_uri
                    && (uri.scheme() != "http" || !is_loopback_url(uri))
                {
                    return Err(self.error(
                        start,
                        format!("{key}.redirect_uri"),
                        format!("{uri} must be an http URL on a loopback host (127.0.0.1, [::1] or localhost; RFC 8252): refreshd listens there for the login redirect"),
                    ));
                }
            }
            SourceConfig::OauthClientCredentials(s) => {
                http_url(&s.token_url, "token_url")?;
                if s.client_id.is_empty() {
                    return Err(self.error(start, format!("{key}.client_id"), "must not be empty"));
                }
                match (&s.client_secret, &s.private_key) {
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => {
                        return Err(self.error(
                            start,
                            key,
                            "give exactly one of `client_secret` and `private_key` (with `key_id`)",
                        ));
                    }
                }
            }
            SourceConfig::Command(s) => {
                if s.argv.is_empty() || s.argv[0].is_empty() {
                    return Err(self.error(
                        start,
                        format!("{key}.argv"),
                        "must name a program: [\"databricks\", \"auth\", \"token\", …]",
                    ));
                }
                if s.format == CommandFormat::Plain
                    && (s.token_field.is_some() || s.expiry_field.is_some())
                {
                    return Err(self.error(
                        start,
                        key,
                        "`token_field` and `expiry_field` need format = \"json\" or \"auto\"",
                    ));
                }
            }
            SourceConfig::Http(s) => {
                http_url(&s.url, "url")?;
                if !matches!(s.method.as_str(), "GET" | "POST" | "PUT" | "PATCH") {
                    return Err(self.error(
                        start,
                        format!("{key}.method"),
                        format!("{:?} is not one of GET, POST, PUT, PATCH", s.method),
                    ));
                }
                if let Some(body) = &s.body
                    && let Err(e) = serde_json::from_str::<serde_json::Value>(
                        &body.replace(crate::source::http::UUID_PLACEHOLDER, "0"),
                    )
                {
                    return Err(self.error(
                        start,
                        format!("{key}.body"),
                        format!("is not JSON ({e}); write it in single quotes: body = '{{\"request_id\": \"{{{{uuid}}}}\"}}'"),
                    ));
                }
                for (field, value) in [
                    ("token_field", Some(&s.token_field)),
                    ("expiry_field", s.expiry_field.as_ref()),
                ] {
                    if value.is_some_and(|v| v.is_empty()) {
                        return Err(self.error(
                            start,
                            format!("{key}.{field}"),
                            "must not be empty: a JSON pointer such as \"/token\" or a field name",
                        ));
                    }
                }
            }
            SourceConfig::GoogleServiceAccount(s) => {
                if s.scopes.is_empty() {
                    return Err(self.error(
                        start,
                        format!("{key}.scopes"),
                        "a service account needs at least one scope, e.g. [\"https://www.googleapis.com/auth/cloud-platform\"]",
                    ));
                }
                if !s.key_file.is_absolute() {
                    return Err(self.error(
                        start,
                        format!("{key}.key_file"),
                        format!("{} must be an absolute path", s.key_file.display()),
                    ));
                }
            }
            SourceConfig::GoogleAuthorizedUser(s) => {
                if s.file.as_ref().is_some_and(|f| !f.is_absolute()) {
                    return Err(self.error(
                        start,
                        format!("{key}.file"),
                        "must be an absolute path",
                    ));
                }
            }
            SourceConfig::Chain(chain) => {
                let refresh_members = chain
                    .sources
                    .iter()
                    .filter(|s| matches!(s, SourceConfig::OauthRefresh(_)))
                    .count();
                if refresh_members > 1 {
                    return Err(self.error(start, format!("{key}.sources"), "a chain may hold one `oauth-refresh` source: a credential keeps one rotated refresh token"));
                }
                if chain
                    .sources
                    .iter()
                    .any(|s| matches!(s, SourceConfig::Chain(_)))
                {
                    return Err(self.error(
                        start,
                        format!("{key}.sources"),
                        "a chain cannot hold another chain",
                    ));
                }
                if chain.sources.is_empty() {
                    return Err(self.error(
                        start,
                        format!("{key}.sources"),
                        "a chain needs at least one source",
                    ));
                }
                for (i, inner) in chain.sources.iter().enumerate() {
                    self.source(start, &format!("{key}.sources[{i}]"), inner)?;
                }
            }
        }
        Ok(())
    }

    fn target(&self, start: usize, key: &str, raw: RawTarget) -> Result<TargetConfig, ConfigError> {
        let err =
            |field: &str, message: String| self.error(start, format!("{key}.{field}"), message);
        let not_for = |present: bool, field: &str, kind: &str| -> Result<(), ConfigError> {
            if present {
                Err(self.error(
                    start,
                    format!("{key}.{field}"),
                    format!("`{field}` is not a field of a {kind} target"),
                ))
            } else {
                Ok(())
            }
        };
        if raw.path.as_os_str().is_empty() {
            return Err(err("path", "must not be empty".into()));
        }
        if !raw.path.is_absolute() {
            return Err(err(
                "path",
                format!("{} must be an absolute path", raw.path.display()),
            ));
        }
        let mode = match raw.mode {
            None => None,
            Some(value) => Some(parse_mode(&value).map_err(|m| err("mode", m))?),
        };
        let kind = match raw.kind.as_str() {
            "dotenv" => {
                not_for(raw.host.is_some(), "host", "dotenv")?;
                not_for(raw.port.is_some(), "port", "dotenv")?;
                not_for(raw.database.is_some(), "database", "dotenv")?;
                not_for(raw.username.is_some(), "username", "dotenv")?;
                not_for(raw.newline.is_some(), "newline", "dotenv")?;
                let Some(env_key) = raw.key else {
                    return Err(err(
                        "key",
                        "a dotenv target needs `key`, the variable it sets".into(),
                    ));
                };
                for (field, value) in [
                    ("key", Some(&env_key)),
                    ("expires_at_key", raw.expires_at_key.as_ref()),
                ] {
                    if let Some(value) = value
                        && !valid_env_key(value)
                    {
                        return Err(err(
                            field,
                            format!("{value:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                        ));
                    }
                }
                if raw.expires_at_key.as_deref() == Some(env_key.as_str()) {
                    return Err(err("expires_at_key", "must differ from `key`".into()));
                }
                TargetKind::Dotenv {
                    key: env_key,
                    expires_at_key: raw.expires_at_key,
                }
            }
            "pgpass" => {
                not_for(raw.key.is_some(), "key", "pgpass")?;
                not_for(raw.expires_at_key.is_some(), "expires_at_key", "pgpass")?;
                not_for(raw.newline.is_some(), "newline", "pgpass")?;
                if let Some(mode) = mode
                    && mode & 0o077 != 0
                {
                    return Err(err(
                        "mode",
                        format!(
                            "{mode:04o} lets others read it; libpq ignores a .pgpass that is not 0600 or stricter"
                        ),
                    ));
                }
                let need = |value: Option<String>, field: &str| {
                    value.filter(|v| !v.is_empty()).ok_or_else(|| {
                        err(
                            field,
                            format!("a pgpass target needs `{field}` (use \"*\" to match any)"),
                        )
                    })
                };
                let port = match raw.port {
                    Some(PortValue::Number(n)) => n.to_string(),
                    Some(PortValue::Text(t)) => t,
                    None => "5432".to_owned(),
                };
                TargetKind::Pgpass {
                    host: need(raw.host, "host")?,
                    port,
                    database: need(raw.database, "database")?,
                    username: need(raw.username, "username")?,
                }
            }
            "file" => {
                for (present, field) in [
                    (raw.key.is_some(), "key"),
                    (raw.expires_at_key.is_some(), "expires_at_key"),
                    (raw.host.is_some(), "host"),
                    (raw.port.is_some(), "port"),
                    (raw.database.is_some(), "database"),
                    (raw.username.is_some(), "username"),
                ] {
                    not_for(present, field, "file")?;
                }
                TargetKind::File {
                    newline: raw.newline.unwrap_or(true),
                }
            }
            other => {
                return Err(err(
                    "type",
                    format!(
                        "unknown target type {other:?}, expected one of \"dotenv\", \"pgpass\", \"file\""
                    ),
                ));
            }
        };
        Ok(TargetConfig {
            path: raw.path,
            kind,
            mode,
            owner: raw.owner,
            group: raw.group,
            write: raw.write,
        })
    }

    fn reload(&self, start: usize, key: &str, raw: RawReload) -> Result<ReloadConfig, ConfigError> {
        let err = |message: &str| self.error(start, key, message.to_owned());
        let action = match (
            &raw.pid_file,
            raw.pid,
            &raw.systemd_unit,
            &raw.launchd_label,
            &raw.command,
        ) {
            (Some(pid_file), None, None, None, None) => ReloadAction::SignalPidFile {
                signal: normalize_signal(
                    raw.signal
                        .as_deref()
                        .ok_or_else(|| err("a pid_file action needs `signal`"))?,
                )
                .map_err(|m| err(&m))?,
                pid_file: pid_file.clone(),
                process_name: raw.process_name.clone(),
            },
            (None, Some(pid), None, None, None) => {
                if pid <= 1 || pid > i64::from(i32::MAX) {
                    return Err(err(
                        "`pid` must be greater than 1 (0, 1 and negative pids signal whole process groups or init)",
                    ));
                }
                ReloadAction::SignalPid {
                    signal: normalize_signal(
                        raw.signal
                            .as_deref()
                            .ok_or_else(|| err("a pid action needs `signal`"))?,
                    )
                    .map_err(|m| err(&m))?,
                    pid: pid as i32,
                }
            }
            (None, None, Some(unit), None, None) => {
                let action = raw.action.clone().unwrap_or_else(|| "reload".to_owned());
                if !matches!(action.as_str(), "reload" | "restart" | "kill") {
                    return Err(err("`action` must be \"reload\", \"restart\" or \"kill\""));
                }
                let signal = raw
                    .signal
                    .as_deref()
                    .map(normalize_signal)
                    .transpose()
                    .map_err(|m| err(&m))?;
                ReloadAction::SystemdUnit {
                    unit: unit.clone(),
                    action,
                    signal,
                }
            }
            (None, None, None, Some(label), None) => ReloadAction::Launchd {
                label: label.clone(),
            },
            (None, None, None, None, Some(argv)) => {
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(err("`command` must name a program"));
                }
                ReloadAction::Command { argv: argv.clone() }
            }
            _ => {
                return Err(err(
                    "a reload action is exactly one of { signal, pid_file }, { signal, pid }, { systemd_unit, action }, { launchd_label } or { command }",
                ));
            }
        };
        if raw.process_name.is_some() && !matches!(action, ReloadAction::SignalPidFile { .. }) {
            return Err(err("`process_name` goes only with `pid_file`"));
        }
        if raw.action.is_some() && !matches!(action, ReloadAction::SystemdUnit { .. }) {
            return Err(err("`action` goes only with `systemd_unit`"));
        }
        Ok(ReloadConfig {
            action,
            timeout: raw.timeout,
        })
    }
}

fn parse_mode(value: &ModeValue) -> Result<u32, String> {
    let mode = match value {
        ModeValue::Number(n) => *n,
        ModeValue::Text(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .map_err(|_| format!("{text:?} is not an octal mode such as \"0600\""))?,
    };
    if mode > 0o777 {
        return Err(format!(
            "{mode:o} (octal) is not a permission mode: write it as a string, \"0600\", or as 0o600"
        ));
    }
    Ok(mode)
}

/// `SIGHUP`, `HUP` and `hup` all become `SIGHUP` (nix wants the `SIG` prefix).
pub fn normalize_signal(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|_| full.clone())
        .map_err(|_| format!("{name:?} is not a signal name such as \"SIGHUP\""))
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

/// A bearer cycle through the last credential of `path`, as the list of names that closes it.
fn find_cycle<'a>(credentials: &'a [Credential], path: &mut Vec<&'a str>) -> Option<Vec<String>> {
    let last = *path.last()?;
    let credential = credentials.iter().find(|c| c.name == last)?;
    for bearer in credential.source.bearers() {
        if bearer == path[0] {
            let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            cycle.push(bearer.to_owned());
            return Some(cycle);
        }
        // A cycle elsewhere is reported from its own members.
        if path.contains(&bearer) || path.len() > credentials.len() {
            continue;
        }
        let bearer = credentials.iter().find(|c| c.name == bearer)?.name.as_str();
        path.push(bearer);
        if let Some(cycle) = find_cycle(credentials, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

impl Config {
    /// The credentials in an order where every bearer comes before the credentials that
    /// use its token (the config was checked for cycles), otherwise as configured.
    pub fn dependency_order(&self) -> Vec<&Credential> {
        let mut done: Vec<&Credential> = Vec::with_capacity(self.credentials.len());
        fn visit<'a>(
            config: &'a Config,
            credential: &'a Credential,
            done: &mut Vec<&'a Credential>,
            depth: usize,
        ) {
            if done.iter().any(|c| c.name == credential.name) || depth > config.credentials.len() {
                return;
            }
            for bearer in credential.source.bearers() {
                if let Some(b) = config.credential(bearer) {
                    visit(config, b, done, depth + 1);
                }
            }
            if !done.iter().any(|c| c.name == credential.name) {
                done.push(credential);
            }
        }
        for credential in &self.credentials {
            visit(self, credential, &mut done, 0);
        }
        done
    }
}

fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/refreshd/config.toml"), text)
    }

    const MINIMAL: &str = r#"
[daemon]
state_dir = "/tmp/refreshd-state"

[credentials.db]
source = { type = "oauth-refresh", token_url = "https://idp.example.com/token", client_id = "cli", refresh_token = { file = "/etc/refreshd/rt" } }
targets = [
  { type = "dotenv", path = "/srv/app/.env", key = "TOKEN" },
  { type = "pgpass", path = "/home/app/.pgpass", host = "db.example.com", port = 5432, database = "postgres", username = "app@example.com" },
  { type = "file", path = "/run/app/token" },
]
reload = [ { signal = "HUP", pid_file = "/run/app.pid" } ]
"#;

    #[test]
    fn parses_the_design_example_shape_with_defaults() {
        let config = parse(MINIMAL).unwrap();
        let credential = config.credential("db").unwrap();
        assert_eq!(credential.timing.refresh_at, Duration::from_secs(3000));
        assert_eq!(credential.timing.min_remaining, Duration::from_secs(600));
        assert_eq!(credential.targets.len(), 3);
        assert_eq!(credential.line, 5);
        assert!(
            matches!(&credential.targets[1].kind, TargetKind::Pgpass { port, .. } if port == "5432")
        );
        assert!(
            matches!(&credential.reload[0].action, ReloadAction::SignalPidFile { signal, .. } if signal == "SIGHUP")
        );
    }

    #[test]
    fn credential_values_override_defaults() {
        let text = format!("[defaults]\nrefresh_at = \"20m\"\nretry = {{ initial = \"1s\", max = \"1m\" }}\n{MINIMAL}")
            .replace("[credentials.db]\n", "[credentials.db]\nrefresh_at = \"5m\"\n");
        let config = parse(&text).unwrap();
        let timing = &config.credentials[0].timing;
        assert_eq!(timing.refresh_at, Duration::from_secs(300));
        assert_eq!(timing.retry_max, Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_errors_naming_line_and_key() {
        let text = MINIMAL.replace("state_dir =", "stat_dir =");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("/etc/refreshd/config.toml:3:"), "{err}");
        assert!(err.contains("stat_dir"), "{err}");

        let text = MINIMAL.replace("key = \"TOKEN\"", "key = \"TOKEN\", colour = \"red\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(":8:") && err.contains("colour"), "{err}");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let text = MINIMAL.replace("key = \"TOKEN\"", "key = \"MY-TOKEN\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(":8: credentials.db.targets[0].key:"), "{err}");

        let text = MINIMAL.replace("port = 5432,", "port = 5432, key = \"X\",");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("credentials.db.targets[1].key: `key` is not a field of a pgpass target"),
            "{err}"
        );

        let text = MINIMAL.replace("https://idp", "http://idp");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("credentials.db.source.token_url") && err.contains("https"),
            "{err}"
        );

        let text = MINIMAL.replace("signal = \"HUP\"", "signal = \"SIGNOPE\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("credentials.db.reload[0]") && err.contains("SIGNOPE"),
            "{err}"
        );
    }

    #[test]
    fn bad_durations_and_source_types_are_explained() {
        let text = MINIMAL.replace(
            "[credentials.db]\n",
            "[credentials.db]\nrefresh_at = \"soon\"\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":6:") && err.contains("invalid duration \"soon\""),
            "{err}"
        );

        let text = MINIMAL.replace("\"oauth-refresh\"", "\"oauth-magic\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("oauth-magic") && err.contains(":6:"), "{err}");
    }

    #[test]
    fn bearer_references_must_exist_and_not_cycle() {
        let http = |bearer: &str| {
            format!(
                "{{ type = \"http\", url = \"https://x.example.com/api\", body = '{{\"request_id\": \"{{{{uuid}}}}\"}}', bearer = {{ credential = \"{bearer}\" }}, token_field = \"/token\" }}"
            )
        };
        let rt = "{ type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"cli\", refresh_token = { file = \"/etc/refreshd/rt\" } }";
        let with = |db: &str, extra: &str| format!("{}{extra}", MINIMAL.replace(rt, db));
        let err = parse(&with(&http("nope"), "")).unwrap_err().to_string();
        assert!(
            err.contains("credentials.db.source.bearer") && err.contains("`nope`"),
            "{err}"
        );
        let err = parse(&with(&http("db"), "")).unwrap_err().to_string();
        assert!(err.contains("cycle: db → db"), "{err}");
        let pg = format!("\n[credentials.pg]\nsource = {}\n", http("db"));
        let err = parse(&with(&http("pg"), &pg)).unwrap_err().to_string();
        assert!(err.contains("cycle: db → pg → db"), "{err}");
        // A proper chain of bearers is fine, and `once` visits the bearer first.
        let ws = format!("\n[credentials.ws]\nsource = {rt}\n");
        let config = parse(&with(&http("ws"), &ws)).unwrap();
        let order: Vec<&str> = config
            .dependency_order()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(order, ["ws", "db"]);
        let err = parse(&with(&http("ws").replace("{{uuid}}\"}", "\""), &ws))
            .unwrap_err()
            .to_string();
        assert!(err.contains("body") && err.contains("not JSON"), "{err}");
    }

    #[test]
    fn ambiguous_chains_and_relative_state_dirs_are_refused() {
        let rt = "{ type = \"oauth-refresh\", token_url = \"https://idp.example.com/token\", client_id = \"cli\", refresh_token = { file = \"/etc/refreshd/rt\" } }";
        let text = MINIMAL.replace(
            rt,
            &format!("{{ type = \"chain\", sources = [{rt}, {rt}] }}"),
        );
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("one `oauth-refresh`")
        );
        let text = MINIMAL.replace("/tmp/refreshd-state", "relative/state");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("daemon.state_dir")
        );
    }

    #[test]
    fn pid_one_and_loose_pgpass_modes_are_refused() {
        let text = MINIMAL.replace("pid_file = \"/run/app.pid\"", "pid = 1");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("greater than 1")
        );
        let text = MINIMAL.replace(
            "username = \"app@example.com\"",
            "username = \"app@example.com\", mode = \"0640\"",
        );
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("libpq ignores")
        );
    }

    #[test]
    fn inline_secrets_need_a_private_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = MINIMAL.replace(
            "refresh_token = { file = \"/etc/refreshd/rt\" }",
            "refresh_token = \"rt-inline\"",
        );
        std::fs::write(&path, &text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("credentials.db.source.refresh_token") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("rt-inline"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Config::load(&path).unwrap();
    }
}
