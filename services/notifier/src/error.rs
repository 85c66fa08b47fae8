//! The notifier's one error type, and the one place that decides what a failure means for
//! the event being delivered ([`Error::outcome`]): try it again later, or never. A
//! destination's own failures do not come here: they are retried inside a delivery and end as
//! a dead letter (`notification.failed`) when the attempts run out.

use slipway_runtime::consumer::Outcome;

/// What can stop a delivery from being carried out or recorded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A route names a destination that is not configured: retrying cannot fix it.
    #[error("no destination {0:?}")]
    UnknownDestination(String),
    /// Another replica holds the claim on this (event, destination).
    #[error("another replica is delivering it")]
    Busy,
    /// The notifier's database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The notifier's store (its database rows and outbox).
    #[error("store: {0}")]
    Store(#[from] slipway_runtime::Error),
    /// The service is stopping in the middle of a delivery's waits.
    #[error("shutting down")]
    ShuttingDown,
    /// A stored event that no longer decodes (a dead letter to replay).
    #[error("event: {0}")]
    Event(#[from] slipway_mesh::Error),
    /// A template that does not compile or does not render.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// The HTTP client could not be built (TLS roots): the service does not start.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The notifier's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the event consumer does with an event whose delivery failed so: a
    /// misconfiguration or an undecodable event is final, the rest passes.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::UnknownDestination(_) | Error::Event(_) | Error::Template(_) | Error::Client(_) => {
                Outcome::Reject(self.to_string())
            }
            Error::Busy | Error::Database(_) | Error::Store(_) | Error::ShuttingDown => {
                Outcome::Retry(self.to_string())
            }
        }
    }

    /// The outcome of several deliveries of one event: retried if any failure may pass (the
    /// destinations already done are not sent to again), else rejected.
    pub fn outcome_of<'a>(errors: impl IntoIterator<Item = &'a Error>) -> Outcome {
        let mut outcome = Outcome::Ack;
        for error in errors {
            match (error.outcome(), &outcome) {
                (retry @ Outcome::Retry(_), _) => return retry,
                (reject, Outcome::Ack) => outcome = reject,
                _ => {}
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misconfiguration_is_not_retried_forever() {
        let unknown = Error::UnknownDestination("slack-old".into());
        assert!(matches!(unknown.outcome(), Outcome::Reject(why) if why == "no destination \"slack-old\""));
        assert!(matches!(Error::Busy.outcome(), Outcome::Retry(_)));
        assert!(matches!(Error::outcome_of([&unknown, &Error::Busy]), Outcome::Retry(_)), "the busy one may pass");
        assert!(matches!(Error::outcome_of([&unknown]), Outcome::Reject(_)));
        assert!(matches!(Error::outcome_of([]), Outcome::Ack));
    }
}
