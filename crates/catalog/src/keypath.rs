//! Key paths into a YAML file: `image.tag` (mappings), and list entries chosen by one of their
//! fields, `spec.source.helm.parameters[name=image.tag].value` — how an Argo CD
//! Application's Helm parameters or a manifest's containers are addressed. The catalog
//! validates them; the promoter's YAML edits walk them.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// The value of `key` in a mapping.
    Key(String),
    /// In the sequence at `key`, the mapping whose `field` is the scalar `value`.
    Select { key: String, field: String, value: String },
}

/// Parses `a.b[field=value].c`. Dots inside brackets belong to the value; a key cannot
/// contain `.`, `[` or `]`.
pub fn parse(path: &str) -> Result<Vec<Segment>, String> {
    let bad = |why: &str| Err(format!("{path:?} is not a key path: {why}"));
    if path.is_empty() {
        return bad("it is empty");
    }
    let mut segments = Vec::new();
    let mut rest = path;
    loop {
        let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
        let key = &rest[..end];
        if key.is_empty() {
            return bad("a key is empty");
        }
        if key.chars().any(char::is_control) {
            return bad("a key holds a control character");
        }
        rest = &rest[end..];
        if let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { return bad("a `[` is not closed") };
            let Some((field, value)) = inner[..close].split_once('=') else {
                return bad("a list entry is chosen by `[field=value]`");
            };
            let (field, value) = (field.trim(), value.trim());
            if field.is_empty() || value.is_empty() || field.contains(['.', '[']) || value.contains('[') {
                return bad("`[field=value]` needs a plain field and a value");
            }
            segments.push(Segment::Select { key: key.to_owned(), field: field.to_owned(), value: value.to_owned() });
            rest = &inner[close + 1..];
        } else {
            segments.push(Segment::Key(key.to_owned()));
        }
        match rest.as_bytes().first() {
            None => break,
            Some(b'.') => rest = &rest[1..],
            Some(_) => return bad("`]` or `[` where a `.` or the end belongs"),
        }
        if rest.is_empty() {
            return bad("it ends with `.`");
        }
    }
    if matches!(segments.last(), Some(Segment::Select { .. })) {
        return bad("it ends at a list entry, not at the scalar to write (add `.value`, `.image`, ...)");
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    #[test]
    fn dotted_keys_and_selected_entries() {
        assert_eq!(parse("image.tag").unwrap(), vec![key("image"), key("tag")]);
        assert_eq!(
            parse("spec.source.helm.parameters[name=image.tag].value").unwrap(),
            vec![
                key("spec"),
                key("source"),
                key("helm"),
                Segment::Select { key: "parameters".into(), field: "name".into(), value: "image.tag".into() },
                key("value"),
            ]
        );
        assert_eq!(parse("containers[name=web].image").unwrap().len(), 2);
    }

    #[test]
    fn malformed_paths_say_why() {
        for (path, why) in [
            ("", "empty"),
            ("a..b", "a key is empty"),
            ("a.", "ends with `.`"),
            ("a[name=x", "not closed"),
            ("a[name].b", "[field=value]"),
            ("a[=x].b", "plain field"),
            ("a[name=x]", "ends at a list entry"),
            ("a[name=x]b", "where a `.`"),
            ("a]b", "where a `.`"),
        ] {
            let e = parse(path).unwrap_err();
            assert!(e.contains(why), "{path:?}: {e}");
        }
    }
}
