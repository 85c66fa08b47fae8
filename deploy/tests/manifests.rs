//! Checks every manifest under `deploy/` without a cluster:
//! - each document parses into its `k8s-openapi` type, and no key of the YAML is lost when the
//!   typed object is serialized again (the types ignore unknown fields; this makes them fail);
//! - every path a kustomization names exists, and every patch and `replicas` entry targets
//!   an object the kustomization builds;
//! - every workload is probed, non-root, read-only and resource-limited;
//! - every service's ConfigMap loads into that service's `Config` (`deny_unknown_fields`),
//!   and its ports, files and writable directories match the pod around it;
//! - where `kubectl` is installed, both overlays render and pass the same checks.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SERVICES: [&str; 4] = ["ingest", "builder", "promoter", "notifier"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.yaml` under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The documents of a multi-document YAML text, as JSON values (empty documents dropped).
fn parse_documents(text: &str, origin: &str) -> Vec<Json> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: {e}"));
            serde_json::to_value(value).unwrap_or_else(|e| panic!("{origin}: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn documents(path: &Path) -> Vec<Json> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text, &path.display().to_string())
}

fn str_at<'a>(doc: &'a Json, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Json::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Typed parsing with unknown fields failing

type RoundTrip = fn(&Json) -> Result<Json, String>;

fn round_trip<K: k8s_openapi::Resource + DeserializeOwned + Serialize>(doc: &Json) -> Result<Json, String> {
    let typed: K = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

macro_rules! kinds {
    ($($t:ty),* $(,)?) => {
        vec![$((<$t as k8s_openapi::Resource>::API_VERSION, <$t as k8s_openapi::Resource>::KIND, round_trip::<$t> as RoundTrip)),*]
    };
}

/// The kinds deploy/ uses (plus Job, the builder's), by `apiVersion` and `kind`.
fn known_kinds() -> Vec<(&'static str, &'static str, RoundTrip)> {
    kinds![
        Namespace,
        ServiceAccount,
        Service,
        ConfigMap,
        Secret,
        PersistentVolumeClaim,
        Deployment,
        StatefulSet,
        Job,
        PodDisruptionBudget,
        HorizontalPodAutoscaler,
        NetworkPolicy,
        Role,
        RoleBinding,
        ClusterRole,
        ClusterRoleBinding,
    ]
}

/// Keys of `input` that `output` lacks, as JSON paths: what the typed parse dropped.
fn lost_keys(input: &Json, output: &Json, at: &str, lost: &mut Vec<String>) {
    match (input, output) {
        (Json::Object(a), Json::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(again) => lost_keys(value, again, &format!("{at}.{key}"), lost),
                    None => lost.push(format!("{at}.{key}")),
                }
            }
        }
        (Json::Array(a), Json::Array(b)) => {
            for (i, value) in a.iter().enumerate() {
                match b.get(i) {
                    Some(again) => lost_keys(value, again, &format!("{at}[{i}]"), lost),
                    None => lost.push(format!("{at}[{i}]")),
                }
            }
        }
        (Json::Object(_) | Json::Array(_), _) => lost.push(format!("{at} (changed shape)")),
        _ => {}
    }
}

/// Parses one document into its type; an error names what is wrong.
fn check_document(doc: &Json) -> Result<(), String> {
    let (api_version, kind) = (str_at(doc, "/apiVersion"), str_at(doc, "/kind"));
    if api_version.is_empty() || kind.is_empty() || str_at(doc, "/metadata/name").is_empty() {
        return Err("apiVersion, kind and metadata.name are required".to_owned());
    }
    let Some((_, _, parse)) = known_kinds().into_iter().find(|(v, k, _)| *v == api_version && *k == kind) else {
        // A CRD (an Argo CD Application, say) is not in k8s-openapi; only a Kubernetes group
        // that k8s-openapi covers must be known, so a typo there does not slip through.
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        return if group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io") {
            Err(format!("{api_version} {kind} is not a kind this test knows"))
        } else {
            Ok(())
        };
    };
    let typed = parse(doc)?;
    let mut lost = Vec::new();
    lost_keys(doc, &typed, "", &mut lost);
    if lost.is_empty() { Ok(()) } else { Err(format!("unknown fields {lost:?}")) }
}

// ---------------------------------------------------------------------------------------------
// Kustomizations

/// A kustomization.yaml, its directory and the files and directories it names.
struct Kustomization {
    dir: PathBuf,
    doc: Json,
}

const KUSTOMIZATION_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "resources",
    "bases",
    "components",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "replicas",
    "replacements",
    "crds",
    "openapi",
    "helmCharts",
    "buildMetadata",
    "vars",
    "transformers",
    "generators",
    "validators",
    "sortOptions",
];

fn kustomizations() -> Vec<Kustomization> {
    yaml_files(&root())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
        .map(|path| {
            let mut docs = documents(&path);
            assert_eq!(docs.len(), 1, "{}: one document", path.display());
            let dir = path.parent().expect("a parent").canonicalize().expect("a directory");
            Kustomization { dir, doc: docs.remove(0) }
        })
        .collect()
}

impl Kustomization {
    fn list(&self, key: &str) -> Vec<&Json> {
        self.doc.get(key).and_then(Json::as_array).map(|a| a.iter().collect()).unwrap_or_default()
    }

    /// `resources`, `bases` and `components`: files or directories with a kustomization.
    fn resources(&self) -> Vec<PathBuf> {
        ["resources", "bases", "components"]
            .iter()
            .flat_map(|key| self.list(key))
            .filter_map(Json::as_str)
            .filter(|r| !r.contains("://"))
            .map(|r| self.dir.join(r))
            .collect()
    }

    /// Patch files (`patches[].path`, `patchesStrategicMerge`, `patchesJson6902[].path`).
    fn patches(&self) -> Vec<PathBuf> {
        let with_path = self.list("patches").into_iter().chain(self.list("patchesJson6902"));
        let paths = with_path.filter_map(|p| p.get("path").and_then(Json::as_str));
        let smp = self.list("patchesStrategicMerge").into_iter().filter_map(Json::as_str);
        paths.chain(smp).map(|p| self.dir.join(p)).collect()
    }

    /// Generator inputs: `files` (`key=path` or `path`), `envs` and `env`.
    fn generator_files(&self) -> Vec<PathBuf> {
        let generators = self.list("configMapGenerator").into_iter().chain(self.list("secretGenerator"));
        let mut out = Vec::new();
        for generator in generators {
            for key in ["files", "envs"] {
                for file in generator.get(key).and_then(Json::as_array).into_iter().flatten() {
                    let file = file.as_str().unwrap_or_default();
                    out.push(self.dir.join(file.split_once('=').map_or(file, |(_, path)| path)));
                }
            }
            if let Some(env) = generator.get("env").and_then(Json::as_str) {
                out.push(self.dir.join(env));
            }
        }
        out
    }

    /// The (kind, name) of everything this kustomization builds, generators included.
    fn objects(&self, all: &[Kustomization]) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for resource in self.resources() {
            if resource.is_dir() {
                let resource = resource.canonicalize().expect("a directory");
                let inner = all.iter().find(|k| k.dir == resource).expect("a kustomization in the directory");
                out.extend(inner.objects(all));
            } else {
                for doc in documents(&resource) {
                    out.insert((str_at(&doc, "/kind").to_owned(), str_at(&doc, "/metadata/name").to_owned()));
                }
            }
        }
        for (key, kind) in [("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")] {
            for generator in self.list(key) {
                out.insert((kind.to_owned(), str_at(generator, "/name").to_owned()));
            }
        }
        out
    }
}

/// Every file a kustomization uses as a patch: partial objects, not parsed as whole ones.
fn patch_files() -> BTreeSet<PathBuf> {
    // A missing patch is reported by the kustomization test, not here.
    kustomizations().iter().flat_map(Kustomization::patches).filter_map(|p| p.canonicalize().ok()).collect()
}

/// Every YAML document that is a whole object (not a kustomization, not a patch).
fn manifests() -> Vec<(PathBuf, Json)> {
    let patches = patch_files();
    yaml_files(&root())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .filter(|p| !patches.contains(&p.canonicalize().expect("a file")))
        .flat_map(|p| documents(&p).into_iter().map(move |d| (p.clone(), d)))
        .collect()
}

#[path = "manifests/workloads.rs"]
mod workloads;
use workloads::{check_workload, workloads};

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_manifest_parses_into_its_kubernetes_type_without_unknown_fields() {
    let manifests = manifests();
    assert!(manifests.len() > 30, "only {} manifests found", manifests.len());
    let errors: Vec<String> = manifests
        .iter()
        .filter_map(|(path, doc)| {
            let id = format!("{} {} {}", path.display(), str_at(doc, "/kind"), str_at(doc, "/metadata/name"));
            check_document(doc).err().map(|e| format!("{id}: {e}"))
        })
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_unknown_field_check_catches_a_misspelt_key() {
    let doc = parse_documents("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selctor: {a: b}}\n", "t");
    let error = check_document(&doc[0]).expect_err("selctor is not a field");
    assert!(error.contains(".spec.selctor"), "{error}");
    let doc = parse_documents("apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: x}\n", "t");
    assert!(check_document(&doc[0]).is_err());
    let crd = parse_documents("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x}\n", "t");
    assert_eq!(check_document(&crd[0]), Ok(()));
}

#[test]
fn every_kustomization_reference_exists_and_every_patch_has_a_target() {
    let all = kustomizations();
    assert!(all.len() >= 4, "base, base/nats, overlays/dev and overlays/prod");
    let mut errors = Vec::new();
    for k in &all {
        let deploy = root().canonicalize().expect("deploy/");
        let at = k.dir.strip_prefix(&deploy).expect("under deploy/").display().to_string();
        for key in k.doc.as_object().expect("a mapping").keys() {
            if !KUSTOMIZATION_KEYS.contains(&key.as_str()) {
                errors.push(format!("{at}: unknown key {key}"));
            }
        }
        for resource in k.resources() {
            if !(resource.is_file() || resource.join("kustomization.yaml").is_file()) {
                errors.push(format!("{at}: resource {} does not exist", resource.display()));
            }
        }
        for file in k.patches().into_iter().chain(k.generator_files()) {
            if !file.is_file() {
                errors.push(format!("{at}: {} does not exist", file.display()));
            }
        }
        let objects = k.objects(&all);
        for patch in k.patches().iter().filter(|p| p.is_file()).flat_map(|p| documents(p)) {
            let target = (str_at(&patch, "/kind").to_owned(), str_at(&patch, "/metadata/name").to_owned());
            if !objects.contains(&target) {
                errors.push(format!("{at}: patch target {target:?} is not built here"));
            }
        }
        for replicas in k.list("replicas") {
            let name = str_at(replicas, "/name");
            if !["Deployment", "StatefulSet"]
                .iter()
                .any(|kind| objects.contains(&((*kind).to_owned(), name.to_owned())))
            {
                errors.push(format!("{at}: replicas for {name}, which is no workload here"));
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn every_workload_is_probed_non_root_read_only_and_limited() {
    let docs: Vec<Json> = manifests().into_iter().map(|(_, d)| d).collect();
    let workloads = workloads(&docs);
    for name in SERVICES.iter().chain(&["nats"]) {
        assert!(workloads.contains_key(*name), "no workload {name}");
    }
    let mut errors = Vec::new();
    for (name, template) in &workloads {
        check_workload(name, template, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[path = "manifests/configs.rs"]
mod configs;

#[test]
fn the_overlays_render_with_kubectl_kustomize_and_pass_the_same_checks() {
    for overlay in ["dev", "prod"] {
        let dir = root().join("overlays").join(overlay);
        let output = match std::process::Command::new("kubectl").arg("kustomize").arg(&dir).output() {
            Ok(output) => output,
            Err(e) => {
                eprintln!("skipped: kubectl not runnable ({e}); the other tests check the sources");
                return;
            }
        };
        assert!(output.status.success(), "{overlay}: {}", String::from_utf8_lossy(&output.stderr));
        let mut docs = parse_documents(&String::from_utf8(output.stdout).expect("UTF-8"), overlay);
        // kustomize wraps long base64 at 76 columns; the API server (Go's decoder) skips the
        // line breaks, k8s-openapi's does not.
        for data in docs.iter_mut().filter_map(|d| d.get_mut("data")).filter_map(Json::as_object_mut) {
            for value in data.values_mut() {
                if let Some(text) = value.as_str() {
                    *value = Json::String(text.split_whitespace().collect());
                }
            }
        }
        let mut errors: Vec<String> = docs
            .iter()
            .filter_map(|d| check_document(d).err().map(|e| format!("{overlay} {}: {e}", str_at(d, "/metadata/name"))))
            .collect();
        let workloads = workloads(&docs);
        for (name, template) in &workloads {
            check_workload(name, template, &mut errors);
            for c in &template.spec.as_ref().expect("a pod spec").containers {
                let image = c.image.as_deref().unwrap_or_default();
                if image.starts_with("slipway-") || image.ends_with(":latest") {
                    errors.push(format!("{overlay} {name}: image {image} is not set by the overlay"));
                }
            }
        }
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn the_image_runs_as_the_user_the_pods_run_as() {
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).expect("deploy/docker/Dockerfile");
    assert!(dockerfile.lines().any(|l| l.trim() == "USER 10001:10001"), "a numeric non-root USER");
    let docs: Vec<Json> = manifests().into_iter().map(|(_, d)| d).collect();
    let workloads = workloads(&docs);
    for service in SERVICES {
        let pod = workloads[service].spec.as_ref().expect("a pod spec");
        let user = pod.security_context.as_ref().and_then(|s| s.run_as_user);
        assert_eq!(user, Some(10001), "{service} runs as the image's user");
    }
}
