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
    // Boxed like `OauthRefresh`: its subject and client make it the largest.
    OauthTokenExchange(Box<TokenExchangeSource>),
    AwsWebIdentity(AwsWebIdentitySource),
    AwsRdsIam(AwsRdsIamSource),
}

/// An RDS IAM authentication token: no request, a signature made with AWS keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsRdsIamSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub region: String,
    /// The credential whose fields are the keys that sign; refreshd's own environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) when absent.
    pub aws: Option<String>,
}

/// The variables an `aws-rds-iam` source without `aws` reads its keys from.
pub const AWS_ENV: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// STS `AssumeRoleWithWebIdentity`: an OIDC token the platform gives the workload traded
/// for temporary AWS keys (the token is the session token, the keys are fields).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsWebIdentitySource {
    pub role_arn: String,
    /// `refreshd-NAME` when absent.
    pub session_name: Option<String>,
    /// Read afresh for every call.
    pub web_identity_token: SubjectToken,
    /// `https://sts.REGION.amazonaws.com/` unless `sts_endpoint` was given.
    pub sts_endpoint: Url,
    pub duration_seconds: Option<u32>,
}

/// The fields of an AWS credential: what `aws-web-identity` yields and what an AWS
/// credentials file, `credential_process` and a SigV4 signer need (with the token as the
/// session token).
pub const AWS_FIELDS: [&str; 2] = ["access_key_id", "secret_access_key"];

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
    /// A client assertion someone else signed (a federated token: Entra workload identity
    /// federation), read afresh for every request.
    Assertion {
        assertion: SecretRef,
    },
    /// RFC 8705: the TLS client certificate, and `client_id` in the body.
    Tls(TlsClientAuth),
}

/// `client_assertion_type` of an RFC 7523 client assertion (RFC 7521 §4.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `grant_type` of RFC 8693 §2.1.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The `subject_token_type` sent when the config names none (RFC 8693 §3): what a
/// projected service-account token or a CI OIDC token is.
pub const DEFAULT_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// An RFC 8693 token exchange: a short-lived token the platform gives the workload (the
/// subject) traded for the provider's token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenExchangeSource {
    pub token_url: Url,
    pub subject: SubjectToken,
    pub subject_token_type: String,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    /// Sent in the body when there is no client authentication, and as the client of one.
    pub client_id: Option<String>,
    /// Client authentication, when the provider wants one (RFC 8693 §2.1 leaves it open).
    pub client: Option<ClientAuth>,
    pub params: BTreeMap<String, String>,
}

/// Where the subject token comes from, read afresh for every exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectToken {
    /// A file (watched by the daemon: projected tokens rotate), a variable or a systemd
    /// credential.
    Secret(SecretRef),
    /// Another credential's current token (it is refreshed first, and a new one of its
    /// tokens makes this one exchange again).
    Credential(String),
    /// A program's stdout, read as a `command` source reads it.
    Command(CommandSource),
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
    /// Named values read from the same answer: name → JSON pointer or field name.
    pub fields: BTreeMap<String, String>,
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
    /// Named values read from the same answer: name → JSON pointer or field name.
    pub fields: BTreeMap<String, String>,
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
            SourceConfig::OauthTokenExchange(_) => "oauth-token-exchange",
            SourceConfig::AwsWebIdentity(_) => "aws-web-identity",
            SourceConfig::AwsRdsIam(_) => "aws-rds-iam",
        }
    }

    /// The configured client id, for status output.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            SourceConfig::OauthRefresh(s) => Some(&s.client_id),
            SourceConfig::OauthClientCredentials(s) => Some(&s.client_id),
            SourceConfig::OauthTokenExchange(s) => s.client_id.as_deref(),
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

    /// The fields every answer of this source may hold beside the token: those a `command`
    /// or `http` source reads by `fields`, those of an OAuth token answer; for a chain, those
    /// every member yields (whichever serves, a target gets its values).
    pub fn fields(&self) -> Vec<String> {
        match self {
            SourceConfig::OauthRefresh(_)
            | SourceConfig::OauthClientCredentials(_)
            | SourceConfig::OauthTokenExchange(_) => crate::source::oauth::OAUTH_FIELDS
                .iter()
                .map(|&f| f.to_owned())
                .collect(),
            SourceConfig::Command(CommandSource {
                format: CommandFormat::Auto(json) | CommandFormat::Json(json),
                ..
            }) => json.fields.keys().cloned().collect(),
            SourceConfig::Http(s) => s.fields.keys().cloned().collect(),
            SourceConfig::AwsWebIdentity(_) => AWS_FIELDS.iter().map(|&f| f.to_owned()).collect(),
            SourceConfig::Chain(chain) => {
                let mut members = chain.sources.iter().map(SourceConfig::fields);
                let first = members.next().unwrap_or_default();
                members.fold(first, |all, next| {
                    all.into_iter().filter(|f| next.contains(f)).collect()
                })
            }
            _ => Vec::new(),
        }
    }

    /// The credentials whose tokens this source uses (an `http` source's bearer, a token
    /// exchange's subject; also in a chain): they are refreshed first, and a new token of
    /// theirs makes this credential refresh.
    pub fn bearers(&self) -> Vec<&str> {
        self.bearer_keys()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// [`bearers`](Self::bearers) with the key that names each, for errors.
    pub fn bearer_keys(&self) -> Vec<(&'static str, &str)> {
        match self {
            SourceConfig::Http(s) => s
                .bearer
                .iter()
                .map(|b| ("bearer", b.credential.as_str()))
                .collect(),
            SourceConfig::OauthTokenExchange(s) => match &s.subject {
                SubjectToken::Credential(name) => vec![("subject_token", name.as_str())],
                _ => Vec::new(),
            },
            SourceConfig::AwsWebIdentity(s) => match &s.web_identity_token {
                SubjectToken::Credential(name) => vec![("web_identity_token", name.as_str())],
                _ => Vec::new(),
            },
            SourceConfig::AwsRdsIam(s) => s.aws.iter().map(|name| ("aws", name.as_str())).collect(),
            SourceConfig::Chain(chain) => {
                chain.sources.iter().flat_map(|s| s.bearer_keys()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The files whose change makes the credential refresh at once: a token exchange's
    /// subject token file (also in a chain).
    pub fn watched_files(&self) -> Vec<&std::path::Path> {
        match self {
            SourceConfig::OauthTokenExchange(s) => match &s.subject {
                SubjectToken::Secret(SecretRef::File(path)) => vec![path.as_path()],
                _ => Vec::new(),
            },
            SourceConfig::AwsWebIdentity(s) => match &s.web_identity_token {
                SubjectToken::Secret(SecretRef::File(path)) => vec![path.as_path()],
                _ => Vec::new(),
            },
            SourceConfig::Chain(chain) => chain
                .sources
                .iter()
                .flat_map(|s| s.watched_files())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The variables of refreshd's own environment a `command` source passes on to its
    /// program (`inherit_env`, also in a chain): what it reads its secrets from.
    pub fn inherited_variables(&self) -> Vec<&str> {
        match self {
            SourceConfig::Command(s) => s.inherit_env.iter().map(String::as_str).collect(),
            SourceConfig::OauthTokenExchange(s) => match &s.subject {
                SubjectToken::Command(command) => {
                    command.inherit_env.iter().map(String::as_str).collect()
                }
                _ => Vec::new(),
            },
            SourceConfig::AwsWebIdentity(s) => match &s.web_identity_token {
                SubjectToken::Command(command) => {
                    command.inherit_env.iter().map(String::as_str).collect()
                }
                _ => Vec::new(),
            },
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
            SourceConfig::OauthClientCredentials(s) => out.extend(s.client.secrets()),
            SourceConfig::OauthTokenExchange(s) => {
                if let SubjectToken::Secret(subject) = &s.subject {
                    out.push(("subject_token", subject));
                }
                out.extend(s.client.iter().flat_map(ClientAuth::secrets));
            }
            SourceConfig::AwsWebIdentity(s) => {
                if let SubjectToken::Secret(token) = &s.web_identity_token {
                    out.push(("web_identity_token", token));
                }
            }
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

impl ClientAuth {
    /// The TLS client certificate the connection presents (RFC 8705), if that is how the
    /// client authenticates.
    pub fn tls(&self) -> Option<&TlsClientAuth> {
        match self {
            ClientAuth::Tls(tls) => Some(tls),
            _ => None,
        }
    }

    /// The client's secret references, with the keys they sit under.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        match self {
            ClientAuth::Secret { secret, .. } => vec![("client_secret", secret)],
            ClientAuth::PrivateKeyJwt { key, .. } => vec![("private_key", key)],
            ClientAuth::Assertion { assertion } => vec![("client_assertion", assertion)],
            ClientAuth::Tls(tls) => vec![("client_cert", &tls.cert), ("client_key", &tls.key)],
        }
    }
}
