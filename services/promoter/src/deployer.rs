//! Writing a promotion's version into the GitOps repository: the [`Deployer`] trait, with the
//! git write-back ([`GitDeployer`], over [`GitopsWriter`]) as the real implementation and
//! [`RecordingDeployer`] as the test double that only records what it was asked to write.
//! Stages in PR mode go through [`PullRequests`] instead: a branch of their own and a pull
//! request, whose URL [`Written`] carries.

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use slipway_mesh::names::{AppName, CommitSha};

use crate::config::{AppConfig, TargetKind};
use crate::domain::Promotion;
use crate::error::{Error, Result};
use crate::gitops::pr::PullRequests;
use crate::gitops::{self, GitopsWriter, ImageChange, RepoKey, Target, Update};

/// Where a written version landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub repository: String,
    pub branch: String,
    pub commit: String,
    /// PR mode: the pull request that proposes `commit` (on `branch`) for the target branch.
    pub pull_request_url: Option<String>,
}

/// Writes a promotion's version for an app. Idempotent by promotion id: writing the same
/// promotion again answers where it landed the first time.
pub trait Deployer: Send + Sync + 'static {
    fn write<'a>(&'a self, app: &'a AppConfig, promotion: &'a Promotion) -> BoxFuture<'a, Result<Written>>;
}

/// The real thing: one commit per promotion (or per batch) pushed to the GitOps repository.
#[derive(Debug)]
pub struct GitDeployer {
    writer: GitopsWriter,
    pull_requests: Option<PullRequests>,
}

impl GitDeployer {
    pub fn new(writer: GitopsWriter) -> Self {
        GitDeployer { writer, pull_requests: None }
    }

    /// Stages in PR mode: their updates go onto a branch of their own and a pull request.
    pub fn with_pull_requests(mut self, pull_requests: Option<PullRequests>) -> Self {
        self.pull_requests = pull_requests;
        self
    }

    /// The writer's counters.
    pub fn stats(&self) -> gitops::WriterStats {
        self.writer.stats()
    }
}

/// The write-back update for `promotion` of `app`.
pub fn update_for(app: &AppConfig, promotion: &Promotion) -> Result<Update> {
    let target = app.target(&promotion.stage);
    let file = target.path_for(&app.name, &promotion.stage);
    let image = &promotion.version.image;
    let (target_spec, with_name) = match target.kind {
        TargetKind::Kustomize => {
            let name = target.image.clone().unwrap_or_else(|| image.repository.clone());
            (Target::Kustomize { file, image: name }, target.set_new_name)
        }
        TargetKind::Helm => {
            let spec =
                Target::HelmValues { file, tag_key: target.tag_key.clone(), digest_key: target.digest_key.clone() };
            (spec, false)
        }
        TargetKind::Yaml => {
            let template = target.value.as_deref().unwrap_or("{image}:{tag}");
            let value = render_value(template, image)?;
            (Target::Value { file, key: target.tag_key.clone(), value }, false)
        }
    };
    let change = ImageChange::from_image_ref(image, with_name).map_err(permanent)?;
    Ok(Update {
        promotion_id: promotion.id.clone(),
        app: app.name.clone(),
        stage: promotion.stage.clone(),
        source_commit: CommitSha::parse(&promotion.version.source.commit_sha).ok(),
        target: target_spec,
        change,
    })
}

/// A `yaml` target's value from its template: `{image}` (the repository), `{tag}`, `{digest}`.
fn render_value(template: &str, image: &slipway_mesh::v1::ImageRef) -> Result<String> {
    for (part, have) in [("{image}", &image.repository), ("{tag}", &image.tag), ("{digest}", &image.digest)] {
        if template.contains(part) && have.is_empty() {
            let message = format!("the value template {template:?} uses {part}, which this version does not have");
            return Err(Error::Deploy { message, permanent: true });
        }
    }
    Ok(template.replace("{image}", &image.repository).replace("{tag}", &image.tag).replace("{digest}", &image.digest))
}

fn permanent(e: gitops::Error) -> Error {
    Error::Deploy { message: e.to_string(), permanent: true }
}

/// Malformed input or a repository that does not fit will fail the same way again.
fn classify(e: gitops::Error) -> Error {
    let permanent = matches!(
        e,
        gitops::Error::Invalid { .. }
            | gitops::Error::FileNotFound { .. }
            | gitops::Error::Yaml { .. }
            | gitops::Error::BranchMissing { .. }
            | gitops::Error::Api { permanent: true, .. }
    );
    Error::Deploy { message: e.to_string(), permanent }
}

impl Deployer for GitDeployer {
    fn write<'a>(&'a self, app: &'a AppConfig, promotion: &'a Promotion) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let target = app.target(&promotion.stage);
            let key = RepoKey::new(&target.repository, &target.branch).map_err(permanent)?;
            let update = update_for(app, promotion)?;
            if let Some(pull_requests) = self.pull_requests.as_ref().filter(|p| p.applies_to(&promotion.stage)) {
                let Some(repository) = target.github_repository.as_deref() else {
                    let message = format!("app {} has no gitops.github_repository for PR mode", app.name);
                    return Err(Error::Deploy { message, permanent: true });
                };
                let proposed = pull_requests.propose(&key, repository, update).await.map_err(classify)?;
                let pull_request_url = proposed.pull_request.map(|pr| pr.html_url);
                return Ok(Written {
                    repository: key.url,
                    branch: proposed.branch,
                    commit: proposed.commit,
                    pull_request_url,
                });
            }
            let landed = self.writer.apply(&key, update).await.map_err(classify)?;
            Ok(Written { repository: key.url, branch: key.branch, commit: landed.commit, pull_request_url: None })
        })
    }
}

/// A [`Deployer`] that writes nothing: it records each call and answers a made-up commit, or
/// the error set with [`fail_with`](Self::fail_with).
#[derive(Debug, Default, Clone)]
pub struct RecordingDeployer {
    calls: Arc<Mutex<Vec<(AppName, Promotion)>>>,
    failure: Arc<Mutex<Option<(String, bool)>>>,
}

impl RecordingDeployer {
    pub fn new() -> Self {
        Self::default()
    }

    /// What was written so far: (app, promotion) in call order.
    pub fn calls(&self) -> Vec<(AppName, Promotion)> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every later write fails with `message` (`permanent` or not); `None` heals.
    pub fn fail_with(&self, failure: Option<(String, bool)>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = failure;
    }
}

impl Deployer for RecordingDeployer {
    fn write<'a>(&'a self, app: &'a AppConfig, promotion: &'a Promotion) -> BoxFuture<'a, Result<Written>> {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let result = match failure {
            Some((message, permanent)) => Err(Error::Deploy { message, permanent }),
            None => {
                self.calls.lock().unwrap_or_else(PoisonError::into_inner).push((app.name.clone(), promotion.clone()));
                let commit = format!("recorded-{}", promotion.id);
                let target = app.target(&promotion.stage);
                let (repository, branch) = (target.repository.clone(), target.branch.clone());
                Ok(Written { repository, branch, commit, pull_request_url: None })
            }
        };
        Box::pin(async move { result })
    }
}
