//! The promotion ids on a branch's recent history, kept between batches. The writer's own
//! commit on top of a known head extends it, so a batch built on the cached head does not walk
//! (and read from disk) up to `history_depth` commits again to find landed promotions.

use std::collections::{HashMap, VecDeque};

use git2::{Oid, Repository};

use super::{Error, Result, message};

/// The last commits from `head`, newest first, each with the promotion ids it carries.
#[derive(Debug)]
pub(super) struct History {
    head: Oid,
    commits: VecDeque<(Oid, Vec<String>)>,
}

impl History {
    /// Reads up to `depth` commits from `head`.
    pub(super) fn walk(repo: &Repository, head: Oid, depth: usize) -> Result<History> {
        let mut walk = repo.revwalk().map_err(Error::git("revwalk"))?;
        walk.push(head).map_err(Error::git("revwalk"))?;
        let mut commits = VecDeque::new();
        for oid in walk.take(depth) {
            let oid = oid.map_err(Error::git("revwalk"))?;
            let commit = repo.find_commit(oid).map_err(Error::git("read commit"))?;
            let text = String::from_utf8_lossy(commit.message_bytes());
            commits.push_back((oid, message::promotion_ids(&text).into_iter().map(str::to_owned).collect()));
        }
        Ok(History { head, commits })
    }

    pub(super) fn head(&self) -> Oid {
        self.head
    }

    /// Promotion id → the newest commit carrying it.
    pub(super) fn landed(&self) -> HashMap<String, Oid> {
        let mut landed = HashMap::new();
        for (oid, ids) in &self.commits {
            for id in ids {
                landed.entry(id.clone()).or_insert(*oid);
            }
        }
        landed
    }

    /// `commit`, a child of the head carrying `ids`, is the new head; the oldest commit
    /// beyond `depth` drops out, as a new walk would not reach it either.
    pub(super) fn advance(&mut self, commit: Oid, ids: Vec<String>, depth: usize) {
        self.head = commit;
        self.commits.push_front((commit, ids));
        self.commits.truncate(depth);
    }
}
