//! The SBOM of a pushed image: Syft reads the image from the registry by digest and writes
//! CycloneDX JSON; the document is pushed into the image's own repository as an OCI artifact
//! (`artifactType` CycloneDX, an empty config, one layer with the document, `subject` = the
//! image manifest) and also tagged `sha256-<hex>.sbom`, the cosign convention, because
//! registries without the referrers API (Distribution 2.x) can only be searched by tag.

use super::command::{self, RunError};
use crate::registry::{Descriptor, RegistryClient};
use std::path::Path;
use std::time::Duration;

/// The media type of the SBOM layer and the artifact type of its manifest.
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// OCI 1.1's empty config for artifacts.
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Why no SBOM was stored.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("syft: {0}")]
    Syft(#[from] RunError),
    #[error("syft wrote no CycloneDX JSON: {0}")]
    NotCycloneDx(String),
    #[error("registry: {0}")]
    Registry(String),
}

/// The cosign-style tag of the SBOM of `digest`: `sha256-<hex>.sbom`.
pub fn sbom_tag(digest: &str) -> String {
    format!("{}.sbom", digest.replace(':', "-"))
}

/// Runs Syft on `image@digest` and returns the CycloneDX document.
pub async fn generate(
    syft: &Path,
    image: &str,
    digest: &str,
    tls: bool,
    timeout: Duration,
) -> Result<Vec<u8>, SbomError> {
    let args = vec![
        "scan".to_owned(),
        format!("registry:{image}@{digest}"),
        "--output".to_owned(),
        "cyclonedx-json".to_owned(),
        "--quiet".to_owned(),
    ];
    let http = if tls { "false" } else { "true" };
    let envs = [("SYFT_REGISTRY_INSECURE_USE_HTTP", http), ("SYFT_CHECK_FOR_APP_UPDATE", "false")];
    let doc = command::run(syft, &args, &envs, timeout).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&doc).map_err(|e| SbomError::NotCycloneDx(e.to_string()))?;
    if parsed["bomFormat"] != "CycloneDX" {
        return Err(SbomError::NotCycloneDx(format!("bomFormat is {}", parsed["bomFormat"])));
    }
    Ok(doc)
}

/// Pushes `doc` as the SBOM artifact of `image@digest`; returns the artifact manifest's digest.
pub async fn push(registry: &RegistryClient, image: &str, digest: &str, doc: Vec<u8>) -> Result<String, SbomError> {
    let subject = registry.descriptor(image, digest).await.map_err(SbomError::Registry)?;
    let config = registry.push_blob(image, EMPTY_CONFIG, b"{}".to_vec()).await.map_err(SbomError::Registry)?;
    let layer = registry.push_blob(image, CYCLONEDX, doc).await.map_err(SbomError::Registry)?;
    let manifest = manifest(&subject, &config, &layer);
    let body = serde_json::to_vec(&manifest).map_err(|e| SbomError::Registry(e.to_string()))?;
    let pushed =
        registry.put_manifest(image, &sbom_tag(digest), OCI_MANIFEST, body).await.map_err(SbomError::Registry)?;
    Ok(pushed.digest)
}

fn manifest(subject: &Descriptor, config: &Descriptor, layer: &Descriptor) -> serde_json::Value {
    let mut config = config.to_json();
    config["data"] = "e30=".into();
    let mut layer = layer.to_json();
    layer["annotations"] = serde_json::json!({ "org.opencontainers.image.title": "sbom.cdx.json" });
    let mut subject_json = subject.to_json();
    if subject.media_type.is_empty() {
        subject_json["mediaType"] = OCI_MANIFEST.into();
    }
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": CYCLONEDX,
        "config": config,
        "layers": [layer],
        "subject": subject_json,
        "annotations": { "org.opencontainers.image.created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_manifest_points_at_the_image() {
        let d = |t: &str, c: char| Descriptor {
            media_type: t.into(),
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size: 2,
        };
        let m = manifest(&d(OCI_MANIFEST, 'a'), &d(EMPTY_CONFIG, 'b'), &d(CYCLONEDX, 'c'));
        assert_eq!(m["artifactType"], CYCLONEDX);
        assert_eq!(m["subject"]["digest"], format!("sha256:{}", "a".repeat(64)));
        assert_eq!(m["layers"][0]["mediaType"], CYCLONEDX);
        assert_eq!(m["config"]["mediaType"], EMPTY_CONFIG);
        assert_eq!(sbom_tag(&format!("sha256:{}", "a".repeat(64))), format!("sha256-{}.sbom", "a".repeat(64)));
    }
}
