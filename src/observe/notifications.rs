//! How many notifications each sink delivered, failed to deliver or dropped, by event kind
//! (`refreshd_notifications_total{sink,kind,result}`). Written by [`crate::notify`], shown by
//! `/metrics`; it never holds an event's words, only the counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What became of one try or one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// The receiver took it.
    Sent,
    /// A try failed; it is tried again.
    Error,
    /// Given up: the receiver refused it for good (a 4xx), or the hook failed.
    Failed,
    /// Pushed out of a full queue by a newer event.
    Dropped,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Error => "error",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Default)]
pub struct NotificationCounts(Mutex<BTreeMap<(String, &'static str, Delivery), u64>>);

impl NotificationCounts {
    pub fn add(&self, sink: &str, kind: &'static str, result: Delivery) {
        let mut counts = crate::sync::lock(&self.0);
        *counts.entry((sink.to_owned(), kind, result)).or_default() += 1;
    }

    /// `(sink, kind, result, count)`, sorted.
    pub fn all(&self) -> Vec<(String, &'static str, &'static str, u64)> {
        crate::sync::lock(&self.0)
            .iter()
            .map(|((sink, kind, result), n)| (sink.clone(), *kind, result.as_str(), *n))
            .collect()
    }
}
