//! A credential's life: [`policy`] decides (pure: when due, whether to fetch, when to try
//! again), [`transition`] says how the stored state changes, [`rotation`] carries out the
//! steps in the order of design §1 (persist, then targets, then reloads) and [`outcome`]
//! says what they did.
//!
//! Nothing here waits for a deadline or owns a task: that is the daemon's worker.

mod apply;
mod outcome;
pub mod policy;
mod rotation;
mod shared;
mod transition;

pub use outcome::{RotationOutcome, RotationResult};
pub use policy::Trigger;
pub use rotation::Engine;
