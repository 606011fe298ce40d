//! A bound on how deeply a YAML configuration file nests, checked on the text before parsing.
//!
//! The YAML parser spends time quadratic in the depth of nested flow collections (`[[[[…`),
//! so deep input must be refused before it reaches the parser. This is one linear pass that
//! follows YAML's lexical structure just far enough to count open collections: block levels by
//! indentation and `- ` / `? ` markers, flow levels by `[` and `{` outside quoted scalars,
//! comments and block scalars. Where the pass cannot tell, it counts a level more, never
//! less, so a file it accepts is no deeper than the limit.

/// The deepest nesting accepted in pipeline and schema files. Real files stay below 10; a
/// margin below the YAML deserializer's own recursion limit (128, counted in serde calls,
/// which are more than YAML levels) keeps this the check that speaks.
pub const MAX_NESTING: usize = 64;

/// The input nests deeper than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// 1-based line where the limit is passed.
    pub line: usize,
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the file nests deeper than {} levels (lists and maps inside each other); that is the limit",
            self.limit
        )
    }
}

/// Checks that `text` nests at most `limit` levels deep.
pub fn check_nesting(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        flow: 0,
        quote: None,
        block: Vec::new(),
        block_scalar_parent: None,
    };
    for (i, line) in text.lines().enumerate() {
        scan.line(line)
            .map_err(|()| TooDeep { line: i + 1, limit })?;
    }
    Ok(())
}

struct Scan {
    limit: usize,
    /// Open flow collections.
    flow: usize,
    /// Inside a quoted scalar that continues on the next line.
    quote: Option<u8>,
    /// Columns of the open block collections.
    block: Vec<usize>,
    /// Inside a block scalar (`|`, `>`) whose parent line had this indentation.
    block_scalar_parent: Option<usize>,
}

impl Scan {
    fn depth(&self) -> usize {
        self.block.len() + self.flow
    }

    fn check(&self) -> Result<(), ()> {
        if self.depth() > self.limit {
            Err(())
        } else {
            Ok(())
        }
    }

    fn line(&mut self, line: &str) -> Result<(), ()> {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = bytes[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(parent) = self.block_scalar_parent {
            if blank || indent > parent {
                return Ok(());
            }
            self.block_scalar_parent = None;
        }
        let mut i = 0;
        if let Some(q) = self.quote {
            i = match close_quote(bytes, 0, q) {
                Some(end) => {
                    self.quote = None;
                    end
                }
                None => return Ok(()),
            };
        } else if self.flow == 0 {
            if blank || bytes[indent] == b'#' {
                return Ok(());
            }
            while self.block.last().is_some_and(|&col| col >= indent) {
                self.block.pop();
            }
            i = indent;
            // The line's content is a collection at its column; `- ` and `? ` open one more
            // level each, at the column of the content after them.
            loop {
                self.block.push(i);
                self.check()?;
                let is_marker = matches!(bytes.get(i), Some(b'-' | b'?'))
                    && bytes.get(i + 1).is_none_or(|b| *b == b' ');
                if !is_marker {
                    break;
                }
                i += 1;
                while bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                if i >= bytes.len() {
                    return Ok(());
                }
            }
        }
        self.rest(bytes, i, indent)
    }

    /// Scans the line from `i`: quotes, comments, flow brackets, block scalar indicators.
    fn rest(&mut self, bytes: &[u8], mut i: usize, indent: usize) -> Result<(), ()> {
        // A scalar, a quote or a flow collection can start here.
        let mut at_value_start = true;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'"' | b'\'' if at_value_start => match close_quote(bytes, i + 1, b) {
                    Some(end) => {
                        i = end;
                        at_value_start = false;
                        continue;
                    }
                    None => {
                        self.quote = Some(b);
                        return Ok(());
                    }
                },
                b'#' if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => {
                    return Ok(());
                }
                b'[' | b'{' if self.flow > 0 || at_value_start => {
                    self.flow += 1;
                    self.check()?;
                    at_value_start = true;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    at_value_start = false;
                }
                b',' if self.flow > 0 => at_value_start = true,
                b':' if bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t')
                    || self.flow > 0 =>
                {
                    at_value_start = true;
                }
                b'|' | b'>' if at_value_start && self.flow == 0 => {
                    self.block_scalar_parent = Some(indent);
                    return Ok(());
                }
                b'-' | b'?' if at_value_start && bytes.get(i + 1).is_none_or(|n| *n == b' ') => {}
                b'&' | b'!' if at_value_start => {
                    // An anchor or tag before the value: skip its name.
                    while i < bytes.len() && bytes[i] != b' ' {
                        i += 1;
                    }
                    continue;
                }
                b' ' | b'\t' => {}
                _ => at_value_start = false,
            }
            i += 1;
        }
        Ok(())
    }
}

/// The index just past the quote that closes a scalar opened by `quote`, scanning from `i`.
fn close_quote(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        check_nesting(text, limit).is_ok()
    }

    #[test]
    fn counts_flow_and_block_levels() {
        let doc = "a:\n  b:\n    - [1, {c: [2]}]\n";
        // a's map, b's map, the list, its item's flow list, the flow map, the inner list: 6
        // levels, and one more counted for the item's content column (a bound, not exact).
        assert!(depth_ok(doc, 7));
        assert!(!depth_ok(doc, 5));
        assert_eq!(
            check_nesting("x: [[[[[]]]]]\n", 4),
            Err(TooDeep { line: 1, limit: 4 })
        );
        assert!(depth_ok("x: [[[[[]]]]]\ny: 1\n", 6));
        assert!(!depth_ok("- - - - - x\n", 4));
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_do_not_count() {
        let doc = "a: \"[[[[[\"\nb: '[[['' [[['\nc: x # [[[[[\nd: |\n  [[[[[[\n  {{{{{\ne: in [[[[ plain\nf: \"multi\n  [[[[[ line\"\n";
        assert!(depth_ok(doc, 2), "{:?}", check_nesting(doc, 2));
    }

    #[test]
    fn deep_input_is_refused_in_linear_time() {
        let deep = format!("steps: {}", "[".repeat(1_000_000));
        assert_eq!(
            check_nesting(&deep, MAX_NESTING),
            Err(TooDeep {
                line: 1,
                limit: MAX_NESTING
            })
        );
    }
}
