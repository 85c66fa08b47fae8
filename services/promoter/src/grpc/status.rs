//! The one mapping from the promoter's [`Error`] to a gRPC [`Status`]. Input errors keep their
//! message; a refusal says who may act instead; storage and write-back failures are logged
//! here and answered without their internals.

use slipway_proto::REFUSAL_HEADER;
use tonic::Status;

use crate::domain::Refusal;
use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::NotFound(message) => Status::not_found(message),
            Error::Refused { reason, allowed_approvers, allowed_teams } => {
                refused(reason, &allowed_approvers, &allowed_teams)
            }
            Error::Database(e) => {
                tracing::error!(error = %e, "admin API: database error");
                match e {
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                        Status::unavailable("the pipeline database is unavailable; try again")
                    }
                    _ => Status::internal("internal error (logged by the promoter)"),
                }
            }
            Error::Runtime(e) => {
                tracing::error!(error = %e, "admin API: runtime error");
                Status::unavailable("the promoter could not complete the request; try again")
            }
            e @ (Error::Corrupt(_) | Error::Deploy { .. }) => {
                tracing::error!(error = %e, "admin API: internal error");
                Status::internal("internal error (logged by the promoter)")
            }
        }
    }
}

/// A command the policy refused: `PERMISSION_DENIED` when the caller may not do it,
/// `NOT_FOUND` when it names something unknown, `FAILED_PRECONDITION` when the pipeline is not
/// in a state that allows it. The message names who may approve.
fn refused(why: Refusal, approvers: &[String], teams: &[String]) -> Status {
    let mut message = format!("refused: {why}");
    let mut who = approvers.to_vec();
    who.extend(teams.iter().map(|t| format!("team {t}")));
    if !who.is_empty() {
        message.push_str("; may approve: ");
        message.push_str(&who.join(", "));
    }
    let mut status = match why {
        Refusal::NotAllowed | Refusal::SelfApproval => Status::permission_denied(message),
        Refusal::UnknownApp | Refusal::UnknownStage | Refusal::UnknownVersion => Status::not_found(message),
        Refusal::AlreadyApproved => Status::already_exists(message),
        Refusal::NoPending
        | Refusal::Ambiguous
        | Refusal::StageRequired
        | Refusal::NothingToPromote
        | Refusal::NoHealthyVersion
        | Refusal::NotHeld
        | Refusal::AppRequired
        | Refusal::NoChecks
        | Refusal::NothingToVerify => Status::failed_precondition(message),
    };
    // Clients (slipctl's exit codes) tell a pipeline's refusal from a token or role by it.
    if let Ok(value) = why.as_str().parse() {
        status.metadata_mut().insert(REFUSAL_HEADER, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_error_has_one_code() {
        let s = Status::from(Error::InvalidArgument("app name \"A\"".into()));
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "app name \"A\""));
        assert_eq!(Status::from(Error::NotFound("run r-1".into())).code(), Code::NotFound);
        let s = Status::from(Error::Refused {
            reason: Refusal::NotAllowed,
            allowed_approvers: vec!["bob".into()],
            allowed_teams: vec!["sre".into()],
        });
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "refused: not-allowed; may approve: bob, team sre");
        assert_eq!(s.metadata().get(REFUSAL_HEADER).and_then(|v| v.to_str().ok()), Some("not-allowed"));
        let s = Status::from(Error::Refused {
            reason: Refusal::NoPending,
            allowed_approvers: vec![],
            allowed_teams: vec![],
        });
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "refused: no-pending-promotion"));
        let s = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(s.code(), Code::Unavailable);
        let s = Status::from(Error::Corrupt("row 7 of promotions: bad json at /var/lib".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/var/lib"), "internals stay in the log");
    }
}
