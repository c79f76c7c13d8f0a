//! The token client's connections, against a raw HTTP/1.1 server that counts connections
//! and requests and misbehaves on purpose: reused while fresh, never used once idle for as
//! long as a server's keep-alive, and never a token POST sent twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::net::{IDLE_CONNECTION, http_client};

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers every request and keeps the connection open.
    KeepAlive,
    /// Reads a whole request, then closes without a word.
    CloseAfterReading,
    /// Answers the first request and keeps the connection; reads the second whole, then
    /// drops the connection (the provider may have acted on it).
    AnswerOnceThenHangUp,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

async fn serve(behaviour: Behaviour) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            shared.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(connection(stream, behaviour, shared.clone()));
        }
    });
    (url, counts)
}

async fn connection(mut stream: TcpStream, behaviour: Behaviour, counts: Arc<Counts>) {
    let mut buffer = Vec::new();
    loop {
        // One request: headers, then the body its Content-Length announces.
        let request_end = loop {
            if let Some(end) = complete_request(&buffer) {
                break end;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        buffer.drain(..request_end);
        let seen = counts.requests.fetch_add(1, Ordering::SeqCst);
        match behaviour {
            Behaviour::CloseAfterReading => return,
            Behaviour::AnswerOnceThenHangUp if seen > 0 => return,
            _ => {}
        }
        let body = r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn complete_request(buffer: &[u8]) -> Option<usize> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap_or(0));
    (buffer.len() >= head_end + length).then_some(head_end + length)
}

async fn token_request(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    let response = client
        .post(url)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "r")])
        .send()
        .await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

#[tokio::test]
async fn requests_close_together_share_a_connection_that_refreshd_closes_when_idle() {
    let (url, counts) = serve(Behaviour::KeepAlive).await;
    let client = http_client();
    for _ in 0..5 {
        assert_eq!(token_request(&client, &url).await.unwrap(), 200);
    }
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 5);
    // Idle for longer than refreshd uses a connection (but less than the 5 s servers
    // commonly keep one): the next request opens a new one rather than race the server's
    // close. (The pool's sweep closes the idle socket itself a little later.)
    tokio::time::sleep(IDLE_CONNECTION + Duration::from_millis(700)).await;
    assert_eq!(token_request(&client, &url).await.unwrap(), 200);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_post_the_server_read_is_never_sent_again() {
    let (url, counts) = serve(Behaviour::CloseAfterReading).await;
    let client = http_client();
    assert!(token_request(&client, &url).await.is_err());
    // Nothing is sent after the failure, on this connection or another.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_post_on_a_reused_connection_the_server_then_drops_is_not_replayed() {
    let (url, counts) = serve(Behaviour::AnswerOnceThenHangUp).await;
    let client = http_client();
    assert_eq!(token_request(&client, &url).await.unwrap(), 200);
    assert!(token_request(&client, &url).await.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counts.requests.load(Ordering::SeqCst),
        2,
        "a token POST was replayed"
    );
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
}
