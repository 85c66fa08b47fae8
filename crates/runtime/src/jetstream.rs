//! NATS connection, the `SLIPWAY` stream, and the publisher that only returns once
//! JetStream has stored an event (its ack), with `Nats-Msg-Id` = event id so a retried
//! publish is deduplicated by the server.

use crate::config::NatsConfig;
use crate::{Error, Result, telemetry};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use slipway_mesh::{Envelope, EventId, EventPayload, STREAM_SUBJECTS};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The one stream every Slipway event lives in.
pub const STREAM_NAME: &str = "SLIPWAY";

fn nats_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Nats(format!("{context}: {e}"))
}

/// Connects to NATS: to any of the servers `nats.url` lists (comma separated), learning the
/// rest of a cluster from them. The client reconnects by itself for ever; the first connect is
/// retried too, so a service can start (not ready) while NATS is still down.
pub async fn connect(cfg: &NatsConfig, client_name: &str) -> Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(cfg.name.clone().unwrap_or_else(|| client_name.to_owned()))
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    if let Some(path) = &cfg.credentials_file {
        opts = opts.credentials_file(path).await.map_err(|e| nats_err("nats.credentials_file", e))?;
    }
    // async-nats parses a `&str` as one address; `nats.url` may list a cluster's servers.
    let servers: Vec<&str> = cfg.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    opts.connect(servers).await.map_err(|e| nats_err("connect", e))
}

/// The stream's configuration: `slipway.>`, file storage, a duplicate window of at least
/// the configured length (24 h by default), limits retention (work queues are durable
/// consumers on it, so dashboards can replay everything).
pub fn stream_config(cfg: &NatsConfig) -> stream::Config {
    stream::Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        num_replicas: cfg.stream_replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to our settings.
pub async fn ensure_stream(js: &jetstream::Context, cfg: &NatsConfig) -> Result<stream::Stream> {
    let wanted = stream_config(cfg);
    let mut stream = match js.get_or_create_stream(wanted.clone()).await {
        Ok(stream) => stream,
        // Another process made it between this one's lookup and its create (two replicas, or a
        // test and the service starting together): nats-server 2.9 then answers "subjects
        // overlap with an existing stream". It is there now.
        Err(first) => js.get_stream(STREAM_NAME).await.map_err(|_| nats_err("create stream", first))?,
    };
    let info = stream.info().await.map_err(|e| nats_err("stream info", e))?;
    let have = &info.config;
    let differs = have.subjects != wanted.subjects
        || have.duplicate_window != wanted.duplicate_window
        || have.num_replicas != wanted.num_replicas;
    if differs {
        tracing::info!(stream = STREAM_NAME, "updating stream configuration");
        let update = stream::Config { storage: have.storage, ..wanted };
        js.update_stream(update).await.map_err(|e| nats_err("update stream", e))?;
    }
    Ok(stream)
}

/// What a key-value bucket keeps.
#[derive(Debug, Clone)]
pub struct KeyValue<'a> {
    pub bucket: &'a str,
    pub description: &'a str,
    /// Values kept per key (NATS allows 64 at most).
    pub history: i64,
    /// How long values are kept; zero keeps them.
    pub max_age: Duration,
    pub replicas: usize,
}

/// Binds to a key-value bucket, creating it if missing. The stream `create_key_value` would
/// make is made directly: `create_key_value` first reads the account info, whose reply from
/// nats-server 2.9 async-nats 0.51 cannot parse.
pub async fn key_value(js: &jetstream::Context, kv: KeyValue<'_>) -> Result<jetstream::kv::Store> {
    if let Ok(store) = js.get_key_value(kv.bucket).await {
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("KV_{}", kv.bucket),
        description: Some(kv.description.to_owned()),
        subjects: vec![format!("$KV.{}.>", kv.bucket)],
        max_messages_per_subject: kv.history,
        max_age: kv.max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: kv.replicas,
        ..Default::default()
    };
    let context = format!("key-value bucket {}", kv.bucket);
    js.get_or_create_stream(config).await.map_err(|e| nats_err(&context, e))?;
    js.get_key_value(kv.bucket).await.map_err(|e| nats_err(&context, e))
}

/// Binds to the object store `config.bucket`, creating it with `config` if missing.
pub async fn object_store(
    js: &jetstream::Context,
    config: jetstream::object_store::Config,
) -> Result<jetstream::object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(&config.bucket).await {
        return Ok(store);
    }
    let context = format!("object store {}", config.bucket);
    js.create_object_store(config).await.map_err(|e| nats_err(&context, e))
}

/// What JetStream answered for one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event id (also its `Nats-Msg-Id`).
    pub id: EventId,
    /// Stream sequence of the stored message (of the first copy for a duplicate).
    pub sequence: u64,
    /// True when the server had already stored this id within its duplicate window.
    pub duplicate: bool,
}

/// Publishes events and waits for JetStream's ack.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    source: String,
}

impl Publisher {
    /// A publisher whose events carry `ce-source` = `source` (e.g. `/slipway/ingest/<host>`).
    pub fn new(client: async_nats::Client, source: impl Into<String>) -> Self {
        Self { js: jetstream::new(client.clone()), client, source: source.into() }
    }

    /// Refuses, before sending, a message the server would refuse for its size: the client
    /// would report that as a publish error indistinguishable from an outage.
    fn check_size(&self, envelope: &Envelope, headers: &async_nats::HeaderMap, body: &Bytes) -> Result<()> {
        let max = self.client.server_info().max_payload;
        if max == 0 {
            return Ok(()); // not connected yet: nothing known, the publish will wait or fail
        }
        let header_bytes: usize = headers
            .iter()
            .map(|(name, values)| {
                let name: &str = name.as_ref();
                values.iter().map(|v| name.len() + v.as_str().len() + 4).sum::<usize>()
            })
            .sum();
        let size = body.len() + header_bytes + 12; // + "NATS/1.0\r\n" and the closing CRLF
        if size > max {
            return Err(Error::TooLarge { subject: envelope.subject.clone(), size, max });
        }
        Ok(())
    }

    /// The `ce-source` of this publisher's events.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Publishes a new event with a fresh id.
    pub async fn publish<E: EventPayload>(&self, payload: &E) -> Result<Published> {
        self.publish_with_id(EventId::new(), payload).await
    }

    /// Publishes with a caller-chosen id; publishing the same id again within the duplicate
    /// window stores nothing new.
    pub async fn publish_with_id<E: EventPayload>(&self, id: EventId, payload: &E) -> Result<Published> {
        let (envelope, body) = slipway_mesh::prepare_with_id(id, &self.source, payload)?;
        self.publish_envelope(&envelope, Bytes::from(body)).await
    }

    /// Publishes several prepared events, sending all before awaiting the acks (one round
    /// trip instead of one per event). Fails if any is not stored; the caller may publish the
    /// whole batch again, since the ids dedupe.
    pub async fn publish_batch(&self, events: &[(Envelope, Bytes)]) -> Result<Vec<Published>> {
        let started = Instant::now();
        let mut pending = Vec::with_capacity(events.len());
        for (envelope, body) in events {
            let mut headers = envelope.to_headers();
            if envelope.traceparent.is_none() {
                telemetry::inject_nats(&mut headers);
            }
            self.check_size(envelope, &headers, body)?;
            let ack = self
                .js
                .publish_with_headers(envelope.subject.clone(), headers, body.clone())
                .await
                .map_err(|e| nats_err("publish", e))?;
            pending.push((envelope, ack));
        }
        let mut published = Vec::with_capacity(pending.len());
        for (envelope, ack) in pending {
            let ack = ack.await.map_err(|e| nats_err("publish ack", e))?;
            metrics::counter!("slipway_published_total", "kind" => envelope.kind.ce_type(), "duplicate" => ack.duplicate.to_string())
                .increment(1);
            published.push(Published { id: envelope.id.clone(), sequence: ack.sequence, duplicate: ack.duplicate });
        }
        metrics::histogram!("slipway_publish_batch_seconds").record(started.elapsed().as_secs_f64());
        Ok(published)
    }

    /// Publishes an already prepared event (the outbox relay and ingest's spool use this).
    ///
    /// The publish span continues the trace the envelope carries (the span that enqueued or
    /// spooled it), not the relay's or replay loop's, and the consumer then continues the
    /// publish span: one trace from the cause to the consumer. Without a trace context on the
    /// envelope, the current span is the parent.
    pub async fn publish_envelope(&self, envelope: &Envelope, body: Bytes) -> Result<Published> {
        let span = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            subject = %envelope.subject,
            event.id = %envelope.id,
            event.kind = %envelope.kind,
        );
        let mut headers = envelope.to_headers();
        if envelope.traceparent.is_some() {
            telemetry::set_parent(&span, telemetry::extract_nats(&headers));
        }
        async {
            // Replaces the envelope's traceparent (if any) with the publish span's.
            telemetry::inject_nats(&mut headers);
            self.check_size(envelope, &headers, &body)?;
            let started = Instant::now();
            let ack = self
                .js
                .publish_with_headers(envelope.subject.clone(), headers, body)
                .await
                .map_err(|e| nats_err("publish", e))?
                .await
                .map_err(|e| nats_err("publish ack", e))?;
            metrics::histogram!("slipway_publish_seconds", "kind" => envelope.kind.ce_type())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("slipway_published_total", "kind" => envelope.kind.ce_type(), "duplicate" => ack.duplicate.to_string())
                .increment(1);
            Ok(Published { id: envelope.id.clone(), sequence: ack.sequence, duplicate: ack.duplicate })
        }
        .instrument(span)
        .await
    }
}
