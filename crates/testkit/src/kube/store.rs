//! The fake API server's memory: objects keyed by (apiVersion, plural, namespace, name), one
//! resourceVersion counter for all of them (as etcd has), and the history of every change so a
//! watch from resourceVersion N can replay what happened after N.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// Where an object lives: `("batch/v1", "jobs", "ns", "name")`; cluster-scoped objects have
/// an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub api_version: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

/// One watch event as it goes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
}

/// A failed request: HTTP status, Kubernetes reason, message.
pub(crate) type Failure = (u16, &'static str, String);

/// What a delete request asked for, kept for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The object's `kind`.
    pub kind: String,
    /// Its namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `propagationPolicy` from the request (`Background`, `Foreground`, `Orphan`), if given.
    pub propagation: Option<String>,
}

#[derive(Default)]
pub(crate) struct Store {
    pub rv: u64,
    uids: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: Vec<Change>,
    /// `(namespace, pod)` → the text `GET …/pods/{name}/log` answers.
    pub logs: HashMap<(String, String), String>,
    /// `METHOD /path?query` of every request, in order.
    pub requests: Vec<String>,
    pub deletions: Vec<Deletion>,
    /// `(apiVersion, plural)` → Kind, learned from the objects seen.
    kinds: HashMap<(String, String), String>,
}

impl Store {
    /// The Kind served at `(api_version, plural)`: learned from objects, else guessed.
    pub fn kind_of(&self, api_version: &str, plural: &str) -> String {
        let learned = self.kinds.get(&(api_version.to_owned(), plural.to_owned()));
        learned.cloned().unwrap_or_else(|| guess_kind(plural))
    }

    /// Records a change: bumps the resourceVersion, stamps it on the object, keeps it.
    fn commit(&mut self, kind: &'static str, key: Key, mut object: Value) -> Change {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if kind == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let change = Change { rv: self.rv, kind, key, object };
        self.history.push(change.clone());
        change
    }

    /// `POST` to a collection: names the object (`generateName`), stamps uid and timestamps.
    pub fn create(
        &mut self,
        api_version: &str,
        plural: &str,
        namespace: &str,
        mut body: Value,
    ) -> Result<Change, Failure> {
        if !body.is_object() || !body["metadata"].is_object() {
            return Err((400, "BadRequest", "the body must be an object with metadata".to_owned()));
        }
        let name = match (body["metadata"]["name"].as_str(), body["metadata"]["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) => format!("{prefix}{}", suffix(self.uids + 1)),
            _ => return Err((422, "Invalid", "metadata.name: Required value".to_owned())),
        };
        let key = key(api_version, plural, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err((409, "AlreadyExists", format!("{plural} \"{name}\" already exists")));
        }
        self.uids += 1;
        let kind = body["kind"].as_str().map_or_else(|| self.kind_of(api_version, plural), str::to_owned);
        self.kinds.insert((api_version.to_owned(), plural.to_owned()), kind.clone());
        body["apiVersion"] = json!(api_version);
        body["kind"] = json!(kind);
        let meta = &mut body["metadata"];
        meta["name"] = json!(name);
        if !namespace.is_empty() {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uids));
        meta["creationTimestamp"] = json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        meta["generation"] = json!(1);
        Ok(self.commit("ADDED", key, body))
    }

    /// Creates `object` (a full manifest) or replaces the one of its name.
    pub fn apply(&mut self, object: Value) -> Result<Change, Failure> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err((400, "BadRequest", "apiVersion, kind and metadata.name are required".to_owned()));
        }
        let plural = plural_of(&kind);
        let key = key(&api_version, &plural, &namespace, &name);
        if self.objects.contains_key(&key) {
            self.replace(&key, object, false)
        } else {
            self.create(&api_version, &plural, &namespace, object)
        }
    }

    /// `PUT`: the whole object (or only its status), keeping uid and creation time.
    pub fn replace(&mut self, key: &Key, mut body: Value, status_only: bool) -> Result<Change, Failure> {
        let Some(current) = self.objects.get(key).cloned() else { return Err(not_found(key)) };
        if status_only {
            let mut object = current;
            object["status"] = body["status"].take();
            return Ok(self.commit("MODIFIED", key.clone(), object));
        }
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            body["metadata"][field] = current["metadata"][field].clone();
        }
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = body["spec"] != current["spec"];
        body["metadata"]["generation"] = json!(generation + i64::from(spec_changed));
        body["apiVersion"] = current["apiVersion"].clone();
        body["kind"] = current["kind"].clone();
        Ok(self.commit("MODIFIED", key.clone(), body))
    }

    /// `PATCH` as a JSON merge patch (strategic and apply patches are treated the same way,
    /// which is right for the maps and scalars tests patch).
    pub fn patch(&mut self, key: &Key, patch: &Value, status_only: bool) -> Result<Change, Failure> {
        let Some(mut object) = self.objects.get(key).cloned() else { return Err(not_found(key)) };
        if status_only {
            merge(&mut object["status"], &patch["status"]);
        } else {
            merge(&mut object, patch);
        }
        Ok(self.commit("MODIFIED", key.clone(), object))
    }

    /// `DELETE`: removes the object and, unless orphaned, the objects it owns (what the
    /// garbage collector does with `Background`/`Foreground` propagation).
    /// A client's delete (`record`) goes into [`deletions`](Self::deletions); the garbage
    /// collector's and the test's do not.
    pub fn delete(&mut self, key: &Key, propagation: Option<String>, record: bool) -> Result<Vec<Change>, Failure> {
        let Some(object) = self.objects.get(key).cloned() else { return Err(not_found(key)) };
        if record {
            self.deletions.push(Deletion {
                kind: object["kind"].as_str().unwrap_or_default().to_owned(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                propagation: propagation.clone(),
            });
        }
        let mut changes = vec![self.commit("DELETED", key.clone(), object.clone())];
        if propagation.as_deref() != Some("Orphan") {
            let uid = object["metadata"]["uid"].clone();
            let owned: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for dependent in owned {
                changes.extend(self.delete(&dependent, propagation.clone(), false)?);
            }
        }
        Ok(changes)
    }

    /// The object of `kind` (its `kind` field) called `namespace/name`.
    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<Key> {
        self.objects
            .iter()
            .find(|(k, o)| k.namespace == namespace && k.name == name && o["kind"] == kind)
            .map(|(k, _)| k.clone())
    }
}

pub(crate) fn key(api_version: &str, plural: &str, namespace: &str, name: &str) -> Key {
    Key {
        api_version: api_version.to_owned(),
        plural: plural.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

pub(crate) fn not_found(key: &Key) -> Failure {
    (404, "NotFound", format!("{} \"{}\" not found", key.plural, key.name))
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { return };
    for (field, value) in patch {
        if value.is_null() {
            target.remove(field);
        } else {
            merge(target.entry(field.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The resource name of a Kind, by the API machinery's rules (`Ingress` → `ingresses`,
/// `NetworkPolicy` → `networkpolicies`, `Endpoints` → `endpoints`).
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower == "endpoints" {
        lower
    } else if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") || lower.ends_with("sh") {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// A Kind for a plural never seen in an object (only an empty list needs it).
fn guess_kind(plural: &str) -> String {
    const KNOWN: [(&str, &str); 10] = [
        ("pods", "Pod"),
        ("jobs", "Job"),
        ("deployments", "Deployment"),
        ("replicasets", "ReplicaSet"),
        ("statefulsets", "StatefulSet"),
        ("daemonsets", "DaemonSet"),
        ("services", "Service"),
        ("configmaps", "ConfigMap"),
        ("secrets", "Secret"),
        ("applications", "Application"),
    ];
    if let Some((_, kind)) = KNOWN.iter().find(|(p, _)| *p == plural) {
        return (*kind).to_owned();
    }
    let singular = plural.strip_suffix('s').unwrap_or(plural);
    let mut chars = singular.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// Five characters after a `generateName` prefix, as the API server appends.
fn suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    (0..5)
        .map(|_| {
            let c = ALPHABET[usize::try_from(x % 27).unwrap_or(0)];
            x /= 27;
            char::from(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        for (kind, plural) in [
            ("Job", "jobs"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Endpoints", "endpoints"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural_of(kind), plural);
        }
    }

    #[test]
    fn merge_patch() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut target, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(target, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }
}
