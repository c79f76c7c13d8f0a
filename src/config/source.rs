//! `credentials.NAME.source`: raw → typed. The typed sources cannot hold a combination the
//! design refuses (a client with both a secret and a key, fields of a plain command, an
//! unknown HTTP method), so the code that fetches never checks again.
//!
//! Never resolves a secret reference and never touches the network or a file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use url::Url;

use super::raw::{
    RawChain, RawClientCredentials, RawCommand, RawCommandFormat, RawHttp, RawOauthRefresh,
    RawSecretAuth, RawSource,
};
use super::{Doc, paths, valid_env_key};
use crate::config::ConfigError;
use crate::secret::SecretRef;

/// Where a credential's token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    // Boxed: its login endpoints make it several times larger than the other variants.
    OauthRefresh(Box<OauthRefreshSource>),
    OauthClientCredentials(ClientCredentialsSource),
    GoogleServiceAccount(GoogleServiceAccountSource),
    GoogleAuthorizedUser(GoogleAuthorizedUserSource),
    Command(CommandSource),
    Http(HttpSource),
    Chain(ChainSource),
}

/// How a client secret travels to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecretAuth {
    /// HTTP Basic with the form-urlencoded id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Post,
}

/// How a confidential client proves who it is.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    Secret {
        secret: SecretRef,
        auth: SecretAuth,
    },
    /// An RFC 7523 client assertion signed with this PEM key.
    PrivateKeyJwt {
        key: SecretRef,
        key_id: Option<String>,
        /// The certificate's base64url SHA-1 thumbprint, for the `x5t` header (Entra ID
        /// identifies a certificate credential by it).
        x5t: Option<String>,
        /// Assertion audience; the token URL when absent.
        audience: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OauthRefreshSource {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    pub auth: SecretAuth,
    /// The bootstrap refresh token; a rotated one (or one from `refreshd login`) lives in
    /// the state directory. Absent: `refreshd login NAME` provides the first one.
    pub refresh_token: Option<SecretRef>,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, String>,
    /// For `refreshd login`: the authorization endpoint (or found through `issuer`).
    pub authorize_url: Option<Url>,
    /// For `refreshd login --device` (RFC 8628), or found through `issuer`.
    pub device_authorization_url: Option<Url>,
    /// Where `refreshd login` discovers the endpoints it is not given.
    pub issuer: Option<Url>,
    /// The loopback redirect for `refreshd login` (RFC 8252); without a port, an ephemeral one.
    pub redirect_uri: Option<Url>,
    /// Extra parameters for the authorization URL only (Google: `access_type = "offline"`).
    pub authorize_params: BTreeMap<String, String>,
}

/// The redirect `refreshd login` uses when the credential names none.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/callback";

#[derive(Debug, Clone, PartialEq)]
pub struct ClientCredentialsSource {
    pub token_url: Url,
    pub client_id: String,
    pub client: ClientAuth,
    pub scopes: Vec<String>,
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GoogleServiceAccountSource {
    /// The JSON key Google issues for a service account.
    pub key_file: PathBuf,
    pub scopes: Vec<String>,
    /// The user to impersonate (domain-wide delegation): the assertion's `sub`.
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GoogleAuthorizedUserSource {
    /// gcloud's application-default credentials file; its standard path when absent.
    pub file: Option<PathBuf>,
}

impl GoogleAuthorizedUserSource {
    /// `file`, else where gcloud writes it.
    pub fn path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(paths::default_adc_file)
    }
}

/// Where a JSON answer keeps the token and its expiry: JSON pointers (`/access_token`)
/// or top-level field names; the common names when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonFields {
    pub token_field: Option<String>,
    pub expiry_field: Option<String>,
}

/// How a command's stdout is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandFormat {
    /// JSON when it starts with `{`, else one plain token.
    Auto(JsonFields),
    Plain,
    Json(JsonFields),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSource {
    /// Never empty: `argv[0]` is the program.
    pub argv: Vec<String>,
    pub format: CommandFormat,
    /// Set in the child's environment, besides the allow-list.
    pub env: BTreeMap<String, String>,
    /// Variables of refreshd's own environment passed on to the child.
    pub inherit_env: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
        }
    }
}

/// A JSON request body in which every `{{uuid}}` becomes a fresh UUID per request
/// (Databricks' `request_id` is an idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate(String);

impl BodyTemplate {
    pub const UUID: &'static str = "{{uuid}}";

    /// The body with each placeholder replaced by a value of `fresh_uuid`.
    pub fn render(&self, mut fresh_uuid: impl FnMut() -> String) -> String {
        let mut parts = self.0.split(Self::UUID);
        let mut body = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            body.push_str(&fresh_uuid());
            body.push_str(part);
        }
        body
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSource {
    pub url: Url,
    pub method: HttpMethod,
    pub body: Option<BodyTemplate>,
    pub bearer: Option<BearerRef>,
    pub token_field: String,
    pub expiry_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerRef {
    pub credential: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainSource {
    pub sources: Vec<SourceConfig>,
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::OauthRefresh(_) => "oauth-refresh",
            SourceConfig::OauthClientCredentials(_) => "oauth-client-credentials",
            SourceConfig::GoogleServiceAccount(_) => "google-service-account",
            SourceConfig::GoogleAuthorizedUser(_) => "google-authorized-user",
            SourceConfig::Command(_) => "command",
            SourceConfig::Http(_) => "http",
            SourceConfig::Chain(_) => "chain",
        }
    }

    /// The configured client id, for status output.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            SourceConfig::OauthRefresh(s) => Some(&s.client_id),
            SourceConfig::OauthClientCredentials(s) => Some(&s.client_id),
            _ => None,
        }
    }

    /// The `oauth-refresh` source, at the top or inside a chain (validation allows at most
    /// one: a credential keeps one rotated refresh token).
    pub fn oauth_refresh(&self) -> Option<&OauthRefreshSource> {
        match self {
            SourceConfig::OauthRefresh(s) => Some(s),
            SourceConfig::Chain(chain) => chain.sources.iter().find_map(|s| s.oauth_refresh()),
            _ => None,
        }
    }

    /// The credentials whose tokens this source uses as a bearer (`http`, also in a chain).
    pub fn bearers(&self) -> Vec<&str> {
        match self {
            SourceConfig::Http(s) => s.bearer.iter().map(|b| b.credential.as_str()).collect(),
            SourceConfig::Chain(chain) => chain.sources.iter().flat_map(|s| s.bearers()).collect(),
            _ => Vec::new(),
        }
    }

    /// Every secret reference with the key it sits under.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut out = Vec::new();
        match self {
            SourceConfig::OauthRefresh(s) => {
                if let Some(token) = &s.refresh_token {
                    out.push(("refresh_token", token));
                }
                if let Some(secret) = &s.client_secret {
                    out.push(("client_secret", secret));
                }
            }
            SourceConfig::OauthClientCredentials(s) => match &s.client {
                ClientAuth::Secret { secret, .. } => out.push(("client_secret", secret)),
                ClientAuth::PrivateKeyJwt { key, .. } => out.push(("private_key", key)),
            },
            SourceConfig::Chain(chain) => {
                for source in &chain.sources {
                    out.extend(source.secrets());
                }
            }
            _ => {}
        }
        out
    }
}

/// Validates one raw source; `start` is where it sits in the file, `key` its dotted key.
pub(super) fn source(
    doc: &Doc<'_>,
    start: usize,
    key: &str,
    raw: RawSource,
) -> Result<SourceConfig, ConfigError> {
    let err = |field: &str, message: String| {
        let key = if field.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.{field}")
        };
        doc.error(start, key, message)
    };
    let http_url = |url: &Url, field: &str| -> Result<(), ConfigError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if is_loopback_url(url) => Ok(()),
            _ => Err(err(
                field,
                format!("{url} must be https (plain http is allowed only on loopback)"),
            )),
        }
    };
    Ok(match raw {
        RawSource::OauthRefresh(s) => {
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
            } = *s;
            http_url(&token_url, "token_url")?;
            if client_id.is_empty() {
                return Err(err("client_id", "must not be empty".into()));
            }
            for (field, url) in [
                ("authorize_url", &authorize_url),
                ("device_authorization_url", &device_authorization_url),
                ("issuer", &issuer),
            ] {
                if let Some(url) = url {
                    http_url(url, field)?;
                }
            }
            if let Some(uri) = &redirect_uri
                && (uri.scheme() != "http" || !is_loopback_url(uri))
            {
                return Err(err(
                    "redirect_uri",
                    format!(
                        "{uri} must be an http URL on a loopback host (127.0.0.1, [::1] or localhost; RFC 8252): refreshd listens there for the login redirect"
                    ),
                ));
            }
            SourceConfig::OauthRefresh(Box::new(OauthRefreshSource {
                token_url,
                client_id,
                client_secret,
                auth: secret_auth(auth),
                refresh_token,
                scopes,
                params,
                authorize_url,
                device_authorization_url,
                issuer,
                redirect_uri,
                authorize_params,
            }))
        }
        RawSource::OauthClientCredentials(s) => {
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
                params,
            } = s;
            http_url(&token_url, "token_url")?;
            if client_id.is_empty() {
                return Err(err("client_id", "must not be empty".into()));
            }
            let client = match (client_secret, private_key) {
                (Some(secret), None) => {
                    for (present, field) in [
                        (key_id.is_some(), "key_id"),
                        (x5t.is_some(), "x5t"),
                        (audience.is_some(), "audience"),
                    ] {
                        if present {
                            return Err(err(
                                field,
                                format!("`{field}` goes only with `private_key`"),
                            ));
                        }
                    }
                    ClientAuth::Secret {
                        secret,
                        auth: secret_auth(auth.unwrap_or_default()),
                    }
                }
                (None, Some(key)) => {
                    if auth.is_some() {
                        return Err(err(
                            "auth",
                            "`auth` goes only with `client_secret` (a private key signs an assertion)".into(),
                        ));
                    }
                    ClientAuth::PrivateKeyJwt {
                        key,
                        key_id,
                        x5t,
                        audience,
                    }
                }
                _ => {
                    return Err(err(
                        "",
                        "give exactly one of `client_secret` and `private_key` (with `key_id`)"
                            .into(),
                    ));
                }
            };
            SourceConfig::OauthClientCredentials(ClientCredentialsSource {
                token_url,
                client_id,
                client,
                scopes,
                params,
            })
        }
        RawSource::Command(s) => {
            let RawCommand {
                argv,
                format,
                token_field,
                expiry_field,
                env,
                inherit_env,
            } = s;
            if argv.is_empty() || argv[0].is_empty() {
                return Err(err(
                    "argv",
                    "must name a program: [\"databricks\", \"auth\", \"token\", …]".into(),
                ));
            }
            for name in env.keys().chain(&inherit_env) {
                if !valid_env_key(name) {
                    return Err(err(
                        if env.contains_key(name) {
                            "env"
                        } else {
                            "inherit_env"
                        },
                        format!("{name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
                    ));
                }
                if name.starts_with("REFRESHD_") {
                    return Err(err(
                        if env.contains_key(name) {
                            "env"
                        } else {
                            "inherit_env"
                        },
                        format!(
                            "{name} is refreshd's own: REFRESHD_* variables are set by refreshd"
                        ),
                    ));
                }
            }
            let fields = JsonFields {
                token_field,
                expiry_field,
            };
            let format = match format {
                RawCommandFormat::Auto => CommandFormat::Auto(fields),
                RawCommandFormat::Json => CommandFormat::Json(fields),
                RawCommandFormat::Plain => {
                    if fields != JsonFields::default() {
                        return Err(err(
                            "",
                            "`token_field` and `expiry_field` need format = \"json\" or \"auto\""
                                .into(),
                        ));
                    }
                    CommandFormat::Plain
                }
            };
            SourceConfig::Command(CommandSource {
                argv,
                format,
                env,
                inherit_env,
            })
        }
        RawSource::Http(s) => {
            let RawHttp {
                url,
                method,
                body,
                bearer,
                token_field,
                expiry_field,
            } = s;
            http_url(&url, "url")?;
            let method = match method.as_deref().unwrap_or("POST") {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "PATCH" => HttpMethod::Patch,
                other => {
                    return Err(err(
                        "method",
                        format!("{other:?} is not one of GET, POST, PUT, PATCH"),
                    ));
                }
            };
            let body = match body {
                None => None,
                Some(body) => {
                    let template = BodyTemplate(body);
                    if let Err(e) =
                        serde_json::from_str::<serde_json::Value>(&template.render(|| "0".into()))
                    {
                        return Err(err(
                            "body",
                            format!(
                                "is not JSON ({e}); write it in single quotes: body = '{{\"request_id\": \"{{{{uuid}}}}\"}}'"
                            ),
                        ));
                    }
                    Some(template)
                }
            };
            for (field, value) in [
                ("token_field", Some(&token_field)),
                ("expiry_field", expiry_field.as_ref()),
            ] {
                if value.is_some_and(|v| v.is_empty()) {
                    return Err(err(
                        field,
                        "must not be empty: a JSON pointer such as \"/token\" or a field name"
                            .into(),
                    ));
                }
            }
            SourceConfig::Http(HttpSource {
                url,
                method,
                body,
                bearer: bearer.map(|b| BearerRef {
                    credential: b.credential,
                }),
                token_field,
                expiry_field,
            })
        }
        RawSource::GoogleServiceAccount(s) => {
            if s.scopes.is_empty() {
                return Err(err(
                    "scopes",
                    "a service account needs at least one scope, e.g. [\"https://www.googleapis.com/auth/cloud-platform\"]".into(),
                ));
            }
            if !s.key_file.is_absolute() {
                return Err(err(
                    "key_file",
                    format!("{} must be an absolute path", s.key_file.display()),
                ));
            }
            SourceConfig::GoogleServiceAccount(GoogleServiceAccountSource {
                key_file: s.key_file,
                scopes: s.scopes,
                subject: s.subject,
            })
        }
        RawSource::GoogleAuthorizedUser(s) => {
            if s.file.as_ref().is_some_and(|f| !f.is_absolute()) {
                return Err(err("file", "must be an absolute path".into()));
            }
            SourceConfig::GoogleAuthorizedUser(GoogleAuthorizedUserSource { file: s.file })
        }
        RawSource::Chain(RawChain { sources }) => {
            let refresh_members = sources
                .iter()
                .filter(|s| matches!(s, RawSource::OauthRefresh(_)))
                .count();
            if refresh_members > 1 {
                return Err(err(
                    "sources",
                    "a chain may hold one `oauth-refresh` source: a credential keeps one rotated refresh token".into(),
                ));
            }
            if sources.iter().any(|s| matches!(s, RawSource::Chain(_))) {
                return Err(err("sources", "a chain cannot hold another chain".into()));
            }
            if sources.is_empty() {
                return Err(err("sources", "a chain needs at least one source".into()));
            }
            let sources = sources
                .into_iter()
                .enumerate()
                .map(|(i, inner)| source(doc, start, &format!("{key}.sources[{i}]"), inner))
                .collect::<Result<_, _>>()?;
            SourceConfig::Chain(ChainSource { sources })
        }
    })
}

fn secret_auth(raw: RawSecretAuth) -> SecretAuth {
    match raw {
        RawSecretAuth::Basic => SecretAuth::Basic,
        RawSecretAuth::Post => SecretAuth::Post,
    }
}

fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
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
        assert_eq!(BodyTemplate("{}".into()).render(|| unreachable!()), "{}");
    }
}
