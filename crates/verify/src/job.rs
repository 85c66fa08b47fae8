//! The Job provider: a Kubernetes `batch/v1` Job per measurement, as Argo Rollouts' job
//! metric runs one. The Job gets the subject in its env (`SLIPWAY_APP`, `SLIPWAY_STAGE`,
//! `SLIPWAY_VERSION`, `SLIPWAY_IMAGE`) besides the check's own, no retries (`backoffLimit: 0`),
//! and is watched until its `Complete` (Successful) or `Failed` (Failed) condition, or the
//! check's timeout (Failed). It is deleted afterwards in every case, its pods with it.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use rand::Rng as _;
use slipway_catalog::verify::JobCheck;
use tokio_util::sync::CancellationToken;

use crate::run::Taken;
use crate::{Error, Phase, Subject, render};

/// A Job name's limit (a DNS label), and the random suffix that keeps reruns apart.
const NAME_MAX: usize = 63;
const SUFFIX_LEN: usize = 5;

/// Runs the Job to its end; `None` when `stop` fired first (the Job is deleted all the same).
pub(crate) async fn measure(
    kube: &kube::Client,
    check: &JobCheck,
    subject: &Subject,
    stop: &CancellationToken,
) -> Option<Taken> {
    let jobs: Api<Job> = Api::namespaced(kube.clone(), &check.namespace);
    let name = job_name(subject, &check.name, &random_suffix());
    let manifest = match serde_json::from_value::<Job>(manifest(check, subject, &name)) {
        Ok(job) => job,
        Err(e) => return Some(Taken::error(String::new(), Error::Invalid { field: "job", reason: e.to_string() })),
    };
    if let Err(source) = jobs.create(&PostParams::default(), &manifest).await {
        let what = format!("creating Job {}/{name}", check.namespace);
        return Some(Taken::error(String::new(), Error::Kube { what, source }));
    }
    tracing::info!(job = %name, namespace = %check.namespace, "verification Job created");
    let timeout = Duration::from_secs(check.timeout_seconds);
    let taken = tokio::select! {
        taken = tokio::time::timeout(timeout, wait(&jobs, &name)) => Some(taken.unwrap_or_else(|_| Taken {
            phase: Phase::Failed,
            value: "Timeout".to_owned(),
            message: format!("Job {name} did not finish within {}s", check.timeout_seconds),
        })),
        () = stop.cancelled() => None,
    };
    if let Err(e) = jobs.delete(&name, &DeleteParams::background()).await {
        tracing::warn!(job = %name, error = %e, "deleting the verification Job");
    }
    taken
}

/// Watches the Job until it has a terminal condition. Watch errors are retried with backoff;
/// the check's timeout bounds the wait.
async fn wait(jobs: &Api<Job>, name: &str) -> Taken {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(jobs.clone(), config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                if let Some(taken) = finished(&job) {
                    return taken;
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                return Taken {
                    phase: Phase::Failed,
                    value: "Deleted".into(),
                    message: format!("Job {name} was deleted"),
                };
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "watching the verification Job; retrying"),
        }
    }
    Taken::error(String::new(), format!("the watch of Job {name} ended"))
}

/// The Job's terminal condition as a measurement, if it has one.
fn finished(job: &Job) -> Option<Taken> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| {
        let why = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
        match c.type_.as_str() {
            "Complete" => {
                Some(Taken { phase: Phase::Successful, value: "Complete".into(), message: "Job complete".into() })
            }
            "Failed" => {
                let message = if why.is_empty() { "Job failed".to_owned() } else { format!("Job failed: {why}") };
                Some(Taken { phase: Phase::Failed, value: "Failed".into(), message })
            }
            _ => None,
        }
    })
}

/// `slipway-verify-<app>-<stage>-<check>-<suffix>`: lowercase, `[a-z0-9-]`, at most 63
/// characters (the prefix is cut, never the suffix that makes it unique).
pub fn job_name(subject: &Subject, check: &str, suffix: &str) -> String {
    let mut prefix: String = format!("slipway-verify-{}-{}-{check}", subject.app, subject.stage)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    while prefix.contains("--") {
        prefix = prefix.replace("--", "-");
    }
    prefix.truncate(NAME_MAX - suffix.len() - 1);
    format!("{}-{suffix}", prefix.trim_end_matches('-'))
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..SUFFIX_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The Job's manifest.
fn manifest(check: &JobCheck, subject: &Subject, name: &str) -> serde_json::Value {
    let mut env = vec![
        serde_json::json!({"name": "SLIPWAY_APP", "value": subject.app}),
        serde_json::json!({"name": "SLIPWAY_STAGE", "value": subject.stage}),
        serde_json::json!({"name": "SLIPWAY_VERSION", "value": subject.version}),
        serde_json::json!({"name": "SLIPWAY_IMAGE", "value": subject.image}),
    ];
    env.extend(check.env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": render(v, subject)})));
    let mut container = serde_json::json!({
        "name": "check",
        "image": render(&check.image, subject),
        "env": env,
    });
    if !check.command.is_empty() {
        container["command"] = check.command.iter().map(|c| render(c, subject)).collect();
    }
    if !check.args.is_empty() {
        container["args"] = check.args.iter().map(|a| render(a, subject)).collect();
    }
    serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": check.namespace,
            "labels": { "app.kubernetes.io/managed-by": "slipway-verify" },
            "annotations": {
                "slipway.dev/app": subject.app,
                "slipway.dev/stage": subject.stage,
                "slipway.dev/version": subject.version,
                "slipway.dev/check": check.name,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": { "restartPolicy": "Never", "containers": [container] } },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(app: &str) -> Subject {
        Subject { app: app.into(), stage: "prod".into(), version: "1.0".into(), image: "r/x:1.0".into() }
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(job_name(&subject("hello"), "e2e", "abcde"), "slipway-verify-hello-prod-e2e-abcde");
        let long = job_name(&subject("A_Very.Long-App-Name-That-Goes-On-And-On"), "smoke_tests", "abcde");
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-abcde") && !long.contains("--"), "{long}");
        assert!(long.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{long}");
        assert_eq!(random_suffix().len(), SUFFIX_LEN);
    }

    #[test]
    fn the_manifest_carries_the_subject() {
        let check: JobCheck = serde_json::from_value(serde_json::json!({
            "name": "e2e", "image": "tests:{version}", "args": ["--stage", "{stage}"], "env": {"TARGET": "http://{app}"}
        }))
        .unwrap();
        let job = manifest(&check, &subject("hello"), "n");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "tests:1.0");
        assert_eq!(container["args"], serde_json::json!(["--stage", "prod"]));
        let env = container["env"].as_array().unwrap();
        assert!(env.contains(&serde_json::json!({"name": "SLIPWAY_IMAGE", "value": "r/x:1.0"})));
        assert!(env.contains(&serde_json::json!({"name": "TARGET", "value": "http://hello"})));
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert!(serde_json::from_value::<Job>(job).is_ok());
    }
}
