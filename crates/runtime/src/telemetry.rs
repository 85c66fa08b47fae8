//! Logs and traces: one `tracing` subscriber per process, bridged to OpenTelemetry.
//!
//! [`init`] installs JSON (or pretty) logs, each JSON line with the `trace_id` and `span_id` of
//! its span, filtered by `telemetry.filter`/`RUST_LOG`, and a
//! `tracing-opentelemetry` layer over an SDK tracer provider, so every `tracing` span has a
//! W3C trace id. When `telemetry.otlp_endpoint` is set, spans are also batched to a collector
//! over OTLP/gRPC. The trace context crosses process boundaries through NATS headers and gRPC
//! metadata ([`inject_nats`], [`extract_nats`], [`inject_grpc`], [`extract_grpc`]), so a trace
//! runs from webhook to production. [`capture_spans`] records spans in memory for tests.

mod capture;
mod json;
mod propagation;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt};

use crate::config::{LogFormat, TelemetryConfig};
use crate::{Error, Result};

pub use capture::{SpanCapture, capture_spans};
pub use opentelemetry_sdk::trace::SpanData;
pub use propagation::{
    context_of, current_traceparent, extract_grpc, extract_nats, inject_grpc, inject_nats, set_parent, trace_id_of,
};

/// Keeps the tracer provider alive; shutting it down exports the spans still queued.
///
/// Call [`TelemetryGuard::shutdown`] last, after the service has drained, so the spans of the
/// drain itself are exported. Dropping the guard does the same on a best-effort basis.
#[must_use = "dropping the guard shuts tracing export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    // Declared after `provider`: it must outlive the final export.
    _export: Option<ExportRuntime>,
}

impl TelemetryGuard {
    /// Flushes queued spans to the collector (waiting up to 5 s) and stops the exporter.
    pub fn shutdown(mut self) -> Result<()> {
        match self.provider.take() {
            Some(provider) => {
                provider.shutdown().map_err(|e| Error::Telemetry(format!("shutting down the tracer provider: {e}")))
            }
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nothing to report to at this point; the process is going away.
            let _ = provider.shutdown();
        }
    }
}

/// A small runtime of its own for the OTLP gRPC channel.
///
/// The batch processor exports from its own thread by blocking on the exporter's future; if
/// the channel lived on the service's runtime, that would stall whenever the service's
/// runtime is busy or blocked, e.g. in `shutdown()` called from a current-thread runtime.
/// With its own runtime, export works wherever `init` and `shutdown` are called from.
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| Error::Telemetry(format!("starting the OTLP export runtime: {e}")))?;
        Ok(Self(Some(runtime)))
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        // A plain drop would panic when it happens inside the service's async context.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Installs logging and tracing for the process.
///
/// `service` is the default `service.name` and the instrumentation scope. A second call in
/// the same process returns [`Error::Telemetry`] and changes nothing.
pub fn init(cfg: &TelemetryConfig, service: &'static str) -> Result<TelemetryGuard> {
    let filter = env_filter(&cfg.filter)?;
    let (provider, export) = tracer_provider(cfg, service)?;
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let slot = json::DispatchSlot::default();
    let (json, pretty) = match cfg.log_format {
        LogFormat::Json => (Some(json::layer(slot.clone(), std::io::stdout)), None),
        LogFormat::Pretty => (None, Some(fmt::layer().pretty())),
    };
    let installed = Registry::default().with(filter).with(slot).with(json).with(pretty).with(otel).try_init();
    if let Err(e) = installed {
        let _ = provider.shutdown();
        return Err(Error::Telemetry(format!("already initialised: {e}")));
    }
    global::set_text_map_propagator(TraceContextPropagator::new());
    // Also global, for libraries that trace through the `opentelemetry` API directly.
    global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard { provider: Some(provider), _export: export })
}

/// `RUST_LOG` wins over the configured filter so a developer can turn up one module locally
/// without editing config.
fn env_filter(configured: &str) -> Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| Error::Telemetry(format!("RUST_LOG: {e}")))
        }
        _ => EnvFilter::try_new(configured).map_err(|e| Error::Telemetry(format!("telemetry.filter: {e}"))),
    }
}

/// An SDK provider even without export: spans then still get trace ids that propagate, which
/// is what keeps a trace connected through a service that does not export.
fn tracer_provider(cfg: &TelemetryConfig, service: &'static str) -> Result<(SdkTracerProvider, Option<ExportRuntime>)> {
    let service_name = cfg.service_name.clone().unwrap_or_else(|| service.to_owned());
    let resource = Resource::builder().with_service_name(service_name).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &cfg.otlp_endpoint else {
        return Ok((builder.build(), None));
    };
    let export = ExportRuntime::new()?;
    let exporter = {
        // The channel spawns its worker on the runtime current at construction.
        let _entered = export.0.as_ref().map(tokio::runtime::Runtime::enter);
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| Error::Telemetry(format!("telemetry.otlp_endpoint: {e}")))?
    };
    Ok((builder.with_batch_exporter(exporter).build(), Some(export)))
}
