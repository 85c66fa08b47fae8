use super::*;
use serde_json::json;

const NEW: &str = "registry.example/hello:1.3.0";
const OLD: &str = "registry.example/hello:1.2.0";

/// A canary Rollout as the API returns it: 3 steps (setWeight 20, pause, setWeight 60).
fn rollout(image: &str, status: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "hello", "namespace": "prod", "generation": 7 },
        "spec": {
            "replicas": 5,
            "strategy": { "canary": { "steps": [
                { "setWeight": 20 }, { "pause": { "duration": "1m" } }, { "setWeight": 60 }
            ] } },
            "template": { "spec": { "containers": [ { "name": "hello", "image": image } ] } }
        },
        "status": status
    })
}

#[test]
fn canary_progressing_at_step_one_of_three() {
    let r = rollout(
        NEW,
        json!({
            "observedGeneration": "7", "phase": "Paused", "message": "CanaryPauseStep",
            "currentStepIndex": 1, "currentPodHash": "6f7c9", "stableRS": "58d9f",
            "canary": { "weights": { "canary": { "podTemplateHash": "6f7c9", "weight": 20 },
                                      "stable": { "podTemplateHash": "58d9f", "weight": 80 } } }
        }),
    );
    let RolloutHealth::Progressing { step, steps, weight, message } = health(&r, NEW) else {
        panic!("{:?}", health(&r, NEW))
    };
    assert_eq!((step, steps, weight), (Some(1), Some(3), Some(20)));
    assert!(message.contains("6f7c9"), "{message}");
}

#[test]
fn the_weight_falls_back_to_the_last_set_weight_step() {
    let r = rollout(NEW, json!({ "observedGeneration": "7", "phase": "Progressing", "currentStepIndex": 2 }));
    let RolloutHealth::Progressing { weight, .. } = health(&r, NEW) else { panic!() };
    assert_eq!(weight, Some(60));
}

#[test]
fn healthy_at_the_new_image() {
    let r = rollout(
        NEW,
        json!({
            "observedGeneration": "7", "phase": "Healthy", "currentStepIndex": 3,
            "currentPodHash": "6f7c9", "stableRS": "6f7c9"
        }),
    );
    assert_eq!(health(&r, NEW), RolloutHealth::Healthy);
}

#[test]
fn healthy_but_still_the_old_image_is_progressing() {
    let r = rollout(
        OLD,
        json!({
            "observedGeneration": "7", "phase": "Healthy", "currentPodHash": "58d9f", "stableRS": "58d9f"
        }),
    );
    let RolloutHealth::Progressing { message, .. } = health(&r, NEW) else { panic!() };
    assert!(message.contains(OLD), "{message}");
    // The new spec written but not yet observed by the controller: not healthy either.
    let unobserved = rollout(NEW, json!({ "observedGeneration": "6", "phase": "Healthy" }));
    assert!(matches!(health(&unobserved, NEW), RolloutHealth::Progressing { .. }));
}

#[test]
fn degraded() {
    let r = rollout(
        NEW,
        json!({
            "observedGeneration": "7", "phase": "Degraded",
            "message": "ProgressDeadlineExceeded: ReplicaSet \"hello-6f7c9\" has timed out progressing."
        }),
    );
    let RolloutHealth::Degraded(message) = health(&r, NEW) else { panic!() };
    assert!(message.starts_with("ProgressDeadlineExceeded"), "{message}");
}

#[test]
fn aborted() {
    let r = rollout(
        NEW,
        json!({
            "observedGeneration": "7", "phase": "Degraded", "abort": true,
            "message": "RolloutAborted: Rollout aborted update to revision 4: metric \"success-rate\" assessed Failed",
            "currentStepIndex": 0, "currentPodHash": "6f7c9", "stableRS": "58d9f"
        }),
    );
    let RolloutHealth::Aborted(message) = health(&r, NEW) else { panic!("{:?}", health(&r, NEW)) };
    assert!(message.contains("RolloutAborted"), "{message}");
}
