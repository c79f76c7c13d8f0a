//! One listener for the daemon's sockets: the control socket (Unix), the metrics port and
//! the SDK endpoints (TCP) accept through the same loop, with the same limit on connections
//! served at once and the same deadline for a request's head ([`HEAD`], in [`Limits`]).
//! Once those places are taken, a listener with a [`Reserve`] still takes connections there,
//! for the probes only ([`Place::Reserved`]); one that queues ([`Limits::queue`], the SDK
//! endpoints) leaves them waiting in the kernel until a place frees. A [`Handler`] says what
//! a connection is answered; the loop only accepts, admits, bounds and spawns.
//!
//! It never reads a request itself and never knows what it serves.

mod reserve;
mod timed;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub use reserve::Reserve;
pub use timed::Timed;

use reserve::Reserved;

/// How long a client has to send its whole request head (the control socket's line, an HTTP
/// request's head), however slowly it trickles: a connection that sends a byte a second
/// still loses its place then.
pub const HEAD: Duration = Duration::from_secs(5);

/// A socket that accepts connections.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// What one connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once (a flood of idle connections
    /// must not take the daemon's file descriptors).
    pub connections: usize,
    /// How long a client may take to send its request head: reading after that fails.
    pub head: Duration,
    /// How long a whole connection may last; `None` for as long as its answer takes.
    pub connection: Option<Duration>,
    /// Places for the probes once `connections` are taken; `None`: such connections are
    /// closed.
    pub reserve: Option<Reserve>,
    /// Once `connections` are taken, leave further connections in the kernel's listen
    /// backlog until a place frees, rather than closing them (`reserve` is then unused): for
    /// clients that do not retry (an SDK asking for its token), a burst is served in turn.
    /// Descriptors stay bounded: a waiting connection is the kernel's, not ours.
    pub queue: bool,
}

/// Which place a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// One of [`Limits::connections`]: anything may be asked.
    General,
    /// One of the [`Reserve`]'s: only what is answered at once from memory (the probes).
    Reserved,
}

/// What a listener's connections are answered.
pub trait Handler<S>: Clone + Send + Sync + 'static {
    /// Whether to serve `stream` at all; asked before it takes one of the places.
    fn admit(&self, _stream: &S) -> bool {
        true
    }

    /// Answers one connection, which holds `place`.
    fn serve(self, stream: Timed<S>, place: Place) -> impl Future<Output = ()> + Send;
}

/// Accepts connections on `listener` and has `handler` answer each, within `limits`, until
/// the task is dropped. `name` starts its log lines.
pub async fn serve<L, H>(name: &'static str, listener: L, limits: Limits, handler: H)
where
    L: Listener,
    H: Handler<L::Stream>,
{
    let places = Arc::new(Semaphore::new(limits.connections));
    let reserved = Reserved::default();
    let mut accepted: u64 = 0;
    loop {
        let waited = if limits.queue {
            places.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("{name}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !handler.admit(&stream) {
            continue;
        }
        accepted += 1;
        if let Some(place) = waited.or_else(|| places.clone().try_acquire_owned().ok()) {
            let answer = handler
                .clone()
                .serve(Timed::new(stream, limits.head), Place::General);
            tokio::spawn(async move {
                let _place = place;
                within(limits.connection, answer).await;
            });
            continue;
        }
        let Some(reserve) = limits.reserve else {
            tracing::debug!(
                "{name}: {} connections open, closing another",
                limits.connections
            );
            continue;
        };
        tracing::debug!(
            "{name}: {} connections open, this one may ask for a probe only",
            limits.connections
        );
        let answer = handler
            .clone()
            .serve(Timed::new(stream, reserve.head), Place::Reserved);
        let (id, held) = (accepted, reserved.clone());
        reserved.take(reserve.places, id, || {
            tokio::spawn(async move {
                within(Some(reserve.head * 2), answer).await;
                held.give_back(id);
            })
            .abort_handle()
        });
    }
}

/// `answer`, cut off after `limit` if there is one.
async fn within(limit: Option<Duration>, answer: impl Future<Output = ()>) {
    match limit {
        Some(limit) => {
            let _ = tokio::time::timeout(limit, answer).await;
        }
        None => answer.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes what it reads until the request timeout cuts it off.
    #[derive(Clone)]
    struct Echo;

    impl Handler<TcpStream> for Echo {
        async fn serve(self, mut stream: Timed<TcpStream>, place: Place) {
            if place == Place::Reserved {
                let _ = stream.write_all(b"R").await;
            }
            let mut byte = [0u8; 1];
            while let Ok(1) = stream.read(&mut byte).await {
                let _ = stream.write_all(&byte).await;
            }
            let _ = stream.write_all(b"!").await;
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_slow_requests_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 1,
            head: Duration::from_millis(300),
            connection: None,
            reserve: None,
            queue: false,
        };
        let server = tokio::spawn(serve("test", listener, limits, Echo));
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"a").await.unwrap();
        let mut echoed = [0u8; 1];
        first.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"a");
        // The one place is taken: the next connection is closed without an answer.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        second.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // The first client's time to send its request runs out: reading fails.
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"!");
        server.abort();
    }

    #[tokio::test]
    async fn a_queueing_listener_serves_connections_beyond_the_limit_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 1,
            head: Duration::from_secs(30),
            connection: None,
            reserve: None,
            queue: true,
        };
        let server = tokio::spawn(serve("test", listener, limits, Echo));
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"a").await.unwrap();
        let mut byte = [0u8; 1];
        first.read_exact(&mut byte).await.unwrap();
        // The one place is taken: the next connection waits (it is not closed)…
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"b").await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(200), second.read(&mut byte)).await;
        assert!(
            early.is_err(),
            "answered before a place was free: {early:?}"
        );
        // …and is served once the first gives its place back.
        first.shutdown().await.unwrap();
        drop(first);
        second.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"b");
        server.abort();
    }

    #[tokio::test]
    async fn beyond_the_limit_a_reserve_takes_connections_and_evicts_the_oldest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 1,
            head: Duration::from_secs(30),
            connection: None,
            reserve: Some(Reserve {
                places: 1,
                head: Duration::from_secs(30),
            }),
            queue: false,
        };
        let server = tokio::spawn(serve("test", listener, limits, Echo));
        let mut general = TcpStream::connect(addr).await.unwrap();
        general.write_all(b"g").await.unwrap();
        let mut byte = [0u8; 1];
        general.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"g");
        // The general place is taken: the next one is reserved…
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"R");
        // …and gives its place up to a newer one, its socket closed.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"R");
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        second.write_all(b"s").await.unwrap();
        second.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"s");
        server.abort();
    }
}
