//! An Argo Rollouts `Rollout`'s health for a deploy of `image`, read from the object as the
//! Kubernetes API returns it (JSON, so no Argo Rollouts types are needed): the controller's
//! `status.phase`, whether it has observed the current spec, whether the rollout is at the
//! new revision, and where a canary stands (step, steps, weight).

use serde_json::Value;

/// Where a Rollout stands for the deploy of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutHealth {
    /// Fully rolled out to `image`: the phase is Healthy, the spec observed, the template's
    /// image is `image` and the stable revision is the current one.
    Healthy,
    /// On its way (or paused at a canary step); `step` is `status.currentStepIndex`, `steps`
    /// the number of canary steps, `weight` the canary's traffic weight in percent.
    Progressing { step: Option<u32>, steps: Option<u32>, weight: Option<u32>, message: String },
    /// The controller reports it Degraded (progress deadline exceeded, invalid spec, ...).
    Degraded(String),
    /// Aborted (`status.abort`): traffic is back on the stable revision.
    Aborted(String),
}

/// The Rollout's health for the deploy of `image`.
pub fn health(rollout: &Value, image: &str) -> RolloutHealth {
    let status = &rollout["status"];
    let message = status["message"].as_str().unwrap_or_default().to_owned();
    if status["abort"].as_bool() == Some(true) {
        let why = if message.is_empty() { "the rollout was aborted".to_owned() } else { message };
        return RolloutHealth::Aborted(why);
    }
    let phase = status["phase"].as_str().unwrap_or_default();
    if phase == "Degraded" {
        return RolloutHealth::Degraded(if message.is_empty() { "Degraded".to_owned() } else { message });
    }
    let progressing = |message: String| RolloutHealth::Progressing {
        step: u32_of(&status["currentStepIndex"]),
        steps: rollout["spec"]["strategy"]["canary"]["steps"].as_array().map(|s| s.len() as u32),
        weight: canary_weight(rollout),
        message,
    };
    if !generation_observed(rollout) {
        return progressing("waiting for the rollout spec update to be observed".to_owned());
    }
    if !template_images(rollout).contains(&image) {
        let running = template_images(rollout).join(", ");
        return progressing(format!("the rollout's template runs {running}, not {image} yet"));
    }
    let (stable, current) = (status["stableRS"].as_str(), status["currentPodHash"].as_str());
    if let (Some(stable), Some(current)) = (stable, current)
        && stable != current
    {
        return progressing(format!("revision {current} is not stable yet (stable: {stable})"));
    }
    match phase {
        "Healthy" => RolloutHealth::Healthy,
        "" => progressing("the controller has not reported a phase yet".to_owned()),
        other if message.is_empty() => progressing(other.to_owned()),
        other => progressing(format!("{other}: {message}")),
    }
}

/// Whether `status.observedGeneration` (a string in Argo Rollouts) caught up with
/// `metadata.generation`; a value that is not a number (pre-1.0 hashes) counts as observed.
fn generation_observed(rollout: &Value) -> bool {
    let observed = &rollout["status"]["observedGeneration"];
    let observed = observed.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| observed.as_i64());
    match (observed, rollout["metadata"]["generation"].as_i64()) {
        (Some(observed), Some(generation)) => observed >= generation,
        (None, _) if rollout["status"]["observedGeneration"].is_string() => true,
        (None, _) => false,
        (Some(_), None) => true,
    }
}

fn template_images(rollout: &Value) -> Vec<&str> {
    let containers = rollout["spec"]["template"]["spec"]["containers"].as_array();
    containers.into_iter().flatten().filter_map(|c| c["image"].as_str()).collect()
}

/// The canary's weight: what the traffic router reports, else the last `setWeight` step
/// reached.
fn canary_weight(rollout: &Value) -> Option<u32> {
    if let Some(weight) = u32_of(&rollout["status"]["canary"]["weights"]["canary"]["weight"]) {
        return Some(weight);
    }
    let steps = rollout["spec"]["strategy"]["canary"]["steps"].as_array()?;
    let reached = u32_of(&rollout["status"]["currentStepIndex"])? as usize;
    steps.iter().take(reached + 1).filter_map(|s| u32_of(&s["setWeight"])).next_back()
}

fn u32_of(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests;
