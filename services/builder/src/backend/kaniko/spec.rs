//! The build Job, as pure functions of the plan and `[build.kaniko]`: its name and labels,
//! kaniko's arguments and the pod around them. Unit-tested without a cluster.
//!
//! kaniko clones the commit itself (`--context=git://<host/path>#<ref>#<sha>`: it clones the
//! ref, then checks out the sha; `GIT_PULL_METHOD` says http or https) into
//! `/kaniko/buildcontext`, builds `--context-sub-path` with the Dockerfile given by its
//! absolute path there, pushes every `--destination`, and writes the pushed digest to
//! `--digest-file=/dev/termination-log`, which the kubelet turns into the container's
//! termination message: that is how the digest comes back without reading the log.

use crate::config::KanikoConfig;
use crate::plan::BuildPlan;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use std::path::{Component, Path};

/// Where kaniko unpacks a git context.
const BUILD_CONTEXT_DIR: &str = "/kaniko/buildcontext";
/// The label every build Job and pod carries.
pub const BUILD_ID_LABEL: &str = "slipway.dev/build-id";
/// The annotation with the build id unabridged (labels are capped at 63 characters).
pub const BUILD_ID_ANNOTATION: &str = "slipway.dev/build-id";
/// The container's name in the pod.
pub const CONTAINER: &str = "kaniko";

/// `slipway-build-<build id, DNS-safe, ≤40>-<salt>`: unique per attempt, ≤ 63 characters
/// (the Job controller copies it into the pods' `job-name` label).
pub fn job_name(build_id: &str, salt: u32) -> String {
    let mut id: String = build_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    id = id.trim_matches('-').to_owned();
    format!("slipway-build-{id}-{:06x}", salt & 0x00ff_ffff).replace("--", "-")
}

/// The build id as a label value: ≤ 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn build_id_label(build_id: &str) -> String {
    let value: String = build_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    let value: String = value.chars().take(63).collect();
    value.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// kaniko's git context for `repository` at `git_ref` and `sha`, and the `GIT_PULL_METHOD`
/// it needs (kaniko clones over http or https only).
pub fn git_context(repository: &str, git_ref: &str, sha: &str) -> Result<(String, &'static str), String> {
    let (method, rest) = if let Some(rest) = repository.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = repository.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(format!("kaniko clones over http(s) only; the repository is {repository}"));
    };
    // kaniko splits the context at '#'; git allows it in branch names, and such a ref would
    // be cut short and check out something else.
    if git_ref.contains('#') {
        return Err(format!("kaniko's git context cannot name the ref {git_ref:?}: it contains '#'"));
    }
    let context =
        if git_ref.is_empty() { format!("git://{rest}#{sha}") } else { format!("git://{rest}#{git_ref}#{sha}") };
    Ok((context, method))
}

/// `a/./b/` → `a/b`; `.` → empty.
fn normalized(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// kaniko's command line for `plan`.
pub fn args(plan: &BuildPlan, context: String, registry_tls: bool) -> Vec<String> {
    let mut args = vec![format!("--context={context}")];
    let sub_path = normalized(&plan.app.context);
    if !sub_path.is_empty() {
        args.push(format!("--context-sub-path={sub_path}"));
    }
    args.push(format!("--dockerfile={BUILD_CONTEXT_DIR}/{}", normalized(&plan.app.dockerfile_path())));
    args.extend(plan.app.build_args.iter().map(|(name, value)| format!("--build-arg={name}={value}")));
    args.extend(plan.image_refs().into_iter().map(|image| format!("--destination={image}")));
    args.push("--digest-file=/dev/termination-log".to_owned());
    if !registry_tls {
        // A plain-HTTP registry (a local one): push over http, skip TLS verification.
        args.push("--insecure".to_owned());
        args.push("--skip-tls-verify".to_owned());
    }
    args
}

/// The whole Job: ownerless (the builder is not its owner; the TTL controller removes it),
/// `backoffLimit: 0` (a failed build is reported, not silently retried), the build timeout as
/// `activeDeadlineSeconds` so the cluster stops it even if the builder is gone.
pub fn job(
    plan: &BuildPlan,
    name: &str,
    settings: &KanikoConfig,
    registry_tls: bool,
    timeout_secs: u64,
) -> Result<Job, String> {
    let (context, pull_method) = git_context(&plan.app.repository, &plan.git_ref, plan.commit.as_str())?;
    let labels = json!({
        "app.kubernetes.io/name": "slipway-build",
        "app.kubernetes.io/managed-by": "slipway-builder",
        "slipway.dev/app": plan.app.name.as_str(),
        BUILD_ID_LABEL: build_id_label(&plan.build_id),
    });
    let mut container = json!({
        "name": CONTAINER,
        "image": settings.image,
        "args": args(plan, context, registry_tls),
        "env": [{ "name": "GIT_PULL_METHOD", "value": pull_method }],
        "resources": { "requests": settings.requests, "limits": settings.limits },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    let mut pod = json!({ "restartPolicy": "Never", "containers": [] });
    if let Some(account) = &settings.service_account {
        pod["serviceAccountName"] = json!(account);
    }
    if let Some(secret) = &settings.registry_secret {
        container["volumeMounts"] =
            json!([{ "name": "registry-auth", "mountPath": "/kaniko/.docker", "readOnly": true }]);
        pod["volumes"] = json!([{
            "name": "registry-auth",
            "secret": { "secretName": secret, "items": [{ "key": ".dockerconfigjson", "path": "config.json" }] },
        }]);
    }
    pod["containers"] = Value::Array(vec![container]);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": { BUILD_ID_ANNOTATION: plan.build_id, "slipway.dev/commit": plan.commit.as_str() },
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_secs,
            "activeDeadlineSeconds": timeout_secs,
            "template": { "metadata": { "labels": labels }, "spec": pod },
        },
    });
    serde_json::from_value(job).map_err(|e| format!("build Job spec: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(repository: &str) -> BuildPlan {
        let app = serde_json::from_value(json!({
            "name": "writer", "repository": repository, "context": "apps/writer",
            "image": "registry.local:5000/acme/writer", "moving_tags": ["latest"],
            "build_args": { "RUST_VERSION": "1.95" },
        }))
        .expect("app");
        let config = crate::Config { apps: vec![app], ..crate::Config::default() };
        let request = slipway_mesh::v1::BuildRequested {
            build_id: "gh:42.Build_Writer".to_owned(),
            app: "writer".to_owned(),
            source: Some(slipway_mesh::v1::SourceRef {
                commit_sha: "a".repeat(40),
                r#ref: "refs/heads/main".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::plan::plan(&crate::apps::Apps::Fixed(config.apps.clone()), &request).expect("plan")
    }

    #[test]
    fn names_and_labels_fit_the_api_grammar() {
        let name = job_name(&"X".repeat(100), 0xabc);
        assert!(name.len() <= 63 && name.ends_with("-000abc"), "{name}");
        assert_eq!(job_name("gh:42/Build", 1), "slipway-build-gh-42-build-000001");
        assert_eq!(build_id_label("gh:42/Build_"), "gh_42_Build");
        assert_eq!(build_id_label(&"b".repeat(80)).len(), 63);
    }

    #[test]
    fn the_git_context_pins_ref_and_commit() {
        let ctx = git_context("https://git.example/acme/m.git", "refs/heads/main", "abc").expect("https");
        assert_eq!(ctx, ("git://git.example/acme/m.git#refs/heads/main#abc".to_owned(), "https"));
        assert_eq!(git_context("http://g/r", "", "abc").expect("http").0, "git://g/r#abc");
        assert!(git_context("git://g/r", "refs/heads/main", "abc").is_err());
        let hash = git_context("https://g/r", "refs/heads/fix#12", "abc").expect_err("a '#' in the ref");
        assert!(hash.contains("fix#12"), "{hash}");
    }

    #[test]
    fn the_job_runs_kaniko_with_every_destination_and_the_digest_file() {
        let plan = plan("https://git.example/acme/monorepo.git");
        let settings = KanikoConfig { registry_secret: Some("push-creds".to_owned()), ..KanikoConfig::default() };
        let job =
            serde_json::to_value(job(&plan, "slipway-build-x-1", &settings, false, 600).expect("job")).expect("json");
        let sha = "a".repeat(40);
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], settings.image);
        let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
        assert_eq!(
            args,
            [
                format!("--context=git://git.example/acme/monorepo.git#refs/heads/main#{sha}").as_str(),
                "--context-sub-path=apps/writer",
                "--dockerfile=/kaniko/buildcontext/apps/writer/Dockerfile",
                "--build-arg=RUST_VERSION=1.95",
                &format!("--destination=registry.local:5000/acme/writer:{sha}"),
                "--destination=registry.local:5000/acme/writer:latest",
                "--digest-file=/dev/termination-log",
                "--insecure",
                "--skip-tls-verify",
            ]
        );
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(job["metadata"]["labels"][BUILD_ID_LABEL], "gh_42.Build_Writer");
        assert_eq!(job["metadata"]["annotations"][BUILD_ID_ANNOTATION], "gh:42.Build_Writer");
        assert!(job["metadata"]["ownerReferences"].is_null());
        assert_eq!(job["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], "push-creds");
    }
}
