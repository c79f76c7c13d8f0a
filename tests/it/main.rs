//! The integration tests, one binary: each suite is a module, and `common` is the shared
//! harness (the oidc-provider fixture, the refreshd runner, the fault stub).
//! Run one suite with `cargo test --test it SUITE::` (e.g. `scripts/test --test it oauth_flow`).

// The tests drive real processes on the real clock: deadlines and fixture timestamps read
// it directly (clippy.toml keeps the crate itself on crate::clock).
#![allow(clippy::disallowed_methods)]

mod common;

mod atomicity;
mod cli;
mod crash;
mod daemon_control;
mod daemon_faults;
mod daemon_lifecycle;
mod docs;
mod dotenv_interop;
mod edges;
mod fleet;
mod google;
mod hardening;
mod http_chain;
mod login;
mod oauth_flow;
mod pgpass_psql;
mod readme_examples;
mod service_units;
mod storage;
