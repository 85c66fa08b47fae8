//! Discord webhooks: `content` (the title) plus one embed with the text and a colour.
//! Mentions are disabled, so an event can never ping `@everyone`. Discord answers `204`, or
//! 429 with `Retry-After` (and a JSON `retry_after`).

use super::{Input, Request, clip, color, post_json};
use serde_json::{Value, json};

/// The webhook body of a message.
pub fn payload(input: &Input<'_>) -> Value {
    let m = input.message;
    let mut embed = json!({
        "title": clip(&m.title, 256),
        "description": clip(&m.text, 4096),
        "color": color(m.severity),
        "footer": { "text": format!("{} · {}", crate::routing::short_kind(input.envelope.kind), input.envelope.id) },
        "timestamp": input.envelope.time.to_rfc3339(),
    });
    if let Some(link) = &m.link {
        embed["url"] = json!(link);
    }
    json!({ "content": clip(&m.title, 2000), "embeds": [embed], "allowed_mentions": { "parse": [] } })
}

/// The POST to the webhook.
pub fn request(input: &Input<'_>) -> Request {
    post_json(input, &payload(input), "post")
}
