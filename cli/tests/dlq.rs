//! `slipctl dlq` against a real notifier (in-process, real NATS and PostgreSQL) whose webhook
//! destination fails until the test lets it through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use slipway_mesh::v1;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::NatsServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn slipctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipctl")).args(args).output().expect("run slipctl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    // The destination: 503 until `up`, then 200; counts posts.
    let (up, posts) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let (u, p) = (up.clone(), posts.clone());
    let remote = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (up, posts) = (u.clone(), p.clone());
            async move {
                posts.fetch_add(1, Ordering::SeqCst);
                if up.load(Ordering::SeqCst) { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
            }
        }),
    );
    let remote_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", remote_l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(remote_l, remote).await });

    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let toml = format!(
        "retry = {{ attempts = 2, base_ms = 10, max_ms = 20 }}\n\
         [[destinations]]\nname = \"audit\"\nprovider = \"webhook\"\nurl = \"{hook}\"\nsigning_secret = \"whsec-1234567890\"\n\
         [[routes]]\nevents = [\"promotion.failed\"]\ndestinations = [\"audit\"]\n"
    );
    let mut config: slipway_notifier::Config = toml::from_str(&toml).expect("config");
    config.nats = NatsConfig { url: nats.url(), ..NatsConfig::default() };
    config.database = DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("notifier") };
    let admin_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = format!("http://{}", admin_l.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(slipway_notifier::serve(config, admin_l, http_l, shutdown.clone()));

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let failed = v1::PromotionFailed {
        promotion_id: "p-1".into(),
        app: "writer".into(),
        stage: "prod".into(),
        ..Default::default()
    };
    // The notifier may still be starting: publish once its consumer exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Publisher::new(client, "/test").publish(&failed).await.expect("publish");

    let mut listing = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, out, _) = slipctl(&["dlq", "--notifier", &admin, "list", "--json"]);
        if code == 0 {
            listing = serde_json::from_str(&out).expect("json");
            if listing["dead_letters"].as_array().is_some_and(|l| !l.is_empty()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letter = &listing["dead_letters"][0];
    assert_eq!(letter["destination"], "audit", "{listing}");
    assert_eq!(posts.load(Ordering::SeqCst), 2, "both attempts were made");
    let id = letter["id"].as_i64().expect("id").to_string();

    let (code, out, _) = slipctl(&["dlq", "--notifier", &admin, "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("audit") && out.contains("503"), "{out}");

    up.store(true, Ordering::SeqCst);
    let (code, out, err) = slipctl(&["dlq", "--notifier", &admin, "replay", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sent"), "{out}");
    assert_eq!(posts.load(Ordering::SeqCst), 3, "the replay posted once");
    let (_, out, _) = slipctl(&["dlq", "--notifier", &admin, "list"]);
    assert_eq!(out.trim(), "no dead letters");

    let (code, _, err) = slipctl(&["dlq", "--notifier", &admin, "replay", "999999"]);
    assert_eq!((code, err.trim()), (1, "slipctl: no dead letter 999999"));
    let (code, _, err) = slipctl(&["dlq", "--notifier", "http://127.0.0.1:1", "list"]);
    assert_eq!(code, 3);
    assert!(err.contains("cannot reach the notifier admin API"), "{err}");

    shutdown.cancel();
    task.await.expect("join").expect("serve");
}
