//! Shared set-up for the runtime's integration tests: real nats-server and PostgreSQL.
#![allow(dead_code)]

use slipway_mesh::v1;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::{db, jetstream};
use sqlx::PgPool;

pub static TEST_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./tests/migrations");

pub fn nats_config(url: &str) -> NatsConfig {
    NatsConfig { url: url.to_owned(), ..NatsConfig::default() }
}

pub async fn stream(client: &async_nats::Client, url: &str) -> async_nats::jetstream::stream::Stream {
    let js = async_nats::jetstream::new(client.clone());
    jetstream::ensure_stream(&js, &nats_config(url)).await.expect("stream")
}

/// A fresh database on the process-wide PostgreSQL, migrated with the runtime's tables and
/// the test's `applied` table, in schema `svc`.
pub async fn database() -> PgPool {
    let url = slipway_testkit::shared_database().await.expect("postgres");
    let cfg = DatabaseConfig { url: Some(Secret::new(url)), ..DatabaseConfig::with_schema("svc") };
    let pool = db::connect(&cfg).await.expect("connect");
    db::migrate(&pool, &TEST_MIGRATOR).await.expect("migrate");
    pool
}

pub fn build_requested(n: usize) -> v1::BuildRequested {
    v1::BuildRequested { build_id: format!("b{n}"), app: "writer".into(), reason: "test".into(), ..Default::default() }
}

pub async fn wait_for<F, Fut>(what: &str, timeout: std::time::Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
