//! One change, one trace: the four services export their spans over OTLP/gRPC to a collector
//! in this test (a tonic server of `opentelemetry.proto.collector.trace.v1.TraceService`, the
//! real protocol); one signed push webhook then goes through the build, a promotion per stage
//! (dev and staging automatic, prod approved through the admin API), their GitOps commits and
//! the notifications. Every span of the change must carry the webhook span's trace id, come
//! from all four services, and hang from the webhook span by intact parent links; the prod
//! promotion, which the approval caused, continues the run's trace and links to the approval's.
//! The run shows the same trace id, and each service's JSON log lines about it carry it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use slipway_e2e::admin::{client, connect};
use slipway_e2e::demo::{APP, WEBHOOK_SECRET};
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, binaries};
use slipway_proto::v1;

/// Bound on the build and the three commits.
const FLOW_TIMEOUT: Duration = Duration::from_secs(180);
const SERVICES: [&str; 4] = ["slipway-ingest", "slipway-builder", "slipway-promoter", "slipway-notifier"];

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_id: String,
    /// Spans of other traces it links to.
    links: usize,
}

/// Stands in for an OpenTelemetry collector: keeps every span of every export request.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

impl Collector {
    /// Serves OTLP/gRPC on a loopback port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("collector address"));
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        endpoint
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for resource_spans in request.into_inner().resource_spans {
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
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_id: hex(&span.parent_span_id),
                    links: span.links.len(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The demo's services exporting to `collector`, with staging automatic and notifications
/// to `receiver`.
async fn start(collector: &Collector, receiver: &Receiver) -> (Demo, slipway_e2e::Services) {
    let endpoint = collector.start().await;
    let demo = Demo::start(Database::Shared).await;
    demo.auto_stage("staging");
    demo.write_configs(&receiver.notifier_config());
    let overrides = Overrides {
        all: &[
            ("SLIPWAY_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            // Export often; SIGTERM flushes the rest.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("SLIPWAY_NATS__ACK_WAIT_SECS", "10"),
        ],
        builder: &[],
    };
    let services = demo.start_services(binaries!(), overrides).await;
    (demo, services)
}

/// A push of the demo app's commit adding (the quickstart's) or changing `files`.
async fn push(demo: &Demo, services: &slipway_e2e::Services, added: &[&str], modified: &[&str]) {
    let zero = "0".repeat(40);
    let push = Push::new(&demo.app_url, &zero, &demo.app_sha, "feat(hello): the demo app", added, modified);
    let status = webhook::send(&webhook::client(), &demo.webhook_url, WEBHOOK_SECRET, &push).await;
    assert!(matches!(status, Ok(200..=299)), "ingest refused the webhook: {status:?}\n{}", services.tails(30));
}

/// The spans of the one webhook's trace, asserted to form one tree under the webhook span:
/// every span's parent is a span of the trace, and every span leads up to the webhook's.
fn webhook_trace(spans: &[Span]) -> (&Span, Vec<&Span>) {
    let webhooks: Vec<&Span> = spans.iter().filter(|s| s.name == "github_delivery").collect();
    assert_eq!(webhooks.len(), 1, "one webhook span: {webhooks:#?}");
    let root = webhooks[0];
    assert_eq!(root.service, "slipway-ingest");
    assert!(root.parent_id.is_empty(), "the webhook span is a root: {root:?}");
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == root.trace_id).collect();
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let orphans: Vec<&&Span> =
        trace.iter().filter(|s| s.span_id != root.span_id && !ids.contains(s.parent_id.as_str())).collect();
    assert!(orphans.is_empty(), "spans whose parent is not in the trace: {orphans:#?}");
    let parent: HashMap<&str, &str> = trace.iter().map(|s| (s.span_id.as_str(), s.parent_id.as_str())).collect();
    for span in &trace {
        let (mut at, mut hops) = (span.span_id.as_str(), 0);
        while at != root.span_id {
            at = parent.get(at).copied().unwrap_or_default();
            hops += 1;
            assert!(hops < 1000 && !at.is_empty(), "{span:?} does not lead to the webhook span");
        }
    }
    (root, trace)
}

/// How many spans of `trace` each service made.
fn per_service<'a>(trace: &[&'a Span]) -> BTreeMap<&'a str, usize> {
    trace.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.service.as_str()).or_default() += 1;
        m
    })
}

fn count(trace: &[&Span], name: &str, service: &str) -> usize {
    trace.iter().filter(|s| s.name == name && s.service == service).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_is_one_trace_across_the_four_services() {
    let collector = Collector::default();
    let receiver = Receiver::start("trace-secret").await;
    let (demo, services) = start(&collector, &receiver).await;
    push(&demo, &services, &["apps/hello/Dockerfile", "apps/hello/hello.txt"], &[]).await;

    let sha = demo.app_sha.clone();
    services.wait_until("the staging commit", FLOW_TIMEOUT, || async { demo.overlay_tag("staging") == sha }).await;
    // `slipctl approve hello prod`: a person's step, from a trace of its own.
    let channel = connect(&demo.admin_api).await;
    let approve = v1::ApproveRequest { app: APP.into(), stage: "prod".into(), ..Default::default() };
    let approved = approve_when_waiting(&services, &mut client(&channel), approve).await;
    assert_eq!(approved.granted, 1, "{approved:?}");
    services.wait_until("the prod commit", FLOW_TIMEOUT, || async { demo.overlay_tag("prod") == sha }).await;
    // Each stage's promotion.healthy is the last event of its promotion; its notification
    // is the last span of the change there.
    let healthy_notified = || async { receiver.counts().keys().filter(|id| id.ends_with(".healthy")).count() >= 3 };
    services.wait_until("the notifications of three healthy stages", FLOW_TIMEOUT, healthy_notified).await;

    let request = v1::ListRunsRequest { app: APP.into(), ..Default::default() };
    let runs = client(&channel).list_runs(request).await.expect("list runs").into_inner().runs;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run_trace = runs[0].trace_id.clone();
    // The JSON log lines of the change carry its trace id (and their span's id).
    let logged = format!("\"trace_id\":\"{run_trace}\"");
    for service in [&services.ingest, &services.builder, &services.promoter, &services.notifier] {
        let tail = service.output_tail(2000);
        assert!(tail.contains(&logged), "{}'s logs lack {logged}:\n{}", service.name, service.output_tail(20));
    }
    // A graceful stop flushes each service's queued spans to the collector.
    services.stop().await;

    let spans = collector.spans();
    let (root, trace) = webhook_trace(&spans);
    assert_eq!(run_trace, root.trace_id, "the run shows the push's trace id");
    let by_service = per_service(&trace);
    for service in SERVICES {
        assert!(by_service.contains_key(service), "no span of {service} in the trace: {by_service:?}");
    }
    // What the change consists of is all in it: a commit per stage, the notifications, and
    // no commit in another trace.
    assert_eq!(count(&trace, "gitops_commit", "slipway-promoter"), 3, "a commit per stage");
    assert!(count(&trace, "notify", "slipway-notifier") >= 3, "the notifications");
    let resumed: Vec<&&Span> = trace.iter().filter(|s| s.name == "resume_run").collect();
    assert!(!resumed.is_empty(), "the approval's decision continues the run's trace");
    assert!(resumed.iter().all(|s| s.links > 0), "and links to the approval: {resumed:#?}");
    // (Notifications of other events, the catalog's at start-up, are other traces.)
    let elsewhere: Vec<&Span> =
        spans.iter().filter(|s| s.trace_id != root.trace_id && s.name == "gitops_commit").collect();
    assert!(elsewhere.is_empty(), "commits of the change in other traces: {elsewhere:#?}");
    eprintln!("one trace {}: {} spans {by_service:?}", root.trace_id, trace.len());
}

/// A push that arrives while NATS is down is spooled and published later by the replay loop:
/// the build and the dev commit still belong to the webhook's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_push_keeps_its_trace() {
    let collector = Collector::default();
    let receiver = Receiver::start("trace-secret").await;
    let (mut demo, services) = start(&collector, &receiver).await;
    demo.nats.single().stop().await.expect("stop nats");
    // A change to hello.txt: a new Dockerfile would make ingest reload the catalog first,
    // which waits for NATS.
    push(&demo, &services, &[], &["apps/hello/hello.txt"]).await;
    demo.nats.single().restart().await.expect("restart nats");

    let sha = demo.app_sha.clone();
    services.wait_until("the dev commit", FLOW_TIMEOUT, || async { demo.overlay_tag("dev") == sha }).await;
    services.stop().await;

    let spans = collector.spans();
    let (root, trace) = webhook_trace(&spans);
    let by_service = per_service(&trace);
    // Ingest publishes straight away without a span of its own: a publish span is the replay's.
    assert!(count(&trace, "publish", "slipway-ingest") >= 1, "replayed from the spool: {by_service:?}");
    assert!(by_service.contains_key("slipway-builder"), "the build is in the webhook's trace: {by_service:?}");
    assert!(count(&trace, "gitops_commit", "slipway-promoter") >= 1, "the dev commit: {by_service:?}");
    eprintln!("spooled, one trace {}: {} spans {by_service:?}", root.trace_id, trace.len());
}

/// Approves `request` once prod waits for it.
async fn approve_when_waiting(
    services: &slipway_e2e::Services,
    api: &mut slipway_e2e::admin::Client,
    request: v1::ApproveRequest,
) -> v1::ApproveResponse {
    let deadline = tokio::time::Instant::now() + FLOW_TIMEOUT;
    loop {
        match api.approve(request.clone()).await {
            Ok(approved) => return approved.into_inner(),
            // Prod opens once staging is healthy, a moment after its commit: refused until then.
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(status) => panic!("prod never took the approval: {status}\n{}", services.tails(40)),
        }
    }
}
