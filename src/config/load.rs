//! From a file to a [`Config`]: read it (as root, only a file no one else could have
//! changed: [`super::strict`]), parse the TOML, turn each section into its typed form, check
//! what spans credentials, refuse an inline secret in a file others can read and secret
//! files refreshd would never read ([`super::secret_files`]), and read each `ca_file`
//! ([`super::network`]).
//!
//! Must never: resolve a secret, create a directory or touch a target; loading a config
//! has no side effects but a warning about a secret file others can read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::locate::{Doc, key_at};
use super::raw::RawConfig;
use super::{Config, ConfigError, access, graph, paths};

/// The control socket a config file names even when the file as a whole is invalid: its
/// `daemon.control_socket` when the file still parses as TOML, else the default. For
/// `status`, so an operator who broke the file can ask the daemon what it still runs.
pub fn control_socket_despite_errors(path: &Path) -> PathBuf {
    super::strict::read(path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
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
        let bytes = super::strict::read(path).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
        })?;
        let config = Config::parse(path, &text)?;
        super::secret_files::inspect(&config)?;
        super::network::check_ca_files(&config)?;
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

    /// The key (and line) of the first secret written inline, if any.
    fn first_inline_secret(&self) -> Option<(String, usize)> {
        if let Some(state_key) = &self.daemon.state_key
            && state_key.key.is_inline()
        {
            return Some(("daemon.state_key".to_owned(), state_key.line));
        }
        if let Some(store) = &self.daemon.store {
            for (key, secret) in [("url", &store.url), ("key", &store.key)] {
                if secret.is_inline() {
                    return Some((format!("daemon.store.{key}"), store.line));
                }
            }
        }
        let webhook = self.notify.iter().find_map(|sink| match &sink.kind {
            super::SinkKind::Webhook { url, .. } if url.is_inline() => {
                let i = self.notify.iter().position(|s| s.name == sink.name)?;
                Some((format!("notify[{i}].url"), sink.line))
            }
            _ => None,
        });
        if webhook.is_some() {
            return webhook;
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
        let store = daemon.store.is_some();
        let credentials = raw
            .credentials
            .into_iter()
            .map(|(name, spanned)| {
                let start = spanned.span().start;
                self.credential(name, start, spanned.into_inner(), &defaults, store)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A BTreeMap yields its keys in the order `str` compares them, which is the order
        // Config::credential searches in.
        debug_assert!(credentials.is_sorted_by(|a, b| a.name < b.name));
        graph::check(self, &credentials)?;
        access::distinct_listeners(self, daemon.metrics_listen, &credentials)?;
        let notify = self.notify_sinks(raw.notify, &credentials)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            daemon,
            log,
            credentials,
            notify,
        })
    }
}
