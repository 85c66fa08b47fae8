//! In-memory span capture for tests, here and in the services' integration tests.
//!
//! [`capture_spans`] installs a thread-local subscriber (so parallel tests do not see each
//! other's spans) with the same `tracing-opentelemetry` bridge as production, exporting
//! synchronously into memory. Under `#[tokio::test]` the runtime is current-thread, so the
//! test's spawned tasks run on the thread that holds the subscriber.

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, fmt};

/// Spans recorded since [`capture_spans`]; stops recording when dropped.
pub struct SpanCapture {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: DefaultGuard,
}

impl SpanCapture {
    /// All spans that have ended so far, oldest first.
    pub fn finished_spans(&self) -> Vec<SpanData> {
        // The simple processor exports on span end; flushing keeps this correct should the
        // processor ever change.
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// The ended spans with the given name.
    pub fn spans_named(&self, name: &str) -> Vec<SpanData> {
        self.finished_spans().into_iter().filter(|span| span.name == name).collect()
    }
}

/// Starts recording spans on the current thread and installs the W3C propagator globally.
///
/// Log lines are also printed (through the test harness's capture) when `RUST_LOG` is set.
pub fn capture_spans() -> SpanCapture {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("slipway-test"));
    // A per-layer filter, so that logs can be quiet while every span is still recorded.
    let logs = EnvFilter::try_from_default_env().ok().map(|filter| fmt::layer().with_test_writer().with_filter(filter));
    let subscriber = Registry::default().with(otel).with(logs);
    global::set_text_map_propagator(TraceContextPropagator::new());
    let guard = tracing::subscriber::set_default(subscriber);
    SpanCapture { exporter, provider, _guard: guard }
}
