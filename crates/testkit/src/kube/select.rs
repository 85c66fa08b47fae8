//! Which objects a list or watch request means: the collection in the path, narrowed by
//! `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and
//! `fieldSelector` (`metadata.name` and `metadata.namespace`, with `=`, `==` or `!=`).

use super::store::Key;
use serde_json::Value;

/// A collection and its selectors.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub api_version: String,
    pub plural: String,
    /// `None`: every namespace (a cluster-level path).
    pub namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Debug, Clone)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Scope {
    /// Parses the selectors; an error names the one the fake does not understand.
    pub fn new(
        api_version: String,
        plural: String,
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, String> {
        let labels = labels.map(parse_labels).transpose()?.unwrap_or_default();
        let fields = fields.map(parse_fields).transpose()?.unwrap_or_default();
        Ok(Self { api_version, plural, namespace, labels, fields })
    }

    /// Whether the object at `key` (in state `object`) is in this scope.
    pub fn matches(&self, key: &Key, object: &Value) -> bool {
        if key.api_version != self.api_version || key.plural != self.plural {
            return false;
        }
        if self.namespace.as_ref().is_some_and(|ns| *ns != key.namespace) {
            return false;
        }
        let fields_ok = self.fields.iter().all(|(field, equal, value)| {
            let actual = if field == "metadata.name" { &key.name } else { &key.namespace };
            (actual == value) == *equal
        });
        let labels = &object["metadata"]["labels"];
        fields_ok && self.labels.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &Value) -> bool {
        let value = |k: &str| labels.get(k).and_then(Value::as_str);
        match self {
            Requirement::In(k, values) => value(k).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(k, values) => value(k).is_none_or(|v| values.iter().all(|x| x != v)),
            Requirement::Exists(k) => value(k).is_some(),
            Requirement::Absent(k) => value(k).is_none(),
        }
    }
}

/// Splits on commas outside parentheses.
fn terms(selector: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0_i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&selector[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn parse_labels(selector: &str) -> Result<Vec<Requirement>, String> {
    terms(selector).into_iter().map(parse_label).collect()
}

fn parse_label(term: &str) -> Result<Requirement, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
        let inner = inner.ok_or_else(|| format!("labelSelector {term:?}: expected (a,b)"))?;
        Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
    };
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotIn(k.trim().to_owned(), vec![v.trim().to_owned()]));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::In(k.trim().to_owned(), vec![v.trim().to_owned()]));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(k.trim().to_owned(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Requirement::In(k.trim().to_owned(), set(rest)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::Absent(k.trim().to_owned()));
    }
    if term.contains([' ', '(', ')', '<', '>']) {
        return Err(format!("labelSelector {term:?} is not supported by the fake API server"));
    }
    Ok(Requirement::Exists(term.to_owned()))
}

fn parse_fields(selector: &str) -> Result<Vec<(String, bool, String)>, String> {
    terms(selector)
        .into_iter()
        .map(|term| {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("fieldSelector {term:?}: expected field=value"));
            };
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(format!("fieldSelector {field:?} is not supported by the fake API server"));
            }
            Ok((field.to_owned(), equal, value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(labels: &str, fields: &str) -> Scope {
        let (labels, fields) = ((!labels.is_empty()).then_some(labels), (!fields.is_empty()).then_some(fields));
        Scope::new("batch/v1".into(), "jobs".into(), Some("ci".into()), labels, fields).expect("selectors")
    }

    #[test]
    fn selectors_narrow_the_collection() {
        let key = super::super::store::key("batch/v1", "jobs", "ci", "j1");
        let job = json!({"metadata": {"labels": {"app": "slipway", "tier": "build"}}});
        for (labels, fields, expected) in [
            ("", "", true),
            ("app=slipway", "metadata.name=j1", true),
            ("app==slipway,tier in (build, test)", "", true),
            ("app!=slipway", "", false),
            ("tier notin (build)", "", false),
            ("tier,!missing", "metadata.namespace=ci", true),
            ("missing", "", false),
            ("", "metadata.name!=j1", false),
        ] {
            assert_eq!(scope(labels, fields).matches(&key, &job), expected, "{labels} / {fields}");
        }
        let other_ns = super::super::store::key("batch/v1", "jobs", "prod", "j1");
        assert!(!scope("", "").matches(&other_ns, &job));
        assert!(Scope::new("v1".into(), "pods".into(), None, None, Some("spec.nodeName=x")).is_err());
    }
}
