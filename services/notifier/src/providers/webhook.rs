//! The generic webhook: the event as JSON, signed so the receiver can check it came from
//! Slipway and was not replayed.
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Slipway-Event-Id: <event id; the same on every retry, use it to dedupe>
//! X-Slipway-Timestamp: <unix seconds>
//! X-Slipway-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the secret>
//!
//! {"id": "...", "type": "io.slipway.build.failed.v1", "kind": "build.failed",
//!  "source": "...", "subject": "...", "time": "...", "app": "...", "stage": "...",
//!  "severity": "error", "title": "...", "text": "...", "data": { <the payload> }}
//! ```
//!
//! To verify, a receiver:
//! 1. reads `X-Slipway-Timestamp` and refuses it when it is more than 5 minutes from its
//!    clock (a replayed request carries an old timestamp, and the signature covers it);
//! 2. computes HMAC-SHA256 with the shared `signing_secret` as key over the bytes
//!    `<timestamp>` `.` `<raw request body>` (the body exactly as received, before parsing);
//! 3. compares `sha256=<lowercase hex of that>` with `X-Slipway-Signature` in constant time.
//!
//! In Python: `hmac.compare_digest("sha256=" + hmac.new(secret, f"{ts}.".encode() + body,
//! hashlib.sha256).hexdigest(), header)`. A retry is signed anew with a fresh timestamp, and
//! keeps its `X-Slipway-Event-Id`.

use super::{Input, Request};
use crate::routing::short_kind;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "x-slipway-signature";
/// Header with the signing time.
pub const TIMESTAMP_HEADER: &str = "x-slipway-timestamp";
/// Header with the event id.
pub const EVENT_ID_HEADER: &str = "x-slipway-event-id";

/// `sha256=<hex>` of `"{timestamp}.{body}"` under `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The signed POST.
pub fn request(input: &Input<'_>) -> Request {
    let e = input.envelope;
    let m = input.message;
    let (app, stage) = crate::render::app_stage(input.payload);
    let data: serde_json::Value = serde_json::from_slice(input.body).unwrap_or(serde_json::Value::Null);
    let body = json!({
        "id": e.id.as_str(), "type": e.kind.ce_type(), "kind": short_kind(e.kind), "source": e.source,
        "subject": e.subject, "time": e.time.to_rfc3339(), "app": app, "stage": stage,
        "severity": m.severity.as_str(), "title": m.title, "text": m.text, "link": m.link, "data": data,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let key = input.destination.signing_secret.as_ref().map(|s| s.expose().as_bytes()).unwrap_or_default();
    let signature = sign(key, input.now, &body);
    Request {
        method: reqwest::Method::POST,
        url: input.destination.url.expose().to_owned(),
        headers: vec![
            (SIGNATURE_HEADER, signature),
            (TIMESTAMP_HEADER, input.now.to_string()),
            (EVENT_ID_HEADER, e.id.to_string()),
        ],
        body,
        action: "post",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = sign(b"k", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(b"k", 1_700_000_001, b"{}"));
        assert_ne!(a, sign(b"k", 1_700_000_000, b"{ }"));
        assert_ne!(a, sign(b"j", 1_700_000_000, b"{}"));
        // The documented recipe, spelled out.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(a, format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    }
}
