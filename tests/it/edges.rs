//! The daemon's edges under a hostile local user: a flood of slow connections on the metrics
//! port must not silence the probes, and text from outside (a program's stderr, a provider's
//! error) must reach the operator's terminal escaped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::{Refreshd, stderr, stdout};

const WAIT: Duration = Duration::from_secs(20);

/// A daemon with one credential from `printf` and the metrics on a free port.
fn daemon_with_metrics(r: &Refreshd) -> SocketAddr {
    let port = crate::common::pg::free_port();
    r.write_config(&format!(
        r#"control_socket = "{dir}/run/control.sock"
metrics_listen = "127.0.0.1:{port}"

[credentials.api]
source = {{ type = "command", argv = ["printf", "%s", "edge-token-0123456789"], format = "plain" }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        dir = r.dir.path().display()
    ));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path` on a connection of its own: the status code, or why there is none.
fn get(addr: SocketAddr, path: &str, within: Duration) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, within).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(within)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{e} after {:?}", String::from_utf8_lossy(&answer)))?;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))
}

/// Whether the server has closed `stream` (EOF or reset), waiting until `until` at most.
fn closed_by(stream: &mut TcpStream, until: Instant) -> bool {
    let left = until.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Seventy-two connections trickle a header byte each half second, more than the 64 general
/// places: `/livez` still answers 200 at once, and every trickling connection is closed once
/// its time for a request head (5 s) is up.
#[test]
fn slow_connections_never_silence_the_probes() {
    let r = Refreshd::new();
    let addr = daemon_with_metrics(&r);
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("INFO ready", WAIT);
    assert_eq!(get(addr, "/livez", WAIT), Ok(200));

    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..72)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET /livez HTTP/1.1\r\nX: ").unwrap();
            stream
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut streams: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for stream in &mut streams {
                    let _ = stream.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    for path in ["/livez", "/readyz", "/healthz"] {
        let asked = Instant::now();
        assert_eq!(get(addr, path, Duration::from_secs(2)), Ok(200), "{path}");
        assert!(asked.elapsed() < Duration::from_secs(2), "{path}");
    }
    // The metrics wait for a general place: refused plainly, not left hanging.
    assert_eq!(get(addr, "/metrics", Duration::from_secs(2)), Ok(503));

    let deadline = opened + Duration::from_secs(8);
    let open: Vec<usize> = (0..slow.len())
        .filter(|&i| !closed_by(&mut slow[i], deadline))
        .collect();
    assert!(
        open.is_empty(),
        "{} trickling connections still open after {:?}",
        open.len(),
        opened.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    // Their places are free again: everything is answered.
    assert_eq!(get(addr, "/metrics", WAIT), Ok(200));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(WAIT);
}

/// A program whose stderr clears the screen and rings the bell: `status` shows the error
/// with those characters escaped, and `status --json` keeps them (as JSON escapes) without
/// writing one raw.
#[test]
fn status_escapes_what_a_failing_source_printed() {
    let mut r = Refreshd::new();
    r.write_config(&format!(
        r#"control_socket = "{dir}/run/control.sock"

[credentials.api]
source = {{ type = "command", argv = ["sh", "-c", "printf 'boom\\033[2J\\007 \\302\\233 done\\n' >&2; exit 3"] }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        dir = r.dir.path().display()
    ));
    let once = r.run(&["once"]);
    assert!(!once.status.success(), "{}", stderr(&once));
    let raw = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.chars().any(|c| c != '\n' && c.is_control())
    };

    let status = r.run(&["status"]);
    let text = stdout(&status);
    assert!(!raw(&status.stdout) && !raw(&status.stderr), "{text:?}");
    assert!(
        text.contains("boom\\u{1b}[2J\\u{7} \\u{9b} done"),
        "the error is not shown escaped:\n{text}"
    );

    let json = r.run(&["status", "--json"]);
    assert!(!raw(&json.stdout), "{:?}", stdout(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let message = value["credentials"]["api"]["last_error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no last error in {value}"));
    assert!(
        message.contains("boom\u{1b}[2J\u{7} \u{9b} done"),
        "{message:?}"
    );
}
