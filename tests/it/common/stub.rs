//! A fault-injecting HTTP/1.1 stub placed in front of the real `oidc-provider` token
//! endpoint: refreshd's `token_url` points here, and the test switches at run time between
//! forwarding every request to the real provider and answering with a fault (503 or 429
//! with `Retry-After`, a hang past refreshd's timeout, `invalid_grant`, a malformed 200).
//! Every request is counted and time-stamped with the mode that answered it, so a test can
//! check how often refreshd asked and how far apart.
//!
//! What this stub must never be: the only proof that a flow works. It invents faults and
//! nothing else; every token refreshd ends up holding was issued by the real provider behind
//! it (in `Forward` mode, or `StripAccessToken`, which forwards and then damages the answer).
//! The fault modes answer without contacting the provider, so they never spend a refresh
//! token: a rotating refresh token stays exactly as refreshd last stored it.
//!
//! One request per connection, always answered with `Connection: close`; only
//! `Content-Length` request bodies (what refreshd's client sends for a form POST).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the stub answers the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward the POST (body, `Authorization`, `Content-Type`, `Accept`) to the real token
    /// endpoint and relay its status, `Content-Type`, `Cache-Control`, `Pragma`,
    /// `Retry-After` and body.
    Forward,
    /// 503 with `Retry-After: N` and a body that is not an OAuth error.
    Unavailable { retry_after_secs: u64 },
    /// 429 with `Retry-After: N` and an OAuth-shaped error body whose code is not one of
    /// RFC 6749's (as some providers send for rate limits).
    TooMany { retry_after_secs: u64 },
    /// Read the request, answer nothing for this long, then close the connection.
    Hang(Duration),
    /// 400 `{"error":"invalid_grant","error_description":INVALID_GRANT_DESCRIPTION}`.
    InvalidGrant,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with JSON that has no `access_token` (and no `refresh_token`).
    MalformedJson,
    /// Forward to the real provider (which rotates the refresh token), then drop
    /// `access_token` from its successful answer, keeping the new `refresh_token`.
    StripAccessToken,
    /// Forward to the real provider (which rotates the refresh token), then replace its
    /// access token by an unsigned JWT with these `exp` and `iat` (Unix seconds, which may
    /// lie before year 0 or near year 10000).
    AbsurdJwt { exp: i64, iat: i64 },
    /// Wait this long, then forward to the real provider (an answer that takes its time).
    Slow(Duration),
    /// 400 `invalid_grant` whose description echoes the refresh token it was sent, in
    /// the shapes a careless provider might: URL-encoded, base64, JSON-escaped, upper case.
    EchoRefreshToken,
}

/// The description the `InvalidGrant` mode sends, for tests to look for.
pub const INVALID_GRANT_DESCRIPTION: &str =
    "stub: the refresh token was revoked by an administrator";

impl Mode {
    /// A short name for counting requests per mode.
    pub fn label(&self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Unavailable { .. } => "unavailable",
            Mode::TooMany { .. } => "too_many",
            Mode::Hang(_) => "hang",
            Mode::InvalidGrant => "invalid_grant",
            Mode::Malformed => "malformed",
            Mode::MalformedJson => "malformed_json",
            Mode::StripAccessToken => "strip_access_token",
            Mode::AbsurdJwt { .. } => "absurd_jwt",
            Mode::EchoRefreshToken => "echo_refresh_token",
            Mode::Slow(_) => "slow",
        }
    }
}

/// One request the stub received.
#[derive(Clone)]
pub struct Arrival {
    /// When the request (headers and body) had been read.
    pub at: Instant,
    /// `Mode::label` of the mode that answered it.
    pub mode: &'static str,
    pub method: String,
    pub path: String,
    /// What the stub sent back (0 for a hang).
    pub status: u16,
}

/// Written out rather than derived (same output): the tests read `method`, `path` and
/// `status` only in failure messages (`{arrivals:#?}`), and dead-code analysis ignores
/// derived `Debug`.
impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("at", &self.at)
            .field("mode", &self.mode)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("status", &self.status)
            .finish()
    }
}

struct Inner {
    mode: Mutex<Mode>,
    arrivals: Mutex<Vec<Arrival>>,
    /// Requests read so far, counted before any mode's answer (an arrival is recorded
    /// when it is answered): a test can act while a slow answer is on its way.
    received: std::sync::atomic::AtomicUsize,
    upstream: String,
    stop: AtomicBool,
    client: reqwest::blocking::Client,
}

/// The running stub; stops accepting when dropped (a hanging connection finishes its sleep).
pub struct Stub {
    inner: Arc<Inner>,
    addr: std::net::SocketAddr,
    /// `http://127.0.0.1:PORT/token`: put this in refreshd's `token_url`.
    pub url: String,
}

impl Stub {
    /// Starts the stub in front of `upstream` (the real token endpoint) in `mode`.
    pub fn start(upstream: &str, mode: Mode) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            mode: Mutex::new(mode),
            arrivals: Mutex::new(Vec::new()),
            received: std::sync::atomic::AtomicUsize::new(0),
            upstream: upstream.to_owned(),
            stop: AtomicBool::new(false),
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        });
        let accepting = inner.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let inner = accepting.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(&inner, stream) {
                        eprintln!("[stub] connection failed: {e}");
                    }
                });
            }
        });
        Stub {
            inner,
            addr,
            url: format!("http://{addr}/token"),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Every request so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.inner.arrivals.lock().unwrap().clone()
    }

    /// Requests so far that `mode` (a `Mode::label`) answered.
    pub fn count(&self, mode: &str) -> usize {
        self.arrivals().iter().filter(|a| a.mode == mode).count()
    }

    /// Requests read so far, answered or not yet (a `Slow` answer still on its way).
    pub fn received(&self) -> usize {
        self.inner.received.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.inner.arrivals.lock().unwrap().len()
    }

    /// Waits until `mode` has answered `n` requests; panics after `timeout`.
    pub fn wait_for(&self, mode: &str, n: usize, timeout: Duration) -> Vec<Arrival> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrivals = self.arrivals();
            if arrivals.iter().filter(|a| a.mode == mode).count() >= n {
                return arrivals;
            }
            assert!(
                Instant::now() < deadline,
                "the stub's {mode} mode did not answer {n} request(s) within {timeout:?}: {arrivals:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None); // Connected and closed (the Drop wake-up, or a probe).
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(std::io::Error::other(
                "connection closed inside the headers",
            ));
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return Err(std::io::Error::other(
            "chunked request bodies are not supported by the stub",
        ));
    }
    let length: usize = request
        .header("content-length")
        .map(|v| v.parse().map_err(std::io::Error::other))
        .transpose()?
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    fn header(mut self, name: &str, value: impl ToString) -> Answer {
        self.headers.push((name.into(), value.to_string()));
        self
    }
}

fn serve(inner: &Inner, mut stream: TcpStream) -> std::io::Result<()> {
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    inner.received.fetch_add(1, Ordering::SeqCst);
    let mode = inner.mode.lock().unwrap().clone();
    let at = Instant::now();
    let answer = match &mode {
        Mode::Hang(duration) => {
            record(inner, at, &mode, &request, 0);
            std::thread::sleep(*duration);
            return Ok(()); // Dropping the stream closes it without an answer.
        }
        Mode::Forward => forward(inner, &request, Damage::None),
        Mode::StripAccessToken => forward(inner, &request, Damage::Strip),
        Mode::AbsurdJwt { exp, iat } => forward(
            inner,
            &request,
            Damage::Jwt {
                exp: *exp,
                iat: *iat,
            },
        ),
        Mode::Unavailable { retry_after_secs } => Answer::new(
            503,
            "text/plain",
            "stub: the token service is down for maintenance\n",
        )
        .header("Retry-After", retry_after_secs),
        Mode::TooMany { retry_after_secs } => Answer::new(
            429,
            "application/json",
            r#"{"error":"rate_limit_exceeded","error_description":"stub: too many requests"}"#,
        )
        .header("Retry-After", retry_after_secs),
        Mode::Slow(delay) => {
            std::thread::sleep(*delay);
            forward(inner, &request, Damage::None)
        }
        Mode::EchoRefreshToken => {
            let sent = url::form_urlencoded::parse(&request.body)
                .find(|(k, _)| k == "refresh_token")
                .map(|(_, v)| v.into_owned())
                .expect("a refresh grant carries its refresh token");
            Answer::new(
                400,
                "application/json",
                serde_json::json!({
                    "error": "invalid_grant",
                    "error_description": echoed(&sent),
                })
                .to_string(),
            )
        }
        Mode::InvalidGrant => Answer::new(
            400,
            "application/json",
            serde_json::json!({
                "error": "invalid_grant",
                "error_description": INVALID_GRANT_DESCRIPTION,
            })
            .to_string(),
        ),
        Mode::Malformed => Answer::new(
            200,
            "text/html",
            "<html><body>stub: a captive portal, not a token endpoint</body></html>",
        ),
        Mode::MalformedJson => Answer::new(
            200,
            "application/json",
            r#"{"token_type":"Bearer","expires_in":600}"#,
        ),
    };
    record(inner, at, &mode, &request, answer.status);
    respond(&mut stream, &answer)
}

fn record(inner: &Inner, at: Instant, mode: &Mode, request: &Request, status: u16) {
    inner.arrivals.lock().unwrap().push(Arrival {
        at,
        mode: mode.label(),
        method: request.method.clone(),
        path: request.path.clone(),
        status,
    });
}

/// Sends `request` to the real token endpoint; with `strip`, removes `access_token` from a
/// successful JSON answer.
/// The shapes `Mode::EchoRefreshToken` puts a refresh token in, as one description.
pub fn echoed(token: &str) -> String {
    use base64::Engine as _;
    let url: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(token);
    let json = serde_json::to_string(token).unwrap();
    format!(
        "refresh token {url} (base64 {b64}, as JSON {json}, shouting {}) is unknown",
        token.to_ascii_uppercase()
    )
}

/// What `forward` does to a successful answer.
enum Damage {
    None,
    Strip,
    Jwt { exp: i64, iat: i64 },
}

fn forward(inner: &Inner, request: &Request, damage: Damage) -> Answer {
    let mut upstream = inner
        .client
        .post(&inner.upstream)
        .body(request.body.clone());
    for name in ["authorization", "content-type", "accept"] {
        if let Some(value) = request.header(name) {
            upstream = upstream.header(name, value);
        }
    }
    let response = match upstream.send() {
        Ok(response) => response,
        Err(e) => {
            return Answer::new(502, "text/plain", format!("stub: upstream failed: {e}\n"));
        }
    };
    let status = response.status().as_u16();
    let mut answer = Answer {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    };
    for name in ["content-type", "cache-control", "pragma", "retry-after"] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            answer.headers.push((name.to_owned(), value.to_owned()));
        }
    }
    answer.body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
    if matches!(damage, Damage::None) || !(200..300).contains(&status) {
        return answer;
    }
    let mut json: serde_json::Value =
        serde_json::from_slice(&answer.body).expect("the provider answered JSON");
    let object = json
        .as_object_mut()
        .expect("the provider answered an object");
    let removed = object.remove("access_token").is_some();
    assert!(
        removed,
        "the provider's answer had no access_token to damage"
    );
    if let Damage::Jwt { exp, iat } = damage {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({"exp": exp, "iat": iat, "sub": "absurd"});
        let jwt = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        object.insert("access_token".into(), jwt.into());
    }
    answer.body = json.to_string().into_bytes();
    answer
}

fn respond(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&answer.body)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
