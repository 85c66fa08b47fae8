//! `buildah bud --layers` into local storage under the work dir (the layer cache), then one
//! `buildah push` per tag. `--isolation chroot` and the `vfs` driver need no container runtime
//! and no overlay mounts, so this runs in an unprivileged Kubernetes pod and here as root.

use super::{Backend, BackendError, BuildJob, RunError, run_logged};
use crate::config::BuildConfig;
use crate::logs::BuildLog;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use std::path::PathBuf;
use tokio::process::Command;

/// The buildah backend.
pub struct Buildah {
    program: PathBuf,
    storage_driver: String,
    isolation: String,
    root: PathBuf,
    runroot: PathBuf,
    tls_verify: bool,
}

impl Buildah {
    /// From the `[build]` section.
    pub fn new(config: &BuildConfig) -> Self {
        let root = config.buildah.root.clone().unwrap_or_else(|| config.work_dir.join("containers/storage"));
        Self {
            program: config.buildah.program.clone(),
            storage_driver: config.buildah.storage_driver.clone(),
            isolation: config.buildah.isolation.clone(),
            runroot: config.work_dir.join("containers/run"),
            root,
            tls_verify: config.registry_tls,
        }
    }

    fn command(&self, job: &BuildJob) -> Command {
        let mut command = Command::new(&self.program);
        // Intermediate blobs go to the build's own scratch dir, removed with it.
        command.env("TMPDIR", &job.scratch);
        command.arg("--root").arg(&self.root).arg("--runroot").arg(&self.runroot);
        command.arg("--storage-driver").arg(&self.storage_driver);
        command
    }

    async fn run(&self, job: &BuildJob, log: &BuildLog) -> Result<(), BackendError> {
        let refs = job.plan.image_refs();
        let mut bud = self.command(job);
        bud.args(["bud", "--layers", "--isolation", &self.isolation]);
        bud.arg("--file").arg(&job.dockerfile);
        for (name, value) in &job.plan.app.build_args {
            bud.arg("--build-arg").arg(format!("{name}={value}"));
        }
        for image in &refs {
            bud.arg("--tag").arg(image);
        }
        bud.arg(&job.context);
        run_logged(bud, log).await.map_err(|e| match e {
            RunError::Spawn(m) => BackendError::Unavailable(format!("{m} (is buildah installed?)")),
            RunError::Failed(m) => BackendError::Build(m),
        })?;
        for image in &refs {
            let mut push = self.command(job);
            push.arg("push").arg(format!("--tls-verify={}", self.tls_verify));
            push.arg(image).arg(format!("docker://{image}"));
            run_logged(push, log).await.map_err(|e| match e {
                RunError::Spawn(m) => BackendError::Unavailable(m),
                RunError::Failed(m) => BackendError::Push(m),
            })?;
        }
        Ok(())
    }
}

impl Backend for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn build<'a>(&'a self, job: &'a BuildJob, log: &'a BuildLog) -> BoxFuture<'a, Result<(), BackendError>> {
        self.run(job, log).boxed()
    }
}
