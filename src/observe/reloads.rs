//! Each reload action's last result, as the reload runner recorded it: what `status` and
//! `/metrics` show, so an operator sees a reload that keeps failing (or that landed on its
//! third try) without reading the log. Never holds a token.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One action's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The action as the config names it (`signal HUP to pid_file /run/app.pid`).
    pub action: String,
    pub ok: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Tries of the latest rotation's reload so far (1 when the first one worked).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_success: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
pub struct ReloadResults(Mutex<BTreeMap<String, ReloadStatus>>);

impl ReloadResults {
    pub fn record(
        &self,
        action: &str,
        result: Result<(), String>,
        attempts: u32,
        at: OffsetDateTime,
    ) {
        let mut all = crate::sync::lock(&self.0);
        let last_success = all.get(action).and_then(|s| s.last_success);
        let ok = result.is_ok();
        all.insert(
            action.to_owned(),
            ReloadStatus {
                action: action.to_owned(),
                ok,
                at,
                attempts,
                error: result.err(),
                last_success: if ok { Some(at) } else { last_success },
            },
        );
    }

    pub fn all(&self) -> Vec<ReloadStatus> {
        crate::sync::lock(&self.0).values().cloned().collect()
    }
}
