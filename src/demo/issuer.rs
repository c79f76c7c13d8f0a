//! The development token issuer behind `refreshd demo`: an RFC 6749 token endpoint on
//! 127.0.0.1 that mints HS256 JWT access tokens for the one public client `refreshd-demo`
//! from rotating refresh tokens, and revokes the whole grant when a spent refresh token is
//! presented again, as production servers do. That is what lets the demo show why refreshd
//! stores a rotated refresh token before it uses the access token that came with it.
//!
//! It must never be a test oracle for refreshd's own correctness: it shares refreshd's
//! reading of RFC 6749, so a mistake made in both would pass (the real-peer tests use
//! oidc-provider for that). It must never log a token, and never listen beyond loopback.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

/// The one client the issuer knows: public, so it authenticates with nothing but its id.
pub const CLIENT_ID: &str = "refreshd-demo";
/// Every grant's scope; a refresh request may narrow it (RFC 6749 §6), never widen it.
pub const SCOPE: &str = "demo offline_access";

const SUBJECT: &str = "demo-user";
const KEY_ID: &str = "demo-1";
const TOKEN_PATH: &str = "/oauth/token";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// A token request is a few hundred bytes; the cap keeps a stray upload from filling memory.
const MAX_BODY: usize = 16 * 1024;

/// A running issuer. Dropping it stops accepting and closes open connections.
pub struct Issuer {
    addr: SocketAddr,
    token_url: Url,
    initial_refresh_token: SecretString,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// What the token endpoint has answered so far, for the demo's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssuerStats {
    /// Successful refresh grants, each of which rotated the refresh token.
    pub issued: u64,
    /// Token requests answered with an OAuth error (RFC 6749 §5.2).
    pub refused: u64,
}

impl Issuer {
    /// Binds `127.0.0.1:0`, mints the signing key and a first refresh token, and serves
    /// until dropped. The TTL must be at least a second: JWT times are whole seconds.
    pub async fn start(access_token_ttl: Duration) -> io::Result<Issuer> {
        let ttl_secs = match i64::try_from(access_token_ttl.as_secs()) {
            Ok(secs) if secs >= 1 => secs,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "access token TTL {access_token_ttl:?} is not between 1 s and i64::MAX s"
                    ),
                ));
            }
        };
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(MintError::Random(e)))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let token_url = Url::parse(&format!("{issuer}{TOKEN_PATH}")).map_err(io::Error::other)?;
        let shared = Arc::new(Shared {
            issuer,
            token_url: token_url.to_string(),
            ttl_secs,
            key,
            grants: Mutex::new(Grants::default()),
            issued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let initial_refresh_token = shared.new_grant().map_err(io::Error::other)?;
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Ok(Issuer {
            addr,
            token_url,
            initial_refresh_token,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/oauth/token`.
    pub fn token_url(&self) -> Url {
        self.token_url.clone()
    }

    /// `http://127.0.0.1:PORT`, the `iss` of every access token.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The refresh token minted at start for [`CLIENT_ID`]. It is spent by its first use,
    /// so handing it to refreshd and also trying it by hand revokes the grant.
    pub fn initial_refresh_token(&self) -> SecretString {
        self.initial_refresh_token.clone()
    }

    /// Counters since start; cheap enough to poll for every line of demo output.
    pub fn stats(&self) -> IssuerStats {
        IssuerStats {
            issued: self.shared.issued.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        // The listener and every connection task are owned by this task, so aborting it
        // releases the port and closes kept-alive connections (once the runtime polls it).
        self.server.abort();
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Failures of the issuer itself, as opposed to requests it refuses.
#[derive(Debug, thiserror::Error)]
enum MintError {
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
    #[error("cannot sign the access token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Why a token request was refused, each mapped to its RFC 6749 §5.2 error code.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client_id is missing")]
    MissingClient,
    #[error("unknown client; this issuer only knows the public client refreshd-demo")]
    UnknownClient,
    /// `header` is whether the credentials came in `Authorization`, which obliges a
    /// `WWW-Authenticate` challenge in the answer (RFC 6749 §5.2).
    #[error("refreshd-demo is a public client: send client_id alone, without credentials")]
    ClientCredentials { header: bool },
    #[error("only the refresh_token grant is supported")]
    UnsupportedGrantType,
    #[error("unknown refresh token")]
    UnknownRefreshToken,
    #[error("refresh token was already used; the grant is revoked")]
    Reused,
    #[error("the grant was revoked because one of its spent refresh tokens was used again")]
    Revoked,
    #[error("scope may only narrow the granted \"demo offline_access\"")]
    InvalidScope,
    #[error("the issuer failed: {0}")]
    Server(#[from] MintError),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::MissingClient | Refusal::UnknownClient | Refusal::ClientCredentials { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidRequest(_) => "invalid_request",
            Refusal::MissingClient | Refusal::UnknownClient | Refusal::ClientCredentials { .. } => {
                "invalid_client"
            }
            Refusal::UnsupportedGrantType => "unsupported_grant_type",
            Refusal::UnknownRefreshToken | Refusal::Reused | Refusal::Revoked => "invalid_grant",
            Refusal::InvalidScope => "invalid_scope",
            Refusal::Server(_) => "server_error",
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = error_response(self.status(), self.code(), &self.to_string());
        if let Refusal::ClientCredentials { header: true } = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"refreshd-demo\""),
            );
        }
        response
    }
}

struct Shared {
    issuer: String,
    token_url: String,
    ttl_secs: i64,
    /// The HS256 key; nothing outside this process can verify the tokens, which is fine
    /// for a demo whose consumer (refreshd) never verifies signatures.
    key: [u8; 32],
    grants: Mutex<Grants>,
    issued: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Grants {
    /// Keyed by SHA-256 of the token, so the table never holds a usable refresh token.
    tokens: HashMap<[u8; 32], RefreshToken>,
    revoked: HashSet<u64>,
    next_family: u64,
}

/// One refresh token. Every token rotated out of the same original grant shares a family,
/// which is what gets revoked when a spent member is replayed.
struct RefreshToken {
    family: u64,
    spent: bool,
}

impl Shared {
    fn grants(&self) -> std::sync::MutexGuard<'_, Grants> {
        // Every update under the lock is a single insert or flag write, so a panic
        // elsewhere cannot leave the table half-changed: keep serving.
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new grant (a family of refresh tokens) and returns its first token.
    fn new_grant(&self) -> Result<SecretString, MintError> {
        let token = random_hex::<32>()?;
        let mut grants = self.grants();
        let family = grants.next_family;
        grants.next_family += 1;
        grants.tokens.insert(
            digest(&token),
            RefreshToken {
                family,
                spent: false,
            },
        );
        Ok(SecretString::from(token))
    }

    async fn token_endpoint(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.token_request(request).await {
            Ok(body) => {
                self.issued.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("demo issuer issued a token");
                let mut response = json_response(StatusCode::OK, &body);
                // RFC 6749 §5.1: token responses must not be cached anywhere.
                let headers = response.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                response
            }
            Err(refusal) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = refusal.code(), reason = %refusal, "demo issuer refused a token request");
                refusal.response()
            }
        }
    }

    async fn token_request(&self, request: Request<Incoming>) -> Result<Value, Refusal> {
        let authorization = request.headers().contains_key(header::AUTHORIZATION);
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(Refusal::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Refusal::InvalidRequest(format!(
                    "the body is over {MAX_BODY} bytes"
                )));
            }
            Err(e) => {
                return Err(Refusal::InvalidRequest(format!(
                    "cannot read the body: {e}"
                )));
            }
        };
        let params = parse_form(&body)?;
        let param = |name: &str| params.get(name).map(String::as_str);

        // The client is checked before the grant so that a caller who is not the demo
        // client learns nothing about which refresh tokens exist.
        match param("client_id") {
            None => return Err(Refusal::MissingClient),
            Some(CLIENT_ID) => {}
            Some(_) => return Err(Refusal::UnknownClient),
        }
        if authorization {
            return Err(Refusal::ClientCredentials { header: true });
        }
        if param("client_secret").is_some() || param("client_assertion").is_some() {
            return Err(Refusal::ClientCredentials { header: false });
        }
        match param("grant_type") {
            None => {
                return Err(Refusal::InvalidRequest("grant_type is missing".to_owned()));
            }
            Some("refresh_token") => {}
            Some(_) => return Err(Refusal::UnsupportedGrantType),
        }
        let Some(refresh_token) = param("refresh_token") else {
            return Err(Refusal::InvalidRequest(
                "refresh_token is missing".to_owned(),
            ));
        };
        let scope = narrowed_scope(param("scope"))?;
        self.refresh(refresh_token, &scope)
    }

    fn refresh(&self, presented: &str, scope: &str) -> Result<Value, Refusal> {
        let key = digest(presented);
        // One lock across check and rotation: two concurrent uses of a token must not
        // both see it current.
        let mut grants = self.grants();
        let Some(&RefreshToken { family, spent }) = grants.tokens.get(&key) else {
            return Err(Refusal::UnknownRefreshToken);
        };
        if spent {
            // A replayed refresh token means two parties hold the grant; neither can be
            // trusted, so the whole family goes (OAuth 2.0 Security BCP §4.14.2).
            grants.revoked.insert(family);
            tracing::debug!(
                family,
                "demo issuer revoked a grant after refresh token reuse"
            );
            return Err(Refusal::Reused);
        }
        if grants.revoked.contains(&family) {
            return Err(Refusal::Revoked);
        }
        // Mint before spending, so that a failure leaves the presented token usable.
        let access_token = self.access_token(scope)?;
        let refresh_token = random_hex::<32>().map_err(MintError::Random)?;
        if let Some(old) = grants.tokens.get_mut(&key) {
            old.spent = true;
        }
        grants.tokens.insert(
            digest(&refresh_token),
            RefreshToken {
                family,
                spent: false,
            },
        );
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.ttl_secs,
            "refresh_token": refresh_token,
            "scope": scope,
        }))
    }

    fn access_token(&self, scope: &str) -> Result<String, MintError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KEY_ID.to_owned());
        let iat = crate::clock::system_now().unix_timestamp();
        let claims = json!({
            "iss": self.issuer,
            "sub": SUBJECT,
            "aud": CLIENT_ID,
            "client_id": CLIENT_ID,
            "scope": scope,
            "iat": iat,
            "exp": iat.saturating_add(self.ttl_secs),
            "jti": random_hex::<16>()?,
        });
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&self.key),
        )?)
    }

    fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "grant_types_supported": ["refresh_token"],
        })
    }
}

/// Accepts until aborted by [`Issuer::drop`].
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections are children of this task, so aborting it also drops them: a client's
    // kept-alive connection must not outlive the issuer.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(route(&shared, request).await) }
                        });
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(error = %e, "demo issuer connection failed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors repeats at once; pause rather than spin.
                    tracing::warn!(error = %e, "demo issuer cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow for the demo's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn route(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    match request.uri().path() {
        TOKEN_PATH if method == Method::POST => shared.token_endpoint(request).await,
        TOKEN_PATH => method_not_allowed("POST"),
        DISCOVERY_PATH if method == Method::GET || method == Method::HEAD => {
            json_response(StatusCode::OK, &shared.discovery())
        }
        DISCOVERY_PATH => method_not_allowed("GET, HEAD"),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the token endpoint is POST /oauth/token",
        ),
    }
}

/// RFC 6749 §3.2: parameters without a value count as omitted, and none may repeat.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if value.is_empty() {
            continue;
        }
        if params.contains_key(name.as_ref()) {
            return Err(Refusal::InvalidRequest(format!(
                "parameter {name} is repeated"
            )));
        }
        params.insert(name.into_owned(), value.into_owned());
    }
    Ok(params)
}

/// The scope to grant: all of [`SCOPE`] when none is asked for, else the asked-for subset.
fn narrowed_scope(requested: Option<&str>) -> Result<String, Refusal> {
    let Some(requested) = requested else {
        return Ok(SCOPE.to_owned());
    };
    let requested: HashSet<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    let granted: HashSet<&str> = SCOPE.split(' ').collect();
    if !requested.is_subset(&granted) {
        return Err(Refusal::InvalidScope);
    }
    if requested.is_empty() {
        return Ok(SCOPE.to_owned());
    }
    // In SCOPE's order, so the answer does not depend on how the client ordered it.
    Ok(SCOPE
        .split(' ')
        .filter(|s| requested.contains(s))
        .collect::<Vec<_>>()
        .join(" "))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let mut response = json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    // Errors from the token endpoint are token responses too (RFC 6749 §5.2).
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this endpoint only answers {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `N` random bytes as lowercase hex: a bare `.env` value needs no quoting.
fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    let mut hex = String::with_capacity(2 * N);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use secrecy::ExposeSecret;

    const TTL: Duration = Duration::from_secs(30);

    struct Answer {
        status: u16,
        headers: reqwest::header::HeaderMap,
        json: Value,
    }

    impl Answer {
        fn error(&self) -> (&str, &str) {
            (
                self.json["error"].as_str().unwrap_or_default(),
                self.json["error_description"].as_str().unwrap_or_default(),
            )
        }

        fn refresh_token(&self) -> String {
            self.json["refresh_token"]
                .as_str()
                .expect("a refresh_token in the answer")
                .to_owned()
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        Answer {
            status,
            headers,
            json,
        }
    }

    async fn post(issuer: &Issuer, form: &[(&str, &str)]) -> Answer {
        let response = reqwest::Client::new()
            .post(issuer.token_url())
            .form(form)
            .send()
            .await
            .expect("the issuer answers");
        answer(response).await
    }

    async fn refresh(issuer: &Issuer, refresh_token: &str) -> Answer {
        post(
            issuer,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT_ID),
            ],
        )
        .await
    }

    fn is_hex(value: &str, len: usize) -> bool {
        value.len() == len
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[tokio::test]
    async fn refresh_answers_a_token_and_rotates_the_refresh_token() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let initial = issuer.initial_refresh_token();
        assert!(is_hex(initial.expose_secret(), 64));

        let first = refresh(&issuer, initial.expose_secret()).await;
        assert_eq!(first.status, 200, "{}", first.json);
        assert_eq!(first.headers["cache-control"], "no-store");
        assert_eq!(first.headers["pragma"], "no-cache");
        assert_eq!(first.headers["content-type"], "application/json");
        assert_eq!(first.json["token_type"], "Bearer");
        assert_eq!(first.json["expires_in"], 30);
        assert_eq!(first.json["scope"], SCOPE);
        let rotated = first.refresh_token();
        assert!(is_hex(&rotated, 64));
        assert_ne!(rotated, initial.expose_secret());

        let second = refresh(&issuer, &rotated).await;
        assert_eq!(second.status, 200, "{}", second.json);
        assert_ne!(second.refresh_token(), rotated);
        assert_ne!(second.json["access_token"], first.json["access_token"]);
        assert_eq!(
            issuer.stats(),
            IssuerStats {
                issued: 2,
                refused: 0
            }
        );
    }

    #[tokio::test]
    async fn the_access_token_is_a_signed_jwt_that_lives_for_the_ttl() {
        let issuer = Issuer::start(Duration::from_secs(90)).await.unwrap();
        let first = refresh(&issuer, issuer.initial_refresh_token().expose_secret()).await;
        let jwt = first.json["access_token"]
            .as_str()
            .expect("an access token");

        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some(KEY_ID));
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(jwt).unwrap();
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert_eq!(exp - iat, 90);
        assert!((iat - crate::clock::system_now().unix_timestamp()).abs() <= 5);
        assert_eq!(claims["iss"], issuer.issuer());
        assert_eq!(claims["sub"], SUBJECT);
        assert_eq!(claims["aud"], CLIENT_ID);
        assert_eq!(claims["client_id"], CLIENT_ID);
        assert_eq!(claims["scope"], SCOPE);
        assert!(is_hex(claims["jti"].as_str().unwrap(), 32), "{claims}");

        // The signature holds under the issuer's key, and not under another one.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&[issuer.issuer()]);
        let key = DecodingKey::from_secret(&issuer.shared.key);
        jsonwebtoken::decode::<Value>(jwt, &key, &validation).unwrap();
        let other = DecodingKey::from_secret(&[0u8; 32]);
        assert!(jsonwebtoken::decode::<Value>(jwt, &other, &validation).is_err());
    }

    #[tokio::test]
    async fn reusing_a_spent_refresh_token_revokes_the_grant() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let initial = issuer.initial_refresh_token();
        let rotated = refresh(&issuer, initial.expose_secret())
            .await
            .refresh_token();

        let replay = refresh(&issuer, initial.expose_secret()).await;
        assert_eq!(replay.status, 400);
        assert_eq!(
            replay.error(),
            (
                "invalid_grant",
                "refresh token was already used; the grant is revoked"
            )
        );
        assert_eq!(replay.headers["cache-control"], "no-store");

        // The newest token was never spent, yet it belongs to the revoked grant.
        let newest = refresh(&issuer, &rotated).await;
        assert_eq!(newest.status, 400, "{}", newest.json);
        assert_eq!(newest.error().0, "invalid_grant");
        assert_eq!(
            issuer.stats(),
            IssuerStats {
                issued: 1,
                refused: 2
            }
        );
    }

    #[tokio::test]
    async fn only_the_public_demo_client_is_served() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let initial = issuer.initial_refresh_token();
        let token = initial.expose_secret();
        let grant = [("grant_type", "refresh_token"), ("refresh_token", token)];

        let wrong = post(
            &issuer,
            &[grant[0], grant[1], ("client_id", "someone-else")],
        )
        .await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.error().0, "invalid_client");

        let missing = post(&issuer, &grant).await;
        assert_eq!(missing.status, 401);
        assert_eq!(missing.error().0, "invalid_client");

        let with_secret = post(
            &issuer,
            &[
                grant[0],
                grant[1],
                ("client_id", CLIENT_ID),
                ("client_secret", "s3cret"),
            ],
        )
        .await;
        assert_eq!(with_secret.status, 401);
        assert_eq!(with_secret.error().0, "invalid_client");

        let basic = reqwest::Client::new()
            .post(issuer.token_url())
            .basic_auth(CLIENT_ID, Some("s3cret"))
            .form(&[grant[0], grant[1], ("client_id", CLIENT_ID)])
            .send()
            .await
            .unwrap();
        let basic = answer(basic).await;
        assert_eq!(basic.status, 401);
        assert_eq!(basic.error().0, "invalid_client");
        assert!(basic.headers.contains_key("www-authenticate"));

        // Refusing the client must not have spent the token it presented.
        let right = refresh(&issuer, token).await;
        assert_eq!(right.status, 200, "{}", right.json);
        assert_eq!(
            issuer.stats(),
            IssuerStats {
                issued: 1,
                refused: 4
            }
        );
    }

    #[tokio::test]
    async fn malformed_requests_get_their_rfc_6749_error() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let initial = issuer.initial_refresh_token();
        let token = initial.expose_secret();
        let client = ("client_id", CLIENT_ID);
        let grant = ("grant_type", "refresh_token");

        let unknown = refresh(&issuer, "00ff").await;
        assert_eq!(unknown.status, 400);
        assert_eq!(unknown.error(), ("invalid_grant", "unknown refresh token"));

        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("grant_type", "client_credentials"), client],
                "unsupported_grant_type",
            ),
            (&[client, ("refresh_token", token)], "invalid_request"),
            (&[grant, client], "invalid_request"),
            (
                &[
                    grant,
                    client,
                    ("refresh_token", token),
                    ("refresh_token", token),
                ],
                "invalid_request",
            ),
            (
                &[
                    grant,
                    client,
                    ("refresh_token", token),
                    ("scope", "demo admin"),
                ],
                "invalid_scope",
            ),
        ];
        for (form, error) in cases {
            let refused = post(&issuer, form).await;
            assert_eq!(refused.status, 400, "{form:?}: {}", refused.json);
            assert_eq!(refused.error().0, error, "{form:?}");
        }

        let json_body = reqwest::Client::new()
            .post(issuer.token_url())
            .json(&json!({ "grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID }))
            .send()
            .await
            .unwrap();
        let json_body = answer(json_body).await;
        assert_eq!(json_body.status, 400);
        assert_eq!(json_body.error().0, "invalid_request");

        // None of the refusals spent the token; a narrowed scope is granted as asked.
        let narrowed = post(
            &issuer,
            &[grant, client, ("refresh_token", token), ("scope", "demo")],
        )
        .await;
        assert_eq!(narrowed.status, 200, "{}", narrowed.json);
        assert_eq!(narrowed.json["scope"], "demo");
    }

    #[tokio::test]
    async fn the_token_endpoint_only_takes_post() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let response = reqwest::Client::new()
            .get(issuer.token_url())
            .send()
            .await
            .unwrap();
        let got = answer(response).await;
        assert_eq!(got.status, 405);
        assert_eq!(got.headers["allow"], "POST");
        assert_eq!(issuer.stats(), IssuerStats::default());
    }

    #[tokio::test]
    async fn discovery_and_unknown_paths() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let base = issuer.issuer();
        let client = reqwest::Client::new();

        let discovery = client
            .get(format!("{base}{DISCOVERY_PATH}"))
            .send()
            .await
            .unwrap();
        let discovery = answer(discovery).await;
        assert_eq!(discovery.status, 200);
        assert_eq!(discovery.json["issuer"], base);
        assert_eq!(
            discovery.json["token_endpoint"],
            issuer.token_url().as_str()
        );
        assert_eq!(
            discovery.json["grant_types_supported"],
            json!(["refresh_token"])
        );

        let missing = client.get(format!("{base}/nope")).send().await.unwrap();
        let missing = answer(missing).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error().0, "not_found");
    }

    #[tokio::test]
    async fn urls_are_loopback_and_ttl_must_be_whole_seconds() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let url = issuer.token_url();
        assert_eq!(url.scheme(), "http");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path(), TOKEN_PATH);
        assert_eq!(
            issuer.issuer(),
            format!("http://127.0.0.1:{}", url.port().unwrap())
        );

        let error = Issuer::start(Duration::from_millis(500)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn dropping_the_issuer_stops_serving() {
        let issuer = Issuer::start(TTL).await.unwrap();
        let addr = issuer.addr;
        tokio::net::TcpStream::connect(addr).await.unwrap();
        drop(issuer);
        // The abort takes effect when the runtime next polls the server task.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{addr} still accepts after the issuer was dropped");
    }
}
