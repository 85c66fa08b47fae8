//! Set-up shared by ingest's integration tests: ingest booted in the test's runtime against
//! real nats-server and PostgreSQL, webhooks posted to it, and reading back what it stored.
#![allow(dead_code)]

use serde_json::{Value, json};
use slipway_ingest::config::{ChatopsConfig, GithubConfig, HttpConfig, SpoolConfig};
use slipway_ingest::{Config, apps::AppRule, serve, signature};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_testkit::NatsServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "It's a Secret to Everybody";
pub const BOT_TOKEN: &str = "bot-token-1";
/// Long enough for any request of these tests on a loaded machine; a test of slow bodies
/// lowers it, and there the attacker is far slower still.
const BODY_TIMEOUT_MS: u64 = 30_000;

/// The octokit webhook payloads.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/github-webhooks")
}

/// `X-Hub-Signature-256` of `body` with [`SECRET`].
pub fn sign(body: &[u8]) -> String {
    signature::sign(SECRET.as_bytes(), body)
}

/// Every message of the `SLIPWAY` stream: (subject, JSON body).
pub async fn stream_messages(nats: &NatsServer) -> Vec<(String, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let messages = slipway_testkit::stream_messages(&js, "SLIPWAY").await.expect("stream");
    messages
        .iter()
        .map(|m| (m.subject.to_string(), serde_json::from_slice(&m.payload).unwrap_or(Value::Null)))
        .collect()
}

/// Two apps of a monorepo (`reader` also owns `libs/common`), [`SECRET`], [`BOT_TOKEN`].
pub fn config(nats: &NatsServer, db: String, spool: &Path) -> Config {
    let apps: Vec<AppRule> = serde_json::from_value(json!([
        { "name": "writer", "paths": ["apps/writer/**"] },
        { "name": "reader", "paths": ["apps/reader/**", "libs/common/**"] },
    ]))
    .expect("apps");
    Config {
        nats: NatsConfig { url: nats.url(), ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("ingest") },
        http: HttpConfig { body_timeout_ms: BODY_TIMEOUT_MS, ..HttpConfig::default() },
        github: GithubConfig { webhook_secrets: vec![Secret::new(SECRET)], ..GithubConfig::default() },
        spool: SpoolConfig { dir: spool.to_owned() },
        chatops: ChatopsConfig { tokens: vec![Secret::new(BOT_TOKEN)] },
        apps,
        ..Config::default()
    }
}

/// A running ingest.
pub struct Ingest {
    /// The database URL.
    pub db: String,
    /// The webhook endpoint.
    pub url: String,
    /// The webhook port.
    pub addr: SocketAddr,
    /// `http://` of the admin port.
    pub admin: String,
    pub spool: tempfile::TempDir,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Ingest {
    /// Boots ingest with the shared config as `adjust` leaves it; returns once it is ready.
    pub async fn start(nats: &NatsServer, adjust: impl FnOnce(&mut Config)) -> Self {
        let db = slipway_testkit::shared_database().await.expect("database");
        let spool = tempfile::tempdir().expect("spool dir");
        let mut config = config(nats, db.clone(), spool.path());
        adjust(&mut config);
        let admin_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = format!("http://{}", admin_l.local_addr().expect("addr"));
        let addr = http_l.local_addr().expect("addr");
        let url = format!("http://{addr}/webhooks/github");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(config, admin_l, http_l, shutdown.clone()));
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let ingest = Self { db, url, addr, admin, spool, http, shutdown, task };
        ingest.wait_ready().await;
        ingest
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.admin)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ingest never became ready");
    }

    /// Posts `body` with the GitHub headers and `extra` ones; (status, JSON or text answer).
    pub async fn post(&self, event: &str, delivery: &str, body: &[u8], extra: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts `body` signed with [`SECRET`].
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
        self.post(event, delivery, body, &[("x-hub-signature-256", &sign(body))]).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("serve");
    }
}
