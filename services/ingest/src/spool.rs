//! The on-disk spool: where ingest puts the events of an accepted delivery while NATS is
//! unreachable, so it can still answer GitHub 2xx without losing anything.
//!
//! One file per delivery, written to a temporary name, fsync'd, renamed into place and the
//! directory fsync'd, so a crash leaves either the whole file or none. File names carry a
//! sequence number; [`replay`] publishes files oldest first once NATS is back and deletes
//! each file after every event in it was acked. Event ids are deterministic per delivery,
//! so a file replayed twice (a crash between publish and delete) is deduplicated by JetStream.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use slipway_mesh::Envelope;
use slipway_runtime::jetstream::Publisher;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One event waiting in the spool: its envelope headers and JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledEvent {
    /// CloudEvents headers as name/value pairs.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl SpooledEvent {
    /// Captures a prepared event.
    pub fn new(envelope: &Envelope, body: &[u8]) -> Self {
        Self { headers: envelope.to_pairs(), body: body.to_vec() }
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The disk said no.
    #[error("spool {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A spool file does not parse (never written by us, or a disk fault).
    #[error("spool file {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: AtomicU64,
    /// Files written and not yet replayed; new deliveries queue behind them to keep order.
    files: AtomicU64,
}

impl Spool {
    /// Opens (creating) `dir`, continuing its sequence after the files already there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let spool = Self { dir, next: AtomicU64::new(0), files: AtomicU64::new(0) };
        let pending = spool.pending()?;
        let last = pending.iter().filter_map(|p| sequence_of(p)).max().unwrap_or(0);
        spool.next.store(last + 1, Ordering::SeqCst);
        spool.files.store(pending.len() as u64, Ordering::SeqCst);
        Ok(spool)
    }

    /// Durably stores one delivery's events. Returns only after the file and the directory
    /// entry are on disk.
    pub fn append(&self, events: &[SpooledEvent]) -> Result<PathBuf, SpoolError> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("{seq:020}.json");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        let json = serde_json::to_vec(events).map_err(|e| SpoolError::Corrupt(path.clone(), e.to_string()))?;
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.files.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").increment(1.0);
        Ok(path)
    }

    /// Spool files, oldest first.
    pub fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| sequence_of(p).is_some())
            .collect();
        files.sort();
        Ok(files)
    }

    /// The events of one spool file.
    pub fn read(&self, path: &Path) -> Result<Vec<SpooledEvent>, SpoolError> {
        let bytes = fs::read(path).map_err(io(path))?;
        serde_json::from_slice(&bytes).map_err(|e| SpoolError::Corrupt(path.to_owned(), e.to_string()))
    }

    /// Deletes a replayed file.
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        fs::remove_file(path).map_err(io(path))?;
        self.files.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").decrement(1.0);
        Ok(())
    }

    /// Files waiting for replay.
    pub fn len(&self) -> u64 {
        self.files.load(Ordering::SeqCst)
    }

    /// True when nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn sequence_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".json")?.parse().ok()
}

/// Publishes every spooled file (oldest first) and deletes it; stops at the first failure
/// so order is kept. Returns how many files it replayed.
pub async fn replay_once(spool: &Spool, publisher: &Publisher) -> Result<usize, String> {
    let files = spool.pending().map_err(|e| e.to_string())?;
    for (done, path) in files.iter().enumerate() {
        let events = match spool.read(path) {
            Ok(events) => events,
            Err(e) => {
                // Keep the bytes for a human; move the file out of the way so the rest flows.
                tracing::error!(error = %e, "moving corrupt spool file aside");
                if fs::rename(path, path.with_extension("corrupt")).is_ok() {
                    spool.files.fetch_sub(1, Ordering::SeqCst);
                }
                continue;
            }
        };
        for event in events {
            let envelope = Envelope::from_pairs(&event.headers).map_err(|e| e.to_string())?;
            if let Err(e) = publisher.publish_envelope(&envelope, Bytes::from(event.body)).await {
                return Err(format!("after {done} files: {e}"));
            }
        }
        spool.remove(path).map_err(|e| e.to_string())?;
    }
    Ok(files.len())
}

/// Replays the spool whenever NATS is connected, until `shutdown`.
pub async fn replay(spool: Arc<Spool>, publisher: Publisher, client: async_nats::Client, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if client.connection_state() == async_nats::connection::State::Connected {
            match replay_once(&spool, &publisher).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "spool replayed"),
                Err(e) => tracing::warn!(error = %e, "spool replay interrupted; will retry"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> SpooledEvent {
        SpooledEvent { headers: vec![("ce-id".into(), format!("e{n}"))], body: vec![n] }
    }

    #[test]
    fn appends_in_order_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(dir.path()).expect("open");
        let a = spool.append(&[event(1), event(2)]).expect("a");
        let b = spool.append(&[event(3)]).expect("b");
        assert_eq!(spool.pending().expect("pending"), vec![a.clone(), b.clone()]);
        assert_eq!(spool.read(&a).expect("read"), vec![event(1), event(2)]);

        // A reopened spool continues after the last file, even with a stray temp file around.
        fs::write(dir.path().join(".00000000000000000009.json.tmp"), b"partial").expect("tmp");
        let reopened = Spool::open(dir.path()).expect("reopen");
        let c = reopened.append(&[event(4)]).expect("c");
        assert!(c > b);
        assert_eq!(reopened.pending().expect("pending").len(), 3, "temp files are not pending");
        reopened.remove(&a).expect("remove");
        assert_eq!(reopened.pending().expect("pending"), vec![b, c]);
    }
}
