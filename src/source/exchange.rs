//! The `oauth-token-exchange` source (RFC 8693): trades a short-lived token the platform
//! gives the workload (a Kubernetes projected service-account token, a CI OIDC token,
//! another credential's token) for the provider's token, with no long-lived secret on disk.
//!
//! One POST per call, through the same client authentication, error classification and
//! token-response parsing as the other OAuth grants ([`super::oauth`]). Never logs; the
//! subject token and the client's secret or assertion never reach an error.

use secrecy::ExposeSecret;

use super::oauth::{ClientProof, post};
use super::{FetchContext, SourceError, subject};
use crate::config::{TOKEN_EXCHANGE_GRANT, TokenExchangeSource};
use crate::token::Fetched;

/// One exchange (RFC 8693 §2.1) of the subject token as it is now.
pub(super) async fn exchange(
    source: &TokenExchangeSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let subject_token = subject::read(&source.subject, ctx).await?;
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", subject_token.expose_secret()),
        ("subject_token_type", &source.subject_token_type),
    ];
    for (key, value) in [
        ("requested_token_type", &source.requested_token_type),
        ("audience", &source.audience),
        ("resource", &source.resource),
    ] {
        if let Some(value) = value {
            form.push((key, value));
        }
    }
    let scope = source.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    form.extend(source.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let tls = source
        .client
        .as_ref()
        .and_then(crate::config::ClientAuth::tls);
    let mut request = ctx.http(tls)?.post(source.token_url.clone());
    let proof = match (&source.client, &source.client_id) {
        (Some(client), Some(client_id)) => {
            Some(ClientProof::of(client_id, client, &source.token_url)?)
        }
        _ => None,
    };
    match (&proof, &source.client_id) {
        (Some(proof), Some(client_id)) => request = proof.present(request, &mut form, client_id),
        // A public client names itself; an anonymous exchange (Google's STS) sends no client.
        (None, Some(client_id)) => form.push(("client_id", client_id)),
        _ => {}
    }
    let secrets = [
        Some(&subject_token),
        proof.as_ref().and_then(|p| p.value.as_ref()),
    ];
    post(
        request,
        &form,
        source.token_url.as_str(),
        ctx.timeout,
        &secrets,
    )
    .await
}
