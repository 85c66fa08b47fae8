//! Git write-back: image updates flow in as [`Update`]s, are edited into the GitOps repository's
//! YAML files byte-exactly ([`yaml`]), and leave as commits pushed to the remote branch.
//!
//! [`GitopsWriter`] runs one serialized worker per (repository URL, branch). A worker keeps a
//! cached bare clone, commits in groups (an idle worker commits at once; what arrives during a
//! push goes into the next commit), builds on the head it last saw without fetching, and
//! pushes without ever forcing: a rejected push is refetched, re-applied and retried.
//! Every commit carries a `Slipway-Promotion-Id` trailer per update, so an update whose
//! promotion already landed (a retry after a crash, or a second promoter) is answered from the
//! remote history instead of being committed twice.
//!
//! Pushes to `git://` remotes go through [`daemon`]'s own protocol client (no Nagle stall,
//! only the new objects); other remotes through libgit2.
//!
//! In PR mode ([`pr`]) an update goes onto a new branch of its own and a pull request is opened.
//! [`timing`] records where a promotion's time goes, the write-back's steps included.

mod clone;
mod daemon;
mod history;
pub mod message;
pub mod pr;
mod repo;
pub mod timing;
pub mod writer;
pub mod yaml;

pub use writer::{GitopsWriter, Pending, WriterConfig, WriterStats};

use slipway_mesh::names::{AppName, CommitSha, EnvName, ImageTag};

/// Errors of the write-back. `Clone`, because one failed push answers every update of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field of an update, target or repository key is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The file to edit does not exist on the branch.
    #[error("file {file} not found on the branch")]
    FileNotFound { file: String },
    /// The file is not YAML that can be edited as asked.
    #[error("cannot edit {file}: {reason}")]
    Yaml { file: String, reason: String },
    /// The remote has no such branch.
    #[error("branch {branch} not found on {url}")]
    BranchMissing { url: String, branch: String },
    /// A libgit2 operation failed.
    #[error("git {op}: {message}")]
    Git { op: &'static str, message: String },
    /// The push kept failing (rejected or unreachable) for all attempts.
    #[error("push to {branch} failed after {attempts} attempts: {last}")]
    PushFailed { branch: String, attempts: u32, last: String },
    /// The writer shut down before the update was processed.
    #[error("gitops writer closed")]
    Closed,
    /// GitHub's API refused or could not be reached (PR mode); `permanent` when a retry
    /// would be refused the same way.
    #[error("{message}")]
    Api { message: String, permanent: bool },
}

/// `Result` with the write-back [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn git(op: &'static str) -> impl FnOnce(git2::Error) -> Error {
        move |e| Error::Git { op, message: e.message().to_owned() }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid { field, reason: reason.into() }
    }
}

/// A GitOps repository branch: the key of one serialized writer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoKey {
    /// Fetch and push URL (`git://`, `file://`, `https://`, ...). Only [`Self::redacted_url`]
    /// is ever logged.
    pub url: String,
    /// Branch name without `refs/heads/`.
    pub branch: String,
}

impl RepoKey {
    /// Validates the branch name.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Result<Self> {
        let key = RepoKey { url: url.into(), branch: branch.into() };
        if key.url.is_empty() {
            return Err(Error::invalid("repository url", "must not be empty"));
        }
        if !git2::Reference::is_valid_name(&key.head_ref()) {
            return Err(Error::invalid("branch", format!("{:?} is not a valid branch name", key.branch)));
        }
        Ok(key)
    }

    /// The URL without `user:password@`, for logs, errors and directory names.
    pub fn redacted_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else { return self.url.clone() };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
            None => self.url.clone(),
        }
    }

    pub(crate) fn head_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }
}

/// Where in the repository an image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The `images:` entry whose `name` is `image` in a kustomization file.
    Kustomize { file: String, image: String },
    /// Scalars at dotted key paths (`image.tag`) in a Helm values file.
    HelmValues { file: String, tag_key: String, digest_key: Option<String> },
    /// The scalar at a key path (`spec.source.helm.parameters[name=image.tag].value`) of any
    /// YAML file, set to `value` (already rendered from the image).
    Value { file: String, key: String, value: String },
}

impl Target {
    /// The repository-relative path of the edited file.
    pub fn file(&self) -> &str {
        match self {
            Target::Kustomize { file, .. } | Target::HelmValues { file, .. } | Target::Value { file, .. } => file,
        }
    }
}

/// The new image coordinates; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageChange {
    /// kustomize `newName` (registry and repository).
    pub new_name: Option<String>,
    pub tag: Option<ImageTag>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageChange {
    /// The tag (and digest, if any) of a built image; `with_name` also sets `newName`.
    pub fn from_image_ref(image: &slipway_mesh::v1::ImageRef, with_name: bool) -> Result<Self> {
        let tag = ImageTag::parse(&image.tag).map_err(|e| Error::invalid("image tag", e.to_string()))?;
        let digest = (!image.digest.is_empty()).then(|| image.digest.clone());
        let new_name = (with_name && !image.repository.is_empty()).then(|| image.repository.clone());
        Ok(ImageChange { new_name, tag: Some(tag), digest })
    }

    /// How the change reads in a commit message: the tag, else the digest.
    pub fn label(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(digest)) => digest.chars().take(19).collect(),
            (None, None) => self.new_name.clone().unwrap_or_default(),
        }
    }
}

/// One image promotion to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Written as the `Slipway-Promotion-Id` trailer; the idempotency key.
    pub promotion_id: String,
    pub app: AppName,
    pub stage: EnvName,
    /// Written as the `Slipway-Source-Commit` trailer.
    pub source_commit: Option<CommitSha>,
    pub target: Target,
    pub change: ImageChange,
}

impl Update {
    /// Checks what the types do not: ids and paths that go into trailers and trees.
    pub fn validate(&self) -> Result<()> {
        let id = &self.promotion_id;
        let id_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
        if id.is_empty() || id.len() > 128 || !id.bytes().all(id_ok) {
            return Err(Error::invalid("promotion id", format!("{id:?} must be 1-128 of [A-Za-z0-9._:-]")));
        }
        yaml::validate_path(self.target.file())?;
        match &self.target {
            Target::HelmValues { tag_key, digest_key, .. } => {
                yaml::validate_key_path(tag_key)?;
                digest_key.as_deref().map(yaml::validate_key_path).transpose()?;
            }
            Target::Value { key, value, .. } => {
                yaml::validate_key_path(key)?;
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(Error::invalid("value", format!("{value:?} is empty or holds a control character")));
                }
            }
            Target::Kustomize { .. } => {}
        }
        let change = &self.change;
        if change.tag.is_none() && change.digest.is_none() && change.new_name.is_none() {
            return Err(Error::invalid("image change", "sets nothing"));
        }
        change.digest.as_deref().map(yaml::validate_digest).transpose()?;
        change.new_name.as_deref().map(yaml::validate_image_name).transpose()?;
        Ok(())
    }
}

/// How an update ended up on the remote branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In a new commit pushed by this writer.
    Committed,
    /// A commit on the remote already carries its promotion id; nothing was committed.
    AlreadyLanded,
    /// The file already held these values; nothing was committed.
    Unchanged,
}

/// The answer to one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The commit (hex) on the remote branch that holds the update.
    pub commit: String,
    pub outcome: Outcome,
}
