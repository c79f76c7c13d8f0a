//! Raw source → typed source: the checks the design makes of each source type, and the
//! conversion into the types of [`super`], which cannot hold what was refused here. One
//! function per source type; a chain's members go through [`source`] again.
//!
//! Must never: resolve a secret or reach the network or a file to judge a source: whether
//! an endpoint answers is `check --online`'s question.

use url::Url;

use super::super::locate::{At, Doc};
use super::super::names::valid_env_key;
use super::super::raw::{
    RawBody, RawChain, RawClientCredentials, RawCommand, RawCommandFormat, RawGoogleAuthorizedUser,
    RawGoogleServiceAccount, RawHttp, RawOauthRefresh, RawSource,
};
use super::*;
use crate::config::ConfigError;
use crate::secret::SecretRef;

mod aws;
mod client;
mod exchange;

use client::{CLIENT_KEYS, RawClient, client_auth, secret_auth, tls_client};

/// Validates one raw source; `start` is where it sits in the file, `key` its dotted key.
pub(in crate::config) fn source(
    doc: &Doc<'_>,
    start: usize,
    key: &str,
    raw: RawSource,
) -> Result<SourceConfig, ConfigError> {
    let at = At { doc, start, key };
    match raw {
        RawSource::OauthRefresh(s) => oauth_refresh(&at, *s),
        RawSource::OauthClientCredentials(s) => client_credentials(&at, s),
        RawSource::Command(s) => command(&at, s),
        RawSource::Http(s) => http(&at, s),
        RawSource::GoogleServiceAccount(s) => google_service_account(&at, s),
        RawSource::GoogleAuthorizedUser(s) => google_authorized_user(&at, s),
        RawSource::Chain(s) => chain(&at, s),
        RawSource::OauthTokenExchange(s) => exchange::token_exchange(&at, *s),
        RawSource::AwsWebIdentity(s) => aws::web_identity(&at, s),
        RawSource::AwsRdsIam(s) => aws::rds_iam(&at, s),
    }
}

impl At<'_, '_> {
    /// Tokens travel over it: TLS, except to this host, where there is no wire to tap.
    fn http_url(&self, url: &Url, field: &str) -> Result<(), ConfigError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if is_loopback_url(url) => Ok(()),
            _ => Err(self.err(
                field,
                format!("{url} must be https (plain http is allowed only on loopback)"),
            )),
        }
    }

    /// Both OAuth sources: a token endpoint we may talk to and a client to talk as.
    fn client(&self, token_url: &Url, client_id: &str) -> Result<(), ConfigError> {
        self.http_url(token_url, "token_url")?;
        if client_id.is_empty() {
            return Err(self.err("client_id", "must not be empty".into()));
        }
        Ok(())
    }
}

fn oauth_refresh(at: &At<'_, '_>, raw: RawOauthRefresh) -> Result<SourceConfig, ConfigError> {
    let RawOauthRefresh {
        token_url,
        client_id,
        client_secret,
        refresh_token,
        scopes,
        auth,
        params,
        authorize_url,
        device_authorization_url,
        issuer,
        redirect_uri,
        authorize_params,
        client_cert,
        client_key,
    } = raw;
    at.client(&token_url, &client_id)?;
    let tls_client = tls_client(at, Some(auth), client_cert, client_key)?;
    if tls_client.is_some() && client_secret.is_some() {
        return Err(at.err(
            "client_secret",
            "a client that authenticates with its TLS certificate sends no secret: remove `client_secret` or `auth`".into(),
        ));
    }
    for (field, url) in [
        ("authorize_url", &authorize_url),
        ("device_authorization_url", &device_authorization_url),
        ("issuer", &issuer),
    ] {
        if let Some(url) = url {
            at.http_url(url, field)?;
        }
    }
    if let Some(uri) = &redirect_uri
        && (uri.scheme() != "http" || !is_loopback_url(uri))
    {
        return Err(at.err(
            "redirect_uri",
            format!(
                "{uri} must be an http URL on a loopback host (127.0.0.1, [::1] or localhost; RFC 8252): refreshd listens there for the login redirect"
            ),
        ));
    }
    Ok(SourceConfig::OauthRefresh(Box::new(OauthRefreshSource {
        token_url,
        client_id,
        client_secret,
        auth: secret_auth(auth),
        tls_client,
        refresh_token,
        scopes,
        params,
        authorize_url,
        device_authorization_url,
        issuer,
        redirect_uri,
        authorize_params,
    })))
}

fn client_credentials(
    at: &At<'_, '_>,
    raw: RawClientCredentials,
) -> Result<SourceConfig, ConfigError> {
    let RawClientCredentials {
        token_url,
        client_id,
        client_secret,
        private_key,
        key_id,
        x5t,
        audience,
        scopes,
        auth,
        client_assertion,
        params,
        client_cert,
        client_key,
    } = raw;
    at.client(&token_url, &client_id)?;
    let client = client_auth(
        at,
        RawClient {
            client_secret,
            private_key,
            key_id,
            x5t,
            audience,
            client_assertion,
            auth,
            client_cert,
            client_key,
        },
    )?
    .ok_or_else(|| at.err("", format!("give exactly one of {CLIENT_KEYS}")))?;
    Ok(SourceConfig::OauthClientCredentials(
        ClientCredentialsSource {
            token_url,
            client_id,
            client,
            scopes,
            params,
        },
    ))
}

fn command(at: &At<'_, '_>, raw: RawCommand) -> Result<SourceConfig, ConfigError> {
    let RawCommand {
        argv,
        format,
        token_field,
        expiry_field,
        fields: named,
        env,
        inherit_env,
    } = raw;
    if argv.is_empty() || argv[0].is_empty() {
        return Err(at.err(
            "argv",
            "must name a program: [\"databricks\", \"auth\", \"token\", …]".into(),
        ));
    }
    command_env(at, &env, &inherit_env)?;
    named_fields(at, &named)?;
    let fields = JsonFields {
        token_field,
        expiry_field,
        fields: named,
    };
    let format = match format {
        RawCommandFormat::Auto => CommandFormat::Auto(fields),
        RawCommandFormat::Json => CommandFormat::Json(fields),
        RawCommandFormat::Plain => {
            if fields != JsonFields::default() {
                return Err(at.err(
                    "",
                    "`token_field`, `expiry_field` and `fields` need format = \"json\" or \"auto\""
                        .into(),
                ));
            }
            CommandFormat::Plain
        }
    };
    Ok(SourceConfig::Command(CommandSource {
        argv,
        format,
        env,
        inherit_env,
    }))
}

/// The variables a command gets: real names, and none of the `REFRESHD_*` that refreshd
/// sets itself (a config could otherwise lie to the command about what it is refreshing).
fn command_env(
    at: &At<'_, '_>,
    env: &BTreeMap<String, String>,
    inherit_env: &[String],
) -> Result<(), ConfigError> {
    for name in env.keys().chain(inherit_env) {
        let field = if env.contains_key(name) {
            "env"
        } else {
            "inherit_env"
        };
        if !valid_env_key(name) {
            return Err(at.err(
                field,
                format!("{name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if name.starts_with("REFRESHD_") {
            return Err(at.err(
                field,
                format!("{name} is refreshd's own: REFRESHD_* variables are set by refreshd"),
            ));
        }
    }
    Ok(())
}

fn http(at: &At<'_, '_>, raw: RawHttp) -> Result<SourceConfig, ConfigError> {
    let RawHttp {
        url,
        method,
        body,
        bearer,
        token_field,
        expiry_field,
        fields,
    } = raw;
    at.http_url(&url, "url")?;
    named_fields(at, &fields)?;
    let method = match method.as_deref().unwrap_or("POST") {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        other => {
            return Err(at.err(
                "method",
                format!("{other:?} is not one of GET, POST, PUT, PATCH"),
            ));
        }
    };
    let body = body.map(|body| http_body(at, body)).transpose()?;
    for (field, value) in [
        ("token_field", Some(&token_field)),
        ("expiry_field", expiry_field.as_ref()),
    ] {
        if value.is_some_and(|v| v.is_empty()) {
            return Err(at.err(
                field,
                "must not be empty: a JSON pointer such as \"/token\" or a field name".into(),
            ));
        }
    }
    Ok(SourceConfig::Http(HttpSource {
        url,
        method,
        body,
        bearer: bearer.map(|b| BearerRef {
            credential: b.credential,
        }),
        token_field,
        expiry_field,
        fields,
    }))
}

/// `fields = { NAME = "/pointer" }`: each name one a template and a target's `keys` can say
/// (`fields.NAME`), none of the values every credential has, each place non-empty.
fn named_fields(at: &At<'_, '_>, fields: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (name, place) in fields {
        let key = format!("fields.{name}");
        if !valid_env_key(name) {
            return Err(at.err(
                &key,
                format!("{name:?} is not a field name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if crate::config::BUILT_IN_VALUES.contains(&name.as_str()) {
            return Err(at.err(
                &key,
                format!("`{name}` is a value every credential has; name the field otherwise"),
            ));
        }
        if place.is_empty() {
            return Err(at.err(
                &key,
                "must not be empty: a JSON pointer such as \"/user\" or a field name".into(),
            ));
        }
    }
    Ok(())
}

/// A body written as JSON text must be JSON once its placeholders are filled, or every
/// refresh would send the provider something it cannot parse.
fn http_body(at: &At<'_, '_>, body: RawBody) -> Result<BodyTemplate, ConfigError> {
    match body {
        RawBody::Table(table) => Ok(BodyTemplate(
            serde_json::Value::Object(json_object(table)).to_string(),
        )),
        RawBody::Json(body) => {
            let template = BodyTemplate(body);
            if let Err(e) =
                serde_json::from_str::<serde_json::Value>(&template.render(|| "0".into()))
            {
                return Err(at.err(
                    "body",
                    format!(
                        "is not JSON ({e}); write it in single quotes: body = '{{\"request_id\": \"{{{{uuid}}}}\"}}'"
                    ),
                ));
            }
            Ok(template)
        }
    }
}

fn google_service_account(
    at: &At<'_, '_>,
    raw: RawGoogleServiceAccount,
) -> Result<SourceConfig, ConfigError> {
    if raw.scopes.is_empty() {
        return Err(at.err(
            "scopes",
            "a service account needs at least one scope, e.g. [\"https://www.googleapis.com/auth/cloud-platform\"]".into(),
        ));
    }
    if !raw.key_file.is_absolute() {
        return Err(at.err(
            "key_file",
            format!("{} must be an absolute path", raw.key_file.display()),
        ));
    }
    Ok(SourceConfig::GoogleServiceAccount(
        GoogleServiceAccountSource {
            key_file: raw.key_file,
            scopes: raw.scopes,
            subject: raw.subject,
        },
    ))
}

fn google_authorized_user(
    at: &At<'_, '_>,
    raw: RawGoogleAuthorizedUser,
) -> Result<SourceConfig, ConfigError> {
    if raw.file.as_ref().is_some_and(|f| !f.is_absolute()) {
        return Err(at.err("file", "must be an absolute path".into()));
    }
    Ok(SourceConfig::GoogleAuthorizedUser(
        GoogleAuthorizedUserSource { file: raw.file },
    ))
}

/// Members are validated as sources of their own, under `sources[i]`, on the chain's line.
fn chain(at: &At<'_, '_>, RawChain { sources }: RawChain) -> Result<SourceConfig, ConfigError> {
    let refresh_members = sources
        .iter()
        .filter(|s| matches!(s, RawSource::OauthRefresh(_)))
        .count();
    if refresh_members > 1 {
        return Err(at.err(
            "sources",
            "a chain may hold one `oauth-refresh` source: a credential keeps one rotated refresh token".into(),
        ));
    }
    if sources.iter().any(|s| matches!(s, RawSource::Chain(_))) {
        return Err(at.err("sources", "a chain cannot hold another chain".into()));
    }
    if sources.is_empty() {
        return Err(at.err("sources", "a chain needs at least one source".into()));
    }
    let sources = sources
        .into_iter()
        .enumerate()
        .map(|(i, inner)| source(at.doc, at.start, &format!("{}.sources[{i}]", at.key), inner))
        .collect::<Result<_, _>>()?;
    Ok(SourceConfig::Chain(ChainSource { sources }))
}

fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// A TOML table as the JSON object it stands for; a date or time becomes its RFC 3339 text.
/// `{{uuid}}` inside a string survives as it is (JSON escapes no brace).
fn json_object(table: toml::Table) -> serde_json::Map<String, serde_json::Value> {
    fn json(value: toml::Value) -> serde_json::Value {
        match value {
            toml::Value::String(s) => s.into(),
            toml::Value::Integer(i) => i.into(),
            toml::Value::Float(f) => f.into(),
            toml::Value::Boolean(b) => b.into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(items) => items.into_iter().map(json).collect(),
            toml::Value::Table(table) => serde_json::Value::Object(json_object(table)),
        }
    }
    table.into_iter().map(|(k, v)| (k, json(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_templates_get_a_fresh_value_per_placeholder() {
        let template = BodyTemplate(r#"{"a": "{{uuid}}", "b": "{{uuid}}", "c": 1}"#.into());
        let mut n = 0;
        let body = template.render(|| {
            n += 1;
            format!("u{n}")
        });
        assert_eq!(body, r#"{"a": "u1", "b": "u2", "c": 1}"#);
        assert_eq!(
            BodyTemplate("{}".into()).render(|| panic!("no placeholder, no UUID")),
            "{}"
        );
    }
}
