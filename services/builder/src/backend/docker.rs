//! `docker buildx build --push` for hosts with a Docker engine. The engine is asked for first
//! (`docker version`), so a host without one fails with a clear `backend-unavailable` instead
//! of a half-started build. Plain-HTTP registries must be listed in the engine's
//! `insecure-registries`; that is the engine's configuration, not ours.

use super::{Backend, BackendError, BuildJob, RunError, run_logged};
use crate::config::BuildConfig;
use crate::logs::BuildLog;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use std::path::PathBuf;
use tokio::process::Command;

/// The docker backend.
pub struct Docker {
    program: PathBuf,
}

impl Docker {
    /// From the `[build]` section.
    pub fn new(config: &BuildConfig) -> Self {
        Self { program: config.docker_program.clone() }
    }

    /// The build command for `job` (without running it).
    pub fn build_command(&self, job: &BuildJob) -> Command {
        let mut command = Command::new(&self.program);
        command.args(["buildx", "build", "--push"]);
        command.arg("--file").arg(&job.dockerfile);
        for (name, value) in &job.plan.app.build_args {
            command.arg("--build-arg").arg(format!("{name}={value}"));
        }
        for image in job.plan.image_refs() {
            command.arg("--tag").arg(image);
        }
        command.arg(&job.context);
        command
    }

    async fn engine_check(&self, log: &BuildLog) -> Result<(), BackendError> {
        let mut version = Command::new(&self.program);
        version.args(["version", "--format", "{{.Server.Version}}"]);
        run_logged(version, log).await.map_err(|e| {
            let why = match e {
                RunError::Spawn(m) | RunError::Failed(m) => m,
            };
            BackendError::Unavailable(format!("docker backend: no Docker engine reachable ({why})"))
        })
    }

    async fn run(&self, job: &BuildJob, log: &BuildLog) -> Result<(), BackendError> {
        self.engine_check(log).await?;
        run_logged(self.build_command(job), log).await.map_err(|e| match e {
            RunError::Spawn(m) => BackendError::Unavailable(m),
            RunError::Failed(m) => BackendError::Build(m),
        })
    }
}

impl Backend for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn build<'a>(&'a self, job: &'a BuildJob, log: &'a BuildLog) -> BoxFuture<'a, Result<(), BackendError>> {
        self.run(job, log).boxed()
    }
}
