//! The one error type of the verification engine. Most failures of a check are not errors of
//! the engine but Error measurements (their message is an [`Error`]'s text); only building
//! the engine itself can fail outright.

/// Everything that can go wrong while measuring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),

    /// An HTTP request failed (connection, timeout, body).
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },

    /// A Prometheus answer that is an error or not a query result.
    #[error("Prometheus: {0}")]
    Prometheus(String),

    /// A condition that does not parse or does not apply to the measured value.
    #[error("{field} {condition:?}: {source}")]
    Condition {
        field: &'static str,
        condition: String,
        #[source]
        source: slipway_catalog::verify::expr::ExprError,
    },

    /// A `jsonPath` that the response body does not have.
    #[error("jsonPath {path:?}: {reason}")]
    JsonPath { path: String, reason: String },

    /// A field of the check that does not validate (the catalog's validation was skipped).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// A Job check without a Kubernetes client.
    #[error("no Kubernetes client is configured, so Job checks cannot run")]
    NoKube,

    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
