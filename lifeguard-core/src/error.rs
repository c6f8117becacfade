//! The one error type of Lifeguard, with kinds a caller can match.
//!
//! Server errors keep every field PostgreSQL sent ([`DbError`]); the common constraint
//! violations and the retryable conflicts get variants of their own so that callers match on
//! a kind instead of parsing a message.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

/// A `Result` whose error is Lifeguard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure Lifeguard reports.
///
/// ```
/// use lifeguard_core::Error;
///
/// fn describe(e: &Error) -> &'static str {
///     match e {
///         Error::UniqueViolation { .. } => "already exists",
///         e if e.is_retryable() => "try again",
///         _ => "failed",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// SQLSTATE 23505: a unique or primary-key constraint was violated.
    UniqueViolation {
        /// The constraint the server named, when it named one.
        constraint: Option<String>,
        /// Every field of the server's error.
        db: Box<DbError>,
    },
    /// SQLSTATE 23503: a foreign-key constraint was violated.
    ForeignKeyViolation {
        /// The constraint the server named, when it named one.
        constraint: Option<String>,
        /// Every field of the server's error.
        db: Box<DbError>,
    },
    /// SQLSTATE 23502: a NULL went into a NOT NULL column.
    NotNullViolation {
        /// The column the server named, when it named one.
        column: Option<String>,
        /// Every field of the server's error.
        db: Box<DbError>,
    },
    /// SQLSTATE 23514: a CHECK constraint was violated.
    CheckViolation {
        /// The constraint the server named, when it named one.
        constraint: Option<String>,
        /// Every field of the server's error.
        db: Box<DbError>,
    },
    /// SQLSTATE 40001: the transaction could not be serialized; retrying it may succeed.
    SerializationFailure(Box<DbError>),
    /// SQLSTATE 40P01: the transaction was chosen as a deadlock victim; retrying it may succeed.
    Deadlock(Box<DbError>),
    /// Any other error the server reported.
    Db(Box<DbError>),
    /// A query expected a row and found none.
    NotFound,
    /// A query expected at most one row and found this many.
    TooManyRows(usize),
    /// No connection could be had from a pool within its acquire timeout.
    PoolTimeout(Duration),
    /// A call passed its deadline; the server-side statement was cancelled.
    Timeout(Duration),
    /// A value could not be converted between a column and a Rust type.
    Decode {
        /// The column's name (or index, when it has no name).
        column: String,
        /// The Rust type asked for.
        rust_type: &'static str,
        /// The PostgreSQL type of the column.
        pg_type: String,
        /// Why the conversion failed.
        reason: String,
    },
    /// A parameter could not be encoded for its PostgreSQL type.
    Encode {
        /// The 0-based index of the parameter.
        index: usize,
        /// The PostgreSQL type the server expects.
        pg_type: String,
        /// Why the conversion failed.
        reason: String,
    },
    /// The connection failed or was lost; the statement's outcome may be unknown.
    Connection(Arc<ConnectionError>),
    /// A server cannot be used now (its circuit is open after connect failures, or the
    /// primary is down); fails fast instead of waiting.
    Unavailable {
        /// The server, `host:port`.
        node: String,
        /// Why it is unavailable.
        reason: String,
    },
    /// No server may serve this read under its read preference, staleness bound and
    /// consistency token (or the primary's fallback budget is spent).
    NoEligibleNode(String),
    /// The connection was lost after a write or `COMMIT` was sent: it may or may not have
    /// committed, so it is never retried automatically.
    CommitOutcomeUnknown(Arc<ConnectionError>),
    /// A configuration value is missing or malformed.
    Config(String),
    /// The server sent something the protocol does not allow at that point.
    Protocol(String),
    /// A record's validator rejected it before any SQL was sent; lists each field and why.
    Validation(crate::model::ValidationErrors),
}

/// Why a connection could not be opened, or why it broke.
#[derive(Debug)]
pub struct ConnectionError {
    /// What was being attempted, e.g. `connect to 127.0.0.1:5432`.
    pub context: String,
    /// The I/O error underneath, when there was one.
    pub source: Option<io::Error>,
    /// The request never left this process (the connection was already broken), so it
    /// certainly did not run and may be retried elsewhere.
    pub unsent: bool,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Every field of a PostgreSQL `ErrorResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// `ERROR`, `FATAL` or `PANIC` (localized in the server's language).
    pub severity: String,
    /// The five-character SQLSTATE, e.g. `23505`.
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

impl Error {
    /// Classifies a server error by its SQLSTATE.
    pub fn from_db(db: DbError) -> Error {
        let db = Box::new(db);
        match db.code.as_str() {
            "23505" => Error::UniqueViolation {
                constraint: db.constraint.clone(),
                db,
            },
            "23503" => Error::ForeignKeyViolation {
                constraint: db.constraint.clone(),
                db,
            },
            "23502" => Error::NotNullViolation {
                column: db.column.clone(),
                db,
            },
            "23514" => Error::CheckViolation {
                constraint: db.constraint.clone(),
                db,
            },
            "40001" => Error::SerializationFailure(db),
            "40P01" => Error::Deadlock(db),
            _ => Error::Db(db),
        }
    }

    /// A connection error with context and an optional I/O cause.
    pub fn connection(context: impl Into<String>, source: Option<io::Error>) -> Error {
        Error::Connection(Arc::new(ConnectionError {
            context: context.into(),
            source,
            unsent: false,
        }))
    }

    /// A request refused because its connection had already failed: it was never sent.
    pub(crate) fn unsent(cause: &Error) -> Error {
        Error::Connection(Arc::new(ConnectionError {
            context: format!("the connection had already failed ({cause})"),
            source: None,
            unsent: true,
        }))
    }

    /// Whether the request certainly never reached the server.
    pub fn is_unsent(&self) -> bool {
        matches!(self, Error::Connection(c) if c.unsent)
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::Config(message.into())
    }

    /// A protocol violation by the server (or a corrupt stream).
    pub fn protocol(message: impl Into<String>) -> Error {
        Error::Protocol(message.into())
    }

    /// The server's error, whatever its kind.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::UniqueViolation { db, .. }
            | Error::ForeignKeyViolation { db, .. }
            | Error::NotNullViolation { db, .. }
            | Error::CheckViolation { db, .. }
            | Error::SerializationFailure(db)
            | Error::Deadlock(db)
            | Error::Db(db) => Some(db),
            _ => None,
        }
    }

    /// The SQLSTATE the server sent, if this error came from the server.
    pub fn sqlstate(&self) -> Option<&str> {
        self.db_error().map(|db| db.code.as_str())
    }

    /// The constraint the server named, if any.
    pub fn constraint(&self) -> Option<&str> {
        self.db_error().and_then(|db| db.constraint.as_deref())
    }

    /// Whether running the same transaction again may succeed (serialization failure or
    /// deadlock). Connection errors are not retryable: a commit's outcome may be unknown.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::SerializationFailure(_) | Error::Deadlock(_))
    }

    /// Whether the connection this error came from is unusable.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UniqueViolation { db, .. }
            | Error::ForeignKeyViolation { db, .. }
            | Error::NotNullViolation { db, .. }
            | Error::CheckViolation { db, .. } => write!(f, "constraint violation: {db}"),
            Error::SerializationFailure(db) => write!(f, "serialization failure: {db}"),
            Error::Deadlock(db) => write!(f, "deadlock detected: {db}"),
            Error::Db(db) => write!(f, "database error: {db}"),
            Error::NotFound => f.write_str("no row found"),
            Error::TooManyRows(n) => write!(f, "expected at most one row, found {n}"),
            Error::PoolTimeout(d) => write!(f, "no connection available within {d:?}"),
            Error::Timeout(d) => write!(f, "deadline of {d:?} passed; statement cancelled"),
            Error::Decode {
                column,
                rust_type,
                pg_type,
                reason,
            } => write!(
                f,
                "cannot decode column `{column}` of type {pg_type} into {rust_type}: {reason}"
            ),
            Error::Encode {
                index,
                pg_type,
                reason,
            } => write!(
                f,
                "cannot encode parameter ${} as {pg_type}: {reason}",
                index + 1
            ),
            Error::Connection(e) => write!(f, "connection error: {e}"),
            Error::Unavailable { node, reason } => write!(f, "{node} is unavailable: {reason}"),
            Error::NoEligibleNode(why) => write!(f, "no server may serve this read: {why}"),
            Error::CommitOutcomeUnknown(e) => {
                write!(
                    f,
                    "connection lost after the write was sent; it may have committed: {e}"
                )
            }
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Validation(errors) => write!(f, "validation failed: {errors}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection(e) | Error::CommitOutcomeUnknown(e) => Some(&**e),
            other => other.db_error().map(|db| db as _),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str, constraint: Option<&str>) -> DbError {
        DbError {
            severity: "ERROR".into(),
            code: code.into(),
            message: "boom".into(),
            constraint: constraint.map(Into::into),
            ..DbError::default()
        }
    }

    #[test]
    fn classifies_by_sqlstate() {
        let e = Error::from_db(db("23505", Some("users_email_key")));
        assert!(
            matches!(&e, Error::UniqueViolation { constraint: Some(c), .. } if c == "users_email_key")
        );
        assert_eq!(e.sqlstate(), Some("23505"));
        assert_eq!(e.constraint(), Some("users_email_key"));
        assert!(Error::from_db(db("40001", None)).is_retryable());
        assert!(Error::from_db(db("40P01", None)).is_retryable());
        assert!(matches!(Error::from_db(db("42P01", None)), Error::Db(_)));
        assert!(!Error::connection("x", None).is_retryable());
    }
}
