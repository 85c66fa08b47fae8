//! A worker's cached clone on a thread of its own: the objects a batch creates (blobs, trees,
//! the commit) are written to memory, and written to disk only after the batch is answered.
//!
//! Why: each loose object is a new file, and creating files was the largest part of making a
//! commit (the edited file's tree path, the commit, refs: 5–8 files per batch, about a
//! millisecond each on a busy ext4). With an in-memory object backend in front of the disk,
//! the commit is made and pushed from memory; afterwards, while the writer waits for the next
//! batch, the objects of the branch head go to disk and the memory is emptied. The in-memory
//! backend borrows the repository's object database, which is why the clone lives on a thread
//! that owns both for as long as it runs.
//!
//! What is on disk is always complete: every ref the clone keeps points to objects on disk once
//! a batch is done, and refs left on objects that a crash kept from reaching the disk are
//! dropped when the clone is opened (the next batch then fetches).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use git2::{Odb, Oid, Repository};
use tokio::sync::oneshot;

use super::history::History;
use super::writer::{Counters, WriterConfig};
use super::{Error, Landed, RepoKey, Result, Update, daemon, repo};

/// Above the disk backends (loose 1, packs 2): new objects are written here, and found here
/// first.
const MEMORY_PRIORITY: i32 = 1000;

struct Batch {
    updates: Vec<Update>,
    /// The batch's commit span, entered while the thread writes it.
    span: tracing::Span,
    reply: oneshot::Sender<Vec<Result<Landed>>>,
}

/// The handle of a clone's thread; dropping it lets the thread finish and stop.
pub(crate) struct CloneThread {
    batches: Sender<Batch>,
    thread: std::thread::JoinHandle<()>,
}

impl CloneThread {
    /// Starts the thread for `key`'s clone (opened with its first batch).
    pub(crate) fn spawn(key: RepoKey, config: Arc<WriterConfig>, counters: Arc<Counters>) -> Result<CloneThread> {
        let (batches, received) = std::sync::mpsc::channel();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("gitops-clone".into())
            .spawn(move || span.in_scope(|| serve(&key, &config, &counters, &received)))
            .map_err(|e| Error::Git { op: "start clone thread", message: e.to_string() })?;
        Ok(CloneThread { batches, thread })
    }

    /// Writes `updates` inside `span`: one answer each, in order. `None` when the thread is
    /// gone.
    pub(crate) async fn write(&self, updates: Vec<Update>, span: tracing::Span) -> Option<Vec<Result<Landed>>> {
        let (reply, answer) = oneshot::channel();
        self.batches.send(Batch { updates, span, reply }).ok()?;
        answer.await.ok()
    }

    /// Lets the thread write what it holds to disk, and waits for it.
    pub(crate) async fn finish(self) {
        let CloneThread { batches, thread } = self;
        drop(batches);
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::error!("gitops clone thread ended abnormally"),
        }
    }
}

/// Opens the clone with the first batch (again with the next one, if that failed) and serves
/// batches until the handle is dropped.
fn serve(key: &RepoKey, config: &WriterConfig, counters: &Counters, batches: &Receiver<Batch>) {
    while let Ok(first) = batches.recv() {
        let (error, batch) = match repo::open(&config.work_dir, key) {
            Ok(repo) => match serve_clone(&repo, key, config, counters, first, batches) {
                Ok(()) => return,
                Err(failed) => *failed,
            },
            Err(e) => (e, first),
        };
        tracing::warn!(error = %error, "cannot use the gitops clone");
        let _ = batch.reply.send(vec![Err(error); batch.updates.len()]);
    }
}

type SetupFailed = Box<(Error, Batch)>;

fn serve_clone(
    repo: &Repository,
    key: &RepoKey,
    config: &WriterConfig,
    counters: &Counters,
    first: Batch,
    batches: &Receiver<Batch>,
) -> Result<(), SetupFailed> {
    let (disk, odb) = match setup(repo, key) {
        Ok(set) => set,
        Err(e) => return Err(Box::new((e, first))),
    };
    let memory = match odb.add_new_mempack_backend(MEMORY_PRIORITY) {
        Ok(memory) => memory,
        Err(e) => return Err(Box::new((Error::git("memory backend")(e), first))),
    };
    let mut history: Option<History> = None;
    let mut next = Some(first);
    while let Some(batch) = next.take().or_else(|| batches.recv().ok()) {
        let (results, pushed) =
            batch.span.in_scope(|| repo::write_batch(repo, &mut history, config, counters, key, &batch.updates));
        // The submitters have their answers; writing refs and objects is off their path.
        let _ = batch.reply.send(results);
        if let Some(head) = pushed {
            record_head(repo, key, head);
        }
        match write_to_disk(repo, &disk, key) {
            Ok(()) => {
                if let Err(e) = memory.reset() {
                    tracing::warn!(error = %e.message(), "could not empty the in-memory objects");
                }
            }
            // Kept in memory: the next batch tries again, from the head down.
            Err(e) => tracing::warn!(error = %e, "could not write the gitops objects to disk"),
        }
    }
    Ok(())
}

/// Records `head`, just pushed, as the tracking ref that the next batch starts from.
fn record_head(repo: &Repository, key: &RepoKey, head: Oid) {
    let name = repo::tracking_ref(key);
    if repo.refname_to_id(&name).ok() != Some(head)
        && let Err(e) = repo.reference(&name, head, true, "slipway: remote head")
    {
        tracing::warn!(error = %e.message(), "could not record the remote head");
    }
}

/// A second handle on the clone, without the memory backend (its writes go to disk), and the
/// clone's object database, after dropping refs on objects missing from disk.
fn setup<'r>(repo: &'r Repository, key: &RepoKey) -> Result<(Repository, Odb<'r>)> {
    let disk = Repository::open_bare(repo.path()).map_err(Error::git("open clone"))?;
    drop_unwritten_refs(repo, key)?;
    Ok((disk, repo.odb().map_err(Error::git("object database"))?))
}

/// Writes the commits from the branch head down to the first one on disk, each with the trees
/// and blobs it adds, from memory to `disk`; then points the push ref at the head, so that no
/// ref stays on an object that is only in memory (a rejected commit's, say).
fn write_to_disk(repo: &Repository, disk: &Repository, key: &RepoKey) -> Result<()> {
    let (on_disk, both) = (disk.odb().map_err(Error::git("disk objects"))?, repo.odb().map_err(Error::git("objects"))?);
    let head = repo.refname_to_id(&repo::tracking_ref(key)).ok();
    let mut next = head.filter(|h| !on_disk.exists(*h));
    while let Some(oid) = next {
        let commit = repo.find_commit(oid).map_err(Error::git("read commit"))?;
        for object in daemon::new_objects(repo, &commit).map_err(Error::git("read tree"))? {
            if !on_disk.exists(object) {
                let read = both.read(object).map_err(Error::git("read object"))?;
                on_disk.write(read.kind(), read.data()).map_err(Error::git("write object"))?;
            }
        }
        next = commit.parent_ids().next().filter(|p| !on_disk.exists(*p));
    }
    match head {
        Some(head) => {
            repo.reference(repo::PUSH_REF, head, true, "slipway: written").map_err(Error::git("push ref"))?;
        }
        None => drop_unless_on_disk(repo, repo::PUSH_REF, &on_disk),
    }
    Ok(())
}

/// Refs on objects that never reached the disk (the process stopped before they were written)
/// are dropped; the next batch fetches instead of building on them.
fn drop_unwritten_refs(repo: &Repository, key: &RepoKey) -> Result<()> {
    let on_disk = repo.odb().map_err(Error::git("objects"))?;
    for name in [repo::tracking_ref(key), repo::PUSH_REF.to_owned()] {
        drop_unless_on_disk(repo, &name, &on_disk);
    }
    Ok(())
}

fn drop_unless_on_disk(repo: &Repository, name: &str, on_disk: &Odb<'_>) {
    let Ok(mut reference) = repo.find_reference(name) else { return };
    if reference.target().is_some_and(|oid: Oid| !on_disk.exists(oid)) {
        tracing::info!(reference = name, "dropping a ref whose objects are not on disk");
        if let Err(e) = reference.delete() {
            tracing::warn!(reference = name, error = %e.message(), "could not drop the ref");
        }
    }
}
