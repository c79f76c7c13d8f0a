//! An open-loop HTTP/1 load for refreshd's SDK endpoints: `RATE` requests a second for
//! `SECONDS`, each on a connection of its own (as the SDKs ask), sent on schedule whether or
//! not earlier ones were answered. A request's latency counts from the moment it was due, so
//! a server that falls behind shows it (no coordinated omission). `scripts/bench-sdk-endpoints`
//! runs it against a `gce-metadata` endpoint.
//!
//! Usage: `endpoint_load ADDR RATE SECONDS PATH [HEADER: VALUE]…`; prints one JSON object:
//! requests, answered with 200, errors, and latency p50/p90/p99/max in milliseconds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, rate, seconds, path, headers @ ..] = args.as_slice() else {
        return Err("usage: endpoint_load ADDR RATE SECONDS PATH [HEADER: VALUE]...".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let (rate, seconds): (u64, u64) = (rate.parse()?, seconds.parse()?);
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: &'static [u8] = Box::leak(request.into_bytes().into_boxed_slice());

    let total = rate * seconds;
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let ok = ask(addr, request).await.unwrap_or(false);
                (ok, due.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0u64;
    for task in tasks {
        let (ok, took) = task.await?;
        if ok {
            latencies.push(took);
        } else {
            errors += 1;
        }
    }
    let took = start.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies
            .get(i - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"requests\": {total}, \"ok\": {}, \"errors\": {errors}, \"seconds\": {:.2}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        latencies.len(),
        took.as_secs_f64(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// One request on a connection of its own; whether it was answered 200.
async fn ask(addr: SocketAddr, request: &[u8]) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::with_capacity(1024);
    stream.read_to_end(&mut answer).await?;
    Ok(answer.starts_with(b"HTTP/1.1 200 "))
}
