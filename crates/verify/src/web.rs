//! The web provider: one HTTP request per measurement, retried on connection errors and
//! timeouts. A status other than the expected one is a Failed measurement; otherwise, with
//! `jsonPath` and/or `successCondition`, the body decides: the JSON value at `jsonPath` (or
//! the whole JSON body, or the text of a body that is not JSON) is `result`, as in Argo
//! Rollouts' web metric.

use std::time::Duration;

use slipway_catalog::verify::eval::Value;
use slipway_catalog::verify::{WebCheck, json_path_text};

use crate::assess::Conditions;
use crate::run::Taken;
use crate::{Error, Phase, Subject, render};

/// The longest `value` a measurement reports (a body can be large).
const VALUE_MAX: usize = 200;

/// Takes one measurement.
pub(crate) async fn measure(http: &reqwest::Client, check: &WebCheck, subject: &Subject) -> Taken {
    let url = render(&check.url, subject);
    let method = match reqwest::Method::from_bytes(check.method.as_bytes()) {
        Ok(m) => m,
        Err(e) => return Taken::error(String::new(), Error::Invalid { field: "method", reason: e.to_string() }),
    };
    let timeout = Duration::from_secs(check.timeout_seconds.max(1));
    let attempts = check.retries + 1;
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        match http_send(http, &method, &url, check, subject, timeout).await {
            Ok(response) => break response,
            Err(e) if (e.is_connect() || e.is_timeout()) && attempt < attempts => {
                tracing::debug!(check = %check.name, attempt, error = %e, "web check: retrying");
            }
            Err(source) => {
                let what = format!("{method} {url} ({attempt} attempt(s), timeout {}s)", timeout.as_secs());
                return Taken::error(String::new(), Error::Http { what, source });
            }
        }
    };
    let status = response.status().as_u16();
    if status != check.status {
        return Taken {
            phase: Phase::Failed,
            value: status.to_string(),
            message: format!("expected status {}, got {status}", check.status),
        };
    }
    if check.json_path.is_none() && check.success_condition.is_none() {
        return Taken { phase: Phase::Successful, value: status.to_string(), message: format!("status {status}") };
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(source) => return Taken::error(status.to_string(), Error::Http { what: format!("reading {url}"), source }),
    };
    judge_body(check, &body)
}

async fn http_send(
    http: &reqwest::Client,
    method: &reqwest::Method,
    url: &str,
    check: &WebCheck,
    subject: &Subject,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = http.request(method.clone(), url).timeout(timeout);
    for (name, value) in &check.headers {
        request = request.header(name, render(value, subject));
    }
    if let Some(body) = &check.body {
        request = request.body(render(body, subject));
    }
    request.send().await
}

/// The body's `result` and the condition on it.
fn judge_body(check: &WebCheck, body: &[u8]) -> Taken {
    let result = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => match check.json_path.as_deref().map(|p| select(&json, p)).transpose() {
            Ok(found) => Value::from(found.unwrap_or(&json)),
            Err(e) => return Taken::error(short(&json.to_string()), e),
        },
        // Not JSON: the text is `result`, as Argo does.
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    };
    let value = short(&result.to_string());
    let phase = Conditions::parse(check.success_condition.as_deref(), None).and_then(|c| c.evaluate(&result));
    match phase {
        Ok(phase) => Taken { phase, message: format!("{} = {value}", phase.as_str()), value },
        Err(e) => Taken::error(value, e),
    }
}

fn short(text: &str) -> String {
    match text.char_indices().nth(VALUE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The value at a simple JSONPath: `$`, `.field`, `['field']`, `["field"]`, `[index]`, with
/// Argo's optional braces (`{$.data.ok}`).
pub fn select<'a>(json: &'a serde_json::Value, path: &str) -> Result<&'a serde_json::Value, Error> {
    let text = json_path_text(path);
    let fail = |reason: String| Error::JsonPath { path: path.to_owned(), reason };
    let mut rest = text.strip_prefix('$').ok_or_else(|| fail("must start with `$`".into()))?;
    let mut at = json;
    while !rest.is_empty() {
        let (key, after) = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (Key::Field(&r[..end]), &r[end..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| fail("an unclosed `[`".into()))?;
            let inner = r[..end].trim();
            let quoted = inner.strip_prefix(['\'', '"']).and_then(|s| s.strip_suffix(['\'', '"']));
            let key = match quoted {
                Some(field) => Key::Field(field),
                None => Key::Index(inner.parse().map_err(|_| fail(format!("{inner:?} is not an index")))?),
            };
            (key, &r[end + 1..])
        } else {
            return Err(fail(format!("cannot read {rest:?}")));
        };
        at = match key {
            Key::Field(field) => at.get(field).ok_or_else(|| fail(format!("the body has no {field:?}")))?,
            Key::Index(i) => at.get(i).ok_or_else(|| fail(format!("the body has no element {i}")))?,
        };
        rest = after;
    }
    Ok(at)
}

enum Key<'a> {
    Field(&'a str),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_with_and_without_argos_braces() {
        let body = json!({"data": {"ok": true, "items": [{"n": 1}, {"n": 2}]}, "a.b": 3});
        assert_eq!(select(&body, "$.data.ok").unwrap(), &json!(true));
        assert_eq!(select(&body, "{$.data.ok}").unwrap(), &json!(true));
        assert_eq!(select(&body, "$.data.items[1].n").unwrap(), &json!(2));
        assert_eq!(select(&body, "$['a.b']").unwrap(), &json!(3));
        assert_eq!(select(&body, "$").unwrap(), &body);
        assert!(select(&body, "$.data.missing").is_err());
        assert!(select(&body, "$.data.items[5]").is_err());
        assert!(select(&body, "data").is_err());
    }

    #[test]
    fn the_body_decides_through_the_condition() {
        let check: WebCheck = serde_json::from_value(json!({
            "name": "w", "url": "http://x", "jsonPath": "{$.data.ratio}", "successCondition": "result >= 0.9"
        }))
        .unwrap();
        assert_eq!(judge_body(&check, br#"{"data": {"ratio": 0.95}}"#).phase, Phase::Successful);
        assert_eq!(judge_body(&check, br#"{"data": {"ratio": 0.5}}"#).phase, Phase::Failed);
        assert_eq!(judge_body(&check, br#"{"data": {}}"#).phase, Phase::Error);
        let text: WebCheck =
            serde_json::from_value(json!({"name": "w", "url": "http://x", "successCondition": "result == 'ok'"}))
                .unwrap();
        assert_eq!(judge_body(&text, b"ok").phase, Phase::Successful, "a body that is not JSON is text");
    }
}
