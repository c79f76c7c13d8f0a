//! The audit log (`log.audit`): one JSON line per rotation, login, config reload, token
//! read by another process and refused request. Each line carries `seq` and the SHA-256 of
//! the line before it (`prev`), so `refreshd audit verify FILE` finds a line removed,
//! edited or moved. Several processes (the daemon, `once`, `login`) append to one file:
//! each append takes the file's lock and reads the last line under it, so the chain never
//! forks.
//!
//! Never holds a token: fingerprints only. Recording never fails a rotation: a write
//! error is logged and the event dropped from the audit log alone.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock, mpsc};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The line format's version, written in every line as `v`.
pub const VERSION: u64 = 1;

/// `prev` of a file's first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line refreshd writes is well under this; a tail read takes this much.
const TAIL: u64 = 64 * 1024;

/// Something that happened, with its fields (never a token).
pub enum Event<'a> {
    Rotation {
        credential: &'a str,
        fingerprint: &'a str,
        expires_at: OffsetDateTime,
        refresh_token_rotated: bool,
    },
    Login {
        credential: &'a str,
        fingerprint: &'a str,
    },
    ConfigReload {
        ok: bool,
        detail: &'a str,
    },
    TokenRead {
        credential: &'a str,
        uid: u32,
        pid: Option<i32>,
        via: &'a str,
        fingerprint: &'a str,
    },
    Refused {
        credential: Option<&'a str>,
        uid: u32,
        pid: Option<i32>,
        via: &'a str,
        what: &'a str,
    },
}

impl Event<'_> {
    fn fields(&self) -> (&'static str, Map<String, Value>) {
        let (kind, value) = match self {
            Event::Rotation {
                credential,
                fingerprint,
                expires_at,
                refresh_token_rotated,
            } => (
                "rotation",
                json!({"credential": credential, "fingerprint": fingerprint,
                       "expires_at": crate::token::rfc3339(*expires_at),
                       "refresh_token_rotated": refresh_token_rotated}),
            ),
            Event::Login {
                credential,
                fingerprint,
            } => (
                "login",
                json!({"credential": credential, "fingerprint": fingerprint}),
            ),
            Event::ConfigReload { ok, detail } => {
                ("config_reload", json!({"ok": ok, "detail": detail}))
            }
            Event::TokenRead {
                credential,
                uid,
                pid,
                via,
                fingerprint,
            } => (
                "token_read",
                json!({"credential": credential, "uid": uid, "pid": pid, "via": via,
                       "fingerprint": fingerprint}),
            ),
            Event::Refused {
                credential,
                uid,
                pid,
                via,
                what,
            } => (
                "refused",
                json!({"credential": credential, "uid": uid, "pid": pid, "via": via, "what": what}),
            ),
        };
        match value {
            Value::Object(map) => (kind, map),
            _ => (kind, Map::new()),
        }
    }
}

/// Where this process's events go, and the thread that writes them: a flock and a tail
/// read per line never run on an async worker.
struct Sink {
    path: Mutex<Option<PathBuf>>,
    queue: Mutex<Option<mpsc::Sender<Entry>>>,
    /// Entries sent and not yet written, for [`flush`].
    pending: Mutex<u64>,
    written: Condvar,
}

/// One event, its fields taken when it happened.
struct Entry {
    path: PathBuf,
    kind: &'static str,
    fields: Map<String, Value>,
    at: OffsetDateTime,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| Sink {
        path: Mutex::new(None),
        queue: Mutex::new(None),
        pending: Mutex::new(0),
        written: Condvar::new(),
    })
}

/// Sends this process's events to `path` from now on (`None`: nowhere).
pub fn open(path: Option<&Path>) {
    *crate::sync::lock(&sink().path) = path.map(Path::to_path_buf);
}

/// Records `event` in the audit log, if one is configured; written by the audit thread.
pub fn record(event: &Event<'_>) {
    let sink = sink();
    let Some(path) = crate::sync::lock(&sink.path).clone() else {
        return;
    };
    let (kind, fields) = event.fields();
    let entry = Entry {
        path,
        kind,
        fields,
        at: crate::clock::system_now(),
    };
    let mut queue = crate::sync::lock(&sink.queue);
    if queue.is_none() {
        let (tx, rx) = mpsc::channel::<Entry>();
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_forever(&rx));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the audit log's thread: {e}");
            return;
        }
        *queue = Some(tx);
    }
    *crate::sync::lock(&sink.pending) += 1;
    if let Some(tx) = queue.as_ref()
        && tx.send(entry).is_err()
    {
        *crate::sync::lock(&sink.pending) -= 1;
    }
}

fn write_forever(rx: &mpsc::Receiver<Entry>) {
    let sink = sink();
    for entry in rx {
        if let Err(e) = append(&entry) {
            tracing::warn!(audit = %entry.path.display(), "cannot write the audit log: {e}");
        }
        let mut pending = crate::sync::lock(&sink.pending);
        *pending = pending.saturating_sub(1);
        sink.written.notify_all();
    }
}

/// Waits (up to `within`) until every event recorded so far is written: a one-shot
/// command calls it before it exits, the daemon when it stops.
pub fn flush(within: std::time::Duration) {
    let sink = sink();
    let pending = crate::sync::lock(&sink.pending);
    let _ = sink.written.wait_timeout_while(pending, within, |n| *n > 0);
}

/// Appends one line under the file's lock, chained to the last one.
fn append(entry: &Entry) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&entry.path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    // Held until the line is written: the last line read is still the last one then.
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    let (seq, prev) = match last_line(&mut file)? {
        None => (0, GENESIS.to_owned()),
        Some(line) => {
            let seq = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .ok_or_else(|| io::Error::other("its last line is not an audit line"))?;
            (seq + 1, hash(&line))
        }
    };
    let mut line = Map::new();
    line.insert("v".into(), json!(VERSION));
    line.insert("seq".into(), json!(seq));
    line.insert("at".into(), json!(crate::token::rfc3339(entry.at)));
    line.insert("event".into(), json!(entry.kind));
    line.extend(entry.fields.clone());
    line.insert("prev".into(), json!(prev));
    let mut text = serde_json::to_string(&Value::Object(line)).map_err(io::Error::other)?;
    text.push('\n');
    // One write of the whole line, O_APPEND: a reader never sees half of it.
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn hash(line: &str) -> String {
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The file's last line, without its newline; `None` for an empty file.
fn last_line(file: &mut File) -> io::Result<Option<String>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.read_to_end(&mut tail)?;
    let text = String::from_utf8(tail).map_err(|_| io::Error::other("not UTF-8"))?;
    let text = text.strip_suffix('\n').ok_or_else(|| {
        io::Error::other("its last line is incomplete (a write was cut): verify it")
    })?;
    Ok(text.rsplit('\n').next().map(str::to_owned))
}

/// What `verify` found wrong, naming the line.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: not an audit line")]
    NotALine { path: PathBuf, line: usize },
    #[error(
        "{path}:{line}: seq {found} where {expected} was due: a line was removed, added or moved"
    )]
    Sequence {
        path: PathBuf,
        line: usize,
        found: u64,
        expected: u64,
    },
    #[error(
        "{path}:{line}: `prev` is not the hash of the line before: that line was edited, or lines were moved"
    )]
    Chain { path: PathBuf, line: usize },
}

/// Checks the chain of `path`; the number of lines when whole.
pub fn verify(path: &Path) -> Result<u64, Broken> {
    let read = |source| Broken::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq: Option<u64> = None;
    let mut count = 0;
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        let n = i + 1;
        let value: Value = serde_json::from_str(&line).map_err(|_| Broken::NotALine {
            path: path.to_owned(),
            line: n,
        })?;
        let (Some(seq), Some(prev)) = (
            value.get("seq").and_then(Value::as_u64),
            value.get("prev").and_then(Value::as_str),
        ) else {
            return Err(Broken::NotALine {
                path: path.to_owned(),
                line: n,
            });
        };
        let due = expected_seq.unwrap_or(0);
        if seq != due {
            return Err(Broken::Sequence {
                path: path.to_owned(),
                line: n,
                found: seq,
                expected: due,
            });
        }
        if prev != expected_prev {
            return Err(Broken::Chain {
                path: path.to_owned(),
                line: n,
            });
        }
        expected_prev = hash(&line);
        expected_seq = Some(seq + 1);
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &Path, credential: &str) -> Entry {
        let (kind, fields) = Event::Login {
            credential,
            fingerprint: "0123abcd",
        }
        .fields();
        Entry {
            path: path.to_owned(),
            kind,
            fields,
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        }
    }

    fn written(n: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for i in 0..n {
            append(&entry(&path, &format!("c{i}"))).unwrap();
        }
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (dir, path, lines)
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn a_whole_chain_verifies_and_each_line_names_the_one_before() {
        let (_dir, path, lines) = written(5);
        assert_eq!(verify(&path).unwrap(), 5);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["v"], VERSION);
        assert_eq!(first["event"], "login");
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["prev"], hash(&lines[0]));
        assert_eq!(second["seq"], 1);
    }

    #[test]
    fn a_removed_edited_or_moved_line_is_found() {
        let (_dir, path, lines) = written(5);
        let mut removed = lines.clone();
        removed.remove(2);
        rewrite(&path, &removed);
        assert!(matches!(
            verify(&path),
            Err(Broken::Sequence { line: 3, .. })
        ));

        let mut edited = lines.clone();
        edited[1] = edited[1].replace("\"c1\"", "\"cX\"");
        rewrite(&path, &edited);
        assert!(matches!(verify(&path), Err(Broken::Chain { line: 3, .. })));

        let mut moved = lines.clone();
        moved.swap(1, 3);
        rewrite(&path, &moved);
        assert!(matches!(
            verify(&path),
            Err(Broken::Sequence { line: 2, .. })
        ));

        let mut renumbered = lines.clone();
        renumbered.remove(4);
        renumbered.remove(0);
        rewrite(&path, &renumbered);
        assert!(matches!(
            verify(&path),
            Err(Broken::Sequence { line: 1, .. })
        ));

        rewrite(&path, &lines);
        assert_eq!(verify(&path).unwrap(), 5);
    }

    #[test]
    fn a_cut_last_line_is_not_appended_to() {
        let (_dir, path, lines) = written(2);
        std::fs::write(&path, format!("{}\n{}", lines[0], &lines[1][..10])).unwrap();
        let err = append(&entry(&path, "c9")).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
    }

    #[test]
    fn appends_continue_the_chain_of_what_another_process_wrote() {
        let (_dir, path, _) = written(3);
        append(&entry(&path, "later")).unwrap();
        assert_eq!(verify(&path).unwrap(), 4);
    }
}
