//! `credentials.NAME.source`: raw → typed. The typed sources cannot hold a combination the
//! design refuses (a client with both a secret and a key, fields of a plain command, an
//! unknown HTTP method), so the code that fetches never checks again.
//!
//! Never resolves a secret reference and never touches the network or a file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use url::Url;

use super::network::TlsClientAuth;
use super::paths;
use crate::secret::SecretRef;

mod from_raw;
pub(super) use from_raw::source;

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
    /// RFC 8705: the TLS client certificate, and `client_id` in the body.
    Tls(TlsClientAuth),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OauthRefreshSource {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    pub auth: SecretAuth,
    /// RFC 8705: the client authenticates with this TLS certificate (then it has no secret).
    pub tls_client: Option<TlsClientAuth>,
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
pub struct BodyTemplate(pub(super) String);

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

    /// The variables of refreshd's own environment a `command` source passes on to its
    /// program (`inherit_env`, also in a chain): what it reads its secrets from.
    pub fn inherited_variables(&self) -> Vec<&str> {
        match self {
            SourceConfig::Command(s) => s.inherit_env.iter().map(String::as_str).collect(),
            SourceConfig::Chain(chain) => chain
                .sources
                .iter()
                .flat_map(|s| s.inherited_variables())
                .collect(),
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
                if let Some(tls) = &s.tls_client {
                    out.extend([("client_cert", &tls.cert), ("client_key", &tls.key)]);
                }
            }
            SourceConfig::OauthClientCredentials(s) => match &s.client {
                ClientAuth::Secret { secret, .. } => out.push(("client_secret", secret)),
                ClientAuth::PrivateKeyJwt { key, .. } => out.push(("private_key", key)),
                ClientAuth::Tls(tls) => {
                    out.extend([("client_cert", &tls.cert), ("client_key", &tls.key)]);
                }
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
