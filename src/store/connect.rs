//! Connecting to the store: the libpq URL read as libpq reads it (`sslmode` from `disable`
//! to `verify-full`, `sslrootcert`), TLS through rustls with aws-lc-rs, and the session
//! settings every refreshd connection carries.
//!
//! The URL may hold a password: it is never logged or put in an error; errors name the host.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;

/// A connection's I/O half: polled by a task of its own (or the listener, for notifications).
pub type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive: a peer that vanished without a FIN is noticed within about 25 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// Where and how to connect, read once from the URL.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: MakeRustlsConnect,
    /// For messages: host(s) and database, no user or password.
    pub describe: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Target {
    /// Reads a libpq URL (`postgres://` or `postgresql://`) or key/value string.
    pub fn parse(url: &SecretString) -> Result<Target, StoreError> {
        let text = url.expose_secret();
        let (rest, ssl) = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            split_tls(text)?
        } else {
            (text.to_owned(), Tls::default())
        };
        let mut config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            // tokio-postgres names the option, never its value.
            StoreError::Url(e.to_string())
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.application_name("refreshd");
        config.keepalives_interval(KEEPALIVE_INTERVAL);
        config.keepalives_retries(KEEPALIVE_RETRIES);
        let tls = match ssl.mode {
            // Not in a URL (a key/value string, or no `sslmode`): what tokio-postgres read
            // stands (`disable`, `prefer` or `require`), never lowered; nothing is verified.
            None => encrypt_only(),
            Some(Mode::Disable) => {
                config.ssl_mode(SslMode::Disable);
                encrypt_only()
            }
            Some(Mode::Prefer) => {
                config.ssl_mode(SslMode::Prefer);
                encrypt_only()
            }
            Some(Mode::Require) if ssl.root.is_none() => {
                config.ssl_mode(SslMode::Require);
                encrypt_only()
            }
            // As libpq: `require` with a root certificate verifies like `verify-ca`.
            Some(Mode::Require | Mode::Verify) => {
                config.ssl_mode(SslMode::Require);
                verifying(ssl.root)?
            }
        };
        let describe = describe(&config);
        Ok(Target {
            config,
            tls,
            describe,
        })
    }

    /// A new connection; its I/O half must be polled for the client to work.
    pub async fn connect(&self) -> Result<(Client, Connection), StoreError> {
        self.config.connect(self.tls.clone()).await.map_err(|e| {
            StoreError::Unreachable(format!("{}: {}", self.describe, super::describe(&e)))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    /// `verify-ca` and `verify-full`: both verify the host name too (rustls always does);
    /// `verify-ca`'s weaker promise is not offered.
    Verify,
}

#[derive(Debug, Default)]
struct Tls {
    /// `None` when not given: tokio-postgres's default (`prefer`, as libpq's) stands.
    mode: Option<Mode>,
    root: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (tokio-postgres knows only three modes and
/// no root file): the URL without them, and what they asked for.
fn split_tls(text: &str) -> Result<(String, Tls), StoreError> {
    let mut url =
        url::Url::parse(text).map_err(|e| StoreError::Url(format!("not a libpq URL: {e}")))?;
    let mut tls = Tls::default();
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        match &*key {
            "sslmode" => {
                tls.mode = Some(match &*value {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" | "verify-full" => Mode::Verify,
                    other => {
                        return Err(StoreError::Url(format!(
                            "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        )));
                    }
                })
            }
            "sslrootcert" => tls.root = Some(PathBuf::from(&*value)),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.into(), tls))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Verifies the server's chain and name against `root` (libpq's default
/// `~/.postgresql/root.crt` when not given).
fn verifying(root: Option<PathBuf>) -> Result<MakeRustlsConnect, StoreError> {
    let root = match root {
        Some(root) => root,
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
            .ok_or_else(|| {
                StoreError::Url("sslmode=verify-full needs sslrootcert=FILE".to_owned())
            })?,
    };
    let certs = CertificateDer::pem_file_iter(&root)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Url(format!("sslrootcert {}: {e}", root.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(StoreError::Url(format!(
            "sslrootcert {}: no certificate in it",
            root.display()
        )));
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Url(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` and `require` without a root certificate, as libpq does them: encrypted, but
/// the server's certificate is not checked (the handshake's signatures still are).
fn encrypt_only() -> MakeRustlsConnect {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// "host:port/db" for messages.
fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_and_the_rest_kept() {
        let (rest, tls) =
            split_tls("postgres://u:p@db.example:6432/fleet?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3")
                .unwrap();
        assert_eq!(tls.mode, Some(Mode::Verify));
        assert_eq!(tls.root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            rest,
            "postgres://u:p@db.example:6432/fleet?connect_timeout=3"
        );
        let (rest, tls) = split_tls("postgresql://db/fleet").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgresql://db/fleet", None));
        assert!(split_tls("postgres://db/x?sslmode=always").is_err());
    }

    #[test]
    fn a_key_value_string_keeps_its_sslmode() {
        for (text, mode) in [
            ("host=db dbname=fleet sslmode=require", SslMode::Require),
            ("host=db dbname=fleet sslmode=disable", SslMode::Disable),
            ("host=db dbname=fleet", SslMode::Prefer),
            ("postgres://db/fleet", SslMode::Prefer),
            ("postgres://db/fleet?sslmode=require", SslMode::Require),
        ] {
            let target = Target::parse(&SecretString::from(text)).unwrap();
            assert_eq!(target.config.get_ssl_mode(), mode, "{text}");
        }
    }

    #[test]
    fn messages_name_the_host_never_the_password() {
        let target = Target::parse(&SecretString::from(
            "postgres://app:hunter2@db.example:6432/fleet?sslmode=require",
        ))
        .unwrap();
        assert_eq!(target.describe, "postgres db.example:6432/fleet");
        assert!(!format!("{target:?}").contains("hunter2"));
        let Err(e) = Target::parse(&SecretString::from("postgres://app:hunter2@db/x?bogus=1"))
        else {
            panic!("an unknown option is refused");
        };
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
