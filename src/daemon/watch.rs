//! Watches the config file for edits, and the subject token files of token exchanges for
//! new tokens. Editors save by writing a new file and renaming it
//! over the old one, which kills a watch on the file itself, so the directory is watched
//! and events are matched by file name, debounced into one "changed" signal.
//!
//! It never reads or parses the config (the supervisor does that), and of a subject token
//! file it keeps only a digest, to tell a new token from an event that changed nothing.

use std::path::Path;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

pub type Watcher = notify::RecommendedWatcher;

/// How long a burst of events must be quiet before it counts as one edit.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Starts watching `config`; the receiver yields once per debounced burst of changes.
/// The watch lasts as long as the returned watcher. Nothing wakes while the file rests: the
/// watcher's thread blocks on inotify, and the debounce is a tokio timer that runs only
/// after an event (a polling debouncer woke eight times a second, forever).
pub fn config_file(config: &Path) -> notify::Result<(Watcher, mpsc::UnboundedReceiver<()>)> {
    let dir = match config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = config.file_name().map(|n| n.to_owned());
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        // Reads (ours included: a reload opens the file) are not edits.
        let ours = !matches!(event.kind, EventKind::Access(_) | EventKind::Other)
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_owned()) == name);
        if ours {
            let _ = events_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while events.recv().await.is_some() {
            // Quiet for DEBOUNCE after the last event of the burst.
            loop {
                match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}

/// Starts watching `files` (a token exchange's subject token): the receiver yields once
/// their content has changed, debounced, and only then: the directory of each is watched
/// (a projected Kubernetes token is replaced by swapping a `..data` symlink beside it, an
/// editor renames), so any event there is only a hint, and the content's SHA-256 decides.
/// Never logs or keeps a file's content, only its digest.
pub fn files(files: &[&Path]) -> notify::Result<(Watcher, mpsc::UnboundedReceiver<()>)> {
    let files: Vec<std::path::PathBuf> = files.iter().map(|f| f.to_path_buf()).collect();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        // Reads (ours: every exchange reads the file) change nothing.
        if let Ok(event) = result
            && !matches!(event.kind, EventKind::Access(_))
        {
            let _ = events_tx.send(());
        }
    })?;
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = digests(&files).await;
        while events.recv().await.is_some() {
            loop {
                match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let now = digests(&files).await;
            if now != seen {
                seen = now;
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
    });
    Ok((watcher, rx))
}

/// Each file's SHA-256 (`None` while it cannot be read), read off the async workers.
async fn digests(files: &[std::path::PathBuf]) -> Vec<Option<[u8; 32]>> {
    use sha2::{Digest, Sha256};
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|file| {
                crate::secure_read::read(file, crate::secure_read::SECRET_LIMIT)
                    .ok()
                    .map(|bytes| Sha256::digest(bytes).into())
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The watch of a credential's subject token files, and its news of a new token.
pub type SubjectWatch = (Watcher, mpsc::UnboundedReceiver<()>);

/// Watches the files `credential`'s source re-reads for a new subject token. Without a
/// watch (inotify exhausted) each exchange still reads the file: only the prompt exchange
/// on a new token is lost, which the warning says.
pub fn subjects(credential: &crate::config::Credential) -> Option<SubjectWatch> {
    let paths = credential.source.watched_files();
    if paths.is_empty() {
        return None;
    }
    match files(&paths) {
        Ok(watch) => Some(watch),
        Err(e) => {
            tracing::warn!(credential = %credential.name, error = %e, "cannot watch the subject token file: a new token is exchanged only at the next refresh");
            None
        }
    }
}

/// Resolves when a watched subject token file holds a new token; never without a watch.
pub async fn subject_changed(subjects: &mut Option<SubjectWatch>) {
    if let Some((_, news)) = subjects
        && news.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}
