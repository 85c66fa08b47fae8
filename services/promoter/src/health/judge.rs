//! Pure reading of a watched object: has our change landed (synced), and is the result
//! healthy, degraded, or still on its way? One function per kind of object, plus the
//! [`Tracker`] that turns a sequence of observations into the events to publish, each once.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;
use slipway_mesh::v1::ImageRef;

/// How the watched object looks right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not decided yet; the text says why (it ends up in a timeout's message).
    Pending(String),
    Healthy,
    Degraded {
        status: String,
        message: String,
    },
}

/// One look at the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Our change is applied (Argo CD synced our commit / the Deployment runs our image).
    pub synced: bool,
    pub health: Health,
}

impl Observation {
    fn pending(synced: bool, why: impl Into<String>) -> Self {
        Self { synced, health: Health::Pending(why.into()) }
    }
}

fn is_commit(v: &Value, commit: &str) -> bool {
    v["revision"].as_str() == Some(commit)
        || v["revisions"].as_array().is_some_and(|r| r.iter().any(|x| x.as_str() == Some(commit)))
}

/// An Argo CD `Application` (its fields besides metadata) against our GitOps `commit`.
/// Synced: `status.sync.revision` (or one of `revisions`, for multi-source apps) is the
/// commit and the sync status is `Synced`. Health counts only once synced and no sync
/// operation is running, since the health shown before that belongs to the previous version.
pub fn application(data: &Value, commit: &str) -> Observation {
    let status = &data["status"];
    let sync = &status["sync"];
    let sync_status = sync["status"].as_str().unwrap_or("Unknown");
    let operation = &status["operationState"];
    let phase = operation["phase"].as_str().unwrap_or("");
    let health = status["health"]["status"].as_str().unwrap_or("Unknown");
    if is_commit(&operation["syncResult"], commit) && matches!(phase, "Failed" | "Error") {
        let message = operation["message"].as_str().unwrap_or("sync failed").to_owned();
        return Observation { synced: false, health: Health::Degraded { status: format!("Sync{phase}"), message } };
    }
    let synced = is_commit(sync, commit) && sync_status == "Synced";
    let seen = format!("sync {sync_status}, health {health}");
    if !synced || matches!(phase, "Running" | "Terminating") {
        return Observation::pending(synced, seen);
    }
    match health {
        "Healthy" => Observation { synced, health: Health::Healthy },
        "Degraded" | "Missing" => {
            let message = status["health"]["message"].as_str().unwrap_or_default().to_owned();
            Observation { synced, health: Health::Degraded { status: health.to_owned(), message } }
        }
        _ => Observation::pending(synced, seen),
    }
}

/// The parts of an image reference `repo[:tag][@digest]` (a `:` before the last `/` is a port).
fn split_image(image: &str) -> (&str, &str, &str) {
    let (name, digest) = image.split_once('@').unwrap_or((image, ""));
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], &name[i + 1..], digest),
        _ => (name, "", digest),
    }
}

/// True when a container's `image` is the promoted one: same repository, and the same
/// digest when both name one, else the same tag.
pub fn image_matches(image: &str, want: &ImageRef) -> bool {
    let (repository, tag, digest) = split_image(image);
    if repository != want.repository {
        return false;
    }
    if !digest.is_empty() && !want.digest.is_empty() {
        return digest == want.digest;
    }
    !tag.is_empty() && tag == want.tag
}

/// A `Deployment` against the promoted image, judged like `kubectl rollout status`: the
/// controller has seen the spec, every replica is updated and available and no old one is
/// left; `ProgressDeadlineExceeded` is degraded.
pub fn deployment(d: &Deployment, want: &ImageRef, container: Option<&str>) -> Observation {
    let spec = d.spec.clone().unwrap_or_default();
    let pod = spec.template.spec.unwrap_or_default();
    let ours = pod
        .containers
        .iter()
        .filter(|c| container.is_none_or(|n| c.name == n))
        .any(|c| c.image.as_deref().is_some_and(|i| image_matches(i, want)));
    if !ours {
        return Observation::pending(false, "the promoted image is not in the Deployment yet");
    }
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Observation::pending(true, "the rollout is not observed yet");
    }
    let conditions = status.conditions.unwrap_or_default();
    let deadline =
        conditions.iter().find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    if let Some(c) = deadline {
        let message = c.message.clone().unwrap_or_default();
        return Observation {
            synced: true,
            health: Health::Degraded { status: "ProgressDeadlineExceeded".into(), message },
        };
    }
    let want_replicas = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated == want_replicas && available == want_replicas && total == want_replicas {
        return Observation { synced: true, health: Health::Healthy };
    }
    let why = format!("{updated}/{want_replicas} updated, {available} available, {total} total");
    Observation::pending(true, why)
}

/// An Argo Rollouts `Rollout` against the promoted image (its status read by
/// [`slipway_verify::rollout::health`]): healthy when Healthy at that image, degraded when
/// Degraded or aborted, pending with the canary step and weight while it progresses.
pub fn rollout(data: &Value, want: &ImageRef) -> Observation {
    use slipway_verify::rollout::RolloutHealth;
    let ours = data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().filter_map(|c| c["image"].as_str()).find(|i| image_matches(i, want)));
    let Some(image) = ours else {
        return Observation::pending(false, "the promoted image is not in the Rollout yet");
    };
    match slipway_verify::rollout::health(data, image) {
        RolloutHealth::Healthy => Observation { synced: true, health: Health::Healthy },
        RolloutHealth::Degraded(message) => {
            Observation { synced: true, health: Health::Degraded { status: "Degraded".into(), message } }
        }
        RolloutHealth::Aborted(message) => {
            Observation { synced: true, health: Health::Degraded { status: "Aborted".into(), message } }
        }
        RolloutHealth::Progressing { step, steps, weight, message } => {
            let mut why = String::from("progressing");
            if let (Some(step), Some(steps)) = (step, steps) {
                why = format!("{why}: canary step {step}/{steps}");
            }
            if let Some(weight) = weight {
                why = format!("{why}, weight {weight}%");
            }
            if !message.is_empty() {
                why = format!("{why} ({message})");
            }
            Observation::pending(true, why)
        }
    }
}

/// Something to publish, decided by the [`Tracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Synced,
    Healthy,
    Degraded { status: String, message: String },
}

/// Turns observations into verdicts: synced and healthy once each, degraded once and last.
#[derive(Debug, Default)]
pub struct Tracker {
    pub synced: bool,
    pub healthy: bool,
    pub degraded: bool,
    /// Why the last observation was not decided.
    pub last: String,
}

impl Tracker {
    /// The verdicts `seen` adds, in order.
    pub fn observe(&mut self, seen: &Observation) -> Vec<Verdict> {
        let mut out = Vec::new();
        if self.degraded {
            return out;
        }
        if seen.synced && !self.synced {
            self.synced = true;
            out.push(Verdict::Synced);
        }
        match &seen.health {
            Health::Pending(why) => self.last.clone_from(why),
            Health::Healthy if !self.healthy => {
                self.healthy = true;
                out.push(Verdict::Healthy);
            }
            Health::Healthy => {}
            Health::Degraded { status, message } => {
                self.degraded = true;
                out.push(Verdict::Degraded { status: status.clone(), message: message.clone() });
            }
        }
        out
    }

    /// The object is gone (deleted, or not there): after a sync that is a degradation.
    pub fn missing(&mut self, what: &str) -> Vec<Verdict> {
        if self.synced && !self.degraded {
            self.degraded = true;
            return vec![Verdict::Degraded { status: "Missing".into(), message: format!("{what} not found") }];
        }
        self.last = format!("{what} not found");
        Vec::new()
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
