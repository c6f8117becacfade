//! The server's side of an error: every field of an `ErrorResponse`, and the SQLSTATE
//! codes Lifeguard acts on, by name.

use std::fmt;
use std::io;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

/// SQLSTATE codes by name, for comparing with [`DbError::code`] or
/// [`Error::sqlstate`](super::Error::sqlstate) (the codes Lifeguard itself acts on, and the
/// classes callers match most).
///
/// ```
/// use lifeguard_core::{Error, SqlState};
///
/// fn is_missing_table(e: &Error) -> bool {
///     e.sqlstate() == Some(SqlState::UNDEFINED_TABLE)
/// }
/// # let _ = is_missing_table;
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SqlState;

impl SqlState {
    /// `0A000`: the feature is not supported (also: a cached plan whose result type changed).
    pub const FEATURE_NOT_SUPPORTED: &'static str = "0A000";
    /// `23502`: a NULL went into a NOT NULL column.
    pub const NOT_NULL_VIOLATION: &'static str = "23502";
    /// `23503`: a foreign-key constraint was violated.
    pub const FOREIGN_KEY_VIOLATION: &'static str = "23503";
    /// `23505`: a unique or primary-key constraint was violated.
    pub const UNIQUE_VIOLATION: &'static str = "23505";
    /// `23514`: a CHECK constraint was violated.
    pub const CHECK_VIOLATION: &'static str = "23514";
    /// `25P02`: a statement was sent in a transaction that has already failed.
    pub const IN_FAILED_SQL_TRANSACTION: &'static str = "25P02";
    /// `26000`: the named prepared statement does not exist.
    pub const INVALID_SQL_STATEMENT_NAME: &'static str = "26000";
    /// `28P01`: the password was wrong.
    pub const INVALID_PASSWORD: &'static str = "28P01";
    /// `40001`: the transaction could not be serialized (retryable).
    pub const T_R_SERIALIZATION_FAILURE: &'static str = "40001";
    /// `40P01`: the transaction was a deadlock victim (retryable).
    pub const T_R_DEADLOCK_DETECTED: &'static str = "40P01";
    /// `42P01`: the table does not exist.
    pub const UNDEFINED_TABLE: &'static str = "42P01";
    /// `55P03`: a lock could not be taken (`NOWAIT`, `lock_timeout`).
    pub const LOCK_NOT_AVAILABLE: &'static str = "55P03";
    /// `57014`: the statement was cancelled (`statement_timeout`, a `CancelRequest`).
    pub const QUERY_CANCELED: &'static str = "57014";
}

/// Every field of a PostgreSQL `ErrorResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// `ERROR`, `FATAL` or `PANIC` (localized in the server's language).
    pub severity: String,
    /// The five-character SQLSTATE, e.g. `23505` ([`SqlState`] names the common ones).
    pub code: String,
    /// The primary human-readable message.
    pub message: String,
    /// An optional secondary message with more detail.
    pub detail: Option<String>,
    /// An optional suggestion what to do about the problem.
    pub hint: Option<String>,
    /// The 1-based character offset into the query text where the error occurred.
    pub position: Option<u32>,
    /// The call stack context (PL/pgSQL functions, SQL functions).
    pub where_: Option<String>,
    /// The schema of the object involved.
    pub schema: Option<String>,
    /// The table involved.
    pub table: Option<String>,
    /// The column involved.
    pub column: Option<String>,
    /// The data type involved.
    pub datatype: Option<String>,
    /// The constraint involved.
    pub constraint: Option<String>,
    /// The server source file that reported the error.
    pub file: Option<String>,
    /// The server source line that reported the error.
    pub line: Option<u32>,
    /// The server routine that reported the error.
    pub routine: Option<String>,
}

impl DbError {
    /// Decodes the fields of an `ErrorResponse` or `NoticeResponse`.
    ///
    /// Field values that are not UTF-8 are decoded lossily rather than rejected: losing a
    /// server error because of its encoding would be worse than a replacement character.
    pub(crate) fn parse(mut fields: ErrorFields<'_>) -> io::Result<DbError> {
        let mut e = DbError::default();
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => e.severity = value,
                b'S' if e.severity.is_empty() => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = value.parse().ok(),
                b'W' => e.where_ = Some(value),
                b's' => e.schema = Some(value),
                b't' => e.table = Some(value),
                b'c' => e.column = Some(value),
                b'd' => e.datatype = Some(value),
                b'n' => e.constraint = Some(value),
                b'F' => e.file = Some(value),
                b'L' => e.line = value.parse().ok(),
                b'R' => e.routine = Some(value),
                _ => {}
            }
        }
        Ok(e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}
