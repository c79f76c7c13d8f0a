//! `[log]`: raw → typed. A level is a tracing filter that parses, so the daemon never
//! starts with a logger it cannot build.
//!
//! Must never: open the log file or install a subscriber; that is [`crate::log`]'s job.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::locate::Doc;
use super::raw::RawLog;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
    /// The audit log ([`crate::audit`]).
    pub audit: Option<PathBuf>,
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

impl Doc<'_> {
    pub(super) fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
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
        let audit = match raw.audit {
            Some(path) if !path.get_ref().is_absolute() => {
                return Err(self.error(
                    path.span().start,
                    "log.audit",
                    format!("{} must be an absolute path", path.get_ref().display()),
                ));
            }
            other => other.map(toml::Spanned::into_inner),
        };
        Ok(LogConfig {
            level,
            audit,
            format: raw.format.unwrap_or(LogFormat::Text),
            file: raw.file,
            rotate: raw.rotate.unwrap_or(LogRotate::Daily),
            keep: raw.keep.unwrap_or(14),
        })
    }
}
