//! The protection every schema has unless it is switched off: document size and nesting,
//! depth, breadth, page sizes, rows, and introspection.

/// Limits on what one request may ask for. The defaults suit a public endpoint.
///
/// ```
/// use lifeguard_graphql::Limits;
/// let limits = Limits { max_depth: 8, ..Limits::default() };
/// assert!(limits.introspection);
/// ```
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest document accepted, in bytes (the query text).
    pub max_document_bytes: usize,
    /// Deepest nesting of brackets (`{`, `[`, `(`) in the document, checked before parsing
    /// so a hostile document cannot exhaust the coroutine's stack in the parser.
    pub max_nesting: usize,
    /// Deepest selection (the engine's depth limit). The introspection query graphql-js
    /// and GraphiQL send (types nested nine `ofType` levels) is 15 deep.
    pub max_depth: usize,
    /// Most fields selected in one operation, aliases and fragment uses counted
    /// (the engine's complexity limit).
    pub max_fields: usize,
    /// Page size when a list asks for none.
    pub default_page_size: u64,
    /// Largest `limit` / `first` accepted.
    pub max_page_size: u64,
    /// Most rows the plan of one request may load, estimated before anything runs from
    /// the pages at every level.
    pub max_cost: u64,
    /// Most rows one statement may return (a relation without a per-parent limit).
    pub max_rows: u64,
    /// Whether `__schema` and `__type` answer.
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_document_bytes: 64 * 1024,
            max_nesting: 64,
            max_depth: 16,
            max_fields: 500,
            default_page_size: 100,
            max_page_size: 1000,
            max_cost: 50_000,
            max_rows: 10_000,
            introspection: true,
        }
    }
}

/// Why a document is refused before parsing.
pub(crate) fn check_document(limits: &Limits, query: &str) -> Result<(), String> {
    if query.len() > limits.max_document_bytes {
        return Err(format!(
            "the document has {} bytes, more than the {} allowed",
            query.len(),
            limits.max_document_bytes
        ));
    }
    let depth = nesting(query);
    if depth > limits.max_nesting {
        return Err(format!(
            "the document nests {depth} levels deep, more than the {} allowed",
            limits.max_nesting
        ));
    }
    Ok(())
}

/// The deepest bracket nesting outside strings and comments.
fn nesting(query: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut bytes = query.as_bytes().iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                for c in bytes.by_ref() {
                    if c == b'\n' {
                        break;
                    }
                }
            }
            b'"' => {
                // Block strings (`"""`) hold no escapes but `\"""`; an escape skips one byte
                // either way, which is all a nesting count needs.
                while let Some(c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_ignores_brackets_in_strings_and_comments() {
        assert_eq!(nesting("{ a { b } }"), 2);
        assert_eq!(nesting(r#"{ a(x: "{{{{") }"#), 2);
        assert_eq!(nesting("# {{{{\n{ a }"), 1);
        assert_eq!(nesting(&"[".repeat(10_000)), 10_000);
    }

    #[test]
    fn documents_past_the_limits_are_refused() {
        let limits = Limits::default();
        assert!(check_document(&limits, "{ a }").is_ok());
        assert!(check_document(&limits, &"x".repeat(70_000)).is_err());
        let deep = format!("{{ a(x: {}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert!(check_document(&limits, &deep)
            .unwrap_err()
            .contains("nests"));
    }
}
