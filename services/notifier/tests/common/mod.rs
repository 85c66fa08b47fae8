//! The notifier in-process against real NATS and PostgreSQL, and fake remotes (axum) that
//! record every request and answer from a script, like Slack, GitHub and webhooks do.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use slipway_mesh::EventPayload;
use slipway_notifier::Config;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::NatsServer;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request a fake remote received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// A scripted answer: status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
}

/// A recording HTTP server.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

async fn record(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = inner.lock().expect("lock");
    g.requests.push(Recorded { path: uri.path().to_owned(), headers, body: body.to_vec(), at: Instant::now() });
    let (status, extra, body) =
        g.script.pop_front().or_else(|| g.default.clone()).unwrap_or((200, vec![], "ok".into()));
    let mut response = (StatusCode::from_u16(status).expect("status"), body).into_response();
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().expect("header"));
    }
    response
}

impl Remote {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(record).with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { inner, base }
    }

    /// Answers these first, in order.
    pub fn script(&self, answers: Vec<Answer>) {
        self.inner.lock().expect("lock").script.extend(answers);
    }

    /// Answers this once the script is used up (200 `ok` when unset).
    pub fn default_answer(&self, answer: Answer) {
        self.inner.lock().expect("lock").default = Some(answer);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The notifier running in-process.
pub struct Notifier {
    pub admin: String,
    pub http_url: String,
    pub db: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

impl Notifier {
    /// Starts with `config` (nats and database filled in here).
    pub async fn start(nats: &NatsServer, mut config: Config) -> Self {
        let db = slipway_testkit::shared_database().await.expect("database");
        config.nats = NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() };
        config.database =
            DatabaseConfig { url: Some(Secret::new(db.clone())), ..DatabaseConfig::with_schema("notifier") };
        let admin_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = format!("http://{}", admin_l.local_addr().expect("addr"));
        let http_url = format!("http://{}", http_l.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(slipway_notifier::serve(config, admin_l, http_l, shutdown.clone()));
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let n = Self { admin, http_url, db, shutdown, task, client };
        for _ in 0..200 {
            if let Ok(r) = n.client.get(format!("{}/readyz", n.admin)).send().await
                && r.status() == 200
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("notifier never became ready");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("serve");
    }
}

/// Parses a config from TOML (the way an operator writes it) and validates it.
pub fn config(toml: &str) -> Config {
    use figment::providers::{Format, Serialized, Toml};
    let c: Config = figment::Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(toml))
        .extract()
        .expect("config");
    slipway_runtime::config::Validate::validate(&c).expect("valid config");
    c
}

pub async fn publisher(nats: &NatsServer) -> (async_nats::Client, Publisher) {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    (client.clone(), Publisher::new(client, "/test"))
}

/// Publishes the same event (same `ce-id`) `times` times, each under its own `Nats-Msg-Id`
/// so the stream keeps every copy: what a redelivery looks like to the consumer.
pub async fn publish_copies<E: EventPayload>(client: &async_nats::Client, payload: &E, times: usize) -> String {
    let (envelope, body) = slipway_mesh::prepare("/test", payload).expect("prepare");
    let js = async_nats::jetstream::new(client.clone());
    for i in 0..times {
        let mut headers = envelope.to_headers();
        headers.insert(slipway_mesh::header::NATS_MSG_ID, format!("{}-copy-{i}", envelope.id).as_str());
        js.publish_with_headers(envelope.subject.clone(), headers, body.clone().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    envelope.id.to_string()
}

/// Every message of the stream: (subject, ce-type, body).
pub async fn stream_messages(nats: &NatsServer) -> Vec<(String, String, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let messages = slipway_testkit::stream_messages(&js, "SLIPWAY").await.expect("stream");
    messages
        .iter()
        .map(|m| {
            let ty = m.headers.get(slipway_mesh::header::TYPE).map(|v| v.as_str().to_owned()).unwrap_or_default();
            (m.subject.to_string(), ty, serde_json::from_slice(&m.payload).unwrap_or(Value::Null))
        })
        .collect()
}

/// Waits until the stream holds an event of `ce_type`; returns its bodies.
pub async fn wait_events(nats: &NatsServer, ce_type: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let got: Vec<Value> =
            stream_messages(nats).await.into_iter().filter(|(_, t, _)| t == ce_type).map(|(_, _, b)| b).collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn psql(db_url: &str, sql: &str) -> String {
    let bindir = slipway_testkit::postgres_bindir().expect("postgres");
    let out = std::process::Command::new(bindir.join("psql")).args([db_url, "-tAc", sql]).output().expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
