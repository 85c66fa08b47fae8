//! The blocking git side of one writer: a cached bare clone of the repository, and for each
//! batch look for landed promotion ids → edit blobs → commit → push (never forced). The first
//! round builds on the head this clone last pushed or fetched, without a fetch; a rejected
//! push is fetched and repeated on the fresh remote head. The promotion ids of the recent
//! history ([`History`]) are kept with the clone and moved on by each pushed commit.
//!
//! There is no working tree: edits read blobs from the fetched commit's tree and write a new
//! tree beside it, so "reset to the remote branch" is just starting from the fetched commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{AutotagOption, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository, Signature};

use super::history::History;
use super::writer::{Counters, WriterConfig};
use super::{Error, Landed, Outcome, RepoKey, Result, Update, daemon, message, yaml};
use crate::timing;

/// The local ref a commit is pushed from (libgit2 pushes refs, not bare object ids); it also
/// keeps the last pushed commit for fetch negotiation (see [`fetch`]).
pub(super) const PUSH_REF: &str = "refs/slipway/push";

/// Writes one batch in the cached clone `repo`; one result per update, in order, and the
/// commit pushed, if any. `history` is what the clone knows of the branch's recent promotion
/// ids.
pub(crate) fn write_batch(
    repo: &Repository,
    history: &mut Option<History>,
    config: &WriterConfig,
    counters: &Counters,
    key: &RepoKey,
    updates: &[Update],
) -> (Vec<Result<Landed>>, Option<Oid>) {
    // First try on the head this clone last saw (no fetch round trip). That is safe: a
    // fast-forward push from it proves the remote was still there, so the trailer check on
    // its history was complete; a stale head only costs a rejected push.
    let mut cached = repo.refname_to_id(&tracking_ref(key)).ok();
    let (mut attempt, mut last) = (0, String::new());
    while attempt < config.push_attempts {
        let head = match cached.take() {
            Some(head) => Try::Cached(head),
            None => {
                attempt += 1;
                if attempt > 1 {
                    std::thread::sleep(backoff(config.backoff, attempt, rand::random()));
                }
                let fetching = Instant::now();
                let fetched = fetch(repo, key);
                timing::record(timing::GIT_FETCH, fetching.elapsed());
                match fetched {
                    Ok(head) => Try::Fetched(head),
                    Err(e @ Error::BranchMissing { .. }) => return (vec![Err(e); updates.len()], None),
                    Err(e) => {
                        tracing::warn!(attempt, error = %e, "gitops fetch failed");
                        counters.retried();
                        last = e.to_string();
                        continue;
                    }
                }
            }
        };
        match try_write(repo, history, config, key, updates, head) {
            Round::Done { results, pushed } => {
                counters.committed(pushed.is_some());
                return (results, pushed);
            }
            Round::Refetch => {}
            Round::Rejected(reason) => {
                counters.retried();
                last = reason;
            }
        }
    }
    let failed = Error::PushFailed { branch: key.branch.clone(), attempts: config.push_attempts, last };
    (vec![Err(failed); updates.len()], None)
}

/// The head one attempt builds on.
#[derive(Debug, Clone, Copy)]
enum Try {
    /// What this clone last fetched or pushed; may be stale.
    Cached(Oid),
    /// Just fetched.
    Fetched(Oid),
}

/// How one round ended.
enum Round {
    /// Final answers, and the commit that went out, if one did.
    Done { results: Vec<Result<Landed>>, pushed: Option<Oid> },
    /// Nothing to commit on a cached head: check again on a fresh one.
    Refetch,
    /// The push was rejected or failed, for this reason.
    Rejected(String),
}

/// One round on `head`: plan, commit, push. `history` is kept for the next round when it is
/// about `head`, and moved on to the pushed commit.
fn try_write(
    repo: &Repository,
    history: &mut Option<History>,
    config: &WriterConfig,
    key: &RepoKey,
    updates: &[Update],
    head: Try,
) -> Round {
    let (Try::Cached(base) | Try::Fetched(base)) = head;
    let failed = |e: Error| Round::Done { results: vec![Err(e); updates.len()], pushed: None };
    // A git daemon's start-up (fork, exec, ref advertisement) overlaps planning and committing.
    let opening = daemon::handles(&key.url).then(|| daemon::Opening::start(key));
    let planning = Instant::now();
    if history.as_ref().is_none_or(|h| h.head() != base) {
        *history = match History::walk(repo, base, config.history_depth) {
            Ok(walked) => Some(walked),
            Err(e) => return failed(e),
        };
    }
    let landed = history.as_ref().map(History::landed).unwrap_or_default();
    let plan = match Plan::make(repo, base, &landed, updates) {
        Ok(plan) => plan,
        Err(e) => return failed(e),
    };
    timing::record(timing::GIT_PLAN, planning.elapsed());
    let Some(tree) = plan.tree else {
        // "Unchanged" judged on a stale head could hide a newer remote value: look again.
        return match head {
            Try::Fetched(_) => Round::Done { results: plan.results(base, base), pushed: None },
            Try::Cached(_) => Round::Refetch,
        };
    };
    let committing = Instant::now();
    let commit = match commit(repo, config, base, tree, &plan.committed(updates)) {
        Ok(commit) => commit,
        Err(e) => return failed(e),
    };
    timing::record(timing::GIT_COMMIT, committing.elapsed());
    let pushing = Instant::now();
    let pushed = push(repo, key, Some(base), commit, opening);
    timing::record(timing::GIT_PUSH, pushing.elapsed());
    match pushed {
        Ok(()) => {
            // The pushed commit is the remote head now, and the next batch starts from it:
            // `history` moves on to it, and the clone's thread records it as the tracking ref
            // once the batch is answered (a ref is a file, so off the answer's path).
            let ids = plan.committed(updates).iter().map(|u| u.promotion_id.clone()).collect();
            if let Some(history) = history.as_mut() {
                history.advance(commit, ids, config.history_depth);
            }
            Round::Done { results: plan.results(base, commit), pushed: Some(commit) }
        }
        Err(reason) => {
            tracing::info!(?head, %reason, "gitops push rejected or failed; refetching");
            Round::Rejected(reason)
        }
    }
}

pub(super) fn tracking_ref(key: &RepoKey) -> String {
    format!("refs/remotes/origin/{}", key.branch)
}

/// Exponential backoff from `base` (capped at 2 s) plus up to 100 % jitter, so racing
/// writers spread out; `jitter` is in [0, 1).
pub(crate) fn backoff(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(2).min(16)).min(Duration::from_secs(2));
    exp + exp.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Opens the cached clone for `key` under `work_dir`, re-creating it when it is unreadable.
pub(super) fn open(work_dir: &Path, key: &RepoKey) -> Result<Repository> {
    let dir = work_dir.join(cache_dir_name(key));
    if dir.exists() {
        remove_stale_locks(&dir);
        match Repository::open_bare(&dir) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e.message(), "re-creating broken gitops clone");
                std::fs::remove_dir_all(&dir).map_err(|e| io_error("remove broken clone", &dir, e))?;
            }
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_error("create clone dir", &dir, e))?;
    Repository::init_bare(&dir).map_err(Error::git("init"))
}

/// Deletes the `*.lock` files a writer killed mid-update left (`refs/remotes/origin/main.lock`
/// after a kill -9): only this process's one writer for the key writes this clone, so a lock
/// found before it opens is stale, and would refuse every later ref update for ever.
fn remove_stale_locks(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && path.file_name().is_some_and(|n| n != "objects") {
                stack.push(path);
            } else if !is_dir && path.extension().is_some_and(|e| e == "lock") {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(lock = %path.display(), "removed a stale lock of a writer that died"),
                    Err(e) => tracing::warn!(lock = %path.display(), error = %e, "stale lock not removed"),
                }
            }
        }
    }
}

fn io_error(op: &'static str, dir: &Path, e: std::io::Error) -> Error {
    Error::Git { op, message: format!("{}: {e}", dir.display()) }
}

/// A readable, collision-free directory name for a repository branch.
pub(crate) fn cache_dir_name(key: &RepoKey) -> PathBuf {
    let readable: String = format!("{}-{}", key.redacted_url(), key.branch)
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b.to_ascii_lowercase()) } else { '-' })
        .collect();
    let tail: String = readable.chars().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    // FNV-1a: stable across runs and Rust versions, so the cache survives restarts.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.redacted_url().bytes().chain([0]).chain(key.branch.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    PathBuf::from(format!("{}-{hash:016x}", tail.trim_matches('-')))
}

/// Fetches the branch into its tracking ref and returns the remote head.
pub(super) fn fetch(repo: &Repository, key: &RepoKey) -> Result<Oid> {
    let tracking = tracking_ref(key);
    // A stale tracking ref would hide a deleted branch. Its objects stay, and `PUSH_REF`
    // (our last commit) still offers the history to the fetch negotiation.
    if let Ok(mut old) = repo.find_reference(&tracking) {
        old.delete().map_err(Error::git("delete tracking ref"))?;
    }
    let mut remote = repo.remote_anonymous(&key.url).map_err(Error::git("remote"))?;
    let mut options = FetchOptions::new();
    options.download_tags(AutotagOption::None);
    let refspec = format!("+{}:{tracking}", key.head_ref());
    remote.fetch(&[refspec.as_str()], Some(&mut options), None).map_err(Error::git("fetch"))?;
    repo.refname_to_id(&tracking)
        .map_err(|_| Error::BranchMissing { url: key.redacted_url(), branch: key.branch.clone() })
}

/// Promotion id → the newest commit carrying it, among the last `depth` commits from `head`.
pub(super) fn landed_ids(repo: &Repository, head: Oid, depth: usize) -> Result<HashMap<String, Oid>> {
    Ok(History::walk(repo, head, depth)?.landed())
}

/// What happens to each update of a batch on one remote head.
#[derive(Debug)]
enum Slot {
    Landed(Oid),
    Edited,
    Unchanged,
    Failed(Error),
    /// The same promotion id earlier in the batch.
    SameAs(usize),
}

pub(super) struct Plan {
    slots: Vec<Slot>,
    /// The new tree, when anything changed.
    pub(super) tree: Option<Oid>,
}

/// A file of the batch: its text at the remote head and after the edits so far.
struct FileEdit {
    mode: git2::FileMode,
    original: String,
    current: String,
}

impl Plan {
    /// What `updates` do on `head`, given the promotions that `landed` there already.
    pub(super) fn make(
        repo: &Repository,
        head: Oid,
        landed: &HashMap<String, Oid>,
        updates: &[Update],
    ) -> Result<Plan> {
        let base = repo.find_commit(head).and_then(|c| c.tree()).map_err(Error::git("read tree"))?;
        let mut files: BTreeMap<String, FileEdit> = BTreeMap::new();
        let mut slots = Vec::with_capacity(updates.len());
        for (i, update) in updates.iter().enumerate() {
            let earlier = updates[..i].iter().position(|u| u.promotion_id == update.promotion_id);
            let slot = match (landed.get(&update.promotion_id), earlier) {
                (Some(oid), _) => Slot::Landed(*oid),
                (None, Some(j)) => Slot::SameAs(j),
                (None, None) => edit(repo, &base, &mut files, update),
            };
            slots.push(slot);
        }
        let mut builder = git2::build::TreeUpdateBuilder::new();
        let mut changed = false;
        for (path, file) in files.iter().filter(|(_, f)| f.current != f.original) {
            let blob = repo.blob(file.current.as_bytes()).map_err(Error::git("write blob"))?;
            builder.upsert(path.as_str(), blob, file.mode);
            changed = true;
        }
        let tree =
            if changed { Some(builder.create_updated(repo, &base).map_err(Error::git("write tree"))?) } else { None };
        let tree = tree.filter(|t| *t != base.id());
        if tree.is_none() {
            slots.iter_mut().filter(|s| matches!(s, Slot::Edited)).for_each(|s| *s = Slot::Unchanged);
        }
        Ok(Plan { slots, tree })
    }

    /// The updates that go into the commit (their trailers).
    pub(super) fn committed<'u>(&self, updates: &'u [Update]) -> Vec<&'u Update> {
        updates.iter().zip(&self.slots).filter(|(_, s)| matches!(s, Slot::Edited)).map(|(u, _)| u).collect()
    }

    pub(super) fn results(&self, head: Oid, commit: Oid) -> Vec<Result<Landed>> {
        let mut results: Vec<Result<Landed>> = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let landed = |commit: Oid, outcome| Ok(Landed { commit: commit.to_string(), outcome });
            let result = match slot {
                Slot::Landed(oid) => landed(*oid, Outcome::AlreadyLanded),
                Slot::Edited => landed(commit, Outcome::Committed),
                Slot::Unchanged => landed(head, Outcome::Unchanged),
                Slot::Failed(e) => Err(e.clone()),
                Slot::SameAs(j) => results[*j].clone(),
            };
            results.push(result);
        }
        results
    }
}

/// Applies one update to the batch's copy of its file.
fn edit(repo: &Repository, base: &git2::Tree<'_>, files: &mut BTreeMap<String, FileEdit>, update: &Update) -> Slot {
    let path = update.target.file();
    if !files.contains_key(path) {
        match read_file(repo, base, path) {
            Ok(file) => files.insert(path.to_owned(), file),
            Err(e) => return Slot::Failed(e),
        };
    }
    let Some(file) = files.get_mut(path) else { return Slot::Failed(Error::FileNotFound { file: path.into() }) };
    match yaml::apply(&file.current, &update.target, &update.change) {
        Ok(text) if text == file.current => Slot::Unchanged,
        Ok(text) => {
            file.current = text;
            Slot::Edited
        }
        Err(e) => Slot::Failed(e),
    }
}

fn read_file(repo: &Repository, base: &git2::Tree<'_>, path: &str) -> Result<FileEdit> {
    let missing = || Error::FileNotFound { file: path.to_owned() };
    let entry = base.get_path(Path::new(path)).map_err(|_| missing())?;
    let blob = entry.to_object(repo).ok().and_then(|o| o.into_blob().ok()).ok_or_else(missing)?;
    let text = std::str::from_utf8(blob.content())
        .map_err(|_| Error::Yaml { file: path.to_owned(), reason: "not UTF-8".into() })?
        .to_owned();
    let executable = entry.filemode() == i32::from(git2::FileMode::BlobExecutable);
    let mode = if executable { git2::FileMode::BlobExecutable } else { git2::FileMode::Blob };
    Ok(FileEdit { mode, original: text.clone(), current: text })
}

pub(super) fn commit(
    repo: &Repository,
    config: &WriterConfig,
    head: Oid,
    tree: Oid,
    updates: &[&Update],
) -> Result<Oid> {
    let signature = Signature::now(&config.author_name, &config.author_email).map_err(Error::git("signature"))?;
    let tree = repo.find_tree(tree).map_err(Error::git("read tree"))?;
    let parent = repo.find_commit(head).map_err(Error::git("read commit"))?;
    let text = message::commit_message(&config.message_template, updates);
    repo.commit(None, &signature, &signature, &text, &tree, &[&parent]).map_err(Error::git("commit"))
}

/// Pushes `commit` to the branch, expected at `from` (`None`: a new branch), without force.
/// `Err` carries why the push did not land (rejected as non-fast-forward, or the remote
/// unreachable); both are worth a retry. `opening` is a `git://` session already on its way.
pub(super) fn push(
    repo: &Repository,
    key: &RepoKey,
    from: Option<Oid>,
    commit: Oid,
    opening: Option<daemon::Opening>,
) -> Result<(), String> {
    if let Some(opening) = opening {
        return opening.session()?.push(repo, from, commit);
    }
    if daemon::handles(&key.url) {
        return daemon::push(repo, key, from, commit);
    }
    repo.reference(PUSH_REF, commit, true, "slipway: push").map_err(|e| e.message().to_owned())?;
    let mut remote = repo.remote_anonymous(&key.url).map_err(|e| e.message().to_owned())?;
    let rejected = RefCell::new(None);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.push_update_reference(|name, status| {
        if let Some(status) = status {
            *rejected.borrow_mut() = Some(format!("{name}: {status}"));
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    // No leading `+`: the server (and libgit2 before it) refuses anything but a fast-forward.
    let refspec = format!("{PUSH_REF}:{}", key.head_ref());
    let pushed = remote.push(&[refspec.as_str()], Some(&mut options));
    drop(options);
    pushed.map_err(|e| format!("{:?}: {}", e.code(), e.message()))?;
    match rejected.into_inner() {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_left_by_a_killed_writer_is_removed_on_open() {
        let work = tempfile::tempdir().expect("tmp");
        let key = RepoKey::new("git://127.0.0.1:9418/gitops.git", "main").expect("key");
        let repo = open(work.path(), &key).expect("init");
        let sig = git2::Signature::now("t", "t@example.invalid").expect("signature");
        let tree = repo.treebuilder(None).expect("tree builder").write().expect("tree");
        let head = repo.commit(None, &sig, &sig, "seed", &repo.find_tree(tree).expect("tree"), &[]).expect("commit");
        let tracking = "refs/remotes/origin/main";
        let lock = work.path().join(cache_dir_name(&key)).join(format!("{tracking}.lock"));
        std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
        std::fs::write(&lock, b"").expect("a stale lock");
        drop(repo);
        assert!(
            Repository::open_bare(work.path().join(cache_dir_name(&key)))
                .and_then(|r| r.reference(tracking, head, true, "blocked").map(|_| ()))
                .is_err(),
            "the lock blocks ref updates"
        );
        let repo = open(work.path(), &key).expect("reopen");
        assert!(!lock.exists());
        repo.reference(tracking, head, true, "after a crash").expect("ref updates work again");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(20);
        assert_eq!(backoff(base, 2, 0.0), Duration::from_millis(20));
        assert_eq!(backoff(base, 4, 0.0), Duration::from_millis(80));
        assert_eq!(backoff(base, 4, 0.5), Duration::from_millis(120));
        assert_eq!(backoff(base, 30, 0.99), Duration::from_secs(2) + Duration::from_secs(2).mul_f64(0.99));
    }

    #[test]
    fn cache_dirs_are_distinct_and_tame() {
        let a = RepoKey::new("git://127.0.0.1:9418/gitops.git", "main").expect("key");
        let b = RepoKey::new("git://127.0.0.1:9418/gitops.git", "prod").expect("key");
        let (da, db) = (cache_dir_name(&a), cache_dir_name(&b));
        assert_ne!(da, db);
        let name = da.to_str().expect("utf-8");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{name}");
        assert!(name.starts_with("git---127-0-0-1-9418-gitops-git-main-"), "{name}");
        assert_eq!(cache_dir_name(&a), da, "stable");
        let secret = RepoKey::new("https://bot:s3cret@git.example/gitops.git", "main").expect("key");
        assert_eq!(secret.redacted_url(), "https://git.example/gitops.git");
        assert!(!cache_dir_name(&secret).to_string_lossy().contains("s3cret"));
    }
}
