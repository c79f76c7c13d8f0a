//! The HTTP clients of token requests: one shared client for every credential that asks for
//! nothing of its own, and one client per distinct set of proxy, CA bundle and TLS client
//! certificate (RFC 8705), built on first use and shared by every credential with that set.
//! All of them come from [`builder`], so none follows a redirect, replays a request or waits
//! longer than the one connect timeout.
//!
//! The CA file and the certificate and key are read at every request, as secret files are,
//! so a renewed certificate or bundle is used without a reload; a client is keyed by the
//! SHA-256 of what it was built from, so an unchanged set finds its client (and its pooled
//! connections) again.
//!
//! Must never: keep a secret anywhere but inside a client's TLS configuration (the cache is
//! keyed by a hash), put a proxy's password or a key into an error or a log line, or build a
//! client per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::SourceError;
use crate::config::{Network, ProxySetting, TlsClientAuth};

/// How long an idle connection to a provider may serve the next token request: below the
/// 5 s keep-alive of Node and many proxies, so a request never races the server's close.
pub const IDLE_CONNECTION: Duration = Duration::from_secs(4);

/// Clients of their own kept at most; past it the cache starts over (a fleet has a handful
/// of distinct sets; renewed client certificates leave old entries behind).
const MAX_CLIENTS: usize = 64;

/// The largest CA bundle read: the system's whole bundle is about 200 KiB.
const CA_LIMIT: u64 = 4 << 20;

/// The one client builder: no redirects, no retries, rustls, connections kept for
/// [`IDLE_CONNECTION`]. No request is ever replayed: reqwest's retries are off, and hyper
/// re-sends a request on another connection only when the pooled one was found closed
/// before any byte of the request was written to it (so a token POST the provider may have
/// received, and answered with a rotated refresh token, is never sent twice).
///
/// Proxies: unless told otherwise ([`ProxySetting`]), reqwest reads `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (upper case first, then lower case) when the
/// client is built, and nothing else (the `system-proxy` feature, which would add macOS's
/// and Windows' settings, is off). It makes no exception for loopback: `NO_PROXY` must
/// list `127.0.0.1` or `localhost` for a local provider to be reached directly.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .user_agent(concat!("refreshd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(IDLE_CONNECTION)
}

/// The shared client, for requests with no network settings of their own.
pub fn http_client() -> reqwest::Client {
    builder()
        .build()
        .expect("the HTTP client's fixed settings are valid")
}

/// The shared client and the clients of their own, by the hash of their settings.
pub struct HttpClients {
    shared: reqwest::Client,
    own: Mutex<HashMap<[u8; 32], reqwest::Client>>,
}

impl Default for HttpClients {
    fn default() -> HttpClients {
        HttpClients::new()
    }
}

impl HttpClients {
    pub fn new() -> HttpClients {
        HttpClients {
            shared: http_client(),
            own: Mutex::default(),
        }
    }

    /// The client for a credential's `network` and an OAuth source's TLS client
    /// certificate. Reads the CA file and resolves the certificate and key (off the async
    /// workers); builds a client only for a set not seen before.
    pub fn client(
        &self,
        network: &Network,
        tls: Option<&TlsClientAuth>,
    ) -> Result<reqwest::Client, SourceError> {
        if network.is_default() && tls.is_none() {
            return Ok(self.shared.clone());
        }
        let settings = Settings::read(network, tls)?;
        let key = settings.fingerprint();
        if let Some(client) = crate::sync::lock(&self.own).get(&key) {
            return Ok(client.clone());
        }
        // Built outside the lock: a TLS configuration takes a while, and two tasks building
        // the same client at once merely build it twice.
        let client = settings.build()?;
        let mut own = crate::sync::lock(&self.own);
        if own.len() >= MAX_CLIENTS {
            own.clear();
        }
        Ok(own.entry(key).or_insert(client).clone())
    }

    /// How many clients of their own exist now (for tests).
    #[cfg(test)]
    fn own_clients(&self) -> usize {
        crate::sync::lock(&self.own).len()
    }
}

/// What one client is built from, read now.
struct Settings<'a> {
    proxy: &'a ProxySetting,
    /// The CA file's bytes and its parsed certificates.
    ca: Option<(Vec<u8>, Vec<reqwest::Certificate>)>,
    /// Certificate chain and key, as one PEM for reqwest.
    identity: Option<SecretString>,
}

impl<'a> Settings<'a> {
    fn read(
        network: &'a Network,
        tls: Option<&TlsClientAuth>,
    ) -> Result<Settings<'a>, SourceError> {
        let ca = match &network.ca_file {
            Some(ca) => {
                let bytes = read_ca(&ca.path)?;
                let certs = parse_ca(&ca.path, &bytes)?;
                Some((bytes, certs))
            }
            None => None,
        };
        let identity = tls.map(identity_pem).transpose()?;
        Ok(Settings {
            proxy: &network.proxy,
            ca,
            identity,
        })
    }

    /// SHA-256 over every setting, each tagged and length-prefixed so no two sets collide
    /// by concatenation.
    fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut part = |tag: &[u8], bytes: &[u8]| {
            hash.update(tag);
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        match self.proxy {
            ProxySetting::Environment => part(b"env", b""),
            ProxySetting::Direct => part(b"direct", b""),
            ProxySetting::Through(url) => part(b"proxy", url.url().as_str().as_bytes()),
        }
        if let Some((bytes, _)) = &self.ca {
            part(b"ca", bytes);
        }
        if let Some(identity) = &self.identity {
            part(b"identity", identity.expose_secret().as_bytes());
        }
        hash.finalize().into()
    }

    fn build(self) -> Result<reqwest::Client, SourceError> {
        let mut builder = builder();
        match self.proxy {
            ProxySetting::Environment => {}
            ProxySetting::Direct => builder = builder.no_proxy(),
            ProxySetting::Through(url) => {
                // The URL was checked when the config was loaded; reqwest's error would name
                // nothing of it, but say nothing more than this either.
                let proxy = reqwest::Proxy::all(url.url().as_str()).map_err(|_| {
                    SourceError::HttpClient(format!("proxy {} is not usable", url.redacted()))
                })?;
                builder = builder.proxy(proxy);
            }
        }
        if let Some((_, certs)) = self.ca {
            // Instead of the system's roots, as curl's --cacert does: the credential's
            // endpoints are the private CA's, and no public CA may stand in for it.
            builder = builder.tls_certs_only(certs);
        }
        let with_identity = self.identity.is_some();
        if let Some(pem) = self.identity {
            let identity = reqwest::Identity::from_pem(pem.expose_secret().as_bytes())
                .map_err(|e| SourceError::ClientCertificate(innermost(&e)))?;
            builder = builder.identity(identity);
        }
        builder.build().map_err(|e| {
            let why = innermost(&e);
            if with_identity {
                SourceError::ClientCertificate(format!("client_cert and client_key: {why}"))
            } else {
                SourceError::HttpClient(why)
            }
        })
    }
}

/// Why a CA file cannot serve as `ca_file`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct CaError {
    pub path: PathBuf,
    pub reason: String,
}

impl From<CaError> for SourceError {
    fn from(e: CaError) -> SourceError {
        SourceError::CaFile {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// The certificates of the PEM bundle at `path`: at least one, each one rustls takes as a
/// trust anchor. What `refreshd check` and a config load verify, and a client is built from.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, CaError> {
    parse_ca(path, &read_ca(path)?)
}

fn read_ca(path: &Path) -> Result<Vec<u8>, CaError> {
    crate::secure_read::read(path, CA_LIMIT).map_err(|e| CaError {
        path: path.to_owned(),
        reason: format!("cannot read the CA file: {e}"),
    })
}

fn parse_ca(path: &Path, bytes: &[u8]) -> Result<Vec<reqwest::Certificate>, CaError> {
    let error = |reason: String| CaError {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut certs = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(bytes).enumerate() {
        let der = der.map_err(|e| error(format!("certificate {}: not PEM ({e})", i + 1)))?;
        roots.add(der.clone()).map_err(|e| {
            error(format!(
                "certificate {} is not a usable CA certificate ({e})",
                i + 1
            ))
        })?;
        certs.push(
            reqwest::Certificate::from_der(&der)
                .map_err(|e| error(format!("certificate {}: {}", i + 1, innermost(&e))))?,
        );
    }
    if certs.is_empty() {
        return Err(error(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

/// The certificate chain and the key as the one PEM reqwest takes. Both are parsed first,
/// so other PEM sections (`EC PARAMETERS`, which `openssl ecparam -genkey` writes before
/// the key) do no harm and a wrong file gets a message naming its key.
fn identity_pem(tls: &TlsClientAuth) -> Result<SecretString, SourceError> {
    use base64::Engine as _;
    let cert = super::resolve::resolve("client_cert", &tls.cert)?;
    let key = super::resolve::resolve("client_key", &tls.key)?;
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_slice_iter(cert.expose_secret().as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| SourceError::ClientCertificate(format!("client_cert: not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(SourceError::ClientCertificate(
            "client_cert holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes()).map_err(|_| {
        SourceError::ClientCertificate(
            "client_key holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
        )
    })?;
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let pem = |label: &str, der: &[u8]| {
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    let mut out: String = certs.iter().map(|c| pem("CERTIFICATE", c)).collect();
    out.push_str(&pem(label, key.secret_der()));
    Ok(SecretString::from(out))
}

/// The innermost cause of an error: what actually went wrong.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        message = inner.to_string();
        cause = inner.source();
    }
    message
}

/// When a request failed because the server's certificate was refused: what to say
/// instead of rustls' bare words.
pub fn untrusted_certificate(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = cause {
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error(inner) {
            return Some(format!(
                "the server's TLS certificate is not trusted ({why:?}); a provider behind a private CA needs the credential's `ca_file`"
            ));
        }
        cause = inner.source();
    }
    None
}

/// The rustls error `e` is or wraps. An `io::Error`'s `source` skips the error it wraps,
/// and a boxed error in a chain is a `Box`, not what it holds: look inside both.
fn rustls_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| rustls_error(inner))
}

#[cfg(test)]
pub(crate) mod tests;
