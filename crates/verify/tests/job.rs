//! Job checks against the fake Kubernetes API, the test playing the Job controller: a Job
//! that completes passes, one that fails fails, one that never finishes fails at the timeout,
//! every Job is deleted afterwards, and without a cluster the check is an Error.

use std::time::Duration;

use serde_json::{Value, json};
use slipway_catalog::verify::Check;
use slipway_testkit::kube::FakeKube;
use slipway_verify::{Measurement, Outcome, Subject, Verdict, Verifier};
use tokio_util::sync::CancellationToken;

fn subject() -> Subject {
    Subject { app: "hello".into(), stage: "prod".into(), version: "1.3.0".into(), image: "r/hello:1.3.0".into() }
}

fn check(timeout_seconds: u64) -> Check {
    serde_json::from_value(json!({ "job": {
        "name": "e2e", "image": "tests:{version}", "namespace": "verify", "args": ["--stage", "{stage}"],
        "env": { "TARGET": "http://{app}.{stage}" }, "timeoutSeconds": timeout_seconds
    }}))
    .unwrap()
}

fn verifier(kube: &FakeKube) -> Verifier {
    let config = kube::Config::new(kube.url().parse().unwrap());
    Verifier::new(Some(kube::Client::try_from(config).unwrap())).unwrap()
}

/// Runs the check while the test, as the Job controller, gives the Job `status` once it
/// exists (none: the Job never finishes); the outcome and the Job as created.
async fn run_with(kube: &FakeKube, timeout_seconds: u64, status: Option<Value>) -> (Outcome, Value) {
    let verifier = verifier(kube);
    let check = check(timeout_seconds);
    let subject = subject();
    let mut on_measurement = |_: &Measurement| {};
    let stop = CancellationToken::new();
    let running = verifier.run(&check, &subject, &mut on_measurement, &stop);
    let controller = async {
        let job = kube.wait_for(Duration::from_secs(10), |k| k.objects("Job").into_iter().next()).await.expect("a Job");
        let name = job["metadata"]["name"].as_str().unwrap().to_owned();
        if let Some(status) = status {
            kube.update_status("Job", "verify", &name, json!({ "active": 1 })).unwrap();
            kube.update_status("Job", "verify", &name, status).unwrap();
        }
        job
    };
    let (outcome, job) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(running, controller) })
        .await
        .expect("the check ends");
    (outcome, job)
}

fn assert_deleted(kube: &FakeKube, job: &Value) {
    let name = job["metadata"]["name"].as_str().unwrap();
    let deletions = kube.deletions();
    assert!(
        deletions.iter().any(|d| d.kind == "Job" && d.name == name && d.propagation.as_deref() == Some("Background")),
        "{deletions:?}"
    );
    assert!(kube.objects("Job").is_empty(), "the Job is gone");
}

#[tokio::test]
async fn a_complete_job_passes_and_is_deleted() {
    let kube = FakeKube::start().await.unwrap();
    let complete = json!({ "active": 0, "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] });
    let (outcome, job) = run_with(&kube, 60, Some(complete)).await;
    assert_eq!(outcome.verdict, Verdict::Successful, "{outcome:?}");
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("slipway-verify-hello-prod-e2e-") && name.len() <= 63, "{name}");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "tests:1.3.0");
    assert_eq!(container["args"], json!(["--stage", "prod"]));
    let env = container["env"].as_array().unwrap();
    for (k, v) in [
        ("SLIPWAY_APP", "hello"),
        ("SLIPWAY_STAGE", "prod"),
        ("SLIPWAY_VERSION", "1.3.0"),
        ("SLIPWAY_IMAGE", "r/hello:1.3.0"),
        ("TARGET", "http://hello.prod"),
    ] {
        assert!(env.contains(&json!({ "name": k, "value": v })), "{k} in {env:?}");
    }
    assert_deleted(&kube, &job);
}

#[tokio::test]
async fn a_failed_job_fails_and_is_deleted() {
    let kube = FakeKube::start().await.unwrap();
    let failed = json!({ "active": 0, "failed": 1, "conditions": [{
        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"
    }] });
    let (outcome, job) = run_with(&kube, 60, Some(failed)).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{outcome:?}");
    assert_deleted(&kube, &job);
}

#[tokio::test]
async fn a_job_that_never_finishes_fails_at_the_timeout_and_is_deleted() {
    let kube = FakeKube::start().await.unwrap();
    let mut seen = Vec::new();
    let mut on_measurement = |m: &Measurement| seen.push(m.clone());
    let verifier = verifier(&kube);
    let outcome = verifier.run(&check(1), &subject(), &mut on_measurement, &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{outcome:?}");
    assert!(seen[0].message.contains("did not finish within 1s"), "{seen:?}");
    assert_eq!(kube.deletions().len(), 1);
    assert!(kube.objects("Job").is_empty());
}

#[tokio::test]
async fn without_a_cluster_the_check_is_an_error() {
    let verifier = Verifier::new(None).unwrap();
    let mut seen = Vec::new();
    let mut on_measurement = |m: &Measurement| seen.push(m.clone());
    let outcome = verifier.run(&check(60), &subject(), &mut on_measurement, &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Error);
    assert!(seen[0].message.contains("no Kubernetes client"), "{seen:?}");
}

#[tokio::test]
async fn stopping_deletes_the_job_in_flight() {
    let kube = FakeKube::start().await.unwrap();
    let verifier = verifier(&kube);
    let stop = CancellationToken::new();
    let mut on_measurement = |_: &Measurement| {};
    let check = check(60);
    let subject = subject();
    let running = verifier.run(&check, &subject, &mut on_measurement, &stop);
    let stopper = async {
        kube.wait_for(Duration::from_secs(10), |k| k.objects("Job").into_iter().next()).await.expect("a Job");
        stop.cancel();
    };
    let (outcome, ()) = tokio::join!(running, stopper);
    assert_eq!(outcome.verdict, Verdict::Successful, "a terminated analysis: {outcome:?}");
    assert_eq!(outcome.measurements, 0);
    assert!(kube.objects("Job").is_empty(), "deleted");
}
