//! The on-disk spool: where ingest puts the events of an accepted delivery while NATS is
//! unreachable, so it can still answer GitHub 2xx without losing anything.
//!
//! One entry per delivery, written to a temporary name, fsync'd, renamed into place and the
//! directory fsync'd, so a crash leaves either the whole entry or none. When the delivery's
//! whole body is to be kept (see [`crate::originals`]), it is written first to a sibling
//! `<seq>.original`. Names carry a sequence number; [`crate::replay`] publishes entries oldest
//! first once NATS is back and deletes each after every event in it was acked. Event ids are
//! deterministic per delivery, so an entry replayed twice is deduplicated by JetStream.
//!
//! An entry that can never be published (an event larger than the server takes, a file that
//! does not parse) is moved to `dead/` with the reason, so the entries behind it go on; an
//! operator lists, replays or removes dead letters through the admin port or `slipctl spool`.

use serde::{Deserialize, Serialize};
use slipway_mesh::Envelope;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// One delivery's entry: its events, and the object name of its kept body if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// In publish order.
    pub events: Vec<SpooledEvent>,
    /// Object name in the originals bucket; the bytes are in the sibling `.original` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// Entries written before originals existed were a bare list of events.
#[derive(Deserialize)]
#[serde(untagged)]
enum OnDisk {
    Entry(Entry),
    Events(Vec<SpooledEvent>),
}

/// Why an entry was moved aside, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The entry's file name (`<seq>.json`), its id for replay and removal.
    pub name: String,
    /// What refused it.
    pub reason: String,
    /// RFC 3339.
    pub failed_at: String,
    /// Events in the entry (0 when it does not parse).
    #[serde(default)]
    pub events: usize,
    /// Size of the entry file, plus its kept body.
    #[serde(default)]
    pub bytes: u64,
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
    /// No dead letter of that name.
    #[error("no dead letter {0:?}")]
    NoSuchDeadLetter(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    dead: PathBuf,
    next: AtomicU64,
    /// Entries written and not yet replayed; new deliveries queue behind them to keep order.
    files: AtomicU64,
    /// Entries in `dead/`.
    dead_letters: AtomicU64,
}

impl Spool {
    /// Opens (creating) `dir`, continuing its sequence after the entries already there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        let dead = dir.join("dead");
        fs::create_dir_all(&dead).map_err(io(&dead))?;
        let spool =
            Self { dir, dead, next: AtomicU64::new(0), files: AtomicU64::new(0), dead_letters: AtomicU64::new(0) };
        let pending = spool.pending()?;
        let dead_names = entries_in(&spool.dead)?;
        let last = pending.iter().chain(&dead_names).filter_map(|p| sequence_of(p)).max().unwrap_or(0);
        spool.next.store(last + 1, Ordering::SeqCst);
        spool.files.store(pending.len() as u64, Ordering::SeqCst);
        spool.dead_letters.store(dead_names.len() as u64, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").set(pending.len() as f64);
        metrics::gauge!("slipway_ingest_spool_dead_letters").set(dead_names.len() as f64);
        Ok(spool)
    }

    /// Durably stores one delivery's events, and its whole body under `original` (object
    /// name, bytes) when given. Returns only after every file and the directory entry are on disk.
    pub fn append(&self, events: &[SpooledEvent], original: Option<(&str, &[u8])>) -> Result<PathBuf, SpoolError> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("{seq:020}.json");
        let path = self.dir.join(&name);
        if let Some((_, body)) = original {
            write_synced(&self.dir.join(format!(".{name}.original.tmp")), &original_path(&path), body)?;
        }
        let entry = Entry { events: events.to_vec(), original: original.map(|(key, _)| key.to_owned()) };
        let json = serde_json::to_vec(&entry).map_err(|e| SpoolError::Corrupt(path.clone(), e.to_string()))?;
        write_synced(&self.dir.join(format!(".{name}.tmp")), &path, &json)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.files.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").increment(1.0);
        Ok(path)
    }

    /// Entries waiting for replay, oldest first.
    pub fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        entries_in(&self.dir)
    }

    /// The entry at `path`.
    pub fn read(&self, path: &Path) -> Result<Entry, SpoolError> {
        let bytes = fs::read(path).map_err(io(path))?;
        match serde_json::from_slice(&bytes) {
            Ok(OnDisk::Entry(entry)) => Ok(entry),
            Ok(OnDisk::Events(events)) => Ok(Entry { events, original: None }),
            Err(e) => Err(SpoolError::Corrupt(path.to_owned(), e.to_string())),
        }
    }

    /// The kept body of the entry at `path`.
    pub fn original(&self, path: &Path) -> Result<Vec<u8>, SpoolError> {
        let original = original_path(path);
        fs::read(&original).map_err(io(&original))
    }

    /// Deletes a replayed entry (and its kept body).
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        remove_if_present(&original_path(path))?;
        fs::remove_file(path).map_err(io(path))?;
        self.files.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").decrement(1.0);
        Ok(())
    }

    /// Moves the entry at `path` to `dead/` with `reason`, out of the way of those behind it.
    pub fn dead_letter(&self, path: &Path, reason: &str) -> Result<(), SpoolError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let events = self.read(path).map(|e| e.events.len()).unwrap_or(0);
        let original = original_path(path);
        let bytes = file_len(path) + file_len(&original);
        let letter = DeadLetter {
            name: name.clone(),
            reason: reason.to_owned(),
            failed_at: chrono::Utc::now().to_rfc3339(),
            events,
            bytes,
        };
        let about = self.dead.join(format!("{name}.reason"));
        let json = serde_json::to_vec(&letter).map_err(|e| SpoolError::Corrupt(about.clone(), e.to_string()))?;
        write_synced(&self.dead.join(format!(".{name}.reason.tmp")), &about, &json)?;
        if original.exists() {
            fs::rename(&original, original_path(&self.dead.join(&name))).map_err(io(&original))?;
        }
        fs::rename(path, self.dead.join(&name)).map_err(io(path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.files.fetch_sub(1, Ordering::SeqCst);
        self.dead_letters.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_files").decrement(1.0);
        metrics::gauge!("slipway_ingest_spool_dead_letters").increment(1.0);
        metrics::counter!("slipway_ingest_spool_dead_lettered_total").increment(1);
        tracing::error!(entry = %name, reason, "spool entry moved to the dead letters");
        Ok(())
    }

    /// The dead letters, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, SpoolError> {
        let mut out = Vec::new();
        for path in entries_in(&self.dead)? {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let about = self.dead.join(format!("{name}.reason"));
            let letter = fs::read(&about).ok().and_then(|b| serde_json::from_slice::<DeadLetter>(&b).ok());
            out.push(letter.unwrap_or(DeadLetter {
                name,
                reason: "unknown (no reason file)".into(),
                failed_at: String::new(),
                events: 0,
                bytes: file_len(&path),
            }));
        }
        Ok(out)
    }

    /// Queues dead letter `name` again, behind everything pending; returns its new path.
    pub fn replay_dead(&self, name: &str) -> Result<PathBuf, SpoolError> {
        let path = self.dead_path(name)?;
        let entry = self.read(&path)?;
        let body = match &entry.original {
            Some(key) => Some((key.as_str(), self.original(&path)?)),
            None => None,
        };
        let queued = self.append(&entry.events, body.as_ref().map(|(k, b)| (*k, b.as_slice())))?;
        self.remove_dead(name)?;
        Ok(queued)
    }

    /// Deletes dead letter `name` for good.
    pub fn remove_dead(&self, name: &str) -> Result<(), SpoolError> {
        let path = self.dead_path(name)?;
        remove_if_present(&self.dead.join(format!("{name}.reason")))?;
        remove_if_present(&original_path(&path))?;
        fs::remove_file(&path).map_err(io(&path))?;
        self.dead_letters.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("slipway_ingest_spool_dead_letters").decrement(1.0);
        Ok(())
    }

    fn dead_path(&self, name: &str) -> Result<PathBuf, SpoolError> {
        // Only names this spool writes: no path can be smuggled in.
        let plain = Path::new(name).file_name().is_some_and(|n| n == name);
        let path = self.dead.join(name);
        if !plain || sequence_of(&path).is_none() || !path.is_file() {
            return Err(SpoolError::NoSuchDeadLetter(name.to_owned()));
        }
        Ok(path)
    }

    /// Entries waiting for replay.
    pub fn len(&self) -> u64 {
        self.files.load(Ordering::SeqCst)
    }

    /// True when nothing waits for replay (dead letters do not wait).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in `dead/`.
    pub fn dead_count(&self) -> u64 {
        self.dead_letters.load(Ordering::SeqCst)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_synced(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file = File::create(tmp).map_err(io(tmp))?;
    file.write_all(bytes).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))?;
    fs::rename(tmp, path).map_err(io(path))
}

fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn original_path(entry: &Path) -> PathBuf {
    entry.with_extension("original")
}

/// The entries (`<seq>.json`) of `dir`, oldest first.
fn entries_in(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| sequence_of(p).is_some())
        .collect();
    files.sort();
    Ok(files)
}

fn sequence_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
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
        let a = spool.append(&[event(1), event(2)], None).expect("a");
        let b = spool.append(&[event(3)], Some(("delivery-b", b"whole body"))).expect("b");
        assert_eq!(spool.pending().expect("pending"), vec![a.clone(), b.clone()]);
        assert_eq!(spool.read(&a).expect("read").events, vec![event(1), event(2)]);
        assert_eq!(spool.read(&b).expect("read").original.as_deref(), Some("delivery-b"));
        assert_eq!(spool.original(&b).expect("original"), b"whole body");

        // A reopened spool continues after the last entry, even with a stray temp file around.
        fs::write(dir.path().join(".00000000000000000009.json.tmp"), b"partial").expect("tmp");
        let reopened = Spool::open(dir.path()).expect("reopen");
        let c = reopened.append(&[event(4)], None).expect("c");
        assert!(c > b);
        assert_eq!(reopened.pending().expect("pending").len(), 3, "temp and .original files are not entries");
        reopened.remove(&b).expect("remove");
        assert!(!original_path(&b).exists(), "the kept body goes with its entry");
        assert_eq!(reopened.pending().expect("pending"), vec![a, c]);
    }

    #[test]
    fn legacy_entries_are_lists_of_events() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("00000000000000000001.json");
        fs::write(&path, serde_json::to_vec(&vec![event(7)]).expect("json")).expect("write");
        let spool = Spool::open(dir.path()).expect("open");
        assert_eq!(spool.read(&path).expect("read"), Entry { events: vec![event(7)], original: None });
    }

    #[test]
    fn dead_letters_move_aside_and_come_back_behind_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(dir.path()).expect("open");
        let bad = spool.append(&[event(1)], Some(("d-1", b"body"))).expect("bad");
        let good = spool.append(&[event(2)], None).expect("good");
        spool.dead_letter(&bad, "too large").expect("dead");
        assert_eq!(spool.pending().expect("pending"), vec![good.clone()]);
        assert_eq!((spool.len(), spool.dead_count()), (1, 1));
        let letters = spool.dead_letters().expect("list");
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].reason.as_str(), letters[0].events), ("too large", 1));

        // Counts survive a restart; the sequence continues past the dead letter too.
        let spool = Spool::open(dir.path()).expect("reopen");
        assert_eq!((spool.len(), spool.dead_count()), (1, 1));
        assert!(matches!(spool.replay_dead("../00000000000000000002.json"), Err(SpoolError::NoSuchDeadLetter(_))));
        assert!(matches!(spool.remove_dead("nope"), Err(SpoolError::NoSuchDeadLetter(_))));
        let name = letters[0].name.clone();
        let again = spool.replay_dead(&name).expect("replay");
        assert!(again > good, "a replayed dead letter queues behind what is pending");
        assert_eq!(spool.original(&again).expect("body kept"), b"body");
        assert_eq!((spool.len(), spool.dead_count()), (2, 0));
        spool.dead_letter(&again, "still too large").expect("dead again");
        let name = spool.dead_letters().expect("list")[0].name.clone();
        spool.remove_dead(&name).expect("remove");
        assert_eq!((spool.len(), spool.dead_count()), (1, 0));
        assert_eq!(fs::read_dir(dir.path().join("dead")).expect("dead dir").count(), 0, "nothing left behind");
    }
}
