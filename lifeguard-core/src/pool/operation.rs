//! A statement's operation, for span fields, the slow-statement log and the duration
//! histogram's `operation` label: its first SQL keyword, lower-cased, from a fixed set.

use super::routing::skip_noise;

/// Every `operation` label value; anything else is `other`, so the label set stays bounded
/// whatever SQL runs.
pub(crate) const OPERATIONS: [&str; 46] = [
    "other",
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "with",
    "values",
    "table",
    "show",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "prepare",
    "execute",
    "deallocate",
    "set",
    "reset",
    "copy",
    "call",
    "do",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "revoke",
    "comment",
    "lock",
    "listen",
    "unlisten",
    "notify",
    "explain",
    "analyze",
    "vacuum",
    "discard",
    "declare",
    "fetch",
    "move",
    "close",
    "refresh",
    "reindex",
    "cluster",
    "checkpoint",
];

/// One of [`OPERATIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operation(usize);

impl Operation {
    /// The operation of `sql`: its first keyword after whitespace, comments and opening
    /// parentheses (the synonyms `START`, `END`, `ABORT` and `ANALYSE` read as `begin`,
    /// `commit`, `rollback` and `analyze`).
    pub(crate) fn of(sql: &str) -> Operation {
        let head = skip_noise(sql).as_bytes();
        let end = head
            .iter()
            .position(|c| !c.is_ascii_alphabetic())
            .unwrap_or(head.len());
        // No keyword of the set is longer; a longer word is `other` without a copy.
        let mut lower = [0u8; 10];
        let Some(word) = lower.get_mut(..end) else {
            return Operation(0);
        };
        word.copy_from_slice(&head[..end]);
        word.make_ascii_lowercase();
        let word = match &*word {
            b"start" => b"begin".as_slice(),
            b"end" => b"commit",
            b"abort" => b"rollback",
            b"analyse" => b"analyze",
            w => w,
        };
        Operation(
            OPERATIONS
                .iter()
                .position(|o| o.as_bytes() == word)
                .unwrap_or(0),
        )
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        OPERATIONS[self.0]
    }

    /// Its place in [`OPERATIONS`].
    #[cfg(feature = "metrics")]
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_keyword_lower_cased() {
        for (sql, op) in [
            ("SELECT 1", "select"),
            ("  select * from t", "select"),
            ("-- note\n/* hint */ (SELECT 1)", "select"),
            ("WITH a AS (SELECT 1) DELETE FROM t", "with"),
            ("insert into t values (1)", "insert"),
            ("Update t SET a = 1", "update"),
            ("DELETE FROM t", "delete"),
            ("BEGIN", "begin"),
            ("START TRANSACTION", "begin"),
            ("commit", "commit"),
            ("END", "commit"),
            ("ABORT", "rollback"),
            ("checkpoint", "checkpoint"),
            ("CREATE TABLE t (a int)", "create"),
        ] {
            assert_eq!(Operation::of(sql).as_str(), op, "{sql}");
        }
    }

    #[test]
    fn anything_else_is_other() {
        for sql in [
            "",
            "   ",
            "SELEC 1",
            "pg_sleep(1)",
            "$1",
            "IMPORT FOREIGN SCHEMA x",
            "selectivity",
        ] {
            assert_eq!(Operation::of(sql).as_str(), "other", "{sql:?}");
        }
        assert!(OPERATIONS.iter().all(|o| o.len() <= 10));
    }
}
