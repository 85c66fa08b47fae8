//! Reads a pushed image's manifest digest back from the registry (distribution API
//! `HEAD /v2/<name>/manifests/<tag>` → `Docker-Content-Digest`), so `build.succeeded` carries
//! the digest the registry itself serves, whatever the backend printed; and pushes artifacts
//! next to an image (blob uploads and a manifest put), which is how an SBOM is stored.

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
        let image = format!("{}/{}", app.registry_host(), app.image_path());
        Ok(self.descriptor(&image, tag).await?.digest)
    }

    fn base(&self, image: &str) -> Result<String, String> {
        let scheme = if self.tls { "https" } else { "http" };
        match image.split_once('/') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => Ok(format!("{scheme}://{host}/v2/{path}")),
            _ => Err(format!("{image:?} is not <registry host>/<repository>")),
        }
    }

    /// The descriptor (media type, digest, size) of the manifest `reference` (a tag or a
    /// digest) of `image` (`host/repository`).
    pub async fn descriptor(&self, image: &str, reference: &str) -> Result<Descriptor, String> {
        let url = format!("{}/manifests/{reference}", self.base(image)?);
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
        if !is_digest(digest) {
            return Err(format!("HEAD {url}: bad digest {digest:?}"));
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let media_type = header("content-type").unwrap_or_default();
        let size = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        Ok(Descriptor { media_type, digest: digest.to_owned(), size })
    }

    /// Uploads `data` as a blob of `image`'s repository (a POST that opens the upload, a PUT
    /// that closes it with the digest); returns its descriptor with `media_type`.
    pub async fn push_blob(&self, image: &str, media_type: &str, data: Vec<u8>) -> Result<Descriptor, String> {
        let digest = sha256_digest(&data);
        let size = data.len() as u64;
        let start = format!("{}/blobs/uploads/", self.base(image)?);
        let opened = self.http.post(&start).send().await.map_err(|e| format!("POST {start}: {e}"))?;
        if opened.status() != reqwest::StatusCode::ACCEPTED {
            return Err(format!("POST {start}: {}", opened.status()));
        }
        let location = opened
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("POST {start}: no Location"))?;
        let mut url = reqwest::Url::parse(&start)
            .and_then(|base| base.join(location))
            .map_err(|e| format!("upload location {location:?}: {e}"))?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .http
            .put(url.clone())
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        if put.status() != reqwest::StatusCode::CREATED {
            return Err(format!("PUT blob {digest}: {}", put.status()));
        }
        Ok(Descriptor { media_type: media_type.to_owned(), digest, size })
    }

    /// Puts a manifest (`body`, of `media_type`) under `reference` (a tag or its digest);
    /// returns its descriptor.
    pub async fn put_manifest(
        &self,
        image: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<Descriptor, String> {
        let digest = sha256_digest(&body);
        let size = body.len() as u64;
        let url = format!("{}/manifests/{reference}", self.base(image)?);
        let put = self
            .http
            .put(&url)
            .header("content-type", media_type)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        if put.status() != reqwest::StatusCode::CREATED {
            let status = put.status();
            let text = put.text().await.unwrap_or_default();
            return Err(format!("PUT {url}: {status} {}", slipway_mesh::bounds::capped(&text, 300)));
        }
        Ok(Descriptor { media_type: media_type.to_owned(), digest, size })
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    /// The descriptor as a manifest's JSON writes it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
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
