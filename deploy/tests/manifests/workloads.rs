//! Deployments and StatefulSets: their pod templates and the rules every container follows.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec, Probe};
use serde_json::Value as Json;
use std::collections::BTreeMap;

use super::str_at;

/// The pod templates of the Deployments and StatefulSets among `docs`, by workload name.
pub fn workloads<'a>(docs: impl IntoIterator<Item = &'a Json>) -> BTreeMap<String, PodTemplateSpec> {
    let mut out = BTreeMap::new();
    for doc in docs {
        let template = match str_at(doc, "/kind") {
            "Deployment" => {
                serde_json::from_value::<Deployment>(doc.clone()).ok().and_then(|d| d.spec).map(|s| s.template)
            }
            "StatefulSet" => {
                serde_json::from_value::<StatefulSet>(doc.clone()).ok().and_then(|s| s.spec).map(|s| s.template)
            }
            _ => continue,
        };
        out.insert(str_at(doc, "/metadata/name").to_owned(), template.expect("a pod template"));
    }
    out
}

fn probe_path(probe: Option<&Probe>) -> Option<&str> {
    let path = probe?.http_get.as_ref()?.path.as_deref()?;
    Some(path.split_once('?').map_or(path, |(p, _)| p))
}

/// What every container of every workload must have; errors name the workload and container.
pub fn check_workload(name: &str, template: &PodTemplateSpec, errors: &mut Vec<String>) {
    let pod = template.spec.as_ref().expect("a pod spec");
    let pod_sc = pod.security_context.as_ref();
    let seccomp = pod_sc.and_then(|s| s.seccomp_profile.as_ref()).map(|s| s.type_.as_str());
    if seccomp != Some("RuntimeDefault") {
        errors.push(format!("{name}: seccompProfile RuntimeDefault"));
    }
    let pod_non_root = pod_sc.and_then(|s| s.run_as_non_root) == Some(true);
    for c in &pod.containers {
        let at = format!("{name}/{}", c.name);
        check_container(&at, c, pod_non_root, errors);
        // NATS is not ours: it has no /readyz; its readiness is /healthz?js-server-only=true.
        let readiness = if name == "nats" { "/healthz" } else { "/readyz" };
        if probe_path(c.liveness_probe.as_ref()) != Some("/healthz") {
            errors.push(format!("{at}: liveness probe on /healthz"));
        }
        if probe_path(c.readiness_probe.as_ref()) != Some(readiness) {
            errors.push(format!("{at}: readiness probe on {readiness}"));
        }
    }
}

fn check_container(at: &str, c: &Container, pod_non_root: bool, errors: &mut Vec<String>) {
    let sc = c.security_context.as_ref();
    if !(pod_non_root || sc.and_then(|s| s.run_as_non_root) == Some(true)) {
        errors.push(format!("{at}: runAsNonRoot"));
    }
    if sc.and_then(|s| s.read_only_root_filesystem) != Some(true) {
        errors.push(format!("{at}: readOnlyRootFilesystem"));
    }
    if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
        errors.push(format!("{at}: allowPrivilegeEscalation false"));
    }
    let drop = sc.and_then(|s| s.capabilities.as_ref()).and_then(|c| c.drop.as_ref());
    if !drop.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
        errors.push(format!("{at}: capabilities drop ALL"));
    }
    let resources = c.resources.as_ref();
    for (what, map) in [
        ("limits", resources.and_then(|r| r.limits.as_ref())),
        ("requests", resources.and_then(|r| r.requests.as_ref())),
    ] {
        if !map.is_some_and(|m| m.contains_key("cpu") && m.contains_key("memory")) {
            errors.push(format!("{at}: cpu and memory {what}"));
        }
    }
}
