//! Microsoft Teams incoming webhooks: a legacy `MessageCard`, which both the classic
//! connectors and Workflows webhooks accept. Teams answers `200` (body `1`) or an error.

use super::{Input, Request, color, post_json};
use serde_json::{Value, json};

/// The MessageCard of a message.
pub fn payload(input: &Input<'_>) -> Value {
    let m = input.message;
    let mut card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": m.title,
        "themeColor": format!("{:06X}", color(m.severity)),
        "title": m.title,
        "text": m.text,
        "sections": [{ "facts": [
            { "name": "Event", "value": crate::routing::short_kind(input.envelope.kind) },
            { "name": "Severity", "value": m.severity.as_str() },
        ] }],
    });
    if let Some(link) = &m.link {
        card["potentialAction"] =
            json!([{ "@type": "OpenUri", "name": "Details", "targets": [{ "os": "default", "uri": link }] }]);
    }
    card
}

/// The POST to the webhook.
pub fn request(input: &Input<'_>) -> Request {
    post_json(input, &payload(input), "post")
}
