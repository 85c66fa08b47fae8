//! The one error type of the runtime crate.

/// Everything the runtime can fail with. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration could not be loaded or failed validation; names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// NATS or JetStream failed.
    #[error("nats: {0}")]
    Nats(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Telemetry could not be initialised.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// An event could not be encoded, decoded or addressed.
    #[error(transparent)]
    Mesh(#[from] slipway_mesh::Error),
    /// JSON encoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The service was told to stop before the operation finished.
    #[error("shutting down")]
    ShuttingDown,
    /// Local I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A message larger than the NATS server accepts (its `max_payload`): no retry can help.
    #[error("nats: message of {size} bytes on {subject} exceeds the server's max_payload of {max} bytes")]
    TooLarge {
        /// Where it was to go.
        subject: String,
        /// Headers and body.
        size: usize,
        /// The server's `max_payload`.
        max: usize,
    },
}

impl Error {
    /// True when doing the same thing again cannot succeed: the message itself is wrong
    /// (too large, or not a valid event), not the connection or the server's state.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::TooLarge { .. } | Error::Mesh(_) | Error::Json(_))
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
