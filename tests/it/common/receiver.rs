//! A webhook receiver: a real HTTP/1.1 server on loopback (std's `TcpListener`, one request
//! per connection, `Connection: close`) that answers 204 to every POST and keeps its path,
//! headers and body. It can be made to listen only later, on a port chosen now, so a test
//! can point refreshd at a receiver that is down and bring it up while refreshd runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

pub struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    listening: bool,
}

impl Receiver {
    /// A receiver listening now.
    pub fn start() -> Receiver {
        let mut receiver = Receiver::down();
        receiver.listen();
        receiver
    }

    /// A receiver whose port is chosen but not listened on yet: connections are refused
    /// until [`Receiver::listen`].
    pub fn down() -> Receiver {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Receiver {
            addr,
            received: Arc::default(),
            stop: Arc::default(),
            listening: false,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts answering on the chosen port.
    pub fn listen(&mut self) {
        assert!(!self.listening);
        self.listening = true;
        // std sets SO_REUSEADDR on Unix: the port freed by `down` can be bound again.
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("cannot listen on {} again: {e}", self.addr));
        listener.set_nonblocking(true).unwrap();
        let received = self.received.clone();
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(request) = answer(stream) {
                            received.lock().unwrap().push(request);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests came, and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::eventually(&format!("{n} webhook requests"), timeout, || {
            let received = self.received();
            (received.len() >= n).then_some(received)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request (headers, then a `Content-Length` body) and answers 204.
fn answer(stream: TcpStream) -> Option<Received> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let path = first.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => value.trim().clone_into(&mut content_type),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    Some(Received {
        path,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
