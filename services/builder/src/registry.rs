//! Reads a pushed image's manifest digest back from the registry (distribution API
//! `HEAD /v2/<name>/manifests/<tag>` → `Docker-Content-Digest`), so `build.succeeded` carries
//! the digest the registry itself serves, whatever the backend printed.

use crate::config::AppConfig;
use std::time::Duration;

/// Manifest types we accept, most specific first (buildah pushes OCI manifests, docker
/// buildx may push an index).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A client for registries' HTTP API.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    tls: bool,
}

impl RegistryClient {
    /// `tls = false` speaks plain HTTP (local registries).
    pub fn new(tls: bool) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, tls }
    }

    /// The `/v2/<name>/manifests/<reference>` URL of `app`'s image.
    pub fn manifest_url(&self, app: &AppConfig, reference: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v2/{}/manifests/{reference}", app.registry_host(), app.image_path())
    }

    /// The digest the registry serves for `app`'s image at `tag`.
    pub async fn manifest_digest(&self, app: &AppConfig, tag: &str) -> Result<String, String> {
        let url = self.manifest_url(app, tag);
        let response =
            self.http.head(&url).header("accept", ACCEPT).send().await.map_err(|e| format!("HEAD {url}: {e}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(format!("HEAD {url}: 401, registry authentication is not supported yet"));
        }
        if !status.is_success() {
            return Err(format!("HEAD {url}: {status}"));
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("HEAD {url}: no Docker-Content-Digest header"))?;
        if is_digest(digest) { Ok(digest.to_owned()) } else { Err(format!("HEAD {url}: bad digest {digest:?}")) }
    }
}

/// `sha256:<64 lowercase hex>`.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha512:{}", "a".repeat(64))));
    }
}
