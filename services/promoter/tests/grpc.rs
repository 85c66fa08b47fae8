//! The admin gRPC API of a promoter booted with `run()` against real NATS, PostgreSQL and a git
//! daemon: tokens and roles are checked, names validated, an approver's approval through gRPC
//! lands a staging commit, `ListApps` shows the versions, `Watch` replays from a sequence and
//! then follows live events, and the health and reflection services answer.

mod common;

use std::time::Duration;

use common::api::{self, Client, connect};
use common::running::Running;
use common::writer::{self, IMAGE, healthy, wait_promotion};
use common::{remote_tag, seed_repo, stage_files};

use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_promoter::config::{AdminApiConfig, Role};
use slipway_testkit::{GitDaemon, NatsServer};
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

/// (token, name, role) of the configured tokens; `bob` is also staging's approver.
const TOKENS: [(&str, &str, Role); 4] = [
    ("viewer-token", "vera", Role::Viewer),
    ("approver-token", "bob", Role::Approver),
    ("mallory-token", "mallory", Role::Approver),
    ("operator-token", "olga", Role::Operator),
];

/// A GitOps repository with a kustomization per stage; returns its URL.
fn seed_gitops(daemon: &GitDaemon) -> String {
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    seed_repo(daemon, "acme/gitops", &stage_files(&["dev", "staging"], text))
}

fn config(nats: &NatsServer, db: &str, gitops: &str, work: &std::path::Path) -> Config {
    let stages = [
        serde_json::json!({ "name": "dev", "policy": "auto" }),
        serde_json::json!({ "name": "staging", "policy": "approval", "approvers": ["bob", "mallory"] }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    // No `listen`: the test binds the API to port 0 (`Running::start`).
    config.admin_api = AdminApiConfig { listen: None, tokens: writer::tokens(&TOKENS), tls: None };
    config
}

fn as_role(channel: &Channel, name: &str) -> Client {
    let token = TOKENS.iter().find(|t| t.1 == name).expect("token").0;
    api::bearer(channel, token)
}

async fn stage_status(api: &mut Client, stage: &str) -> v1::StageStatus {
    let apps = api
        .list_apps(v1::ListAppsRequest { app: "writer".into(), ..Default::default() })
        .await
        .expect("list apps")
        .into_inner();
    apps.apps[0].stages.iter().find(|s| s.stage == stage).expect("stage").clone()
}

fn build(tag: &str) -> v1::BuildSucceeded {
    writer::build(tag, &"a".repeat(40))
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("an error").code()
}

async fn auth_and_validation(channel: &Channel) {
    let approve = || v1::ApproveRequest { app: "writer".into(), stage: "staging".into(), ..Default::default() };
    assert_eq!(code(api::client(channel, None).approve(approve()).await), Code::Unauthenticated);
    assert_eq!(
        code(api::client(channel, Some("Bearer nope")).list_apps(v1::ListAppsRequest::default()).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(api::client(channel, Some("Basic abc")).list_apps(v1::ListAppsRequest::default()).await),
        Code::Unauthenticated
    );
    let denied = as_role(channel, "vera").approve(approve()).await.expect_err("viewer approving");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let promote =
        v1::PromoteRequest { app: "writer".into(), stage: "dev".into(), override_freeze: true, ..Default::default() };
    assert_eq!(code(as_role(channel, "olga").promote(promote).await), Code::PermissionDenied, "override is admin only");
    let bad = v1::ApproveRequest { app: "../Writer".into(), stage: "staging".into(), ..Default::default() };
    let invalid = as_role(channel, "bob").approve(bad).await.expect_err("bad app name");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("app name"), "{}", invalid.message());
    let bad_tag =
        v1::PromoteRequest { app: "writer".into(), stage: "dev".into(), tag: "a/b".into(), ..Default::default() };
    assert_eq!(code(as_role(channel, "olga").promote(bad_tag).await), Code::InvalidArgument);
    let unknown =
        as_role(channel, "vera").list_apps(v1::ListAppsRequest { app: "nope".into(), ..Default::default() }).await;
    assert_eq!(code(unknown), Code::NotFound);
    let watch = v1::WatchRequest { subjects: vec!["$JS.API.>".into()], ..Default::default() };
    assert_eq!(code(as_role(channel, "vera").watch(watch).await), Code::InvalidArgument);
    let run = as_role(channel, "vera").get_run(v1::GetRunRequest { run_id: "no-such-run".into() }).await;
    assert_eq!(code(run), Code::NotFound);
}

async fn reflection_lists_the_service(channel: &Channel) {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.next().await.expect("an answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "slipway.v1.AdminService"), "{names:?}");
    assert!(names.iter().any(|n| n == "grpc.health.v1.Health"), "{names:?}");
}

async fn next(events: &mut tonic::Streaming<v1::Event>) -> v1::Event {
    let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("an event in time");
    event.expect("stream open").expect("event ok")
}

/// Names of the `Watch` consumers on the stream.
async fn watch_consumers(js: &async_nats::jetstream::Context) -> Vec<String> {
    let stream = js.get_stream("SLIPWAY").await.expect("stream");
    let names: Vec<String> = stream.consumer_names().filter_map(Result::ok).collect().await;
    names.into_iter().filter(|n| n.starts_with("slipway-watch-")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_checks_tokens_approves_through_grpc_and_watches_events() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let gitops = seed_gitops(&daemon);
    let work = tempfile::tempdir().expect("work dir");
    let config = config(&nats, &db, &gitops, work.path());
    let service = Running::start(&config, "/slipway/test/grpc").await;
    let (js, publisher, pool) = (&service.js, &service.publisher, &service.pool);
    let channel = connect(service.api).await;

    auth_and_validation(&channel).await;
    reflection_lists_the_service(&channel).await;

    // v1 reaches dev by itself and waits for an approver in staging.
    publisher.publish(&build("v1")).await.expect("publish build");
    let dev = wait_promotion(pool, "dev", "v1", "committed").await;
    publisher.publish(&healthy("dev", &dev)).await.expect("publish healthy");
    wait_promotion(pool, "dev", "v1", "healthy").await;
    let mut bob = as_role(&channel, "bob");
    let mut staging = stage_status(&mut bob, "staging").await;
    for _ in 0..100 {
        if staging.approvals_required == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        staging = stage_status(&mut bob, "staging").await;
    }
    assert_eq!((staging.approvals_required, staging.approvals_granted), (1, 0), "{staging:?}");
    assert!(staging.allowed_approvers.contains(&"bob".to_owned()), "{staging:?}");
    let dev_status = stage_status(&mut bob, "dev").await;
    assert_eq!(dev_status.desired.as_ref().expect("dev version").tag, "v1");
    assert_eq!(dev_status.health(), v1::Health::Healthy);

    // bob approves through gRPC; the staging commit lands on the remote.
    let request = v1::ApproveRequest { app: "writer".into(), stage: "staging".into(), ..Default::default() };
    let approved = bob.approve(request).await.expect("approve").into_inner();
    assert_eq!((approved.granted, approved.required), (1, 1), "{approved:?}");
    let staging_id = wait_promotion(pool, "staging", "v1", "committed").await;
    assert_eq!(staging_id, approved.promotion_id);
    assert_eq!(remote_tag(&daemon, "staging"), "v1");
    let apps = as_role(&channel, "vera").list_apps(v1::ListAppsRequest::default()).await.expect("apps").into_inner();
    assert_eq!(apps.stages, ["dev", "staging"]);
    let tags: Vec<String> =
        apps.apps[0].stages.iter().map(|s| s.desired.as_ref().map(|d| d.tag.clone()).unwrap_or_default()).collect();
    assert_eq!(tags, ["v1", "v1"]);
    let runs = as_role(&channel, "vera").list_runs(v1::ListRunsRequest::default()).await.expect("runs").into_inner();
    assert!(runs.runs[0].timeline.iter().any(|t| t.actor == "bob"), "{:?}", runs.runs[0].timeline);
    let again = v1::ApproveRequest { app: "writer".into(), stage: "staging".into(), ..Default::default() };
    let refused = as_role(&channel, "mallory").approve(again).await.expect_err("nothing waits");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Watch replays from sequence 1, then follows a live event; leaving deletes its consumer.
    // (The replay is the generic path: an event decoded, then encoded per watcher.)
    let watch = v1::WatchRequest {
        app: "writer".into(),
        start: Some(v1::watch_request::Start::FromSequence(1)),
        ..Default::default()
    };
    let mut events = as_role(&channel, "vera").watch(watch).await.expect("watch").into_inner();
    let first = events.next().await.expect("an event").expect("ok");
    assert_eq!((first.r#type.as_str(), first.sequence), ("io.slipway.build.succeeded.v1", 1), "{first:?}");
    // Both commits (dev, then staging after the approval) happened before the call.
    let (mut last, mut seen) = (first.sequence, vec![first.r#type]);
    while seen.iter().filter(|t| *t == "io.slipway.promotion.committed.v1").count() < 2 {
        let event = next(&mut events).await;
        assert!(event.sequence > last, "sequences increase");
        (last, seen) = (event.sequence, [seen, vec![event.r#type]].concat());
    }
    assert!(seen.iter().any(|t| t == "io.slipway.approval.granted.v1"), "{seen:?}");
    // A live watch (no start) gets the hub's encoded bytes: the same event, field for field.
    let live_only = v1::WatchRequest { app: "writer".into(), stage: "staging".into(), ..Default::default() };
    let mut hub_events = as_role(&channel, "vera").watch(live_only).await.expect("live watch").into_inner();
    publisher.publish(&healthy("staging", &staging_id)).await.expect("publish healthy");
    let live = loop {
        let event = next(&mut events).await;
        if event.r#type == "io.slipway.promotion.healthy.v1" && event.subject.ends_with(".staging") {
            break event;
        }
    };
    let Some(v1::event::Payload::PromotionHealthy(payload)) = &live.payload else { panic!("{live:?}") };
    assert_eq!(payload.promotion_id, staging_id);
    assert_eq!(next(&mut hub_events).await, live, "the live watch's event differs from the replayed one");
    assert_eq!(watch_consumers(js).await.len(), 2, "the replaying watch's own consumer and the hub's");
    drop((events, hub_events));
    for _ in 0..100 {
        if watch_consumers(js).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(watch_consumers(js).await.is_empty(), "the watch consumer outlived its client");

    service.stop().await;
}
