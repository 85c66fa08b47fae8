//! Kubernetes manifests for running Slipway itself: a kustomize base (`base/`), the dev and
//! prod overlays (`overlays/`) and the container image (`docker/Dockerfile`).
//!
//! Nothing flows through this crate at run time; it exists so that `tests/manifests.rs` can
//! parse every manifest into the `k8s-openapi` types, check every kustomization reference and
//! load every service ConfigMap into that service's config type, as part of `cargo test`.
