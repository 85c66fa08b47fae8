//! The promoter service: keeps the pipeline state, writes image tags into the GitOps
//! repository, gates stages on approvals and health, rolls back, and serves the admin API.
//!
//! Events flow: `build.succeeded`, `source.test-gate`, `source.push` (its commits, kept for the
//! dashboard), `chatops.command` and the health reports
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
//! A stage with `verification` checks opens the next stage only once they passed: the domain
//! asks with `verification.requested`, the [`verifier`] runs the checks and answers with
//! `verification.completed` on the main consumer. The admin port also serves the live web
//! [`dashboard`].

pub mod api;
pub mod catalog;
pub mod config;
pub mod dashboard;
pub mod deployer;
pub mod error;
pub mod grpc;
pub mod health;
pub mod promoter;
pub mod store;
pub mod verifier;

pub use config::Config;
pub use error::{Error, Result};
pub use promoter::Promoter;
pub use slipway_gitops::{self as gitops, timing};
pub use slipway_promoter_core::{domain, freeze};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use slipway_mesh::EventKind;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::ConsumerSpec;
use slipway_runtime::service::{self, Boot, Running};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// `promotion.requested` handled at once by one replica: as many as one commit may carry
/// (the writer's `max_batch`), so a burst is not cut into commits by the consumer.
const WRITE_BACKS_IN_FLIGHT: usize = 500;

/// The promoter schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The sockets the promoter serves on, bound by the caller, so tests bind port 0 instead of
/// racing for a free one.
#[derive(Debug)]
pub struct Listeners {
    /// The admin HTTP port: health, readiness, metrics, the dashboard.
    pub admin: TcpListener,
    /// The admin gRPC API (with `admin_api`'s tokens and TLS); when `None`, `admin_api.listen`
    /// is bound, if set.
    pub api: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(admin: TcpListener) -> Self {
        Listeners { admin, api: None }
    }
}

/// Runs the service until `shutdown` is cancelled, writing to the GitOps repositories with
/// the git write-back.
pub async fn run(config: Config, listeners: impl Into<Listeners>, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.gitops.work_dir)
        .with_context(|| format!("gitops.work_dir {}", config.gitops.work_dir.display()))?;
    let mut writer = gitops::WriterConfig::new(&config.gitops.work_dir);
    writer.max_batch_delay = Duration::from_millis(config.gitops.max_batch_delay_ms);
    writer.author_name.clone_from(&config.gitops.author_name);
    writer.author_email.clone_from(&config.gitops.author_email);
    let writer = gitops::GitopsWriter::new(writer);
    let pull_requests = pull_requests(&config, &writer)?;
    let deployer = Arc::new(deployer::GitDeployer::new(writer).with_pull_requests(pull_requests));
    serve(config, listeners, shutdown, deployer).await
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
    listeners: impl Into<Listeners>,
    shutdown: CancellationToken,
    deployer: Arc<dyn deployer::Deployer>,
) -> anyhow::Result<()> {
    let Listeners { admin: admin_listener, api } = listeners.into();
    let kube = health::client(&config.health).await.context("health: the Kubernetes client")?;
    // Bound first, so a taken port or a bad certificate stops the service at start.
    let api_listener = grpc::Listener::bind(&config.admin_api, api).await?;
    let dashboard = dashboard::Dashboard::new();
    // Borrowed by the boot; the body takes the config itself.
    let (nats, database) = (config.nats.clone(), config.database.clone());
    let boot = Boot {
        name: "promoter",
        nats: &nats,
        database: &database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(slipway_runtime::admin::metrics_recorder())
            .with_routes(dashboard.routes()),
        nats_required: true,
        outbox: true,
    };
    service::run(boot, admin_listener, &shutdown, async move |running: Running| {
        let ctx = &running.ctx;
        let config = Arc::new(config);
        let apps = if config.catalog.enabled {
            catalog::Apps::follow(&running, &config).await?
        } else {
            catalog::Apps::from_config(&config)
        };
        let promoter = Arc::new(
            Promoter::new(ctx.pool.clone(), config.clone(), ctx.publisher.source(), deployer).with_apps(apps.clone()),
        );
        let tokens = grpc::TokenTable::new(&config.admin_api.tokens);
        let web = config.github.web_url();
        dashboard.attach(promoter.clone(), ctx, tokens, running.shutdown.clone(), web);
        verifier::spawn(&config, apps.clone(), kube.clone(), &running).await;
        health::spawn(kube, config.clone(), apps, &running);
        if let Some(listener) = api_listener {
            running.spawn(
                "admin api",
                grpc::serve(listener, promoter.clone(), ctx.stream.clone(), running.shutdown.child_token()),
            );
        }
        consume(&running, &config, &promoter).await
    })
    .await
}

/// The two consumers and the ticker, until the service stops.
async fn consume(running: &Running, config: &Config, promoter: &Arc<Promoter>) -> anyhow::Result<()> {
    let filters: Vec<String> = [
        EventKind::BuildSucceeded,
        EventKind::SourceTestGate,
        EventKind::SourcePush,
        EventKind::ChatopsCommand,
        EventKind::PromotionSynced,
        EventKind::PromotionHealthy,
        EventKind::PromotionDegraded,
        EventKind::BuildScanned,
        EventKind::BuildScanFailed,
        EventKind::VerificationCompleted,
    ]
    .iter()
    .map(|k| k.filter())
    .collect();
    let spec = ConsumerSpec::new(promoter::DURABLE, &filters, &config.nats);
    let writer_spec =
        ConsumerSpec::new(promoter::WRITER_DURABLE, &[EventKind::PromotionRequested.filter()], &config.nats);
    running.spawn("ticker", tick(promoter.clone(), config.pipeline.tick_secs, running.shutdown.child_token()));
    let handler = promoter.clone();
    let decisions = running.consume(&spec, 16, move |d| handler.clone().handle(d));
    // Wide, so that updates arriving together can share a commit: a handler only waits for
    // the writer, and a commit can only carry the updates whose handlers are running.
    let writer = promoter.clone();
    let write_backs = running.consume(&writer_spec, WRITE_BACKS_IN_FLIGHT, move |d| writer.clone().write_back(d));
    let (a, b) = tokio::join!(decisions, write_backs);
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
