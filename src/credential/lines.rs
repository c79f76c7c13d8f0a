//! The log lines of a rotation, each with its fields defined once: `rotated` (this host
//! fetched a new token), `followed the store` (a fleet node took a newer generation over),
//! `current` (the token held was kept; worth an operator's attention only when a target had
//! to be repaired).
//!
//! Must never: log a token; only its fingerprint.

use super::outcome::Report;
use crate::config::Credential;
use crate::token::{self, Token};

/// The line of a rotation that fetched `token` (design §4 Logs).
pub(super) fn log_rotated(credential: &Credential, token: &Token, report: &Report, rotated: bool) {
    tracing::info!(
        credential = %credential.name,
        expires_at = %token::rfc3339(token.expires_at),
        next_refresh = %token::rfc3339(report.next_refresh),
        targets = report.targets_written + report.targets_unchanged,
        target_errors = report.target_errors.len(),
        reloads = report.reloads_run,
        reload_errors = report.reload_errors.len(),
        took = %format!("{}ms", report.took.as_millis()),
        fingerprint = %report.fingerprint,
        refresh_token_rotated = rotated,
        served_by = token.served.as_ref().map(|s| tracing::field::debug(&s.by)),
        "rotated"
    );
    crate::audit::record(&crate::audit::Event::Rotation {
        credential: &credential.name,
        fingerprint: &report.fingerprint,
        expires_at: token.expires_at,
        refresh_token_rotated: rotated,
    });
}

/// A follower's line for each new generation it takes over (the holder's is `rotated`).
pub(super) fn log_followed(
    credential: &Credential,
    token: &Token,
    report: &Report,
    generation: Option<u64>,
) {
    tracing::info!(
        credential = %credential.name,
        generation = generation.unwrap_or(0),
        expires_at = %token::rfc3339(token.expires_at),
        targets = report.targets_written + report.targets_unchanged,
        target_errors = report.target_errors.len(),
        reloads = report.reloads_run,
        reload_errors = report.reload_errors.len(),
        took = %format!("{}ms", report.took.as_millis()),
        fingerprint = %report.fingerprint,
        "followed the store"
    );
}

/// The held token was kept: info when a target had to be repaired, else debug.
pub(super) fn log_current(credential: &Credential, token: &Token, report: &Report) {
    macro_rules! current {
        ($level:ident) => {
            tracing::$level!(
                credential = %credential.name,
                expires_at = %token::rfc3339(token.expires_at),
                next_refresh = %token::rfc3339(report.next_refresh),
                targets_written = report.targets_written,
                reloads = report.reloads_run,
                fingerprint = %report.fingerprint,
                "current"
            )
        };
    }
    if report.targets_written > 0 {
        current!(info);
    } else {
        current!(debug);
    }
}
