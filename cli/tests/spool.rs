//! `slipctl spool` and `slipctl delivery` against a real ingest (in-process, real NATS and
//! PostgreSQL): a dead letter listed and removed, and a push too large for one event read back
//! whole by its delivery id.

use serde_json::{Value, json};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_testkit::NatsServer;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "spool-test-secret";

fn slipctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipctl")).args(args).output().expect("run slipctl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A spooled `source.ping` whose body (2 MB) no NATS server with the default limit takes.
fn oversized_entry(dir: &std::path::Path) {
    let spool = slipway_ingest::spool::Spool::open(dir).expect("spool");
    let ping = slipway_mesh::v1::SourcePing::default();
    let id = slipway_mesh::EventId::parse("gh-oversized-0").expect("id");
    let (envelope, _) = slipway_mesh::prepare_with_id(id, "/slipway/ingest/test", &ping).expect("prepare");
    let body = format!("{{\"zen\":\"{}\"}}", "z".repeat(2 * 1024 * 1024));
    let event = slipway_ingest::spool::SpooledEvent::new(&envelope, body.as_bytes());
    spool.append(&[event], None).expect("append");
}

fn large_push() -> Vec<u8> {
    let commits: Vec<Value> = (1..=300)
        .map(|n| {
            json!({ "id": format!("{n:040x}"), "message": format!("docs: page {n}"), "added": [format!("docs/{n}.md")],
                    "modified": [], "removed": [], "author": { "name": "Codertocat", "username": "Codertocat" } })
        })
        .collect();
    let push = json!({ "ref": "refs/heads/main", "before": format!("{:040x}", 0), "after": format!("{:040x}", 300),
                       "repository": { "full_name": "acme/mono" }, "pusher": { "name": "octocat" }, "commits": commits });
    serde_json::to_vec(&push).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_removed_and_originals_read_back() {
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let spool = tempfile::tempdir().expect("spool");
    oversized_entry(spool.path());
    let config = slipway_ingest::Config {
        nats: NatsConfig { url: nats.url(), ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("ingest") },
        github: slipway_ingest::config::GithubConfig {
            webhook_secrets: vec![Secret::new(SECRET)],
            ..Default::default()
        },
        spool: slipway_ingest::config::SpoolConfig { dir: spool.path().to_owned() },
        ..Default::default()
    };
    let admin_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = format!("http://{}", admin_l.local_addr().expect("addr"));
    let hooks = format!("http://{}/webhooks/github", http_l.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(slipway_ingest::serve(config, admin_l, http_l, shutdown.clone()));

    // The oversized entry becomes a dead letter once ingest is up.
    let mut listing = Value::Null;
    for _ in 0..300 {
        let (code, out, _) = slipctl(&["--json", "spool", "--ingest", &admin, "list"]);
        if code == 0 {
            listing = serde_json::from_str(&out).expect("json");
            if listing["dead_letters"].as_array().is_some_and(|l| l.len() == 1) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = listing["dead_letters"][0]["name"].as_str().expect("a dead letter").to_owned();
    let (code, text, _) = slipctl(&["spool", "--ingest", &admin, "list"]);
    assert_eq!(code, 0);
    assert!(text.contains(&name) && text.contains("max_payload"), "{text}");
    let (code, _, err) = slipctl(&["spool", "--ingest", &admin, "replay", "00000000000000000099.json"]);
    assert_eq!((code, err.trim()), (1, "slipctl: no dead letter 00000000000000000099.json"));
    let (code, out, _) = slipctl(&["spool", "--ingest", &admin, "remove", &name]);
    assert_eq!(code, 0, "{out}");
    let (_, text, _) = slipctl(&["spool", "--ingest", &admin, "list"]);
    assert!(text.contains("no dead letters"), "{text}");

    // A push of 300 commits: its event lists 20, the whole body is kept.
    let body = large_push();
    let signature = slipway_ingest::signature::sign(SECRET.as_bytes(), &body);
    let resp = reqwest::Client::new()
        .post(&hooks)
        .header("x-github-event", "push")
        .header("x-github-delivery", "big-push-1")
        .header("x-hub-signature-256", signature)
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    let out = tempfile::NamedTempFile::new().expect("tmp");
    let path = out.path().to_string_lossy().into_owned();
    let (code, _, err) = slipctl(&["delivery", "--nats", &nats.url(), "big-push-1", "-o", &path]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(out.path()).expect("read"), body, "the whole body");
    let (code, _, err) = slipctl(&["delivery", "--nats", &nats.url(), "never-sent"]);
    assert_eq!((code, err.trim()), (1, "slipctl: no original kept for delivery never-sent"));

    shutdown.cancel();
    task.await.expect("join").expect("serve");
}
