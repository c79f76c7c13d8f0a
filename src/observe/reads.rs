//! How many times each credential's token was handed to another process, per path
//! (`refreshd_token_reads_total{credential,via}`). Written by [`crate::access`], shown by
//! `/metrics`; it never holds a token.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct ReadCounts(Mutex<BTreeMap<(String, &'static str), u64>>);

impl ReadCounts {
    pub fn add(&self, name: &str, via: &'static str) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry((name.to_owned(), via)).or_default() += 1;
    }

    /// `(credential, via, count)`, sorted.
    pub fn all(&self) -> Vec<(String, &'static str, u64)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts
            .iter()
            .map(|((name, via), n)| (name.clone(), *via, *n))
            .collect()
    }
}
