//! What the daemon shows of itself, one read model for every reader: each credential's
//! status ([`CredentialStatus`], its [`Health`] and [`Counters`]), gathered in a
//! [`Snapshot`] with the daemon's and the fleet store's ([`FleetView`]); the daemon's [`Vitals`]; and the
//! [`Model`] that keeps them, written by the daemon and read ([`Observed`]) by the control
//! socket, `/metrics` and the probes. Without a daemon, `refreshd status` rebuilds a
//! snapshot from the state directory.
//!
//! It never holds a token or a refresh token (only fingerprints, times and errors), never
//! triggers anything, and never imports the daemon, the control socket or the metrics.

mod counters;
mod credential;
mod fleet;
mod health;
mod model;
mod notifications;
mod reads;
mod reloads;
mod render;
mod reply;
mod shown;

mod snapshot;
mod vitals;
mod wire;

pub use counters::{Counters, DURATION_BUCKETS};
pub use credential::CredentialStatus;
pub use fleet::{FleetView, LeaseStatus, Role, StoreStatus};
pub use health::{Health, Verdict};
pub use model::{Model, Observed};
pub use notifications::{Delivery, NotificationCounts};
pub use reads::ReadCounts;
pub use reloads::{ReloadResults, ReloadStatus};

pub use reply::RotationReply;
pub use shown::{JsonWriter, Shown, shown};
pub use snapshot::{DaemonStatus, Snapshot};
pub use vitals::Vitals;
