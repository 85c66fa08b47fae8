//! Attacks on the admin gRPC API of a promoter booted with `run()` against real NATS,
//! PostgreSQL and a git daemon: every RPC without a token, with a malformed or wrong one, with a
//! role below what it needs, and with app, stage, tag and id values that try path traversal,
//! subject injection or newlines. Each must get its precise code, and none may change anything:
//! no event, no promotion, no GitOps commit, no hold. A valid call at the end shows they could.

mod common;

use common::api::{self, Client, connect};
use common::running::Running;
use common::writer::{self, IMAGE};
use common::{remote_head, seed_repo, stage_files};

use slipway_mesh::v1;
use slipway_promoter::config::{AdminApiConfig, Role};
use slipway_promoter::{Config, grpc::hash_token};
use slipway_testkit::{GitDaemon, NatsServer};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// (token, name, role) of the configured tokens.
const TOKENS: [(&str, &str, Role); 4] = [
    ("viewer-token", "vera", Role::Viewer),
    ("approver-token", "bob", Role::Approver),
    ("operator-token", "olga", Role::Operator),
    ("admin-token", "ada", Role::Admin),
];

fn config(nats: &NatsServer, db: &str, gitops: &str, work: &std::path::Path) -> Config {
    let stages = [
        serde_json::json!({ "name": "dev", "policy": "auto" }),
        serde_json::json!({ "name": "prod", "policy": "approval", "approvers": ["bob"] }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    // The pipeline's own policy lets olga act anywhere; the API's roles still apply.
    config.pipeline.admins = vec!["olga".into()];
    // No `listen`: the test binds the API to port 0 (`Running::start`).
    config.admin_api = AdminApiConfig { listen: None, tokens: writer::tokens(&TOKENS), tls: None };
    config
}

fn as_role(channel: &Channel, role: Role) -> Client {
    let token = TOKENS.iter().find(|t| t.2 == role).expect("token").0;
    api::bearer(channel, token)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    ListApps,
    ListRuns,
    GetRun,
    Watch,
    Approve,
    Reject,
    Hold,
    Release,
    Promote,
    Rollback,
}

const ALL: [Rpc; 10] = [
    Rpc::ListApps,
    Rpc::ListRuns,
    Rpc::GetRun,
    Rpc::Watch,
    Rpc::Approve,
    Rpc::Reject,
    Rpc::Hold,
    Rpc::Release,
    Rpc::Promote,
    Rpc::Rollback,
];

/// What a call names; each RPC takes the fields it has.
#[derive(Debug, Clone)]
struct Args {
    app: String,
    stage: String,
    tag: String,
    id: String,
    text: String,
    page_token: String,
}

impl Default for Args {
    fn default() -> Self {
        let s = |s: &str| s.to_owned();
        Args {
            app: s("writer"),
            stage: s("dev"),
            tag: s("v1"),
            id: s("p-1"),
            text: s("why"),
            page_token: String::new(),
        }
    }
}

async fn call(api: &mut Client, rpc: Rpc, a: Args) -> Result<(), Status> {
    let Args { app, stage, tag, id, text, page_token } = a;
    match rpc {
        Rpc::ListApps => api.list_apps(v1::ListAppsRequest { app, ..Default::default() }).await.map(drop),
        Rpc::ListRuns => api.list_runs(v1::ListRunsRequest { app, limit: 5, page_token }).await.map(drop),
        Rpc::GetRun => api.get_run(v1::GetRunRequest { run_id: id }).await.map(drop),
        Rpc::Watch => api.watch(v1::WatchRequest { app, stage, ..Default::default() }).await.map(drop),
        Rpc::Approve => api.approve(v1::ApproveRequest { app, stage, promotion_id: id, comment: text }).await.map(drop),
        Rpc::Reject => api.reject(v1::RejectRequest { app, stage, promotion_id: id, reason: text }).await.map(drop),
        Rpc::Hold => api.hold(v1::HoldRequest { app, stage, reason: text }).await.map(drop),
        Rpc::Release => api.release(v1::ReleaseRequest { app, stage, reason: text }).await.map(drop),
        Rpc::Promote => {
            let request =
                v1::PromoteRequest { app, stage, tag, reason: text, override_freeze: false, override_scan: false };
            api.promote(request).await.map(drop)
        }
        Rpc::Rollback => api.rollback(v1::RollbackRequest { app, stage, tag, reason: text }).await.map(drop),
    }
}

/// The code `rpc` with `args` gets; `OK` when it succeeds.
async fn code(api: &mut Client, rpc: Rpc, args: Args) -> Code {
    call(api, rpc, args).await.err().map_or(Code::Ok, |s| s.code())
}

async fn no_or_bad_credentials(channel: &Channel) {
    let valid = TOKENS[3].0;
    let malformed = [
        "".to_owned(),
        "Bearer".into(),
        "Bearer ".into(),
        valid.to_owned(),
        format!("Token {valid}"),
        format!("Basic {valid}"),
        format!("Bearer:{valid}"),
        format!("Bearer\t{valid}"),
        format!("Bearer {valid} {valid}"),
        format!("Bearer {valid}x"),
        format!("Bearer x{valid}"),
        format!("Bearer {}", valid.to_uppercase()),
        format!("Bearer {}", hash_token(valid)),
        format!("Bearer {}", hash_token(valid).to_uppercase()),
        "Bearer nope".into(),
        format!("Bearer {}", "a".repeat(4096)),
    ];
    for rpc in ALL {
        let status = call(&mut api::client(channel, None), rpc, Args::default()).await.expect_err("no token");
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc:?} without a token: {status:?}");
        for auth in &malformed {
            let status = call(&mut api::client(channel, Some(auth)), rpc, Args::default()).await.expect_err(auth);
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc:?} with {auth:?}: {status:?}");
            assert!(!status.message().contains(valid), "the token is echoed: {status:?}");
        }
    }
    // The same admin token, well-formed, is let in (the scheme in any case).
    assert_eq!(
        code(&mut api::client(channel, Some(&format!("bearer {valid}"))), Rpc::ListApps, Args::default()).await,
        Code::Ok
    );
}

async fn roles_are_enforced(channel: &Channel) {
    let below = [
        (Role::Viewer, [Rpc::Approve, Rpc::Reject, Rpc::Hold, Rpc::Release, Rpc::Promote, Rpc::Rollback].as_slice()),
        (Role::Approver, [Rpc::Hold, Rpc::Release, Rpc::Promote, Rpc::Rollback].as_slice()),
    ];
    for (role, rpcs) in below {
        for rpc in rpcs {
            let status = call(&mut as_role(channel, role), *rpc, Args::default()).await.expect_err("below its role");
            assert_eq!(status.code(), Code::PermissionDenied, "{role:?} calling {rpc:?}: {status:?}");
        }
    }
    let overriding = v1::PromoteRequest {
        app: "writer".into(),
        stage: "dev".into(),
        tag: "v1".into(),
        override_freeze: true,
        ..Default::default()
    };
    let status = as_role(channel, Role::Operator).promote(overriding).await.expect_err("override is admin only");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for rpc in [Rpc::ListApps, Rpc::ListRuns, Rpc::Watch] {
        assert_eq!(code(&mut as_role(channel, Role::Viewer), rpc, Args::default()).await, Code::Ok, "{rpc:?}");
    }
}

/// App and stage names that try path traversal, subject injection, control characters or the
/// grammar's edges.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../writer",
        "writer/..",
        "..",
        "writer/x",
        "/writer",
        "writer.dev",
        "writer*",
        "writer>",
        "*",
        ">",
        "writer dev",
        "writer\0",
        "writer\n",
        "writer\r\nx",
        "Writer",
        "-writer",
        "writer-",
        "wr\u{131}ter",
        "$JS.API.>",
    ]
    .map(String::from)
    .to_vec();
    names.push("w".repeat(64));
    names
}

async fn hostile_values_are_invalid_arguments(channel: &Channel) {
    let mut admin = as_role(channel, Role::Admin);
    for name in hostile_names() {
        for rpc in ALL.into_iter().filter(|r| *r != Rpc::GetRun) {
            let args = Args { app: name.clone(), ..Args::default() };
            assert_eq!(code(&mut admin, rpc, args).await, Code::InvalidArgument, "{rpc:?} app {name:?}");
        }
        for rpc in ALL.into_iter().filter(|r| ![Rpc::GetRun, Rpc::ListApps, Rpc::ListRuns].contains(r)) {
            let args = Args { stage: name.clone(), ..Args::default() };
            assert_eq!(code(&mut admin, rpc, args).await, Code::InvalidArgument, "{rpc:?} stage {name:?}");
        }
    }
    let tags = ["v1.2.3\n", "v1\nlatest", "v1\r", "v1\0", "a/b", "../v1", ".v1", "-v1", "v1:latest", "v1 x", "v1*"];
    for tag in tags.map(String::from).into_iter().chain([format!("v{}", "1".repeat(128))]) {
        for rpc in [Rpc::Promote, Rpc::Rollback] {
            let args = Args { tag: tag.clone(), ..Args::default() };
            assert_eq!(code(&mut admin, rpc, args).await, Code::InvalidArgument, "{rpc:?} tag {tag:?}");
        }
    }
    for id in ["../p-1", "p/1", "p 1", "p\n1", "p>1", "p*"].map(String::from).into_iter().chain(["p".repeat(129)]) {
        for rpc in [Rpc::GetRun, Rpc::Approve, Rpc::Reject] {
            let args = Args { id: id.clone(), ..Args::default() };
            assert_eq!(code(&mut admin, rpc, args).await, Code::InvalidArgument, "{rpc:?} id {id:?}");
        }
    }
    assert_eq!(
        code(&mut admin, Rpc::GetRun, Args { id: String::new(), ..Args::default() }).await,
        Code::InvalidArgument
    );
    for page_token in ["-1", "-9223372036854775808", "1; DROP TABLE runs", "abc", "1e3"] {
        let args = Args { page_token: page_token.to_owned(), ..Args::default() };
        assert_eq!(code(&mut admin, Rpc::ListRuns, args).await, Code::InvalidArgument, "page_token {page_token:?}");
    }
    let long = Args { text: "x".repeat(2001), ..Args::default() };
    assert_eq!(code(&mut admin, Rpc::Hold, long).await, Code::InvalidArgument, "an over-long reason");
    for subject in ["$JS.API.>", "_INBOX.>", "slipway.>.x", "slipway.source push", "slipway.\n>", ""] {
        let watch = v1::WatchRequest { subjects: vec![subject.to_owned()], ..Default::default() };
        let status = admin.watch(watch).await.expect_err(subject);
        assert_eq!(status.code(), Code::InvalidArgument, "watch subject {subject:?}: {status:?}");
    }
}

async fn stream_messages(nats: &NatsServer) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    js.get_stream("SLIPWAY").await.expect("stream").info().await.expect("info").state.messages
}

async fn held(channel: &Channel) -> Vec<String> {
    let apps = as_role(channel, Role::Viewer).list_apps(v1::ListAppsRequest::default()).await.expect("apps");
    apps.into_inner().apps.iter().flat_map(|a| a.stages.iter().filter(|s| s.held).map(|s| s.stage.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_bad_credentials_roles_and_names_and_changes_nothing() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "prod"], text));
    let head = remote_head(&daemon, "acme/gitops", "main");
    let work = tempfile::tempdir().expect("work dir");
    let config = config(&nats, &db, &gitops, work.path());
    let service = Running::start(&config, "/slipway/test/security").await;
    let channel = connect(service.api).await;

    no_or_bad_credentials(&channel).await;
    roles_are_enforced(&channel).await;
    hostile_values_are_invalid_arguments(&channel).await;

    assert_eq!(stream_messages(&nats).await, 0, "a refused call published an event");
    let promotions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM promotions").fetch_one(&service.pool).await.expect("count promotions");
    assert_eq!(promotions, 0, "a refused call made a promotion");
    assert_eq!(remote_head(&daemon, "acme/gitops", "main"), head, "a refused call committed");
    assert!(held(&channel).await.is_empty(), "a refused hold took effect");

    // The same call, well-formed and by a token with the role, takes effect.
    let hold = Args { stage: "dev".into(), text: "change freeze".into(), ..Args::default() };
    call(&mut as_role(&channel, Role::Operator), Rpc::Hold, hold).await.expect("hold");
    assert_eq!(held(&channel).await, ["dev"]);

    service.stop().await;
}
