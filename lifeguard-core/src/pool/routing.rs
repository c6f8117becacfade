//! Read preferences and the classification of statements into reads and writes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::functions::calls_unknown_function;
use super::token::ConsistencyToken;
use crate::error::{Error, Result};

/// Where a read may run (the MongoDB vocabulary; spec §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPreference {
    /// Only the primary.
    Primary,
    /// The primary; a replica when the primary is unavailable.
    PrimaryPreferred,
    /// Only a replica; an error when none is eligible.
    Replica,
    /// A replica; the primary (within its fallback budget) when none is eligible.
    #[default]
    ReplicaPreferred,
    /// The least loaded eligible server, primary included.
    Nearest,
}

impl ReadPreference {
    /// The header and metric spelling (`replica-preferred`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPreference::Primary => "primary",
            ReadPreference::PrimaryPreferred => "primary-preferred",
            ReadPreference::Replica => "replica",
            ReadPreference::ReplicaPreferred => "replica-preferred",
            ReadPreference::Nearest => "nearest",
        }
    }
}

impl fmt::Display for ReadPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReadPreference {
    type Err = Error;

    /// Parses the spellings of `Lifeguard-Read-Preference` (case-insensitive).
    fn from_str(s: &str) -> Result<ReadPreference> {
        let all = [
            ReadPreference::Primary,
            ReadPreference::PrimaryPreferred,
            ReadPreference::Replica,
            ReadPreference::ReplicaPreferred,
            ReadPreference::Nearest,
        ];
        all.into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown read preference {s:?}; expected primary, primary-preferred, replica, replica-preferred or nearest"
                ))
            })
    }
}

/// How one read (or one handle's reads) should be routed.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::pool::{ReadOptions, ReadPreference};
///
/// let opts = ReadOptions::new(ReadPreference::Replica).max_staleness(Duration::from_millis(500));
/// assert_eq!(opts.preference, ReadPreference::Replica);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    /// Where the read may run.
    pub preference: ReadPreference,
    /// The most staleness accepted; `None` takes the pool's default.
    pub max_staleness: Option<Duration>,
    /// Read at least this fresh (read-your-writes).
    pub min_lsn: Option<ConsistencyToken>,
    /// How long to wait for a replica to reach `min_lsn`; `None` takes the pool's default.
    pub lsn_wait: Option<Duration>,
}

impl ReadOptions {
    /// Options with this preference and the pool's defaults for the rest.
    pub fn new(preference: ReadPreference) -> ReadOptions {
        ReadOptions {
            preference,
            ..ReadOptions::default()
        }
    }

    /// Sets the staleness bound.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = Some(bound);
        self
    }

    /// Requires the read to see at least this commit (merged with any token already set).
    pub fn min_lsn(mut self, token: ConsistencyToken) -> Self {
        self.min_lsn = Some(match self.min_lsn {
            Some(t) => t.merge(&token),
            None => token,
        });
        self
    }

    /// Sets how long a read may wait for a replica to reach `min_lsn`.
    pub fn lsn_wait(mut self, wait: Duration) -> Self {
        self.lsn_wait = Some(wait);
        self
    }
}

/// What a statement is, for routing and for span names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatementKind {
    pub(crate) read_only: bool,
    pub(crate) operation: &'static str,
}

/// Classifies SQL by its leading keyword. Anything not provably a plain read is a write and
/// goes to the primary: a wrong "write" only costs a replica, a wrong "read" would fail or,
/// retried, run twice. A read calls no function that may write
/// ([`declare_read_only_functions`](super::declare_read_only_functions)).
pub(crate) fn classify(sql: &str) -> StatementKind {
    let head = skip_noise(sql);
    let end = head
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(head.len());
    let mut upper = [0u8; 8];
    let word = &head.as_bytes()[..end];
    let word = if word.len() <= upper.len() {
        upper[..word.len()].copy_from_slice(word);
        upper[..word.len()].make_ascii_uppercase();
        std::str::from_utf8(&upper[..word.len()]).unwrap_or("")
    } else {
        ""
    };
    let operation = match word {
        "SELECT" => "SELECT",
        "WITH" => "WITH",
        "VALUES" => "VALUES",
        "TABLE" => "TABLE",
        "SHOW" => "SHOW",
        "INSERT" => "INSERT",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "MERGE" => "MERGE",
        "BEGIN" | "START" => "BEGIN",
        "COMMIT" | "END" => "COMMIT",
        "ROLLBACK" | "ABORT" => "ROLLBACK",
        "COPY" => "COPY",
        "CALL" => "CALL",
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "GRANT" | "REVOKE" | "COMMENT" => "DDL",
        _ => "OTHER",
    };
    let plain_read = matches!(operation, "SELECT" | "WITH" | "VALUES" | "TABLE" | "SHOW");
    let read_only = plain_read && !writes_or_locks(sql) && !calls_unknown_function(sql);
    StatementKind {
        read_only,
        operation,
    }
}

/// Skips whitespace, comments and opening parentheses before the first keyword.
pub(super) fn skip_noise(mut s: &str) -> &str {
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(rest) = t.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = t.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return t;
        }
    }
}

/// Whether a read-looking statement writes (data-modifying CTE, `SELECT INTO`) or takes row
/// locks (`FOR UPDATE` and friends), which need the primary. Runs on every pooled read, so
/// it scans words in place instead of building an uppercase copy.
fn writes_or_locks(sql: &str) -> bool {
    // Runs on every pooled call, so words are compared only when their length and first
    // letter could make them one of the keywords.
    let mut words = sql
        .as_bytes()
        .split(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .filter(|w| (2..=7).contains(&w.len()))
        .filter(|w| {
            matches!(
                w[0].to_ascii_uppercase(),
                b'I' | b'U' | b'D' | b'M' | b'N' | b'S' | b'F' | b'K'
            )
        })
        .peekable();
    while let Some(w) = words.next() {
        let is = |k: &str| w.eq_ignore_ascii_case(k.as_bytes());
        if ["INSERT", "UPDATE", "DELETE", "MERGE", "INTO"]
            .iter()
            .any(|k| is(k))
        {
            return true;
        }
        if is("FOR") {
            if let Some(next) = words.peek() {
                if ["UPDATE", "SHARE", "NO", "KEY"]
                    .iter()
                    .any(|k| next.eq_ignore_ascii_case(k.as_bytes()))
                {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_reads_and_writes() {
        for read in [
            "SELECT 1",
            "  select * from t where id = $1",
            "-- note\nSELECT 1",
            "/* hint */ (SELECT 1)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "SHOW server_version",
        ] {
            assert!(classify(read).read_only, "{read}");
        }
        for write in [
            "INSERT INTO t VALUES (1)",
            "update t set a = 1",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT * INTO copy FROM t",
            "SELECT nextval('s')",
            "CREATE TABLE t (a int)",
            "VACUUM",
        ] {
            assert!(!classify(write).read_only, "{write}");
        }
        assert_eq!(classify("delete from t").operation, "DELETE");
    }

    #[test]
    fn parses_header_spellings() {
        assert_eq!(
            "Replica-Preferred".parse::<ReadPreference>().unwrap(),
            ReadPreference::ReplicaPreferred
        );
        assert!("secondary".parse::<ReadPreference>().is_err());
    }
}
