//! The `Watch` hub: live events fanned out to every live watcher of a stream from one
//! JetStream consumer, instead of one consumer per watcher (a thousand dashboards would be a
//! thousand consumers on nats-server, each delivering every message over the connection).
//!
//! Events flow: one ordered consumer (new events only, the whole stream) → decoded once into
//! a `v1::Event` and encoded once into its protobuf bytes → batched for at most [`LINGER`] → a tokio broadcast channel → each watcher,
//! which matches subjects, app and stage itself. The channel never waits for a receiver: a
//! watcher that falls more than [`CAPACITY`] batches behind gets `Lagged` and resyncs from its
//! own consumer (see `watch::open`), so one slow client never holds back the others.
//!
//! One hub exists per stream while it has watchers, found through a process-wide registry
//! because `watch::open` is called with just the stream (by the gRPC service and the SSE
//! dashboard alike). The last watcher leaving stops the hub and deletes its consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered as Messages, OrderedConfig};
use async_nats::jetstream::stream::Stream as JsStream;
use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;
use slipway_mesh::v1;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::Status;
use tracing::Instrument as _;

use crate::{Cleanup, event};

/// Batches a watcher may fall behind before it resyncs on its own (at least that many
/// events; about 5 s at 1,000 events/s). Small in tests, so that falling behind is quick.
pub const CAPACITY: usize = if cfg!(test) { 16 } else { 1024 };

/// Longest an event waits for others to share its broadcast. Each broadcast wakes every
/// watcher and becomes one HTTP/2 frame per watcher, so batching divides that per-watcher work
/// by the events per batch (about twenty at 1,000 events/s). 20 ms against 5 ms halved the
/// p99 at 1,000 watchers x 1,000 events/s on 2 cores; it is a fifth of the 100 ms budget.
const LINGER: Duration = Duration::from_millis(20);

/// Most events in one batch.
pub const MAX_BATCH: usize = 256;

/// Events broadcast together, in stream order.
pub type Batch = Arc<[Live]>;

/// One live event as every watcher sees it: decoded once, shared.
#[derive(Debug)]
pub struct Live {
    /// The NATS subject, which filters match on.
    pub subject: String,
    /// The event, with its stream sequence.
    pub event: v1::Event,
    /// Its protobuf encoding, which gRPC watchers send as it is.
    pub encoded: Bytes,
}

/// The stream's name and creation time: a stream of another server or a recreated one is
/// another hub.
type Key = (String, String);

static HUBS: LazyLock<Mutex<HashMap<Key, Weak<Hub>>>> = LazyLock::new(Mutex::default);

/// A running hub; dropping the last handle stops it.
#[derive(Debug)]
pub struct Hub {
    /// Weak, so that receivers see the channel close when the hub's task ends.
    sender: broadcast::WeakSender<Batch>,
    /// The sequence of the last event broadcast (the stream's last at start).
    latest: Arc<AtomicU64>,
    _stop: DropGuard,
}

/// A watcher's place in the hub: events after `after` arrive on `events`.
#[derive(Debug)]
pub struct Joined {
    /// Held, not read: the hub runs while a watcher holds it.
    _hub: Arc<Hub>,
    pub events: broadcast::Receiver<Batch>,
    /// Every event with a higher sequence is on `events` or still to come; a resync starts
    /// after it.
    pub after: u64,
}

impl Hub {
    /// Joins the stream's hub, starting it when there is none.
    pub async fn join(stream: &JsStream) -> Result<Joined, Status> {
        let info = stream.cached_info();
        let key = (info.config.name.clone(), info.created.to_string());
        let mut hubs = HUBS.lock().await;
        hubs.retain(|_, hub| hub.strong_count() > 0);
        if let Some(hub) = hubs.get(&key).and_then(Weak::upgrade)
            && let Some(joined) = hub.subscribe()
        {
            return Ok(joined);
        }
        let hub = Arc::new(Hub::start(stream).await?);
        hubs.insert(key, Arc::downgrade(&hub));
        hub.subscribe().ok_or_else(|| Status::unavailable("the event stream is unavailable; try again"))
    }

    /// `None` once the hub's task has ended (its consumer failed).
    fn subscribe(self: &Arc<Self>) -> Option<Joined> {
        // `latest` is read first: an event sent in between is then both after `after` and
        // perhaps missed by the receiver, which a resync would replay rather than lose.
        let after = self.latest.load(Ordering::Acquire);
        let events = self.sender.upgrade()?.subscribe();
        Some(Joined { _hub: self.clone(), events, after })
    }

    async fn start(stream: &JsStream) -> Result<Hub, Status> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "Watch hub: {what} failed");
            Status::unavailable("the event stream is unavailable; try again")
        };
        // The stream's last sequence before the consumer starts: anything later is either
        // broadcast or replayable by a resync starting after it.
        let last = stream.get_info().await.map_err(|e| unavailable("reading the stream", &e))?.state.last_sequence;
        let name = format!("slipway-watch-hub-{}", uuid::Uuid::new_v4().simple());
        let config = OrderedConfig {
            name: Some(name.clone()),
            description: Some("slipway admin API Watch (shared by live watchers)".to_owned()),
            deliver_policy: DeliverPolicy::New,
            ..OrderedConfig::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| unavailable("creating the consumer", &e))?;
        let cleanup = Cleanup::new(stream.clone(), name);
        let messages = consumer.messages().await.map_err(|e| unavailable("reading the consumer", &e))?;
        let (sender, _) = broadcast::channel(CAPACITY);
        let (stop, latest) = (CancellationToken::new(), Arc::new(AtomicU64::new(last)));
        let weak = sender.downgrade();
        let task = broadcast_loop(messages, sender, latest.clone(), stop.clone(), cleanup);
        tokio::spawn(task.instrument(tracing::info_span!("watch_hub")));
        Ok(Hub { sender: weak, latest, _stop: stop.drop_guard() })
    }
}

/// Decodes each message once and hands batches of them to every receiver. Ends on `stop` or
/// when the consumer fails; dropping `sender` then closes every receiver's channel.
async fn broadcast_loop(
    mut messages: Messages,
    sender: broadcast::Sender<Batch>,
    latest: Arc<AtomicU64>,
    stop: CancellationToken,
    _cleanup: Cleanup,
) {
    loop {
        let mut batch = Vec::new();
        let first = tokio::select! {
            () = stop.cancelled() => return,
            next = messages.next() => next,
        };
        let mut open = take(first, &mut batch);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while open && batch.len() < MAX_BATCH {
            let next = tokio::select! {
                biased;
                next = messages.next() => next,
                () = &mut linger => break,
                () = stop.cancelled() => return,
            };
            open = take(next, &mut batch);
        }
        if let Some(last) = batch.last() {
            latest.store(last.event.sequence, Ordering::Release);
            // An error only means nobody is listening right now.
            let _ = sender.send(batch.into());
        }
        if !open {
            return;
        }
    }
}

/// Adds the message's event (if it decodes) to `batch`; false once the consumer ended.
fn take<E: std::fmt::Display>(next: Option<Result<Message, E>>, batch: &mut Vec<Live>) -> bool {
    match next {
        Some(Ok(message)) => {
            if let Some(event) = event(&message) {
                let encoded = event.encode_to_vec().into();
                batch.push(Live { subject: message.subject.to_string(), event, encoded });
            }
            true
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Watch hub: the event stream failed; live watchers are told to watch again");
            false
        }
        None => false,
    }
}

/// A NATS subject filter, classified once per watch. Most filters are a literal subject or
/// literal tokens then `>`, which match with one comparison; only filters with `*` walk the
/// tokens. (Matching runs once per event per live watcher: a million times a second at
/// 1,000 x 1,000.)
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectFilter {
    filter: String,
    kind: FilterKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FilterKind {
    /// No wildcard: this subject only.
    Exact,
    /// `a.b.>`: subjects starting with `a.b.` (the filter without its `>`) and having a
    /// token after it.
    Prefix,
    /// Anything with `*`.
    Pattern,
}

impl SubjectFilter {
    pub fn new(filter: &str) -> Self {
        let kind = match filter.strip_suffix('>') {
            _ if filter.split('.').any(|t| t == "*") => FilterKind::Pattern,
            Some(prefix) if prefix.ends_with('.') => FilterKind::Prefix,
            _ => FilterKind::Exact,
        };
        SubjectFilter { filter: filter.to_owned(), kind }
    }

    /// The filter as NATS writes it.
    pub fn as_str(&self) -> &str {
        &self.filter
    }

    pub fn matches(&self, subject: &str) -> bool {
        match self.kind {
            FilterKind::Exact => subject == self.filter,
            FilterKind::Prefix => {
                let prefix = &self.filter[..self.filter.len() - 1];
                subject.len() > prefix.len() && subject.starts_with(prefix)
            }
            FilterKind::Pattern => subject_matches(&self.filter, subject),
        }
    }
}

/// True when `subject` matches the NATS `filter` (`*` one token, a final `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in filter.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (want, Some(have)) if want == have => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_filters_match_as_the_token_walk_does() {
        let subjects = [
            "slipway",
            "slipway.build",
            "slipway.build.started",
            "slipway.build.started.writer",
            "slipway.build.started.writer.prod",
            "slipway.buildx.started.writer",
            "slipway.promotion.committed.writer.dev",
        ];
        let filters = [
            "slipway.>",
            "slipway.build.>",
            "slipway.build.started.writer",
            "slipway.*.started.writer",
            "slipway.*.>",
            "slipway.build.*",
            "slipway.promotion.committed.writer.dev",
        ];
        for filter in filters {
            let compiled = SubjectFilter::new(filter);
            for subject in subjects {
                assert_eq!(
                    compiled.matches(subject),
                    subject_matches(filter, subject),
                    "{filter} {subject} {compiled:?}"
                );
            }
        }
        assert_eq!(SubjectFilter::new("slipway.build.>").kind, FilterKind::Prefix);
        assert_eq!(SubjectFilter::new("slipway.*.>").kind, FilterKind::Pattern);
        assert_eq!(SubjectFilter::new("slipway.build.x").kind, FilterKind::Exact);
    }

    #[test]
    fn nats_wildcards() {
        assert!(subject_matches("slipway.>", "slipway.build.started.writer"));
        assert!(!subject_matches("slipway.>", "slipway"), "> needs at least one token");
        assert!(subject_matches("slipway.*.started.writer", "slipway.build.started.writer"));
        assert!(!subject_matches("slipway.*.started", "slipway.build.started.writer"), "too short");
        assert!(!subject_matches("slipway.build.started.writer.prod", "slipway.build.started.writer"), "too long");
        assert!(subject_matches("slipway.build.started.writer", "slipway.build.started.writer"));
        assert!(!subject_matches("slipway.build.>", "slipway.promotion.committed.writer.dev"));
    }

    use crate::watch::{EventStream, Filter, open};
    use slipway_runtime::config::NatsConfig;
    use slipway_runtime::jetstream::{Publisher, ensure_stream};

    /// Names of the stream's Watch consumers.
    async fn watch_consumers(stream: &JsStream) -> Vec<String> {
        let names: Vec<String> = stream.consumer_names().filter_map(|n| async move { n.ok() }).collect().await;
        names.into_iter().filter(|n| n.starts_with("slipway-watch-")).collect()
    }

    async fn watch(stream: &JsStream, subjects: &[&str], app: &str) -> EventStream {
        let subjects = subjects.iter().map(|s| (*s).to_owned()).collect();
        let request = v1::WatchRequest { subjects, app: app.into(), ..Default::default() };
        open(stream, Filter::from_request(&request).expect("filter"), CancellationToken::new()).await.expect("open")
    }

    /// The next `n` events' sequences; fails on an error or a stall.
    async fn sequences(events: &mut EventStream, n: usize) -> Vec<u64> {
        let mut seen = Vec::with_capacity(n);
        while seen.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an event in time");
            seen.push(next.expect("stream open").expect("event ok").sequence);
        }
        seen
    }

    /// A nats-server with the `SLIPWAY` stream, and a publisher to it.
    async fn stream() -> (slipway_testkit::NatsServer, JsStream, Publisher) {
        let nats = slipway_testkit::NatsServer::start().await.expect("nats");
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let config = NatsConfig { url: nats.url(), ..NatsConfig::default() };
        let stream = ensure_stream(&async_nats::jetstream::new(client.clone()), &config).await.expect("stream");
        (nats, stream, Publisher::new(client, "/test/hub"))
    }

    fn consecutive(seen: &[u64]) -> bool {
        seen.windows(2).all(|w| w[1] == w[0] + 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_watchers_share_one_consumer_and_a_laggard_resyncs_without_loss() {
        let (_nats, stream, publisher) = stream().await;

        let mut all = watch(&stream, &[], "").await;
        let mut writer = watch(&stream, &["slipway.build.>"], "writer").await;
        let mut laggard = watch(&stream, &["slipway.build.started.>"], "").await;
        let consumers = watch_consumers(&stream).await;
        assert_eq!(consumers.len(), 1, "three live watchers, one consumer: {consumers:?}");
        assert!(consumers[0].starts_with("slipway-watch-hub-"), "{consumers:?}");

        // More events than the hub keeps in full batches; `all` and `writer` read along,
        // `laggard` does not.
        let total = CAPACITY * MAX_BATCH + 200;
        let everything = tokio::spawn(async move { sequences(&mut all, total).await });
        let writers = tokio::spawn(async move { sequences(&mut writer, total / 2).await });
        let published = futures::stream::iter(0..total)
            .map(|i| {
                let app = if i % 2 == 0 { "writer" } else { "reader" };
                let started = v1::BuildStarted { build_id: format!("b{i}"), app: app.into(), ..Default::default() };
                let publisher = publisher.clone();
                async move { publisher.publish(&started).await }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        assert!(published.iter().all(Result::is_ok), "published");
        let (everything, writers) = (everything.await.expect("all"), writers.await.expect("writer"));
        assert!(consecutive(&everything), "every event, in order");
        assert!(writers.windows(2).all(|w| w[1] > w[0]), "the writer's half, in order");

        // The laggard fell more than CAPACITY behind: it carries on from a consumer of its own,
        // from the event after its last, and loses nothing.
        let lagged = sequences(&mut laggard, total).await;
        assert_eq!(lagged.first(), everything.first(), "from the first event after it joined");
        assert!(consecutive(&lagged), "nothing lost in the resync");
        let consumers = watch_consumers(&stream).await;
        assert!(consumers.iter().any(|n| !n.starts_with("slipway-watch-hub-")), "resynced: {consumers:?}");

        drop(laggard);
        for _ in 0..100 {
            if watch_consumers(&stream).await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(watch_consumers(&stream).await.is_empty(), "consumers outlived their watchers");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_live_watches_waiting_or_holding_a_batch() {
        let (_nats, stream, publisher) = stream().await;
        let shutdown = CancellationToken::new();
        let live = || async {
            let filter = Filter::from_request(&v1::WatchRequest::default()).expect("filter");
            open::<v1::Event>(&stream, filter, shutdown.clone()).await.expect("open")
        };
        let (mut holding, mut waiting) = (live().await, live().await);
        for i in 0..3 {
            let started = v1::BuildStarted { build_id: format!("b{i}"), app: "writer".into(), ..Default::default() };
            publisher.publish(&started).await.expect("publish");
        }
        assert_eq!(sequences(&mut holding, 1).await.len(), 1);
        assert_eq!(sequences(&mut waiting, 3).await.len(), 3);
        shutdown.cancel();
        for (events, what) in [(&mut holding, "holding a batch"), (&mut waiting, "waiting for a batch")] {
            let next = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("ends in time");
            assert!(next.is_none(), "a live watch {what} ends on shutdown: {next:?}");
        }
    }
}
