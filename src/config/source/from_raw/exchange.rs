//! `oauth-token-exchange` (RFC 8693), raw → typed: a subject token from exactly one
//! place, client authentication only when the provider wants one.
//!
//! Must never: read the subject token or run its command (that is each exchange's job).

use super::super::super::locate::At;
use super::super::super::raw::{RawSubjectToken, RawTokenExchange};
use super::{RawClient, client_auth};
use crate::config::ConfigError;
use crate::config::source::*;

/// `oauth-token-exchange`: a subject from exactly one place, a client only when asked for.
pub(super) fn token_exchange(
    at: &At<'_, '_>,
    raw: RawTokenExchange,
) -> Result<SourceConfig, ConfigError> {
    let RawTokenExchange {
        token_url,
        subject_token,
        subject_token_type,
        requested_token_type,
        audience,
        resource,
        scopes,
        client_id,
        client_secret,
        private_key,
        key_id,
        x5t,
        client_assertion,
        auth,
        params,
    } = raw;
    at.http_url(&token_url, "token_url")?;
    let client = client_auth(
        at,
        RawClient {
            client_secret,
            private_key,
            key_id,
            x5t,
            // `audience` is the exchange's own parameter; the assertion's is the token URL.
            audience: None,
            client_assertion,
            auth,
            client_cert: None,
            client_key: None,
        },
    )?;
    if client_id.as_deref().is_some_and(str::is_empty) || (client.is_some() && client_id.is_none())
    {
        return Err(at.err(
            "client_id",
            "must name the client (not empty) when the client authenticates".into(),
        ));
    }
    for (field, value) in [
        ("subject_token_type", &subject_token_type),
        ("requested_token_type", &requested_token_type),
        ("audience", &audience),
        ("resource", &resource),
    ] {
        if value.as_deref().is_some_and(str::is_empty) {
            return Err(at.err(field, "must not be empty (leave it out instead)".into()));
        }
    }
    let subject = subject(at, "subject_token", subject_token)?;
    Ok(SourceConfig::OauthTokenExchange(Box::new(
        TokenExchangeSource {
            token_url,
            subject,
            subject_token_type: subject_token_type
                .unwrap_or_else(|| DEFAULT_SUBJECT_TOKEN_TYPE.to_owned()),
            requested_token_type,
            audience,
            resource,
            scopes,
            client_id,
            client,
            params,
        },
    )))
}

/// A token read afresh for every request (`subject_token`, `web_identity_token`): exactly
/// one of `file`, `env`, `systemd`, `credential` and `command`; `key` names it in errors.
pub(super) fn subject(
    at: &At<'_, '_>,
    key: &str,
    raw: RawSubjectToken,
) -> Result<SubjectToken, ConfigError> {
    let RawSubjectToken {
        file,
        env,
        systemd,
        credential,
        command,
    } = raw;
    let given = [
        file.is_some(),
        env.is_some(),
        systemd.is_some(),
        credential.is_some(),
        command.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(at.err(
            key,
            "give exactly one of { file = \"/var/run/secrets/tokens/…\" }, { credential = \"NAME\" }, { command = [\"…\"] }, { env = \"…\" } or { systemd = \"…\" }".into(),
        ));
    }
    let empty = |what: &str| at.err(key, format!("`{what}` must not be empty"));
    if let Some(file) = file {
        if !file.is_absolute() {
            return Err(at.err(key, format!("{} must be an absolute path", file.display())));
        }
        return Ok(SubjectToken::Secret(SecretRef::File(file)));
    }
    if let Some(name) = env {
        return Ok(SubjectToken::Secret(SecretRef::Env(name)));
    }
    if let Some(name) = systemd {
        return Ok(SubjectToken::Secret(SecretRef::Systemd(name)));
    }
    if let Some(name) = credential {
        if name.is_empty() {
            return Err(empty("credential"));
        }
        return Ok(SubjectToken::Credential(name));
    }
    let argv = command.unwrap_or_default();
    if argv.first().is_none_or(String::is_empty) {
        return Err(empty("command"));
    }
    Ok(SubjectToken::Command(CommandSource {
        argv,
        format: CommandFormat::Auto(JsonFields::default()),
        env: BTreeMap::new(),
        inherit_env: Vec::new(),
    }))
}
