//! The one error type of the test kit.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, stopping or talking to a test server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system binary the kit needs is not installed.
    #[error("`{binary}` not found: install the Debian package `{package}` (run scripts/bootstrap)")]
    MissingBinary { binary: String, package: &'static str },

    /// Running as root, but the `postgres` system user that PostgreSQL must run as is missing.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user \
         to run it as: install the Debian package `postgresql` (run scripts/bootstrap)"
    )]
    NoPostgresUser,

    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A helper command (initdb, psql, git, chown, kill ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command { command: String, status: ExitStatus, output: String },

    /// A server exited while we waited for it to become ready.
    #[error("{server} exited during startup ({status}); log {log_path:?} ends with:\n{log_tail}")]
    Exited { server: &'static str, status: ExitStatus, log_path: PathBuf, log_tail: String },

    /// A server or service did not become ready in time.
    #[error("{server} not ready after {timeout:?}; log {log_path:?} ends with:\n{log_tail}")]
    NotReady { server: String, timeout: Duration, log_path: PathBuf, log_tail: String },

    /// A process did not exit in time.
    #[error("{what} did not exit within {timeout:?}")]
    Timeout { what: String, timeout: Duration },

    /// A cluster elected no leader (of its JetStream meta group, or of a stream) in time.
    #[error("no {what} elected within {timeout:?}")]
    NotElected { what: String, timeout: Duration },

    /// Reading a JetStream stream failed.
    #[error("{what}: {message}")]
    JetStream { what: String, message: String },

    /// An operation needs the server to be running, and it is not.
    #[error("{0} is not running")]
    NotRunning(&'static str),

    /// A repository name outside `[a-z0-9-/]`.
    #[error("invalid repository name {0:?}: use non-empty `/`-separated segments of [a-z0-9-]")]
    InvalidRepoName(String),
}

/// The kit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
