//! A credential's life: [`policy`] decides (pure: when due, whether to fetch, when to try
//! again), [`transition`] says how the stored state changes, [`rotation`] carries out the
//! steps in the order of design §1 (persist, then targets, then reloads).
//!
//! Nothing here waits for a deadline or owns a task: that is the daemon's worker.

pub mod policy;
pub mod rotation;
mod transition;

pub use policy::Trigger;
pub use rotation::{Engine, Report, RotationError, RotationOutcome, RotationResult};
pub use transition::Spend;
