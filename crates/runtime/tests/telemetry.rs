//! Trace context crosses NATS headers and gRPC metadata: the receiving span joins the sender's
//! trace as its child. Asserted on the spans the SDK exports, captured in memory.

use anyhow::{Context as _, Result, ensure};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use slipway_runtime::config::TelemetryConfig;
use slipway_runtime::telemetry::{self, SpanCapture, SpanData};
use tokio::sync::mpsc;

/// The one finished span called `name`.
fn span(capture: &SpanCapture, name: &str) -> Result<SpanData> {
    let mut spans = capture.spans_named(name);
    ensure!(spans.len() == 1, "expected one {name:?} span, got {}", spans.len());
    spans.pop().context("no span")
}

/// Asserts that `child` was parented, across a process boundary, on `parent`.
fn assert_remote_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(child.span_context.trace_id(), parent.span_context.trace_id(), "same trace");
    assert_eq!(child.parent_span_id, parent.span_context.span_id());
    assert!(child.parent_span_is_remote);
}

#[tokio::test]
async fn nats_headers_carry_the_trace_to_the_consumer() -> Result<()> {
    let capture = telemetry::capture_spans();
    let mut headers = async_nats::HeaderMap::new();
    let traceparent = tracing::info_span!("publish").in_scope(|| {
        telemetry::inject_nats(&mut headers);
        telemetry::current_traceparent()
    });
    let traceparent = traceparent.context("a sampled span has a traceparent")?;

    let consume = tracing::info_span!("consume");
    telemetry::set_parent(&consume, telemetry::extract_nats(&headers));
    consume.in_scope(|| tracing::info!("handled"));
    drop(consume);

    let publish = span(&capture, "publish")?;
    let consume = span(&capture, "consume")?;
    assert_remote_child(&consume, &publish);

    let header = headers.get("traceparent").context("traceparent header")?;
    assert_eq!(header.as_str(), traceparent);
    let expected = format!("00-{}-{}-01", publish.span_context.trace_id(), publish.span_context.span_id());
    assert_eq!(traceparent, expected);
    Ok(())
}

#[tokio::test]
async fn grpc_metadata_carries_the_trace_to_the_server() -> Result<()> {
    let capture = telemetry::capture_spans();
    let mut meta = tonic::metadata::MetadataMap::new();
    tracing::info_span!("client_call").in_scope(|| telemetry::inject_grpc(&mut meta));

    let serve = tracing::info_span!("server_handle");
    telemetry::set_parent(&serve, telemetry::extract_grpc(&meta));
    serve.in_scope(|| {});
    drop(serve);

    let client = span(&capture, "client_call")?;
    let server = span(&capture, "server_handle")?;
    assert_remote_child(&server, &client);

    let header = meta.get("traceparent").context("traceparent metadata")?;
    let trace_id = client.span_context.trace_id().to_string();
    assert!(header.to_str()?.contains(&trace_id));
    Ok(())
}

#[tokio::test]
async fn without_incoming_context_the_consumer_starts_a_new_trace() -> Result<()> {
    let capture = telemetry::capture_spans();
    let headers = async_nats::HeaderMap::new();
    let cx = telemetry::extract_nats(&headers);
    assert!(!cx.span().span_context().is_valid());

    let consume = tracing::info_span!("consume");
    telemetry::set_parent(&consume, cx);
    consume.in_scope(|| {});
    drop(consume);

    let consume = span(&capture, "consume")?;
    assert!(consume.span_context.is_valid());
    assert_eq!(consume.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    Ok(())
}

#[test]
fn no_traceparent_outside_a_span() {
    let _capture = telemetry::capture_spans();
    assert_eq!(telemetry::current_traceparent(), None);
}

/// Stands in for an OpenTelemetry collector: forwards every export request to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Service names and span names of everything the collector received.
fn received(rx: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while let Ok(request) = rx.try_recv() {
        for resource_spans in request.resource_spans {
            let attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attributes
                .into_iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value)
                .and_then(|v| match v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                seen.extend(scope.spans.into_iter().map(|span| (service.clone(), span.name)));
            }
        }
    }
    seen
}

/// `init` installs the process-wide subscriber and exports over OTLP/gRPC; it works once per
/// process, and a second call is an error rather than a panic. The filter admits only this
/// test's target so other tests' spans and logs stay out.
#[tokio::test]
async fn init_exports_over_otlp_and_works_once() -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let collector = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let cfg = TelemetryConfig {
        filter: "off,slipway_otlp_test=info".to_owned(),
        otlp_endpoint: Some(endpoint),
        service_name: Some("otlp-test".to_owned()),
        ..TelemetryConfig::default()
    };
    let guard = telemetry::init(&cfg, "telemetry-test")?;
    let second = telemetry::init(&cfg, "telemetry-test");
    assert!(matches!(second, Err(slipway_runtime::Error::Telemetry(_))));

    tracing::info_span!(target: "slipway_otlp_test", "exported").in_scope(|| {});
    // Shutdown blocks until the export is answered; the collector runs on this thread.
    tokio::task::spawn_blocking(move || guard.shutdown()).await??;
    collector.abort();

    let seen = received(&mut rx);
    assert!(seen.contains(&("otlp-test".to_owned(), "exported".to_owned())), "{seen:?}");
    Ok(())
}

#[test]
fn a_traceparent_names_its_trace() {
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(telemetry::trace_id_of(tp).as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(telemetry::trace_id_of("00-00000000000000000000000000000000-b7ad6b7169203331-01"), None);
    assert_eq!(telemetry::trace_id_of("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"), None);
    assert_eq!(telemetry::trace_id_of("garbage"), None);
    assert_eq!(telemetry::trace_id_of(""), None);
}
