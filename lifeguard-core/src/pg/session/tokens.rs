//! SQL text cut into statements of tokens, as far as deciding what a statement leaves on
//! the session needs: keywords and identifiers, standard string constants (their text, to
//! read a `set_config` flag), and single punctuation bytes. Comments are dropped; escape
//! strings, dollar-quoted bodies and parameters become opaque tokens, so nothing written
//! inside them is mistaken for a keyword or a call.

/// One token of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// An unquoted keyword or identifier, as written (compare ignoring ASCII case).
    Word(&'a str),
    /// A double-quoted identifier, without its quotes (compare exactly).
    Quoted(&'a str),
    /// A standard string constant, without its quotes (doubled quotes left as written).
    Str(&'a str),
    /// An escape string, a dollar-quoted string or a parameter: a value the text does not
    /// show plainly.
    Opaque,
    /// Any other byte outside literals and comments (operators, parentheses, digits).
    Punct(u8),
}

impl Token<'_> {
    /// Whether this is the unquoted keyword `kw`.
    pub(super) fn is(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// Whether this names `name` (lower case), unquoted or quoted.
    pub(super) fn names(&self, name: &str) -> bool {
        match self {
            Token::Word(w) => w.eq_ignore_ascii_case(name),
            Token::Quoted(q) => *q == name,
            _ => false,
        }
    }
}

/// Calls `each` with the tokens of every statement of `sql` in turn (statements end at a
/// `;` outside parentheses); stops at the first call that returns true, and returns
/// whether one did.
pub(super) fn each_statement<'a>(sql: &'a str, mut each: impl FnMut(&[Token<'a>]) -> bool) -> bool {
    let bytes = sql.as_bytes();
    let mut statement: Vec<Token<'a>> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b';' if depth == 0 => {
                if !statement.is_empty() && each(&statement) {
                    return true;
                }
                statement.clear();
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |at| at + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'\'' => {
                // An E'' string escapes with backslashes; a standard one doubles the quote.
                let escaped = i > 0
                    && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !is_word_byte(bytes[i - 2]));
                let end = skip_quoted(bytes, i, b'\'', escaped);
                if escaped {
                    // The `E` was read as a word of its own: the string replaces it.
                    statement.pop();
                    statement.push(Token::Opaque);
                } else {
                    statement.push(Token::Str(inner(sql, i, end)));
                }
                i = end;
            }
            b'"' => {
                let end = skip_quoted(bytes, i, b'"', false);
                statement.push(Token::Quoted(inner(sql, i, end)));
                i = end;
            }
            b'$' => {
                i = skip_dollar(bytes, i);
                statement.push(Token::Opaque);
            }
            _ if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let start = i;
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                // Word boundaries are ASCII, so the slice is on character boundaries.
                statement.push(Token::Word(&sql[start..i]));
            }
            _ if b.is_ascii_whitespace() => i += 1,
            _ => {
                match b {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                statement.push(Token::Punct(b));
                i += 1;
            }
        }
    }
    !statement.is_empty() && each(&statement)
}

/// The text between the quotes of a literal spanning `start..end` (empty when unclosed).
fn inner(sql: &str, start: usize, end: usize) -> &str {
    // Quotes are ASCII, so both ends are on character boundaries.
    sql.get(start + 1..end.saturating_sub(1)).unwrap_or("")
}

/// A byte of an unquoted identifier or keyword (any non-ASCII byte is a letter to the server).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// The index after a (possibly nested) `/* */` comment starting at `at`.
fn skip_block_comment(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0;
    let mut i = at;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after a string or identifier quoted with `quote` starting at `at`.
fn skip_quoted(bytes: &[u8], at: usize, quote: u8, backslash: bool) -> usize {
    let mut i = at + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The index after a dollar-quoted string (`$$...$$`, `$tag$...$tag$`) starting at `at`, or
/// after a parameter such as `$1`.
fn skip_dollar(bytes: &[u8], at: usize) -> usize {
    let mut end = at + 1;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    let is_tag =
        bytes.get(end) == Some(&b'$') && !bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
    if !is_tag {
        // A parameter: its digits belong to it.
        return end;
    }
    let tag = &bytes[at..=end];
    match find_from(bytes, end + 1, tag) {
        Some(close) => close + tag.len(),
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<Vec<Token<'_>>> {
        let mut all = Vec::new();
        each_statement(sql, |s| {
            all.push(s.to_vec());
            false
        });
        all
    }

    #[test]
    fn cuts_statements_and_tokens() {
        use Token::*;
        assert_eq!(
            statements("SET a = 'x''y'; -- c\n/* d /* e */ */ SELECT \"Q\"\"\", E'\\';', $1"),
            vec![
                vec![Word("SET"), Word("a"), Punct(b'='), Str("x''y")],
                vec![
                    Word("SELECT"),
                    Quoted("Q\"\""),
                    Punct(b','),
                    Opaque,
                    Punct(b','),
                    Opaque
                ],
            ]
        );
        // A `;` inside parentheses (a rule's actions) does not end the statement.
        assert_eq!(
            statements("CREATE RULE r AS ON INSERT TO t DO (NOTIFY a; NOTIFY b)").len(),
            1
        );
        assert_eq!(statements(" ; ;").len(), 0);
        assert_eq!(
            statements("SELECT $f$ ; $f$, $$;$$"),
            vec![vec![Word("SELECT"), Opaque, Punct(b','), Opaque]]
        );
    }

    #[test]
    fn unclosed_literals_end_the_text() {
        assert_eq!(statements("SELECT 'abc").last().map(|s| s.len()), Some(2));
        assert_eq!(statements("SELECT \"abc").len(), 1);
        assert_eq!(statements("SELECT $x$ abc").len(), 1);
        assert_eq!(statements("SELECT /* abc").len(), 1);
    }
}
