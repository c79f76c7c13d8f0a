//! The integration tests, one binary: each suite is a module, and `common` is the shared
//! harness (the oidc-provider fixture, the refreshd runner, the fault stub).
//! Run one suite with `cargo test --test it SUITE::` (e.g. `scripts/test --test it oauth_flow`).

// The tests drive real processes on the real clock: deadlines and fixture timestamps read
// it directly (clippy.toml keeps the crate itself on crate::clock).
#![expect(
    clippy::disallowed_methods,
    reason = "real processes on the real clock; the crate itself stays on crate::clock"
)]
// A scenario against real peers reads best as one story, start to finish; the 80-line limit
// is for the crate's own functions.
#![expect(
    clippy::too_many_lines,
    reason = "each scenario is one story against real peers"
)]

mod common;

mod atomicity;
mod aws;
mod cli;
mod crash;
mod daemon_control;
mod daemon_faults;
mod daemon_lifecycle;
mod docs;
mod dotenv_interop;
mod edges;
mod endpoints;
mod exec;
mod fields;
mod fleet;
mod formats;
mod google;
mod hardening;
mod http_chain;
mod login;
mod networks;
mod notify;
mod oauth_flow;
mod pgpass_psql;
mod readers;
mod readme_examples;
mod rolling;
mod sealed_state;
mod service_units;
mod storage;
mod strict_config;
mod templates;
mod token_exchange;
mod user_files;
