//! A client's proof of who it is, raw → typed, for every source that takes one: a client
//! secret, a private key, a federated assertion, or a TLS client certificate (RFC 8705), at
//! most one, each with only the keys that go with it.
//!
//! Never resolves a secret reference.

use super::super::super::raw::RawSecretAuth;
use super::*;
use crate::config::network::{MtlsMethod, TlsClientAuth};

/// The ways a client proves who it is, for the message that asks for one.
pub(super) const CLIENT_KEYS: &str = "`client_secret`, `private_key` (with `key_id`), `client_assertion` (a federated token) and `auth = \"tls_client_auth\"` (with `client_cert` and `client_key`)";

/// The client authentication keys of the sources that take them.
pub(in super::super) struct RawClient {
    pub(in super::super) client_secret: Option<SecretRef>,
    pub(in super::super) private_key: Option<SecretRef>,
    pub(in super::super) key_id: Option<String>,
    pub(in super::super) x5t: Option<String>,
    pub(in super::super) audience: Option<String>,
    pub(in super::super) client_assertion: Option<SecretRef>,
    pub(in super::super) auth: Option<RawSecretAuth>,
    /// RFC 8705: the TLS client certificate and its key.
    pub(in super::super) client_cert: Option<SecretRef>,
    pub(in super::super) client_key: Option<SecretRef>,
}

/// At most one way of client authentication, with only the keys that go with it; `None`
/// when none is configured.
pub(super) fn client_auth(
    at: &At<'_, '_>,
    raw: RawClient,
) -> Result<Option<ClientAuth>, ConfigError> {
    let RawClient {
        client_secret,
        private_key,
        key_id,
        x5t,
        audience,
        client_assertion,
        auth,
        client_cert,
        client_key,
    } = raw;
    if let Some(tls) = tls_client(at, auth, client_cert, client_key)? {
        if client_secret.is_some() || private_key.is_some() || client_assertion.is_some() {
            return Err(at.err(
                "auth",
                "a client that authenticates with its TLS certificate sends no `client_secret`, `private_key` or `client_assertion`".into(),
            ));
        }
        return Ok(Some(ClientAuth::Tls(tls)));
    }
    let only_with = |keys: &[(bool, &str)], with: &str| {
        for (present, field) in keys {
            if *present {
                return Err(at.err(field, format!("`{field}` goes only with `{with}`")));
            }
        }
        Ok(())
    };
    let key_keys = [
        (key_id.is_some(), "key_id"),
        (x5t.is_some(), "x5t"),
        (audience.is_some(), "audience"),
    ];
    let client = match (client_secret, private_key, client_assertion) {
        (None, None, None) => {
            only_with(&key_keys, "private_key")?;
            only_with(&[(auth.is_some(), "auth")], "client_secret")?;
            return Ok(None);
        }
        (Some(secret), None, None) => {
            only_with(&key_keys, "private_key")?;
            ClientAuth::Secret {
                secret,
                auth: secret_auth(auth.unwrap_or_default()),
            }
        }
        (None, Some(key), None) => {
            if auth.is_some() {
                return Err(at.err(
                    "auth",
                    "`auth` goes only with `client_secret` (a private key signs an assertion)"
                        .into(),
                ));
            }
            ClientAuth::PrivateKeyJwt {
                key,
                key_id,
                x5t,
                audience,
            }
        }
        (None, None, Some(assertion)) => {
            only_with(&key_keys, "private_key")?;
            only_with(&[(auth.is_some(), "auth")], "client_secret")?;
            ClientAuth::Assertion { assertion }
        }
        _ => {
            return Err(at.err("", format!("give only one of {CLIENT_KEYS}")));
        }
    };
    Ok(Some(client))
}

/// How a secret travels; a TLS client sends none, so its `auth` says nothing here.
pub(super) fn secret_auth(raw: RawSecretAuth) -> SecretAuth {
    match raw {
        RawSecretAuth::Post => SecretAuth::Post,
        RawSecretAuth::Basic
        | RawSecretAuth::TlsClientAuth
        | RawSecretAuth::SelfSignedTlsClientAuth => SecretAuth::Basic,
    }
}

/// RFC 8705: `auth = "tls_client_auth"` or `"self_signed_tls_client_auth"` with both
/// `client_cert` and `client_key`; either key without such an `auth` is refused (a
/// certificate that is never sent would be a silent mistake).
pub(super) fn tls_client(
    at: &At<'_, '_>,
    auth: Option<RawSecretAuth>,
    cert: Option<SecretRef>,
    key: Option<SecretRef>,
) -> Result<Option<TlsClientAuth>, ConfigError> {
    let method = match auth {
        Some(RawSecretAuth::TlsClientAuth) => MtlsMethod::TlsClientAuth,
        Some(RawSecretAuth::SelfSignedTlsClientAuth) => MtlsMethod::SelfSignedTlsClientAuth,
        _ => {
            if let Some(field) = [("client_cert", &cert), ("client_key", &key)]
                .into_iter()
                .find_map(|(field, value)| value.is_some().then_some(field))
            {
                return Err(at.err(
                    field,
                    format!("`{field}` goes only with auth = \"tls_client_auth\" or \"self_signed_tls_client_auth\""),
                ));
            }
            return Ok(None);
        }
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsClientAuth { method, cert, key })),
        (cert, _) => {
            let missing = if cert.is_none() {
                "client_cert"
            } else {
                "client_key"
            };
            Err(at.err(
                missing,
                "a client that authenticates with its TLS certificate needs `client_cert` and `client_key` (PEM, secret references)".into(),
            ))
        }
    }
}
