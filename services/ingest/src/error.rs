//! Ingest's one error type, and the one place that decides what a failure means
//! ([`Error::is_permanent`]): a failure that may pass is retried (the delivery is spooled and
//! replayed, a reload is tried again), one that cannot is refused or moved to the spool's
//! dead letters.

/// What can go wrong in ingest's own work (not a webhook's verdict: that is an HTTP answer).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration or message value that does not hold.
    #[error("{0}")]
    Invalid(String),
    /// A git repository (the catalog's, a generator's source) could not be read.
    #[error("{0}")]
    Git(String),
    /// NATS or JetStream (publishing, the originals bucket), with whether retrying can work.
    #[error("{message}")]
    Nats { message: String, permanent: bool },
    /// The runtime's stores (the catalog bucket and objects).
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::Error),
    /// The spool on disk.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// A blocking task that did not finish.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// GitHub's REST API (the redelivery reconciler) did not answer as expected.
    #[error("GitHub API: {0}")]
    GitHub(String),
    /// ingest's own schema (delivery records, the reconciler's lock).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Ingest's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when retrying cannot work: the input or configuration is wrong, or NATS refuses
    /// the message for good (larger than it takes). Everything else may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Invalid(_) => true,
            Error::Nats { permanent, .. } => *permanent,
            Error::Runtime(e) => e.is_permanent(),
            Error::Spool(crate::spool::SpoolError::Corrupt(..)) => true,
            Error::Git(_) | Error::Spool(_) | Error::Task(_) | Error::GitHub(_) | Error::Database(_) => false,
        }
    }

    /// A NATS failure, as the runtime classed it.
    pub fn nats(e: &slipway_runtime::Error) -> Self {
        Error::Nats { message: e.to_string(), permanent: e.is_permanent() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_cannot_pass_is_permanent() {
        assert!(Error::Invalid("text must be at most 4096 bytes".into()).is_permanent());
        assert!(!Error::Git("git fetch main: connection refused".into()).is_permanent());
        assert!(Error::Nats { message: "too large".into(), permanent: true }.is_permanent());
        assert!(!Error::Nats { message: "no responders".into(), permanent: false }.is_permanent());
    }
}
