//! Slack's interactivity callback (signed, replay-protected) becoming chatops commands, and
//! GitHub's API getting commit statuses, deployment statuses and the chatops replies.

mod common;

use common::{Notifier, Remote, config, wait_events};
use slipway_mesh::v1;
use slipway_notifier::interactions::sign;
use slipway_testkit::NatsServer;
use std::time::Duration;

const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn click(action: &str, ts: &str) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": { "id": "U2CERLKJA", "username": "roadrunner", "name": "roadrunner" },
        "actions": [{ "action_id": action, "block_id": "slipway_approval", "action_ts": ts,
                      "value": r#"{"promotion_id":"p-1","app":"writer","stage":"prod"}"# }],
    });
    form_encode(&payload.to_string())
}

fn form_encode(payload: &str) -> String {
    let mut s = String::from("payload=");
    for b in payload.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_callbacks_are_verified_and_become_approvals() {
    let nats = NatsServer::start().await.expect("nats");
    let cfg = config(&format!("[slack]\nsigning_secret = \"{SIGNING}\"\nactors = {{ U2CERLKJA = \"alice\" }}"));
    let notifier = Notifier::start(&nats, cfg).await;
    let url = format!("{}/slack/interactions", notifier.http_url);
    let post = |body: String, ts: String, sig: String| {
        notifier
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp().to_string();
    let body = click("slipway_approve", "1700000000.000100");

    let bad = post(body.clone(), now.clone(), sign(b"wrong secret", &now, body.as_bytes())).await.expect("POST");
    assert_eq!(bad.status(), 401);
    let old = (chrono::Utc::now().timestamp() - 301).to_string();
    let stale = post(body.clone(), old.clone(), sign(SIGNING.as_bytes(), &old, body.as_bytes())).await.expect("POST");
    assert_eq!(stale.status(), 401, "a timestamp older than 5 minutes is a replay");
    let tampered = body.replace("writer", "reader");
    let r = post(tampered, now.clone(), sign(SIGNING.as_bytes(), &now, body.as_bytes())).await.expect("POST");
    assert_eq!(r.status(), 401);
    assert!(common::stream_messages(&nats).await.is_empty(), "a refused callback published something");

    let good = post(body.clone(), now.clone(), sign(SIGNING.as_bytes(), &now, body.as_bytes())).await.expect("POST");
    assert_eq!(good.status(), 200);
    // Slack retrying the same click publishes nothing new.
    let again = post(body.clone(), now.clone(), sign(SIGNING.as_bytes(), &now, body.as_bytes())).await.expect("POST");
    assert_eq!(again.status(), 200);
    let reject = click("slipway_reject", "1700000001.000100");
    let r = post(reject.clone(), now.clone(), sign(SIGNING.as_bytes(), &now, reject.as_bytes())).await.expect("POST");
    assert_eq!(r.status(), 200);

    let messages = common::stream_messages(&nats).await;
    let commands: Vec<_> = messages.iter().filter(|(_, t, _)| t == "io.slipway.chatops.command.v1").collect();
    assert_eq!(commands.len(), 2, "{messages:?}");
    let (subject, _, approve) = commands[0];
    assert_eq!(subject, "slipway.chatops.command.writer.prod");
    assert_eq!(approve["kind"], "COMMAND_KIND_APPROVE");
    assert_eq!(approve["actor"], "alice");
    assert_eq!(approve["app"], "writer");
    assert_eq!(approve["env"], "prod");
    assert_eq!(approve["channel"], "slack");
    assert_eq!(commands[1].2["kind"], "COMMAND_KIND_REJECT");
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_gets_statuses_deployments_and_chatops_replies() {
    let nats = NatsServer::start().await.expect("nats");
    let github = Remote::start().await;
    let cfg = config(&format!(
        r#"
        [[destinations]]
        name = "gh"
        provider = "github"
        url = "{}"
        token = "ghp_testtoken123456"
        repository = "acme/mono"
        [[routes]]
        destinations = ["gh"]
        "#,
        github.base
    ));
    let notifier = Notifier::start(&nats, cfg).await;
    let (_, publisher) = common::publisher(&nats).await;
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    let source = v1::SourceRef { repository: "acme/mono".into(), commit_sha: sha.into(), ..Default::default() };

    // A build: a commit status.
    publisher
        .publish(&v1::BuildSucceeded { app: "writer".into(), source: Some(source.clone()), ..Default::default() })
        .await
        .expect("publish");
    let got = github.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].path, format!("/repos/acme/mono/statuses/{sha}"));
    assert_eq!(got[0].header("authorization"), "Bearer ghp_testtoken123456");
    assert_eq!(got[0].json()["state"], "success");
    assert_eq!(got[0].json()["context"], "slipway/build/writer");

    // An unknown command on a PR: the help text.
    let mut unknown = v1::ChatopsCommand {
        actor: "octocat".into(),
        raw: "/deploy everything".into(),
        repository: "acme/mono".into(),
        pull_request: 7,
        ..Default::default()
    };
    unknown.set_kind(v1::CommandKind::Unknown);
    publisher.publish(&unknown).await.expect("publish");
    let got = github.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].path, "/repos/acme/mono/issues/7/comments");
    let help = got[1].json()["body"].as_str().unwrap_or_default().to_owned();
    assert!(help.contains("I don't know `/deploy everything`") && help.contains("/approve"), "{help}");

    // An approval that did not count: who may approve.
    let rejected = v1::ApprovalRejected {
        actor: "mallory".into(),
        app: "writer".into(),
        stage: "prod".into(),
        reason: "not-allowed".into(),
        allowed_approvers: vec!["alice".into(), "bob".into()],
        repository: "acme/mono".into(),
        pull_request: 7,
        ..Default::default()
    };
    publisher.publish(&rejected).await.expect("publish");
    let got = github.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got[2].path, "/repos/acme/mono/issues/7/comments");
    assert_eq!(got[2].json()["body"], "@mallory: not allowed for writer to prod; these people may approve: alice, bob");

    // A promotion: a deployment, then its statuses.
    github.script(vec![(201, vec![], r#"{"id": 4242, "environment": "prod"}"#.into())]);
    let requested = v1::PromotionRequested {
        promotion_id: "p-1".into(),
        app: "writer".into(),
        stage: "prod".into(),
        source: Some(source),
        ..Default::default()
    };
    publisher.publish(&requested).await.expect("publish");
    github.wait_for(4, Duration::from_secs(20)).await;
    // Wait for the deployment to be remembered before its status event.
    wait_events(&nats, "io.slipway.notification.sent.v1", 4, Duration::from_secs(20)).await;
    let healthy =
        v1::PromotionHealthy { promotion_id: "p-1".into(), app: "writer".into(), stage: "prod".into(), image: None };
    publisher.publish(&healthy).await.expect("publish");
    let got = github.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(got[3].path, "/repos/acme/mono/deployments");
    assert_eq!(got[3].json()["ref"], sha);
    assert_eq!(got[3].json()["environment"], "prod");
    assert_eq!(got[4].path, "/repos/acme/mono/deployments/4242/statuses");
    assert_eq!(got[4].json()["state"], "success");

    // A hold says nothing to GitHub.
    publisher
        .publish(&v1::HoldPlaced {
            app: "writer".into(),
            stage: "prod".into(),
            actor: "bob".into(),
            reason: "x".into(),
        })
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(github.requests().len(), 5);
    notifier.stop().await;
}
