//! The builder service's configuration: the shared sections, the apps it can build
//! (`[[apps]]`), the build backend (`[build]`), where build logs go (`[logs]`) and the SBOM
//! and vulnerability scan after a push (`[scan]`). Loaded by
//! [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env).

use serde::{Deserialize, Serialize};
use slipway_mesh::names::{AppName, ImageTag};
use slipway_runtime::config::{AdminConfig, DatabaseConfig, NatsConfig, TelemetryConfig, Validate, invalid};
use slipway_runtime::service::ServiceConfig;
use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// Everything the builder service reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// PostgreSQL (schema `builder` by default).
    pub database: DatabaseConfig,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// How images are built.
    pub build: BuildConfig,
    /// Where build logs are kept.
    pub logs: LogsConfig,
    /// `[scan]`: the SBOM and vulnerability scan of every pushed image.
    pub scan: crate::scan::ScanConfig,
    /// `[catalog]`: take apps from the app catalog in NATS instead of `apps`.
    pub catalog: CatalogConfig,
    /// The apps this builder knows (without a catalog); a request for any other app is rejected.
    pub apps: Vec<AppConfig>,
}

/// `[catalog]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Apps come from the catalog revision in force (which ingest publishes), followed live.
    pub enabled: bool,
}

/// One buildable app: where its source is and where its image goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app name requests carry (`writer`).
    pub name: AppName,
    /// Clone URL of the repository (`git://`, `file://` or a local path in tests).
    pub repository: String,
    /// Build context, relative to the repository root (`.` by default).
    #[serde(default = "default_context")]
    pub context: PathBuf,
    /// Dockerfile, relative to the repository root; `<context>/Dockerfile` when unset.
    #[serde(default)]
    pub dockerfile: Option<PathBuf>,
    /// Image repository including the registry host, e.g. `registry.local:5000/acme/writer`.
    pub image: String,
    /// Moving tags (`latest`, `edge`) pushed only for builds of [`branch`](Self::branch).
    #[serde(default)]
    pub moving_tags: Vec<ImageTag>,
    /// The branch whose builds get the moving tags.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// `--build-arg` values (`ARG` in the Dockerfile).
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
}

fn default_context() -> PathBuf {
    PathBuf::from(".")
}

fn default_branch() -> String {
    "main".to_owned()
}

impl AppConfig {
    /// The Dockerfile path relative to the repository root.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile.clone().unwrap_or_else(|| self.context.join("Dockerfile"))
    }

    /// The registry host part of [`image`](Self::image) (`registry.local:5000`).
    pub fn registry_host(&self) -> &str {
        self.image.split_once('/').map_or("", |(host, _)| host)
    }

    /// The repository path inside the registry (`acme/writer`).
    pub fn image_path(&self) -> &str {
        self.image.split_once('/').map_or("", |(_, path)| path)
    }
}

/// Which program builds images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `buildah bud` + `buildah push`, daemonless.
    Buildah,
    /// `docker buildx build --push`; needs a Docker engine.
    Docker,
    /// A Kubernetes Job per build running kaniko on the cluster.
    Kaniko,
}

/// The `[build]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Which backend builds images.
    pub backend: BackendKind,
    /// Builds this replica runs at once.
    pub concurrency: usize,
    /// Cached repositories and build checkouts live here.
    pub work_dir: PathBuf,
    /// `false` for local registries that speak plain HTTP (the test kit's): pushes skip TLS
    /// verification and the digest is read back over `http://`.
    pub registry_tls: bool,
    /// Seconds a single build may take before it fails with `timeout`.
    pub timeout_secs: u64,
    /// The buildah backend's settings.
    pub buildah: BuildahConfig,
    /// The docker CLI used by the docker backend.
    pub docker_program: PathBuf,
    /// The kaniko backend's settings.
    pub kaniko: KanikoConfig,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Buildah,
            concurrency: 2,
            work_dir: PathBuf::from("/var/lib/slipway/builder"),
            registry_tls: true,
            timeout_secs: 30 * 60,
            buildah: BuildahConfig::default(),
            docker_program: PathBuf::from("docker"),
            kaniko: KanikoConfig::default(),
        }
    }
}

/// `[build.buildah]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildahConfig {
    /// The buildah binary.
    pub program: PathBuf,
    /// Storage driver: `vfs` works everywhere (no overlay mounts inside unprivileged pods).
    pub storage_driver: String,
    /// `chroot` needs no nested container runtime.
    pub isolation: String,
    /// Image storage root; `<work_dir>/containers` when unset. The layer cache lives here.
    pub root: Option<PathBuf>,
}

impl Default for BuildahConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("buildah"),
            storage_driver: "vfs".to_owned(),
            isolation: "chroot".to_owned(),
            root: None,
        }
    }
}

/// `[build.kaniko]`: where and how build Jobs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KanikoConfig {
    /// Namespace the build Jobs are created in.
    pub namespace: String,
    /// The kaniko executor image.
    pub image: String,
    /// Service account of the build pods (cloud registry credentials by workload identity).
    pub service_account: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret mounted as kaniko's registry credentials.
    pub registry_secret: Option<String>,
    /// Container resource requests (`cpu = "1"`, `memory = "2Gi"`).
    pub requests: BTreeMap<String, String>,
    /// Container resource limits.
    pub limits: BTreeMap<String, String>,
    /// `ttlSecondsAfterFinished`: how long a finished Job (and its pod's log) stays.
    pub ttl_secs: i32,
    /// The API server; unset: in-cluster config or the kubeconfig (`kube::Config::infer`).
    pub kube_url: Option<String>,
}

impl Default for KanikoConfig {
    fn default() -> Self {
        Self {
            namespace: "slipway-builds".to_owned(),
            image: "gcr.io/kaniko-project/executor:v1.23.2".to_owned(),
            service_account: None,
            registry_secret: None,
            requests: BTreeMap::new(),
            limits: BTreeMap::new(),
            ttl_secs: 3600,
            kube_url: None,
        }
    }
}

impl KanikoConfig {
    fn validate(&self) -> slipway_runtime::Result<()> {
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !dns_label(&self.namespace) {
            return Err(invalid("build.kaniko.namespace", "must be a DNS label (a-z, 0-9, '-')"));
        }
        if self.image.trim().is_empty() {
            return Err(invalid("build.kaniko.image", "must not be empty"));
        }
        if self.ttl_secs < 0 {
            return Err(invalid("build.kaniko.ttl_secs", "must not be negative"));
        }
        if let Some(url) = &self.kube_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("build.kaniko.kube_url", "must be an http(s) URL"));
        }
        Ok(())
    }
}

/// `[logs]`: build logs go to a NATS Object Store bucket, one object per build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Object Store bucket name.
    pub bucket: String,
    /// Lines of the log tail put on `build.failed`.
    pub tail_lines: usize,
    /// Largest log kept per build; beyond it lines are dropped (the tail is still kept).
    pub max_bytes: usize,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self { bucket: "slipway-build-logs".to_owned(), tail_lines: 40, max_bytes: 8 * 1024 * 1024 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("builder"),
            admin: AdminConfig { listen: ([127, 0, 0, 1], 9102).into() },
            telemetry: TelemetryConfig::default(),
            build: BuildConfig::default(),
            logs: LogsConfig::default(),
            scan: crate::scan::ScanConfig::default(),
            catalog: CatalogConfig::default(),
            apps: Vec::new(),
        }
    }
}

impl Config {
    /// The app called `name`, if configured.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name.as_str() == name)
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        self.build.validate()?;
        self.scan.validate()?;
        if self.catalog.enabled && !self.apps.is_empty() {
            return Err(invalid("apps", "apps come from the catalog when catalog.enabled is set; remove [[apps]]"));
        }
        if self.logs.bucket.is_empty() || !self.logs.bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid("logs.bucket", "must be 1 or more of A-Z, a-z, 0-9 and '-'"));
        }
        let mut seen = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            if !seen.insert(app.name.as_str()) {
                return Err(invalid(&format!("apps[{i}].name"), format_args!("{} is listed twice", app.name)));
            }
            validate_app(i, app)?;
            // kaniko clones inside the cluster, and its git context speaks only http(s).
            let http = app.repository.starts_with("https://") || app.repository.starts_with("http://");
            if self.build.backend == BackendKind::Kaniko && !http {
                return Err(invalid(&format!("apps[{i}].repository"), "the kaniko backend clones over http(s) only"));
            }
        }
        Ok(())
    }
}

impl BuildConfig {
    fn validate(&self) -> slipway_runtime::Result<()> {
        if self.backend == BackendKind::Kaniko {
            self.kaniko.validate()?;
        }
        if self.concurrency == 0 {
            return Err(invalid("build.concurrency", "must be at least 1"));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("build.timeout_secs", "must be greater than 0"));
        }
        if self.work_dir.as_os_str().is_empty() {
            return Err(invalid("build.work_dir", "must not be empty"));
        }
        Ok(())
    }
}

fn validate_app(i: usize, app: &AppConfig) -> slipway_runtime::Result<()> {
    let key = |field: &str| format!("apps[{i}].{field}");
    if app.repository.trim().is_empty() {
        return Err(invalid(&key("repository"), "must not be empty"));
    }
    check_relative(&key("context"), &app.context)?;
    if let Some(dockerfile) = &app.dockerfile {
        check_relative(&key("dockerfile"), dockerfile)?;
    }
    check_image(&app.image).map_err(|why| invalid(&key("image"), why))?;
    if app.branch.is_empty() {
        return Err(invalid(&key("branch"), "must not be empty"));
    }
    Ok(())
}

/// A path inside the checkout: relative, without `..`.
fn check_relative(key: &str, path: &Path) -> slipway_runtime::Result<()> {
    let inside = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.as_os_str().is_empty() || !inside {
        return Err(invalid(key, format_args!("{} must be a relative path without '..'", path.display())));
    }
    Ok(())
}

/// `host[:port]/path`, the path in the OCI distribution grammar (lowercase components
/// separated by `/`, with `.`, `_`, `__` or `-` runs between alphanumerics), no tag or digest.
pub fn check_image(image: &str) -> Result<(), String> {
    let Some((host, path)) = image.split_once('/') else {
        return Err(format!("{image:?} must be <registry-host>/<repository>"));
    };
    let host_ok = !host.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !host_ok {
        return Err(format!("{host:?} is not a registry host (it needs a '.' or a ':port')"));
    }
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'))
    };
    if path.len() > 255 || !path.split('/').all(component_ok) {
        return Err(format!("{path:?} is not a valid repository path (lowercase, a-z0-9 with . _ - inside)"));
    }
    Ok(())
}

impl ServiceConfig for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(toml_extra: &str) -> Result<Config, String> {
        let text = format!(
            "[[apps]]\nname = \"writer\"\nrepository = \"git://127.0.0.1:9418/writer.git\"\n\
             image = \"127.0.0.1:5000/acme/writer\"\n{toml_extra}"
        );
        let config: Config = figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&text))
            .extract()
            .map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn an_app_with_defaults() {
        let config = app("moving_tags = [\"latest\"]").expect("valid");
        let writer = config.app("writer").expect("writer");
        assert_eq!(writer.dockerfile_path(), PathBuf::from("./Dockerfile"));
        assert_eq!((writer.registry_host(), writer.image_path()), ("127.0.0.1:5000", "acme/writer"));
        assert_eq!(writer.branch, "main");
        assert_eq!(config.build.backend, BackendKind::Buildah);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("context = \"../up\"", "apps[0].context"),
            ("dockerfile = \"/etc/Dockerfile\"", "apps[0].dockerfile"),
            ("moving_tags = [\".bad\"]", "moving_tags"),
            ("[build]\nbackend = \"kaniko\"", "apps[0].repository"),
            ("[build]\nbackend = \"kaniko\"\n[build.kaniko]\nnamespace = \"Builds\"", "build.kaniko.namespace"),
            ("[build]\nconcurrency = 0", "build.concurrency"),
        ] {
            let err = app(extra).expect_err(extra);
            assert!(err.contains(key), "{extra}: {err}");
        }
        assert!(app("[build]\nbackend = \"kaniko\"").expect_err("kaniko").contains("over http(s) only"));
    }

    #[test]
    fn image_grammar() {
        for ok in ["127.0.0.1:5000/acme/writer", "registry.local/a", "localhost/x/y-z", "ghcr.io/a_b/c.d"] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in ["writer", "acme/writer", "r.io/Acme", "r.io/a//b", "r.io/a:tag", "r.io/-a", "r.io/a@sha256:x"] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }
}
