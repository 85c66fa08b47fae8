//! The builder service: takes `slipway.build.requested.*` from a work queue shared by its
//! replicas, builds and pushes images, and reports `slipway.build.*`.
//!
//! A request flows: durable consumer `builder` → [`worker::Worker::handle`] → [`plan`] (is it
//! valid, which tags) → [`store`] claim (idempotent by build id, supersede by branch) →
//! [`source`] checkout of the exact commit → [`backend`] build and push → [`registry`] digest
//! read-back → `build.succeeded`/`build.failed` through the outbox, log in the Object Store
//! ([`logs`]); between push and result, the SBOM and vulnerability scan ([`scan`]). A second
//! durable consumer, [`rescan::DURABLE`], answers the promoter's `scan.requested` by scanning
//! the same digest again ([`rescan`]). [`run`] boots the shared parts (admin port, NATS and the `SLIPWAY` stream,
//! PostgreSQL schema `builder`), relays the outbox and consumes until the shutdown token fires
//! ([`slipway_runtime::service::run`]).

pub mod apps;
pub mod backend;
pub mod config;
pub mod logs;
pub mod plan;
pub mod registry;
pub mod rescan;
pub mod scan;
pub mod source;
pub mod store;
pub mod worker;

pub use config::Config;

use anyhow::Context as _;
use slipway_mesh::EventKind;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::ConsumerSpec;
use slipway_runtime::service::{self, Boot, Running};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The builder schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The durable consumer all builder replicas share.
pub const DURABLE: &str = "builder";

/// How long build logs are kept in the bucket.
const LOG_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// Runs the service until `shutdown` is cancelled. The admin listener is passed in so tests
/// can bind port 0. Builds in hand finish before it returns.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let backend = backend::from_config(&config.build).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.build.work_dir)
        .with_context(|| format!("build.work_dir {}", config.build.work_dir.display()))?;
    // Borrowed by the boot; the body takes the config itself.
    let (nats, database) = (config.nats.clone(), config.database.clone());
    let boot = Boot {
        name: "builder",
        nats: &nats,
        database: &database,
        migrator: &MIGRATOR,
        admin: AdminServer::new().with_metrics(slipway_runtime::admin::metrics_recorder()),
        nats_required: true,
        outbox: true,
    };
    service::run(boot, admin_listener, &shutdown, |running| consume(running, config, backend)).await
}

/// The build and re-scan consumers, until the service stops.
async fn consume(running: Running, config: Config, backend: Arc<dyn backend::Backend>) -> anyhow::Result<()> {
    let ctx = &running.ctx;
    let js = async_nats::jetstream::new(ctx.client.clone());
    let logs = match logs::LogStore::open(&js, &config.logs.bucket, LOG_MAX_AGE).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, "build logs will not be stored");
            None
        }
    };
    let spec = ConsumerSpec::new(DURABLE, &[EventKind::BuildRequested.filter()], &config.nats);
    let scan_spec = ConsumerSpec::new(rescan::DURABLE, &[EventKind::ScanRequested.filter()], &config.nats);
    let apps = if config.catalog.enabled {
        let (store, live) = slipway_runtime::catalog::follow(&running).await?;
        apps::Apps::Catalog(live, Box::new(store))
    } else {
        apps::Apps::Fixed(config.apps.clone())
    };
    let replica = replica_name();
    let registry = registry::RegistryClient::new(config.build.registry_tls);
    let scanner = scan::Scanner::new(config.scan.clone(), registry.clone(), config.build.registry_tls);
    let store =
        store::Store::new(ctx.pool.clone(), ctx.publisher.source(), &replica, backend.name(), stale_after(&spec));
    let worker = Arc::new(worker::Worker {
        apps,
        store: store.clone(),
        sources: source::SourceCache::new(&config.build.work_dir),
        registry,
        scanner: scanner.clone(),
        backend,
        logs,
        stream: ctx.stream.clone(),
        config: Arc::new(config.clone()),
    });
    tracing::info!(
        replica,
        backend = worker.backend.name(),
        concurrency = config.build.concurrency,
        "consuming build requests"
    );
    let builds = running.consume(&spec, config.build.concurrency, move |delivery| worker.clone().handle(delivery));
    let rescans = Arc::new(rescan::Rescans { store, scanner });
    let rescans =
        running.consume(&scan_spec, config.build.concurrency, move |delivery| rescans.clone().handle(delivery));
    let (builds, rescans) = tokio::join!(builds, rescans);
    builds?;
    rescans?;
    Ok(())
}

/// After how long without a heartbeat a build belongs to a dead replica.
fn stale_after(spec: &ConsumerSpec) -> Duration {
    (spec.ack_wait / 2).max(worker::HEARTBEAT * 5)
}

/// `<host>-<pid>`: which process holds a build.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    format!("{host}-{}", std::process::id())
}
