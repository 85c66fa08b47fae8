//! The promoter service: keeps the pipeline state, writes image tags into the GitOps
//! repository, gates stages on approvals and health, rolls back, and serves the admin API.
//!
//! Events flow: `build.succeeded`, `source.test-gate`, `chatops.command` and the health reports
//! (`promotion.synced/healthy/degraded`) arrive on the durable consumer [`promoter::DURABLE`];
//! [`promoter::Promoter`] decides with the pure [`domain::decide`] and writes state, timeline,
//! audit log and outgoing events (`promotion.*`, `approval.*`, `hold.*`) in one transaction
//! ([`store`]); the outbox relay publishes them. The promoter's own `promotion.requested` comes
//! back on [`promoter::WRITER_DURABLE`], is written to the GitOps repository by a
//! [`deployer::Deployer`] (the [`gitops`] writer), and becomes `promotion.committed`. A ticker
//! re-checks waiting promotions for ended soak times and freeze windows. [`run`] boots the
//! shared parts (admin port, NATS and the `SLIPWAY` stream, PostgreSQL schema `promoter`).
//! The [`health`] watcher consumes `promotion.committed` on [`health::DURABLE`] and reports the
//! health reports above from Argo CD Applications or Deployment rollouts, read through `kube`.
//! The admin port also serves the live web [`dashboard`].

pub mod api;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod deployer;
pub mod domain;
pub mod error;
pub mod freeze;
pub mod gitops;
pub mod grpc;
pub mod health;
pub mod promoter;
pub mod store;
pub mod timing;

pub use config::Config;
pub use error::{Error, Result};
pub use promoter::Promoter;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use slipway_mesh::EventKind;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::{self, ConsumerSpec, LoopOptions};
use slipway_runtime::db::outbox::Relay;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// `promotion.requested` handled at once by one replica: as many as one commit may carry
/// (the writer's `max_batch`), so a burst is not cut into commits by the consumer.
const WRITE_BACKS_IN_FLIGHT: usize = 500;

/// The promoter schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Runs the service until `shutdown` is cancelled, writing to the GitOps repositories with
/// the git write-back. The admin listener is passed in so tests can bind port 0.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.gitops.work_dir)
        .with_context(|| format!("gitops.work_dir {}", config.gitops.work_dir.display()))?;
    let mut writer = gitops::WriterConfig::new(&config.gitops.work_dir);
    writer.max_batch_delay = Duration::from_millis(config.gitops.max_batch_delay_ms);
    writer.author_name.clone_from(&config.gitops.author_name);
    writer.author_email.clone_from(&config.gitops.author_email);
    let writer = gitops::GitopsWriter::new(writer);
    let pull_requests = pull_requests(&config, &writer)?;
    let deployer = Arc::new(deployer::GitDeployer::new(writer).with_pull_requests(pull_requests));
    serve(config, admin_listener, shutdown, deployer).await
}

/// PR mode for the stages with `pull_request = true`, if any.
fn pull_requests(config: &Config, writer: &gitops::GitopsWriter) -> anyhow::Result<Option<gitops::pr::PullRequests>> {
    let stages: Vec<_> = config.pipeline.stages.iter().filter(|s| s.pull_request).map(|s| s.name.clone()).collect();
    if stages.is_empty() {
        return Ok(None);
    }
    let token = config.github.token()?.context("github.token: PR mode needs a token")?;
    let github = gitops::pr::GitHub::new(&config.github.api_url, token)?;
    Ok(Some(gitops::pr::PullRequests::new(writer, github, stages)))
}

/// [`run`] with the [`deployer::Deployer`] chosen by the caller (tests pass a recording one).
pub async fn serve(
    config: Config,
    admin_listener: TcpListener,
    shutdown: CancellationToken,
    deployer: Arc<dyn deployer::Deployer>,
) -> anyhow::Result<()> {
    let kube = health::client(&config.health).await.context("health: the Kubernetes client")?;
    // Bound first, so a taken port or a bad certificate stops the service at start.
    let api_listener = grpc::Listener::bind(&config.admin_api).await?;
    let dashboard = dashboard::Dashboard::new();
    let boot = Boot {
        name: "promoter",
        nats: &config.nats,
        database: &config.database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(slipway_runtime::admin::metrics_recorder())
            .with_routes(dashboard.routes()),
        nats_required: true,
    };
    let (ctx, admin) = match service::start(boot, admin_listener, &shutdown).await {
        Ok(started) => started,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // The relay outlives the consumers, so the events of the last decisions still go out.
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(ctx.pool.clone(), ctx.publisher.clone());
    let relay_task = tokio::spawn(relay.clone().run(relay_stop.clone()));
    let config = Arc::new(config);
    let apps = if config.catalog.enabled {
        match slipway_runtime::catalog::follow(&ctx.client, config.nats.stream_replicas, &shutdown).await {
            Ok((store, live)) => catalog::Apps::from_catalog(live, store, &config),
            Err(e) => {
                relay_stop.cancel();
                relay_task.await??;
                return match e {
                    slipway_runtime::Error::ShuttingDown => Ok(()),
                    e => Err(e.into()),
                };
            }
        }
    } else {
        catalog::Apps::from_config(&config)
    };
    let promoter = Arc::new(
        Promoter::new(ctx.pool.clone(), config.clone(), ctx.publisher.source(), deployer).with_apps(apps.clone()),
    );
    let tokens = grpc::TokenTable::new(&config.admin_api.tokens);
    dashboard.attach(promoter.clone(), ctx.stream.clone(), tokens, shutdown.clone());
    let health = health::spawn(kube, config.clone(), apps, &ctx, &shutdown);
    let api = api_listener
        .map(|l| tokio::spawn(grpc::serve(l, promoter.clone(), ctx.stream.clone(), shutdown.child_token())));
    let consumed = consume(&ctx, &config, &promoter, &shutdown).await;
    health.stop().await;
    if let Err(e) = relay.relay_pending().await {
        tracing::warn!(error = %e, "final outbox relay failed; the next replica to start relays it");
    }
    tracing::info!(service = ctx.name, "shutting down");
    relay_stop.cancel();
    relay_task.await??;
    admin.await??;
    if let Some(api) = api {
        api.await??;
    }
    ctx.client.drain().await?;
    consumed
}

/// The two consumers and the ticker, until `shutdown`.
async fn consume(
    ctx: &service::ServiceContext,
    config: &Config,
    promoter: &Arc<Promoter>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let filters: Vec<String> = [
        EventKind::BuildSucceeded,
        EventKind::SourceTestGate,
        EventKind::ChatopsCommand,
        EventKind::PromotionSynced,
        EventKind::PromotionHealthy,
        EventKind::PromotionDegraded,
    ]
    .iter()
    .map(|k| k.filter())
    .collect();
    let spec = ConsumerSpec::new(promoter::DURABLE, &filters, &config.nats);
    let writer_spec =
        ConsumerSpec::new(promoter::WRITER_DURABLE, &[EventKind::PromotionRequested.filter()], &config.nats);
    let ensure = |spec: ConsumerSpec| async move {
        service::retry("ensure consumer", shutdown, || consumer::ensure_consumer(&ctx.stream, &spec)).await
    };
    let (main, writes) = match (ensure(spec.clone()).await, ensure(writer_spec.clone()).await) {
        (Ok(main), Ok(writes)) => (main, writes),
        (Err(slipway_runtime::Error::ShuttingDown), _) | (_, Err(slipway_runtime::Error::ShuttingDown)) => {
            return Ok(());
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let ticker = tokio::spawn(tick(promoter.clone(), config.pipeline.tick_secs, shutdown.child_token()));
    let handler = promoter.clone();
    let decisions = consumer::run(main, LoopOptions::for_spec(&spec, 16), shutdown.child_token(), move |d| {
        handler.clone().handle(d)
    });
    // Wide, so that updates arriving together can share a commit: a handler only waits for
    // the writer, and a commit can only carry the updates whose handlers are running.
    let writer = promoter.clone();
    let write_backs = consumer::run(
        writes,
        LoopOptions::for_spec(&writer_spec, WRITE_BACKS_IN_FLIGHT),
        shutdown.child_token(),
        move |d| writer.clone().write_back(d),
    );
    let (a, b) = tokio::join!(decisions, write_backs);
    ticker.await?;
    a?;
    b?;
    Ok(())
}

async fn tick(promoter: Arc<Promoter>, every_secs: u64, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(every_secs.max(1)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(e) = promoter.tick().await {
            tracing::warn!(error = %e, "re-checking waiting promotions failed");
        }
    }
}
