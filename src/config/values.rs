//! What a target puts where: `key`, `expires_at_key` and `keys = { PLACE = "VALUE" }` of a
//! target, raw → one ordered list of (place, value), each value the token, its expiry, its
//! type, or a field its credential's source declares.
//!
//! A field the source does not declare is refused here, at load, with its key: a target that
//! would wait for a value no answer holds is a typo, not a 3 a.m. surprise. Never reads a
//! file or a value: only names.

use std::collections::BTreeMap;

use super::ConfigError;
use super::locate::At;

/// What a target writes at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueOf {
    Token,
    /// The token's expiry, RFC 3339 in UTC.
    ExpiresAt,
    /// `Bearer`, or what the provider said.
    TokenType,
    /// A field the credential's source yields beside the token.
    Field(String),
}

/// The names a `keys` entry may give that are not fields.
pub const BUILT_IN: [&str; 3] = ["token", "expires_at", "token_type"];

impl ValueOf {
    /// The value's name as the config writes it.
    pub fn name(&self) -> &str {
        match self {
            ValueOf::Token => "token",
            ValueOf::ExpiresAt => "expires_at",
            ValueOf::TokenType => "token_type",
            ValueOf::Field(name) => name,
        }
    }
}

/// The credential a target belongs to, as far as its target needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub name: &'a str,
    /// The fields its source declares.
    pub fields: &'a [String],
}

/// The value named `name`, a built-in or one of `owner`'s fields; the error names `field`.
pub(super) fn value_of(
    at: &At<'_, '_>,
    field: &str,
    name: &str,
    owner: Option<Owner<'_>>,
) -> Result<ValueOf, ConfigError> {
    match name {
        "token" => return Ok(ValueOf::Token),
        "expires_at" => return Ok(ValueOf::ExpiresAt),
        "token_type" => return Ok(ValueOf::TokenType),
        _ => {}
    }
    let fields = owner.map(|o| o.fields).unwrap_or_default();
    if fields.iter().any(|f| f == name) {
        return Ok(ValueOf::Field(name.to_owned()));
    }
    let known = BUILT_IN
        .iter()
        .copied()
        .chain(fields.iter().map(String::as_str))
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(at.err(
        field,
        format!(
            "{name:?} is not a value this credential has: one of {known} (a field must be declared by the source's `fields`)"
        ),
    ))
}

/// The places a target of one kind sets, in order: `key` (the token), `expires_at_key`,
/// then each of `keys`. Each place is parsed by `parse` (its field name, its text); at
/// least one is required, and none may be given twice (`same` says when two places are
/// one).
pub(super) struct Places<'r> {
    pub key: (&'static str, Option<&'r String>),
    pub expiry: (&'static str, Option<&'r String>),
    pub keys: (&'static str, Option<&'r BTreeMap<String, String>>),
}

impl Places<'_> {
    pub(super) fn parse<L>(
        &self,
        at: &At<'_, '_>,
        owner: Option<Owner<'_>>,
        parse: impl Fn(&str, &str) -> Result<L, ConfigError>,
        same: impl Fn(&L, &L) -> bool,
        needed: &str,
    ) -> Result<Vec<(L, ValueOf)>, ConfigError> {
        let mut edits: Vec<(L, ValueOf)> = Vec::new();
        let mut push = |field: String, place: L, value: ValueOf| {
            if edits.iter().any(|(other, _)| same(other, &place)) {
                return Err(at.err(
                    &field,
                    "must differ from every other place this target sets: not the same as, inside, or around one".into(),
                ));
            }
            edits.push((place, value));
            Ok(())
        };
        if let (field, Some(text)) = self.key {
            push(field.to_owned(), parse(field, text)?, ValueOf::Token)?;
        }
        if let (field, Some(text)) = self.expiry {
            push(field.to_owned(), parse(field, text)?, ValueOf::ExpiresAt)?;
        }
        if let (field, Some(map)) = self.keys {
            for (place, name) in map {
                let key = format!("{field}.{place}");
                let value = value_of(at, &key, name, owner)?;
                push(key.clone(), parse(&key, place)?, value)?;
            }
        }
        if edits.is_empty() {
            return Err(at.err(self.key.0, needed.to_owned()));
        }
        Ok(edits)
    }
}
