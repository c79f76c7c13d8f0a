//! The configuration file as serde reads it: plain structs, unknown keys refused, spans
//! kept where a later check names a line. Nothing here is used outside `config`; every
//! value is validated into its typed form by the sibling modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use url::Url;

use crate::secret::SecretRef;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub defaults: RawTiming,
    #[serde(default)]
    pub credentials: BTreeMap<String, Spanned<RawCredential>>,
    /// `[[notify]]`: where failures are told (`config/notify.rs`).
    #[serde(default)]
    pub notify: Vec<Spanned<RawNotify>>,
}

/// One `[[notify]]` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: Option<SecretRef>,
    pub format: Option<String>,
    pub argv: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub credentials: Option<Vec<String>>,
    pub after: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_remaining: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub repeat: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub state_dir: Option<Spanned<PathBuf>>,
    pub control_socket: Option<Spanned<PathBuf>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub max_concurrent_refreshes: Option<Spanned<usize>>,
    pub store: Option<Spanned<RawStore>>,
    pub node: Option<Spanned<String>>,
    pub state_key: Option<Spanned<SecretRef>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum RawStore {
    Postgres(RawPostgresStore),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgresStore {
    pub url: SecretRef,
    pub key: SecretRef,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lease: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<Spanned<String>>,
    pub format: Option<super::LogFormat>,
    pub file: Option<PathBuf>,
    pub audit: Option<Spanned<PathBuf>>,
    pub rotate: Option<super::LogRotate>,
    pub keep: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub refresh_at: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_remaining: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub jitter: Option<Duration>,
    pub retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub default_lifetime: Option<Duration>,
    pub on_failure: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub initial: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max: Option<Duration>,
}

// The timing keys repeat `RawTiming`'s on purpose: serde's `flatten` cannot be combined
// with `deny_unknown_fields`, and a typo in a credential must stay an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub source: Spanned<RawSource>,
    #[serde(default)]
    pub targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    pub reload: Vec<Spanned<RawReload>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub refresh_at: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_remaining: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub jitter: Option<Duration>,
    pub retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub default_lifetime: Option<Duration>,
    pub on_failure: Option<Vec<String>>,
    /// With a store: `false` keeps this credential to this host.
    pub shared: Option<bool>,
    pub local_fallback: Option<bool>,
    /// Who else may read the token through refreshd (`config/access.rs`).
    #[serde(default)]
    pub readers: Vec<Spanned<String>>,
    #[serde(default)]
    pub serve: Vec<Spanned<RawServe>>,
    pub git: Option<Spanned<RawGit>>,
    pub docker: Option<Spanned<RawDocker>>,
    /// The proxy for this credential's requests (`config/network.rs`).
    pub proxy: Option<Spanned<String>>,
    /// The CAs this credential's endpoints are verified with.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// `"together"` (the default) or `"rolling"` (`config/credential.rs`).
    pub reload_order: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub reload_timeout: Option<Duration>,
    pub health_check: Option<Vec<String>>,
}

impl RawCredential {
    /// The credential's own timing keys, in the shape of `[defaults]`.
    pub fn own_timing(&self) -> RawTiming {
        RawTiming {
            refresh_at: self.refresh_at,
            min_remaining: self.min_remaining,
            jitter: self.jitter,
            retry: self.retry.clone(),
            timeout: self.timeout,
            default_lifetime: self.default_lifetime,
            on_failure: self.on_failure.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(super) enum RawSource {
    OauthRefresh(Box<RawOauthRefresh>),
    OauthClientCredentials(RawClientCredentials),
    GoogleServiceAccount(RawGoogleServiceAccount),
    GoogleAuthorizedUser(RawGoogleAuthorizedUser),
    Command(RawCommand),
    Http(RawHttp),
    Chain(RawChain),
    OauthTokenExchange(Box<RawTokenExchange>),
    AwsWebIdentity(RawAwsWebIdentity),
    AwsRdsIam(RawAwsRdsIam),
}

/// How the client authenticates: a secret (Basic or in the body) or, RFC 8705, its TLS
/// client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSecretAuth {
    #[default]
    Basic,
    Post,
    #[serde(rename = "tls_client_auth")]
    TlsClientAuth,
    #[serde(rename = "self_signed_tls_client_auth")]
    SelfSignedTlsClientAuth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOauthRefresh {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    pub refresh_token: Option<SecretRef>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub auth: RawSecretAuth,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub authorize_url: Option<Url>,
    pub device_authorization_url: Option<Url>,
    pub issuer: Option<Url>,
    pub redirect_uri: Option<Url>,
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    pub client_cert: Option<SecretRef>,
    pub client_key: Option<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    pub private_key: Option<SecretRef>,
    pub key_id: Option<String>,
    pub x5t: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub auth: Option<RawSecretAuth>,
    /// A federated token (Entra workload identity) sent as the client assertion.
    pub client_assertion: Option<SecretRef>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub client_cert: Option<SecretRef>,
    pub client_key: Option<SecretRef>,
}

/// `oauth-token-exchange` (RFC 8693).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenExchange {
    pub token_url: Url,
    pub subject_token: RawSubjectToken,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretRef>,
    pub private_key: Option<SecretRef>,
    pub key_id: Option<String>,
    pub x5t: Option<String>,
    pub client_assertion: Option<SecretRef>,
    pub auth: Option<RawSecretAuth>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Where a token exchange's subject token comes from: exactly one of these keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubjectToken {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    pub systemd: Option<String>,
    pub credential: Option<String>,
    pub command: Option<Vec<String>>,
}

/// `aws-web-identity`: STS `AssumeRoleWithWebIdentity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAwsWebIdentity {
    pub role_arn: String,
    pub session_name: Option<String>,
    pub web_identity_token: RawSubjectToken,
    pub region: Option<String>,
    pub sts_endpoint: Option<Url>,
    pub duration_seconds: Option<u32>,
}

/// `aws-rds-iam`: a SigV4-presigned RDS IAM authentication token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAwsRdsIam {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub region: String,
    /// Absent: refreshd's own environment (`AWS_ACCESS_KEY_ID`, …).
    pub aws: Option<RawBearer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGoogleServiceAccount {
    pub key_file: PathBuf,
    pub scopes: Vec<String>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGoogleAuthorizedUser {
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawCommandFormat {
    #[default]
    Auto,
    Plain,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub argv: Vec<String>,
    #[serde(default)]
    pub format: RawCommandFormat,
    pub token_field: Option<String>,
    pub expiry_field: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub url: Url,
    pub method: Option<String>,
    pub body: Option<RawBody>,
    pub bearer: Option<RawBearer>,
    pub token_field: String,
    pub expiry_field: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// An `http` source's `body`: JSON text, or a TOML table sent as JSON.
#[derive(Debug, Clone)]
pub(super) enum RawBody {
    Json(String),
    Table(toml::Table),
}

impl<'de> Deserialize<'de> for RawBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawBody, D::Error> {
        struct Body;
        impl<'de> serde::de::Visitor<'de> for Body {
            type Value = RawBody;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON string or a table")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawBody, E> {
                Ok(RawBody::Json(text.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawBody, A::Error> {
                toml::Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawBody::Table)
            }
        }
        deserializer.deserialize_any(Body)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBearer {
    pub credential: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    pub sources: Vec<RawSource>,
}

/// Targets are flat, so a misplaced field gets a precise message ("`key` is not a field of
/// a pgpass target") rather than serde's list of expected keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: PathBuf,
    pub key: Option<String>,
    pub expires_at_key: Option<String>,
    pub section: Option<String>,
    pub pointer: Option<String>,
    pub expires_at_pointer: Option<String>,
    pub host: Option<String>,
    pub port: Option<RawPort>,
    pub database: Option<String>,
    pub username: Option<RawPgUser>,
    /// A `pgpass` target's password: the token (default) or a field.
    pub password: Option<String>,
    pub newline: Option<bool>,
    /// A `file` target's value: the token (default) or another value.
    pub value: Option<String>,
    /// Places set to named values: variables, INI keys or TOML key paths.
    pub keys: Option<std::collections::BTreeMap<String, String>>,
    /// A `json` target's JSON Pointers set to named values.
    pub pointers: Option<std::collections::BTreeMap<String, String>>,
    /// The other credentials a `template` target renders.
    pub uses: Option<Vec<String>>,
    /// A `template` target's template file, or its text inline.
    pub template: Option<PathBuf>,
    pub inline: Option<String>,
    pub mode: Option<RawMode>,
    pub owner: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub write: super::WriteMode,
}

/// A `.pgpass` user: a name, or `{ field = "username" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPgUser {
    Name(String),
    Field { field: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Number(u16),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMode {
    Number(u32),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub signal: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub pid: Option<i64>,
    pub process_name: Option<String>,
    pub systemd_unit: Option<String>,
    pub action: Option<String>,
    pub launchd_label: Option<String>,
    pub command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write e.g. \"90s\", \"50m\", \"1h 5m\")"
        ))
    })
}

/// `serve[i]` of a credential (`config/access.rs` makes it a `ServeConfig`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawServe {
    DatabricksMetadata {
        listen: String,
        host: String,
    },
    GceMetadata {
        listen: String,
        email: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        project_id: Option<String>,
    },
    AzureManagedIdentity {
        listen: String,
        header: Box<RawTarget>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGit {
    pub url: String,
    pub username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocker {
    pub server: String,
    pub username: String,
}
