//! From a `build.requested` to a [`BuildPlan`]: which app, which commit, which tags. Pure: no
//! I/O, so every rule about what is a valid request lives here and is unit-tested.
//!
//! Tags: the full commit sha always (immutable, what the promoter deploys besides the digest);
//! the request's extra tags (the semver tag of a tag push); the app's moving tags only for
//! builds of its configured branch.

use crate::apps::Apps;
use crate::config::AppConfig;
use slipway_mesh::EventId;
use slipway_mesh::names::{CommitSha, ImageTag};
use slipway_mesh::v1::BuildRequested;
use std::fmt;

/// Everything needed to run one build.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// The request's build id (a valid event id, so derived event ids are too).
    pub build_id: String,
    /// The app's configuration.
    pub app: AppConfig,
    /// The exact commit to build.
    pub commit: CommitSha,
    /// `refs/heads/main`, `refs/tags/v1.2.3`, or empty when the request had none.
    pub git_ref: String,
    /// Tags to push, the commit sha first.
    pub tags: Vec<ImageTag>,
}

impl BuildPlan {
    /// The branch name when the build is of a branch head.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    /// `registry/repo:tag` for each tag.
    pub fn image_refs(&self) -> Vec<String> {
        self.tags.iter().map(|t| format!("{}:{t}", self.app.image)).collect()
    }
}

/// Why a request can never be built; goes on `build.failed` with reason `invalid-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `request` against the apps (configured, or the catalog in force) and the name grammars.
pub fn plan(apps: &Apps, request: &BuildRequested) -> Result<BuildPlan, Invalid> {
    if EventId::parse(&request.build_id).is_err() || request.build_id.len() > 100 {
        return Err(Invalid(format!("build id {:?} is not 1 to 100 of [A-Za-z0-9._:-]", clip(&request.build_id))));
    }
    let app = apps
        .get(&request.app)
        .ok_or_else(|| Invalid(format!("unknown app {:?}: not in {}", clip(&request.app), apps.origin())))?;
    let source = request.source.as_ref().ok_or_else(|| Invalid("no source commit".to_owned()))?;
    let commit = CommitSha::parse(&source.commit_sha).map_err(|e| Invalid(e.to_string()))?;
    let mut tags = vec![ImageTag::parse(commit.as_str()).map_err(|e| Invalid(e.to_string()))?];
    for extra in &request.extra_tags {
        let tag = ImageTag::parse(extra).map_err(|e| Invalid(format!("extra tag: {e}")))?;
        push_unique(&mut tags, tag);
    }
    if source.r#ref.strip_prefix("refs/heads/") == Some(app.branch.as_str()) {
        for tag in &app.moving_tags {
            push_unique(&mut tags, tag.clone());
        }
    }
    Ok(BuildPlan { build_id: request.build_id.clone(), app, commit, git_ref: source.r#ref.clone(), tags })
}

fn push_unique(tags: &mut Vec<ImageTag>, tag: ImageTag) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

/// At most 80 characters of outside text for an error message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use slipway_mesh::v1::SourceRef;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn config() -> Config {
        let app: AppConfig = serde_json::from_value(serde_json::json!({
            "name": "writer", "repository": "git://h/writer.git", "image": "r.local:5000/acme/writer",
            "moving_tags": ["latest", "edge"], "branch": "main",
        }))
        .expect("app");
        Config { apps: vec![app], ..Config::default() }
    }

    fn request(app: &str, sha: &str, git_ref: &str, extra: &[&str]) -> BuildRequested {
        BuildRequested {
            build_id: "gh-1-build-writer".into(),
            app: app.into(),
            source: Some(SourceRef { commit_sha: sha.into(), r#ref: git_ref.into(), ..SourceRef::default() }),
            extra_tags: extra.iter().map(|s| (*s).to_owned()).collect(),
            ..BuildRequested::default()
        }
    }

    fn tags(p: &BuildPlan) -> Vec<&str> {
        p.tags.iter().map(ImageTag::as_str).collect()
    }

    #[test]
    fn branch_builds_get_sha_and_moving_tags() {
        let p = plan(&Apps::Fixed(config().apps), &request("writer", SHA, "refs/heads/main", &[])).expect("valid");
        assert_eq!(tags(&p), [SHA, "latest", "edge"]);
        assert_eq!(p.branch(), Some("main"));
        assert_eq!(p.image_refs()[0], format!("r.local:5000/acme/writer:{SHA}"));
    }

    #[test]
    fn other_branches_and_tag_pushes_get_no_moving_tags() {
        let p = plan(&Apps::Fixed(config().apps), &request("writer", SHA, "refs/heads/feature", &[])).expect("valid");
        assert_eq!(tags(&p), [SHA]);
        let p = plan(&Apps::Fixed(config().apps), &request("writer", SHA, "refs/tags/v1.2.3", &["v1.2.3", "v1.2.3"]))
            .expect("valid");
        assert_eq!(tags(&p), [SHA, "v1.2.3"]);
        assert_eq!(p.branch(), None);
    }

    #[test]
    fn malformed_requests_say_why() {
        let cases = [
            (request("reader", SHA, "refs/heads/main", &[]), "unknown app"),
            (request("../x", SHA, "refs/heads/main", &[]), "unknown app"),
            (request("writer", "abc123", "refs/heads/main", &[]), "40 or 64 hex"),
            (request("writer", &SHA.to_uppercase(), "refs/heads/main", &[]), "lowercase hex"),
            (request("writer", SHA, "refs/tags/x", &["-bad"]), "extra tag"),
            (request("writer", SHA, "refs/tags/x", &["a/b"]), "extra tag"),
            (request("writer", SHA, "refs/tags/x", &[&"a".repeat(129)]), "extra tag"),
            (BuildRequested { source: None, ..request("writer", SHA, "", &[]) }, "no source"),
            (BuildRequested { build_id: "a b".into(), ..request("writer", SHA, "", &[]) }, "build id"),
        ];
        for (req, want) in cases {
            let err = plan(&Apps::Fixed(config().apps), &req).expect_err(want);
            assert!(err.0.contains(want), "{req:?}: {err}");
        }
    }
}
