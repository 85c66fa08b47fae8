//! A build's log: every line the backend prints, kept (up to a size cap) for the NATS Object
//! Store bucket that dashboards and slipctl read, and a tail of the last lines for
//! `build.failed`. While the build runs, the same lines go to the KV bucket of [`lines`] in
//! chunks, so they can be followed live.

pub mod lines;

use slipway_mesh::bounds::capped;
use slipway_mesh::v1::BuildFailed;

/// A longer line is cut (with `…`): a build may print a megabyte of minified code on one
/// line, and a line travels in a live chunk of [`lines::CHUNK_LINES`] and in `build.failed`.
pub const MAX_LINE_BYTES: usize = 4000;
/// Bytes of log tail a `build.failed` carries (the newest lines; the whole log is in the bucket).
pub const MAX_TAIL_BYTES: usize = 64 * 1024;
/// Bytes of a `build.failed` message (a backend error may quote a tool's whole output).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

// A live chunk (KV value) of `CHUNK_LINES` lines, each cut to `MAX_LINE_BYTES`, stays within
// the event bound, far below NATS' max_payload.
const _: () = assert!(lines::CHUNK_LINES * (MAX_LINE_BYTES + 1) <= slipway_mesh::bounds::MAX_EVENT_BYTES);

/// Cuts `event` to the bounds above, so it stays far below the event bound whatever failed.
pub fn bound_failure(event: &mut BuildFailed) {
    event.message = capped(&event.message, MAX_MESSAGE_BYTES);
    let mut budget = MAX_TAIL_BYTES;
    let mut kept = Vec::new();
    for line in event.log_tail.iter().rev() {
        let line = capped(line, MAX_LINE_BYTES);
        if line.len() > budget {
            break;
        }
        budget -= line.len();
        kept.push(line);
    }
    kept.reverse();
    event.log_tail = kept;
}

use async_nats::jetstream::{self, kv, object_store};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Lines of one build.
pub struct BuildLog {
    inner: Mutex<Inner>,
    tail_lines: usize,
    max_bytes: usize,
}

struct Inner {
    text: String,
    dropped: usize,
    tail: VecDeque<String>,
    /// Where kept lines also go while the build runs (see [`LogStore::stream`]).
    live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl BuildLog {
    /// An empty log keeping `tail_lines` for the tail and at most `max_bytes` in full.
    pub fn new(tail_lines: usize, max_bytes: usize) -> Self {
        let inner = Inner { text: String::new(), dropped: 0, tail: VecDeque::new(), live: None };
        Self { inner: Mutex::new(inner), tail_lines: tail_lines.max(1), max_bytes }
    }

    /// Appends one line (without its newline).
    pub fn line(&self, line: impl Into<String>) {
        let mut line = line.into();
        if line.len() > MAX_LINE_BYTES {
            line = capped(&line, MAX_LINE_BYTES);
        }
        tracing::debug!(target: "slipway_builder::build_log", "{line}");
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.text.len() + line.len() < self.max_bytes {
            inner.text.push_str(&line);
            inner.text.push('\n');
            if let Some(live) = &inner.live {
                let _ = live.send(line.clone());
            }
        } else {
            inner.dropped += 1;
        }
        if inner.tail.len() == self.tail_lines {
            inner.tail.pop_front();
        }
        inner.tail.push_back(line);
    }

    /// The last lines.
    pub fn tail(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).tail.iter().cloned().collect()
    }

    /// Lines left out because the log outgrew the cap.
    pub fn dropped(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).dropped
    }

    /// Sends every kept line from now on to `live` too.
    pub fn attach(&self, live: tokio::sync::mpsc::UnboundedSender<String>) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).live = Some(live);
    }

    /// Stops sending lines live; the receiver sees the end once other senders are gone.
    pub fn detach(&self) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).live = None;
    }

    /// The whole log, with a note of lines dropped beyond the cap.
    pub fn text(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = inner.text.clone();
        if inner.dropped > 0 {
            text.push_str(&format!("[{} lines dropped: log larger than the configured cap]\n", inner.dropped));
        }
        text
    }
}

/// The Object Store bucket build logs go to, one object `<build_id>.log` per build, and the KV
/// bucket of [`lines`] they are streamed to while the build runs.
#[derive(Clone)]
pub struct LogStore {
    store: object_store::ObjectStore,
    /// `None` if the KV bucket could not be opened: logs are then only stored at the end.
    lines: Option<kv::Store>,
}

impl LogStore {
    /// Creates the bucket (or binds to it), keeping logs for `max_age`.
    pub async fn open(js: &jetstream::Context, bucket: &str, max_age: Duration) -> Result<Self, String> {
        let config = object_store::Config {
            bucket: bucket.to_owned(),
            description: Some("slipway build logs".to_owned()),
            max_age,
            ..Default::default()
        };
        let store = slipway_runtime::jetstream::object_store(js, config).await.map_err(|e| e.to_string())?;
        let lines = match lines::open(js, max_age.min(lines::MAX_AGE)).await {
            Ok(kv) => Some(kv),
            Err(e) => {
                tracing::warn!(error = %e, "build logs will not be followable while builds run");
                None
            }
        };
        Ok(Self { store, lines })
    }

    /// Streams `log`'s lines from now on as attempt `attempt` of `build_id`; finish the
    /// returned writer once the attempt is over. `None` without the KV bucket.
    pub fn stream(&self, build_id: &str, attempt: i32, log: &BuildLog) -> Option<lines::Writer> {
        let (writer, live) = lines::Writer::start(self.lines.clone()?, build_id, attempt);
        log.attach(live);
        Some(writer)
    }

    /// Stores `log` under `<build_id>.log`, replacing an earlier attempt's.
    pub async fn put(&self, build_id: &str, log: &BuildLog) -> Result<(), String> {
        let text = log.text();
        let name = object_name(build_id);
        self.store.put(name.as_str(), &mut text.as_bytes()).await.map_err(|e| format!("put {name}: {e}"))?;
        Ok(())
    }
}

/// The object name of a build's log.
pub fn object_name(build_id: &str) -> String {
    format!("{build_id}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_tail_and_caps_the_text() {
        let log = BuildLog::new(3, 20);
        for i in 0..10 {
            log.line(format!("line {i}"));
        }
        assert_eq!(log.tail(), ["line 7", "line 8", "line 9"]);
        let text = log.text();
        assert!(text.starts_with("line 0\nline 1\n"), "{text}");
        assert!(text.contains("[8 lines dropped"), "{text}");
    }

    #[test]
    fn the_largest_failure_is_a_bounded_event() {
        // A build that printed 1,000 lines of a megabyte each, and an error quoting 5 MB.
        let log = BuildLog::new(1000, 8 * 1024 * 1024);
        let long = "x".repeat(1024 * 1024);
        for _ in 0..1000 {
            log.line(long.as_str());
        }
        let mut event = BuildFailed {
            build_id: "b".into(),
            app: "writer".into(),
            message: "e".repeat(5 * 1024 * 1024),
            log_tail: log.tail(),
            ..Default::default()
        };
        assert!(log.tail().iter().all(|l| l.len() <= MAX_LINE_BYTES), "lines are cut as they come");
        bound_failure(&mut event);
        assert!(event.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(event.log_tail.len(), MAX_TAIL_BYTES / MAX_LINE_BYTES, "the newest lines that fit");
        let (_, body) = slipway_mesh::prepare("/test", &event).expect("within the event bound");
        assert!(body.len() < slipway_mesh::bounds::MAX_EVENT_BYTES / 2, "{} bytes", body.len());
    }
}
