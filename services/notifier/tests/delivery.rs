//! Deliveries end to end: real NATS and PostgreSQL, fake Slack / webhook remotes that record
//! requests. Once per (event, destination) however often the event arrives; 429 waits for
//! `Retry-After`; a permanent failure ends in `notification.failed` and a dead letter that a
//! replay posts; secrets stay out of the failed event.

mod common;

use common::{Notifier, Remote, config, psql, publish_copies, wait_events};
use slipway_mesh::v1;
use slipway_notifier::providers::webhook;
use slipway_testkit::NatsServer;
use std::time::Duration;

const HOOK_TOKEN: &str = "T0001-B0002-hooksecret42";

fn approval() -> v1::ApprovalRequested {
    v1::ApprovalRequested {
        promotion_id: "p-1".into(),
        app: "writer".into(),
        stage: "prod".into(),
        required: 1,
        allowed_approvers: vec!["alice".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_three_times_posts_once_with_buttons() {
    let nats = NatsServer::start().await.expect("nats");
    let slack = Remote::start().await;
    let other = Remote::start().await;
    let cfg = config(&format!(
        r#"
        [[destinations]]
        name = "team"
        provider = "slack"
        url = "{}/services/{HOOK_TOKEN}"
        [[destinations]]
        name = "builds"
        provider = "discord"
        url = "{}/api/webhooks/1/x"
        [[routes]]
        events = ["approval.*"]
        apps = ["writer"]
        destinations = ["team"]
        [[routes]]
        events = ["build.*"]
        destinations = ["builds"]
        "#,
        slack.base, other.base
    ));
    let notifier = Notifier::start(&nats, cfg).await;
    let (client, _) = common::publisher(&nats).await;
    let id = publish_copies(&client, &approval(), 3).await;
    let sent = wait_events(&nats, "io.slipway.notification.sent.v1", 1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["eventId"], id.as_str());
    assert_eq!(sent[0]["destination"], "team");
    // Give the other two copies every chance to post again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posts = slack.requests();
    assert_eq!(posts.len(), 1, "posted more than once");
    assert_eq!(posts[0].path, format!("/services/{HOOK_TOKEN}"));
    let body = posts[0].json();
    let actions = body["blocks"].as_array().expect("blocks").iter().find(|b| b["type"] == "actions").expect("buttons");
    let ids: Vec<&str> =
        actions["elements"].as_array().expect("els").iter().filter_map(|e| e["action_id"].as_str()).collect();
    assert_eq!(ids, ["slipway_approve", "slipway_reject"]);
    assert!(body["text"].as_str().unwrap_or_default().contains("May approve: alice"), "{body}");
    // Not routed to the build channel.
    assert!(other.requests().is_empty());
    let state = psql(
        &notifier.db,
        &format!("SELECT state || ':' || attempts FROM notifier.notification_deliveries WHERE event_id = '{id}'"),
    );
    assert_eq!(state, "sent:1");
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_retry_after() {
    let nats = NatsServer::start().await.expect("nats");
    let slack = Remote::start().await;
    slack.script(vec![(429, vec![("retry-after", "1".into())], "rate_limited".into())]);
    let cfg = config(&format!(
        r#"
        retry = {{ attempts = 3, base_ms = 10, max_ms = 5000 }}
        [[destinations]]
        name = "team"
        provider = "slack"
        url = "{}/services/{HOOK_TOKEN}"
        [[routes]]
        destinations = ["team"]
        template = "{{{{ app }}}} failed: {{{{ event.message }}}}"
        "#,
        slack.base
    ));
    let notifier = Notifier::start(&nats, cfg).await;
    let (_, publisher) = common::publisher(&nats).await;
    let failed = v1::BuildFailed { app: "writer".into(), message: "exit 2".into(), ..Default::default() };
    publisher.publish(&failed).await.expect("publish");
    let posts = slack.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(posts.len(), 2);
    let gap = posts[1].at - posts[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, before Retry-After");
    assert_eq!(posts[1].body, posts[0].body, "the retry sends the same message");
    let text = posts[1].json()["blocks"][1]["text"]["text"].as_str().unwrap_or_default().to_owned();
    assert_eq!(text, "writer failed: exit 2");
    let sent = wait_events(&nats, "io.slipway.notification.sent.v1", 1, Duration::from_secs(10)).await;
    assert_eq!(sent[0]["attempts"], 2);
    let metrics = notifier.client.get(format!("{}/metrics", notifier.admin)).send().await.expect("GET");
    let metrics = metrics.text().await.expect("text");
    for name in [
        "slipway_notifier_sent_total{provider=\"slack\"}",
        "slipway_notifier_retried_total{provider=\"slack\"}",
        "slipway_notifier_request_seconds_count{provider=\"slack\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_and_a_replay_posts_it() {
    let nats = NatsServer::start().await.expect("nats");
    let hook = Remote::start().await;
    // The remote echoes the secret path back in its error, as real ones do.
    hook.default_answer((503, vec![], format!("upstream down for /hooks/{HOOK_TOKEN}")));
    let cfg = config(&format!(
        r#"
        retry = {{ attempts = 3, base_ms = 10, max_ms = 50 }}
        [[destinations]]
        name = "audit"
        provider = "webhook"
        url = "{}/hooks/{HOOK_TOKEN}"
        signing_secret = "whsec-abcdefgh"
        [[routes]]
        events = ["promotion.failed"]
        destinations = ["audit"]
        "#,
        hook.base
    ));
    let notifier = Notifier::start(&nats, cfg).await;
    let (_, publisher) = common::publisher(&nats).await;
    let event = v1::PromotionFailed {
        promotion_id: "p-9".into(),
        app: "writer".into(),
        stage: "prod".into(),
        ..Default::default()
    };
    let published = publisher.publish(&event).await.expect("publish");
    let failed = wait_events(&nats, "io.slipway.notification.failed.v1", 1, Duration::from_secs(20)).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 3);
    assert_eq!(failed[0]["destination"], "audit");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 503"), "{error}");
    assert!(!failed[0].to_string().contains(HOOK_TOKEN), "secret in notification.failed: {}", failed[0]);
    assert_eq!(hook.requests().len(), 3);

    let dlq: serde_json::Value =
        notifier.client.get(format!("{}/dlq", notifier.admin)).send().await.expect("GET").json().await.expect("json");
    let letters = dlq["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 1, "{dlq}");
    assert_eq!(letters[0]["event_id"], published.id.as_str());
    let id = letters[0]["id"].as_i64().expect("id");

    // The remote is back: the replay posts, signed.
    hook.default_answer((200, vec![], "thanks".into()));
    let r = notifier.client.post(format!("{}/dlq/{id}/replay", notifier.admin)).send().await.expect("POST");
    assert_eq!(r.status(), 200);
    let posts = hook.requests();
    assert_eq!(posts.len(), 4);
    let last = &posts[3];
    let ts: i64 = last.header(webhook::TIMESTAMP_HEADER).parse().expect("timestamp");
    assert_eq!(last.header(webhook::SIGNATURE_HEADER), webhook::sign(b"whsec-abcdefgh", ts, &last.body));
    assert_eq!(last.header(webhook::EVENT_ID_HEADER), published.id.as_str());
    assert_eq!(last.json()["data"]["promotionId"], "p-9");
    let dlq: serde_json::Value =
        notifier.client.get(format!("{}/dlq", notifier.admin)).send().await.expect("GET").json().await.expect("json");
    assert_eq!(dlq["dead_letters"].as_array().map(Vec::len), Some(0), "replayed letters leave the list");
    // A replayed letter that is replayed again does not post twice.
    let r = notifier.client.post(format!("{}/dlq/{id}/replay", notifier.admin)).send().await.expect("POST");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "sent");
    assert_eq!(hook.requests().len(), 4);
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_not_retried() {
    let nats = NatsServer::start().await.expect("nats");
    let teams = Remote::start().await;
    teams.default_answer((400, vec![], "Bad payload".into()));
    let cfg = config(&format!(
        r#"
        [[destinations]]
        name = "ops"
        provider = "teams"
        url = "{}/webhookb2/x"
        [[routes]]
        destinations = ["ops"]
        "#,
        teams.base
    ));
    let notifier = Notifier::start(&nats, cfg).await;
    let (_, publisher) = common::publisher(&nats).await;
    publisher
        .publish(&v1::HoldPlaced {
            app: "writer".into(),
            stage: "prod".into(),
            actor: "bob".into(),
            reason: "freeze".into(),
        })
        .await
        .expect("publish");
    let failed = wait_events(&nats, "io.slipway.notification.failed.v1", 1, Duration::from_secs(20)).await;
    assert_eq!(failed[0]["attempts"], 1);
    let posts = teams.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].json()["@type"], "MessageCard");
    assert_eq!(posts[0].json()["title"], "writer on hold in prod");
    notifier.stop().await;
}
