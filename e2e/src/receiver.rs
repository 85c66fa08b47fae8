//! A generic signed-webhook receiver, as a team would run one behind the notifier's `webhook`
//! provider: it checks `X-Slipway-Signature` over `<timestamp>.<body>` and counts, per
//! `X-Slipway-Event-Id`, the deliveries it acknowledged with 2xx.
//!
//! A test can hold the next request ([`Receiver::hold_next`]) to crash the notifier while a
//! post is in flight; the held request is then answered 503 and not counted, since its sender
//! never learnt that it arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use slipway_notifier::providers::webhook::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use tokio::sync::{Notify, oneshot};

/// A request the receiver holds: its event id, and the `replica` query parameter of the URL
/// it was posted to (a replica's own config can name itself there; empty if not).
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub replica: String,
}

#[derive(Default)]
struct Inner {
    /// Event ids acknowledged with 200, in arrival order (a duplicate appears twice).
    accepted: Vec<String>,
    /// Requests whose signature did not verify: (event id, why).
    refused: Vec<(String, String)>,
    /// Set by `hold_next`: told the held request.
    hold: Option<oneshot::Sender<Held>>,
    /// Requests that were held (and answered 503, had their sender still been there).
    held: Vec<String>,
}

struct Shared {
    secret: String,
    inner: Mutex<Inner>,
    release: Notify,
}

/// The receiver, serving `POST /hook` on a loopback port until the test ends.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Binds a free port and serves; requests must be signed with `secret`.
    pub async fn start(secret: &str) -> Receiver {
        let shared =
            Arc::new(Shared { secret: secret.to_owned(), inner: Mutex::new(Inner::default()), release: Notify::new() });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("receiver address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, shared }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Acknowledged deliveries per event id.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for id in &self.inner().accepted {
            *counts.entry(id.clone()).or_default() += 1;
        }
        counts
    }

    /// Requests refused for a bad signature or timestamp: (event id, why).
    pub fn refused(&self) -> Vec<(String, String)> {
        self.inner().refused.clone()
    }

    /// Event ids of the requests that were held (never acknowledged).
    pub fn held(&self) -> Vec<String> {
        self.inner().held.clone()
    }

    /// Holds the next request until [`Receiver::release`]; the answer tells which as soon as
    /// it arrived.
    pub fn hold_next(&self) -> oneshot::Receiver<Held> {
        let (tx, rx) = oneshot::channel();
        self.inner().hold = Some(tx);
        rx
    }

    /// Lets the held request go (answered 503).
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    /// The notifier's config sending every event to this receiver, one at a time: while a
    /// test holds a post, no other is in flight, so killing the notifier then cannot fall
    /// between another post's 2xx and its being marked sent.
    pub fn notifier_config(&self) -> String {
        format!(
            r#"concurrency = 1

[retry]
attempts = 10
base_ms = 200
max_ms = 2000

[[destinations]]
name = "receiver"
provider = "webhook"
url = "{}"
signing_secret = "{}"

[[routes]]
destinations = ["receiver"]
"#,
            self.url, self.shared.secret
        )
    }

    /// Asserts that every event of `expected` (id → kind) was acknowledged exactly once, none
    /// else, and every post was correctly signed; returns how many there were.
    pub fn assert_each_once(&self, expected: &BTreeMap<String, String>) -> usize {
        assert!(self.refused().is_empty(), "badly signed posts: {:?}", self.refused());
        let counts = self.counts();
        let missing: Vec<_> = expected.iter().filter(|(id, _)| !counts.contains_key(*id)).collect();
        let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (id, expected.get(id), n)).collect();
        let unknown: Vec<_> = counts.keys().filter(|id| !expected.contains_key(*id)).collect();
        assert!(missing.is_empty(), "{} of {} events never notified: {missing:#?}", missing.len(), expected.len());
        assert!(doubled.is_empty(), "events notified more than once (id, kind, times): {doubled:#?}");
        assert!(unknown.is_empty(), "notifications of events not in the stream: {unknown:?}");
        expected.len()
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let id = header(EVENT_ID_HEADER);
    if let Err(why) = verify(&shared.secret, &header(TIMESTAMP_HEADER), &header(SIGNATURE_HEADER), &body) {
        shared.inner.lock().unwrap_or_else(PoisonError::into_inner).refused.push((id, why));
        return StatusCode::UNAUTHORIZED;
    }
    let hold = shared.inner.lock().unwrap_or_else(PoisonError::into_inner).hold.take();
    if let Some(tell) = hold {
        shared.inner.lock().unwrap_or_else(PoisonError::into_inner).held.push(id.clone());
        let _ = tell.send(Held { id, replica: query.get("replica").cloned().unwrap_or_default() });
        // If the sender dies meanwhile, the server may drop this future here: nothing counted.
        shared.release.notified().await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    shared.inner.lock().unwrap_or_else(PoisonError::into_inner).accepted.push(id);
    StatusCode::OK
}

/// The receiver's side of the signature scheme documented in the notifier's webhook provider.
fn verify(secret: &str, timestamp: &str, signature: &str, body: &[u8]) -> Result<(), String> {
    let ts: i64 = timestamp.parse().map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if (i64::try_from(now).unwrap_or(i64::MAX) - ts).abs() > 300 {
        return Err(format!("timestamp {ts} is more than 5 minutes off"));
    }
    let expected = sign(secret.as_bytes(), ts, body);
    // Test code: a plain comparison is fine here (no timing side channel to worry about).
    if expected == signature { Ok(()) } else { Err(format!("signature {signature:?} does not verify")) }
}
