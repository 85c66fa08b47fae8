//! The kaniko backend: one Kubernetes Job per build, created and watched through `kube`, for
//! builders that run on a cluster without privileged pods or a container engine.
//!
//! A build flows: delete any Job an earlier attempt of the same build left (a crashed
//! replica's) → create the Job ([`spec`]: kaniko clones the exact commit, builds, pushes every
//! tag, writes the digest to its termination message) → watch it until `Complete` or
//! `Failed` → copy the pod's log into the [`BuildLog`] and take the digest from the
//! termination message. Cancellation (supersede, timeout, shutdown) drops the build's future;
//! a guard then deletes the Job with `Background` propagation so its pod goes too. A finished
//! Job is left to `ttlSecondsAfterFinished`, so `kubectl logs` works for a while.
//!
//! kaniko itself cannot run in this repository's tests (no cluster): they run this backend
//! against the test kit's fake API server and play the cluster's part.

pub mod spec;

use super::{Backend, BackendError, BuildJob};
use crate::config::{BuildConfig, KanikoConfig};
use crate::logs::BuildLog;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tracing::Instrument as _;

/// The kaniko backend.
pub struct Kaniko {
    settings: KanikoConfig,
    registry_tls: bool,
    timeout_secs: u64,
    /// Made on first use: `kube` needs a runtime, and `infer` reads files and env.
    client: tokio::sync::OnceCell<Client>,
}

/// How a build Job ended.
#[derive(Debug, PartialEq, Eq)]
enum Finished {
    Complete,
    Failed(String),
}

impl Kaniko {
    /// From the `[build]` section.
    pub fn new(config: &BuildConfig) -> Self {
        Self {
            settings: config.kaniko.clone(),
            registry_tls: config.registry_tls,
            timeout_secs: config.timeout_secs,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<Client, BackendError> {
        let make = || async {
            let config = match &self.settings.kube_url {
                Some(url) => {
                    let uri = url.parse().map_err(|e| format!("build.kaniko.kube_url {url:?}: {e}"))?;
                    kube::Config::new(uri)
                }
                None => kube::Config::infer().await.map_err(|e| format!("no Kubernetes configuration: {e}"))?,
            };
            Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
        };
        let client = self.client.get_or_try_init(make).await;
        client.cloned().map_err(|why: String| BackendError::Unavailable(format!("kaniko backend: {why}")))
    }

    async fn run(&self, job: &BuildJob, log: &BuildLog) -> Result<Option<String>, BackendError> {
        let client = self.client().await?;
        let namespace = &self.settings.namespace;
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        remove_stale(&jobs, &job.plan.build_id, log).await?;
        let name = spec::job_name(&job.plan.build_id, salt());
        let manifest = spec::job(&job.plan, &name, &self.settings, self.registry_tls, self.timeout_secs)
            .map_err(BackendError::Unavailable)?;
        jobs.create(&PostParams::default(), &manifest).await.map_err(|e| api_error("create the build Job", e))?;
        log.line(format!("created Job {namespace}/{name} running {}", self.settings.image));
        let cleanup = Cleanup { jobs: jobs.clone(), name: name.clone(), armed: true };
        let finished = wait(&jobs, &name, log).await;
        let pod = copy_log(&pods, &name, log).await;
        cleanup.disarm();
        let message = pod.as_ref().and_then(termination_message);
        match finished {
            Finished::Complete => {
                let digest = message.as_deref().and_then(digest_in);
                match &digest {
                    Some(digest) => log.line(format!("kaniko pushed {digest}")),
                    None => log.line("kaniko reported no digest; the registry's is used"),
                }
                Ok(digest)
            }
            Finished::Failed(why) => Err(failure(&name, &why, message.as_deref(), log)),
        }
    }
}

impl Backend for Kaniko {
    fn name(&self) -> &'static str {
        "kaniko"
    }

    // The worker reads the digest back from the registry; kaniko's own is logged.
    fn build<'a>(&'a self, job: &'a BuildJob, log: &'a BuildLog) -> BoxFuture<'a, Result<(), BackendError>> {
        self.run(job, log).map(|r| r.map(drop)).boxed()
    }
}

/// Deletes the build's Job unless [`disarm`](Cleanup::disarm)ed: a build future dropped
/// mid-flight (supersede, timeout, shutdown) must not leave kaniko pushing.
struct Cleanup {
    jobs: Api<Job>,
    name: String,
    armed: bool,
}

impl Cleanup {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (jobs, name) = (self.jobs.clone(), std::mem::take(&mut self.name));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(job = name, "no runtime to delete the cancelled build's Job; its deadline stops it");
            return;
        };
        let delete = async move {
            match jobs.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(job = name, "build cancelled; its Job is deleted"),
                Err(e) => tracing::warn!(job = name, error = %e, "could not delete the cancelled build's Job"),
            }
        };
        runtime.spawn(delete.in_current_span());
    }
}

/// Deletes Jobs an earlier attempt of this build left behind (a replica killed mid-build).
async fn remove_stale(jobs: &Api<Job>, build_id: &str, log: &BuildLog) -> Result<(), BackendError> {
    let selector = format!("{}={}", spec::BUILD_ID_LABEL, spec::build_id_label(build_id));
    let stale = jobs.list(&ListParams::default().labels(&selector)).await.map_err(|e| api_error("list Jobs", e))?;
    for old in stale
        .items
        .iter()
        .filter(|j| j.annotations().get(spec::BUILD_ID_ANNOTATION).map(String::as_str) == Some(build_id))
    {
        let name = old.name_any();
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => log.line(format!("deleted Job {name} left by an earlier attempt")),
            Err(e) => tracing::warn!(job = name, error = %e, "could not delete an earlier attempt's Job"),
        }
    }
    Ok(())
}

/// Watches the Job until it is `Complete` or `Failed`. Watch errors are retried with backoff;
/// the build timeout bounds the wait.
async fn wait(jobs: &Api<Job>, name: &str, log: &BuildLog) -> Finished {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(jobs.clone(), config).default_backoff());
    let mut active = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                if let Some(finished) = finished(&job) {
                    return finished;
                }
                let running = job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0;
                if running && !active {
                    log.line(format!("Job {name}: pod running"));
                }
                active |= running;
            }
            Ok(watcher::Event::Delete(_)) => return Finished::Failed("the Job was deleted".to_owned()),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "watching the build Job; retrying"),
        }
    }
    Finished::Failed("the watch of the Job ended".to_owned())
}

/// The Job's terminal condition, if it has one.
fn finished(job: &Job) -> Option<Finished> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some(Finished::Complete),
        "Failed" => Some(Finished::Failed(match (&c.reason, &c.message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (reason, message) => reason.clone().or_else(|| message.clone()).unwrap_or_else(|| "failed".to_owned()),
        })),
        _ => None,
    })
}

/// Copies the log of the Job's (newest) pod into `log`; returns the pod.
async fn copy_log(pods: &Api<Pod>, job: &str, log: &BuildLog) -> Option<Pod> {
    let listed = pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await;
    let pod = match listed {
        Ok(list) => list.items.into_iter().max_by_key(|p| p.metadata.creation_timestamp.clone()),
        Err(e) => {
            log.line(format!("could not list the build pods: {e}"));
            return None;
        }
    };
    let Some(pod) = pod else {
        log.line(format!("Job {job} has no pod (scheduling or image pull failed?)"));
        return None;
    };
    let params = LogParams { container: Some(spec::CONTAINER.to_owned()), ..LogParams::default() };
    match pods.logs(&pod.name_any(), &params).await {
        Ok(text) => text.lines().for_each(|line| log.line(line)),
        Err(e) => log.line(format!("could not read the log of pod {}: {e}", pod.name_any())),
    }
    Some(pod)
}

/// The kaniko container's termination message (the digest file, or the log's end on error).
fn termination_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let kaniko = statuses.iter().find(|s| s.name == spec::CONTAINER)?;
    kaniko.state.as_ref()?.terminated.as_ref()?.message.clone()
}

/// `sha256:<64 hex>` from a termination message.
fn digest_in(message: &str) -> Option<String> {
    let digest = message.trim();
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_owned())
}

/// A failed Job as a backend error: a push failure may pass (retried), anything else is the
/// build's own.
fn failure(job: &str, why: &str, message: Option<&str>, log: &BuildLog) -> BackendError {
    let tail = log.tail();
    let last = message.and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty())).or(tail.last().map(String::as_str));
    let text = format!("kaniko Job {job} failed ({why}): {}", last.unwrap_or("no output"));
    let pushing = |l: &str| l.contains("error pushing image") || l.contains("failed to push");
    if message.is_some_and(pushing) || tail.iter().any(|l| pushing(l)) {
        BackendError::Push(text)
    } else {
        BackendError::Build(text)
    }
}

/// API errors: the Kubernetes configuration or RBAC is wrong, or the API server is down.
fn api_error(what: &str, e: kube::Error) -> BackendError {
    match e {
        kube::Error::Api(status) => BackendError::Unavailable(format!(
            "kaniko backend: {what}: the API server answered {} {}: {}",
            status.code, status.reason, status.message
        )),
        other => BackendError::Unavailable(format!("kaniko backend: {what}: {other}")),
    }
}

/// A few bits that make a retried build's Job name differ from its predecessor's.
fn salt() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_conditions_and_digests() {
        let job = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({ "metadata": {}, "status": { "conditions": conditions } }))
                .expect("job")
        };
        let failed = job(serde_json::json!([{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded" }]));
        assert_eq!(finished(&failed), Some(Finished::Failed("BackoffLimitExceeded".to_owned())));
        let complete = job(
            serde_json::json!([{ "type": "SuccessCriteriaMet", "status": "True" }, { "type": "Complete", "status": "True" }]),
        );
        assert_eq!(finished(&complete), Some(Finished::Complete));
        assert_eq!(finished(&job(serde_json::json!([{ "type": "Complete", "status": "False" }]))), None);
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(digest_in(&format!("{digest}\n")), Some(digest));
        assert_eq!(digest_in("error building image"), None);
    }
}
