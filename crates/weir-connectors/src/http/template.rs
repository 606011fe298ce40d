//! [`UrlTemplate`]: a URL with `{field}` placeholders filled from a record.

use super::HttpError;
use std::fmt::Write as _;
use weir_types::{Record, Value};

/// A URL with `{field}` placeholders, e.g. `http://127.0.0.1:8080/users/{user_id}`.
///
/// Each placeholder takes the value of the record's field: strings percent-encoded (so a value
/// cannot change the URL's structure: `a/b` becomes `a%2Fb`), numbers and booleans as written,
/// datetimes as RFC 3339. A missing or null field, or a nested JSON value, is an error naming the
/// field. `{{` and `}}` stand for literal braces.
///
/// ```
/// use weir_connectors::http::UrlTemplate;
/// use weir_types::{Record, Value};
///
/// let template = UrlTemplate::parse("http://127.0.0.1:8080/users/{user}?page={page}")?;
/// assert_eq!(template.fields().collect::<Vec<_>>(), ["user", "page"]);
/// let record = Record::from_pairs([("user", Value::from("ann b")), ("page", Value::Int(2))]);
/// assert_eq!(template.render(&record)?, "http://127.0.0.1:8080/users/ann%20b?page=2");
/// # Ok::<_, weir_connectors::http::HttpError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<Part>,
    /// Length of the literal text, to size the rendered string.
    literal_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

fn config(reason: String) -> HttpError {
    HttpError::Config { key: "url", reason }
}

impl UrlTemplate {
    /// Parses a template and checks that it makes an `http` or `https` URL.
    pub fn parse(text: &str) -> Result<Self, HttpError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    let name = name.trim();
                    if !closed {
                        return Err(config(format!(
                            "unclosed `{{` at column {} of {text:?}",
                            at + 1
                        )));
                    }
                    if name.is_empty() || name.contains('{') {
                        return Err(config(format!(
                            "expected a field name between `{{` and `}}` at column {} of {text:?}",
                            at + 1
                        )));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name.to_string()));
                }
                '}' => {
                    return Err(config(format!(
                        "unmatched `}}` at column {} of {text:?} (write `}}}}` for a literal brace)",
                        at + 1
                    )));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                Part::Field(_) => 0,
            })
            .sum();
        let template = UrlTemplate { parts, literal_len };
        template.check_url()?;
        Ok(template)
    }

    /// The template with every placeholder replaced by a sample value must be a valid URL.
    fn check_url(&self) -> Result<(), HttpError> {
        let mut sample = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => sample.push_str(l),
                Part::Field(_) => sample.push('1'),
            }
        }
        let url = reqwest::Url::parse(&sample)
            .map_err(|e| config(format!("{:?} is not a valid URL: {e}", self.to_string())))?;
        match url.scheme() {
            "http" | "https" => Ok(()),
            other => Err(config(format!(
                "expected an http:// or https:// URL, found scheme `{other}`"
            ))),
        }
    }

    /// The field names of the placeholders, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The URL for `record`.
    pub fn render(&self, record: &Record) -> Result<String, HttpError> {
        let mut out = String::with_capacity(self.literal_len + 16);
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Field(name) => {
                    let missing = |found| HttpError::MissingField {
                        field: name.clone(),
                        found,
                    };
                    match record.get(name) {
                        None => return Err(missing("missing")),
                        Some(Value::Null) => return Err(missing("null")),
                        Some(Value::Json(_)) => {
                            return Err(missing("a JSON document, not a scalar"));
                        }
                        Some(Value::Str(s)) => percent_encode(s, &mut out),
                        Some(Value::Timestamp(ms)) => {
                            percent_encode(&weir_types::format_datetime(*ms), &mut out)
                        }
                        // Numbers and booleans need no escaping. Writing to a String cannot fail.
                        Some(other) => {
                            let _ = write!(out, "{other}");
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(l) => f.write_str(&l.replace('{', "{{").replace('}', "}}"))?,
                Part::Field(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record::from_pairs([
            ("id", Value::Int(42)),
            ("name", Value::from("a/b?c&d=é")),
            ("ok", Value::Bool(true)),
            ("none", Value::Null),
            (
                "doc",
                Value::Json(std::sync::Arc::new(serde_json::json!({"a": 1}))),
            ),
            ("at", Value::Timestamp(0)),
        ])
    }

    #[test]
    fn placeholders_are_filled_and_escaped() {
        let t = UrlTemplate::parse("http://h:1/x/{id}/{name}?ok={ok}&at={at}").unwrap();
        assert_eq!(
            t.render(&record()).unwrap(),
            "http://h:1/x/42/a%2Fb%3Fc%26d%3D%C3%A9?ok=true&at=1970-01-01T00%3A00%3A00.000Z"
        );
    }

    #[test]
    fn braces_can_be_escaped_and_round_trip_through_display() {
        let t = UrlTemplate::parse("http://h/{{literal}}/{ id }").unwrap();
        assert_eq!(t.render(&record()).unwrap(), "http://h/{literal}/42");
        assert_eq!(t.to_string(), "http://h/{{literal}}/{id}");
        assert_eq!(UrlTemplate::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn unusable_fields_are_errors_naming_the_field() {
        for (field, found) in [
            ("missing", "missing"),
            ("none", "null"),
            ("doc", "a JSON document, not a scalar"),
        ] {
            let t = UrlTemplate::parse(&format!("http://h/{{{field}}}")).unwrap();
            match t.render(&record()).unwrap_err() {
                HttpError::MissingField {
                    field: f,
                    found: why,
                } => {
                    assert_eq!((f.as_str(), why), (field, found));
                }
                other => panic!("unexpected {other}"),
            }
        }
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let reason = |text: &str| match UrlTemplate::parse(text).unwrap_err() {
            HttpError::Config { key: "url", reason } => reason,
            other => panic!("unexpected {other}"),
        };
        assert!(reason("http://h/{id").contains("unclosed `{` at column 10"));
        assert!(reason("http://h/{}").contains("expected a field name"));
        assert!(reason("http://h/id}").contains("unmatched `}` at column 12"));
        assert!(reason("ftp://h/{id}").contains("found scheme `ftp`"));
        assert!(reason("not a url").contains("is not a valid URL"));
    }
}
