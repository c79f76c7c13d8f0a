//! Client authentication at a token endpoint, shared by every grant: a client secret by
//! HTTP Basic or in the body (RFC 6749 §2.3.1), an RS256/ES256 assertion signed with the
//! client's key (RFC 7523), or a federated token someone else signed, sent as the
//! assertion (RFC 7521 §4.2; Entra workload identity federation).
//!
//! Never logs; a secret, key or assertion only ever goes into the request.

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ClientAuth, JWT_BEARER_ASSERTION, SecretAuth};
use crate::source::SourceError;
use crate::source::resolve::resolve;

/// What a confidential client sends to prove who it is: its secret, or an assertion
/// (signed here with its key, or a federated token someone else signed).
pub(in crate::source) struct ClientProof {
    /// `None` for a TLS client certificate: the handshake sent it.
    pub(in crate::source) value: Option<SecretString>,
    how: Proof,
}

enum Proof {
    Secret(SecretAuth),
    Assertion,
    /// RFC 8705: `client_id` in the body, the certificate in the handshake.
    Tls,
}

impl ClientProof {
    /// Reads the secret, key or assertion now (files are re-read: they rotate).
    pub(in crate::source) fn of(
        client_id: &str,
        client: &ClientAuth,
        token_url: &url::Url,
    ) -> Result<ClientProof, SourceError> {
        match client {
            ClientAuth::Secret { secret, auth } => Ok(ClientProof {
                value: Some(resolve("client_secret", secret)?),
                how: Proof::Secret(*auth),
            }),
            ClientAuth::Tls(_) => Ok(ClientProof {
                value: None,
                how: Proof::Tls,
            }),
            ClientAuth::PrivateKeyJwt {
                key,
                key_id,
                x5t,
                audience,
            } => {
                let key = resolve("private_key", key)?;
                let audience = audience.as_deref().unwrap_or(token_url.as_str());
                let value =
                    client_assertion(client_id, audience, key_id.as_deref(), x5t.as_deref(), &key)?;
                Ok(ClientProof {
                    value: Some(value),
                    how: Proof::Assertion,
                })
            }
            ClientAuth::Assertion { assertion } => {
                let value = resolve("client_assertion", assertion)?;
                crate::source::subject::refuse_expired(&value, || {
                    format!(
                        "client_assertion {}",
                        crate::source::subject::describe(assertion)
                    )
                })?;
                Ok(ClientProof {
                    value: Some(value),
                    how: Proof::Assertion,
                })
            }
        }
    }

    /// Adds the proof to the request: HTTP Basic or the body for a secret (RFC 6749
    /// §2.3.1), the body for an assertion (RFC 7521 §4.2).
    pub(in crate::source) fn present<'a>(
        &'a self,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'a str, &'a str)>,
        client_id: &'a str,
    ) -> reqwest::RequestBuilder {
        match (&self.how, &self.value) {
            (Proof::Secret(auth), value) => {
                client_auth(request, form, client_id, value.as_ref(), *auth)
            }
            (Proof::Assertion, Some(value)) => {
                form.push(("client_id", client_id));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
                form.push(("client_assertion", value.expose_secret()));
                request
            }
            (Proof::Assertion | Proof::Tls, _) => {
                form.push(("client_id", client_id));
                request
            }
        }
    }
}

/// RFC 6749 §2.3.1: HTTP Basic with form-urlencoded id and secret, or both in the body.
/// A public client (no secret) sends only `client_id` in the body.
pub(in crate::source) fn client_auth<'a>(
    request: reqwest::RequestBuilder,
    form: &mut Vec<(&'a str, &'a str)>,
    client_id: &'a str,
    secret: Option<&'a SecretString>,
    auth: SecretAuth,
) -> reqwest::RequestBuilder {
    match (secret, auth) {
        (Some(secret), SecretAuth::Basic) => {
            let id: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
            let pass: String =
                url::form_urlencoded::byte_serialize(secret.expose_secret().as_bytes()).collect();
            request.basic_auth(id, Some(pass))
        }
        (Some(secret), SecretAuth::Post) => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret.expose_secret()));
            request
        }
        (None, _) => {
            form.push(("client_id", client_id));
            request
        }
    }
}

/// A short-lived RS256/ES256 client assertion (RFC 7523 §2.2, `private_key_jwt`).
pub(super) fn client_assertion(
    client_id: &str,
    audience: &str,
    key_id: Option<&str>,
    x5t: Option<&str>,
    pem: &SecretString,
) -> Result<SecretString, SourceError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = pem.expose_secret().as_bytes();
    let (key, algorithm) = match EncodingKey::from_rsa_pem(pem) {
        Ok(key) => (key, Algorithm::RS256),
        Err(_) => match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (key, Algorithm::ES256),
            Err(_) => {
                return Err(SourceError::PrivateKey(
                    "not a PEM RSA or EC (P-256) private key".to_owned(),
                ));
            }
        },
    };
    let mut header = Header::new(algorithm);
    header.kid = key_id.map(str::to_owned);
    // Entra ID finds the certificate by its SHA-1 thumbprint, not by `kid`.
    header.x5t = x5t.map(str::to_owned);
    let now = crate::clock::system_now().unix_timestamp();
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti)
        .map_err(|e| SourceError::PrivateKey(format!("no randomness for jti: {e}")))?;
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map(SecretString::from)
        .map_err(|e| SourceError::PrivateKey(format!("cannot sign the client assertion: {e}")))
}
