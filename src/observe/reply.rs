//! What one credential's attempt came to, as told to whoever asked for it (a `rotate`
//! request): the daemon's words, which the control socket turns into its wire form. It
//! never holds a token, only its fingerprint.

use time::OffsetDateTime;

/// The answer to a request to rotate one credential, after the attempt it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReply {
    pub name: String,
    pub ok: bool,
    /// "rotated", "current" or the error.
    pub message: String,
    pub fingerprint: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}
