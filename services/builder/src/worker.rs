//! The handler of one `build.requested` delivery: plan → claim → checkout → backend build and
//! push → digest read back → `build.succeeded` / `build.failed`, with the log stored in the
//! Object Store bucket; between the push and `build.succeeded`, the image's SBOM and
//! vulnerability scan ([`crate::scan`]), whose event goes out in the same transaction. While the build runs, a heartbeat keeps the claim alive and notices a
//! supersede; the consumer loop sends in-progress acks so the request is not redelivered.

use crate::backend::{Backend, BackendError, BuildJob};
use crate::config::Config;
use crate::logs::lines::End;
use crate::logs::{BuildLog, LogStore};
use crate::plan::{self, BuildPlan, Invalid};
use crate::registry::RegistryClient;
use crate::source::{SourceCache, SourceError};
use crate::store::{Claim, Store};
use async_nats::jetstream::stream::Stream;
use slipway_mesh::EventKind;
use slipway_mesh::names::AppName;
use slipway_mesh::v1::{BuildFailed, BuildRequested, BuildSucceeded, ImageRef, event::Payload};
use slipway_runtime::consumer::{Delivery, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::instrument;

/// How often a running build says it is alive and checks for a supersede.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Why a build ended without an image.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("digest read-back: {0}")]
    Digest(String),
    #[error("superseded")]
    Superseded,
    #[error("build took longer than {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Source(_) => "source-error",
            Failure::Backend(e) => e.reason(),
            Failure::Digest(_) => "push-error",
            Failure::Superseded => "superseded",
            Failure::Timeout(_) => "timeout",
            Failure::Io(_) => "internal-error",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Failure::Source(e) => e.is_transient(),
            Failure::Backend(e) => e.is_transient(),
            Failure::Digest(_) | Failure::Io(_) => true,
            Failure::Superseded | Failure::Timeout(_) => false,
        }
    }
}

/// A pushed image: its digest, its SBOM's, and its scan (when a scanner is configured).
struct Built {
    digest: String,
    sbom_digest: String,
    scan: Option<crate::scan::ScanEvent>,
}

/// Everything a build handler needs; shared by all builds of a replica.
pub struct Worker {
    /// The service configuration (apps, build settings).
    pub config: Arc<Config>,
    /// The apps it builds: `[[apps]]` or the catalog in force.
    pub apps: crate::apps::Apps,
    /// Build rows and events.
    pub store: Store,
    /// Cached repositories.
    pub sources: SourceCache,
    /// The configured backend.
    pub backend: Arc<dyn Backend>,
    /// Digest read-back.
    pub registry: RegistryClient,
    /// SBOM and vulnerability scan of each pushed image.
    pub scanner: crate::scan::Scanner,
    /// Where logs go; `None` if the bucket could not be opened.
    pub logs: Option<LogStore>,
    /// The `SLIPWAY` stream, to see newer queued requests.
    pub stream: Stream,
}

impl Worker {
    /// Handles one delivery of `build.requested`.
    #[instrument(skip_all, fields(build.id = tracing::field::Empty, app = tracing::field::Empty))]
    pub async fn handle(self: Arc<Self>, delivery: Delivery) -> Outcome {
        let Payload::BuildRequested(request) = &delivery.payload else {
            return Outcome::Reject(format!("{} is not a build request", delivery.envelope.kind));
        };
        tracing::Span::current().record("build.id", request.build_id.as_str()).record("app", request.app.as_str());
        self.apps.catch_up(request.catalog_revision).await;
        let plan = match plan::plan(&self.apps, request) {
            Ok(plan) => plan,
            Err(invalid) => return self.reject(&delivery, request, invalid).await,
        };
        let newer = self.newer_queued(&plan, delivery.stream_sequence).await;
        let attempt = match self.store.claim(&plan, delivery.stream_sequence, newer).await {
            Ok(Claim::Build { attempt }) => attempt,
            Ok(Claim::Done(state)) => {
                tracing::info!(state, "already finished; redelivery acknowledged");
                return Outcome::Ack;
            }
            Ok(Claim::Superseded) => return Outcome::Ack,
            Ok(Claim::Busy) => return Outcome::Retry("a live replica is building it".to_owned()),
            Err(e) => return Outcome::Retry(format!("claim: {e}")),
        };
        if attempt == 1 {
            let waited = (chrono::Utc::now() - delivery.envelope.time).to_std().unwrap_or_default();
            metrics::histogram!("slipway_build_queue_wait_seconds").record(waited.as_secs_f64());
        }
        tracing::info!(attempt, commit = %plan.commit, tags = plan.tags.len(), "build started");
        let log = BuildLog::new(self.config.logs.tail_lines, self.config.logs.max_bytes);
        let live = self.logs.as_ref().and_then(|logs| logs.stream(&plan.build_id, attempt, &log));
        let started = Instant::now();
        let result = self.supervised(&plan, attempt, &log).await;
        let elapsed = started.elapsed();
        self.store_log(&plan.build_id, &log).await;
        let last_delivery = self.config.nats.max_deliver != -1 && delivery.attempt >= self.config.nats.max_deliver;
        if let Some(live) = live {
            live.finish(&log, log_end(&result, last_delivery, &log)).await;
        }
        match result {
            Ok(built) => self.succeeded(request, &plan, built, elapsed).await,
            Err(Failure::Superseded) => {
                tracing::info!("superseded; build cancelled");
                Outcome::Ack
            }
            Err(failure) if failure.is_transient() && !last_delivery => {
                tracing::warn!(error = %failure, "build failed; will retry");
                if let Err(e) = self.store.release(&plan.build_id).await {
                    tracing::warn!(error = %e, "could not release the build");
                }
                Outcome::Retry(failure.to_string())
            }
            Err(failure) => self.failed(&plan, &failure, &log, elapsed).await,
        }
    }

    /// Runs the build with its heartbeat (supersede watch) and timeout around it.
    async fn supervised(&self, plan: &BuildPlan, attempt: i32, log: &BuildLog) -> Result<Built, Failure> {
        let dir = self.config.build.work_dir.join("builds").join(format!("{}-{attempt}", plan.build_id));
        let timeout = Duration::from_secs(self.config.build.timeout_secs);
        let result = tokio::select! {
            r = self.build(plan, &dir, log) => r,
            () = self.superseded(&plan.build_id) => Err(Failure::Superseded),
            () = tokio::time::sleep(timeout) => Err(Failure::Timeout(timeout)),
        };
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the build directory");
        }
        result
    }

    async fn build(&self, plan: &BuildPlan, dir: &std::path::Path, log: &BuildLog) -> Result<Built, Failure> {
        let _ = tokio::fs::remove_dir_all(dir).await;
        let src = dir.join("src");
        log.line(format!("checking out {} at {}", plan.app.repository, plan.commit));
        // Only what the build reads: its context and Dockerfile (a monorepo's other apps stay
        // in the cache). A context at the root needs the whole tree.
        let context = plan.app.context.components().filter(|c| !matches!(c, std::path::Component::CurDir));
        let paths =
            if context.count() == 0 { Vec::new() } else { vec![plan.app.context.clone(), plan.app.dockerfile_path()] };
        self.sources.checkout(&plan.app.repository, &plan.commit, &src, &paths).await?;
        let job = BuildJob {
            plan: plan.clone(),
            context: src.join(&plan.app.context),
            dockerfile: src.join(plan.app.dockerfile_path()),
            scratch: dir.join("tmp"),
        };
        if !job.dockerfile.is_file() {
            let path = plan.app.dockerfile_path();
            return Err(BackendError::Build(format!("{} is not in commit {}", path.display(), plan.commit)).into());
        }
        tokio::fs::create_dir_all(&job.scratch).await.map_err(|e| Failure::Io(format!("scratch dir: {e}")))?;
        self.backend.build(&job, log).await?;
        let digest = self.registry.manifest_digest(&plan.app, plan.tags[0].as_str()).await.map_err(Failure::Digest)?;
        log.line(format!("pushed {}@{digest} as {}", plan.app.image, tags(plan).join(", ")));
        let sbom_digest = self.scanner.sbom(&plan.app.image, &digest).await.unwrap_or_default();
        if !sbom_digest.is_empty() {
            log.line(format!("SBOM (CycloneDX) stored as {}@{sbom_digest}", plan.app.image));
        }
        let scan = if self.scanner.scans() {
            let target = crate::scan::Target {
                build_id: plan.build_id.clone(),
                app: plan.app.name.to_string(),
                image: ImageRef {
                    repository: plan.app.image.clone(),
                    tag: plan.commit.to_string(),
                    digest: digest.clone(),
                },
                sbom_digest: sbom_digest.clone(),
                request_id: String::new(),
            };
            let scan = self.scanner.scan(target).await;
            log.line(crate::scan::summary(&scan));
            Some(scan)
        } else {
            None
        };
        Ok(Built { digest, sbom_digest, scan })
    }

    /// Resolves when the build is no longer this replica's to run (superseded, taken over).
    async fn superseded(&self, build_id: &str) {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            match self.store.heartbeat(build_id).await {
                Ok(Some(state)) if state == "running" => {}
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Whether a newer, valid request for the same app and branch is already in the stream.
    async fn newer_queued(&self, plan: &BuildPlan, seq: u64) -> bool {
        if plan.branch().is_none() {
            return false;
        }
        let subject = format!("{}.{}", EventKind::BuildRequested.subject_prefix(), plan.app.name);
        let Ok(last) = self.stream.get_last_raw_message_by_subject(&subject).await else { return false };
        if last.sequence <= seq {
            return false;
        }
        serde_json::from_slice::<BuildRequested>(&last.payload)
            .ok()
            .and_then(|r| plan::plan(&self.apps, &r).ok())
            .is_some_and(|newer| newer.git_ref == plan.git_ref && newer.build_id != plan.build_id)
    }

    async fn succeeded(&self, request: &BuildRequested, plan: &BuildPlan, built: Built, took: Duration) -> Outcome {
        let Built { digest, sbom_digest, scan } = built;
        let event = BuildSucceeded {
            build_id: plan.build_id.clone(),
            app: plan.app.name.to_string(),
            source: request.source.clone(),
            image: Some(ImageRef {
                repository: plan.app.image.clone(),
                tag: plan.commit.to_string(),
                digest: digest.clone(),
            }),
            tags: tags(plan),
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            sbom_digest,
        };
        match self.store.finish_scanned(&plan.build_id, &digest, scan.as_ref(), &event).await {
            Ok(emitted) => {
                record(plan.app.name.as_str(), "succeeded", "", took);
                tracing::info!(%digest, emitted, took_ms = event.duration_ms, "build succeeded");
                Outcome::Ack
            }
            Err(e) => Outcome::Retry(format!("record success: {e}")),
        }
    }

    async fn failed(&self, plan: &BuildPlan, failure: &Failure, log: &BuildLog, took: Duration) -> Outcome {
        let mut event = BuildFailed {
            build_id: plan.build_id.clone(),
            app: plan.app.name.to_string(),
            commit_sha: plan.commit.to_string(),
            reason: failure.reason().to_owned(),
            message: failure.to_string(),
            log_tail: log.tail(),
        };
        crate::logs::bound_failure(&mut event);
        match self.store.finish(&plan.build_id, "failed", Some(failure.reason()), None, &event).await {
            Ok(_) => {
                record(plan.app.name.as_str(), "failed", failure.reason(), took);
                tracing::warn!(reason = failure.reason(), error = %failure, "build failed");
                Outcome::Ack
            }
            Err(e) => Outcome::Retry(format!("record failure: {e}")),
        }
    }

    /// `build.failed` with reason `invalid-request`, then terminate the message.
    async fn reject(&self, delivery: &Delivery, request: &BuildRequested, invalid: Invalid) -> Outcome {
        let app = AppName::parse(&request.app).map(String::from).unwrap_or_default();
        let mut event = BuildFailed {
            build_id: request.build_id.chars().take(128).collect(),
            commit_sha: request.source.as_ref().map(|s| s.commit_sha.chars().take(64).collect()).unwrap_or_default(),
            app: app.clone(),
            reason: "invalid-request".to_owned(),
            message: invalid.to_string(),
            log_tail: Vec::new(),
        };
        crate::logs::bound_failure(&mut event);
        if let Err(e) = self.store.reject(&delivery.envelope.id, &event).await {
            return Outcome::Retry(format!("record rejection: {e}"));
        }
        metrics::counter!("slipway_builds_total", "app" => app, "outcome" => "failed", "reason" => "invalid-request")
            .increment(1);
        Outcome::Reject(format!("invalid request: {invalid}"))
    }

    async fn store_log(&self, build_id: &str, log: &BuildLog) {
        if let Some(logs) = &self.logs
            && let Err(e) = logs.put(build_id, log).await
        {
            tracing::warn!(error = %e, "could not store the build log");
        }
    }
}

/// The end record of the live log; `None` while the build will be retried.
fn log_end(result: &Result<Built, Failure>, last_delivery: bool, log: &BuildLog) -> Option<End> {
    let (outcome, reason) = match result {
        Ok(_) => ("succeeded", ""),
        Err(Failure::Superseded) => ("superseded", "superseded"),
        Err(failure) if failure.is_transient() && !last_delivery => return None,
        Err(failure) => ("failed", failure.reason()),
    };
    let dropped_lines = u64::try_from(log.dropped()).unwrap_or(u64::MAX);
    Some(End { outcome: outcome.to_owned(), reason: reason.to_owned(), dropped_lines })
}

fn tags(plan: &BuildPlan) -> Vec<String> {
    plan.tags.iter().map(ToString::to_string).collect()
}

fn record(app: &str, outcome: &'static str, reason: &str, took: Duration) {
    metrics::counter!("slipway_builds_total", "app" => app.to_owned(), "outcome" => outcome, "reason" => reason.to_owned())
        .increment(1);
    metrics::histogram!("slipway_build_duration_seconds", "app" => app.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}
