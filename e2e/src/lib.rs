//! Slipway end to end: the quickstart's demo (`scripts/quickstart` with its configs in
//! `scripts/quickstart.d`) rebuilt for tests, so they check what users run.
//!
//! A push flows: the test commits to the demo app repository and sends ingest a signed GitHub
//! push webhook ([`webhook`]) → ingest → `build.requested` → the builder's buildah build pushed
//! to the registry → `build.succeeded` → the promoter's dev commit in the GitOps repository →
//! every event → the notifier → the test's signed-webhook [`receiver`]. [`demo`] starts the
//! test kit's real servers, the demo repositories and the four services as real processes
//! (this package's binaries, so a test can SIGKILL and restart them); [`inspect`] reads back
//! what happened: the `SLIPWAY` stream, registry tags and the GitOps commits' trailers.

pub mod admin;
pub mod demo;
pub mod front;
pub mod inspect;
pub mod outcome;
pub mod receiver;
pub mod service;
pub mod webhook;

pub use demo::{Database, Demo, Overrides, Replica};
pub use service::{Binaries, Service, Services};

/// The four service binaries of this package, for a test of this package to pass to
/// [`Demo::start_services`] (`env!("CARGO_BIN_EXE_…")` resolves only in the test crate).
#[macro_export]
macro_rules! binaries {
    () => {
        $crate::Binaries {
            ingest: env!("CARGO_BIN_EXE_e2e-slipway-ingest"),
            builder: env!("CARGO_BIN_EXE_e2e-slipway-builder"),
            promoter: env!("CARGO_BIN_EXE_e2e-slipway-promoter"),
            notifier: env!("CARGO_BIN_EXE_e2e-slipway-notifier"),
        }
    };
}
