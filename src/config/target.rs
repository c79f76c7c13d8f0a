//! `credentials.NAME.targets[i]`: raw → typed. A target knows its kind's fields only
//! (a pgpass target has no `key`), its mode is a real permission mode, and a pgpass mode
//! that libpq would ignore is refused here rather than discovered by the app.
//!
//! Never looks at the file system: whether the path is writable is `check`'s question.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::locate::{At, Doc};
use super::names::valid_env_key;
use super::raw::{RawMode, RawPort, RawTarget};

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

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Dotenv { .. } => "dotenv",
            TargetKind::Pgpass { .. } => "pgpass",
            TargetKind::File { .. } => "file",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    #[default]
    Atomic,
    InPlace,
}

pub(super) fn target(
    doc: &Doc<'_>,
    start: usize,
    key: &str,
    raw: RawTarget,
) -> Result<TargetConfig, ConfigError> {
    let at = At { doc, start, key };
    if raw.path.as_os_str().is_empty() {
        return Err(at.err("path", "must not be empty".into()));
    }
    if !raw.path.is_absolute() {
        return Err(at.err(
            "path",
            format!("{} must be an absolute path", raw.path.display()),
        ));
    }
    let mode = match &raw.mode {
        None => None,
        Some(value) => Some(parse_mode(value).map_err(|m| at.err("mode", m))?),
    };
    let kind = match raw.kind.as_str() {
        "dotenv" => dotenv(&at, &raw)?,
        "pgpass" => pgpass(&at, &raw, mode)?,
        "file" => file(&at, &raw)?,
        other => {
            return Err(at.err(
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

impl At<'_, '_> {
    /// A field of another kind is refused rather than ignored: it is a typo or a wrong
    /// `type`, and either way the file would not be written as its author expects.
    fn not_for(&self, present: bool, field: &str, kind: &str) -> Result<(), ConfigError> {
        if present {
            Err(self.err(
                field,
                format!("`{field}` is not a field of a {kind} target"),
            ))
        } else {
            Ok(())
        }
    }
}

fn dotenv(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    at.not_for(raw.host.is_some(), "host", "dotenv")?;
    at.not_for(raw.port.is_some(), "port", "dotenv")?;
    at.not_for(raw.database.is_some(), "database", "dotenv")?;
    at.not_for(raw.username.is_some(), "username", "dotenv")?;
    at.not_for(raw.newline.is_some(), "newline", "dotenv")?;
    let Some(env_key) = &raw.key else {
        return Err(at.err(
            "key",
            "a dotenv target needs `key`, the variable it sets".into(),
        ));
    };
    for (field, value) in [
        ("key", Some(env_key)),
        ("expires_at_key", raw.expires_at_key.as_ref()),
    ] {
        if let Some(value) = value
            && !valid_env_key(value)
        {
            return Err(at.err(
                field,
                format!("{value:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
    }
    if raw.expires_at_key.as_deref() == Some(env_key.as_str()) {
        return Err(at.err("expires_at_key", "must differ from `key`".into()));
    }
    Ok(TargetKind::Dotenv {
        key: env_key.clone(),
        expires_at_key: raw.expires_at_key.clone(),
    })
}

fn pgpass(at: &At<'_, '_>, raw: &RawTarget, mode: Option<u32>) -> Result<TargetKind, ConfigError> {
    at.not_for(raw.key.is_some(), "key", "pgpass")?;
    at.not_for(raw.expires_at_key.is_some(), "expires_at_key", "pgpass")?;
    at.not_for(raw.newline.is_some(), "newline", "pgpass")?;
    if let Some(mode) = mode
        && mode & 0o077 != 0
    {
        return Err(at.err(
            "mode",
            format!(
                "{mode:04o} lets others read it; libpq ignores a .pgpass that is not 0600 or stricter"
            ),
        ));
    }
    let need = |value: Option<&str>, field: &str| {
        let value = value.filter(|v| !v.is_empty()).ok_or_else(|| {
            at.err(
                field,
                format!("a pgpass target needs `{field}` (use \"*\" to match any)"),
            )
        })?;
        if value.chars().any(char::is_control) {
            return Err(at.err(
                field,
                "must not hold a line break or other control character: a .pgpass line is one line"
                    .into(),
            ));
        }
        Ok(value.to_owned())
    };
    let port = match &raw.port {
        Some(RawPort::Number(n)) => n.to_string(),
        Some(RawPort::Text(t)) => need(Some(t), "port")?,
        None => "5432".to_owned(),
    };
    Ok(TargetKind::Pgpass {
        host: need(raw.host.as_deref(), "host")?,
        port,
        database: need(raw.database.as_deref(), "database")?,
        username: need(raw.username.as_deref(), "username")?,
    })
}

fn file(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    for (present, field) in [
        (raw.key.is_some(), "key"),
        (raw.expires_at_key.is_some(), "expires_at_key"),
        (raw.host.is_some(), "host"),
        (raw.port.is_some(), "port"),
        (raw.database.is_some(), "database"),
        (raw.username.is_some(), "username"),
    ] {
        at.not_for(present, field, "file")?;
    }
    Ok(TargetKind::File {
        newline: raw.newline.unwrap_or(true),
    })
}

fn parse_mode(value: &RawMode) -> Result<u32, String> {
    let mode = match value {
        RawMode::Number(n) => *n,
        RawMode::Text(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .map_err(|_| format!("{text:?} is not an octal mode such as \"0600\""))?,
    };
    if mode > 0o777 {
        return Err(format!(
            "{mode:o} (octal) is not a permission mode: write it as a string, \"0600\", or as 0o600"
        ));
    }
    Ok(mode)
}
