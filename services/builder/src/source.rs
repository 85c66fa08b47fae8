//! Source checkout: the exact commit of a build, from a bare repository cached per repository.
//!
//! `<work_dir>/git/<name>-<hash of the URL>.git` is fetched into only when the commit is not
//! there yet (a rebuild, a second tag of the same commit, or another app of the same monorepo
//! at the same push fetches nothing), then the part of the commit's tree the build needs (its
//! context and Dockerfile) is written to the build's own directory. A monorepo of 1,000 apps
//! is one clone, not 1,000. libgit2 is blocking, so all of it runs on the blocking pool; one
//! fetch per repository at a time (a repository is not safe for concurrent fetches), while
//! checkouts, which only read objects, run side by side.

use git2::build::CheckoutBuilder;
use git2::{FetchOptions, Oid, Repository};
use sha2::Digest as _;
use slipway_mesh::names::CommitSha;
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

/// The per-repository cache of bare repositories.
pub struct SourceCache {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SourceCache {
    /// A cache under `<work_dir>/git`.
    pub fn new(work_dir: &Path) -> Self {
        Self { dir: work_dir.join("git"), locks: Mutex::new(HashMap::new()) }
    }

    /// Writes the tree of `commit` (fetched from `url` if needed) into `dest`: only `paths`
    /// (files or directories, relative to the repository's root) when given, else all of it.
    pub async fn checkout(
        &self,
        url: &str,
        commit: &CommitSha,
        dest: &Path,
        paths: &[PathBuf],
    ) -> Result<(), SourceError> {
        let bare = self.dir.join(cache_name(url));
        let sha = commit.as_str().to_owned();
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(url.to_owned()).or_default().clone()
        };
        {
            let _one_fetch_at_a_time = lock.lock().await;
            let (bare, url, sha) = (bare.clone(), url.to_owned(), sha.clone());
            tokio::task::spawn_blocking(move || ensure_commit(&bare, &url, &sha))
                .await
                .map_err(|e| SourceError::Checkout(format!("fetch task: {e}")))??;
        }
        let (dest, paths) = (dest.to_owned(), paths.to_vec());
        tokio::task::spawn_blocking(move || checkout_blocking(&bare, &sha, &dest, &paths))
            .await
            .map_err(|e| SourceError::Checkout(format!("checkout task: {e}")))?
    }
}

/// The cache's directory for `url` under `<work_dir>/git`: `<last path segment>-<12 hex of
/// the URL's SHA-256>.git`, readable, and distinct for two repositories of the same name.
pub fn cache_name(url: &str) -> String {
    let name: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let hash = sha2::Sha256::digest(url.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hex}.git")
}

/// Opens (or creates) the bare repository and fetches when `sha` is not in it yet.
fn ensure_commit(bare: &Path, url: &str, sha: &str) -> Result<(), SourceError> {
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
    Ok(())
}

fn checkout_blocking(bare: &Path, sha: &str, dest: &Path, paths: &[PathBuf]) -> Result<(), SourceError> {
    let checkout_err = |e: git2::Error| SourceError::Checkout(e.message().to_owned());
    let repo = Repository::open_bare(bare).map_err(checkout_err)?;
    let oid = Oid::from_str(sha).map_err(checkout_err)?;
    let commit = repo.find_commit(oid).map_err(|_| SourceError::CommitNotFound(sha.to_owned()))?;
    let tree = commit.tree().map_err(checkout_err)?;
    std::fs::create_dir_all(dest).map_err(|e| SourceError::Checkout(format!("{}: {e}", dest.display())))?;
    let mut options = CheckoutBuilder::new();
    options.target_dir(dest).force().recreate_missing(true).update_index(false).disable_pathspec_match(false);
    for path in paths {
        options.path(path);
    }
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
        for dir in ["app", "other"] {
            std::fs::create_dir(upstream.path().join(dir)).expect("mkdir");
            std::fs::write(upstream.path().join(dir).join("file.txt"), "one").expect("write");
        }
        git(upstream.path(), &["add", "."]);
        git(upstream.path(), &["commit", "-qm", "one"]);
        let first = git(upstream.path(), &["rev-parse", "HEAD"]);
        std::fs::write(upstream.path().join("app/file.txt"), "two").expect("write");
        git(upstream.path(), &["commit", "-qam", "two"]);
        let second = git(upstream.path(), &["rev-parse", "HEAD"]);

        let work = tempfile::tempdir().expect("work");
        let cache = SourceCache::new(work.path());
        let url = upstream.path().display().to_string();
        for (sha, want) in [(&first, "one"), (&second, "two"), (&first, "one")] {
            let dest = work.path().join(format!("co-{want}-{}", &sha[..7]));
            let sha = CommitSha::parse(sha).expect("sha");
            cache.checkout(&url, &sha, &dest, &[]).await.expect("checkout");
            assert_eq!(std::fs::read_to_string(dest.join("app/file.txt")).expect("read"), want);
            assert!(dest.join("other/file.txt").is_file(), "no paths: the whole tree");
        }
        // Only the app's directory: the other app is not written.
        let only = work.path().join("only-app");
        let sha = CommitSha::parse(&second).expect("sha");
        cache.checkout(&url, &sha, &only, &[PathBuf::from("app")]).await.expect("checkout");
        assert_eq!(std::fs::read_to_string(only.join("app/file.txt")).expect("read"), "two");
        assert!(!only.join("other").exists(), "only the paths asked for");
        // One cache entry for the repository, whatever the app.
        assert_eq!(std::fs::read_dir(work.path().join("git")).expect("cache").count(), 1);

        let missing = CommitSha::parse(&"ab".repeat(20)).expect("sha");
        let err = cache.checkout(&url, &missing, &work.path().join("x"), &[]).await.expect_err("missing");
        assert!(matches!(err, SourceError::CommitNotFound(_)), "{err}");
        let err = cache.checkout("git://127.0.0.1:1/none.git", &missing, &work.path().join("y"), &[]).await;
        assert!(err.expect_err("unreachable").is_transient());
    }

    #[test]
    fn cache_names_are_readable_and_distinct() {
        let a = cache_name("git://h:9418/demo/hello.git");
        assert!(a.starts_with("hello-") && a.ends_with(".git"), "{a}");
        assert_ne!(a, cache_name("git://other:9418/demo/hello.git"));
        assert!(cache_name("git@github.com:acme/mono.git").starts_with("mono-"));
    }
}
