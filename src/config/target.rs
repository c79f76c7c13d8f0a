//! `credentials.NAME.targets[i]`: raw → typed. A target knows its kind's fields only
//! (a pgpass target has no `key`), its mode is a real permission mode, and a pgpass mode
//! that libpq would ignore is refused here rather than discovered by the app. INI keys,
//! TOML key paths, JSON Pointers and templates are parsed here, so a typo fails at load,
//! not at 3 a.m.
//!
//! Never looks at the file system but to read a `template` target's template file (as
//! [`crate::secure_read`] reads, at most 1 MiB; as root, only a file only root could have
//! changed, as the config itself): whether the path is writable is `check`'s question.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::locate::{At, Doc};
use super::names::valid_env_key;
use super::raw::{RawMode, RawPort, RawTarget};
use crate::target::template::{Origin, TEMPLATE_LIMIT, Template};
use crate::target::{ini, json, toml};

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
    /// `key` (and `expires_at_key`) in `section`; `None` is the part before the first
    /// section.
    Ini {
        section: Option<String>,
        key: String,
        expires_at_key: Option<String>,
    },
    Toml {
        key: toml::KeyPath,
        expires_at_key: Option<toml::KeyPath>,
    },
    Json {
        pointer: json::Pointer,
        expires_at_pointer: Option<json::Pointer>,
    },
    File {
        newline: bool,
    },
    /// The whole file, rendered from `template` for the credential `credential`.
    Template {
        credential: String,
        template: Template,
    },
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Dotenv { .. } => "dotenv",
            TargetKind::Pgpass { .. } => "pgpass",
            TargetKind::Ini { .. } => "ini",
            TargetKind::Toml { .. } => "toml",
            TargetKind::Json { .. } => "json",
            TargetKind::File { .. } => "file",
            TargetKind::Template { .. } => "template",
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

/// The target at `key`; `credential`: the credential it belongs to (`None`: a file that
/// holds no credential's token, such as the App Service header, which no template renders).
pub(super) fn target(
    doc: &Doc<'_>,
    start: usize,
    key: &str,
    raw: RawTarget,
    credential: Option<&str>,
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
        "ini" => ini_target(&at, &raw)?,
        "toml" => toml_target(&at, &raw)?,
        "json" => json_target(&at, &raw)?,
        "file" => file(&at, &raw)?,
        "template" => template_target(&at, &raw, credential)?,
        other => {
            return Err(at.err(
                "type",
                format!(
                    "unknown target type {other:?}, expected one of \"dotenv\", \"pgpass\", \"ini\", \"toml\", \"json\", \"file\", \"template\""
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
    fn only(&self, raw: &RawTarget, kind: &str, fields: &[&str]) -> Result<(), ConfigError> {
        let present = [
            ("key", raw.key.is_some()),
            ("expires_at_key", raw.expires_at_key.is_some()),
            ("section", raw.section.is_some()),
            ("pointer", raw.pointer.is_some()),
            ("expires_at_pointer", raw.expires_at_pointer.is_some()),
            ("host", raw.host.is_some()),
            ("port", raw.port.is_some()),
            ("database", raw.database.is_some()),
            ("username", raw.username.is_some()),
            ("newline", raw.newline.is_some()),
            ("template", raw.template.is_some()),
            ("inline", raw.inline.is_some()),
        ];
        match present
            .iter()
            .find(|(field, present)| *present && !fields.contains(field))
        {
            Some((field, _)) => {
                let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                Err(self.err(
                    field,
                    format!("`{field}` is not a field of {article} {kind} target"),
                ))
            }
            None => Ok(()),
        }
    }
}

fn dotenv(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    at.only(raw, "dotenv", &["key", "expires_at_key"])?;
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
    at.only(raw, "pgpass", &["host", "port", "database", "username"])?;
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
    at.only(raw, "file", &["newline"])?;
    Ok(TargetKind::File {
        newline: raw.newline.unwrap_or(true),
    })
}

fn ini_target(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    at.only(raw, "ini", &["section", "key", "expires_at_key"])?;
    let Some(key) = &raw.key else {
        return Err(at.err(
            "key",
            "an ini target needs `key`, the key it sets (such as \"token\")".into(),
        ));
    };
    for (field, value) in [
        ("key", Some(key)),
        ("expires_at_key", raw.expires_at_key.as_ref()),
    ] {
        if let Some(value) = value {
            ini::check_key(value).map_err(|why| at.err(field, format!("{value:?} {why}")))?;
        }
    }
    if let Some(section) = &raw.section {
        ini::check_section(section)
            .map_err(|why| at.err("section", format!("{section:?} {why}")))?;
    }
    if raw
        .expires_at_key
        .as_ref()
        .is_some_and(|e| e.to_lowercase() == key.to_lowercase())
    {
        return Err(at.err(
            "expires_at_key",
            "must differ from `key` (INI keys compare without case)".into(),
        ));
    }
    Ok(TargetKind::Ini {
        section: raw.section.clone(),
        key: key.clone(),
        expires_at_key: raw.expires_at_key.clone(),
    })
}

/// Two paths where one names the other or something inside it: the file could not hold
/// a string at both.
fn overlap(at: &At<'_, '_>, field: &str, nested: bool) -> Result<(), ConfigError> {
    if nested {
        Err(at.err(
            field,
            "must not be the same as, inside, or around the token's own path".into(),
        ))
    } else {
        Ok(())
    }
}

fn toml_target(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    at.only(raw, "toml", &["key", "expires_at_key"])?;
    let parse =
        |field: &str, text: &str| toml::KeyPath::parse(text).map_err(|why| at.err(field, why));
    let Some(key) = &raw.key else {
        return Err(at.err(
            "key",
            "a toml target needs `key`, the dotted key path it sets (such as \"database.password\")".into(),
        ));
    };
    let key = parse("key", key)?;
    let expires_at_key = match &raw.expires_at_key {
        Some(text) => Some(parse("expires_at_key", text)?),
        None => None,
    };
    if let Some(expiry) = &expires_at_key {
        overlap(
            at,
            "expires_at_key",
            expiry.starts_with(&key) || key.starts_with(expiry),
        )?;
    }
    Ok(TargetKind::Toml {
        key,
        expires_at_key,
    })
}

fn json_target(at: &At<'_, '_>, raw: &RawTarget) -> Result<TargetKind, ConfigError> {
    at.only(raw, "json", &["pointer", "expires_at_pointer"])?;
    let parse =
        |field: &str, text: &str| json::Pointer::parse(text).map_err(|why| at.err(field, why));
    let Some(pointer) = &raw.pointer else {
        return Err(at.err(
            "pointer",
            "a json target needs `pointer`, the JSON Pointer of the string it sets (such as \"/db/password\")".into(),
        ));
    };
    let pointer = parse("pointer", pointer)?;
    let expires_at_pointer = match &raw.expires_at_pointer {
        Some(text) => Some(parse("expires_at_pointer", text)?),
        None => None,
    };
    if let Some(expiry) = &expires_at_pointer {
        overlap(
            at,
            "expires_at_pointer",
            expiry.starts_with(&pointer) || pointer.starts_with(expiry),
        )?;
    }
    Ok(TargetKind::Json {
        pointer,
        expires_at_pointer,
    })
}

fn template_target(
    at: &At<'_, '_>,
    raw: &RawTarget,
    credential: Option<&str>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "template", &["template", "inline"])?;
    let Some(credential) = credential else {
        return Err(at.err(
            "type",
            "a template renders a credential's token; this file holds another secret: use a key of a file, or a `file`".into(),
        ));
    };
    let (origin, source) = match (&raw.template, &raw.inline) {
        (Some(path), None) => (Origin::File(path.clone()), read_template(at, path)?),
        (None, Some(text)) => (Origin::Inline, text.clone()),
        (Some(_), Some(_)) => {
            return Err(at.err(
                "inline",
                "give the template either as a file (`template`) or inline (`inline`), not both"
                    .into(),
            ));
        }
        (None, None) => {
            return Err(at.err(
                "template",
                "a template target needs `template`, the template file's path, or `inline`, its text".into(),
            ));
        }
    };
    let field = if raw.template.is_some() {
        "template"
    } else {
        "inline"
    };
    let template = Template::new(origin, source).map_err(|why| at.err(field, why))?;
    Ok(TargetKind::Template {
        credential: credential.to_owned(),
        template,
    })
}

/// The template file's text, read now: a reload reads it again, and a render at 3 a.m.
/// does not depend on a file still being there.
fn read_template(at: &At<'_, '_>, path: &std::path::Path) -> Result<String, ConfigError> {
    if !path.is_absolute() {
        return Err(at.err(
            "template",
            format!("{} must be an absolute path", path.display()),
        ));
    }
    let bytes = super::strict::read_limited(path, TEMPLATE_LIMIT).map_err(|e| {
        at.err(
            "template",
            format!("cannot read template {}: {e}", path.display()),
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        at.err(
            "template",
            format!("template {} is not UTF-8 text", path.display()),
        )
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
