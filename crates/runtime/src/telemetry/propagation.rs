//! W3C trace context (`traceparent`, `tracestate`) in NATS headers and gRPC metadata.
//!
//! The sender injects the context of its current `tracing` span; the receiver extracts it and
//! makes it the parent of its handler span with [`set_parent`] before entering that span.
//! The global propagator (installed by `init` and `capture_spans`) decides the format.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes the current span's trace context into NATS message headers.
pub fn inject_nats(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut NatsInjector(headers)));
}

/// Reads a trace context from NATS message headers (empty when there is none).
pub fn extract_nats(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&NatsExtractor(headers)))
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_grpc(meta: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut GrpcInjector(meta)));
}

/// Reads a trace context from incoming gRPC metadata (empty when there is none).
pub fn extract_grpc(meta: &MetadataMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&GrpcExtractor(meta)))
}

/// Makes `cx` the parent of `span`. Call it before the span is first entered: once started,
/// an OpenTelemetry span's parent is fixed and the call is ignored.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if let Err(e) = span.set_parent(cx) {
        // Normal when telemetry is not initialised (e.g. a unit test without a subscriber).
        tracing::debug!(error = %e, "trace context not attached to span");
    }
}

/// The W3C `traceparent` value of the current span, for places that are neither NATS nor gRPC
/// (the CloudEvents envelope, outbox rows). `None` when the span is not sampled or has no
/// valid context.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() || !sc.is_sampled() {
        return None;
    }
    Some(format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The context a W3C `traceparent` names (stored with a row, say), to parent a span on with
/// [`set_parent`]; empty when it is not a valid one.
pub fn context_of(traceparent: &str) -> Context {
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    global::get_text_map_propagator(|p| p.extract(&carrier))
}

/// The trace id (32 lowercase hex digits) of a W3C `traceparent` (`00-<trace>-<span>-<flags>`),
/// when it has a valid one.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_owned())
}

/// Injector over NATS headers. Keys or values NATS cannot carry are skipped rather than
/// panicking (async-nats panics on invalid names passed as `&str`).
struct NatsInjector<'a>(&'a mut HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct NatsExtractor<'a>(&'a HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let name = HeaderName::from_str(key).ok()?;
        self.0.get(name).map(HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct GrpcInjector<'a>(&'a mut MetadataMap);

impl Injector for GrpcInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let key = MetadataKey::from_bytes(key.as_bytes());
        let value = MetadataValue::try_from(value.as_str());
        if let (Ok(key), Ok(value)) = (key, value) {
            self.0.insert(key, value);
        }
    }
}

struct GrpcExtractor<'a>(&'a MetadataMap);

impl Extractor for GrpcExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|key| match key {
                KeyRef::Ascii(k) => k.as_str(),
                KeyRef::Binary(k) => k.as_str(),
            })
            .collect()
    }
}
