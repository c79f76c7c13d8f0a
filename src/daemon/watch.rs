//! Watches the config file for edits. Editors save by writing a new file and renaming it
//! over the old one, which kills a watch on the file itself, so the directory is watched
//! and events are matched by file name, debounced into one "changed" signal.
//!
//! It never reads or parses the config; the supervisor does that.

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
