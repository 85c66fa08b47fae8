//! Durable pull consumers and the loop that feeds their messages to a handler.
//!
//! Several replicas of a service bind to the same durable consumer and split its messages
//! (that is how a work queue scales out). Each message is decoded into its envelope and
//! payload, handled inside a span that continues the producer's trace, and then acked,
//! nak'ed with exponential backoff, or terminated. Delivery is at-least-once: handlers dedupe
//! by event id (see [`crate::db::inbox`]). A message that keeps failing is terminated after
//! `max_deliver` attempts instead of being retried for ever.

use crate::{Error, Result, telemetry};
use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use slipway_mesh::{Envelope, v1::event::Payload};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The durable consumer a service binds to.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, shared by all replicas of the service.
    pub durable: String,
    /// Subjects it takes, e.g. `slipway.build.requested.>`.
    pub filter_subjects: Vec<String>,
    /// Deliveries before the server gives up on a message.
    pub max_deliver: i64,
    /// How long a delivered message may stay unacked before it is redelivered.
    pub ack_wait: Duration,
    /// Messages in flight across all replicas.
    pub max_ack_pending: i64,
}

impl ConsumerSpec {
    /// A spec with the stream-wide defaults of `nats` config.
    pub fn new(durable: &str, filters: &[String], nats: &crate::config::NatsConfig) -> Self {
        Self {
            durable: durable.to_owned(),
            filter_subjects: filters.to_vec(),
            max_deliver: nats.max_deliver,
            ack_wait: Duration::from_secs(nats.ack_wait_secs),
            max_ack_pending: 1000,
        }
    }
}

/// Creates the durable consumer or updates it to `spec`.
pub async fn ensure_consumer(stream: &stream::Stream, spec: &ConsumerSpec) -> Result<PullConsumer> {
    // One filter goes in `filter_subject`: nats-server before 2.10 ignores `filter_subjects`
    // (and would deliver everything). The loop below also drops what does not match.
    let (filter_subject, filter_subjects) = match spec.filter_subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject,
        filter_subjects,
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        max_deliver: spec.max_deliver,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|e| Error::Nats(format!("consumer {}: {e}", spec.durable)))
}

/// One decoded message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// CloudEvents attributes.
    pub envelope: Envelope,
    /// The decoded payload.
    pub payload: Payload,
    /// The raw JSON body.
    pub body: Bytes,
    /// 1 on first delivery.
    pub attempt: i64,
    /// Position in the `SLIPWAY` stream.
    pub stream_sequence: u64,
}

/// What a handler decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or already done): acknowledge.
    Ack,
    /// Failed for a reason that may pass (database down, remote busy): redeliver later.
    Retry(String),
    /// Can never succeed (invalid input): terminate, never redeliver.
    Reject(String),
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Messages handled at once by this replica.
    pub concurrency: usize,
    /// Attempts before a retried message is terminated (match the consumer's `max_deliver`).
    pub max_deliver: i64,
    /// Delay of the first redelivery; doubles per attempt.
    pub backoff_base: Duration,
    /// Upper bound of the redelivery delay.
    pub backoff_max: Duration,
    /// The consumer's ack wait; a running handler reports progress at half of it.
    pub ack_wait: Duration,
}

impl LoopOptions {
    /// Options matching a consumer spec.
    pub fn for_spec(spec: &ConsumerSpec, concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            max_deliver: spec.max_deliver,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            ack_wait: spec.ack_wait,
        }
    }

    /// The nak delay after `attempt` failed deliveries.
    pub fn backoff(&self, attempt: i64) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.backoff_base.saturating_mul(2u32.saturating_pow(exp)).min(self.backoff_max)
    }
}

/// Pulls from `consumer` until `shutdown`, handling up to `concurrency` messages at once.
/// On shutdown it stops pulling, lets the messages in hand finish, then returns.
pub async fn run<F, Fut>(
    consumer: PullConsumer,
    opts: LoopOptions,
    shutdown: CancellationToken,
    handler: F,
) -> Result<()>
where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let info = &consumer.cached_info().config;
    let name: Arc<str> = info.durable_name.clone().unwrap_or_default().into();
    let mut filters = info.filter_subjects.clone();
    if !info.filter_subject.is_empty() {
        filters.push(info.filter_subject.clone());
    }
    let filters: Arc<[String]> = filters.into();
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let opts = Arc::new(opts);
    let mut tasks = JoinSet::new();
    'pull: while !shutdown.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(opts.concurrency)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "cannot pull; retrying");
                tokio::select! { () = shutdown.cancelled() => break, () = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break 'pull,
                p = permits.clone().acquire_owned() => p.map_err(|e| Error::Nats(e.to_string()))?,
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => break 'pull,
                n = messages.next() => n,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    // Missed heartbeats and reconnects surface here; the stream carries on.
                    tracing::debug!(consumer = %name, error = %e, "pull stream error");
                }
                Some(Ok(msg)) if !filters.is_empty() && !filters.iter().any(|f| subject_matches(f, &msg.subject)) => {
                    // A server that ignored the filter (before 2.10): not ours, done with it.
                    tracing::debug!(consumer = %name, subject = %msg.subject, "outside the consumer's filter");
                    if let Err(e) = msg.ack().await {
                        tracing::debug!(error = %e, "ack of a filtered message failed");
                    }
                    drop(permit);
                }
                Some(Ok(msg)) => {
                    let (handler, opts, name) = (handler.clone(), opts.clone(), name.clone());
                    tasks.spawn(async move {
                        handle_one(msg, &handler, &opts, &name).await;
                        drop(permit);
                    });
                }
            }
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!(consumer = %name, "consumer stopped");
    Ok(())
}

async fn handle_one<F, Fut>(msg: Message, handler: &F, opts: &LoopOptions, consumer: &str)
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let (attempt, stream_sequence) = match msg.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(_) => (1, 0),
    };
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        consumer,
        subject = %msg.subject,
        event.id = tracing::field::Empty,
        attempt,
    );
    if let Some(headers) = &msg.headers {
        telemetry::set_parent(&span, telemetry::extract_nats(headers));
    }
    let started = Instant::now();
    let outcome = async {
        let delivery = match decode(&msg, attempt, stream_sequence) {
            Ok(d) => d,
            Err(e) => return Outcome::Reject(e.to_string()),
        };
        tracing::Span::current().record("event.id", delivery.envelope.id.as_str());
        with_progress(&msg, opts.ack_wait, handler(delivery)).await
    }
    .instrument(span.clone())
    .await;
    let (kind, label) = match &outcome {
        Outcome::Ack => (AckKind::Ack, "ack"),
        Outcome::Retry(reason) if attempt >= opts.max_deliver => {
            span.in_scope(|| tracing::error!(reason, attempt, "giving up after the last delivery"));
            (AckKind::Term, "exhausted")
        }
        Outcome::Retry(reason) => {
            span.in_scope(|| tracing::warn!(reason, attempt, "will retry"));
            (AckKind::Nak(Some(opts.backoff(attempt))), "retry")
        }
        Outcome::Reject(reason) => {
            span.in_scope(|| tracing::error!(reason, "rejected; not redelivered"));
            (AckKind::Term, "rejected")
        }
    };
    if let Err(e) = msg.ack_with(kind).await {
        // The server will redeliver after ack_wait; the handler's inbox makes that harmless.
        span.in_scope(|| tracing::warn!(error = %e, "ack failed"));
    }
    metrics::counter!("slipway_consumed_total", "consumer" => consumer.to_owned(), "outcome" => label).increment(1);
    metrics::histogram!("slipway_handle_seconds", "consumer" => consumer.to_owned())
        .record(started.elapsed().as_secs_f64());
}

/// NATS subject matching: `*` is one token, `>` the rest (one or more tokens).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for f in filter.split('.') {
        match (f, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

fn decode(msg: &Message, attempt: i64, stream_sequence: u64) -> Result<Delivery> {
    let headers = msg.headers.as_ref().ok_or_else(|| slipway_mesh::Error::Envelope("no headers".into()))?;
    let envelope = Envelope::from_headers(headers)?;
    let payload = slipway_mesh::decode_payload(envelope.kind, &msg.payload)?;
    Ok(Delivery { envelope, payload, body: msg.payload.clone(), attempt, stream_sequence })
}

/// Runs `work`, telling the server every `ack_wait / 2` that the message is still being
/// handled, so a long handler is not redelivered to another replica while it is alive.
async fn with_progress<T>(msg: &Message, ack_wait: Duration, work: impl Future<Output = T>) -> T {
    let period = (ack_wait / 2).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "progress ack failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("slipway.build.requested.>", "slipway.build.requested.writer"));
        assert!(subject_matches("slipway.*.requested.*", "slipway.build.requested.writer"));
        assert!(!subject_matches("slipway.build.requested.>", "slipway.build.requested"));
        assert!(!subject_matches("slipway.build.requested.>", "slipway.source.push.acme"));
        assert!(!subject_matches("slipway.build.*", "slipway.build.requested.writer"));
        assert!(subject_matches("slipway.build.requested.writer", "slipway.build.requested.writer"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let opts = LoopOptions {
            concurrency: 1,
            max_deliver: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
        };
        assert_eq!(opts.backoff(1), Duration::from_millis(100));
        assert_eq!(opts.backoff(2), Duration::from_millis(200));
        assert_eq!(opts.backoff(4), Duration::from_millis(800));
        assert_eq!(opts.backoff(5), Duration::from_secs(1));
        assert_eq!(opts.backoff(1000), Duration::from_secs(1));
    }
}
