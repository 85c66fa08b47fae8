//! Kill -9 of ingest and of nats-server during a stream of 1,000 deliveries: afterwards every
//! accepted delivery is in the stream exactly once. Deliveries that got no 2xx are sent again
//! with the same delivery id, as GitHub's redelivery (or our reconciler) would.

use slipway_ingest::signature;
use slipway_testkit::{NatsServer, ServiceProcess, boot, free_port, shared_database};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "crash-test-secret";
const DELIVERIES: usize = 1000;

struct Ingest {
    process: ServiceProcess,
}

fn spawn(nats: &str, db: &str, admin: u16, http: u16, spool: &Path) -> Ingest {
    let mut env = boot::service_env(nats, db, admin);
    env.push(("SLIPWAY_GITHUB__WEBHOOK_SECRETS".into(), format!("[{SECRET}]")));
    env.push(("SLIPWAY_SPOOL__DIR".into(), spool.display().to_string()));
    env.push(("SLIPWAY_HTTP__LISTEN".into(), format!("127.0.0.1:{http}")));
    env.push(("SLIPWAY_TELEMETRY__FILTER".into(), "warn".into()));
    Ingest { process: ServiceProcess::spawn(env!("CARGO_BIN_EXE_slipway-ingest"), &env).expect("spawn ingest") }
}

fn ping_body(n: usize) -> Vec<u8> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/github-webhooks/ping/payload.json");
    let mut ping: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("json");
    ping["zen"] = format!("delivery {n}").into();
    serde_json::to_vec(&ping).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ingest_and_nats_loses_and_duplicates_nothing() {
    let mut nats = NatsServer::start().await.expect("nats");
    let db = shared_database().await.expect("database");
    let spool = tempfile::tempdir().expect("spool");
    let (admin, http) = (free_port(), free_port());
    let mut ingest = spawn(&nats.url(), &db, admin, http, spool.path());
    let url = format!("http://127.0.0.1:{http}/webhooks/github");
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    ingest
        .process
        .wait_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), Duration::from_secs(30))
        .await
        .expect("ready");

    let mut retries = 0;
    for n in 0..DELIVERIES {
        match n {
            300 => {
                ingest.process.sigkill().expect("kill -9 ingest");
                let _ = ingest.process.wait(Duration::from_secs(5)).await;
                ingest = spawn(&nats.url(), &db, admin, http, spool.path());
            }
            600 => nats.kill().await.expect("kill -9 nats"),
            750 => nats.restart().await.expect("restart nats"),
            _ => {}
        }
        let body = ping_body(n);
        let delivery = format!("00000000-0000-0000-0000-{n:012}");
        let mut attempts = 0;
        loop {
            let sent = client
                .post(&url)
                .header("x-github-event", "ping")
                .header("x-github-delivery", &delivery)
                .header("x-hub-signature-256", signature::sign(SECRET.as_bytes(), &body))
                .body(body.clone())
                .send()
                .await;
            if matches!(&sent, Ok(r) if r.status().is_success()) {
                break;
            }
            attempts += 1;
            retries += 1;
            assert!(attempts < 200, "delivery {n} never accepted: {sent:?}\n{}", ingest.process.output_tail(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Wait for the spool to drain into the restarted NATS, then count per delivery.
    let nc = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(nc);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let mut stream = js.get_stream("SLIPWAY").await.expect("stream");
        if stream.info().await.expect("info").state.messages as usize >= DELIVERIES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for m in slipway_testkit::stream_messages(&js, "SLIPWAY").await.expect("stream") {
        let body: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
        *counts.entry(body["deliveryId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    let missing: Vec<usize> =
        (0..DELIVERIES).filter(|n| !counts.contains_key(&format!("00000000-0000-0000-0000-{n:012}"))).collect();
    let doubled: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} accepted deliveries lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(doubled.is_empty(), "deliveries stored twice: {doubled:?}");
    assert_eq!(counts.len(), DELIVERIES);
    eprintln!("1000 deliveries, {retries} retried sends across the two kills");
    ingest.process.sigterm().expect("SIGTERM");
    assert!(ingest.process.wait(Duration::from_secs(15)).await.expect("exit").success());
}
