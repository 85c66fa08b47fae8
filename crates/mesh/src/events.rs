//! The event table: payload type ↔ CloudEvents type ↔ subject.

use crate::envelope::{Envelope, EventId};
use crate::names::{AppName, EnvName, RepoName};
use crate::{Error, Result};
use slipway_proto::v1::{self, event::Payload};

/// Subject filter of the one `SLIPWAY` stream.
pub const STREAM_SUBJECTS: &str = "slipway.>";

/// Subject token standing for "no app / no environment" (e.g. `/approve` without
/// arguments). Not a valid [`AppName`], so it never collides with one.
pub const NONE_TOKEN: &str = "-";

/// A payload type that can travel as a Slipway event.
pub trait EventPayload:
    prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default + Clone + PartialEq + 'static
{
    /// Which event this is.
    const KIND: EventKind;

    /// The key tokens after `slipway.<domain>.<event>`, validated.
    fn subject_tokens(&self) -> Result<Vec<String>>;

    /// Wraps into the `Event.payload` oneof.
    fn into_payload(self) -> Payload;

    /// The full NATS subject.
    fn subject(&self) -> Result<String> {
        let mut s = Self::KIND.subject_prefix();
        for t in self.subject_tokens()? {
            s.push('.');
            s.push_str(&t);
        }
        Ok(s)
    }
}

/// Builds the envelope and JSON body of a new event (fresh id, time now).
pub fn prepare<E: EventPayload>(source: &str, payload: &E) -> Result<(Envelope, Vec<u8>)> {
    prepare_with_id(EventId::new(), source, payload)
}

/// Like [`prepare`] with a caller-chosen id, for events derived idempotently from outside input.
/// A body over [`crate::bounds::MAX_EVENT_BYTES`] is [`Error::TooLarge`].
pub fn prepare_with_id<E: EventPayload>(id: EventId, source: &str, payload: &E) -> Result<(Envelope, Vec<u8>)> {
    let envelope = Envelope {
        id,
        kind: E::KIND,
        source: source.to_owned(),
        subject: payload.subject()?,
        time: chrono::Utc::now(),
        traceparent: None,
        tracestate: None,
    };
    let body =
        serde_json::to_vec(payload).map_err(|e| Error::Payload { kind: E::KIND.ce_type(), message: e.to_string() })?;
    let max = crate::bounds::MAX_EVENT_BYTES;
    if body.len() > max {
        return Err(Error::TooLarge { kind: E::KIND.ce_type(), size: body.len(), max });
    }
    Ok((envelope, body))
}

fn app_token(app: &str) -> Result<String> {
    Ok(AppName::parse(app)?.as_str().to_owned())
}

fn env_token(env: &str) -> Result<String> {
    Ok(EnvName::parse(env)?.as_str().to_owned())
}

fn optional(value: &str, parse: fn(&str) -> Result<String>) -> Result<String> {
    if value.is_empty() { Ok(NONE_TOKEN.to_owned()) } else { parse(value) }
}

fn repo_token(repo: &str) -> Result<String> {
    Ok(RepoName::parse(repo)?.token())
}

macro_rules! event_table {
    ($( $kind:ident => $ty:ident, $domain:literal, $event:literal, |$p:ident| $tokens:expr; )*) => {
        /// Every event Slipway publishes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind { $( #[doc = concat!("`slipway.", $domain, ".", $event, "`")] $kind, )* }

        impl EventKind {
            /// All kinds, in table order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind,)*];

            /// The domain token (`build`, `promotion`, ...).
            pub fn domain(self) -> &'static str {
                match self { $(EventKind::$kind => $domain,)* }
            }

            /// The event token (`succeeded`, `rolled-back`, ...).
            pub fn event(self) -> &'static str {
                match self { $(EventKind::$kind => $event,)* }
            }

            /// The CloudEvents type, `io.slipway.<domain>.<event>.v1`.
            pub fn ce_type(self) -> &'static str {
                match self { $(EventKind::$kind => concat!("io.slipway.", $domain, ".", $event, ".v1"),)* }
            }

            /// Looks a kind up by its CloudEvents type.
            pub fn from_ce_type(ty: &str) -> Option<Self> {
                match ty { $(concat!("io.slipway.", $domain, ".", $event, ".v1") => Some(EventKind::$kind),)* _ => None }
            }
        }

        $(
            impl EventPayload for v1::$ty {
                const KIND: EventKind = EventKind::$kind;
                fn subject_tokens(&self) -> Result<Vec<String>> {
                    let $p = self;
                    $tokens
                }
                fn into_payload(self) -> Payload {
                    Payload::$ty(self)
                }
            }
        )*

        /// Decodes a JSON body of the given kind into the `Event.payload` oneof.
        pub fn decode_payload(kind: EventKind, body: &[u8]) -> Result<Payload> {
            match kind {
                $(EventKind::$kind => serde_json::from_slice::<v1::$ty>(body)
                    .map(Payload::$ty)
                    .map_err(|e| Error::Payload { kind: kind.ce_type(), message: e.to_string() }),)*
            }
        }

        /// The kind of a decoded payload.
        pub fn payload_kind(payload: &Payload) -> EventKind {
            match payload { $(Payload::$ty(_) => EventKind::$kind,)* }
        }
    };
}

event_table! {
    SourcePush => SourcePush, "source", "push", |p| Ok(vec![repo_token(&p.repository)?]);
    SourcePullRequest => SourcePullRequest, "source", "pull-request", |p| Ok(vec![repo_token(&p.repository)?]);
    SourceTag => SourceTag, "source", "tag", |p| Ok(vec![repo_token(&p.repository)?]);
    SourceTestGate => SourceTestGate, "source", "test-gate", |p| Ok(vec![repo_token(&p.repository)?]);
    SourcePing => SourcePing, "source", "ping", |p| Ok(vec![optional(&p.repository, repo_token)?]);
    ChatopsCommand => ChatopsCommand, "chatops", "command",
        |p| Ok(vec![optional(&p.app, app_token)?, optional(&p.env, env_token)?]);
    CommandRefused => CommandRefused, "command", "refused",
        |p| Ok(vec![optional(&p.app, app_token)?, optional(&p.stage, env_token)?]);
    BuildRequested => BuildRequested, "build", "requested", |p| Ok(vec![app_token(&p.app)?]);
    BuildStarted => BuildStarted, "build", "started", |p| Ok(vec![app_token(&p.app)?]);
    BuildSucceeded => BuildSucceeded, "build", "succeeded", |p| Ok(vec![app_token(&p.app)?]);
    BuildFailed => BuildFailed, "build", "failed", |p| Ok(vec![optional(&p.app, app_token)?]);
    BuildScanned => BuildScanned, "build", "scanned", |p| Ok(vec![app_token(&p.app)?]);
    BuildScanFailed => BuildScanFailed, "build", "scan-failed", |p| Ok(vec![app_token(&p.app)?]);
    ScanRequested => ScanRequested, "scan", "requested", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    VerificationRequested => VerificationRequested, "verification", "requested",
        |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    VerificationMeasured => VerificationMeasured, "verification", "measured",
        |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    VerificationCompleted => VerificationCompleted, "verification", "completed",
        |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionRequested => PromotionRequested, "promotion", "requested", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionCommitted => PromotionCommitted, "promotion", "committed", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionSynced => PromotionSynced, "promotion", "synced", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionHealthy => PromotionHealthy, "promotion", "healthy", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionDegraded => PromotionDegraded, "promotion", "degraded", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionFailed => PromotionFailed, "promotion", "failed", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    PromotionRolledBack => PromotionRolledBack, "promotion", "rolled-back", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    ApprovalRequested => ApprovalRequested, "approval", "requested", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    ApprovalGranted => ApprovalGranted, "approval", "granted", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    ApprovalRejected => ApprovalRejected, "approval", "rejected",
        |p| Ok(vec![optional(&p.app, app_token)?, optional(&p.stage, env_token)?]);
    HoldPlaced => HoldPlaced, "hold", "placed", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    HoldReleased => HoldReleased, "hold", "released", |p| Ok(vec![app_token(&p.app)?, env_token(&p.stage)?]);
    NotificationSent => NotificationSent, "notification", "sent", |p| Ok(vec![optional(&p.app, app_token)?]);
    NotificationFailed => NotificationFailed, "notification", "failed", |p| Ok(vec![optional(&p.app, app_token)?]);
    CatalogPublished => CatalogPublished, "catalog", "published", |p| Ok(vec![optional(&p.github_repository, repo_token)?]);
    CatalogRejected => CatalogRejected, "catalog", "rejected", |p| Ok(vec![optional(&p.github_repository, repo_token)?]);
}

impl EventKind {
    /// `slipway.<domain>.<event>`.
    pub fn subject_prefix(self) -> String {
        format!("slipway.{}.{}", self.domain(), self.event())
    }

    /// `slipway.<domain>.<event>.>`: every event of this kind.
    pub fn filter(self) -> String {
        format!("{}.>", self.subject_prefix())
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ce_type())
    }
}

/// Builds the `Event` message (envelope + payload) the admin API streams.
pub fn to_event(envelope: &Envelope, payload: Payload, sequence: u64) -> v1::Event {
    v1::Event {
        id: envelope.id.to_string(),
        r#type: envelope.kind.ce_type().to_owned(),
        source: envelope.source.clone(),
        subject: envelope.subject.clone(),
        time: Some(pbjson_types::Timestamp {
            seconds: envelope.time.timestamp(),
            nanos: i32::try_from(envelope.time.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        traceparent: envelope.traceparent.clone().unwrap_or_default(),
        sequence,
        payload: Some(payload),
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
