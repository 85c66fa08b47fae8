//! ingest end to end against real nats-server and PostgreSQL: every fixture signed and
//! tampered, redelivery, malformed and oversized bodies, and the spool while NATS is down.

mod common;

use common::{BOT_TOKEN, Ingest, SECRET, fixtures_dir, stream_messages};

use serde_json::Value;
use slipway_ingest::signature;
use slipway_testkit::NatsServer;
use std::time::Duration;

fn delivery_id(n: usize) -> String {
    format!("72d3162e-cc78-11e3-81ab-{n:012}")
}

/// A push to main touching two apps, built from the fixture's shape.
fn monorepo_push() -> Vec<u8> {
    let mut push: Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join("push/payload.json")).expect("fixture"))
            .expect("json");
    push["ref"] = "refs/heads/main".into();
    push["after"] = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into();
    // The fixture deletes a tag; this one is an ordinary push to main.
    push["deleted"] = false.into();
    let commit = |id: &str, msg: &str, files: &[&str]| {
        serde_json::json!({ "id": id, "message": msg, "added": files, "modified": [], "removed": [],
                            "author": { "name": "Codertocat", "username": "Codertocat" }, "timestamp": "2019-05-15T15:20:30-05:00" })
    };
    push["commits"] = serde_json::json!([
        commit("6113728f27ae82c7b1a177c8d03f9e96e0adf246", "feat(writer): add feed", &["apps/writer/src/feed.rs"]),
        commit(
            "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "fix(common): escape",
            &["libs/common/escape.rs", "README.md"]
        ),
    ]);
    serde_json::to_vec(&push).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monorepo_push_becomes_a_source_event_and_one_build_per_changed_app() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    let (status, body) = ingest.deliver("push", &delivery_id(1), &monorepo_push()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"], 3, "{body}");
    let messages = stream_messages(&nats).await;
    let subjects: Vec<&str> = messages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "slipway.source.push.codertocat-hello-world",
            "slipway.build.requested.reader",
            "slipway.build.requested.writer"
        ]
    );
    assert_eq!(messages[0].1["changedApps"], serde_json::json!(["reader", "writer"]));
    assert_eq!(messages[2].1["source"]["commitSha"], "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");

    // A redelivery (same X-GitHub-Delivery) publishes nothing.
    let (status, body) = ingest.deliver("push", &delivery_id(1), &monorepo_push()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(stream_messages(&nats).await.len(), 3);
    // The new delivery skipped the table (the filter said no), the redelivery did not.
    let metrics =
        ingest.http.get(format!("{}/metrics", ingest.admin)).send().await.expect("GET").text().await.expect("text");
    assert!(metrics.contains("slipway_ingest_dedupe_lookups_total{filter=\"new\"}"), "{metrics}");
    assert!(metrics.contains("slipway_ingest_dedupe_lookups_total{filter=\"maybe\"}"), "{metrics}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_accepted_signed_and_refused_tampered() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    let mut n = 100;
    let mut accepted = 0;
    for dir in std::fs::read_dir(fixtures_dir()).expect("fixtures").flatten().filter(|e| e.path().is_dir()) {
        let event = dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            let body = std::fs::read(file.path()).expect("read");
            n += 1;
            let (status, reply) = ingest.deliver(&event, &delivery_id(n), &body).await;
            assert!(status == 202 || status == 200, "{event}/{:?}: {status} {reply}", file.file_name());
            if reply["status"] == "accepted" {
                accepted += 1;
            } else {
                assert_eq!(reply["status"], "ignored", "{event}/{:?}: {reply}", file.file_name());
            }
            for at in [0, body.len() / 2, body.len() - 1] {
                let mut tampered = body.clone();
                tampered[at] ^= 0x01;
                n += 1;
                let sig = signature::sign(SECRET.as_bytes(), &body);
                let (status, _) =
                    ingest.post(&event, &delivery_id(n), &tampered, &[("x-hub-signature-256", &sig)]).await;
                assert_eq!(status, 401, "{event}/{:?} flipped at {at}", file.file_name());
            }
        }
    }
    assert!(accepted >= 10, "only {accepted} fixtures produced events");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_store_nothing() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |c| c.github.max_body_bytes = 64 * 1024).await;
    let ping = std::fs::read(fixtures_dir().join("ping/payload.json")).expect("fixture");

    let (status, body) = ingest.post("ping", &delivery_id(1), &ping, &[]).await;
    assert_eq!(status, 401, "no signature: {body}");
    let sha1_only = ingest
        .http
        .post(&ingest.url)
        .header("x-github-event", "ping")
        .header("x-github-delivery", delivery_id(2))
        .header("x-hub-signature", "sha1=0000000000000000000000000000000000000000")
        .body(ping.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(sha1_only.status().as_u16(), 401);
    let (status, _) = ingest
        .post("ping", &delivery_id(3), &ping, &[("x-hub-signature-256", &signature::sign(b"another secret", &ping))])
        .await;
    assert_eq!(status, 401, "wrong secret");

    let (status, body) = ingest.deliver("push", &delivery_id(4), b"{ not json").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or_default().contains("push"), "{body}");

    let (status, _) = ingest.deliver("push", "../../etc/passwd", &monorepo_push()).await;
    assert_eq!(status, 400, "delivery ids are validated");

    let big = vec![b' '; 100 * 1024];
    let (status, _) = ingest.deliver("push", &delivery_id(5), &big).await;
    assert_eq!(status, 413);

    let (status, body) = ingest.deliver("marketplace_purchase", &delivery_id(6), b"{}").await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));

    assert!(stream_messages(&nats).await.is_empty(), "nothing may reach the stream");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_deliveries_are_spooled_then_replayed_in_order() {
    let mut nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    let ping = std::fs::read(fixtures_dir().join("ping/payload.json")).expect("fixture");
    let (status, _) = ingest.deliver("ping", &delivery_id(1), &ping).await;
    assert_eq!(status, 202);

    nats.kill().await.expect("kill nats");
    // Ingest keeps taking webhooks without NATS: degraded, not unready.
    let mut readiness = Value::Null;
    for _ in 0..100 {
        let resp = ingest.http.get(format!("{}/readyz", ingest.admin)).send().await.expect("readyz");
        assert_eq!(resp.status().as_u16(), 200, "ingest must stay in rotation while it can spool");
        readiness = resp.json().await.expect("json");
        if readiness["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readiness["status"], "degraded", "{readiness}");
    for n in 2..=4 {
        let (status, body) = ingest.deliver("push", &delivery_id(n), &monorepo_push()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["spooled"], true, "{body}");
    }
    let spooled = spool_entries(ingest.spool.path());
    assert_eq!(spooled, 3, "one fsync'd file per delivery");

    nats.restart().await.expect("restart nats");
    wait_spool_drained(ingest.spool.path()).await;
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 1 + 3 * 3, "ping + 3 pushes × (push + 2 builds)");
    let pushes: Vec<&str> = messages
        .iter()
        .filter(|(s, _)| s.starts_with("slipway.source.push"))
        .map(|(_, b)| b["deliveryId"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(pushes, [delivery_id(2), delivery_id(3), delivery_id(4)], "replayed in order");
    ingest.stop().await;
}

/// A NATS that stops answering without closing the connection (a frozen process, a network
/// that drops packets): the client still counts itself connected, so the publish is tried, and
/// past its deadline the delivery is spooled, answered 202 well inside GitHub's 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_that_stops_answering_gets_the_delivery_spooled_in_time() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    let ping = std::fs::read(fixtures_dir().join("ping/payload.json")).expect("fixture");
    assert_eq!(ingest.deliver("ping", &delivery_id(1), &ping).await.0, 202);

    let pid = nats.pid().expect("nats pid").to_string();
    let frozen = std::process::Command::new("kill").args(["-STOP", &pid]).status().expect("kill -STOP");
    assert!(frozen.success());
    let started = std::time::Instant::now();
    let (status, body) = ingest.deliver("push", &delivery_id(2), &monorepo_push()).await;
    let took = started.elapsed();
    let thawed = std::process::Command::new("kill").args(["-CONT", &pid]).status().expect("kill -CONT");
    assert!(thawed.success());
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["spooled"], true, "{body}");
    // The publish deadline (2 s), not the client's ack timeout (5 s), decides when it is spooled.
    assert!(took < Duration::from_secs(4), "answered after {took:?}; GitHub gives up at 10 s");

    // Once NATS answers again, the spool goes out (the stream drops a copy that made it).
    wait_spool_drained(ingest.spool.path()).await;
    let messages = stream_messages(&nats).await;
    let pushes = messages.iter().filter(|(s, _)| s.starts_with("slipway.source.push")).count();
    assert_eq!(pushes, 1, "the push is in the stream once");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_commands_from_comments_and_bots_become_command_events() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;

    // A PR comment with two commands, one inside a code block (ignored) and one quoted (ignored).
    let mut comment: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("issue_comment/created.payload.json")).expect("fixture"),
    )
    .expect("json");
    comment["comment"]["body"] =
        "LGTM\n/approve writer prod\n```\n/rollback writer prod\n```\n> /hold\n/hold writer staging flaky".into();
    let body = serde_json::to_vec(&comment).expect("encode");
    let (status, reply) = ingest.deliver("issue_comment", &delivery_id(1), &body).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["events"], 2, "{reply}");

    // A chat bot: bad token, then a message with a valid and an invalid command.
    let bot = |token: &str, message: Value| {
        ingest.http.post(ingest.url.replace("/webhooks/github", "/chatops")).bearer_auth(token).json(&message).send()
    };
    let message = serde_json::json!({ "id": "slack-1700000000.000100", "actor": "octocat", "channel": "slack",
                                      "text": "/promote writer prod v1.2.3\n/promote ../etc prod" });
    assert_eq!(bot("wrong", message.clone()).await.expect("POST").status().as_u16(), 401);
    let resp = bot(BOT_TOKEN, message.clone()).await.expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    let reply: Value = resp.json().await.expect("json");
    assert_eq!(reply["commands"][0]["app"], "writer");
    assert!(reply["commands"][1]["error"].as_str().unwrap_or_default().contains("app name"), "{reply}");
    // The bot retries the same message: nothing new.
    assert_eq!(bot(BOT_TOKEN, message).await.expect("POST").status().as_u16(), 202);
    let resp = bot(BOT_TOKEN, serde_json::json!({ "id": "x", "text": "/lgtm" })).await.expect("POST");
    assert_eq!(resp.status().as_u16(), 400, "missing actor");

    let messages = stream_messages(&nats).await;
    let subjects: Vec<&str> = messages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "slipway.chatops.command.writer.prod",
            "slipway.chatops.command.writer.staging",
            "slipway.chatops.command.writer.prod",
            "slipway.chatops.command.-.-",
        ]
    );
    assert_eq!(messages[0].1["actor"], "Codertocat");
    assert_eq!(messages[1].1["reason"], "flaky");
    assert_eq!(messages[2].1["tag"], "v1.2.3");
    assert_eq!(messages[3].1["kind"], "COMMAND_KIND_UNKNOWN");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_deliveries_are_still_deduplicated_by_the_stream_window() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    let ping = std::fs::read(fixtures_dir().join("ping/payload.json")).expect("fixture");
    assert_eq!(ingest.deliver("ping", &delivery_id(1), &ping).await.0, 202);
    assert_eq!(ingest.deliver("ping", &delivery_id(2), &ping).await.0, 202);
    // The record is written in batches, off the request path.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(
            ingest.db.parse::<sqlx::postgres::PgConnectOptions>().expect("url").options([("search_path", "ingest")]),
        )
        .await
        .expect("connect");
    sqlx::query("UPDATE github_deliveries SET received_at = now() - interval '5 days' WHERE delivery_id = $1")
        .bind(delivery_id(1))
        .execute(&pool)
        .await
        .expect("age");
    let pruned = slipway_ingest::deliveries::prune(&pool, Duration::from_secs(96 * 3600)).await.expect("prune");
    assert_eq!(pruned, 1, "only the old delivery goes");

    // Forgotten by the record, the redelivery is published again, and JetStream drops it.
    let (status, reply) = ingest.deliver("ping", &delivery_id(1), &ping).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("duplicate")));
    let (status, reply) = ingest.deliver("ping", &delivery_id(2), &ping).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(stream_messages(&nats).await.len(), 2);
    ingest.stop().await;
}

/// Entries waiting in the spool directory (not its `dead/` letters).
/// Waits (10 s at most) until the spool in `dir` is empty: replayed to NATS.
async fn wait_spool_drained(dir: &std::path::Path) {
    for _ in 0..200 {
        if spool_entries(dir) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spool_entries(dir), 0, "spool drained");
}

fn spool_entries(dir: &std::path::Path) -> usize {
    let entries = std::fs::read_dir(dir).expect("spool");
    entries.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))).count()
}
