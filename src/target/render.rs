//! What a target's file becomes: one rotation's [`Values`] of a credential (its token,
//! expiry, fields, and the current tokens of the credentials a template uses) put into the
//! file's current content by its format's editor, or rendered whole from a template; and
//! `check`'s render of a template against samples.
//!
//! Pure: reads no file but through the `uses` look-up it is given, writes nothing, and no
//! error it returns holds a value.

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::{MAX_TARGET, TargetError, dotenv, failed, ini, json, pgpass, template, toml};
use crate::config::{PgUser, TargetConfig, TargetKind, ValueOf};
use crate::token::{Fields, Token};

/// One rotation's values of a credential: everything any of its targets writes. Every
/// target of a credential is written from one of these, so no file ever pairs a field of
/// one rotation with a token of another.
pub struct Values<'a> {
    pub credential: &'a str,
    pub token: &'a SecretString,
    pub token_type: &'a str,
    pub expires_at: OffsetDateTime,
    pub fields: &'a Fields,
    /// The current token of a credential a template `uses`; `None` while it has none.
    pub uses: &'a (dyn Fn(&str) -> Option<Token> + Sync),
}

/// No fields, and no other credential's token.
pub(super) const NOTHING_USED: &(dyn Fn(&str) -> Option<Token> + Sync) = &|_| None;

impl<'a> Values<'a> {
    /// A bare token's values: no fields, nothing a template uses.
    pub fn of_token(token: &'a SecretString, expires_at: OffsetDateTime) -> Values<'a> {
        static NO_FIELDS: std::sync::LazyLock<Fields> = std::sync::LazyLock::new(Fields::new);
        Values {
            credential: "",
            token,
            token_type: "Bearer",
            expires_at,
            fields: &NO_FIELDS,
            uses: NOTHING_USED,
        }
    }

    /// `token`'s values, as `credential` holds them.
    pub fn of(
        credential: &'a str,
        token: &'a Token,
        uses: &'a (dyn Fn(&str) -> Option<Token> + Sync),
    ) -> Values<'a> {
        Values {
            credential,
            token: &token.access_token,
            token_type: "Bearer",
            expires_at: token.expires_at,
            fields: &token.fields,
            uses,
        }
    }

    /// The text of `value`; a field this rotation's answer did not hold is an error.
    pub(super) fn get(&self, value: &ValueOf) -> Result<std::borrow::Cow<'a, str>, String> {
        use std::borrow::Cow;
        Ok(match value {
            ValueOf::Token => Cow::Borrowed(self.token.expose_secret()),
            ValueOf::ExpiresAt => Cow::Owned(crate::token::rfc3339(self.expires_at)),
            ValueOf::TokenType => Cow::Borrowed(self.token_type),
            ValueOf::Field(name) => match self.fields.get(name) {
                Some(v) => Cow::Borrowed(v.expose_secret()),
                None => {
                    return Err(format!(
                        "the source's answer held no `{name}` field this time: nothing written"
                    ));
                }
            },
        })
    }
}

/// The file's new content given its current content.
pub(super) fn render(
    target: &TargetConfig,
    current: &[u8],
    values: &Values<'_>,
) -> Result<Vec<u8>, String> {
    // Each place with its value's text: a missing field fails here, before any edit.
    fn texts<'p, L>(
        places: &'p [(L, ValueOf)],
        values: &Values<'_>,
    ) -> Result<Vec<(&'p L, String)>, String> {
        places
            .iter()
            .map(|(place, value)| Ok((place, values.get(value)?.into_owned())))
            .collect()
    }
    match &target.kind {
        TargetKind::Dotenv { keys } => {
            let mut content = current.to_vec();
            for (key, text) in texts(keys, values)? {
                let quoted = dotenv::quote(&text).map_err(|e| e.to_string())?;
                content = dotenv::set(&content, key, &quoted);
            }
            Ok(content)
        }
        TargetKind::Pgpass {
            host,
            port,
            database,
            username,
            password,
        } => pgpass_line(
            target,
            current,
            values,
            (host, port, database),
            username,
            password,
        ),
        TargetKind::Ini { section, keys } => {
            let texts = texts(keys, values)?;
            let edits: Vec<(&str, &str)> = texts
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            ini::set(current, section.as_deref(), &edits).map_err(|e| e.to_string())
        }
        TargetKind::Toml { keys } => {
            let texts = texts(keys, values)?;
            let edits: Vec<_> = texts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            toml::set(current, &edits).map_err(|e| e.to_string())
        }
        TargetKind::Json { pointers } => {
            let texts = texts(pointers, values)?;
            let edits: Vec<_> = texts.iter().map(|(p, v)| (*p, v.as_str())).collect();
            json::set(current, &edits).map_err(|e| e.to_string())
        }
        TargetKind::Template {
            credential,
            uses,
            template,
        } => render_with_uses(template, credential, uses, values),
        TargetKind::File { newline, value } => {
            let value = values.get(value)?;
            if value.contains(['\n', '\r', '\0']) {
                return Err(
                    "the value holds a line break or a NUL: a reader of the file would see two values, or a cut one; not written".to_owned(),
                );
            }
            let mut content = value.as_bytes().to_vec();
            if *newline {
                content.push(b'\n');
            }
            Ok(content)
        }
    }
}

/// `template` rendered for `credential`'s `values` and the current values of those it `uses`.
fn render_with_uses(
    template: &template::Template,
    credential: &str,
    uses: &[String],
    values: &Values<'_>,
) -> Result<Vec<u8>, String> {
    let used = used_tokens(uses, values)?;
    let used: Vec<Values<'_>> = used
        .iter()
        .map(|(name, token)| Values::of(name, token, NOTHING_USED))
        .collect();
    let mut vars = template_vars(credential, values);
    vars.uses = used
        .iter()
        .map(|v| template_vars(v.credential, v))
        .collect();
    render_template(template, &vars)
}

/// The current token of each credential a template `uses`; one without a token yet stops
/// the render (the file keeps what it holds until that credential has one).
fn used_tokens<'u>(
    uses: &'u [String],
    values: &Values<'_>,
) -> Result<Vec<(&'u str, Token)>, String> {
    uses.iter()
        .map(|name| {
            (values.uses)(name)
                .map(|token| (name.as_str(), token))
                .ok_or_else(|| {
                    format!(
                        "the template uses credential `{name}`, which has no token yet: not written"
                    )
                })
        })
        .collect()
}

/// A template's variables for one credential's `values`.
fn template_vars<'v>(credential: &'v str, values: &'v Values<'_>) -> template::Vars<'v> {
    let mut vars = template::Vars::of(credential, values.token.expose_secret(), values.expires_at);
    vars.token_type = values.token_type;
    vars.fields = values
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.expose_secret()))
        .collect();
    vars
}

/// A `.pgpass` line: its user fixed, or one of the values (then the line is found by host,
/// port and database alone).
fn pgpass_line(
    target: &TargetConfig,
    current: &[u8],
    values: &Values<'_>,
    (host, port, database): (&str, &str, &str),
    username: &PgUser,
    password: &ValueOf,
) -> Result<Vec<u8>, String> {
    let password = values.get(password)?;
    let (username, by_place) = match username {
        PgUser::Fixed(name) => (std::borrow::Cow::Borrowed(name.as_str()), false),
        PgUser::Field(name) => (values.get(&ValueOf::Field(name.clone()))?, true),
    };
    let entry = pgpass::Entry {
        host,
        port,
        database,
        username: &username,
    };
    let edited = if by_place {
        pgpass::set_by_place(current, &entry, &password)
    } else {
        pgpass::set(current, &entry, &password)
    }
    .map_err(|e| e.to_string())?;
    if let Some(line) = edited.shadowed_by_line {
        tracing::warn!(
            target_path = %target.path.display(),
            "line {line} of the .pgpass matches this host/port/database/username with wildcards and comes first: libpq will use its password, not refreshd's"
        );
    }
    Ok(edited.content)
}

/// The whole file, from `template`; no larger than any target refreshd reads.
fn render_template(
    template: &template::Template,
    vars: &template::Vars,
) -> Result<Vec<u8>, String> {
    let limit = usize::try_from(MAX_TARGET).unwrap_or(usize::MAX);
    template.render(vars, limit).map(String::into_bytes)
}

/// What `check` knows of a credential a template renders: its stored token, if any, and
/// the fields its source declares.
pub struct Sample {
    pub stored: Option<Token>,
    pub fields: Vec<String>,
}

/// Renders a `template` target's template without writing (for `check`), so an undefined
/// variable is found now: for the credential and each it `uses` (`sample` says what is
/// known of one; `None`: no such credential), the stored token, its own claims and
/// fields; without one, a sample token whose every claim exists and each declared field
/// (which claims a provider sends is unknown until it sends a token; it expires an hour
/// after `now`). Every other kind has nothing to render: `Ok`.
pub fn check_render(
    target: &TargetConfig,
    sample: &dyn Fn(&str) -> Option<Sample>,
    now: OffsetDateTime,
) -> Result<(), TargetError> {
    let TargetKind::Template {
        credential,
        uses,
        template,
    } = &target.kind
    else {
        return Ok(());
    };
    let fail = |reason: String| failed(&target.path, reason);
    let samples = std::iter::once(credential)
        .chain(uses)
        .map(|name| {
            sample(name).map(|s| (name.as_str(), s)).ok_or_else(|| {
                fail(format!(
                    "the template uses credential `{name}`, which this config does not define"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sample_token = SecretString::from("sample-token");
    let sample_value = SecretString::from("sample-field");
    let tokens: Vec<(&str, Token, bool)> = samples
        .into_iter()
        .map(|(name, sample)| {
            let real = sample.stored.is_some();
            let mut token = sample
                .stored
                .unwrap_or_else(|| Token::sample(&sample_token, now + time::Duration::hours(1)));
            for field in sample.fields {
                token
                    .fields
                    .entry(field)
                    .or_insert_with(|| sample_value.clone());
            }
            (name, token, real)
        })
        .collect();
    let values: Vec<Values<'_>> = tokens
        .iter()
        .map(|(name, token, _)| Values::of(name, token, NOTHING_USED))
        .collect();
    let mut vars: Vec<template::Vars<'_>> = tokens
        .iter()
        .zip(&values)
        .map(|((name, _, real), values)| {
            let mut vars = template_vars(name, values);
            if !real {
                vars.claims = template::Claims::Any;
            }
            vars
        })
        .collect();
    let mut own = vars.remove(0);
    own.uses = vars;
    render_template(template, &own).map(drop).map_err(fail)
}
