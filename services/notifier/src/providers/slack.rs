//! Slack incoming webhooks with Block Kit: a header, the text, a context line and, for an
//! approval request, Approve / Reject buttons. A click comes back to
//! [`crate::interactions`] as a signed callback. Slack answers `200 ok`, or a 4xx with a short
//! error code (`invalid_payload`, `no_service`, ...), or 429 with `Retry-After`.

use super::{Input, Request, clip, post_json};
use crate::routing::short_kind;
use serde_json::{Value, json};

/// `action_id` of the Approve button.
pub const APPROVE: &str = "slipway_approve";
/// `action_id` of the Reject button.
pub const REJECT: &str = "slipway_reject";

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Block Kit payload of a message.
pub fn payload(input: &Input<'_>) -> Value {
    let m = input.message;
    let mut text = escape(&m.text);
    if let Some(link) = &m.link {
        text.push_str(&format!("\n<{}|Details>", escape(link)));
    }
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": clip(&m.title, 150), "emoji": true } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&text, 3000) } }),
        json!({ "type": "context", "elements": [{ "type": "mrkdwn",
            "text": format!("{} · `{}` · {}", m.severity.as_str(), short_kind(input.envelope.kind), input.envelope.id) }] }),
    ];
    if let Some(ask) = &m.approval {
        let value = serde_json::to_string(ask).unwrap_or_default();
        blocks.push(json!({
            "type": "actions",
            "block_id": "slipway_approval",
            "elements": [
                { "type": "button", "action_id": APPROVE, "style": "primary", "value": value,
                  "text": { "type": "plain_text", "text": "Approve" } },
                { "type": "button", "action_id": REJECT, "style": "danger", "value": value,
                  "text": { "type": "plain_text", "text": "Reject" } },
            ],
        }));
    }
    // `text` is the notification fallback (and what screen readers announce).
    json!({ "text": clip(&format!("{}: {}", m.title, m.text), 3000), "blocks": blocks })
}

/// The POST to the incoming webhook.
pub fn request(input: &Input<'_>) -> Request {
    post_json(input, &payload(input), "post")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Destination;
    use crate::render::default_message;
    use slipway_mesh::EventPayload;
    use slipway_mesh::v1;

    #[test]
    fn text_is_escaped_and_only_approvals_get_buttons() {
        let cfg = serde_json::from_value(serde_json::json!({ "name": "s", "provider": "slack", "url": "https://h/x" }));
        let dest = Destination::resolve(&cfg.expect("cfg"), "d").expect("valid");
        let failed = v1::BuildFailed { app: "w".into(), message: "a <b> & c".into(), ..Default::default() };
        let (envelope, body) = slipway_mesh::prepare("/t", &failed).expect("prepare");
        let payload = failed.into_payload();
        let message = default_message(&payload);
        let input = Input {
            destination: &dest,
            envelope: &envelope,
            payload: &payload,
            body: &body,
            message: &message,
            now: 0,
        };
        let json = super::payload(&input);
        assert!(json["blocks"][1]["text"]["text"].as_str().unwrap_or_default().starts_with("a &lt;b&gt; &amp; c"));
        assert!(!json["blocks"].as_array().expect("blocks").iter().any(|b| b["type"] == "actions"));
    }
}
