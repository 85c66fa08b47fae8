//! The ingest service: receives GitHub webhooks and chatops commands and turns them into
//! durable events (`slipway.source.*`, `slipway.chatops.*`, `slipway.build.requested.*`).
//!
//! A delivery flows: [`signature`] check → [`github::normalize`] → dedupe by delivery id →
//! [`plan`] (source event, build requests for the [`apps`] that changed, [`chatops`]
//! commands) → JetStream (or the [`spool`] while NATS is down) → 2xx. [`run`] boots the
//! shared parts (admin port, NATS, PostgreSQL schema `ingest`), serves [`http`], and replays
//! the spool in the background until shutdown ([`replay`]; entries that can never be published
//! become dead letters, served by [`spool_admin`]). Every event is bounded in size ([`cut`]);
//! what an event leaves out stays whole in the [`originals`] bucket.

pub mod apps;
pub mod catalog;
pub mod chatbot;
pub mod chatops;
pub mod config;
pub mod cut;
pub mod deliveries;
pub mod error;
pub mod github;
pub mod gittree;
pub mod http;
pub mod known;
pub mod originals;
pub mod plan;
pub mod reconcile;
pub mod replay;
pub mod server;
pub mod signature;
pub mod spool;
pub mod spool_admin;

pub use config::Config;

use anyhow::Context as _;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::service::{self, Boot, Running};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The ingest schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Binds the webhook listener from the config and runs until `shutdown`.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http =
        TcpListener::bind(config.http.listen).await.with_context(|| format!("http.listen {}", config.http.listen))?;
    serve(config, admin_listener, http, shutdown).await
}

/// Runs with both listeners given (tests bind port 0). Webhooks are accepted only once
/// NATS or the spool can take them and the database is migrated.
pub async fn serve(
    config: Config,
    admin_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The recorder first: opening the spool sets its gauges (files left from before a
    // restart), which a recorder installed later would never see.
    let recorder = slipway_runtime::admin::metrics_recorder();
    let spool = Arc::new(spool::Spool::open(&config.spool.dir).context("spool.dir")?);
    let matcher = apps::AppMatcher::new(&config.apps).context("apps")?;
    let secrets = config.github.secrets()?;
    // Borrowed by the boot; the body takes the config itself.
    let (nats, database) = (config.nats.clone(), config.database.clone());
    let boot = Boot {
        name: "ingest",
        nats: &nats,
        database: &database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(recorder)
            .with_check(Box::new(spool_admin::SpoolCheck(spool.clone())))
            .with_routes(spool_admin::routes(spool.clone())),
        nats_required: false,
        outbox: false,
    };
    service::run(boot, admin_listener, &shutdown, |running| {
        accept(running, config, http_listener, spool, matcher, secrets)
    })
    .await
}

/// Accepts webhooks until the service stops; the spool replay, the delivery records, the
/// catalog's reloads and the reconciler run beside it as the service's tasks.
async fn accept(
    running: Running,
    config: Config,
    http_listener: TcpListener,
    spool: Arc<spool::Spool>,
    matcher: apps::AppMatcher,
    secrets: Vec<slipway_runtime::config::Secret>,
) -> anyhow::Result<()> {
    let (ctx, shutdown) = (&running.ctx, &running.shutdown);
    let retention = std::time::Duration::from_secs(config.github.delivery_retention_hours * 3600);
    let js = async_nats::jetstream::new(ctx.client.clone());
    let replicas = config.nats.stream_replicas;
    let originals = service::retry("originals bucket", shutdown, || async {
        // The runtime's retry loop takes the runtime's error: a failure here is NATS's.
        originals::Originals::open(&js, retention, replicas).await.map_err(|e| match e {
            error::Error::Runtime(e) => e,
            other => slipway_runtime::Error::Nats(other.to_string()),
        })
    })
    .await?;
    let (apps, reloader) = if config.catalog.enabled() {
        let store = slipway_runtime::catalog::open(&ctx.client, replicas, shutdown).await?;
        let reloader = Arc::new(catalog::Reloader::new(config.catalog.clone(), store.clone(), ctx.publisher.clone()));
        // The catalog in force before the first webhook: compared with its branch (or file) now.
        if let Err(e) = reloader.reload(None, None).await {
            tracing::warn!(error = %e, "catalog not read at start; the revision in force stays");
        }
        running.spawn("catalog reloads", reloader.clone().keep_current(shutdown.child_token()));
        let (live, watch) = slipway_runtime::catalog::Live::watch(store, shutdown.child_token()).await?;
        running.spawn("catalog watch", watch);
        (catalog::Apps::Live { live, cache: std::sync::Mutex::default() }, Some(reloader))
    } else {
        (catalog::Apps::Fixed(Arc::new(matcher)), None)
    };
    running.spawn(
        "spool replay",
        replay::replay(
            spool.clone(),
            ctx.publisher.clone(),
            originals.clone(),
            ctx.client.clone(),
            shutdown.child_token(),
        ),
    );
    let (recorder, recording) = deliveries::Recorder::spawn(ctx.pool.clone(), shutdown.child_token());
    running.spawn("delivery records", recording);
    let known = Arc::new(known::Known::new());
    known::load(&ctx.pool, &known).await;
    running.spawn("known deliveries", known::keep_loaded(ctx.pool.clone(), known.clone(), shutdown.child_token()));
    let state = Arc::new(http::Webhooks {
        secrets,
        apps,
        reloader,
        pool: ctx.pool.clone(),
        recorder,
        known,
        publisher: ctx.publisher.clone(),
        client: ctx.client.clone(),
        spool,
        originals,
        shape: plan::Shape { caps: config.events, keep: config.github.keep_originals },
        chatops_tokens: config.chatops.tokens.iter().map(|t| chatbot::token_digest(t.expose())).collect(),
    });
    if let Some(token) = config.github.reconcile.validated()? {
        let reconciler = reconcile::Reconciler::new(config.github.reconcile.clone(), token, ctx.pool.clone());
        running.spawn("reconciler", reconciler.run(shutdown.child_token()));
    }
    running
        .spawn("delivery pruning", deliveries::prune_periodically(ctx.pool.clone(), retention, shutdown.child_token()));
    let limits = http::BodyLimits {
        max_bytes: config.github.max_body_bytes,
        timeout: std::time::Duration::from_millis(config.http.body_timeout_ms),
    };
    let app = http::router(state, limits);
    tracing::info!(listen = %http_listener.local_addr()?, "accepting webhooks");
    running.started();
    // Graceful: stop accepting, let in-flight deliveries finish (they end durable or failed).
    let header_timeout = std::time::Duration::from_millis(config.http.header_timeout_ms);
    server::serve(http_listener, app, header_timeout, shutdown.clone()).await;
    Ok(())
}
