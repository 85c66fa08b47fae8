//! Finding the line of a key path (`apps[3].deploy.path`) in a YAML text, for errors that
//! name `file:line`. serde_yaml reports lines for what it refuses itself (syntax, unknown
//! keys, wrong types) but not for what validation refuses later (an unknown pipeline), so
//! this walks the block structure by indentation. Flow style (`{a: 1}`) is not walked into:
//! the line of the nearest enclosing key is given instead, which is where a reader looks.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `apps[3].deploy.path`.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut key = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' | '[' => {
                if !key.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut key)));
                }
                if c == '[' {
                    let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                    if let Ok(i) = digits.parse() {
                        segs.push(Seg::Index(i));
                    }
                }
            }
            c => key.push(c),
        }
    }
    if !key.is_empty() {
        segs.push(Seg::Key(key));
    }
    segs
}

#[derive(Debug, Clone)]
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let body = raw.trim_start();
            let indent = raw.len() - body.len();
            (!body.is_empty() && !body.starts_with('#') && body != "---").then_some(Line {
                no: i + 1,
                indent,
                text: body,
            })
        })
        .collect()
}

fn is_key(text: &str, key: &str) -> bool {
    let unquoted = text.strip_prefix(key).and_then(|r| r.strip_prefix(':'));
    let quoted = |q: char| text.strip_prefix(q).and_then(|r| r.strip_prefix(key)).and_then(|r| r.strip_prefix(q));
    let quoted = quoted('"').or_else(|| quoted('\'')).and_then(|r| r.strip_prefix(':'));
    unquoted.or(quoted).is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
}

/// The children of the line at `at` in `scope`: the lines after it indented deeper, or, for a
/// key whose sequence items sit at its own indentation, those items.
fn children<'a>(scope: &[Line<'a>], at: usize) -> Vec<Line<'a>> {
    let parent = &scope[at];
    let mut out: Vec<Line<'a>> = scope[at + 1..].iter().take_while(|l| l.indent > parent.indent).cloned().collect();
    if out.is_empty() {
        out = scope[at + 1..]
            .iter()
            .take_while(|l| l.indent > parent.indent || (l.indent == parent.indent && l.text.starts_with('-')))
            .cloned()
            .collect();
    }
    out
}

/// The 1-based line of `path` in `text`, or of the deepest part of it that was found; `None`
/// when not even its first key is there.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let mut scope = lines(text);
    let mut found = None;
    for seg in parse_path(path) {
        let Some(base) = scope.iter().map(|l| l.indent).min() else { break };
        let hit = match &seg {
            Seg::Key(key) => scope.iter().position(|l| l.indent == base && is_key(l.text, key)),
            Seg::Index(i) => scope
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == base && (l.text == "-" || l.text.starts_with("- ")))
                .nth(*i)
                .map(|(at, _)| at),
        };
        let Some(at) = hit else { break };
        found = Some(scope[at].no);
        let mut next = children(&scope, at);
        if let Seg::Index(_) = seg {
            // The item's first key is on the dash line itself: make it a line of its own.
            let item = &scope[at];
            let rest = item.text.trim_start_matches('-').trim_start();
            if !rest.is_empty() {
                let indent = item.indent + (item.text.len() - rest.len());
                next.insert(0, Line { no: item.no, indent, text: rest });
            }
        }
        scope = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# the catalog
pipelines:
  standard:
    stages:
      - name: dev
        policy: auto
      - name: prod
        policy: approval
        teams: [sre]
apps:
- name: writer
  pipeline: standard
  deploy:
    path: apps/{app}/{stage}.yaml
- name: reader
  deploy: { path: x }
  \"pipeline\": fast
";

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("apps[3].deploy.path"),
            vec![Seg::Key("apps".into()), Seg::Index(3), Seg::Key("deploy".into()), Seg::Key("path".into())]
        );
        assert_eq!(parse_path("teams.qa"), vec![Seg::Key("teams".into()), Seg::Key("qa".into())]);
    }

    #[test]
    fn keys_are_found_by_indentation() {
        assert_eq!(locate(TEXT, "pipelines.standard.stages[1].teams"), Some(9));
        assert_eq!(locate(TEXT, "pipelines.standard.stages[0].name"), Some(5));
        assert_eq!(locate(TEXT, "apps[0].pipeline"), Some(12));
        assert_eq!(locate(TEXT, "apps[0].deploy.path"), Some(14));
        assert_eq!(locate(TEXT, "apps[1].pipeline"), Some(17), "quoted keys too");
        assert_eq!(locate(TEXT, "apps[1].deploy.path"), Some(16), "flow style: the enclosing key");
        assert_eq!(locate(TEXT, "apps[1].owners"), Some(15), "a missing key: its item");
        assert_eq!(locate(TEXT, "generators[0]"), None);
    }
}
