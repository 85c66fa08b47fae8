//! The CloudEvents 1.0 envelope, carried in NATS headers (binary content mode).
//!
//! `ce-id` doubles as JetStream's `Nats-Msg-Id`, so a republished event is dropped by the
//! server's duplicate window, and as the inbox key consumers dedupe on.

use crate::events::EventKind;
use crate::{Error, Result};
use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;

/// Header names used on every Slipway message.
pub mod header {
    /// CloudEvents spec version (always `1.0`).
    pub const SPECVERSION: &str = "ce-specversion";
    /// Event id, unique per event.
    pub const ID: &str = "ce-id";
    /// Event type, e.g. `io.slipway.build.succeeded.v1`.
    pub const TYPE: &str = "ce-type";
    /// Producer, e.g. `/slipway/builder/<replica>`.
    pub const SOURCE: &str = "ce-source";
    /// What the event is about (the NATS subject it was published on).
    pub const SUBJECT: &str = "ce-subject";
    /// RFC 3339 time the event happened.
    pub const TIME: &str = "ce-time";
    /// Media type of the body.
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// JetStream's dedupe key.
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

    /// The same names made once: inserting a `HeaderName` skips the validation and lookup
    /// (and the copy) that inserting a `&str` name costs on every event published.
    pub(crate) mod names {
        use async_nats::header::HeaderName;
        pub const SPECVERSION: HeaderName = HeaderName::from_static(super::SPECVERSION);
        pub const ID: HeaderName = HeaderName::from_static(super::ID);
        pub const TYPE: HeaderName = HeaderName::from_static(super::TYPE);
        pub const SOURCE: HeaderName = HeaderName::from_static(super::SOURCE);
        pub const SUBJECT: HeaderName = HeaderName::from_static(super::SUBJECT);
        pub const TIME: HeaderName = HeaderName::from_static(super::TIME);
        pub const CONTENT_TYPE: HeaderName = HeaderName::from_static(super::CONTENT_TYPE);
        pub const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
        pub const TRACESTATE: HeaderName = HeaderName::from_static(super::TRACESTATE);
        pub const NATS_MSG_ID: HeaderName = HeaderName::from_static(super::NATS_MSG_ID);
    }
}

/// A unique event id: 1–128 of `[A-Za-z0-9._:-]`. New ids are UUIDv7 (time ordered); ids
/// derived from outside deliveries (e.g. `gh-<delivery>-push`) keep redeliveries idempotent.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Validates an id received from elsewhere.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            let value = s.chars().take(80).collect();
            Err(Error::InvalidName { kind: "event id", value, reason: "1 to 128 of [A-Za-z0-9._:-]" })
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for EventId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

/// CloudEvents attributes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce-id`, also `Nats-Msg-Id`.
    pub id: EventId,
    /// `ce-type`.
    pub kind: EventKind,
    /// `ce-source`.
    pub source: String,
    /// `ce-subject`: the NATS subject.
    pub subject: String,
    /// `ce-time`.
    pub time: DateTime<Utc>,
    /// W3C `traceparent`, when the producer was traced.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
}

impl Envelope {
    /// The NATS headers for this envelope (binary content mode, JSON body).
    pub fn to_headers(&self) -> HeaderMap {
        use header::names;
        let mut h = HeaderMap::new();
        h.insert(names::SPECVERSION, "1.0");
        h.insert(names::ID, self.id.as_str());
        h.insert(names::NATS_MSG_ID, self.id.as_str());
        h.insert(names::TYPE, self.kind.ce_type());
        h.insert(names::SOURCE, self.source.as_str());
        h.insert(names::SUBJECT, self.subject.as_str());
        h.insert(names::TIME, self.time.to_rfc3339_opts(SecondsFormat::Micros, true).as_str());
        h.insert(names::CONTENT_TYPE, "application/json");
        if let Some(tp) = &self.traceparent {
            h.insert(names::TRACEPARENT, tp.as_str());
        }
        if let Some(ts) = &self.tracestate {
            h.insert(names::TRACESTATE, ts.as_str());
        }
        h
    }

    /// The headers as name/value pairs, for storing an event outside NATS (outbox, spool).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.to_headers()
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().to_owned())))
            .collect()
    }

    /// Reads an envelope back from [`Envelope::to_pairs`].
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.as_str(), value.as_str());
        }
        Self::from_headers(&headers)
    }

    /// Reads an envelope back from NATS headers; every required attribute must be present.
    pub fn from_headers(h: &HeaderMap) -> Result<Self> {
        let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
        let need = |name: &'static str| get(name).ok_or_else(|| Error::Envelope(format!("missing {name}")));
        let spec = need(header::SPECVERSION)?;
        if spec != "1.0" {
            return Err(Error::Envelope(format!("unsupported {} {spec:?}", header::SPECVERSION)));
        }
        let ty = need(header::TYPE)?;
        let kind = EventKind::from_ce_type(&ty).ok_or(Error::UnknownType(ty))?;
        let time = need(header::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| Error::Envelope(format!("{}: {e}", header::TIME)))?
            .with_timezone(&Utc);
        Ok(Self {
            id: EventId::parse(&need(header::ID)?)?,
            kind,
            source: need(header::SOURCE)?,
            subject: need(header::SUBJECT)?,
            time,
            traceparent: get(header::TRACEPARENT),
            tracestate: get(header::TRACESTATE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let env = Envelope {
            id: EventId::new(),
            kind: EventKind::BuildSucceeded,
            source: "/slipway/builder/b-1".into(),
            subject: "slipway.build.succeeded.writer".into(),
            time: Utc::now(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        let h = env.to_headers();
        assert_eq!(h.get(header::NATS_MSG_ID).map(|v| v.as_str()), Some(env.id.as_str()));
        assert_eq!(h.get(header::TYPE).map(|v| v.as_str()), Some("io.slipway.build.succeeded.v1"));
        let back = Envelope::from_headers(&h).expect("decode");
        // Microsecond precision on the wire.
        assert_eq!(back.time.timestamp_micros(), env.time.timestamp_micros());
        assert_eq!(Envelope { time: env.time, ..back }, env);
        let from_pairs = Envelope::from_pairs(&env.to_pairs()).expect("pairs");
        assert_eq!(Envelope { time: env.time, ..from_pairs }, env);
    }

    #[test]
    fn missing_or_unknown_headers_are_errors() {
        let mut h = HeaderMap::new();
        assert!(matches!(Envelope::from_headers(&h), Err(Error::Envelope(_))));
        h.insert(header::SPECVERSION, "1.0");
        h.insert(header::TYPE, "io.example.other");
        assert!(matches!(Envelope::from_headers(&h), Err(Error::UnknownType(_))));
    }

    #[test]
    fn event_ids() {
        assert!(EventId::parse("gh-3f1e-push").is_ok());
        assert!(EventId::parse("a b").is_err());
        assert!(EventId::parse("").is_err());
        assert_ne!(EventId::new(), EventId::new());
    }
}
