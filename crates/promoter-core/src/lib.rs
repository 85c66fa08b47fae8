//! The promoter's core: what a pipeline is and how it decides, with no runtime, database,
//! git or network in reach (its `Cargo.toml` holds none of them, so the compiler keeps it so).
//!
//! - [`pipeline`]: apps, stages and their policies (`[pipeline]`, `[[apps]]`, or the app
//!   catalog converted), with their validation;
//! - [`freeze`]: freeze windows in a time zone;
//! - [`domain`]: an app's pipeline state, the inputs (events, commands, ticks) and the pure
//!   [`domain::decide`], which returns the effects for the service to carry out in one
//!   transaction; [`domain::scan_policy`] judges an image's newest vulnerability scan by a
//!   stage's scan policy (the supply-chain gate, one of decide's blockers).
//!
//! The promoter service (`slipway-promoter`) loads state, calls `decide`, stores the effects
//! and publishes their events; the GitOps write-back lives in `slipway-gitops`.

pub mod domain;
pub use slipway_catalog::freeze;
pub mod pipeline;
