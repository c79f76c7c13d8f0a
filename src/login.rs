//! `refreshd login`: gets an `oauth-refresh` credential its first refresh token, through the
//! authorization-code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252), or the
//! device flow (RFC 8628), and stores it in the state directory as a rotation would.
//!
//! Never prints or logs a token, an authorization code, a device code or the PKCE verifier:
//! the URL it prints carries only the challenge and the `state`. It never writes targets
//! itself; the caller hands the stored token to the daemon or to a rotation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::config::{Credential, DEFAULT_REDIRECT_URI, OauthRefreshSource};
use crate::source::{SourceError, oauth};
use crate::state::{StateDir, StateError};
use crate::token::{Fetched, Token, fingerprint};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How `refreshd login` runs.
pub struct Options {
    /// The device flow instead of a browser redirect.
    pub device: bool,
    /// Try to open a browser on the authorization URL.
    pub open_browser: bool,
    /// The loopback port, instead of the redirect URI's or an ephemeral one.
    pub port: Option<u16>,
    /// How long to wait for the person to finish.
    pub timeout: Duration,
    /// Per HTTP request.
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "credential `{0}` has no oauth-refresh source: only those need a login (the others get their tokens without a person)"
    )]
    NotOauthRefresh(String),
    #[error(
        "credential `{credential}` has no `{field}` and no `issuer` to discover it from: add one of them to its source"
    )]
    NoEndpoint {
        credential: String,
        field: &'static str,
    },
    #[error("discovery at {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("cannot listen on {addr} for the login redirect: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the authorization server refused the login: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("{url}: not a device authorization response: {reason}")]
    Device { url: String, reason: String },
    #[error("no login within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error(
        "the token response has no refresh token: ask for offline access (e.g. the `offline_access` scope) in the credential's `scopes`"
    )]
    NoRefreshToken,
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a successful login stored.
pub struct LoggedIn {
    pub fingerprint: String,
    pub expires_at: OffsetDateTime,
}

/// Runs the login for `credential` and stores the result in `state`.
pub async fn login(
    credential: &Credential,
    state: &StateDir,
    http: &reqwest::Client,
    options: &Options,
) -> Result<LoggedIn, LoginError> {
    let source = credential
        .source
        .oauth_refresh()
        .ok_or_else(|| LoginError::NotOauthRefresh(credential.name.clone()))?;
    let fetched = if options.device {
        let url = endpoint(credential, source, http, options, Endpoint::Device).await?;
        device_flow(source, http, &url, options).await?
    } else {
        let url = endpoint(credential, source, http, options, Endpoint::Authorize).await?;
        code_flow(credential, source, http, &url, options).await?
    };
    store(credential, source, state, fetched).await
}

#[derive(Clone, Copy)]
enum Endpoint {
    Authorize,
    Device,
}

/// The configured endpoint, or the one the issuer's metadata names.
async fn endpoint(
    credential: &Credential,
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    options: &Options,
    which: Endpoint,
) -> Result<Url, LoginError> {
    let (configured, field, metadata_key) = match which {
        Endpoint::Authorize => (
            &source.authorize_url,
            "authorize_url",
            "authorization_endpoint",
        ),
        Endpoint::Device => (
            &source.device_authorization_url,
            "device_authorization_url",
            "device_authorization_endpoint",
        ),
    };
    if let Some(url) = configured {
        return Ok(url.clone());
    }
    let Some(issuer) = &source.issuer else {
        return Err(LoginError::NoEndpoint {
            credential: credential.name.clone(),
            field,
        });
    };
    let metadata = discover(issuer, http, options.request_timeout).await?;
    if let Some(token_endpoint) = metadata.get("token_endpoint").and_then(Value::as_str)
        && token_endpoint != source.token_url.as_str()
    {
        tracing::warn!(credential = %credential.name, discovered = token_endpoint, configured = %source.token_url, "the issuer's token endpoint differs from token_url; refreshes use token_url");
    }
    let text = metadata
        .get(metadata_key)
        .and_then(Value::as_str)
        .ok_or_else(|| LoginError::Discovery {
            url: issuer.to_string(),
            reason: format!("the metadata has no `{metadata_key}`; set `{field}`"),
        })?;
    let url = Url::parse(text).map_err(|e| LoginError::Discovery {
        url: issuer.to_string(),
        reason: format!("`{metadata_key}` is not a URL: {e}"),
    })?;
    if url.scheme() != "https" && url.scheme() != issuer.scheme() {
        return Err(LoginError::Discovery {
            url: issuer.to_string(),
            reason: format!("`{metadata_key}` {url} is not https"),
        });
    }
    Ok(url)
}

/// OpenID Connect discovery, then RFC 8414 authorization-server metadata.
async fn discover(
    issuer: &Url,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<Value, LoginError> {
    let base = issuer.as_str().trim_end_matches('/');
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_path("");
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    let candidates = [
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ];
    let mut reasons = Vec::new();
    for url in &candidates {
        let response = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(json) if json.is_object() => return Ok(json),
                _ => reasons.push(format!("{url}: not a JSON object")),
            },
            Ok(r) => reasons.push(format!("{url}: HTTP {}", r.status().as_u16())),
            Err(e) => reasons.push(format!(
                "{url}: {}",
                oauth::transport_error(url, timeout, &e)
            )),
        }
    }
    Err(LoginError::Discovery {
        url: issuer.to_string(),
        reason: reasons.join("; "),
    })
}

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

async fn code_flow(
    credential: &Credential,
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    authorize: &Url,
    options: &Options,
) -> Result<Fetched, LoginError> {
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
    let mut redirect_uri = configured.clone();
    let _ = redirect_uri.set_port(Some(bound.port()));

    let verifier = SecretString::from(random_b64(32));
    let state = random_b64(16);
    let mut url = authorize.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &source.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str());
        if !source.scopes.is_empty() {
            query.append_pair("scope", &source.scopes.join(" "));
        }
        query
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        for (k, v) in source.params.iter().chain(&source.authorize_params) {
            query.append_pair(k, v);
        }
        // OpenID Connect Core §11: offline access is granted only with explicit consent.
        let offline = source.scopes.iter().any(|s| s == "offline_access");
        if offline && !source.authorize_params.contains_key("prompt") {
            query.append_pair("prompt", "consent");
        }
    }

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
                let redirect = redirect_uri.to_string();
                let grant = [
                    ("grant_type", "authorization_code"),
                    ("code", code.expose_secret()),
                    ("redirect_uri", redirect.as_str()),
                    ("code_verifier", verifier.expose_secret()),
                ];
                let result = oauth::grant(
                    source,
                    http,
                    options.request_timeout,
                    &grant,
                    &[&code, &verifier],
                )
                .await;
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

/// Answers the loopback redirect. A request with the wrong path or `state` is refused and
/// the wait goes on (anything on this machine can connect; only the browser knows `state`).
async fn serve_redirect(
    listener: tokio::net::TcpListener,
    path: String,
    state: String,
    callbacks: mpsc::Sender<Callback>,
) {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, StatusCode};

    let page = |status: StatusCode, text: &str| {
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>refreshd</title></head><body><p>{}</p></body></html>",
            text.replace('&', "&amp;").replace('<', "&lt;")
        );
        Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
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
                    if request.uri().path() != path {
                        return Ok::<_, std::convert::Infallible>(page(
                            StatusCode::NOT_FOUND,
                            "Not the login redirect.",
                        ));
                    }
                    let query: Vec<(String, String)> = request
                        .uri()
                        .query()
                        .map(|q| {
                            url::form_urlencoded::parse(q.as_bytes())
                                .into_owned()
                                .collect()
                        })
                        .unwrap_or_default();
                    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    if get("state").as_deref() != Some(state.as_str()) {
                        return Ok(page(
                            StatusCode::BAD_REQUEST,
                            "This redirect does not belong to the login refreshd is waiting for (its state does not match). Start from the URL refreshd printed.",
                        ));
                    }
                    if let Some(error) = get("error") {
                        let _ = callbacks
                            .send(Callback::Refused {
                                error: error.clone(),
                                description: get("error_description"),
                            })
                            .await;
                        return Ok(page(
                            StatusCode::BAD_REQUEST,
                            &format!("The login was refused ({error}). See the terminal."),
                        ));
                    }
                    let Some(code) = get("code") else {
                        return Ok(page(StatusCode::BAD_REQUEST, "No authorization code."));
                    };
                    let (reply, outcome) = oneshot::channel();
                    if callbacks
                        .send(Callback::Code(SecretString::from(code), reply))
                        .await
                        .is_err()
                    {
                        return Ok(page(StatusCode::GONE, "refreshd is no longer waiting."));
                    }
                    Ok(match outcome.await {
                        Ok(Ok(())) => page(
                            StatusCode::OK,
                            "refreshd: logged in. You can close this window.",
                        ),
                        Ok(Err(e)) => page(
                            StatusCode::BAD_GATEWAY,
                            &format!("refreshd could not redeem the code: {e}"),
                        ),
                        Err(_) => page(StatusCode::GONE, "refreshd stopped waiting."),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
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

async fn device_flow(
    source: &OauthRefreshSource,
    http: &reqwest::Client,
    url: &Url,
    options: &Options,
) -> Result<Fetched, LoginError> {
    let answer = oauth::device_authorization(source, http, url, options.request_timeout).await?;
    let text = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
    let malformed = |reason: &str| LoginError::Device {
        url: url.to_string(),
        reason: reason.to_owned(),
    };
    let device_code =
        SecretString::from(text("device_code").ok_or_else(|| malformed("no `device_code`"))?);
    let user_code = text("user_code").ok_or_else(|| malformed("no `user_code`"))?;
    // Google says `verification_url`.
    let verification = text("verification_uri")
        .or_else(|| text("verification_url"))
        .ok_or_else(|| malformed("no `verification_uri`"))?;
    let seconds = |k: &str| answer.get(k).and_then(Value::as_u64);
    let mut interval = Duration::from_secs(seconds("interval").unwrap_or(5).max(1));
    let lifetime = Duration::from_secs(seconds("expires_in").unwrap_or(600));
    eprintln!("Open {verification} and enter the code {user_code}");
    if let Some(complete) = text("verification_uri_complete") {
        eprintln!("(or open {complete})");
    }
    eprintln!("Waiting for the approval (Ctrl-C to cancel)…");
    let deadline = tokio::time::Instant::now() + lifetime;
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(LoginError::TimedOut(lifetime));
        }
        let grant = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code.expose_secret()),
        ];
        match oauth::grant(
            source,
            http,
            options.request_timeout,
            &grant,
            &[&device_code],
        )
        .await
        {
            Ok(fetched) => return Ok(fetched),
            Err(SourceError::Provider { error, .. }) if error == "authorization_pending" => {}
            Err(SourceError::Provider { error, .. }) if error == "slow_down" => {
                // RFC 8628 §3.5: every later poll waits 5 s longer.
                interval += Duration::from_secs(5);
                tracing::debug!(
                    interval = interval.as_secs(),
                    "slow_down: polling less often"
                );
            }
            Err(SourceError::Provider {
                error, description, ..
            }) if error == "access_denied" || error == "expired_token" => {
                return Err(LoginError::Refused { error, description });
            }
            // A network blip or a 5xx must not end a login the person may be finishing.
            Err(e) if e.kind() == crate::source::FailureKind::Transient => {
                tracing::warn!("polling the token endpoint: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Stores the tokens as a rotation would: under the credential's lock, durably, with the
/// credential marked healthy.
async fn store(
    credential: &Credential,
    source: &OauthRefreshSource,
    state: &StateDir,
    fetched: Fetched,
) -> Result<LoggedIn, LoginError> {
    let now = crate::clock::system_now();
    let (token, refresh_token) =
        Token::from_fetched(fetched, now, credential.timing.default_lifetime);
    let refresh_token = refresh_token.ok_or(LoginError::NoRefreshToken)?;
    // The configured bootstrap token (if any) must not take over from this newer login.
    let bootstrap_fingerprint = source
        .refresh_token
        .as_ref()
        .and_then(|r| r.resolve().ok())
        .map(|t| fingerprint(&t));
    let logged_in = LoggedIn {
        fingerprint: token.fingerprint(),
        expires_at: token.expires_at,
    };
    let state = state.clone();
    let name = credential.name.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StateError> {
        let _lock = state.lock(&name)?;
        let mut stored = state.load(&name)?;
        stored.record_login(token, refresh_token, bootstrap_fingerprint, now);
        state.save(&name, &stored)
    })
    .await
    .expect("the state write does not panic")?;
    Ok(logged_in)
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
