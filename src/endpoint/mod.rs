//! The loopback endpoints that hand a credential's current token to the SDKs that already
//! know how to ask a local metadata service for one: one listener per `serve` entry, each
//! speaking one protocol ([`databricks`], [`gce`], [`azure`]). Here: the listeners' life
//! (bound at start, added and removed by a reload) and what every request goes through:
//! the caller learned from the kernel ([`crate::peer::of_tcp`]), checked against the
//! credential's readers, then the token read through [`Reads::token`] (which waits, past the
//! refresh point, for the rotation in flight).
//!
//! Must never: take the caller's identity from anything the client sends, start a refresh,
//! log a token or the App Service secret, or tell a caller that may not read the credential
//! anything but 403.

mod azure;
mod databricks;
mod gce;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::{Caller, Issued, ReadError, Reads, Via};
use crate::config::{Config, ServeConfig, ServeKind};
use crate::observe::Observed;
use crate::serve::{HEAD, Handler, Limits, Place, Timed};
use crate::state::StateDir;

/// What an endpoint answers with.
type Reply = Response<Full<Bytes>>;

/// 64 connections answered at once, as on the metrics port; more wait in the kernel's
/// backlog rather than being closed (an SDK does not retry a reset connection, and a burst
/// of them at a refresh point is what the endpoint is for). Each has [`HEAD`] to send its
/// request head; the answer may wait for a rotation (at most a credential's `timeout`).
const LIMITS: Limits = Limits {
    connections: 64,
    head: HEAD,
    connection: Some(crate::config::MAX_TIMEOUT.saturating_add(Duration::from_secs(30))),
    reserve: None,
    queue: true,
};

/// What every refusal says: which credentials exist, and why this caller may not read one,
/// are not for the caller to learn (the log says).
const REFUSED: &str = "refused: this user may not read the token here";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("credentials.{credential}.serve ({kind}) listen {addr}: {source}")]
    Bind {
        credential: String,
        kind: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "credentials.{credential}.serve ({kind}) listen {addr}: the App Service secret: {source}"
    )]
    Secret {
        credential: String,
        kind: &'static str,
        addr: SocketAddr,
        source: crate::state::StateError,
    },
}

/// One `serve` entry of one credential: what a reload compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    credential: String,
    serve: ServeConfig,
}

fn wanted(config: &Config) -> Vec<Wanted> {
    config
        .credentials
        .iter()
        .flat_map(|c| {
            c.access.serve.iter().map(|serve| Wanted {
                credential: c.name.clone(),
                serve: serve.clone(),
            })
        })
        .collect()
}

/// Every endpoint of a config, bound (a port in use fails the start, naming it) but not yet
/// answering.
pub struct Bound {
    opened: Vec<Opened>,
    state: StateDir,
}

/// One endpoint, bound, with what its protocol needs.
struct Opened {
    wanted: Wanted,
    listener: TcpListener,
    protocol: Speaks,
}

/// The protocol an endpoint speaks, with what it needs.
enum Speaks {
    Databricks(databricks::Databricks),
    Gce(gce::Gce),
    Azure(azure::Azure),
}

/// Binds every endpoint of `config`.
pub async fn bind(config: &Config, state: &StateDir) -> Result<Bound, EndpointError> {
    let mut opened = Vec::new();
    for wanted in wanted(config) {
        opened.push(open(wanted, state).await?);
    }
    Ok(Bound {
        opened,
        state: state.clone(),
    })
}

async fn open(wanted: Wanted, state: &StateDir) -> Result<Opened, EndpointError> {
    let (credential, kind, addr) = (
        wanted.credential.clone(),
        wanted.serve.kind.name(),
        wanted.serve.listen,
    );
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EndpointError::Bind {
            credential: credential.clone(),
            kind,
            addr,
            source,
        })?;
    let protocol = match &wanted.serve.kind {
        ServeKind::DatabricksMetadata { host } => {
            Speaks::Databricks(databricks::Databricks::new(host))
        }
        ServeKind::GceMetadata {
            email,
            scopes,
            project_id,
        } => Speaks::Gce(gce::Gce::new(
            email.clone(),
            scopes.clone(),
            project_id.clone(),
        )),
        ServeKind::AzureManagedIdentity { header } => {
            let (state, header) = (state.clone(), header.clone());
            let name = credential.clone();
            let secret = tokio::task::spawn_blocking(move || azure::secret(&state, &name, &header))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .map_err(|source| EndpointError::Bind {
                    credential: credential.clone(),
                    kind,
                    addr,
                    source,
                })?
                .map_err(|source| EndpointError::Secret {
                    credential: credential.clone(),
                    kind,
                    addr,
                    source,
                })?;
            Speaks::Azure(azure::Azure::new(secret))
        }
    };
    Ok(Opened {
        wanted,
        listener,
        protocol,
    })
}

/// The endpoints being served: a reload hands them the new config.
pub struct Endpoints {
    wanted: watch::Sender<Vec<Wanted>>,
}

impl Endpoints {
    /// Adds the endpoints `config` has and the running ones lack, and closes the ones it no
    /// longer has (in the background: a port that cannot be bound is logged, the rest
    /// applied).
    pub fn update(&self, config: &Config) {
        let _ = self.wanted.send(wanted(config));
    }
}

/// What every listener reads from.
#[derive(Clone)]
struct Shared {
    reads: Reads,
    observed: Observed,
}

impl Bound {
    /// Starts answering; the task keeps the endpoints in step with [`Endpoints::update`]
    /// until it is dropped (then every listener closes).
    pub fn serve(self, reads: Reads, observed: Observed) -> (Endpoints, JoinHandle<()>) {
        let shared = Shared { reads, observed };
        let current: Vec<Wanted> = self.opened.iter().map(|o| o.wanted.clone()).collect();
        let running: Vec<Running> = self
            .opened
            .into_iter()
            .map(|opened| Running::start(opened, &shared))
            .collect();
        let (tx, rx) = watch::channel(current);
        let task = tokio::spawn(manage(running, rx, shared, self.state));
        (Endpoints { wanted: tx }, task)
    }
}

/// A listener's task; dropping it closes the listener.
struct Running {
    wanted: Wanted,
    task: JoinHandle<()>,
}

impl Running {
    fn start(opened: Opened, shared: &Shared) -> Running {
        let Opened {
            wanted,
            listener,
            protocol,
        } = opened;
        let credential: Arc<str> = Arc::from(wanted.credential.as_str());
        let name = wanted.serve.kind.name();
        let shared = shared.clone();
        let task = match protocol {
            Speaks::Databricks(p) => tokio::spawn(serve(name, listener, credential, shared, p)),
            Speaks::Gce(p) => tokio::spawn(serve(name, listener, credential, shared, p)),
            Speaks::Azure(p) => tokio::spawn(serve(name, listener, credential, shared, p)),
        };
        tracing::info!(
            credential = %wanted.credential,
            kind = name,
            listen = %wanted.serve.listen,
            "endpoint listening"
        );
        Running { wanted, task }
    }

    /// Closes the listener, and waits until its socket is released (so that a new one may
    /// bind the address). Connections being answered finish on their own.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        tracing::info!(
            credential = %self.wanted.credential,
            kind = self.wanted.serve.kind.name(),
            listen = %self.wanted.serve.listen,
            "endpoint closed"
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies each new set of wanted endpoints: closes the ones gone first (their addresses
/// may be reused), then opens the new ones.
async fn manage(
    mut running: Vec<Running>,
    mut wanted: watch::Receiver<Vec<Wanted>>,
    shared: Shared,
    state: StateDir,
) {
    while wanted.changed().await.is_ok() {
        let next = wanted.borrow_and_update().clone();
        let (keep, gone): (Vec<Running>, Vec<Running>) = std::mem::take(&mut running)
            .into_iter()
            .partition(|r| next.contains(&r.wanted));
        running = keep;
        for endpoint in gone {
            endpoint.stop().await;
        }
        for want in next {
            if running.iter().any(|r| r.wanted == want) {
                continue;
            }
            match open(want, &state).await {
                Ok(opened) => running.push(Running::start(opened, &shared)),
                Err(e) => tracing::error!("{e}; the other endpoints are served"),
            }
        }
    }
}

async fn serve<P: Protocol>(
    name: &'static str,
    listener: TcpListener,
    credential: Arc<str>,
    shared: Shared,
    protocol: P,
) {
    let http = Http {
        credential,
        shared,
        protocol: Arc::new(protocol),
    };
    crate::serve::serve(name, listener, LIMITS, http).await;
}

/// Who asks, and what about: what a protocol may look at besides the request.
pub(super) struct Asking<'a> {
    pub caller: Caller,
    pub credential: &'a str,
    pub observed: &'a Observed,
}

/// What a request gets.
pub(super) enum Route {
    /// The current token, answered by [`Protocol::token`].
    Token,
    /// An answer that needs no token: a probe, an account's email, or a refusal (a wrong
    /// header, a path that is not there).
    Answer(Reply),
}

/// One SDK's side of the exchange: what a request asks, and how answers look.
pub(super) trait Protocol: Send + Sync + 'static {
    const VIA: Via;

    /// What `request` gets.
    fn route<B>(&self, request: &Request<B>, asking: &Asking<'_>) -> Route;

    /// The answer carrying `issued`, as of `now`.
    fn token<B>(&self, request: &Request<B>, issued: &Issued, now: OffsetDateTime) -> Reply;

    /// An error, in the shape the protocol's clients read.
    fn error(&self, status: StatusCode, message: &str) -> Reply;

    /// What every response carries (GCE's `Metadata-Flavor`).
    fn finish(&self, reply: Reply) -> Reply {
        reply
    }
}

/// Answers one endpoint's connections.
struct Http<P> {
    credential: Arc<str>,
    shared: Shared,
    protocol: Arc<P>,
}

impl<P> Clone for Http<P> {
    fn clone(&self) -> Self {
        Http {
            credential: self.credential.clone(),
            shared: self.shared.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

impl<P: Protocol> Handler<TcpStream> for Http<P> {
    async fn serve(self, stream: Timed<TcpStream>, _place: Place) {
        let caller = caller_of(stream.get_ref());
        if let Err(e) = &caller {
            tracing::warn!(
                credential = %self.credential,
                via = P::VIA.as_str(),
                "endpoint: refused a connection whose user cannot be told: {e}"
            );
        }
        // hyper bounds the request head itself (below): a request that then waits for a
        // rotation must not have its connection cut by a deadline on reading.
        let stream = stream.into_inner();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let this = self.clone();
            let caller = caller.as_ref().ok().copied();
            async move { Ok::<_, Infallible>(this.answer(&request, caller).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD)
            .serve_connection(TokioIo::new(stream), service);
        let _ = connection.await;
    }
}

/// Who owns the client's socket, as the kernel says.
fn caller_of(stream: &TcpStream) -> Result<Caller, String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let peer = stream.peer_addr().map_err(|e| e.to_string())?;
    let peer = crate::peer::of_tcp(local, peer).map_err(|e| e.to_string())?;
    Ok(Caller {
        uid: peer.uid,
        pid: peer.pid,
    })
}

impl<P: Protocol> Http<P> {
    async fn answer<B>(&self, request: &Request<B>, caller: Option<Caller>) -> Reply {
        let reply = self.respond(request, caller).await;
        self.protocol.finish(reply)
    }

    async fn respond<B>(&self, request: &Request<B>, caller: Option<Caller>) -> Reply {
        let Some(caller) = caller else {
            return self.protocol.error(StatusCode::FORBIDDEN, REFUSED);
        };
        let (reads, name) = (&self.shared.reads, &*self.credential);
        // Readers apply to every request, the probes included: a user that may not read the
        // token learns nothing here, not even that a credential is served.
        if !reads.may_read(name, caller) {
            reads.refuse(name, caller, P::VIA);
            return self.protocol.error(StatusCode::FORBIDDEN, REFUSED);
        }
        let asking = Asking {
            caller,
            credential: name,
            observed: &self.shared.observed,
        };
        match self.protocol.route(request, &asking) {
            Route::Answer(reply) => reply,
            Route::Token => {
                let wait = reads
                    .credential(name)
                    .map(|c| c.timing.timeout)
                    .unwrap_or_default();
                match reads.token(name, caller, P::VIA, wait).await {
                    Ok(issued) => {
                        let now = self.shared.observed.now();
                        self.protocol.token(request, &issued, now)
                    }
                    Err(ReadError::Refused(_)) => {
                        self.protocol.error(StatusCode::FORBIDDEN, REFUSED)
                    }
                    Err(ReadError::NoToken(reason)) => self
                        .protocol
                        .error(StatusCode::SERVICE_UNAVAILABLE, &reason),
                }
            }
        }
    }
}

/// A response with `body` of `content_type`.
pub(super) fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// A JSON response.
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    reply(status, "application/json", value.to_string())
}

/// The value of header `name`, if it is there once and is text.
pub(super) fn header<'a, B>(request: &'a Request<B>, name: &str) -> Option<&'a str> {
    let mut values = request.headers().get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The value of query parameter `name` (decoded), if given.
pub(super) fn query<B>(request: &Request<B>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt as _;
    use secrecy::SecretString;

    use super::*;
    use crate::clock::{self, SharedClock};
    use crate::observe::{CredentialStatus, Model, Snapshot, Vitals};
    use crate::state::CredentialState;
    use crate::token::{ExpirySource, Token};

    const CONFIG: &str = r#"
[daemon]
state_dir = "/nonexistent"

[credentials.app]
source = { type = "command", argv = ["mint"] }
readers = ["uid:65534"]
serve = [ { type = "gce-metadata", listen = "127.0.0.1:8181" } ]

[credentials.empty]
source = { type = "command", argv = ["mint"] }
readers = ["uid:65534"]
"#;

    fn token(subject: Option<&str>, scopes: &[&str], now: OffsetDateTime) -> Token {
        Token {
            access_token: SecretString::from("tok-en"),
            issued_at: now,
            expires_at: now + time::Duration::hours(1),
            expiry_source: ExpirySource::ExpiresIn,
            subject: subject.map(str::to_owned),
            issuer: None,
            client_id: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            served: None,
            fields: Default::default(),
        }
    }

    /// A read model where credential `app` holds `state`; its next refresh is `next` away.
    fn model(config: &Config, state: &CredentialState, next: time::Duration) -> Model {
        let clock: SharedClock = Arc::new(clock::SystemClock);
        let now = clock.now();
        let mut snapshot = Snapshot::new("daemon");
        for credential in &config.credentials {
            let stored = if credential.name == "app" {
                state.clone()
            } else {
                CredentialState::default()
            };
            snapshot.set(CredentialStatus::from_state(
                credential,
                &stored,
                Some(now + next),
                now,
            ));
        }
        Model::new(snapshot, None, Vitals::new(Duration::from_secs(30)), clock)
    }

    fn config() -> Config {
        Config::parse(std::path::Path::new("/etc/refreshd/config.toml"), CONFIG).unwrap()
    }

    /// What a protocol sees of credential `app`, whose token has `subject` and `scopes`.
    pub(crate) fn observed(subject: Option<&str>, scopes: &[&str]) -> Observed {
        let now = clock::system_now();
        let state = CredentialState {
            token: Some(token(subject, scopes, now)),
            ..CredentialState::default()
        };
        model(&config(), &state, time::Duration::minutes(50)).observed()
    }

    pub(crate) fn asking(observed: &Observed) -> Asking<'_> {
        Asking {
            caller: Caller {
                uid: 65534,
                pid: None,
            },
            credential: "app",
            observed,
        }
    }

    /// A token handed out, and when it expires.
    pub(crate) fn issued() -> (Issued, OffsetDateTime) {
        let expires_at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let issued = Issued {
            token: SecretString::from("tok-en"),
            token_type: "Bearer",
            expires_at,
            fingerprint: "00000000".into(),
            fields: crate::token::Fields::new(),
        };
        (issued, expires_at)
    }

    pub(crate) fn body(reply: Reply) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let collected = runtime.block_on(reply.into_body().collect()).unwrap();
        collected.to_bytes().to_vec()
    }

    /// An endpoint of `credential` answering from a state directory where `app` holds a
    /// token and `empty` none; the next refresh is `next` away.
    fn endpoint(
        dir: &std::path::Path,
        credential: &str,
        next: time::Duration,
    ) -> (Http<gce::Gce>, Model) {
        let config = config();
        let state = StateDir::new(dir);
        let stored = CredentialState {
            token: Some(token(Some("sa@x"), &[], clock::system_now())),
            ..CredentialState::default()
        };
        state.save("app", &stored).unwrap();
        let model = model(&config, &stored, next);
        let reads = Reads::new(&config, model.observed(), state);
        let http = Http {
            credential: Arc::from(credential),
            shared: Shared {
                reads,
                observed: model.observed(),
            },
            protocol: Arc::new(gce::Gce::new(None, vec![], None)),
        };
        (http, model)
    }

    fn token_request() -> Request<()> {
        Request::get("/computeMetadata/v1/instance/service-accounts/default/token")
            .header(gce::FLAVOR, "Google")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn readers_apply_to_every_request_and_the_kernel_names_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let (http, _model) = endpoint(dir.path(), "app", time::Duration::minutes(50));
        let caller = |uid| Some(Caller { uid, pid: None });
        let probe = Request::get("/")
            .header(gce::FLAVOR, "Google")
            .body(())
            .unwrap();
        // A reader gets the probe and the token.
        assert_eq!(
            http.answer(&probe, caller(65534)).await.status(),
            StatusCode::OK
        );
        let reply = http.answer(&token_request(), caller(65534)).await;
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.headers()[gce::FLAVOR], "Google");
        let json: serde_json::Value = serde_json::from_slice(&body_async(reply).await).unwrap();
        assert_eq!(json["access_token"], "tok-en");
        assert!(json["expires_in"].as_i64().unwrap() > 3500);
        // Anyone else, or a caller the kernel could not name, gets 403 and nothing more.
        for who in [caller(12345), None] {
            for request in [&probe, &token_request()] {
                let reply = http.answer(request, who).await;
                assert_eq!(reply.status(), StatusCode::FORBIDDEN, "{who:?}");
                let text = String::from_utf8(body_async(reply).await).unwrap();
                assert!(!text.contains("tok-en") && !text.contains("app"), "{text}");
            }
        }
        // refreshd's own user is a reader of everything.
        let own = nix::unistd::geteuid().as_raw();
        assert_eq!(
            http.answer(&token_request(), caller(own)).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn no_token_yet_is_503_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (http, _model) = endpoint(dir.path(), "empty", time::Duration::minutes(50));
        let reply = http
            .answer(
                &token_request(),
                Some(Caller {
                    uid: 65534,
                    pid: None,
                }),
            )
            .await;
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = String::from_utf8(body_async(reply).await).unwrap();
        assert!(text.contains("no token yet"), "{text}");
    }

    async fn body_async(reply: Reply) -> Vec<u8> {
        reply
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    /// A raw HTTP/1 exchange with `http` serving one connection: what came back before the
    /// server closed it, and how long (in the test's time) that took.
    async fn exchange(http: Http<gce::Gce>, sent: &[u8]) -> (String, Duration) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            http.serve(Timed::new(stream, HEAD), Place::General).await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        client.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let took = started.elapsed();
        server.await.unwrap();
        (String::from_utf8_lossy(&answer).into_owned(), took)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_refresh_point_waits_beyond_the_head_deadline() {
        let dir = tempfile::tempdir().unwrap();
        // Past its refresh point and no rotation comes: the read waits the credential's
        // whole timeout (30 s), then answers the token it has (still valid).
        let (http, _model) = endpoint(dir.path(), "app", -time::Duration::seconds(1));
        let request = b"GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\nHost: x\r\nMetadata-Flavor: Google\r\n\r\n";
        let (answer, took) = exchange(http.clone(), request).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("tok-en"), "{answer}");
        assert!(took >= Duration::from_secs(30), "answered after {took:?}");
        // A head that never ends is cut off at the head deadline, unanswered.
        let (answer, took) = exchange(http, b"GET / HTTP/1.1\r\nMetadata-Flavor: Goo").await;
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(
            took >= HEAD && took < Duration::from_secs(30),
            "cut after {took:?}"
        );
    }
}
