//! Source checkout: the exact commit of a build, from a bare repository cached per app.
//!
//! `<work_dir>/git/<app>.git` is fetched into only when the commit is not there yet (a rebuild
//! or a second tag of the same commit fetches nothing), then the commit's tree is written to
//! the build's own directory. libgit2 is blocking, so all of it runs on the blocking pool,
//! one build per app at a time (the cached repository is not safe for concurrent fetches).

use git2::build::CheckoutBuilder;
use git2::{FetchOptions, Oid, Repository};
use slipway_mesh::names::{AppName, CommitSha};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be reached or read; may pass.
    #[error("fetch {url}: {message}")]
    Fetch {
        /// The clone URL.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The repository was fetched but does not contain the commit.
    #[error("commit {0} is not in the repository (no branch or tag reaches it)")]
    CommitNotFound(String),
    /// Writing the checkout failed.
    #[error("checkout: {0}")]
    Checkout(String),
}

impl SourceError {
    /// Whether retrying later could help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Fetch { .. })
    }
}

/// The per-app cache of bare repositories.
pub struct SourceCache {
    dir: PathBuf,
    locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
}

impl SourceCache {
    /// A cache under `<work_dir>/git`.
    pub fn new(work_dir: &Path) -> Self {
        Self { dir: work_dir.join("git"), locks: Mutex::new(HashMap::new()) }
    }

    /// Writes the tree of `commit` (fetched from `url` if needed) into `dest`.
    pub async fn checkout(&self, app: &AppName, url: &str, commit: &CommitSha, dest: &Path) -> Result<(), SourceError> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(app.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let (bare, url, sha, dest) =
            (self.dir.join(format!("{app}.git")), url.to_owned(), commit.as_str().to_owned(), dest.to_owned());
        tokio::task::spawn_blocking(move || checkout_blocking(&bare, &url, &sha, &dest))
            .await
            .map_err(|e| SourceError::Checkout(format!("checkout task: {e}")))?
    }
}

fn checkout_blocking(bare: &Path, url: &str, sha: &str, dest: &Path) -> Result<(), SourceError> {
    let checkout_err = |e: git2::Error| SourceError::Checkout(e.message().to_owned());
    let repo = match Repository::open_bare(bare) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(bare).map_err(|e| SourceError::Checkout(format!("{}: {e}", bare.display())))?;
            Repository::init_bare(bare).map_err(checkout_err)?
        }
    };
    let oid = Oid::from_str(sha).map_err(checkout_err)?;
    if repo.find_commit(oid).is_err() {
        fetch(&repo, url)?;
    }
    let commit = repo.find_commit(oid).map_err(|_| SourceError::CommitNotFound(sha.to_owned()))?;
    let tree = commit.tree().map_err(checkout_err)?;
    std::fs::create_dir_all(dest).map_err(|e| SourceError::Checkout(format!("{}: {e}", dest.display())))?;
    let mut options = CheckoutBuilder::new();
    options.target_dir(dest).force().recreate_missing(true).update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut options)).map_err(checkout_err)
}

/// Fetches every branch and tag. Servers commonly refuse a `want` of a bare commit id
/// (`uploadpack.allowAnySHA1InWant` is off by default, and libgit2 speaks protocol v0), so
/// the commit is reached through the refs that contain it.
fn fetch(repo: &Repository, url: &str) -> Result<(), SourceError> {
    let fetch_err = |e: git2::Error| SourceError::Fetch { url: url.to_owned(), message: e.message().to_owned() };
    let mut remote = repo.remote_anonymous(url).map_err(fetch_err)?;
    let mut options = FetchOptions::new();
    options.download_tags(git2::AutotagOption::All);
    remote
        .fetch(&["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"], Some(&mut options), None)
        .map_err(fetch_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[tokio::test]
    async fn checks_out_the_exact_commit_and_reuses_the_cache() {
        let upstream = tempfile::tempdir().expect("tmp");
        git(upstream.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir(upstream.path().join("app")).expect("mkdir");
        std::fs::write(upstream.path().join("app/file.txt"), "one").expect("write");
        git(upstream.path(), &["add", "."]);
        git(upstream.path(), &["commit", "-qm", "one"]);
        let first = git(upstream.path(), &["rev-parse", "HEAD"]);
        std::fs::write(upstream.path().join("app/file.txt"), "two").expect("write");
        git(upstream.path(), &["commit", "-qam", "two"]);
        let second = git(upstream.path(), &["rev-parse", "HEAD"]);

        let work = tempfile::tempdir().expect("work");
        let cache = SourceCache::new(work.path());
        let app = AppName::parse("writer").expect("app");
        let url = upstream.path().display().to_string();
        for (sha, want) in [(&first, "one"), (&second, "two"), (&first, "one")] {
            let dest = work.path().join(format!("co-{want}-{}", &sha[..7]));
            let sha = CommitSha::parse(sha).expect("sha");
            cache.checkout(&app, &url, &sha, &dest).await.expect("checkout");
            assert_eq!(std::fs::read_to_string(dest.join("app/file.txt")).expect("read"), want);
        }
        let missing = CommitSha::parse(&"ab".repeat(20)).expect("sha");
        let err = cache.checkout(&app, &url, &missing, &work.path().join("x")).await.expect_err("missing");
        assert!(matches!(err, SourceError::CommitNotFound(_)), "{err}");
        let err = cache.checkout(&app, "git://127.0.0.1:1/none.git", &missing, &work.path().join("y")).await;
        assert!(err.expect_err("unreachable").is_transient());
    }
}
