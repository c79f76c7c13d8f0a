//! Watches the config file for edits. Editors save by writing a new file and renaming it
//! over the old one, which kills a watch on the file itself, so the directory is watched
//! and events are matched by file name, debounced into one "changed" signal.
//!
//! It never reads or parses the config; the supervisor does that.

use std::path::Path;
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

pub type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// How long a burst of events must be quiet before it counts as one edit.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Starts watching `config`; the receiver yields once per debounced burst of changes.
/// The watch lasts as long as the returned watcher.
pub fn config_file(config: &Path) -> notify::Result<(Watcher, mpsc::UnboundedReceiver<()>)> {
    let dir = match config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = config.file_name().map(|n| n.to_owned());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        // Reads (ours included: a reload opens the file) are not edits.
        let ours = events.iter().any(|event| {
            !matches!(event.kind, EventKind::Access(_) | EventKind::Other)
                && event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_owned()) == name)
        });
        if ours {
            let _ = tx.send(());
        }
    })?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok((debouncer, rx))
}
