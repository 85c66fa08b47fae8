//! Build backends: a checked-out context and Dockerfile in, an image pushed under every tag
//! of the plan out. Which one runs is chosen by `build.backend`; [`buildah`] is the default
//! (daemonless, also inside Kubernetes pods), [`docker`] needs a Docker engine, [`kaniko`]
//! runs each build as a Kubernetes Job on the cluster.
//!
//! Backends run programs and stream their output line by line into the [`BuildLog`].
//! Cancelling a build (supersede, timeout, shutdown) drops its future, which kills the
//! running program (`kill_on_drop`) or deletes the build's Job.

pub mod buildah;
pub mod docker;
pub mod kaniko;

use crate::config::{BackendKind, BuildConfig};
use crate::logs::BuildLog;
use crate::plan::BuildPlan;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// One build as a backend sees it.
#[derive(Debug, Clone)]
pub struct BuildJob {
    /// What to build and which tags to push.
    pub plan: BuildPlan,
    /// The build context directory (inside the checkout).
    pub context: PathBuf,
    /// The Dockerfile (inside the checkout).
    pub dockerfile: PathBuf,
    /// A scratch directory of this build's own.
    pub scratch: PathBuf,
}

/// Why a backend failed; each maps to a `build.failed` reason.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot run on this host at all (program missing, no engine).
    #[error("{0}")]
    Unavailable(String),
    /// The image did not build (Dockerfile error, missing file): the build's own fault.
    #[error("{0}")]
    Build(String),
    /// The image built but could not be pushed.
    #[error("{0}")]
    Push(String),
}

impl BackendError {
    /// The `build.failed` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Unavailable(_) => "backend-unavailable",
            BackendError::Build(_) => "build-error",
            BackendError::Push(_) => "push-error",
        }
    }

    /// Whether another attempt may succeed (a registry that was down).
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Push(_))
    }
}

/// Builds and pushes images.
pub trait Backend: Send + Sync {
    /// `buildah`, `docker`, `kaniko`: goes on `build.started`.
    fn name(&self) -> &'static str;

    /// Builds `job` and pushes every tag of its plan.
    fn build<'a>(&'a self, job: &'a BuildJob, log: &'a BuildLog) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// The backend `config` asks for.
pub fn from_config(config: &BuildConfig) -> Result<Arc<dyn Backend>, String> {
    match config.backend {
        BackendKind::Buildah => Ok(Arc::new(buildah::Buildah::new(config))),
        BackendKind::Docker => Ok(Arc::new(docker::Docker::new(config))),
        BackendKind::Kaniko => Ok(Arc::new(kaniko::Kaniko::new(config))),
    }
}

/// How a program run ended.
pub(crate) enum RunError {
    /// It could not be started (not installed, not executable).
    Spawn(String),
    /// It ran and exited unsuccessfully.
    Failed(String),
}

/// Runs `command`, streaming stdout and stderr into `log` line by line.
pub(crate) async fn run_logged(mut command: Command, log: &BuildLog) -> Result<(), RunError> {
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    log.line(format!("$ {}", display(&command)));
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| RunError::Spawn(format!("cannot run {program}: {e}")))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (status, (), ()) = tokio::join!(child.wait(), pump(stdout, log), pump(stderr, log));
    let status = status.map_err(|e| RunError::Failed(format!("{program}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        let last = log.tail().last().cloned().unwrap_or_default();
        Err(RunError::Failed(format!("{program} exited with {status}: {last}")))
    }
}

async fn pump(stream: Option<impl AsyncRead + Unpin>, log: &BuildLog) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.line(line);
    }
}

fn display(command: &Command) -> String {
    let std = command.as_std();
    std::iter::once(std.get_program()).chain(std.get_args()).map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}
