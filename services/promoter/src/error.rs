//! The promoter's one error type, and its one mapping to a JetStream outcome.

use slipway_runtime::consumer::Outcome;

/// Everything the pipeline side of the promoter can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL failed (may pass: retried).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Outbox, inbox or event encoding failed.
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::Error),
    /// A stored row could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Input names something malformed (an app name, a tag); never succeeds on retry.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Input names something that does not exist (an app, a run).
    #[error("not found: {0}")]
    NotFound(String),
    /// The policy refused a command: why, and who may act instead.
    #[error("refused: {reason}")]
    Refused { reason: crate::domain::Refusal, allowed_approvers: Vec<String>, allowed_teams: Vec<String> },
    /// The write-back failed; `permanent` when a retry cannot help (missing file, bad YAML).
    #[error("write-back: {message}")]
    Deploy { message: String, permanent: bool },
}

/// `Result` with the promoter's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Corrupt(e.to_string())
    }
}

impl From<slipway_mesh::Error> for Error {
    fn from(e: slipway_mesh::Error) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl Error {
    /// What a consumer does with a message whose handling failed like this.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Database(_) | Error::Runtime(_) => Outcome::Retry(self.to_string()),
            Error::Deploy { permanent: false, .. } => Outcome::Retry(self.to_string()),
            _ => Outcome::Reject(self.to_string()),
        }
    }
}
