//! Set-up shared by the promoter's integration tests: git repositories on the test kit's
//! `git daemon`, seeded and read back with the `git` command; the `writer` app's config and
//! events ([`writer`]); an admin API client ([`api`]); a promoter running in the test ([`running`]).
#![allow(dead_code)]

pub mod api;
pub mod running;
pub mod writer;

use slipway_testkit::GitDaemon;

// Not every test uses each of them.
#[allow(unused_imports)]
pub use slipway_testkit::repos::{git, git_dir, remote_head, remote_show, seed_repo};

/// `envs/<stage>/kustomization.yaml` for each stage, with `text(stage)` as its content.
pub fn stage_files(stages: &[&str], text: impl Fn(&str) -> String) -> Vec<(String, String)> {
    stages.iter().map(|stage| (format!("envs/{stage}/kustomization.yaml"), text(stage))).collect()
}

/// The `newTag` of `envs/<stage>/kustomization.yaml` on `main` of `acme/gitops`, without a
/// trailing comment.
pub fn remote_tag(daemon: &GitDaemon, stage: &str) -> String {
    let text = remote_show(daemon, "acme/gitops", "main", &format!("envs/{stage}/kustomization.yaml"));
    let line = text.lines().find(|l| l.trim_start().starts_with("newTag:")).expect("newTag line");
    line.trim_start().trim_start_matches("newTag:").split('#').next().unwrap_or_default().trim().to_owned()
}

/// The decoded events of the `SLIPWAY` stream whose subject starts with `prefix`
/// (`slipway.promotion.`), in stream order.
pub async fn stream_payloads(
    js: &async_nats::jetstream::Context,
    prefix: &str,
) -> Vec<slipway_mesh::v1::event::Payload> {
    let messages = slipway_testkit::stream_messages(js, "SLIPWAY").await.expect("stream");
    (messages.iter())
        .filter(|m| m.subject.starts_with(prefix))
        .map(|m| {
            let envelope = slipway_mesh::Envelope::from_headers(&m.headers).expect("envelope");
            slipway_mesh::decode_payload(envelope.kind, &m.payload).expect("payload")
        })
        .collect()
}
