//! `Watch`: events of the `SLIPWAY` stream as a gRPC server stream. A watch of new events
//! joins the stream's [`Hub`], which reads one consumer for all live watchers and broadcasts
//! each decoded event; the watch keeps those matching its subjects, app and stage. A watch
//! starting at a stream sequence or a time gets its own ordered (ephemeral, ack-less) consumer
//! filtered by the requested subjects, as does a live watcher that fell too far behind the hub
//! (it carries on from the event after its last one). Every message becomes a `v1::Event`
//! carrying its stream sequence; app and stage are matched on the subject's key tokens. When
//! the client goes away the stream is dropped and any consumer of its own deleted; shutdown
//! ends every stream so the server can stop.

use std::marker::PhantomData;
use std::pin::Pin;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::{ConsumerErrorKind, Stream as JsStream};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use prost::Message as _;
use slipway_mesh::names::{AppName, EnvName, is_token};
use slipway_mesh::v1::{self, watch_request::Start};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::hub::{Batch, Hub, Joined, Live, SubjectFilter};
use crate::{Cleanup, event};

/// What a watch answers with: decoded events by default (the SSE dashboard), or their
/// protobuf encoding ([`Encoded`], the gRPC route).
pub type EventStream<T = v1::Event> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// An event's protobuf encoding, made once by the hub for all live watchers: a watcher then
/// sends shared bytes instead of cloning and encoding the event once per watcher.
#[derive(Debug, Clone)]
pub struct Encoded(pub Bytes);

/// What a watch yields per event.
pub trait Delivery: Send + 'static {
    /// A live event of the hub, shared by every watcher.
    fn live(live: &Live) -> Self;
    /// An event of the watch's own consumer.
    fn own(event: v1::Event) -> Self;
}

impl Delivery for v1::Event {
    fn live(live: &Live) -> Self {
        live.event.clone()
    }
    fn own(event: v1::Event) -> Self {
        event
    }
}

impl Delivery for Encoded {
    fn live(live: &Live) -> Self {
        Encoded(live.encoded.clone())
    }
    fn own(event: v1::Event) -> Self {
        Encoded(event.encode_to_vec().into())
    }
}

/// At most this many subject filters per call.
const MAX_SUBJECTS: usize = 16;

/// A validated `WatchRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    subjects: Vec<SubjectFilter>,
    app: Option<AppName>,
    stage: Option<EnvName>,
    start: DeliverPolicy,
}

impl Filter {
    /// Validates the request: subjects under `slipway.` made of Slipway tokens and wildcards,
    /// valid app and stage names, a representable start time.
    pub fn from_request(request: &v1::WatchRequest) -> Result<Self, Status> {
        if request.subjects.len() > MAX_SUBJECTS {
            return Err(Status::invalid_argument(format!("at most {MAX_SUBJECTS} subjects")));
        }
        let subjects = request.subjects.iter().map(|s| subject(s)).collect::<Result<Vec<_>, _>>()?;
        let subjects = subjects.iter().map(|s| SubjectFilter::new(s)).collect();
        let app = (!request.app.is_empty()).then(|| AppName::parse(&request.app)).transpose();
        let stage = (!request.stage.is_empty()).then(|| EnvName::parse(&request.stage)).transpose();
        let start = match &request.start {
            None => DeliverPolicy::New,
            Some(Start::FromSequence(seq)) => DeliverPolicy::ByStartSequence { start_sequence: (*seq).max(1) },
            Some(Start::FromTime(at)) => {
                let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
                let start_time = async_nats::datetime::from_nanos(nanos)
                    .map_err(|_| Status::invalid_argument("from_time is out of range"))?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let invalid = |e: slipway_mesh::Error| Status::invalid_argument(e.to_string());
        Ok(Filter { subjects, app: app.map_err(invalid)?, stage: stage.map_err(invalid)?, start })
    }

    /// True when an event on `subject` is about the requested app and stage. Subjects are
    /// `slipway.<domain>.<event>.<key>[.<env>]`; source events are keyed by repository, so
    /// they never match an app.
    pub fn matches(&self, subject: &str) -> bool {
        if self.app.is_none() && self.stage.is_none() {
            // The common case, once per event per live watcher: no allocation.
            return true;
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        if let Some(app) = &self.app {
            let keyed_by_app = tokens.get(1).is_some_and(|domain| *domain != "source");
            if !keyed_by_app || tokens.get(3) != Some(&app.as_str()) {
                return false;
            }
        }
        if let Some(stage) = &self.stage
            && tokens.get(4) != Some(&stage.as_str())
        {
            return false;
        }
        true
    }

    /// True when the hub's event on `subject` is for this watch: one of the subject filters
    /// (any subject when there are none), then app and stage.
    fn wants(&self, subject: &str) -> bool {
        (self.subjects.is_empty() || self.subjects.iter().any(|f| f.matches(subject))) && self.matches(subject)
    }

    fn consumer(&self, name: &str) -> OrderedConfig {
        let mut config = OrderedConfig {
            name: Some(name.to_owned()),
            description: Some("slipway admin API Watch".to_owned()),
            deliver_policy: self.start,
            ..OrderedConfig::default()
        };
        match self.subjects.as_slice() {
            [] => {}
            [one] => one.as_str().clone_into(&mut config.filter_subject),
            many => config.filter_subjects = many.iter().map(|f| f.as_str().to_owned()).collect(),
        }
        config
    }
}

/// One subject filter: `slipway` then tokens of `[a-z0-9-]`, `*`, or a final `>`.
fn subject(s: &str) -> Result<String, Status> {
    let tokens: Vec<&str> = s.split('.').collect();
    let last = tokens.len() - 1;
    let valid = tokens.len() >= 2
        && tokens[0] == "slipway"
        && tokens.iter().enumerate().skip(1).all(|(i, t)| *t == "*" || (*t == ">" && i == last) || is_token(t));
    if !valid {
        let shown: String = s.chars().take(80).collect();
        return Err(Status::invalid_argument(format!(
            "subject {shown:?} must be under slipway. (tokens of a-z, 0-9, '-', '*' or a final '>')"
        )));
    }
    Ok(s.to_owned())
}

/// The requested events until the client goes away or `shutdown`: live watches join the
/// stream's [`Hub`]; a watch with a start position reads its own consumer throughout.
pub async fn open<T: Delivery>(
    stream: &JsStream,
    filter: Filter,
    shutdown: CancellationToken,
) -> Result<EventStream<T>, Status> {
    if filter.start != DeliverPolicy::New {
        return Ok(Box::pin(own(stream, filter).await?.take_until(shutdown.cancelled_owned())));
    }
    let joined = Hub::join(stream).await?;
    let batch = Batch::from([]);
    let watch = LiveWatch { joined, stream: stream.clone(), filter, batch, next: 0, shutdown, delivery: PhantomData };
    Ok(Box::pin(futures::stream::unfold(Phase::Live(Box::new(watch)), Phase::next)))
}

/// Where a live watch reads from: the hub, or (after falling behind it) its own consumer.
enum Phase<T> {
    Live(Box<LiveWatch<T>>),
    Own(EventStream<T>),
    Done,
}

struct LiveWatch<T> {
    joined: Joined,
    stream: JsStream,
    filter: Filter,
    /// The batch in hand and the index of the next event to look at: each event is matched
    /// and cloned only when it is its turn, with no per-batch list per watcher.
    batch: Batch,
    next: usize,
    /// Checked once per event with an atomic load; awaited only between batches (a
    /// `take_until` would poll a future once per event per watcher).
    shutdown: CancellationToken,
    delivery: PhantomData<fn() -> T>,
}

impl<T: Delivery> LiveWatch<T> {
    /// The next event of the batch in hand that this watch wants.
    fn take(&mut self) -> Option<T> {
        while let Some(live) = self.batch.get(self.next) {
            self.next += 1;
            if self.filter.wants(&live.subject) {
                return Some(T::live(live));
            }
        }
        None
    }
}

impl<T: Delivery> Phase<T> {
    async fn next(self) -> Option<(Result<T, Status>, Phase<T>)> {
        let mut phase = self;
        loop {
            let mut live = match phase {
                Phase::Done => return None,
                Phase::Own(mut events) => return events.next().await.map(|item| (item, Phase::Own(events))),
                Phase::Live(live) => live,
            };
            if live.shutdown.is_cancelled() {
                return None;
            }
            if let Some(event) = live.take() {
                return Some((Ok(event), Phase::Live(live)));
            }
            let received = tokio::select! {
                biased;
                () = live.shutdown.cancelled() => return None,
                received = live.joined.events.recv() => received,
            };
            match received {
                Ok(batch) => {
                    live.joined.after = batch.last().map_or(live.joined.after, |l| l.event.sequence);
                    (live.batch, live.next) = (batch, 0);
                    phase = Phase::Live(live);
                }
                // Boxed: the resync's futures are large, and inline they would make every
                // call of `next` (one per event per watcher) move kilobytes.
                Err(RecvError::Lagged(missed)) => phase = Box::pin(Phase::resync(*live, missed)).await,
                Err(RecvError::Closed) => return Some((Err(interrupted()), Phase::Done)),
            }
        }
    }

    /// A watcher that fell behind the hub carries on from its own consumer, starting right
    /// after the last event it received, so it loses nothing and the hub never waits.
    async fn resync(live: LiveWatch<T>, missed: u64) -> Phase<T> {
        let start_sequence = live.joined.after + 1;
        tracing::info!(missed, start_sequence, "Watch: a watcher fell behind; it continues on its own consumer");
        let filter = Filter { start: DeliverPolicy::ByStartSequence { start_sequence }, ..live.filter };
        match own(&live.stream, filter).await {
            Ok(events) => Phase::Own(Box::pin(events.take_until(live.shutdown.cancelled_owned()))),
            Err(status) => Phase::Own(Box::pin(futures::stream::once(async { Err(status) }))),
        }
    }
}

fn interrupted() -> Status {
    Status::unavailable("the event stream was interrupted; watch again from the last sequence")
}

/// A consumer of the watch's own, from its start position on.
async fn own<T: Delivery>(stream: &JsStream, filter: Filter) -> Result<EventStream<T>, Status> {
    let name = format!("slipway-watch-{}", uuid::Uuid::new_v4().simple());
    let consumer = stream.create_consumer(filter.consumer(&name)).await.map_err(|e| match e.kind() {
        // The server's own words, e.g. "consumer subject filters cannot overlap".
        ConsumerErrorKind::JetStream(js) if js.code() == 400 => Status::invalid_argument(js.to_string()),
        _ => {
            tracing::warn!(error = %e, "Watch: creating the ordered consumer failed");
            Status::unavailable("the event stream is unavailable; try again")
        }
    })?;
    let cleanup = Cleanup::new(stream.clone(), name);
    let messages = consumer.messages().await.map_err(|e| {
        tracing::warn!(error = %e, "Watch: reading the ordered consumer failed");
        Status::unavailable("the event stream is unavailable; try again")
    })?;
    let events = futures::stream::unfold((messages, filter, cleanup), |(mut messages, filter, cleanup)| async move {
        loop {
            let item = match messages.next().await? {
                Ok(message) if !filter.matches(message.subject.as_str()) => continue,
                Ok(message) => match event(&message) {
                    Some(event) => Ok(T::own(event)),
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "Watch: the event stream failed");
                    Err(interrupted())
                }
            };
            return Some((item, (messages, filter, cleanup)));
        }
    });
    Ok(Box::pin(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(subjects: &[&str], app: &str, stage: &str) -> v1::WatchRequest {
        v1::WatchRequest {
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            app: app.into(),
            stage: stage.into(),
            start: None,
        }
    }

    #[test]
    fn subjects_must_stay_under_slipway() {
        for ok in ["slipway.>", "slipway.promotion.>", "slipway.*.*.writer.prod", "slipway.build.succeeded.writer"] {
            assert!(Filter::from_request(&request(&[ok], "", "")).is_ok(), "{ok}");
        }
        for bad in ["", ">", "slipway", "other.>", "slipway.>.x", "slipway..x", "slipway.Build.>", "$JS.API.>"] {
            let err = Filter::from_request(&request(&[bad], "", "")).expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert!(Filter::from_request(&request(&[], "Writer", "")).is_err());
        assert!(Filter::from_request(&request(&[], "", "prod.x")).is_err());
    }

    #[test]
    fn start_positions() {
        let mut r = request(&[], "", "");
        assert_eq!(Filter::from_request(&r).expect("new").start, DeliverPolicy::New);
        r.start = Some(Start::FromSequence(0));
        assert_eq!(Filter::from_request(&r).expect("seq").start, DeliverPolicy::ByStartSequence { start_sequence: 1 });
        r.start = Some(Start::FromTime(pbjson_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }));
        let by_time = Filter::from_request(&r).expect("time").start;
        assert!(matches!(by_time, DeliverPolicy::ByStartTime { .. }), "{by_time:?}");
    }

    #[test]
    fn app_and_stage_match_key_tokens() {
        let f = Filter::from_request(&request(&[], "writer", "prod")).expect("filter");
        assert!(f.matches("slipway.promotion.committed.writer.prod"));
        assert!(!f.matches("slipway.promotion.committed.writer.dev"));
        assert!(!f.matches("slipway.promotion.committed.reader.prod"));
        assert!(!f.matches("slipway.build.succeeded.writer"), "no stage token");
        let f = Filter::from_request(&request(&[], "writer", "")).expect("filter");
        assert!(f.matches("slipway.build.succeeded.writer"));
        assert!(!f.matches("slipway.source.push.writer"), "source events are keyed by repository");
        assert!(Filter::from_request(&request(&[], "", "")).expect("all").matches("slipway.source.push.x"));
    }

    #[test]
    fn one_or_many_filter_subjects() {
        let one = Filter::from_request(&request(&["slipway.build.>"], "", "")).expect("one").consumer("n");
        assert_eq!((one.filter_subject.as_str(), one.filter_subjects.len()), ("slipway.build.>", 0));
        let two = Filter::from_request(&request(&["slipway.build.>", "slipway.promotion.>"], "", "")).expect("two");
        assert_eq!(two.consumer("n").filter_subjects.len(), 2);
    }
}
