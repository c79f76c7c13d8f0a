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
use super::raw::{RawMode, RawPgUser, RawPort, RawTarget};
pub use super::values::ValueOf;
use super::values::{Owner, Places};
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

    /// A `dotenv` target setting `key` to the token, without an expiry key.
    pub fn dotenv(path: impl Into<PathBuf>, key: &str) -> TargetConfig {
        TargetConfig::new(
            path,
            TargetKind::Dotenv {
                keys: vec![(key.to_owned(), ValueOf::Token)],
            },
        )
    }

    /// Every value this target writes (the token, its expiry, fields), each once.
    pub fn values(&self) -> Vec<&ValueOf> {
        let mut values: Vec<&ValueOf> = match &self.kind {
            TargetKind::Dotenv { keys } | TargetKind::Ini { keys, .. } => {
                keys.iter().map(|(_, v)| v).collect()
            }
            TargetKind::Toml { keys } => keys.iter().map(|(_, v)| v).collect(),
            TargetKind::Json { pointers } => pointers.iter().map(|(_, v)| v).collect(),
            TargetKind::Pgpass { password, .. } => vec![password],
            TargetKind::File { value, .. } => vec![value],
            TargetKind::Template { .. } => Vec::new(),
        };
        values.dedup();
        values
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Each variable of `keys` set to its value, in order.
    Dotenv {
        keys: Vec<(String, ValueOf)>,
    },
    /// The one line for `host`, `port` and `database` and the user: a fixed `username` (one
    /// of four fields that identify the line), or a field of the credential (then the line
    /// is the one for `host`, `port` and `database`, whatever user it held).
    Pgpass {
        host: String,
        port: String,
        database: String,
        username: PgUser,
        password: ValueOf,
    },
    /// Each key of `keys` in `section`; `None` is the part before the first section.
    Ini {
        section: Option<String>,
        keys: Vec<(String, ValueOf)>,
    },
    Toml {
        keys: Vec<(toml::KeyPath, ValueOf)>,
    },
    Json {
        pointers: Vec<(json::Pointer, ValueOf)>,
    },
    File {
        newline: bool,
        value: ValueOf,
    },
    /// The whole file, rendered from `template` for the credential `credential`, with the
    /// values of the credentials it `uses` beside its own.
    Template {
        credential: String,
        uses: Vec<String>,
        template: Template,
    },
}

/// A `.pgpass` line's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgUser {
    Fixed(String),
    Field(String),
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
    credential: Option<Owner<'_>>,
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
        "dotenv" => dotenv(&at, &raw, credential)?,
        "pgpass" => pgpass(&at, &raw, mode, credential)?,
        "ini" => ini_target(&at, &raw, credential)?,
        "toml" => toml_target(&at, &raw, credential)?,
        "json" => json_target(&at, &raw, credential)?,
        "file" => file(&at, &raw, credential)?,
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
            ("keys", raw.keys.is_some()),
            ("pointers", raw.pointers.is_some()),
            ("password", raw.password.is_some()),
            ("value", raw.value.is_some()),
            ("uses", raw.uses.is_some()),
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

fn dotenv(
    at: &At<'_, '_>,
    raw: &RawTarget,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "dotenv", &["key", "expires_at_key", "keys"])?;
    let places = Places {
        key: ("key", raw.key.as_ref()),
        expiry: ("expires_at_key", raw.expires_at_key.as_ref()),
        keys: ("keys", raw.keys.as_ref()),
    };
    let keys = places.parse(
        at,
        owner,
        |field, text| {
            if valid_env_key(text) {
                Ok(text.to_owned())
            } else {
                Err(at.err(
                    field,
                    format!("{text:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                ))
            }
        },
        |a, b| a == b,
        "a dotenv target needs `key`, the variable it sets to the token, or `keys`",
    )?;
    Ok(TargetKind::Dotenv { keys })
}

fn pgpass(
    at: &At<'_, '_>,
    raw: &RawTarget,
    mode: Option<u32>,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(
        raw,
        "pgpass",
        &["host", "port", "database", "username", "password"],
    )?;
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
    let username = match &raw.username {
        Some(RawPgUser::Field { field }) => {
            match super::values::value_of(at, "username.field", field, owner)? {
                ValueOf::Field(name) => PgUser::Field(name),
                _ => {
                    return Err(at.err(
                        "username.field",
                        "names the token or its expiry, not a field that holds a user".into(),
                    ));
                }
            }
        }
        Some(RawPgUser::Name(name)) => PgUser::Fixed(need(Some(name), "username")?),
        None => PgUser::Fixed(need(None, "username")?),
    };
    let password = match &raw.password {
        Some(name) => super::values::value_of(at, "password", name, owner)?,
        None => ValueOf::Token,
    };
    Ok(TargetKind::Pgpass {
        host: need(raw.host.as_deref(), "host")?,
        port,
        database: need(raw.database.as_deref(), "database")?,
        username,
        password,
    })
}

fn file(
    at: &At<'_, '_>,
    raw: &RawTarget,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "file", &["newline", "value"])?;
    let value = match &raw.value {
        Some(name) => super::values::value_of(at, "value", name, owner)?,
        None => ValueOf::Token,
    };
    Ok(TargetKind::File {
        newline: raw.newline.unwrap_or(true),
        value,
    })
}

fn ini_target(
    at: &At<'_, '_>,
    raw: &RawTarget,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "ini", &["section", "key", "expires_at_key", "keys"])?;
    if let Some(section) = &raw.section {
        ini::check_section(section)
            .map_err(|why| at.err("section", format!("{section:?} {why}")))?;
    }
    let places = Places {
        key: ("key", raw.key.as_ref()),
        expiry: ("expires_at_key", raw.expires_at_key.as_ref()),
        keys: ("keys", raw.keys.as_ref()),
    };
    let keys = places.parse(
        at,
        owner,
        |field, text| {
            ini::check_key(text)
                .map(|()| text.to_owned())
                .map_err(|why| at.err(field, format!("{text:?} {why}")))
        },
        // INI keys compare without case.
        |a, b| a.to_lowercase() == b.to_lowercase(),
        "an ini target needs `key`, the key it sets to the token (such as \"token\"), or `keys`",
    )?;
    Ok(TargetKind::Ini {
        section: raw.section.clone(),
        keys,
    })
}

fn toml_target(
    at: &At<'_, '_>,
    raw: &RawTarget,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "toml", &["key", "expires_at_key", "keys"])?;
    let places = Places {
        key: ("key", raw.key.as_ref()),
        expiry: ("expires_at_key", raw.expires_at_key.as_ref()),
        keys: ("keys", raw.keys.as_ref()),
    };
    let keys = places.parse(
        at,
        owner,
        |field, text| toml::KeyPath::parse(text).map_err(|why| at.err(field, why)),
        // A file cannot hold a string at a path and inside it.
        |a, b| a.starts_with(b) || b.starts_with(a),
        "a toml target needs `key`, the dotted key path it sets to the token (such as \"database.password\"), or `keys`",
    )?;
    Ok(TargetKind::Toml { keys })
}

fn json_target(
    at: &At<'_, '_>,
    raw: &RawTarget,
    owner: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "json", &["pointer", "expires_at_pointer", "pointers"])?;
    let places = Places {
        key: ("pointer", raw.pointer.as_ref()),
        expiry: ("expires_at_pointer", raw.expires_at_pointer.as_ref()),
        keys: ("pointers", raw.pointers.as_ref()),
    };
    let pointers = places.parse(
        at,
        owner,
        |field, text| json::Pointer::parse(text).map_err(|why| at.err(field, why)),
        // A document cannot hold a string at a pointer and inside it.
        |a, b| a.starts_with(b) || b.starts_with(a),
        "a json target needs `pointer`, the JSON Pointer of the string it sets to the token (such as \"/db/password\"), or `pointers`",
    )?;
    Ok(TargetKind::Json { pointers })
}

fn template_target(
    at: &At<'_, '_>,
    raw: &RawTarget,
    credential: Option<Owner<'_>>,
) -> Result<TargetKind, ConfigError> {
    at.only(raw, "template", &["template", "inline", "uses"])?;
    let Some(Owner {
        name: credential, ..
    }) = credential
    else {
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
    let uses = raw.uses.clone().unwrap_or_default();
    if let Some(own) = uses.iter().find(|u| *u == credential) {
        return Err(at.err(
            "uses",
            format!(
                "names `{own}`, the credential this target belongs to: its values are there already"
            ),
        ));
    }
    Ok(TargetKind::Template {
        credential: credential.to_owned(),
        uses,
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
