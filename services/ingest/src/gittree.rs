//! A repository's files at one commit, read from a cached bare clone (no checkout), for the
//! app catalog: its own files, and the trees of the source repositories generators read.

use crate::error::{Error, Result};
use git2::{AutotagOption, FetchOptions, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use std::path::{Path, PathBuf};

/// A cached bare clone of `url`.
pub struct Clone {
    repo: Repository,
    url: String,
}

fn cache_dir(work_dir: &Path, url: &str) -> PathBuf {
    // FNV-1a of the URL: stable, filesystem-safe, one directory per repository.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    work_dir.join(format!("{hash:016x}.git"))
}

impl Clone {
    /// Opens (or creates) the cached clone of `url` under `work_dir`.
    pub fn open(work_dir: &Path, url: &str) -> Result<Self> {
        let dir = cache_dir(work_dir, url);
        let repo = match Repository::open_bare(&dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(&dir).map_err(|e| Error::Git(format!("{}: {e}", dir.display())))?;
                Repository::init_bare(&dir)
                    .map_err(|e| Error::Git(format!("git init {}: {}", dir.display(), e.message())))?
            }
        };
        Ok(Self { repo, url: url.to_owned() })
    }

    /// Fetches `branch` and returns its head.
    pub fn fetch(&self, branch: &str) -> Result<Oid> {
        let tracking = format!("refs/remotes/origin/{branch}");
        let mut remote =
            self.repo.remote_anonymous(&self.url).map_err(|e| Error::Git(format!("git remote: {}", e.message())))?;
        let mut options = FetchOptions::new();
        options.download_tags(AutotagOption::None);
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(|e| Error::Git(format!("git fetch {branch} from {}: {}", self.url, e.message())))?;
        self.repo.refname_to_id(&tracking).map_err(|_| Error::Git(format!("no branch {branch} in {}", self.url)))
    }

    /// The tree at `commit` (a hex id), fetching `branch` first when the commit is not here.
    pub fn tree_at(&self, branch: &str, commit: Option<&str>) -> Result<(Oid, GitTree<'_>)> {
        let wanted = match commit {
            Some(hex) => Oid::from_str(hex).map_err(|e| Error::Git(format!("commit {hex:?}: {}", e.message())))?,
            None => self.fetch(branch)?,
        };
        if self.repo.find_commit(wanted).is_err() {
            self.fetch(branch)?;
        }
        let commit = self
            .repo
            .find_commit(wanted)
            .map_err(|_| Error::Git(format!("commit {wanted} is not in {} {branch}", self.url)))?;
        let tree = commit.tree().map_err(|e| Error::Git(format!("tree of {wanted}: {}", e.message())))?;
        Ok((wanted, GitTree { repo: &self.repo, tree }))
    }
}

/// The files of one commit.
pub struct GitTree<'r> {
    repo: &'r Repository,
    tree: git2::Tree<'r>,
}

impl slipway_catalog::Tree for GitTree<'_> {
    fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        let walked = self.tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
            {
                out.push(format!("{dir}{name}"));
            }
            TreeWalkResult::Ok
        });
        if let Err(e) = walked {
            tracing::warn!(error = %e.message(), "reading a git tree stopped early");
        }
        out
    }

    fn read(&self, path: &str) -> Option<String> {
        let entry = self.tree.get_path(Path::new(path)).ok()?;
        let blob = self.repo.find_blob(entry.id()).ok()?;
        String::from_utf8(blob.content().to_vec()).ok()
    }
}
