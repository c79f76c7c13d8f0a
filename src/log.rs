//! Logging: one line per event an operator cares about, on stderr as text or JSON, and
//! optionally in a rolling file (`log.file`). It formats what callers hand it and never
//! sees a token (callers pass fingerprints).

use std::path::Path;

use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat, LogRotate};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("log file {path}: {reason}")]
pub struct LogError {
    path: String,
    reason: String,
}

/// Installs the global subscriber for a short command: stderr only.
pub fn init(level: &str, format: LogFormat) {
    let _ = install(level, format, None);
}

/// Installs the global subscriber for the daemon: stderr plus the configured rolling file.
pub fn init_daemon(config: &LogConfig) -> Result<(), LogError> {
    install(config.level.as_str(), config.format, Some(config))
}

fn install(level: &str, format: LogFormat, file: Option<&LogConfig>) -> Result<(), LogError> {
    // `RUST_LOG` wins over the configured level.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Under journald (`JOURNAL_STREAM`) the journal adds its own timestamps.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let stderr: BoxedLayer = match (format, journald) {
        (LogFormat::Json, _) => stderr.json().flatten_event(true).boxed(),
        (LogFormat::Text, true) => stderr.without_time().boxed(),
        (LogFormat::Text, false) => stderr.boxed(),
    };
    let mut layers = vec![stderr];
    if let Some(path) = file.and_then(|c| c.file.as_deref()) {
        let config = file.expect("checked above");
        let appender = rolling_file(path, config.rotate, config.keep)?;
        // Synchronous: a few lines per rotation, and nothing is lost on exit.
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(appender)
            .with_target(false)
            .with_ansi(false);
        layers.push(match format {
            LogFormat::Json => layer.json().flatten_event(true).boxed(),
            LogFormat::Text => layer.boxed(),
        });
    }
    // A second init (tests, `demo`) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
    for warning in crate::warnings::take() {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// `/var/log/refreshd/rotation.log` becomes `rotation.YYYY-MM-DD.log` (daily, UTC days),
/// `rotation.YYYY-MM-DD-HH.log` (hourly) or `rotation.log` (never), keeping `keep` files.
fn rolling_file(
    path: &Path,
    rotate: LogRotate,
    keep: usize,
) -> Result<RollingFileAppender, LogError> {
    let err = |reason: String| LogError {
        path: path.display().to_string(),
        reason,
    };
    let dir = path
        .parent()
        .ok_or_else(|| err("has no directory".into()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| err("has no file name".into()))?;
    let rotation = match rotate {
        LogRotate::Daily => Rotation::DAILY,
        LogRotate::Hourly => Rotation::HOURLY,
        LogRotate::Never => Rotation::NEVER,
    };
    let mut builder = RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix(stem);
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        builder = builder.filename_suffix(extension);
    }
    if keep > 0 && rotate != LogRotate::Never {
        builder = builder.max_log_files(keep);
    }
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    builder.build(dir).map_err(|e| err(e.to_string()))
}
