//! The plumbing every Slipway service shares.
//!
//! Config flows in through [`config`] (defaults → TOML → `SLIPWAY_*` env), telemetry is set
//! up by [`telemetry`], events leave through [`jetstream::Publisher`] (or the transactional
//! [`db::outbox`]) and arrive through [`consumer`] loops that dedupe with [`db::inbox`].
//! [`admin`] serves `/healthz`, `/readyz` and `/metrics`; [`shutdown`] turns SIGTERM/SIGINT
//! into one cancellation token. [`catalog`] keeps the app catalog revision in force current.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod db;
mod error;
pub mod jetstream;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use error::{Error, Result};
