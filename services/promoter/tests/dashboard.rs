//! The web dashboard on the admin port of a promoter booted with `run()` against real NATS,
//! PostgreSQL and a git daemon, driven in headless Chromium through ChromeDriver: the page shows
//! the apps × stages matrix, an event published after it loaded arrives in the live feed, a
//! promotion waiting in prod shows with who may approve, and clicking Approve with an approver's
//! token makes the promoter record the approval and commit to prod. A screenshot is saved under
//! the target's test temp dir. The JSON API's error answers, and the event stream's replay and
//! resumption, are checked over plain HTTP.

mod common;
mod webdriver;

use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE, healthy, wait_promotion};
use common::{remote_tag, seed_repo, stage_files};
use serde_json::{Value, json};
use slipway_promoter::Config;
use slipway_promoter::config::Role;
use slipway_testkit::{GitDaemon, NatsServer};
use webdriver::Browser;

/// (token, name, role); `bob` is prod's approver, `mallory` an approver elsewhere.
const TOKENS: [(&str, &str, Role); 3] = [
    ("viewer-token", "vera", Role::Viewer),
    ("approver-token", "bob", Role::Approver),
    ("mallory-token", "mallory", Role::Approver),
];

fn config(nats: &NatsServer, db: &str, gitops: &str, work: &std::path::Path) -> Config {
    let stages = [
        json!({ "name": "dev", "policy": "auto" }),
        json!({ "name": "prod", "policy": "approval", "approvers": ["bob"], "teams": ["sre"] }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    config.pipeline.teams = [("sre".to_owned(), vec!["alice".to_owned()])].into();
    config.admin_api.tokens = writer::tokens(&TOKENS);
    config
}

/// A promoter serving its admin port, with what the test talks to it through.
struct Service {
    _nats: NatsServer,
    daemon: GitDaemon,
    _work: tempfile::TempDir,
    promoter: Running,
    http: reqwest::Client,
}

impl Service {
    async fn start() -> Service {
        let nats = NatsServer::start().await.expect("nats");
        let daemon = GitDaemon::start().await.expect("git daemon");
        let db = slipway_testkit::shared_database().await.expect("database");
        let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
        let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "prod"], text));
        let work = tempfile::tempdir().expect("work dir");
        let config = config(&nats, &db, &gitops, work.path());
        let promoter = Running::start(&config, "/slipway/test/dashboard").await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http");
        let service = Service { _nats: nats, daemon, _work: work, promoter, http };
        service.wait_api().await;
        service
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.promoter.admin)
    }

    /// Waits until the API answers (503 until the promoter is attached).
    async fn wait_api(&self) {
        for _ in 0..300 {
            if let Ok(answer) = self.http.get(self.url("/api/status")).send().await
                && answer.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dashboard API never answered 200");
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self.http.get(self.url(path)).send().await.expect("GET");
        assert_eq!(answer.status(), 200, "GET {path}");
        answer.json().await.expect("JSON")
    }

    /// POST /api/approve with `auth` as the Authorization header; (status, JSON body).
    async fn approve(&self, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = self.http.post(self.url("/api/approve")).header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let answer = request.body(body.to_owned()).send().await.expect("POST");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.promoter.stop().await;
    }
}

/// The pending promotion of prod, once there is one.
async fn wait_pending(service: &Service) -> Value {
    for _ in 0..400 {
        let approvals = service.get("/api/approvals").await;
        if let Some(first) = approvals["approvals"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no promotion ever waited for approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_events_and_approves_in_chromium() {
    webdriver::require_chromium();
    let service = Service::start().await;
    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard")).await;

    // The matrix shows the app in its stages; the feed is connected.
    let matrix = browser.wait_text("#matrix", &["writer", "DEV", "PROD", "not deployed"]).await;
    assert!(!matrix.contains("v1"), "{matrix}");
    browser.wait_text("#conn", &["live"]).await;
    assert_eq!(browser.text("#feed").await, "", "nothing happened yet");

    // A build published now reaches the page through the live feed, with its push's trace id.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let publisher = &service.promoter.publisher;
    let (mut envelope, body) =
        slipway_mesh::prepare(publisher.source(), &writer::build("v1", &"c".repeat(40))).expect("prepare");
    envelope.traceparent = Some(format!("00-{trace}-00f067aa0ba902b7-01"));
    publisher.publish_envelope(&envelope, body.into()).await.expect("publish build");
    browser.wait_text("#feed", &["build.succeeded", "writer · v1", trace]).await;
    let dev = wait_promotion(&service.promoter.pool, "dev", "v1", "committed").await;
    browser.wait_text("#feed", &["promotion.committed"]).await;
    service.promoter.publisher.publish(&healthy("dev", &dev)).await.expect("publish healthy");

    // v1 waits in prod; the page lists it with who may approve.
    let pending = wait_pending(&service).await;
    assert_eq!((pending["app"].as_str(), pending["stage"].as_str()), (Some("writer"), Some("prod")), "{pending}");
    assert_eq!(pending["approvers"], json!(["bob"]));
    assert_eq!(pending["teams"], json!({ "sre": ["alice"] }));
    let card = browser.wait_text("#approvals", &["writer", "prod", "v1", "bob", "team sre (alice)"]).await;
    assert!(card.contains("0/1"), "{card}");
    browser.wait_text("#matrix", &["approvals 0/1"]).await;
    let shot_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser.screenshot(&shot_dir.join("dashboard-pending.png")).await;

    // An approver of another stage is refused with who may approve; nothing is recorded.
    let body = json!({ "app": "writer", "stage": "prod" }).to_string();
    let (status, answer) = service.approve(Some("Bearer mallory-token"), &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("may approve: bob"), "{answer}");

    // bob's token typed into the page, then Approve: the promoter records it and commits v1.
    browser.type_into("#token", "approver-token").await;
    browser.click("#save-token").await;
    browser.wait_text("#token-state", &["token saved"]).await;
    browser.click("button.approve[data-stage='prod']").await;
    browser.wait_text("#approve-result", &["Approved writer → prod (1/1)"]).await;
    let promotion_id = pending["promotionId"].as_str().expect("promotion id");
    let approvers: Vec<String> = sqlx::query_scalar("SELECT actor FROM approvals WHERE promotion_id = $1")
        .bind(promotion_id)
        .fetch_all(&service.promoter.pool)
        .await
        .expect("approvals");
    assert_eq!(approvers, ["bob"]);
    let prod = wait_promotion(&service.promoter.pool, "prod", "v1", "committed").await;
    assert_eq!(prod, promotion_id);
    assert_eq!(remote_tag(&service.daemon, "prod"), "v1");
    browser.wait_text("#feed", &["approval.granted", "by bob"]).await;
    browser.wait_text("#approvals", &["Nothing waits for approval."]).await;

    // Healthy in prod: the matrix and the delivery metrics follow.
    service.promoter.publisher.publish(&healthy("prod", &prod)).await.expect("publish healthy");
    let metrics = browser.wait_text("#delivery", &["writer", "1 deploy", "0 %"]).await;
    assert!(!metrics.contains("1 deploys"), "{metrics}");
    browser.wait_text("#feed", &["promotion.healthy"]).await;
    let delivery = service.get("/api/delivery?days=7").await;
    let writer = &delivery["apps"][0];
    assert_eq!((writer["stage"].as_str(), writer["deployments"].as_u64()), (Some("prod"), Some(1)), "{delivery}");
    assert!(writer["leadTimeSecs"].as_f64().is_some_and(|s| s >= 0.0), "{delivery}");
    assert_eq!(writer["changeFailureRate"].as_f64(), Some(0.0));
    browser.wait_text("tr[data-app='writer'] td[data-stage='prod']", &["v1", "healthy"]).await;
    let matrix = browser.text("#matrix").await;
    assert!(!matrix.contains("approvals 0/1"), "{matrix}");

    let shot = shot_dir.join("dashboard.png");
    browser.screenshot(&shot).await;
    println!(
        "dashboard screenshots: {} (waiting for approval), {}",
        shot_dir.join("dashboard-pending.png").display(),
        shot.display()
    );
    browser.quit().await;
    service.stop().await;
}

/// (SSE id, event type) of the first event `/api/events` sends, after `last_seen` if given.
async fn first_event(service: &Service, last_seen: Option<u64>) -> (u64, String) {
    let mut request = service.http.get(service.url("/api/events"));
    if let Some(seen) = last_seen {
        request = request.header("last-event-id", seen.to_string());
    }
    let mut answer = request.send().await.expect("GET /api/events");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    // The first event with an id: a `live` marker may come first when the events the test
    // caused were not relayed yet when the page connected.
    let mut text = String::new();
    while !text.split("\n\n").any(|block| block.contains("\nid:") || block.starts_with("id:")) {
        let chunk = answer.chunk().await.expect("read").expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    let text = text
        .split("\n\n")
        .find(|block| block.contains("\nid:") || block.starts_with("id:"))
        .expect("an event with an id")
        .to_owned();
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
        line[name.len()..].trim().to_owned()
    };
    let event: Value = serde_json::from_str(&field("data:")).expect("proto3 JSON");
    let id: u64 = field("id:").parse().expect("numeric id");
    assert_eq!(event["sequence"], json!(id.to_string()), "the id is the stream sequence");
    (id, event["type"].as_str().expect("type").to_owned())
}

/// The SSE ids `/api/events` replays before its `live` event, and that event's
/// `lastHistorySequence`.
async fn history(service: &Service, last_seen: Option<u64>) -> (Vec<u64>, u64) {
    let mut request = service.http.get(service.url("/api/events"));
    if let Some(seen) = last_seen {
        request = request.header("last-event-id", seen.to_string());
    }
    let mut answer = request.send().await.expect("GET /api/events");
    let mut text = String::new();
    while !text.contains("event: live") || !text.ends_with("\n\n") {
        let chunk = answer.chunk().await.expect("read").expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    let (before, marker) = text.split_once("event: live").expect("live");
    let ids = before.lines().filter_map(|l| l.strip_prefix("id:")).map(|id| id.trim().parse().expect("id")).collect();
    let data = marker.lines().find_map(|l| l.strip_prefix("data:")).expect("marker data");
    let data: Value = serde_json::from_str(data.trim()).expect("marker JSON");
    (ids, data["lastHistorySequence"].as_u64().expect("lastHistorySequence"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_errors_and_streams_events_over_plain_http() {
    let service = Service::start().await;
    let body = json!({ "app": "writer", "stage": "prod" }).to_string();
    for auth in [None, Some("Bearer nope"), Some("Basic YWxpY2U6eA=="), Some("Bearer ")] {
        let (status, answer) = service.approve(auth, &body).await;
        assert_eq!(status, 401, "{auth:?}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = service.approve(Some("Bearer viewer-token"), &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("approver"), "{answer}");
    let bad_names = [
        json!({ "app": "../Writer", "stage": "prod" }),
        json!({ "app": "writer", "stage": "Prod!" }),
        json!({ "app": "", "stage": "prod" }),
        json!({ "app": "writer", "stage": "prod", "promotionId": "x y" }),
    ];
    for bad in bad_names {
        let (status, answer) = service.approve(Some("Bearer approver-token"), &bad.to_string()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, answer) = service.approve(Some("Bearer approver-token"), "{not json").await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = service.approve(Some("Bearer approver-token"), &body).await;
    assert_eq!(status, 409, "nothing waits: {answer}");
    let unknown = json!({ "app": "nope", "stage": "prod" }).to_string();
    assert_eq!(service.approve(Some("Bearer approver-token"), &unknown).await.0, 404);

    // Each refusal was announced as approval.rejected: the feed replays them, and resumes
    // after the last id a reconnecting browser saw.
    assert_eq!(first_event(&service, None).await, (1, "io.slipway.approval.rejected.v1".to_owned()));
    assert_eq!(first_event(&service, Some(1)).await.0, 2);
    // History ends explicitly: the replayed ids, then `live` naming the last of them; a
    // browser that has seen everything gets `live` at once.
    let (ids, last) = history(&service, None).await;
    assert!(last >= 2 && ids == (1..=last).collect::<Vec<_>>(), "{ids:?} then live at {last}");
    assert_eq!(history(&service, Some(last)).await, (Vec::new(), last));

    for days in ["0", "366", "x"] {
        let answer = service.http.get(service.url(&format!("/api/delivery?days={days}"))).send().await.expect("GET");
        assert_eq!(answer.status(), 400, "days={days}");
    }
    let status = service.get("/api/status").await;
    assert_eq!(status["stages"], json!(["dev", "prod"]));
    assert_eq!(status["apps"][0]["app"], "writer");
    assert_eq!(service.get("/api/approvals").await, json!({ "approvals": [], "total": 0 }));
    let page = service.http.get(service.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    assert!(page.text().await.expect("text").contains("Slipway"));
    service.stop().await;
}
