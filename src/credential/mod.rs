//! A credential's life: [`policy`] decides when (pure: due, whether to fetch, when to try
//! again), [`decide`] what one rotation does given what this host and its ledger hold (pure:
//! refresh, follow, take over, commit, hand over, ask, wait), [`transition`] how the stored
//! state changes, and [`rotation`] carries the steps out on one path for every credential,
//! over a [`ledger`] that is this host's state directory or the fleet store, in the order of
//! design §1 (persist, then targets, then reloads); [`outcome`] says what they did.
//!
//! Nothing here waits for a deadline or owns a task: that is the daemon's worker.

mod apply;
pub mod decide;
mod engine;
mod follow;
mod hold;
mod ledger;
mod lines;
mod outcome;
pub mod policy;
mod refresh;
mod roll;
mod rotation;
mod seed;
mod transition;

pub use engine::Engine;
pub use outcome::{RotationOutcome, RotationResult};
pub use policy::Trigger;
pub use rotation::Rotation;
pub use seed::{Grant, SeedError};
