//! Reads a token and its expiry out of a JSON document (a command's stdout, an API's
//! answer) by JSON pointer or field name. Errors describe the document's shape, never a value.

use std::time::Duration;

use serde_json::Value;

use crate::token::parse_rfc3339;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Expiry {
    pub expires_in: Option<Duration>,
    pub expires_at: Option<time::OffsetDateTime>,
}

/// What a source read from one document: the token, its expiry and its named fields.
#[cfg_attr(test, derive(Debug))]
pub(super) struct Parsed {
    pub token: String,
    pub expiry: Option<Expiry>,
    pub fields: crate::token::Fields,
}

/// What a source read from a document: the token, with what the document said of its
/// expiry, and the fields read beside it.
pub(super) fn fetched(
    token: String,
    expiry: Option<Expiry>,
    fields: crate::token::Fields,
) -> crate::token::Fetched {
    crate::token::Fetched {
        expires_in: expiry.and_then(|e| e.expires_in),
        expires_at: expiry.and_then(|e| e.expires_at),
        fields,
        ..crate::token::Fetched::new(secrecy::SecretString::from(token))
    }
}

/// The token at `token_field` (else a conventional name) and the expiry at `expiry_field`
/// (else a conventional name, if any).
pub(super) fn token_and_expiry(
    value: &Value,
    token_field: Option<&str>,
    expiry_field: Option<&str>,
) -> Result<(String, Option<Expiry>), String> {
    let token = match token_field {
        Some(field) => lookup(value, field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no string at token_field {field:?}"))?,
        None => ["access_token", "token", "accessToken"]
            .iter()
            .find_map(|f| value.get(f).and_then(Value::as_str))
            .ok_or("no `access_token` or `token` field (set token_field)")?,
    };
    if token.is_empty() {
        return Err("the token field is empty".to_owned());
    }
    let expiry = match expiry_field {
        Some(field) => Some(read_expiry(
            lookup(value, field).ok_or_else(|| format!("no value at expiry_field {field:?}"))?,
            field,
        )?),
        None => [
            "expiry",
            "expires_at",
            "expiration_time",
            "expiresAt",
            "expires_on",
            "expires_in",
        ]
        .iter()
        .find_map(|f| value.get(f).map(|v| read_expiry(v, f)))
        .transpose()?,
    };
    Ok((token.to_owned(), expiry))
}

/// The value at each of `wanted` (name → JSON pointer or field name): a string as it is, a
/// number as its decimal text. A missing one, or one of another type, is an error naming
/// the field and where it was looked for, never a value.
pub(super) fn named(
    value: &Value,
    wanted: &std::collections::BTreeMap<String, String>,
) -> Result<crate::token::Fields, String> {
    wanted
        .iter()
        .map(|(name, at)| {
            let text = match lookup(value, at) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => {
                    return Err(format!(
                        "fields.{name}: the value at {at:?} is not a string or a number"
                    ));
                }
                None => return Err(format!("fields.{name}: no value at {at:?}")),
            };
            Ok((name.clone(), secrecy::SecretString::from(text)))
        })
        .collect()
}

/// A JSON pointer (`/data/token`) or a top-level field name.
pub(super) fn lookup<'v>(value: &'v Value, field: &str) -> Option<&'v Value> {
    if field.starts_with('/') {
        value.pointer(field)
    } else {
        value.get(field)
    }
}

/// RFC 3339 text, epoch seconds (absolute), or `expires_in`-style relative seconds.
pub(super) fn read_expiry(value: &Value, field: &str) -> Result<Expiry, String> {
    let relative = field.ends_with("expires_in");
    let seconds = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match parse_rfc3339(s) {
            Some(at) if !crate::token::is_sane(at) => {
                return Err(format!(
                    "{field:?} is not a time between 1970 and the year 9000"
                ));
            }
            Some(at) => {
                return Ok(Expiry {
                    expires_at: Some(at),
                    expires_in: None,
                });
            }
            None => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| format!("{field:?} is neither an RFC 3339 time nor a number of seconds"))?;
    if relative {
        Ok(Expiry {
            expires_in: Some(
                crate::token::seconds(seconds)
                    .ok_or_else(|| format!("{field:?} is not a usable number of seconds"))?,
            ),
            expires_at: None,
        })
    } else {
        let at = crate::token::unix_time(seconds)
            .ok_or_else(|| format!("{field:?} is not a time between 1970 and the year 9000"))?;
        Ok(Expiry {
            expires_at: Some(at),
            expires_in: None,
        })
    }
}
