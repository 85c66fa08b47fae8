//! The shared language of Slipway's services.
//!
//! Every event is a proto payload (from `slipway-proto`) serialized as proto3 JSON, wrapped
//! in a CloudEvents 1.0 [`Envelope`] carried in NATS headers, and published on a subject
//! `slipway.<domain>.<event>.<key>[.<env>]` built here from validated [`names`] only — never
//! from raw user text. [`EventKind`] is the one table that ties a payload type to its
//! CloudEvents type and its subject.

pub mod bounds;
pub mod build_log;
mod envelope;
mod error;
mod events;
pub mod names;

pub use envelope::{Envelope, EventId, header};
pub use error::{Error, Result};
pub use events::{
    EventKind, EventPayload, NONE_TOKEN, STREAM_SUBJECTS, decode_payload, payload_kind, prepare, prepare_with_id,
    to_event,
};
pub use slipway_proto::v1;
