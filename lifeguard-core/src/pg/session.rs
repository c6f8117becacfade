//! Session state that outlives a transaction: recognising it in SQL text, refusing it where a
//! transaction-mode pooler would hand it to other clients, and the session defaults a pool
//! applies per transaction and per request instead of at start-up.
//!
//! Behind PgBouncer in transaction mode ([`Prepare::Unnamed`](super::Prepare::Unnamed)) a
//! client holds a server connection only from the start of a transaction to its end. Whatever
//! a statement leaves on the session beyond that (a `LISTEN`, a session advisory lock, a `SET`
//! without `LOCAL`) stays on a server connection that the next transaction, of this client or
//! of another, may or may not get. Those statements are refused before anything is sent.

use std::time::Duration;

use crate::error::{Error, Result};

/// A statement whose effect outlives its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionFeature {
    /// `LISTEN`: notifications arrive on the server connection that subscribed.
    Listen,
    /// `pg_advisory_lock`, `pg_try_advisory_lock` and their `_shared` forms.
    AdvisoryLock,
    /// `SET` without `LOCAL` (and `SET SESSION ...`), which lasts for the session.
    SessionSet,
}

impl SessionFeature {
    /// Why the feature cannot work behind a transaction-mode pooler, and what to do instead.
    fn refusal(self) -> String {
        let (what, why, instead) = match self {
            SessionFeature::Listen => (
                "LISTEN",
                "the subscription stays on whichever server connection ran it, so \
                 notifications reach another client or nobody",
                "listen on a direct connection (prepare=named, not through the pooler)",
            ),
            SessionFeature::AdvisoryLock => (
                "a session advisory lock (pg_advisory_lock, pg_try_advisory_lock)",
                "the lock stays with a server connection other clients' transactions get, \
                 and this client's unlock may run on another one",
                "use pg_advisory_xact_lock / pg_try_advisory_xact_lock inside a transaction, \
                 or a direct connection",
            ),
            SessionFeature::SessionSet => (
                "SET without LOCAL",
                "the setting stays on a server connection other clients' transactions get, \
                 and this client's next transaction may run on another one",
                "use SET LOCAL (or set_config(name, value, true)) inside a transaction, or \
                 ALTER ROLE ... SET for a default",
            ),
        };
        format!(
            "{what} cannot work with prepare=unnamed (for a transaction-mode pooler such as \
             PgBouncer): {why}; {instead}"
        )
    }
}

/// Refuses `sql` when it uses a session feature; the mode's callers only.
pub(crate) fn refuse_session_features(sql: &str) -> Result<()> {
    match find_session_feature(sql) {
        Some(feature) => Err(refusal(feature)),
        None => Ok(()),
    }
}

/// The error for using `feature` in unnamed mode.
pub(crate) fn refusal(feature: SessionFeature) -> Error {
    Error::invalid_use(feature.refusal())
}

/// Whether any statement of `sql` is a `SET` that lasts for the session.
pub(crate) fn sets_session(sql: &str) -> bool {
    let mut found = false;
    scan(sql, |first, second, _| {
        found |= is_session_set(first, second);
        found
    });
    found
}

/// The first session feature any statement of `sql` uses, as far as the text shows: a
/// statement's leading keywords and the advisory-lock functions it calls. String literals,
/// quoted identifiers, comments and dollar-quoted bodies are skipped, so a function defined
/// there is not mistaken for one called, and one called from inside a `DO` block or a
/// function is not seen.
pub(crate) fn find_session_feature(sql: &str) -> Option<SessionFeature> {
    let mut found = None;
    scan(sql, |first, second, word| {
        if found.is_none() {
            if word.is_some_and(is_session_lock_function) {
                found = Some(SessionFeature::AdvisoryLock);
            } else if first.is_some_and(|w| w.eq_ignore_ascii_case("listen")) && second.is_none() {
                found = Some(SessionFeature::Listen);
            } else if second.is_some() && is_session_set(first, second) {
                found = Some(SessionFeature::SessionSet);
            }
        }
        found.is_some()
    });
    found
}

/// `SET` followed by anything but `LOCAL` (the transaction's), `TRANSACTION` (the
/// transaction's characteristics) or `CONSTRAINTS` (the transaction's checks). `second`
/// is `None` while only the first word is known.
fn is_session_set(first: Option<&str>, second: Option<&str>) -> bool {
    let Some(second) = second else {
        return false;
    };
    first.is_some_and(|w| w.eq_ignore_ascii_case("set"))
        && !["local", "transaction", "constraints"]
            .iter()
            .any(|w| second.eq_ignore_ascii_case(w))
}

fn is_session_lock_function(word: &str) -> bool {
    [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    ]
    .iter()
    .any(|f| word.eq_ignore_ascii_case(f))
}

/// Walks the words of `sql` outside literals and comments, calling `visit(first, second,
/// word)` for each: the first two words of the current statement (`second` is `None` while
/// only the first is known; both reset at each `;`) and the word itself. Stops early when
/// `visit` returns true.
fn scan(sql: &str, mut visit: impl FnMut(Option<&str>, Option<&str>, Option<&str>) -> bool) {
    let bytes = sql.as_bytes();
    let mut first: Option<&str> = None;
    let mut second: Option<&str> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b';' => {
                first = None;
                second = None;
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
                i = skip_quoted(bytes, i, b'\'', escaped);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'$' => i = skip_dollar(bytes, i),
            _ if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let start = i;
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                // Word boundaries are ASCII, so the slice is on character boundaries.
                let word = &sql[start..i];
                if first.is_none() {
                    first = Some(word);
                    if visit(first, None, Some(word)) {
                        return;
                    }
                } else {
                    if second.is_none() {
                        second = Some(word);
                    }
                    if visit(first, second, Some(word)) {
                        return;
                    }
                }
            }
            _ => i += 1,
        }
    }
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
/// after the `$` of anything else (a parameter such as `$1`).
fn skip_dollar(bytes: &[u8], at: usize) -> usize {
    let mut end = at + 1;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    let is_tag =
        bytes.get(end) == Some(&b'$') && !bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
    if !is_tag {
        return at + 1;
    }
    let tag = &bytes[at..=end];
    match find_from(bytes, end + 1, tag) {
        Some(close) => close + tag.len(),
        None => bytes.len(),
    }
}

/// The session defaults a pool keeps without the `options` start-up parameter, which
/// transaction-mode poolers reject: `statement_timeout` is set local to each autocommit
/// request's implicit transaction, and both timeouts are set `LOCAL` in the `BEGIN` of each
/// transaction (in the same request, so it costs no round trip).
#[derive(Debug)]
pub(crate) struct LocalSession {
    /// `statement_timeout` in milliseconds, as the text `set_config` takes.
    statement_timeout: Option<String>,
    /// Appended to `BEGIN`: `; SET LOCAL ...` for each timeout.
    begin_suffix: String,
}

impl LocalSession {
    /// The defaults for these timeouts; `None` when neither is set.
    pub(crate) fn new(
        statement: Option<Duration>,
        idle_in_transaction: Option<Duration>,
    ) -> Option<LocalSession> {
        let millis = |t: Duration| t.as_millis().max(1).to_string();
        let mut begin_suffix = String::new();
        if let Some(t) = statement {
            begin_suffix.push_str(&format!("; SET LOCAL statement_timeout = {}", millis(t)));
        }
        if let Some(t) = idle_in_transaction {
            begin_suffix.push_str(&format!(
                "; SET LOCAL idle_in_transaction_session_timeout = {}",
                millis(t)
            ));
        }
        (statement.is_some() || idle_in_transaction.is_some()).then(|| LocalSession {
            statement_timeout: statement.map(millis),
            begin_suffix,
        })
    }

    /// The statement timeout in milliseconds, for `set_config('statement_timeout', .., true)`.
    pub(crate) fn statement_timeout(&self) -> Option<&str> {
        self.statement_timeout.as_deref()
    }

    /// What follows `BEGIN` in the same query string.
    pub(crate) fn begin_suffix(&self) -> &str {
        &self.begin_suffix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listen_and_session_sets() {
        let f = find_session_feature;
        assert_eq!(f("LISTEN jobs"), Some(SessionFeature::Listen));
        assert_eq!(f("  listen \"a b\""), Some(SessionFeature::Listen));
        assert_eq!(f("SET search_path = app"), Some(SessionFeature::SessionSet));
        assert_eq!(
            f("set session timezone to 'UTC'"),
            Some(SessionFeature::SessionSet)
        );
        assert_eq!(f("SET ROLE admin"), Some(SessionFeature::SessionSet));
        assert_eq!(
            f("BEGIN; SET LOCAL a.b = 1; SET statement_timeout = 5; COMMIT"),
            Some(SessionFeature::SessionSet)
        );
        assert_eq!(f("SET LOCAL statement_timeout = 5"), None);
        assert_eq!(f("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), None);
        assert_eq!(f("SET CONSTRAINTS ALL DEFERRED"), None);
        assert_eq!(f("UPDATE t SET listen = 1"), None);
        assert_eq!(f("UNLISTEN jobs"), None);
        assert_eq!(f("-- SET x = 1\nSELECT 1"), None);
        assert_eq!(f("/* LISTEN /* nested */ x */ SELECT 'SET a = 1'"), None);
    }

    #[test]
    fn finds_session_advisory_locks_only() {
        let f = find_session_feature;
        assert_eq!(
            f("SELECT pg_advisory_lock($1)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(
            f("select PG_TRY_ADVISORY_LOCK(1)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(
            f("SELECT pg_advisory_lock_shared(1, 2)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(f("SELECT pg_advisory_xact_lock(1)"), None);
        assert_eq!(f("SELECT pg_try_advisory_xact_lock(1)"), None);
        assert_eq!(f("SELECT pg_advisory_unlock(1)"), None);
        assert_eq!(f("SELECT 'pg_advisory_lock(1)'"), None);
        assert_eq!(f("SELECT E'it\\'s pg_advisory_lock(1)'"), None);
        assert_eq!(
            f("CREATE FUNCTION f() RETURNS void AS $body$ SELECT pg_advisory_lock(1) $body$ LANGUAGE sql"),
            None
        );
        // A parameter is not a dollar quote: what follows it is still read.
        assert_eq!(
            f("SELECT $1, pg_advisory_lock($2)"),
            Some(SessionFeature::AdvisoryLock)
        );
    }

    #[test]
    fn tells_session_sets_for_the_pool() {
        assert!(sets_session("SET a.b = 1"));
        assert!(sets_session("SET LOCAL a.b = 1; SET c.d = 2"));
        assert!(!sets_session("SET LOCAL a.b = 1"));
        assert!(!sets_session("SELECT 1"));
    }

    #[test]
    fn refusals_name_the_mode_and_the_way_out() {
        let e = refuse_session_features("LISTEN x").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidUse(_)));
        assert!(
            text.contains("prepare=unnamed") && text.contains("direct connection"),
            "{text}"
        );
    }

    #[test]
    fn local_session_defaults() {
        assert!(LocalSession::new(None, None).is_none());
        let l = LocalSession::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(l.statement_timeout(), Some("30000"));
        assert_eq!(
            l.begin_suffix(),
            "; SET LOCAL statement_timeout = 30000; SET LOCAL idle_in_transaction_session_timeout = 60000"
        );
        assert_eq!(
            find_session_feature(&format!("BEGIN{}", l.begin_suffix())),
            None
        );
    }
}
