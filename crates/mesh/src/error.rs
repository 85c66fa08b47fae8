//! The one error type of the mesh crate.

/// Why a name, an envelope or a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A name (app, environment, repository, tag, sha, event id) broke its grammar.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidName {
        /// What was being parsed ("app name", "image tag", ...).
        kind: &'static str,
        /// The offending input, truncated for display.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A required CloudEvents header is missing or malformed.
    #[error("envelope: {0}")]
    Envelope(String),
    /// The `ce-type` is not one Slipway knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The payload does not decode as the type's proto3 JSON.
    #[error("payload of {kind}: {message}")]
    Payload {
        /// The CloudEvents type being decoded.
        kind: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The event body is larger than [`crate::bounds::MAX_EVENT_BYTES`]: its producer must cap
    /// what it carries. Retrying cannot help.
    #[error("{kind} event of {size} bytes is larger than the {max} bytes an event may be")]
    TooLarge {
        /// The CloudEvents type.
        kind: &'static str,
        /// The body's size.
        size: usize,
        /// The bound.
        max: usize,
    },
}

/// `Result` with the mesh [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
