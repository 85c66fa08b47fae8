//! Monorepo app detection: which apps a push touched, and the `build.requested` events that
//! follow from a push or a semver tag.
//!
//! Each configured [`AppRule`] names an app, the path globs that belong to it, optional branch
//! globs and an optional repository. [`AppMatcher`] compiles them once; matching a push looks at
//! every file added, modified or removed by any of its commits. Build ids are derived from the
//! delivery (or the tag), so a redelivered webhook asks for the same builds under the same ids.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slipway_mesh::names::{AppName, ImageTag, RepoName};
use slipway_mesh::v1;
use std::collections::{BTreeMap, BTreeSet};

/// One app of a (mono)repo, as configured under `[[apps]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    pub name: AppName,
    /// Path globs relative to the repository root, e.g. `apps/writer/**`. `*` does not cross
    /// `/`; `**` does.
    pub paths: Vec<String>,
    /// Branch globs (`main`, `release/*`); empty means every branch.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Only pushes to this repository; `None` means any repository.
    #[serde(default)]
    pub repository: Option<RepoName>,
}

/// The compiled form of a set of [`AppRule`]s.
#[derive(Debug, Clone)]
pub struct AppMatcher {
    apps: Vec<CompiledApp>,
    /// Every app's path globs in one set, so a file is matched against all apps in one pass
    /// (10,000 apps are 10,000 glob sets otherwise); `owner[i]` is the app of glob `i`.
    all: GlobSet,
    owner: Vec<usize>,
    /// The catalog revision the apps come from (0: `[[apps]]`), stamped on build requests.
    revision: u64,
}

#[derive(Debug, Clone)]
struct CompiledApp {
    name: AppName,
    branches: Option<GlobSet>,
    repository: Option<RepoName>,
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

impl AppMatcher {
    /// Compiles `rules`; an invalid glob or an app without paths is an error naming the app.
    pub fn new(rules: &[AppRule]) -> crate::error::Result<Self> {
        let apps: Vec<CompiledApp> = rules.iter().map(compile).collect::<Result<_, _>>()?;
        let mut all = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for g in &rule.paths {
                all.add(
                    glob(g).map_err(|e| {
                        crate::error::Error::Invalid(format!("app {}: invalid path glob: {e}", rule.name))
                    })?,
                );
                owner.push(i);
            }
        }
        let all = all.build().map_err(|e| crate::error::Error::Invalid(format!("path globs: {e}")))?;
        Ok(Self { apps, all, owner, revision: 0 })
    }

    /// Matches nothing.
    pub fn empty() -> Self {
        Self { apps: Vec::new(), all: GlobSet::empty(), owner: Vec::new(), revision: 0 }
    }

    /// The same apps, from catalog revision `revision`.
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = revision;
        self
    }

    /// True when no app is configured.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Apps whose paths match a file changed by any commit of `push`, honouring branch and
    /// repository filters. Sorted, without duplicates.
    pub fn changed_apps(&self, push: &v1::SourcePush) -> Vec<AppName> {
        self.matches(push).into_keys().collect()
    }

    /// Fills `push.changed_apps` and returns its [`build_requests`](Self::build_requests), with
    /// the files of the push matched once (a push can list thousands).
    pub fn annotate_and_request(&self, push: &mut v1::SourcePush) -> Vec<v1::BuildRequested> {
        let matches = self.matches(push);
        push.changed_apps = matches.keys().map(|app| app.as_str().to_owned()).collect();
        self.requests(push, matches)
    }

    /// One `build.requested` per changed app; none for a deleted branch or a `[skip ci]` push.
    pub fn build_requests(&self, push: &v1::SourcePush) -> Vec<v1::BuildRequested> {
        self.requests(push, self.matches(push))
    }

    fn requests(&self, push: &v1::SourcePush, matches: BTreeMap<AppName, usize>) -> Vec<v1::BuildRequested> {
        if push.skip_ci || push.deleted || push.after.is_empty() || push.after == ZERO_SHA {
            return Vec::new();
        }
        let head_author = push.commits.last().map(|c| c.author.as_str()).filter(|a| !a.is_empty());
        let source = v1::SourceRef {
            repository: push.repository.clone(),
            commit_sha: push.after.clone(),
            r#ref: push.r#ref.clone(),
            author: head_author.unwrap_or(&push.pusher).to_owned(),
        };
        let delivery = id_token(&push.delivery_id);
        matches
            .into_iter()
            .map(|(app, last_commit)| v1::BuildRequested {
                build_id: format!("gh-{delivery}-build-{app}"),
                source: Some(source.clone()),
                extra_tags: Vec::new(),
                reason: "push".to_owned(),
                conventional_type: push.commits[last_commit].conventional_type.clone(),
                app: app.into(),
                catalog_revision: self.revision,
            })
            .collect()
    }

    /// For a semver tag (pushed or released): one `build.requested` per app of the tag's
    /// repository, with the tag as an extra image tag. Branch filters do not apply. The build id
    /// comes from repository, tag and app, so the tag push and the release of the same tag ask
    /// for one build.
    pub fn tag_build_requests(&self, tag: &v1::SourceTag) -> Vec<v1::BuildRequested> {
        if tag.deleted || tag.semver.is_empty() {
            return Vec::new();
        }
        let Some(image_tag) = image_tag_for(tag) else { return Vec::new() };
        let key = hash_token(&format!("{}\n{}", tag.repository, tag.tag));
        let apps: BTreeSet<&AppName> =
            self.apps.iter().filter(|a| repo_allows(a, &tag.repository)).map(|a| &a.name).collect();
        let source = v1::SourceRef {
            repository: tag.repository.clone(),
            commit_sha: tag.commit_sha.clone(),
            r#ref: format!("refs/tags/{}", tag.tag),
            author: tag.actor.clone(),
        };
        apps.into_iter()
            .map(|app| v1::BuildRequested {
                build_id: format!("tag-{key}-build-{app}"),
                app: app.to_string(),
                source: Some(source.clone()),
                extra_tags: vec![image_tag.clone()],
                reason: if tag.release { "release" } else { "tag" }.to_owned(),
                conventional_type: String::new(),
                catalog_revision: self.revision,
            })
            .collect()
    }

    /// Changed apps → index of the last commit that touched each.
    fn matches(&self, push: &v1::SourcePush) -> BTreeMap<AppName, usize> {
        let mut found = BTreeMap::new();
        let Some(branch) = push.r#ref.strip_prefix("refs/heads/") else { return found };
        let candidate: Vec<bool> = self
            .apps
            .iter()
            .map(|a| repo_allows(a, &push.repository) && a.branches.as_ref().is_none_or(|b| b.is_match(branch)))
            .collect();
        let mut hits = Vec::new();
        for (i, commit) in push.commits.iter().enumerate() {
            let files = commit.added.iter().chain(&commit.modified).chain(&commit.removed);
            for file in files {
                self.all.matches_into(file, &mut hits);
                for app in hits.iter().map(|g| self.owner[*g]).filter(|a| candidate[*a]) {
                    found.insert(self.apps[app].name.clone(), i);
                }
            }
        }
        found
    }
}

fn repo_allows(app: &CompiledApp, repository: &str) -> bool {
    app.repository.as_ref().is_none_or(|r| r.as_str() == repository)
}

fn compile(rule: &AppRule) -> crate::error::Result<CompiledApp> {
    let app = &rule.name;
    if rule.paths.is_empty() {
        return Err(crate::error::Error::Invalid(format!(
            "app {app}: paths must name at least one glob (use \"**\" for the whole repository)"
        )));
    }
    glob_set(&rule.paths).map_err(|e| crate::error::Error::Invalid(format!("app {app}: invalid path glob: {e}")))?;
    let branches = if rule.branches.is_empty() {
        None
    } else {
        Some(
            glob_set(&rule.branches)
                .map_err(|e| crate::error::Error::Invalid(format!("app {app}: invalid branch glob: {e}")))?,
        )
    };
    Ok(CompiledApp { name: app.clone(), branches, repository: rule.repository.clone() })
}

fn glob(g: &str) -> Result<Glob, globset::Error> {
    // A leading "/" anchors at the root, which every path here already is.
    GlobBuilder::new(g.trim_start_matches('/')).literal_separator(true).build()
}

fn glob_set(globs: &[String]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        set.add(glob(g)?);
    }
    set.build()
}

/// The image tag a semver git tag adds: the tag itself when it is a valid image tag, else its
/// semver with `+` (not allowed in image tags) turned into `_`.
fn image_tag_for(tag: &v1::SourceTag) -> Option<String> {
    if ImageTag::parse(&tag.tag).is_ok() {
        return Some(tag.tag.clone());
    }
    ImageTag::parse(&tag.semver.replace('+', "_")).ok().map(String::from)
}

/// Outside ids (delivery ids, chat message ids) as a part of an event id: kept when short and
/// plain, else hashed, so derived ids always satisfy the event id grammar and length.
pub(crate) fn id_token(s: &str) -> String {
    let plain = (1..=48).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain { s.to_owned() } else { hash_token(s) }
}

/// 32 hex digits of SHA-256.
pub(crate) fn hash_token(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_mesh::EventId;

    const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const SHA_B: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn rules(toml_like: serde_json::Value) -> Vec<AppRule> {
        serde_json::from_value(toml_like).expect("rules")
    }

    fn matcher() -> AppMatcher {
        AppMatcher::new(&rules(serde_json::json!([
            {"name": "writer", "paths": ["apps/writer/**", "libs/common/**"]},
            {"name": "reader", "paths": ["apps/reader/**"], "branches": ["main", "release/*"]},
            {"name": "other", "paths": ["**"], "repository": "acme/other"},
            {"name": "docs", "paths": ["/docs/*.md"]},
        ])))
        .expect("valid")
    }

    fn commit(sha: &str, kind: &str, added: &[&str], modified: &[&str], removed: &[&str]) -> v1::Commit {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        v1::Commit {
            sha: sha.into(),
            author: "alice".into(),
            conventional_type: kind.into(),
            added: owned(added),
            modified: owned(modified),
            removed: owned(removed),
            ..Default::default()
        }
    }

    fn push(branch: &str, commits: Vec<v1::Commit>) -> v1::SourcePush {
        v1::SourcePush {
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            repository: "acme/mono".into(),
            r#ref: format!("refs/heads/{branch}"),
            before: SHA_A.into(),
            after: SHA_B.into(),
            pusher: "bob".into(),
            commits,
            ..Default::default()
        }
    }

    fn names(apps: Vec<AppName>) -> Vec<String> {
        apps.into_iter().map(String::from).collect()
    }

    #[test]
    fn files_across_all_commits() {
        let m = matcher();
        let p = push(
            "main",
            vec![
                commit(SHA_A, "feat", &["apps/writer/src/main.rs"], &[], &[]),
                commit(SHA_B, "fix", &[], &[], &["apps/reader/old.rs"]),
            ],
        );
        assert_eq!(names(m.changed_apps(&p)), ["reader", "writer"]);
        let p = push("main", vec![commit(SHA_A, "", &[], &["libs/common/x.rs", "docs/a.md", "docs/sub/b.md"], &[])]);
        assert_eq!(names(m.changed_apps(&p)), ["docs", "writer"]);
        let p = push("main", vec![commit(SHA_A, "", &["apps/writerx/a", "README.md", "apps/writer"], &[], &[])]);
        assert!(m.changed_apps(&p).is_empty(), "prefix-only or directory-only paths do not match");
    }

    #[test]
    fn branch_and_repository_filters() {
        let m = matcher();
        let files = || vec![commit(SHA_A, "", &["apps/reader/a", "apps/writer/a"], &[], &[])];
        assert_eq!(names(m.changed_apps(&push("release/1.2", files()))), ["reader", "writer"]);
        assert_eq!(names(m.changed_apps(&push("feature/x", files()))), ["writer"]);
        assert_eq!(names(m.changed_apps(&push("release/1/2", files()))), ["writer"]);
        let mut other = push("main", files());
        other.repository = "acme/other".into();
        assert_eq!(names(m.changed_apps(&other)), ["other", "reader", "writer"]);
        let mut tag_ref = push("main", files());
        tag_ref.r#ref = "refs/tags/v1".into();
        assert!(m.changed_apps(&tag_ref).is_empty());
    }

    #[test]
    fn build_requests_are_deterministic_and_skippable() {
        let m = matcher();
        let mut p = push(
            "main",
            vec![
                commit(SHA_A, "feat", &["apps/writer/a"], &[], &[]),
                commit(SHA_B, "fix", &["apps/writer/b"], &[], &[]),
            ],
        );
        let builds = m.annotate_and_request(&mut p);
        assert_eq!(p.changed_apps, ["writer"]);
        assert_eq!(builds, m.build_requests(&p));
        assert_eq!(builds.len(), 1);
        let b = &builds[0];
        assert_eq!(b.build_id, "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958-build-writer");
        assert!(EventId::parse(&b.build_id).is_ok());
        assert_eq!((b.app.as_str(), b.reason.as_str(), b.conventional_type.as_str()), ("writer", "push", "fix"));
        let src = b.source.as_ref().expect("source");
        assert_eq!((src.repository.as_str(), src.commit_sha.as_str()), ("acme/mono", SHA_B));
        assert_eq!((src.r#ref.as_str(), src.author.as_str()), ("refs/heads/main", "alice"));

        let mut weird = p.clone();
        weird.delivery_id = "x".repeat(300);
        let id = &m.build_requests(&weird)[0].build_id;
        assert!(EventId::parse(id).is_ok(), "{id}");

        let mut skipped = p.clone();
        skipped.skip_ci = true;
        assert!(m.build_requests(&skipped).is_empty());
        let mut deleted = p;
        deleted.deleted = true;
        deleted.after = ZERO_SHA.into();
        assert!(m.build_requests(&deleted).is_empty());
    }

    #[test]
    fn tag_builds() {
        let m = matcher();
        let tag = v1::SourceTag {
            delivery_id: "d".into(),
            repository: "acme/mono".into(),
            tag: "v1.2.3".into(),
            semver: "1.2.3".into(),
            commit_sha: SHA_B.into(),
            actor: "rel".into(),
            ..Default::default()
        };
        let builds = m.tag_build_requests(&tag);
        let apps: Vec<&str> = builds.iter().map(|b| b.app.as_str()).collect();
        assert_eq!(apps, ["docs", "reader", "writer"]);
        assert!(builds.iter().all(|b| b.extra_tags == ["v1.2.3"] && b.reason == "tag"));
        assert!(builds.iter().all(|b| EventId::parse(&b.build_id).is_ok()));
        // The release of the same tag maps to the same build ids.
        let release = v1::SourceTag { release: true, delivery_id: "other".into(), ..tag.clone() };
        let ids = |b: &[v1::BuildRequested]| b.iter().map(|b| b.build_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&m.tag_build_requests(&release)), ids(&builds));
        let plus = v1::SourceTag { tag: "1.0.0+b5".into(), semver: "1.0.0+b5".into(), ..tag.clone() };
        assert_eq!(m.tag_build_requests(&plus)[0].extra_tags, ["1.0.0_b5"]);
        let not_semver = v1::SourceTag { tag: "nightly".into(), semver: String::new(), ..tag.clone() };
        assert!(m.tag_build_requests(&not_semver).is_empty());
        let deleted = v1::SourceTag { deleted: true, ..tag };
        assert!(m.tag_build_requests(&deleted).is_empty());
    }

    #[test]
    fn config_errors_name_the_app() {
        let err = AppMatcher::new(&rules(serde_json::json!([{"name": "writer", "paths": ["apps/[x"]}])))
            .expect_err("bad glob")
            .to_string();
        assert!(err.contains("app writer") && err.contains("path glob"), "{err}");
        let err = AppMatcher::new(&rules(serde_json::json!([{"name": "w", "paths": ["a/**"], "branches": ["{"]}])))
            .expect_err("bad branch glob")
            .to_string();
        assert!(err.contains("app w") && err.contains("branch glob"), "{err}");
        let err =
            AppMatcher::new(&rules(serde_json::json!([{"name": "w", "paths": []}]))).expect_err("no paths").to_string();
        assert!(err.contains("app w"), "{err}");
        let unknown = serde_json::json!([{"name": "w", "paths": ["a"], "path": "typo"}]);
        assert!(serde_json::from_value::<Vec<AppRule>>(unknown).is_err());
        let bad_name = serde_json::json!([{"name": "../w", "paths": ["a"]}]);
        assert!(serde_json::from_value::<Vec<AppRule>>(bad_name).is_err());
    }
}
