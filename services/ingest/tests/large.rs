//! The largest inputs ingest accepts, against a real nats-server with its default
//! `max_payload` (1 MiB): a push of 2,048 commits (the most GitHub lists), a 20 MB body, and a
//! spool whose first entry can never be published. Every event stays bounded, the whole bodies
//! can be read back by delivery id, and nothing waits behind an entry that cannot go out.

mod common;

use common::{Ingest, fixtures_dir, stream_messages};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use slipway_mesh::bounds::{MAX_EVENT_BYTES, ORIGINALS_BUCKET};
use slipway_testkit::NatsServer;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

fn delivery_id(n: usize) -> String {
    format!("1a26e67d-cc78-11e3-81ab-{n:012}")
}

/// GitHub's push fixture to `main`, with `commits` instead of its own.
fn push_with(commits: Vec<Value>) -> Vec<u8> {
    let fixture = std::fs::read(fixtures_dir().join("push/payload.json")).expect("fixture");
    let mut push: Value = serde_json::from_slice(&fixture).expect("json");
    push["ref"] = "refs/heads/main".into();
    push["deleted"] = false.into();
    push["after"] = commits.last().map(|c| c["id"].clone()).unwrap_or_default();
    push["head_commit"] = commits.last().cloned().unwrap_or_default();
    push["commits"] = Value::Array(commits);
    serde_json::to_vec(&push).expect("encode")
}

fn commit(n: usize, message: String, added: Vec<String>) -> Value {
    json!({ "id": format!("{n:040x}"), "message": message, "added": added, "modified": [], "removed": [],
            "author": { "name": "Codertocat", "username": "Codertocat" }, "timestamp": "2019-05-15T15:20:30-05:00" })
}

/// Every message of the stream is within the event bound.
async fn assert_bounded(nats: &NatsServer) -> Vec<(String, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let raw = slipway_testkit::stream_messages(&js, "SLIPWAY").await.expect("stream");
    for m in &raw {
        assert!(m.payload.len() <= MAX_EVENT_BYTES, "{} is {} bytes", m.subject, m.payload.len());
    }
    stream_messages(nats).await
}

async fn original(nats: &NatsServer, delivery: &str) -> Vec<u8> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let store = js.get_object_store(ORIGINALS_BUCKET).await.expect("originals bucket");
    let mut object = store.get(delivery).await.expect("original kept");
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.expect("read original");
    body
}

fn builds(messages: &[(String, Value)], delivery: &str) -> Vec<String> {
    let prefix = format!("gh-{delivery}-build-");
    let mut apps: Vec<String> = messages
        .iter()
        .filter(|(s, _)| s.starts_with("slipway.build.requested."))
        .filter_map(|(_, b)| b["buildId"].as_str()?.strip_prefix(&prefix).map(String::from))
        .collect();
    apps.sort();
    apps
}

fn push_event<'a>(messages: &'a [(String, Value)], delivery: &str) -> &'a Value {
    let found = messages.iter().find(|(s, b)| s.starts_with("slipway.source.push.") && b["deliveryId"] == delivery);
    &found.expect("the push event").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_2048_commits_is_published_bounded_and_kept_whole() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    // 2,048 commits touching `docs/` (no app), one in the middle touching `libs/common`
    // (reader's) and the oldest touching `apps/writer`: only full matching finds both.
    let commits: Vec<Value> = (0..2048)
        .map(|n| {
            let files: Vec<String> = match n {
                0 => vec!["apps/writer/src/main.rs".into()],
                1000 => vec!["libs/common/escape.rs".into()],
                _ => (0..4).map(|f| format!("docs/chapter-{n}/section-{f}/page.md")).collect(),
            };
            commit(n + 1, format!("docs: chapter {n}\n\n{}", "A paragraph of explanation. ".repeat(6)), files)
        })
        .collect();
    let big = push_with(commits);
    assert!(big.len() > 1024 * 1024, "larger than NATS' max_payload: {} bytes", big.len());
    let (status, body) = ingest.deliver("push", &delivery_id(1), &big).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["spooled"], false, "published at once, not spooled: {body}");
    let small = push_with(vec![commit(9999, "fix(writer): typo".into(), vec!["apps/writer/README.md".into()])]);
    let (status, body) = ingest.deliver("push", &delivery_id(2), &small).await;
    assert_eq!((status, &body["spooled"]), (202, &json!(false)), "{body}");

    let messages = assert_bounded(&nats).await;
    assert_eq!(builds(&messages, &delivery_id(1)), ["reader", "writer"], "exactly the apps the commits touched");
    assert_eq!(builds(&messages, &delivery_id(2)), ["writer"], "the push after the large one builds too");
    let event = push_event(&messages, &delivery_id(1));
    assert_eq!(event["commitCount"], 2048);
    assert_eq!(event["fileCount"], (2046 * 4 + 2).to_string(), "uint64 is a string in proto3 JSON");
    assert_eq!(event["changedApps"], json!(["reader", "writer"]));
    let listed = event["commits"].as_array().expect("commits");
    assert_eq!(listed.len(), 20, "the newest 20 commits");
    assert_eq!(listed.last().expect("head")["sha"], format!("{:040x}", 2048));
    assert_eq!(event["headCommit"]["sha"], format!("{:040x}", 2048));
    let reference = &event["original"];
    assert_eq!(reference["bucket"], ORIGINALS_BUCKET);
    assert_eq!(reference["key"], delivery_id(1));
    assert_eq!(reference["size"], big.len().to_string(), "uint64 is a string in proto3 JSON");
    assert_eq!(reference["digest"], format!("sha256:{}", hex::encode(Sha256::digest(&big))));
    assert_eq!(original(&nats, &delivery_id(1)).await, big, "the whole body, byte for byte");
    assert!(push_event(&messages, &delivery_id(2)).get("original").is_none(), "a small push carries everything");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_body_is_accepted_published_bounded_and_kept() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = Ingest::start(&nats, |_| {}).await;
    // Three commits listing 200,000 generated files in all, one of reader's the very last.
    let files = |c: usize| -> Vec<String> {
        (0..66_667).map(|f| format!("generated/{c}/{f:06}/{}.json", "x".repeat(64))).collect()
    };
    let mut last = files(3);
    last.push("libs/common/generated.rs".into());
    let commits = vec![
        commit(1, "chore: regenerate".into(), files(1)),
        commit(2, "chore: again".into(), files(2)),
        commit(3, "chore: once more".into(), last),
    ];
    let body = push_with(commits);
    assert!(body.len() > 20_000_000, "{} bytes", body.len());
    let (status, answer) = ingest.deliver("push", &delivery_id(3), &body).await;
    assert_eq!(status, 202, "{answer}");

    let messages = assert_bounded(&nats).await;
    assert_eq!(builds(&messages, &delivery_id(3)), ["reader"], "the last of 200,001 files was matched");
    let event = push_event(&messages, &delivery_id(3));
    assert_eq!(event["fileCount"], (3 * 66_667 + 1).to_string());
    let head = &event["headCommit"];
    assert_eq!((head["fileCount"].clone(), head["filesTruncated"].clone()), (json!(66_668), json!(true)));
    assert_eq!(original(&nats, &delivery_id(3)).await, body);
    ingest.stop().await;
}

/// A `source.ping` event, prepared as ingest would have spooled it.
fn spooled_ping(n: usize, body: Option<Vec<u8>>) -> slipway_ingest::spool::SpooledEvent {
    let ping = slipway_mesh::v1::SourcePing {
        delivery_id: format!("ping-{n}"),
        zen: format!("zen {n}"),
        ..Default::default()
    };
    let id = slipway_mesh::EventId::parse(&format!("gh-ping-{n:04}-0")).expect("id");
    let (envelope, json) = slipway_mesh::prepare_with_id(id, "/slipway/ingest/test", &ping).expect("prepare");
    slipway_ingest::spool::SpooledEvent::new(&envelope, &body.unwrap_or(json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_can_never_be_published_is_a_dead_letter_and_the_rest_go_on() {
    let nats = NatsServer::start().await.expect("nats");
    let dir = tempfile::tempdir().expect("spool dir");
    {
        // What a spool held before events were bounded: one 2 MB event, then 100 good ones.
        let spool = slipway_ingest::spool::Spool::open(dir.path()).expect("spool");
        let huge = format!("{{\"zen\":\"{}\"}}", "z".repeat(2 * 1024 * 1024)).into_bytes();
        spool.append(&[spooled_ping(0, Some(huge))], None).expect("bad entry");
        for n in 1..=100 {
            spool.append(&[spooled_ping(n, None)], None).expect("good entry");
        }
    }
    let spool_dir = dir.path().to_owned();
    let ingest = Ingest::start(&nats, move |c| c.spool.dir = spool_dir).await;
    let readyz = || async { ingest.http.get(format!("{}/readyz", ingest.admin)).send().await.expect("readyz") };
    let mut pings = Vec::new();
    for _ in 0..400 {
        pings = stream_messages(&nats).await;
        if pings.len() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let zens: Vec<String> = pings.iter().filter_map(|(_, b)| b["zen"].as_str().map(String::from)).collect();
    let expected: Vec<String> = (1..=100).map(|n| format!("zen {n}")).collect();
    assert_eq!(zens, expected, "the 100 good entries, in order");

    let listing: Value =
        ingest.http.get(format!("{}/spool", ingest.admin)).send().await.expect("GET").json().await.expect("json");
    assert_eq!(listing["pending"], 0, "{listing}");
    let letters = listing["dead_letters"].as_array().expect("dead letters");
    assert_eq!(letters.len(), 1, "{listing}");
    assert!(letters[0]["reason"].as_str().expect("reason").contains("max_payload"), "{listing}");
    let name = letters[0]["name"].as_str().expect("name").to_owned();
    let ready: Value = readyz().await.json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["spool"], "0 entries waiting for NATS, 1 dead letters", "{ready}");

    // Replayed as it is, it fails again for the same reason and is a dead letter again.
    let replay = ingest.http.post(format!("{}/spool/dead/{name}/replay", ingest.admin)).send().await.expect("POST");
    assert_eq!(replay.status(), 200);
    let mut letters = Vec::new();
    for _ in 0..200 {
        let listing: Value =
            ingest.http.get(format!("{}/spool", ingest.admin)).send().await.expect("GET").json().await.expect("json");
        letters = listing["dead_letters"].as_array().cloned().unwrap_or_default();
        if listing["pending"] == 0 && letters.len() == 1 && letters[0]["name"] != name.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = letters[0]["name"].as_str().expect("replayed as a new entry").to_owned();
    assert_ne!(again, name);
    let missing = ingest.http.delete(format!("{}/spool/dead/{name}", ingest.admin)).send().await.expect("DELETE");
    assert_eq!(missing.status(), 404, "the old name is gone");
    let removed = ingest.http.delete(format!("{}/spool/dead/{again}", ingest.admin)).send().await.expect("DELETE");
    assert_eq!(removed.status(), 200);
    let ready: Value = readyz().await.json().await.expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(stream_messages(&nats).await.len(), 100, "nothing published twice");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_max_payload_cannot_carry_an_event_is_refused_at_start() {
    let nats = NatsServer::start_with_max_payload(64 * 1024).await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let spool = tempfile::tempdir().expect("spool");
    let config = common::config(&nats, db, spool.path());
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = slipway_ingest::serve(config, admin, http, shutdown.clone());
    let error =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("refused, not served").expect_err("refused");
    let message = format!("{error:#}");
    assert!(message.contains("max_payload is 65536 bytes"), "{message}");
}
