//! A build's log while it runs: chunks of lines in the JetStream KV bucket
//! `slipway-build-log-lines`, so dashboards and `slipctl logs --follow` can read a build that is
//! still going. The whole log still goes to the Object Store at the end ([`super::LogStore`]).
//!
//! The key format is [`slipway_mesh::build_log`]'s (readers share it): a chunk of lines
//! (newline-terminated) is flushed every [`FLUSH_EVERY`] or [`CHUNK_LINES`] lines; the end
//! record ([`End`]) is written once the build is over, and only for a final outcome. Attempt
//! `n` of a build numbers its chunks from `(n - 1) * 1_000_000`, so a redelivered build
//! continues after the last attempt's chunks and a follower sees both, in order.

use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt};
pub use slipway_mesh::build_log::{BUCKET, End, chunk_key, end_key, key_token};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a line waits at most before it is readable.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Lines in one chunk at most.
pub const CHUNK_LINES: usize = 64;
/// How long chunks are kept at most.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The chunk numbers each attempt of a build has to itself.
const ATTEMPT_STRIDE: u64 = 1_000_000;

/// Why the log lines could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("KV bucket {BUCKET}: {0}")]
    Bucket(String),
    #[error("no log for build {0}")]
    NoLog(String),
    #[error("reading the log of build {0}: {1}")]
    Read(String, String),
}

/// What a reader of a build's log gets: lines, then (once the build is over) its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Line(String),
    End(End),
}

/// Creates the bucket (or binds to it), keeping chunks for `max_age`.
pub async fn open(js: &jetstream::Context, max_age: Duration) -> Result<kv::Store, Error> {
    let bucket = slipway_runtime::jetstream::KeyValue {
        bucket: BUCKET,
        description: "slipway build log lines, while builds run",
        history: 1,
        max_age,
        replicas: 1,
    };
    slipway_runtime::jetstream::key_value(js, bucket).await.map_err(|e| Error::Bucket(e.to_string()))
}

/// Writes the lines of one build attempt to the bucket as they come.
pub struct Writer {
    kv: kv::Store,
    build_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts the flusher of attempt `attempt` of `build_id`; lines sent on the returned sender
    /// become chunks. The flusher stops once every sender is dropped.
    pub fn start(kv: kv::Store, build_id: &str, attempt: i32) -> (Self, mpsc::UnboundedSender<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let first = u64::try_from(attempt.max(1) - 1).unwrap_or(0) * ATTEMPT_STRIDE;
        let span = tracing::Span::current();
        let task =
            tokio::spawn(tracing::Instrument::instrument(flush_loop(kv.clone(), build_id.to_owned(), first, rx), span));
        (Self { kv, build_id: build_id.to_owned(), task }, tx)
    }

    /// Stops `log` sending, waits for the last chunk, then writes `end` if the build is over
    /// (`None`: it will be retried, followers keep following).
    pub async fn finish(self, log: &super::BuildLog, end: Option<End>) {
        log.detach();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "log line flusher failed");
        }
        let Some(end) = end else { return };
        let body = serde_json::to_vec(&end).unwrap_or_default();
        if let Err(e) = self.kv.put(end_key(&self.build_id), body.into()).await {
            tracing::warn!(error = %e, "could not write the end of the log lines");
        }
    }
}

async fn flush_loop(kv: kv::Store, build_id: String, mut seq: u64, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut chunk = String::new();
    let mut lines = 0;
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                if lines == 0 {
                    deadline = Instant::now() + FLUSH_EVERY;
                }
                chunk.push_str(&line);
                chunk.push('\n');
                lines += 1;
                if lines < CHUNK_LINES {
                    continue;
                }
            }
            () = tokio::time::sleep_until(deadline), if lines > 0 => {}
        }
        put_chunk(&kv, &build_id, &mut seq, std::mem::take(&mut chunk)).await;
        lines = 0;
    }
    if lines > 0 {
        put_chunk(&kv, &build_id, &mut seq, chunk).await;
    }
}

async fn put_chunk(kv: &kv::Store, build_id: &str, seq: &mut u64, chunk: String) {
    let key = chunk_key(build_id, *seq);
    *seq += 1;
    // A lost chunk is a gap in a live view; the full log still goes to the Object Store.
    if let Err(e) = kv.put(&key, chunk.into()).await {
        tracing::warn!(key, error = %e, "could not write a log chunk");
    }
}

/// Binds to the bucket (it exists once a builder ran).
pub async fn bind(js: &jetstream::Context) -> Result<kv::Store, Error> {
    js.get_key_value(BUCKET).await.map_err(|e| Error::Bucket(e.to_string()))
}

/// The log of `build_id`: the chunks written so far, in order, then — if `follow` — new ones
/// as they are written, until the end record. Without `follow` it stops at the last chunk
/// written when it got there. [`Error::NoLog`] if the build has written nothing.
pub async fn read(
    kv: &kv::Store,
    build_id: &str,
    follow: bool,
) -> Result<impl Stream<Item = Result<Item, Error>> + use<>, Error> {
    let filter = slipway_mesh::build_log::filter(build_id);
    let read_err = |e: &dyn std::fmt::Display| Error::Read(build_id.to_owned(), e.to_string());
    let mut subjects =
        kv.stream.info_with_subjects(format!("{}{filter}", kv.prefix)).await.map_err(|e| read_err(&e))?;
    if subjects.next().await.is_none() {
        return Err(Error::NoLog(build_id.to_owned()));
    }
    let watch = kv.watch_with_history(&filter).await.map_err(|e| read_err(&e))?;
    let state = Reader { watch, build_id: build_id.to_owned(), lines: VecDeque::new(), follow, done: false };
    Ok(futures::stream::unfold(state, Reader::next))
}

struct Reader {
    watch: kv::Watch,
    build_id: String,
    lines: VecDeque<String>,
    follow: bool,
    done: bool,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Item, Error>, Self)> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Some((Ok(Item::Line(line)), self));
            }
            if self.done {
                return None;
            }
            let entry = match self.watch.next().await? {
                Ok(entry) => entry,
                Err(e) => {
                    self.done = true;
                    return Some((Err(Error::Read(self.build_id.clone(), e.to_string())), self));
                }
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if slipway_mesh::build_log::is_end_key(&entry.key) {
                self.done = true;
                let end = serde_json::from_slice(&entry.value)
                    .map_err(|e| Error::Read(self.build_id.clone(), format!("end record: {e}")));
                return Some((end.map(Item::End), self));
            }
            let text = String::from_utf8_lossy(&entry.value);
            self.lines.extend(text.lines().map(str::to_owned));
            self.done = !self.follow && entry.delta == 0;
        }
    }
}
