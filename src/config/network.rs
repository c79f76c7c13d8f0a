//! A credential's network, raw → typed: the proxy its requests go through (`proxy`), the CAs
//! its endpoints are verified with (`ca_file`), and the TLS client certificate an OAuth source
//! authenticates with (RFC 8705 `tls_client_auth`, `self_signed_tls_client_auth`).
//!
//! Must never: put a proxy URL's user or password into a message, a log line or `Debug`
//! output (they are secrets), or read a secret. The CA files are the one thing read here, by
//! [`check_ca_files`] when a config is loaded, so a missing or broken one is a configuration
//! error with its file, line and key, found by `refreshd check`, not a failed refresh.

use std::fmt;
use std::path::PathBuf;

use toml::Spanned;
use url::Url;

use super::locate::Doc;
use super::{Config, ConfigError};
use crate::secret::SecretRef;

/// Where a credential's requests go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their lower-case forms),
    /// read when the client is built; direct when none is set.
    #[default]
    Environment,
    /// `proxy = "none"`: direct, whatever the environment says.
    Direct,
    /// `proxy = "http://host:port"`: every request of this credential, whatever the
    /// environment says (`NO_PROXY` included).
    Through(ProxyUrl),
}

/// A proxy's URL, which may carry a user and password: only [`ProxyUrl::url`] shows them,
/// for the HTTP client. `Debug` and [`ProxyUrl::redacted`] hide them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// The whole URL, credentials included: for the HTTP client only, never for a message.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL with a user and password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
        }
        url.to_string()
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `ca_file`: the PEM bundle that replaces the system's roots for this credential.
#[derive(Debug, Clone, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// Where the key sits, for [`check_ca_files`]' message.
    pub line: usize,
}

/// Moving the key in the file changes nothing a running credential does.
impl PartialEq for CaFile {
    fn eq(&self, other: &CaFile) -> bool {
        self.path == other.path
    }
}

/// How a credential's requests reach its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub proxy: ProxySetting,
    pub ca_file: Option<CaFile>,
}

impl Network {
    /// Nothing of its own: the shared client serves it.
    pub fn is_default(&self) -> bool {
        *self == Network::default()
    }
}

/// Which RFC 8705 method the provider has registered the client for. refreshd sends the same
/// thing for both (its certificate in the handshake, `client_id` in the body); the provider
/// checks a CA-issued certificate's subject, or a self-signed one's registered thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMethod {
    TlsClientAuth,
    SelfSignedTlsClientAuth,
}

/// A client that authenticates with its TLS certificate: both PEM, both secret references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClientAuth {
    pub method: MtlsMethod,
    pub cert: SecretRef,
    pub key: SecretRef,
}

impl Doc<'_> {
    /// The `proxy` and `ca_file` of the credential `key`.
    pub(super) fn network(
        &self,
        key: &str,
        proxy: Option<Spanned<String>>,
        ca_file: Option<Spanned<PathBuf>>,
    ) -> Result<Network, ConfigError> {
        let proxy = match proxy {
            None => ProxySetting::Environment,
            Some(spanned) => {
                let start = spanned.span().start;
                proxy_setting(spanned.get_ref())
                    .map_err(|message| self.error(start, format!("{key}.proxy"), message))?
            }
        };
        let ca_file = match ca_file {
            None => None,
            Some(spanned) => {
                let start = spanned.span().start;
                let path = spanned.into_inner();
                if !path.is_absolute() {
                    return Err(self.error(
                        start,
                        format!("{key}.ca_file"),
                        format!("{} must be an absolute path", path.display()),
                    ));
                }
                Some(CaFile {
                    path,
                    line: self.line(start),
                })
            }
        };
        Ok(Network { proxy, ca_file })
    }
}

/// `"none"` or an `http://` / `https://` proxy URL with a host and nothing after the port.
/// The messages never repeat the value: it may hold a password.
fn proxy_setting(text: &str) -> Result<ProxySetting, String> {
    if text == "none" {
        return Ok(ProxySetting::Direct);
    }
    let url = Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}): write \"http://host:port\", or \"none\" for no proxy")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported: the proxy must be http:// or https://",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("the proxy URL has no host".to_owned());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("a proxy URL is scheme://[user:password@]host[:port], no path".to_owned());
    }
    Ok(ProxySetting::Through(ProxyUrl(url)))
}

/// Reads every credential's `ca_file`: a missing, unreadable or unparseable one refuses the
/// config, naming the file, the line and the key.
pub(super) fn check_ca_files(config: &Config) -> Result<(), ConfigError> {
    for credential in &config.credentials {
        if let Some(ca) = &credential.network.ca_file
            && let Err(e) = crate::source::net::ca_certificates(&ca.path)
        {
            return Err(ConfigError::Invalid {
                path: config.path.clone(),
                line: ca.line,
                key: format!("credentials.{}.ca_file", credential.name),
                message: e.to_string(),
            });
        }
    }
    Ok(())
}
