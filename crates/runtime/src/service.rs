//! The lifecycle every service shares.
//!
//! [`run`] boots: it serves the admin port first (so `/healthz` answers and `/readyz` says why
//! it is not ready yet), then connects NATS and ensures the stream, then connects PostgreSQL
//! and migrates; each step is retried until it works or the service is told to shut down, so
//! a service started before its dependencies just waits. It then starts the outbox relay and
//! hands the service's body a [`Running`] to start its consumers and background tasks on.
//! When the body returns (shutdown, or an error) it stops in order: the body's consumers have
//! ended, then every task spawned on [`Running`] is awaited, the outbox is relayed a last time
//! and its relay stopped, the admin server stops and the NATS connection drains.

use crate::admin::{AdminServer, ReadinessCheck, db_check, nats_check};
use crate::config::{DatabaseConfig, NatsConfig};
use crate::consumer::{self, ConsumerSpec, Delivery, LoopOptions, Outcome};
use crate::db::outbox::Relay;
use crate::jetstream::{self, Publisher};
use crate::{Error, Result, db};
use async_nats::jetstream::stream::Stream;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a booted service holds on to.
#[derive(Clone)]
pub struct ServiceContext {
    /// Service name (`ingest`, ...).
    pub name: &'static str,
    /// The NATS client.
    pub client: async_nats::Client,
    /// The `SLIPWAY` stream.
    pub stream: Stream,
    /// Pool bound to the service's schema, migrated.
    pub pool: PgPool,
    /// Publisher with `ce-source` `/slipway/<name>/<host>`.
    pub publisher: Publisher,
}

/// What [`start`] needs to know.
pub struct Boot<'a> {
    /// Service name.
    pub name: &'static str,
    /// `nats` config section.
    pub nats: &'a NatsConfig,
    /// `database` config section.
    pub database: &'a DatabaseConfig,
    /// The service's own migrations.
    pub migrator: &'a Migrator,
    /// Admin server with any extra routes; NATS and database checks are added here.
    pub admin: AdminServer,
    /// False when the service keeps working through a NATS outage (`/readyz` then says
    /// `degraded` instead of 503).
    pub nats_required: bool,
    /// True when the service writes events to its transactional outbox: [`run`] relays it
    /// while the service runs and once more after its consumers stopped.
    pub outbox: bool,
}

/// A readiness check that reports "starting" until the real one is known.
struct Deferred {
    name: &'static str,
    required: bool,
    inner: Arc<OnceLock<Box<dyn ReadinessCheck>>>,
}

impl ReadinessCheck for Deferred {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> BoxFuture<'_, crate::admin::Readiness> {
        match self.inner.get() {
            Some(check) => check.check(),
            None => async { Err(crate::admin::NotReady("starting".to_owned())) }.boxed(),
        }
    }

    fn required(&self) -> bool {
        // Until the first connection is made, nothing can be served either way.
        self.required || self.inner.get().is_none()
    }
}

/// Ready once the service's body has set itself up ([`Running::started`]): until then a
/// webhook or a request could reach a service still opening its buckets.
struct Started(Arc<OnceLock<()>>);

impl ReadinessCheck for Started {
    fn name(&self) -> &'static str {
        "started"
    }

    fn check(&self) -> BoxFuture<'_, crate::admin::Readiness> {
        let started = self.0.get().is_some();
        async move { if started { Ok(()) } else { Err(crate::admin::NotReady("starting".to_owned())) } }.boxed()
    }
}

/// Boots the shared parts; returns them and the admin server's task.
pub async fn start(
    boot: Boot<'_>,
    admin_listener: TcpListener,
    shutdown: &CancellationToken,
) -> Result<(ServiceContext, JoinHandle<Result<()>>)> {
    start_with(boot, admin_listener, shutdown, None).await
}

async fn start_with(
    boot: Boot<'_>,
    admin_listener: TcpListener,
    shutdown: &CancellationToken,
    started: Option<Arc<OnceLock<()>>>,
) -> Result<(ServiceContext, JoinHandle<Result<()>>)> {
    let nats_ready = Arc::new(OnceLock::new());
    let db_ready = Arc::new(OnceLock::new());
    let mut admin = boot.admin;
    if let Some(started) = started {
        admin = admin.with_check(Box::new(Started(started)));
    }
    let admin = admin
        .with_check(Box::new(Deferred { name: "nats", required: boot.nats_required, inner: nats_ready.clone() }))
        .with_check(Box::new(Deferred { name: "database", required: true, inner: db_ready.clone() }));
    let admin_task = tokio::spawn(admin.serve(admin_listener, shutdown.child_token()));

    let client = jetstream::connect(boot.nats, &format!("slipway-{}", boot.name)).await?;
    let _ = nats_ready.set(nats_check(client.clone()));
    let js = async_nats::jetstream::new(client.clone());
    let stream = retry("ensure stream", shutdown, || jetstream::ensure_stream(&js, boot.nats)).await?;
    check_max_payload(&client)?;
    let pool = retry("connect database", shutdown, || db::connect(boot.database)).await?;
    retry("migrate", shutdown, || db::migrate(&pool, boot.migrator)).await?;
    let _ = db_ready.set(db_check(pool.clone()));

    let host = hostname();
    let publisher = Publisher::new(client.clone(), format!("/slipway/{}/{host}", boot.name));
    tracing::info!(service = boot.name, "ready");
    Ok((ServiceContext { name: boot.name, client, stream, pool, publisher }, admin_task))
}

/// How a task spawned on [`Running`] ends: `()` or a `Result`.
pub trait TaskEnd: Send + 'static {
    /// The end as a result.
    fn into_result(self) -> anyhow::Result<()>;
}

impl TaskEnd for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<E: Into<anyhow::Error> + Send + 'static> TaskEnd for std::result::Result<(), E> {
    fn into_result(self) -> anyhow::Result<()> {
        self.map_err(Into::into)
    }
}

type Tasks = Arc<Mutex<Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>>>;

/// A booted service, as [`run`] hands it to the service's body.
#[derive(Clone)]
pub struct Running {
    /// NATS, the stream, the database and the publisher.
    pub ctx: ServiceContext,
    /// Cancelled when the service stops: on SIGTERM/SIGINT, or when the body failed. Tasks
    /// and consumers take children of it.
    pub shutdown: CancellationToken,
    /// `nats.stream_replicas`, for the buckets the service opens.
    pub replicas: usize,
    tasks: Tasks,
    started: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("service", &self.ctx.name).finish_non_exhaustive()
    }
}

impl Running {
    /// Says the body has set itself up: `/readyz` answers ready from now on (given NATS and
    /// the database). [`Running::consume`] says it once its consumer exists.
    pub fn started(&self) {
        if self.started.set(()).is_ok() {
            tracing::info!(service = self.ctx.name, "started");
        }
    }

    /// Spawns a background task; it must end once [`Running::shutdown`] is cancelled. [`run`]
    /// awaits it at shutdown, before the outbox's last relay, and reports its failure.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskEnd,
    {
        let handle = tokio::spawn(async move { task.await.into_result() });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push((name, handle));
    }

    /// Ensures the durable consumer `spec`, retrying until NATS takes it or the service stops
    /// ([`Error::ShuttingDown`]).
    pub async fn consumer(&self, spec: &ConsumerSpec) -> Result<async_nats::jetstream::consumer::PullConsumer> {
        retry("ensure consumer", &self.shutdown, || consumer::ensure_consumer(&self.ctx.stream, spec)).await
    }

    /// Ensures `spec` and consumes it with up to `concurrency` deliveries in hand until the
    /// service stops.
    pub async fn consume<F, Fut>(&self, spec: &ConsumerSpec, concurrency: usize, handler: F) -> Result<()>
    where
        F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let durable = self.consumer(spec).await?;
        self.started();
        consumer::run(durable, LoopOptions::for_spec(spec, concurrency), self.shutdown.child_token(), handler).await
    }

    /// Awaits every task spawned so far (and any they spawned), logging each failure; the first
    /// one is returned.
    async fn join_tasks(&self) -> anyhow::Result<()> {
        let mut first = Ok(());
        loop {
            let handles = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
            if handles.is_empty() {
                return first;
            }
            for (name, handle) in handles {
                let end = match handle.await {
                    Ok(end) => end,
                    Err(e) => Err(anyhow::Error::from(e)),
                };
                if let Err(e) = end {
                    tracing::error!(task = name, error = format!("{e:#}"), "task failed");
                    if first.is_ok() {
                        first = Err(e.context(name));
                    }
                }
            }
        }
    }
}

/// True when `e` is the runtime's [`Error::ShuttingDown`]: a step given up because the
/// service is stopping, which is not a failure.
pub fn is_shutting_down(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::ShuttingDown))
}

/// Runs a service: boots it ([`start`]), starts the outbox relay when `boot.outbox`, runs
/// `body` until it returns, and stops in order (see the module's documentation). The body's
/// [`Error::ShuttingDown`] is a clean stop; its other errors stop the service (its tasks are
/// cancelled and awaited) and are returned, as is the first failure of a task.
pub async fn run<F, Fut>(
    boot: Boot<'_>,
    admin_listener: TcpListener,
    shutdown: &CancellationToken,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Running) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Its own token, so a failing body stops the tasks and the admin server too.
    let stop = shutdown.child_token();
    let (outbox, replicas) = (boot.outbox, boot.nats.stream_replicas);
    let started = Arc::new(OnceLock::new());
    let (ctx, admin) = match start_with(boot, admin_listener, &stop, Some(started.clone())).await {
        Ok(started) => started,
        Err(Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // The relay outlives the consumers and tasks, so the events of their last work still go out.
    let relay_stop = CancellationToken::new();
    let relay = outbox.then(|| {
        let relay = Relay::new(ctx.pool.clone(), ctx.publisher.clone());
        (relay.clone(), tokio::spawn(relay.run(relay_stop.clone())))
    });
    let running = Running { ctx: ctx.clone(), shutdown: stop.clone(), replicas, tasks: Tasks::default(), started };
    let ended = body(running.clone()).await;
    let ended = match ended {
        Err(e) if is_shutting_down(&e) => Ok(()),
        Err(e) => {
            tracing::error!(service = ctx.name, error = format!("{e:#}"), "stopping after an error");
            Err(e)
        }
        Ok(()) => Ok(()),
    };
    stop.cancel();
    tracing::info!(service = ctx.name, "shutting down");
    let tasks = running.join_tasks().await;
    let mut relayed = Ok(());
    if let Some((relay, task)) = relay {
        if let Err(e) = relay.relay_pending().await {
            tracing::warn!(error = %e, "final outbox relay failed; the next replica to start relays it");
        }
        relay_stop.cancel();
        relayed = task.await.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into));
    }
    let served = admin.await.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into));
    ctx.client.drain().await?;
    ended.and(tasks).and(relayed).and(served)
}

/// Refuses to run against a server whose `max_payload` cannot carry the largest event
/// Slipway publishes with its headers: every such event would be stored (an outbox row, a
/// spool entry) and never go out. Known once the stream was ensured (the client is connected).
fn check_max_payload(client: &async_nats::Client) -> Result<()> {
    use slipway_mesh::bounds::{MAX_EVENT_BYTES, MAX_HEADER_BYTES};
    let max = client.server_info().max_payload;
    let needed = MAX_EVENT_BYTES + MAX_HEADER_BYTES;
    if max < needed {
        return Err(Error::Config(format!(
            "nats: the server's max_payload is {max} bytes, below the {needed} bytes a Slipway event may take \
             ({MAX_EVENT_BYTES} bytes plus headers); run nats-server with max_payload of at least 1MB"
        )));
    }
    Ok(())
}

/// Retries `step` with capped backoff until it succeeds or `shutdown` fires.
pub async fn retry<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::warn!(step = what, error = %e, retry_in_ms = delay.as_millis() as u64, "not yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(Error::ShuttingDown),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

/// The config file named on the command line (`--config <file>` or `--config=<file>`);
/// `None` leaves it to `SLIPWAY_CONFIG`. Any other argument is an error.
pub fn config_file_from_args(args: impl IntoIterator<Item = String>) -> Result<Option<std::path::PathBuf>> {
    let mut args = args.into_iter().skip(1);
    let mut file = None;
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--config=") {
            file = Some(value.into());
        } else if arg == "--config" {
            let value = args.next().ok_or_else(|| Error::Config("--config needs a file".into()))?;
            file = Some(value.into());
        } else {
            return Err(Error::Config(format!("unknown argument {arg:?} (usage: --config <file>)")));
        }
    }
    Ok(file)
}

/// What [`main`] needs from a service's configuration.
pub trait ServiceConfig: serde::de::DeserializeOwned + serde::Serialize + Default + crate::config::Validate {
    /// The `telemetry` section.
    fn telemetry(&self) -> &crate::config::TelemetryConfig;
    /// The `admin` section.
    fn admin(&self) -> &crate::config::AdminConfig;
}

/// The whole `main` of a service binary: load the config (`--config <file>` or
/// `SLIPWAY_CONFIG`, then `SLIPWAY_*` env), set up telemetry, bind the admin port, call `run`
/// with a token that SIGTERM/SIGINT cancel, and flush telemetry last. Errors are printed as one
/// plain line (they are an operator's to fix: a bad key, a taken port), exit code 1.
pub async fn main<C, F, Fut>(binary: &'static str, run: F) -> std::process::ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = async {
        let file = config_file_from_args(std::env::args())?;
        let config: C = crate::config::load(file.as_deref())?;
        let telemetry = crate::telemetry::init(config.telemetry(), binary)?;
        let shutdown = crate::shutdown::root_token();
        let admin = TcpListener::bind(config.admin().listen).await?;
        let result = run(config, admin, shutdown).await;
        let flushed = telemetry.shutdown();
        result.and(flushed.map_err(Into::into))
    };
    match started.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("bin").chain(a.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn config_flag() {
        assert_eq!(config_file_from_args(args(&[])).expect("none"), None);
        assert_eq!(config_file_from_args(args(&["--config", "a.toml"])).expect("a"), Some("a.toml".into()));
        assert_eq!(config_file_from_args(args(&["--config=b.toml"])).expect("b"), Some("b.toml".into()));
        assert!(config_file_from_args(args(&["--config"])).is_err());
        assert!(config_file_from_args(args(&["--verbose"])).is_err());
    }
}
