//! refreshd keeps short-lived credentials fresh: it refreshes OAuth access tokens and
//! API-minted passwords before they expire, persists rotated refresh tokens first, and
//! rewrites only the managed key or line of each `.env`, `.pgpass` or token file.
//!
//! Data flows one way: [`config`] → [`daemon`] (one task per credential) → [`rotation`] →
//! [`source`] → [`token`] → [`state`] → [`target`] → [`reload`] → [`status`], which the
//! [`control`] socket and [`metrics`] read; [`login`] seeds a refresh token into [`state`].
//! The binary (`main.rs`) only calls [`cli::main`].

pub mod child;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod credential;
pub mod daemon;
pub mod demo;
pub mod durable;
pub mod log;
pub mod login;
pub mod metrics;
pub mod reload;
pub mod secret;
pub mod source;
pub mod state;
pub mod status;
pub mod target;
pub mod token;
