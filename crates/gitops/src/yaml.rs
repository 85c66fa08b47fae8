//! Byte-exact YAML edits: text in, text out, with only the edited scalars changed.
//!
//! yaml-edit keeps a lossless syntax tree, so comments, key order, indentation and flow style
//! survive. An existing scalar keeps its quoting: its raw text is replaced by the new value
//! rendered in the same style (double, single or plain; a plain scalar whose new value would
//! read as a number, boolean or null is written double-quoted). Missing keys and entries are
//! added through yaml-edit, which formats them itself (block sequences of block mappings,
//! flow entries in flow collections; a nested mapping it creates is indented by two spaces).
//! Keys that contain `.` cannot be addressed by a dotted key path.

use std::str::FromStr;

use slipway_catalog::keypath::{self, Segment};
use yaml_edit::{Mapping, Sequence, YamlFile};

use super::{Error, ImageChange, Result, Target};

/// Applies `change` to the file `target` names, whose current text is `text`.
pub fn apply(text: &str, target: &Target, change: &ImageChange) -> Result<String> {
    let edited = match target {
        Target::Kustomize { image, .. } => set_kustomize_image(text, image, change),
        Target::HelmValues { tag_key, digest_key, .. } => set_helm_image(text, tag_key, digest_key.as_deref(), change),
        Target::Value { key, value, .. } => set_value(text, key, value),
    };
    edited.map_err(|reason| Error::Yaml { file: target.file().to_owned(), reason })
}

/// Sets `newName`/`newTag`/`digest` of every `images:` entry named `image`, adding the entry
/// (and the `images:` key) when there is none. Setting a tag without a digest removes an old
/// `digest`, which kustomize would otherwise prefer over the new tag.
pub fn set_kustomize_image(text: &str, image: &str, change: &ImageChange) -> Result<String, String> {
    edit(text, |root| kustomize_image(root, image, change))
}

fn kustomize_image(root: &Mapping, image: &str, change: &ImageChange) -> Result<(), String> {
    let fields = kustomize_fields(change);
    let images = match root.get("images") {
        None => None,
        Some(node) if is_null(&node) => None,
        Some(node) => Some(node.as_sequence().cloned().ok_or("`images` is not a sequence")?),
    };
    let Some(images) = images else {
        let entries = Sequence::new();
        entries.push(new_entry(image, &fields));
        root.set("images", entries);
        return Ok(());
    };
    let mut found = false;
    for item in images.values() {
        let Some(entry) = item.as_mapping() else { continue };
        let name = entry.get("name").and_then(|n| n.as_scalar().map(|s| s.as_string()));
        if name.as_deref() != Some(image) {
            continue;
        }
        found = true;
        for (key, value) in &fields {
            set_scalar(entry, key, value)?;
        }
        if change.tag.is_some() && change.digest.is_none() {
            entry.remove("digest");
        }
    }
    if !found {
        let entry = if images.is_flow_style() { Mapping::new_flow() } else { Mapping::new() };
        fill_entry(&entry, image, &fields);
        images.push(entry);
    }
    Ok(())
}

/// Sets the tag at `tag_key` and the digest at `digest_key` (dotted key paths) of a Helm
/// values file; a value the change does not carry is left alone.
pub fn set_helm_image(
    text: &str,
    tag_key: &str,
    digest_key: Option<&str>,
    change: &ImageChange,
) -> Result<String, String> {
    edit(text, |root| {
        if let Some(tag) = &change.tag {
            set_path(root, tag_key, tag.as_str())?;
        }
        if let (Some(key), Some(digest)) = (digest_key, &change.digest) {
            set_path(root, key, digest)?;
        }
        Ok(())
    })
}

/// Sets the scalar at the key path `path` to `value`, creating missing mappings, sequences
/// and list entries (`[field=value]` adds `- field: value` when no entry has it).
pub fn set_value(text: &str, path: &str, value: &str) -> Result<String, String> {
    edit(text, |root| set_path(root, path, value))
}

/// Parses `text` (one document, directives allowed), runs `change` on its root mapping and
/// prints the tree back.
fn edit(text: &str, change: impl FnOnce(&Mapping) -> Result<(), String>) -> Result<String, String> {
    let file = YamlFile::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut documents = file.documents();
    let (Some(doc), None) = (documents.next(), documents.next()) else {
        return Err("expected exactly one YAML document".into());
    };
    let root = doc.as_mapping().ok_or("the document is not a mapping")?;
    change(&root)?;
    Ok(file.to_string())
}

fn kustomize_fields(change: &ImageChange) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    if let Some(name) = &change.new_name {
        fields.push(("newName", name.clone()));
    }
    if let Some(tag) = &change.tag {
        fields.push(("newTag", tag.to_string()));
    }
    if let Some(digest) = &change.digest {
        fields.push(("digest", digest.clone()));
    }
    fields
}

fn new_entry(image: &str, fields: &[(&'static str, String)]) -> Mapping {
    let entry = Mapping::new();
    fill_entry(&entry, image, fields);
    entry
}

fn fill_entry(entry: &Mapping, image: &str, fields: &[(&'static str, String)]) {
    entry.set("name", image);
    for (key, value) in fields {
        entry.set(*key, value.as_str());
    }
}

fn set_path(root: &Mapping, path: &str, value: &str) -> Result<(), String> {
    let segments = keypath::parse(path)?;
    let (Some(Segment::Key(last)), parents) = (segments.last(), &segments[..segments.len().saturating_sub(1)]) else {
        return Err(format!("{path:?} does not end at a key"));
    };
    let mut map = root.clone();
    for segment in parents {
        map = match segment {
            Segment::Key(key) => match map.get(key) {
                Some(node) if !is_null(&node) => {
                    node.as_mapping().cloned().ok_or_else(|| format!("`{key}` in `{path}` is not a mapping"))?
                }
                _ => {
                    map.set(key, Mapping::new());
                    map.get_mapping(key).ok_or_else(|| format!("could not create `{key}` in `{path}`"))?
                }
            },
            Segment::Select { key, field, value: wanted } => select_entry(&map, key, field, wanted)
                .map_err(|why| format!("`{key}[{field}={wanted}]` in `{path}`: {why}"))?,
        };
    }
    set_scalar(&map, last, value)
}

/// The mapping in the sequence at `key` whose `field` is `wanted`; added (with the sequence
/// when there is none) as `- field: wanted`.
fn select_entry(map: &Mapping, key: &str, field: &str, wanted: &str) -> Result<Mapping, String> {
    let find = |seq: &Sequence| {
        seq.values().filter_map(|item| item.as_mapping().cloned()).find(|entry| {
            entry.get(field).and_then(|f| f.as_scalar().map(|s| s.as_string())).as_deref() == Some(wanted)
        })
    };
    let sequence = match map.get(key) {
        Some(node) if !is_null(&node) => Some(node.as_sequence().cloned().ok_or("it is not a list")?),
        _ => None,
    };
    match sequence {
        Some(seq) => {
            if let Some(entry) = find(&seq) {
                return Ok(entry);
            }
            let entry = if seq.is_flow_style() { Mapping::new_flow() } else { Mapping::new() };
            entry.set(field, wanted);
            seq.push(entry);
        }
        None => {
            let seq = Sequence::new();
            let entry = Mapping::new();
            entry.set(field, wanted);
            seq.push(entry);
            map.set(key, seq);
        }
    }
    let seq = map.get(key).and_then(|n| n.as_sequence().cloned()).ok_or("could not create it")?;
    find(&seq).ok_or_else(|| "could not add the entry".to_owned())
}

/// A missing value (`key:`) or an explicit null.
fn is_null(node: &yaml_edit::YamlNode) -> bool {
    node.as_scalar().is_some_and(|s| matches!(s.value().trim(), "" | "~" | "null" | "Null" | "NULL"))
}

/// Replaces the raw text of the scalar at `key` (keeping its quote style) or adds the key.
fn set_scalar(map: &Mapping, key: &str, value: &str) -> Result<(), String> {
    let Some(node) = map.get(key) else {
        map.set(key, value);
        return Ok(());
    };
    let scalar = node.as_scalar().ok_or_else(|| format!("`{key}` is not a scalar"))?;
    let raw = scalar.value();
    if raw.trim().is_empty() {
        // `key:` with nothing after it: the scalar has no text to replace.
        map.set(key, value);
        return Ok(());
    }
    if !is_null(&node) && scalar.as_string() == value {
        return Ok(());
    }
    scalar.set_value(&render_like(&raw, value, map.is_flow_style())?);
    Ok(())
}

/// `value` written in the quote style of the scalar whose raw text is `old`.
pub(crate) fn render_like(old: &str, value: &str, flow: bool) -> Result<String, String> {
    match old.as_bytes().first() {
        Some(b'"') => Ok(double_quoted(value)),
        Some(b'\'') => single_quoted(value),
        Some(b'|' | b'>') => Err("block scalars are not supported for image values".into()),
        _ if plain_safe(value, flow) => Ok(value.to_owned()),
        _ => Ok(double_quoted(value)),
    }
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn single_quoted(value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err("control characters cannot be single-quoted".into());
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// Whether `value` reads back as the same string when written plain.
pub(crate) fn plain_safe(value: &str, flow: bool) -> bool {
    let Some(first) = value.chars().next() else { return false };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '@' | ':' | '+');
    if !(first.is_ascii_alphanumeric() || first == '_' || first == '/') || !value.chars().all(allowed) {
        return false;
    }
    if value.ends_with(':') || (flow && value.contains(':')) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let special = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"];
    !special.contains(&lower.as_str()) && !looks_numeric(&lower)
}

/// YAML 1.1/1.2 ints and floats, including `0x`/`0o`/`0b`, `1_000`, `1e3` and sexagesimal.
fn looks_numeric(lower: &str) -> bool {
    let body = lower.strip_prefix(['+', '-']).unwrap_or(lower);
    for prefix in ["0x", "0o", "0b"] {
        if body.strip_prefix(prefix).is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit())) {
            return true;
        }
    }
    body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'e' | b'+' | b'-' | b':'))
}

/// A repository-relative file path: `/`-separated, no empty, `.` or `..` segments.
pub fn validate_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0', '\n']));
    if ok { Ok(()) } else { Err(Error::invalid("file path", format!("{path:?} is not a relative path"))) }
}

/// A key path such as `image.tag` or `spec.source.helm.parameters[name=image.tag].value`.
pub fn validate_key_path(path: &str) -> Result<()> {
    keypath::parse(path).map(drop).map_err(|e| Error::invalid("key path", e))
}

/// `<algorithm>:<hex>`, e.g. `sha256:…`.
pub fn validate_digest(digest: &str) -> Result<()> {
    let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
        !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'_' | b'-'))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok { Ok(()) } else { Err(Error::invalid("digest", format!("{digest:?} is not <algorithm>:<hex>"))) }
}

/// An image name such as `registry:5000/team/app`.
pub fn validate_image_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':'));
    if ok { Ok(()) } else { Err(Error::invalid("image name", format!("{name:?} is not an image name"))) }
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
