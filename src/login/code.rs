//! The authorization-code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252):
//! the URL to open, the one-shot redirect listener, and the code exchange.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::config::{Credential, DEFAULT_REDIRECT_URI, OauthRefreshSource};
use crate::source::oauth;
use crate::token::Fetched;

use super::{LoginError, Options};

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS has no source of randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
fn challenge(verifier: &SecretString) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

/// What the loopback listener hands the flow: a code, or the server's refusal. The reply
/// channel carries the outcome of the exchange back to the browser page.
enum Callback {
    Code(SecretString, oneshot::Sender<Result<(), String>>),
    Refused {
        error: String,
        description: Option<String>,
    },
}

pub(super) async fn code_flow(
    credential: &Credential,
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    authorize: &Url,
    options: &Options,
) -> Result<Fetched, LoginError> {
    let (listener, redirect_uri) = listen(source, options).await?;
    let verifier = SecretString::from(random_b64(32));
    let state = random_b64(16);
    let url = authorize_url(authorize, source, &redirect_uri, &state, &verifier);

    let (callbacks, mut received) = mpsc::channel::<Callback>(4);
    let server = tokio::spawn(serve_redirect(
        listener,
        redirect_uri.path().to_owned(),
        state,
        callbacks,
    ));
    eprintln!(
        "To log in credential `{}`, open this URL in a browser:\n\n  {url}\n\nWaiting for the redirect to {redirect_uri} (Ctrl-C to cancel)…",
        credential.name
    );
    if options.open_browser {
        open_browser(&url);
    }
    let result = tokio::time::timeout(options.timeout, async {
        match received.recv().await {
            Some(Callback::Code(code, reply)) => {
                let result = redeem(source, http, options, &redirect_uri, &code, &verifier).await;
                let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                result.map_err(LoginError::from)
            }
            Some(Callback::Refused { error, description }) => {
                Err(LoginError::Refused { error, description })
            }
            None => Err(LoginError::TimedOut(options.timeout)),
        }
    })
    .await;
    // Give the browser its page before the listener goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    result.unwrap_or(Err(LoginError::TimedOut(options.timeout)))
}

/// The loopback listener, on the configured redirect URI's address (and port, unless one
/// is given), and the redirect URI with the port it got.
async fn listen(
    source: &OauthRefreshSource,
    options: &Options,
) -> Result<(tokio::net::TcpListener, Url), LoginError> {
    let configured = source
        .redirect_uri
        .clone()
        .unwrap_or_else(|| Url::parse(DEFAULT_REDIRECT_URI).expect("a valid constant"));
    let ip = match configured.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let addr = SocketAddr::new(ip, options.port.or(configured.port()).unwrap_or(0));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LoginError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| LoginError::Listen { addr, source })?;
    let mut redirect_uri = configured;
    let _ = redirect_uri.set_port(Some(bound.port()));
    Ok((listener, redirect_uri))
}

/// The authorization URL to open: PKCE S256, `state`, the scopes and configured parameters.
fn authorize_url(
    authorize: &Url,
    source: &OauthRefreshSource,
    redirect_uri: &Url,
    state: &str,
    verifier: &SecretString,
) -> Url {
    let mut url = authorize.clone();
    let mut query = url.query_pairs_mut();
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &source.client_id)
        .append_pair("redirect_uri", redirect_uri.as_str());
    if !source.scopes.is_empty() {
        query.append_pair("scope", &source.scopes.join(" "));
    }
    query
        .append_pair("state", state)
        .append_pair("code_challenge", &challenge(verifier))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in source.params.iter().chain(&source.authorize_params) {
        query.append_pair(k, v);
    }
    // OpenID Connect Core §11: offline access is granted only with explicit consent.
    let offline = source.scopes.iter().any(|s| s == "offline_access");
    if offline && !source.authorize_params.contains_key("prompt") {
        query.append_pair("prompt", "consent");
    }
    drop(query);
    url
}

/// Exchanges the authorization code for tokens (one request).
async fn redeem(
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    options: &Options,
    redirect_uri: &Url,
    code: &SecretString,
    verifier: &SecretString,
) -> Result<Fetched, crate::source::SourceError> {
    let redirect = redirect_uri.to_string();
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.expose_secret()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier.expose_secret()),
    ];
    oauth::grant(
        source,
        http,
        options.request_timeout,
        &grant,
        &[code, verifier],
    )
    .await
}

type Page = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

/// A small HTML page saying `text`.
fn page(status: hyper::StatusCode, text: &str) -> Page {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>refreshd</title></head><body><p>{}</p></body></html>",
        text.replace('&', "&amp;").replace('<', "&lt;")
    );
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("a valid response")
}

/// Answers the loopback redirect. A request with the wrong path or `state` is refused and
/// the wait goes on (anything on this machine can connect; only the browser knows `state`).
async fn serve_redirect(
    listener: tokio::net::TcpListener,
    path: String,
    state: String,
    callbacks: mpsc::Sender<Callback>,
) {
    use hyper::Request;
    use hyper::body::Incoming;

    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let path = path.clone();
        let state = state.clone();
        let callbacks = callbacks.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let path = path.clone();
                let state = state.clone();
                let callbacks = callbacks.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        answer(request.uri(), &path, &state, &callbacks).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The page for one request to the redirect listener; a code or a refusal with the right
/// `state` goes to the flow.
async fn answer(
    uri: &hyper::Uri,
    path: &str,
    state: &str,
    callbacks: &mpsc::Sender<Callback>,
) -> Page {
    use hyper::StatusCode;

    if uri.path() != path {
        return page(StatusCode::NOT_FOUND, "Not the login redirect.");
    }
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("state").as_deref() != Some(state) {
        return page(
            StatusCode::BAD_REQUEST,
            "This redirect does not belong to the login refreshd is waiting for (its state does not match). Start from the URL refreshd printed.",
        );
    }
    if let Some(error) = get("error") {
        let _ = callbacks
            .send(Callback::Refused {
                error: error.clone(),
                description: get("error_description"),
            })
            .await;
        return page(
            StatusCode::BAD_REQUEST,
            &format!("The login was refused ({error}). See the terminal."),
        );
    }
    let Some(code) = get("code") else {
        return page(StatusCode::BAD_REQUEST, "No authorization code.");
    };
    let (reply, outcome) = oneshot::channel();
    if callbacks
        .send(Callback::Code(SecretString::from(code), reply))
        .await
        .is_err()
    {
        return page(StatusCode::GONE, "refreshd is no longer waiting.");
    }
    match outcome.await {
        Ok(Ok(())) => page(
            StatusCode::OK,
            "refreshd: logged in. You can close this window.",
        ),
        Ok(Err(e)) => page(
            StatusCode::BAD_GATEWAY,
            &format!("refreshd could not redeem the code: {e}"),
        ),
        Err(_) => page(StatusCode::GONE, "refreshd stopped waiting."),
    }
}

/// Opens the URL in a browser where there is one to open; silence otherwise (the URL is
/// printed either way).
fn open_browser(url: &Url) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let argv = vec![program.to_owned(), url.to_string()];
    // The opener needs the display; it hands the URL on and exits.
    let display = ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER"].map(str::to_owned);
    tokio::spawn(async move {
        let opened = crate::child::Child::new(&argv, Duration::from_secs(30))
            .inherit(&display)
            .run()
            .await;
        if let Err(e) = opened {
            tracing::debug!("cannot open a browser: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let a = random_b64(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_b64(32));
    }
}
