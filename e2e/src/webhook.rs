//! What GitHub sends for a push: the JSON body (the same fields as the quickstart's), signed
//! with HMAC-SHA256 under the webhook secret, posted with a delivery id. A refused delivery
//! (no answer, or not 2xx) is posted again under the same delivery id, as GitHub's redelivery
//! would, until ingest accepts it.

use std::time::Duration;

use serde_json::json;

/// One push delivery.
#[derive(Debug, Clone)]
pub struct Push {
    /// `X-GitHub-Delivery`: a UUID, the same on every redelivery.
    pub delivery: String,
    /// The commit pushed to main.
    pub after: String,
    pub body: Vec<u8>,
}

impl Push {
    /// A push of `after` (on top of `before`) to main of the demo app repository at
    /// `clone_url`, adding (`added`) or modifying files.
    pub fn new(clone_url: &str, before: &str, after: &str, message: &str, added: &[&str], modified: &[&str]) -> Push {
        let commit = json!({
            "id": after, "message": message, "timestamp": "2026-01-01T00:00:00Z",
            "author": { "name": "Demo", "username": "demo" },
            "added": added, "modified": modified, "removed": [],
        });
        let body = json!({
            "ref": "refs/heads/main", "before": before, "after": after,
            "created": before.bytes().all(|b| b == b'0'), "deleted": false, "forced": false,
            "repository": { "full_name": "demo/hello", "name": "hello", "clone_url": clone_url },
            "pusher": { "name": "demo" }, "sender": { "login": "demo" },
            "commits": [commit.clone()], "head_commit": commit,
        });
        Push {
            delivery: uuid::Uuid::new_v4().to_string(),
            after: after.to_owned(),
            body: serde_json::to_vec(&body).expect("encode push"),
        }
    }
}

/// A client for loopback calls, never through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("http client")
}

/// Posts `push` once; the HTTP status, or the transport error as text.
pub async fn send(client: &reqwest::Client, url: &str, secret: &str, push: &Push) -> Result<u16, String> {
    let signature = slipway_ingest::signature::sign(secret.as_bytes(), &push.body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", &push.delivery)
        .header("x-hub-signature-256", signature)
        .body(push.body.clone())
        .send()
        .await;
    sent.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

/// Posts `push` until ingest answers 2xx, pausing `pause` between attempts, for at most
/// `attempts`; returns how many posts were refused on the way.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    push: &Push,
    attempts: usize,
    pause: Duration,
) -> Result<usize, String> {
    let mut last = String::new();
    for refused in 0..attempts {
        match send(client, url, secret, push).await {
            Ok(status) if (200..300).contains(&status) => return Ok(refused),
            Ok(status) => last = format!("HTTP {status}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(pause).await;
    }
    Err(format!("delivery {} refused {attempts} times; last: {last}", push.delivery))
}
