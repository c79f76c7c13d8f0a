//! Configuration: reads the TOML file into private serde structs ([`raw`]; unknown keys are
//! errors), then turns each section into types that hold only a usable configuration
//! ([`daemon`], [`logging`], [`credential`] with its [`timing`], [`source`], [`target`]
//! and [`reload`]; bearer checks in [`graph`]; default paths in [`paths`]; the whole in
//! [`load`]). Every error has one shape, `FILE:LINE: dotted.key: message`, with the line
//! taken from the TOML parser's spans ([`locate`]).
//!
//! Must never: read a secret's value (see [`crate::secret`]), create a directory or touch
//! a target: loading a config has no side effects.

mod access;
mod credential;
mod daemon;
mod graph;
mod load;
mod locate;
mod logging;
mod names;
mod network;
mod notify;
mod paths;
mod raw;
mod reload;
mod secret_files;
mod source;
mod strict;
mod target;
mod timing;
mod values;

use std::path::PathBuf;
use std::sync::Arc;

pub use access::{Access, DockerConfig, GitConfig, Reader, ServeConfig, ServeKind};
pub use credential::{Credential, Rolling, Sharing};
pub use daemon::{DaemonConfig, MAX_LEASE, MIN_LEASE, StateKeyConfig, StoreConfig};
pub use load::control_socket_despite_errors;
pub use logging::{LogConfig, LogFormat, LogLevel, LogRotate};
pub use network::{CaFile, MtlsMethod, Network, ProxySetting, ProxyUrl, TlsClientAuth};
pub use notify::{EventKind, NotifySink, SinkKind, WebhookFormat};
pub use paths::{default_config_path, default_control_socket};
pub use reload::{ReloadAction, ReloadConfig, SystemdAction, parse_signal};
pub use source::{
    AWS_ENV, AWS_FIELDS, AwsRdsIamSource, AwsWebIdentitySource, BearerRef, BodyTemplate,
    ChainSource, ClientAuth, ClientCredentialsSource, CommandFormat, CommandSource,
    DEFAULT_REDIRECT_URI, DEFAULT_SUBJECT_TOKEN_TYPE, GoogleAuthorizedUserSource,
    GoogleServiceAccountSource, HttpMethod, HttpSource, JWT_BEARER_ASSERTION, JsonFields,
    OauthRefreshSource, SecretAuth, SourceConfig, SubjectToken, TOKEN_EXCHANGE_GRANT,
    TokenExchangeSource,
};
pub use target::{PgUser, TargetConfig, TargetKind, WriteMode};
pub use timing::{MAX_TIMEOUT, Timing};
pub use values::{BUILT_IN as BUILT_IN_VALUES, Owner, ValueOf};

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
    /// Sorted by name, each name once: this is the index [`Config::credential`] searches,
    /// so whatever changes it keeps it sorted.
    pub credentials: Vec<Arc<Credential>>,
    /// `[[notify]]`, in the file's order.
    pub notify: Vec<NotifySink>,
}

impl Config {
    /// The credential called `name`. A binary search rather than a scan: callers look up
    /// names in loops over every credential, and a fleet config holds ten thousand. The
    /// sorted list is the index, so there is no second copy to keep in step with it.
    pub fn credential(&self, name: &str) -> Option<&Arc<Credential>> {
        let i = self
            .credentials
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()?;
        Some(&self.credentials[i])
    }

    /// The credentials shared through the fleet store.
    pub fn shared_names(&self) -> Vec<String> {
        self.credentials
            .iter()
            .filter(|c| c.sharing.is_shared())
            .map(|c| c.name.clone())
            .collect()
    }

    /// The variables of refreshd's own environment this config reads secrets from: every
    /// `{ env = "…" }` reference (the store's included) and every `command` source's
    /// `inherit_env`. `refreshd exec` keeps them out of its program's environment.
    pub fn secret_variables(&self) -> std::collections::BTreeSet<String> {
        let store = self
            .daemon
            .store
            .iter()
            .flat_map(|store| [&store.url, &store.key])
            .chain(self.notify.iter().filter_map(|sink| match &sink.kind {
                SinkKind::Webhook { url, .. } => Some(url),
                SinkKind::Command { .. } => None,
            }))
            .chain(self.daemon.state_key.iter().map(|state_key| &state_key.key));
        let sources = self
            .credentials
            .iter()
            .flat_map(|c| c.source.secrets().into_iter().map(|(_, secret)| secret));
        let referenced = store.chain(sources).filter_map(|secret| match secret {
            crate::secret::SecretRef::Env(name) => Some(name.clone()),
            _ => None,
        });
        let inherited = self
            .credentials
            .iter()
            .flat_map(|c| c.source.inherited_variables())
            .map(str::to_owned);
        referenced.chain(inherited).collect()
    }

    /// The credentials in an order where every bearer comes before the credentials that
    /// use its token, otherwise as configured.
    pub fn dependency_order(&self) -> Vec<&Credential> {
        graph::dependency_order(&self.credentials)
    }
}

#[cfg(test)]
mod tests;
