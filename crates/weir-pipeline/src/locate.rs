//! Finds the line of a key path (`steps[2].map.total`) in a YAML document, so that errors
//! found after parsing (a bad expression, an unknown field) can still name their line.
//!
//! This follows block-style YAML by indentation; inside a flow collection (`{ a: 1 }`) it
//! stops at the line that holds the collection, which is still the right line.

/// One step of a key path.
#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(i));
            }
        }
    }
    segments
}

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

fn significant_lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - trimmed.len(),
                text: trimmed,
            })
        })
        .collect()
}

/// `text` starts with `key:` (optionally quoted).
fn is_key(text: &str, key: &str) -> bool {
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_prefix(key))
        .and_then(|t| t.strip_prefix('"'))
        .or_else(|| {
            text.strip_prefix('\'')
                .and_then(|t| t.strip_prefix(key))
                .and_then(|t| t.strip_prefix('\''))
        })
        .or_else(|| text.strip_prefix(key));
    unquoted.is_some_and(|rest| rest.starts_with(':'))
}

/// The 1-based line of `path` in `text`, or of its deepest ancestor that can be found.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let lines = significant_lines(text);
    let mut range = 0..lines.len();
    // Column at which the current block's content starts (keys of the block sit there).
    let mut min_indent = 0usize;
    // The first line of a block may begin after a "- " on the parent's line.
    let mut first_offset: Option<usize> = None;
    let mut found: Option<usize> = None;

    for segment in parse_path(path) {
        let view = |idx: usize| -> (usize, &str) {
            let l = &lines[idx];
            match first_offset {
                Some(off) if idx == range.start => (l.indent + off, &l.text[off..]),
                _ => (l.indent, l.text),
            }
        };
        let hit = match segment {
            Segment::Key(key) => {
                // Keys of this block sit at its shallowest indentation.
                let level = range
                    .clone()
                    .map(|i| view(i).0)
                    .filter(|&indent| indent >= min_indent)
                    .min();
                range.clone().find(|&i| {
                    let (indent, text) = view(i);
                    Some(indent) == level && is_key(text, key)
                })
            }
            Segment::Index(n) => {
                let items: Vec<usize> = range
                    .clone()
                    .filter(|&i| {
                        let (indent, text) = view(i);
                        indent >= min_indent && (text.starts_with("- ") || text == "-")
                    })
                    .collect();
                let item_indent = items.iter().map(|&i| view(i).0).min();
                items
                    .into_iter()
                    .filter(|&i| Some(view(i).0) == item_indent)
                    .nth(n)
            }
        };
        let Some(idx) = hit else {
            return found;
        };
        let (indent, text) = view(idx);
        found = Some(lines[idx].number);
        // The block under this line: following lines indented deeper than it.
        let end = (idx + 1..range.end)
            .find(|&i| lines[i].indent <= indent)
            .unwrap_or(range.end);
        match segment {
            Segment::Index(_) => {
                // Content of a list item starts after "- " on the same line.
                let offset = lines[idx].text.len() - text.len() + 2;
                range = idx..end;
                first_offset = Some(offset.min(lines[idx].text.len()));
                min_indent = indent + 2;
            }
            Segment::Key(_) => {
                range = (idx + 1)..end;
                first_offset = None;
                min_indent = indent + 1;
                if range.is_empty() {
                    // The value is on the key's own line (a scalar or a flow collection).
                    return found;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: demo
source:
  type: file
  path: in.jsonl
steps:
  - filter: \"amount > 0\"
  # a comment
  - map:
      total: \"amount * 2\"
      tag: \"'x'\"
  - key_by: [user]
  - aggregate: { n: count() }
sink:
  type: stdout
";

    #[test]
    fn finds_keys_items_and_nested_keys() {
        assert_eq!(locate(DOC, "name"), Some(1));
        assert_eq!(locate(DOC, "source.path"), Some(4));
        assert_eq!(locate(DOC, "steps[0]"), Some(6));
        assert_eq!(locate(DOC, "steps[0].filter"), Some(6));
        assert_eq!(locate(DOC, "steps[1].map"), Some(8));
        assert_eq!(locate(DOC, "steps[1].map.tag"), Some(10));
        assert_eq!(locate(DOC, "steps[3].aggregate.n"), Some(12));
        assert_eq!(locate(DOC, "sink.type"), Some(14));
    }

    #[test]
    fn falls_back_to_the_deepest_ancestor_found() {
        assert_eq!(locate(DOC, "steps[1].map.missing"), Some(8));
        assert_eq!(locate(DOC, "steps[9]"), Some(5));
        assert_eq!(locate(DOC, "nothing"), None);
    }

    #[test]
    fn does_not_confuse_a_nested_key_with_a_top_level_one() {
        let doc = "source:\n  type: file\n  name: inner\nname: outer\n";
        assert_eq!(locate(doc, "name"), Some(4));
        assert_eq!(locate(doc, "source.name"), Some(3));
    }
}
