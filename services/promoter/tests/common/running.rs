//! A promoter running a test's config in the test's runtime, with the clients the tests talk
//! to it through: the `SLIPWAY` stream ensured and the schema migrated before the first
//! event, so nothing a test publishes races the service's own start.

use async_nats::jetstream;
use slipway_promoter::Config;
use slipway_runtime::jetstream::Publisher;
use sqlx::PgPool;
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Running {
    /// The HTTP admin port (health, metrics, dashboard).
    pub admin: SocketAddr,
    /// The admin gRPC API, bound to port 0 here when the config has `[admin_api]` tokens.
    pub api: Option<SocketAddr>,
    pub js: jetstream::Context,
    /// Publishes as `source`.
    pub publisher: Publisher,
    /// The promoter's schema.
    pub pool: PgPool,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts `slipway_promoter::run(config)`; test events are published as `source`.
    pub async fn start(config: &Config, source: &str) -> Running {
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = listener.local_addr().expect("addr");
        let api = if config.admin_api.tokens.is_empty() {
            None
        } else {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the admin API"))
        };
        let api_addr = api.as_ref().map(|l| l.local_addr().expect("addr"));
        let listeners = slipway_promoter::Listeners { admin: listener, api };
        let task = tokio::spawn(slipway_promoter::run(config.clone(), listeners, shutdown.clone()));
        let client = async_nats::connect(&config.nats.url).await.expect("connect");
        let js = jetstream::new(client.clone());
        slipway_runtime::jetstream::ensure_stream(&js, &config.nats).await.expect("stream");
        let pool = slipway_runtime::db::connect(&config.database).await.expect("pool");
        slipway_runtime::db::migrate(&pool, &slipway_promoter::MIGRATOR).await.expect("migrate");
        Running { admin, api: api_addr, js, publisher: Publisher::new(client, source), pool, shutdown, task }
    }

    /// SIGTERM, as it were: the service must stop cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("service");
    }
}
