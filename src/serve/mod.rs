//! One listener for the daemon's sockets: the control socket (Unix) and the metrics port
//! (TCP) accept through the same loop, with the same limit on connections served at once
//! and the same per-connection timeouts ([`Limits`]). A [`Handler`] says what a connection
//! is answered; the loop only accepts, admits, bounds and spawns.
//!
//! It never reads a request itself and never knows what it serves.

mod timed;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub use timed::Timed;

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
    /// How long a client may take to send its request: reading after that fails.
    pub request: Duration,
    /// How long a whole connection may last; `None` for as long as its answer takes.
    pub connection: Option<Duration>,
}

/// What a listener's connections are answered.
pub trait Handler<S>: Clone + Send + Sync + 'static {
    /// Whether to serve `stream` at all; asked before it takes one of the places.
    fn admit(&self, _stream: &S) -> bool {
        true
    }

    /// Answers one connection.
    fn serve(self, stream: Timed<S>) -> impl Future<Output = ()> + Send;
}

/// Accepts connections on `listener` and has `handler` answer each, within `limits`, until
/// the task is dropped. `name` starts its log lines.
pub async fn serve<L, H>(name: &'static str, listener: L, limits: Limits, handler: H)
where
    L: Listener,
    H: Handler<L::Stream>,
{
    let places = Arc::new(Semaphore::new(limits.connections));
    loop {
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
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(
                "{name}: {} connections open, closing another",
                limits.connections
            );
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _place = place;
            let answer = handler.serve(Timed::new(stream, limits.request));
            match limits.connection {
                Some(limit) => {
                    let _ = tokio::time::timeout(limit, answer).await;
                }
                None => answer.await,
            }
        });
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
        async fn serve(self, mut stream: Timed<TcpStream>) {
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
            request: Duration::from_millis(300),
            connection: None,
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
}
