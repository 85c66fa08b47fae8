use serde_json::json;

use super::*;

const COMMIT: &str = "c0ffee";

fn app(sync: &str, revision: &str, health: &str) -> Value {
    json!({ "status": {
        "sync": { "status": sync, "revision": revision },
        "health": { "status": health, "message": "from argo" },
    }})
}

fn image(tag: &str, digest: &str) -> ImageRef {
    ImageRef { repository: "registry.local:5000/acme/web".into(), tag: tag.into(), digest: digest.into() }
}

#[test]
fn an_application_counts_only_once_it_synced_our_commit() {
    let old_healthy = application(&app("Synced", "0ld", "Healthy"), COMMIT);
    assert_eq!(old_healthy, Observation::pending(false, "sync Synced, health Healthy"));
    assert!(!application(&app("OutOfSync", COMMIT, "Healthy"), COMMIT).synced);
    let progressing = application(&app("Synced", COMMIT, "Progressing"), COMMIT);
    assert_eq!(progressing, Observation::pending(true, "sync Synced, health Progressing"));
    assert_eq!(application(&app("Synced", COMMIT, "Healthy"), COMMIT).health, Health::Healthy);
    let degraded = Health::Degraded { status: "Degraded".into(), message: "from argo".into() };
    assert_eq!(application(&app("Synced", COMMIT, "Degraded"), COMMIT).health, degraded);
    assert!(matches!(application(&app("Synced", COMMIT, "Missing"), COMMIT).health, Health::Degraded { .. }));
    let multi = json!({ "status": { "sync": { "status": "Synced", "revisions": ["x", COMMIT] }, "health": { "status": "Healthy" } } });
    assert_eq!(application(&multi, COMMIT).health, Health::Healthy);
}

#[test]
fn a_running_or_failed_sync_operation_is_not_healthy() {
    let mut running = app("Synced", COMMIT, "Healthy");
    running["status"]["operationState"] = json!({ "phase": "Running", "syncResult": { "revision": COMMIT } });
    assert!(matches!(application(&running, COMMIT).health, Health::Pending(_)));
    let mut failed = app("OutOfSync", "0ld", "Healthy");
    failed["status"]["operationState"] =
        json!({ "phase": "Failed", "message": "hook failed", "syncResult": { "revision": COMMIT } });
    let seen = application(&failed, COMMIT);
    assert_eq!(seen.health, Health::Degraded { status: "SyncFailed".into(), message: "hook failed".into() });
}

#[test]
fn images_match_by_digest_when_both_have_one_else_by_tag() {
    let repo = "registry.local:5000/acme/web";
    assert!(image_matches(&format!("{repo}:v1"), &image("v1", "")));
    assert!(image_matches(&format!("{repo}:v1"), &image("v1", "sha256:aa")));
    assert!(image_matches(&format!("{repo}@sha256:aa"), &image("v1", "sha256:aa")));
    assert!(image_matches(&format!("{repo}:v2@sha256:aa"), &image("v1", "sha256:aa")));
    assert!(!image_matches(&format!("{repo}:v1@sha256:bb"), &image("v1", "sha256:aa")));
    assert!(!image_matches(&format!("{repo}:v2"), &image("v1", "")));
    assert!(!image_matches(repo, &image("v1", "")), "no tag is not v1");
    assert!(!image_matches("registry.local:5000/acme/api:v1", &image("v1", "")));
}

fn deployment_json(image: &str, generation: i64, status: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "dev", "generation": generation },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "spec": { "containers": [{ "name": "web", "image": image }] } },
        },
        "status": status,
    }))
    .expect("deployment")
}

#[test]
fn a_deployment_is_healthy_when_every_replica_runs_our_image() {
    let want = image("v1", "");
    let ours = "registry.local:5000/acme/web:v1";
    let old = deployment_json("registry.local:5000/acme/web:v0", 2, json!({ "observedGeneration": 2 }));
    assert!(!deployment(&old, &want, None).synced);
    let unobserved = deployment_json(ours, 3, json!({ "observedGeneration": 2 }));
    assert_eq!(deployment(&unobserved, &want, None), Observation::pending(true, "the rollout is not observed yet"));
    let rolling = json!({ "observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2 });
    let seen = deployment(&deployment_json(ours, 3, rolling), &want, None);
    assert_eq!(seen, Observation::pending(true, "2/2 updated, 2 available, 3 total"));
    let done = json!({ "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 });
    assert_eq!(deployment(&deployment_json(ours, 3, done.clone()), &want, None).health, Health::Healthy);
    assert!(!deployment(&deployment_json(ours, 3, done), &want, Some("sidecar")).synced);
    let stuck = json!({ "observedGeneration": 3, "conditions": [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow",
    }]});
    let degraded = Health::Degraded { status: "ProgressDeadlineExceeded".into(), message: "too slow".into() };
    assert_eq!(deployment(&deployment_json(ours, 3, stuck), &want, None).health, degraded);
}

#[test]
fn the_tracker_reports_each_verdict_once_and_degraded_last() {
    let mut t = Tracker::default();
    assert_eq!(t.missing("application argocd/web-dev"), vec![]);
    assert_eq!(t.observe(&Observation::pending(true, "progressing")), vec![Verdict::Synced]);
    assert_eq!(t.last, "progressing");
    let healthy = Observation { synced: true, health: Health::Healthy };
    assert_eq!(t.observe(&healthy), vec![Verdict::Healthy]);
    assert_eq!(t.observe(&healthy), vec![]);
    let degraded =
        Observation { synced: true, health: Health::Degraded { status: "Degraded".into(), message: String::new() } };
    assert_eq!(t.observe(&degraded).len(), 1);
    assert_eq!(t.observe(&degraded), vec![]);
    let mut gone = Tracker::default();
    gone.observe(&Observation::pending(true, "syncing"));
    let verdicts = gone.missing("application argocd/web-dev");
    assert!(matches!(&verdicts[..], [Verdict::Degraded { status, .. }] if status == "Missing"), "{verdicts:?}");
}
