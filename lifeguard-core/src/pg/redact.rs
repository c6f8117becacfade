//! Connection strings fit to print: the password taken out, whatever form it was given in.

/// `text` with every password replaced by `***`: the user-info password of a URL
/// (`postgres://`, `redis://`, any `scheme://user:password@host`), `password=` query
/// parameters and `password=` key-value pairs (quoted or not). Everything else is kept, so
/// the result still says which server and user were meant.
///
/// A password holding an unencoded `@`, `/` or `?` makes a URL ambiguous; the password is
/// taken to end at the last `@`, which over-redacts rather than leaks.
///
/// ```
/// use lifeguard_core::pg::redact_url;
/// assert_eq!(
///     redact_url("postgres://app:s3cr/t?@db.internal:5432/app?sslmode=require"),
///     "postgres://app:***@db.internal:5432/app?sslmode=require"
/// );
/// assert_eq!(redact_url("host=db password='a b' user=app"), "host=db password=*** user=app");
/// assert_eq!(redact_url("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// ```
pub fn redact_url(text: &str) -> String {
    let text = match text.find("://") {
        Some(at) => redact_user_info(text, at + 3),
        None => text.to_owned(),
    };
    redact_password_pairs(&text)
}

/// Replaces the password between the user's `:` and the last `@` after `from`.
fn redact_user_info(text: &str, from: usize) -> String {
    let rest = &text[from..];
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &text[..from], &rest[..colon], &rest[at..]),
        None => text.to_owned(),
    }
}

/// Replaces the value of every `password=` that starts a key-value pair or query parameter.
fn redact_password_pairs(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = find_key(rest, KEY) {
        let value_at = found + KEY.len();
        out.push_str(&rest[..value_at]);
        out.push_str("***");
        rest = &rest[value_at + value_len(&rest[value_at..])..];
    }
    out.push_str(rest);
    out
}

/// Where `key` starts a pair: at the start, or after a separator (space, `?`, `&`).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(key) {
        let at = from + i;
        if at == 0 || matches!(text.as_bytes()[at - 1], b' ' | b'\t' | b'?' | b'&') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// The length of a pair's value: a single-quoted value with `\'` escapes, or up to the next
/// space or `&`.
fn value_len(value: &str) -> usize {
    let bytes = value.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return value.find([' ', '\t', '&']).unwrap_or(value.len());
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_form_loses_its_password() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:p@w@h:1,h2:2/db",
                "postgresql://u:***@h:1,h2:2/db",
            ),
            (
                "postgres://u@h/db?password=pw&sslmode=disable",
                "postgres://u@h/db?password=***&sslmode=disable",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("host=h Password=pw", "host=h Password=***"),
            ("password='it\\'s' host=h", "password=*** host=h"),
            ("old_password=x host=h", "old_password=x host=h"),
            ("rediss://user:pw@h:6380", "rediss://user:***@h:6380"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }
}
