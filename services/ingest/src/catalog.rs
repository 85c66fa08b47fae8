//! The app catalog, from ingest's side: ingest receives the pushes that change it, so ingest
//! compiles it and publishes each revision for every service ([`slipway_runtime::catalog`]).
//!
//! A push to the catalog repository's branch reloads the catalog at that commit; a push to a
//! generator's source repository that adds or removes a directory's marker file (a
//! Dockerfile) reloads it too, with that source at the pushed commit, before the push itself
//! is matched: the new app builds on that same push. A catalog that does not validate is
//! refused with a `catalog.rejected` event naming file, line, key and reason, and the
//! revision in force stays. The catalog is also compared with its branch at start and every
//! [`RECHECK`], so a reload missed while ingest was down (or git was unreachable) catches up.

use crate::apps::{AppMatcher, AppRule};
use crate::gittree;
use serde::{Deserialize, Serialize};
use slipway_catalog::{Catalog, DirTree, Invalid};
use slipway_mesh::names::{AppName, RepoName};
use slipway_mesh::v1;
use slipway_runtime::catalog::{CatalogStore, Live, Revision};
use slipway_runtime::jetstream::Publisher;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the catalog branch is compared with the revision in force.
pub const RECHECK: Duration = Duration::from_secs(60);
/// Problems a `catalog.rejected` event lists (the count says how many there are).
const MAX_PROBLEMS: usize = 100;

/// `[catalog]`: where the app catalog lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Clone URL of the repository holding `root` (the GitOps repository).
    pub repository: Option<String>,
    /// Its `owner/name` as GitHub webhooks name it, to recognize its pushes.
    pub github_repository: Option<RepoName>,
    /// The branch whose head is the catalog.
    pub branch: String,
    /// The root file.
    pub root: String,
    /// A local catalog file instead of a repository, for trying Slipway without git (read at
    /// start; its directory stands for the repository root).
    pub file: Option<PathBuf>,
    /// Clone URLs of the source repositories generators read, by `owner/name`
    /// (`https://github.com/<owner/name>.git` when not listed), and their branch.
    pub sources: BTreeMap<String, String>,
    pub source_branch: String,
    /// Cached clones.
    pub work_dir: PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            repository: None,
            github_repository: None,
            branch: "main".into(),
            root: slipway_catalog::ROOT_FILE.into(),
            file: None,
            sources: BTreeMap::new(),
            source_branch: "main".into(),
            work_dir: PathBuf::from("/var/lib/slipway/ingest/catalog"),
        }
    }
}

impl CatalogConfig {
    /// True when apps come from a catalog (not from `[[apps]]`).
    pub fn enabled(&self) -> bool {
        self.repository.is_some() || self.file.is_some()
    }

    /// Where revisions say they came from.
    fn origin(&self) -> String {
        match (&self.repository, &self.file) {
            (Some(url), _) => url.clone(),
            (None, Some(file)) => format!("file://{}", file.display()),
            (None, None) => String::new(),
        }
    }
}

/// The apps ingest matches pushes against: fixed (`[[apps]]`) or the catalog in force.
pub enum Apps {
    Fixed(Arc<AppMatcher>),
    Live { live: Live, cache: Mutex<Option<(u64, Arc<AppMatcher>)>> },
}

impl Apps {
    /// Puts a revision this ingest just published in force here at once.
    pub fn install(&self, revision: &Revision, catalog: &Arc<Catalog>) {
        if let Apps::Live { live, .. } = self {
            live.install(revision.clone(), catalog.clone());
        }
    }

    /// The catalog in force (`None` for fixed apps).
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        match self {
            Apps::Fixed(_) => None,
            Apps::Live { live, .. } => Some(live.get().catalog.clone()),
        }
    }

    /// The matcher of what is in force now.
    pub fn current(&self) -> Arc<AppMatcher> {
        match self {
            Apps::Fixed(m) => m.clone(),
            Apps::Live { live, cache } => {
                let in_force = live.get();
                let sequence = in_force.revision.as_ref().map_or(0, |r| r.sequence);
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                match cache.as_ref() {
                    Some((seen, matcher)) if *seen == sequence => matcher.clone(),
                    _ => {
                        let matcher = Arc::new(matcher_of(&in_force.catalog, sequence));
                        *cache = Some((sequence, matcher.clone()));
                        matcher
                    }
                }
            }
        }
    }
}

/// The catalog's apps (of revision `revision`) as push-matching rules.
pub fn matcher_of(catalog: &Catalog, revision: u64) -> AppMatcher {
    let rules: Vec<AppRule> = catalog
        .apps
        .values()
        .filter_map(|app| {
            Some(AppRule {
                name: AppName::parse(&app.name).ok()?,
                paths: app.source.paths.clone(),
                branches: app.source.branches.clone(),
                repository: RepoName::parse(&app.source.repository).ok(),
            })
        })
        .collect();
    // The catalog validated these globs; a failure here would be a bug, so no app is matched
    // rather than a wrong one.
    let matcher = AppMatcher::new(&rules).unwrap_or_else(|e| {
        tracing::error!(error = %e, "catalog apps do not compile to matchers");
        AppMatcher::empty()
    });
    matcher.with_revision(revision)
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// A new revision is in force (the watchers see it a moment later; this is it now).
    Published(Revision, Arc<Catalog>),
    /// The catalog at that commit is the one in force already.
    Unchanged,
    /// It does not validate; the revision in force stays.
    Refused(Invalid),
}

/// Compiles and publishes catalog revisions; one reload at a time.
pub struct Reloader {
    config: CatalogConfig,
    store: CatalogStore,
    publisher: Publisher,
    gate: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(config: CatalogConfig, store: CatalogStore, publisher: Publisher) -> Self {
        Self { config, store, publisher, gate: tokio::sync::Mutex::new(()) }
    }

    /// True when a push to `repository`'s `git_ref` changes the catalog itself.
    pub fn is_catalog_push(&self, repository: &str, git_ref: &str) -> bool {
        self.config.github_repository.as_ref().is_some_and(|r| r.as_str() == repository)
            && git_ref.strip_prefix("refs/heads/") == Some(self.config.branch.as_str())
    }

    /// True when `push` adds or removes a marker file of a generator of `catalog` in its
    /// source repository: it may make or remove an app.
    pub fn changes_generated_apps(&self, catalog: &Catalog, push: &v1::SourcePush) -> bool {
        let markers: Vec<&str> = catalog
            .generators
            .iter()
            .filter(|g| g.repository == push.repository)
            .map(|g| g.requires.as_str())
            .collect();
        let branch = push.r#ref.strip_prefix("refs/heads/");
        !markers.is_empty()
            && branch == Some(self.config.source_branch.as_str())
            && push.commits.iter().flat_map(|c| c.added.iter().chain(&c.removed)).any(|f| {
                let name = f.rsplit('/').next().unwrap_or(f);
                markers.contains(&name)
            })
    }

    /// Reads the catalog (at `commit` of its branch, or its head; with `source` = (repository,
    /// commit) read at that commit), and publishes it when it validates and differs from the
    /// revision in force, or refuses it with a `catalog.rejected` event.
    pub async fn reload(
        &self,
        commit: Option<String>,
        source: Option<(String, String)>,
    ) -> crate::error::Result<Reloaded> {
        let _one_at_a_time = self.gate.lock().await;
        let started = std::time::Instant::now();
        let config = self.config.clone();
        let requested = commit.clone();
        let compiled = tokio::task::spawn_blocking(move || compile(&config, commit.as_deref(), source)).await??;
        let (commit, result) = compiled;
        let in_force = self.store.current().await?;
        let github_repository = self.config.github_repository.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let outcome = match result {
            Ok(catalog) => {
                // Compared by digest: the revision in force is not downloaded (16 MB at 10,000
                // apps) on every recheck.
                let digest = slipway_runtime::catalog::digest_of(&catalog)?;
                // A recheck (no commit asked for) that finds the same catalog at a newer commit
                // (the promoter's own commits move the branch) publishes nothing: every
                // service would load the same catalog again. A push is announced either way,
                // for its commit status.
                let unchanged = in_force
                    .as_ref()
                    .is_some_and(|rev| rev.digest == digest && (rev.commit == commit || requested.is_none()));
                if unchanged {
                    Reloaded::Unchanged
                } else {
                    let revision = self.store.publish(&self.config.origin(), &commit, &catalog).await?;
                    let event = v1::CatalogPublished {
                        repository: revision.repository.clone(),
                        commit_sha: commit.clone(),
                        github_repository,
                        digest: revision.digest.clone(),
                        apps: u32::try_from(revision.apps).unwrap_or(u32::MAX),
                        revision: revision.sequence,
                    };
                    self.announce(&event).await;
                    tracing::info!(%commit, apps = revision.apps, took_ms = started.elapsed().as_millis() as u64, "catalog published");
                    Reloaded::Published(revision, Arc::new(catalog))
                }
            }
            Err(invalid) => {
                let event = v1::CatalogRejected {
                    repository: self.config.origin(),
                    commit_sha: commit.clone(),
                    github_repository,
                    problems: invalid
                        .0
                        .iter()
                        .take(MAX_PROBLEMS)
                        .map(|p| v1::CatalogProblem {
                            file: p.file.clone(),
                            line: u32::try_from(p.line).unwrap_or(0),
                            key: slipway_mesh::bounds::capped(&p.key, 512),
                            reason: slipway_mesh::bounds::capped(&p.reason, 1024),
                        })
                        .collect(),
                    problem_count: u32::try_from(invalid.0.len()).unwrap_or(u32::MAX),
                    in_force_commit: in_force.map(|r| r.commit).unwrap_or_default(),
                };
                self.announce(&event).await;
                tracing::warn!(%commit, problems = invalid.0.len(), first = %invalid.0[0], "catalog refused");
                metrics::counter!("slipway_catalog_refused_total").increment(1);
                Reloaded::Refused(invalid)
            }
        };
        metrics::histogram!("slipway_catalog_reload_seconds").record(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    async fn announce<E: slipway_mesh::EventPayload>(&self, event: &E) {
        if let Err(e) = self.publisher.publish(event).await {
            tracing::warn!(error = %e, "catalog event not published");
        }
    }

    /// Reloads from the branch head at once and every [`RECHECK`] until `shutdown`.
    pub async fn keep_current(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.reload(None, None).await {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "catalog not reloaded; the revision in force stays"),
            }
            if self.config.repository.is_none() {
                return; // a local file is read once
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

type Compiled = (String, Result<Catalog, Invalid>);

/// Blocking: fetch, read and compile.
fn compile(
    config: &CatalogConfig,
    commit: Option<&str>,
    source: Option<(String, String)>,
) -> crate::error::Result<Compiled> {
    let work = &config.work_dir;
    let sources = |repo: &str| -> Option<Vec<String>> {
        let url = config.sources.get(repo).cloned().unwrap_or_else(|| format!("https://github.com/{repo}.git"));
        let at = source.as_ref().filter(|(r, _)| r == repo).map(|(_, c)| c.as_str());
        let read = gittree::Clone::open(work, &url).and_then(|clone| {
            let (_, tree) = clone.tree_at(&config.source_branch, at)?;
            Ok(slipway_catalog::Tree::paths(&tree))
        });
        read.map_err(|e| tracing::warn!(repository = repo, error = %e, "generator source not read")).ok()
    };
    if let Some(url) = &config.repository {
        let clone = gittree::Clone::open(work, url)?;
        let (oid, tree) = clone.tree_at(&config.branch, commit)?;
        return Ok((oid.to_string(), slipway_catalog::build(&tree, &config.root, &sources)));
    }
    let Some(file) = &config.file else { return Err(crate::error::Error::Invalid("no catalog is configured".into())) };
    let dir = file.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let root = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((String::new(), slipway_catalog::build(&DirTree(dir), &root, &sources)))
}
