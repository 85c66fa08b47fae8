//! The Kubernetes API the health tests talk to: the test kit's [`slipway_testkit::kube::FakeKube`]
//! (real HTTP: get, list with field selectors, watch from a resourceVersion), with the two
//! kinds the health gate reads and a shorthand to apply one by kind, namespace and name.
#![allow(dead_code)]

use serde_json::{Value, json};

/// A kind the health gate watches.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
}

pub const APPLICATION: Kind = Kind { api_version: "argoproj.io/v1alpha1", kind: "Application" };
pub const DEPLOYMENT: Kind = Kind { api_version: "apps/v1", kind: "Deployment" };
pub const ROLLOUT: Kind = Kind { api_version: "argoproj.io/v1alpha1", kind: "Rollout" };

/// The running fake; stops when dropped.
pub struct FakeKube {
    pub url: String,
    inner: slipway_testkit::kube::FakeKube,
}

impl FakeKube {
    pub async fn start() -> Self {
        let inner = slipway_testkit::kube::FakeKube::start().await.expect("fake kube");
        Self { url: inner.url(), inner }
    }

    /// Creates or replaces an object (`body` without apiVersion, kind or name is fine); returns
    /// its resourceVersion.
    pub fn apply(&self, kind: Kind, namespace: &str, name: &str, mut body: Value) -> u64 {
        body["apiVersion"] = json!(kind.api_version);
        body["kind"] = json!(kind.kind);
        body["metadata"]["name"] = json!(name);
        body["metadata"]["namespace"] = json!(namespace);
        let stored = self.inner.apply(body);
        stored["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse().ok()).expect("resourceVersion")
    }

    /// Deletes an object (a DELETED event with its last state).
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        self.inner.delete(kind.kind, namespace, name);
    }

    /// Ends every open watch response (the client sees its connection's body end).
    pub fn drop_watches(&self) {
        self.inner.drop_watches();
    }

    /// The requests seen so far (`METHOD /path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests()
    }

    /// The watch requests seen so far.
    pub fn watch_requests(&self) -> Vec<String> {
        self.requests().into_iter().filter(|r| r.contains("watch=true") || r.contains("watch=1")).collect()
    }
}
