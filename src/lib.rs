//! refreshd keeps short-lived credentials fresh: it refreshes OAuth access tokens and
//! API-minted passwords before they expire, persists rotated refresh tokens first, and
//! rewrites only the managed key or line of each `.env`, `.pgpass` or token file.
//!
//! Data flows one way (docs/design.md §5): [`config`] → [`credential`] (policy, transition,
//! rotation; one task per credential in `daemon`) → `source` → `token` → `state` →
//! [`target`] → `reload` → `observe` (the one read model), which the `control` socket and
//! `metrics` read; a credential's publisher tells `notify` (webhooks, commands,
//! `on_failure`) what changed;
//! other processes read tokens only through [`access`] (readers checked, reads counted).
//! `login` seeds a refresh token into `state`. Processes start only through `child`, the
//! time comes only from `clock`. The binary (`main.rs`) only calls [`cli::main`].
//!
//! Public are the modules `main.rs` and the integration tests use; the rest is the crate's.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod child;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod control;
pub(crate) mod credential;
pub(crate) mod daemon;
pub(crate) mod demo;
pub(crate) mod durable;
pub(crate) mod endpoint;
pub(crate) mod exec;
pub(crate) mod log;
pub(crate) mod login;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod observe;
pub mod peer;
pub(crate) mod redact;
pub(crate) mod reload;
pub(crate) mod seal;
pub mod secret;
pub(crate) mod secure_read;
pub(crate) mod serve;
pub(crate) mod source;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod sync;
pub mod target;
pub(crate) mod token;
pub(crate) mod warnings;

#[cfg(test)]
mod properties;
