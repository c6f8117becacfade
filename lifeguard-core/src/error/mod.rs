//! The one error type of Lifeguard, with kinds a caller can match.
//!
//! Server errors keep every field PostgreSQL sent ([`DbError`]); the common constraint
//! violations and the retryable conflicts get variants of their own so that callers match on
//! a kind instead of parsing a message.

mod db;
mod migrate;
mod redis;
mod validation;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use db::{DbError, SqlState};
pub use migrate::{MigrateError, MigrateErrorKind};
pub use redis::{RedisError, RedisErrorKind};
pub use validation::{FieldError, ValidationErrors};

/// The error underneath another, shared so that [`Error`] stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

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
    /// The pool was closed ([`Pool::close`](crate::pool::Pool::close)); nothing more runs
    /// on it.
    PoolClosed,
    /// A row has no column of this name, or no column at this index.
    ColumnNotFound {
        /// The name or index asked for.
        column: String,
    },
    /// A column's value could not be converted into the Rust type asked for.
    Decode {
        /// The column's name (`#index` when it has none).
        column: String,
        /// The Rust type asked for.
        rust_type: &'static str,
        /// The PostgreSQL type of the column.
        pg_type: String,
        /// The conversion's own error; `None` when the types are not compatible at all
        /// (the Rust type does not accept the column's type, or the value is NULL and the
        /// Rust type is not an `Option`).
        source: Option<Cause>,
    },
    /// A parameter could not be encoded as the PostgreSQL type the statement expects.
    Encode {
        /// The 0-based index of the parameter (it is `$index+1` in the SQL).
        index: usize,
        /// The PostgreSQL type the server expects.
        pg_type: String,
        /// The conversion's own error.
        source: Cause,
    },
    /// A statement (or a binary COPY row) was given a different number of values than it
    /// takes.
    ParameterCount {
        /// How many it takes.
        expected: usize,
        /// How many were given.
        given: usize,
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
    /// A configuration value is missing or malformed (a connection string, a pool or
    /// service setting, an environment variable).
    Config(String),
    /// An API was used in a way it does not allow: a record without its primary key, a
    /// bulk statement without rows or columns, an invalid channel name, a COPY statement
    /// given to the wrong method. Nothing was sent to the server.
    InvalidUse(String),
    /// A migration was refused or failed.
    Migrate(MigrateError),
    /// A Redis call failed (the cache falls back to PostgreSQL instead of returning it).
    Redis(RedisError),
    /// The server sent something the protocol does not allow at that point.
    Protocol(String),
    /// TLS could not be set up as the settings demand: the server has no TLS under
    /// `sslmode=require`, its certificate does not chain to the trusted roots, names another
    /// host or has expired, the handshake failed, or a certificate file could not be read.
    /// The message names the cause.
    Tls(String),
    /// A record's validator rejected it before any SQL was sent; lists each field and why.
    Validation(ValidationErrors),
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

impl Error {
    /// Classifies a server error by its SQLSTATE.
    pub fn from_db(db: DbError) -> Error {
        let db = Box::new(db);
        match db.code.as_str() {
            SqlState::UNIQUE_VIOLATION => Error::UniqueViolation {
                constraint: db.constraint.clone(),
                db,
            },
            SqlState::FOREIGN_KEY_VIOLATION => Error::ForeignKeyViolation {
                constraint: db.constraint.clone(),
                db,
            },
            SqlState::NOT_NULL_VIOLATION => Error::NotNullViolation {
                column: db.column.clone(),
                db,
            },
            SqlState::CHECK_VIOLATION => Error::CheckViolation {
                constraint: db.constraint.clone(),
                db,
            },
            SqlState::T_R_SERIALIZATION_FAILURE => Error::SerializationFailure(db),
            SqlState::T_R_DEADLOCK_DETECTED => Error::Deadlock(db),
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

    /// A use the API does not allow ([`Error::InvalidUse`]).
    pub fn invalid_use(message: impl Into<String>) -> Error {
        Error::InvalidUse(message.into())
    }

    /// A protocol violation by the server (or a corrupt stream).
    pub fn protocol(message: impl Into<String>) -> Error {
        Error::Protocol(message.into())
    }

    /// An [`Error::Tls`] with this message.
    pub fn tls(message: impl Into<String>) -> Error {
        Error::Tls(message.into())
    }

    /// The server's error, whatever its kind; for a failed migration
    /// ([`MigrateErrorKind::Failed`]), the server's error that made it fail.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::UniqueViolation { db, .. }
            | Error::ForeignKeyViolation { db, .. }
            | Error::NotNullViolation { db, .. }
            | Error::CheckViolation { db, .. }
            | Error::SerializationFailure(db)
            | Error::Deadlock(db)
            | Error::Db(db) => Some(db),
            Error::Migrate(MigrateError {
                source: Some(cause),
                ..
            }) => cause.downcast_ref::<Error>().and_then(Error::db_error),
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
            Error::PoolClosed => f.write_str("the pool is closed"),
            Error::ColumnNotFound { column } => write!(f, "no column `{column}` in the row"),
            Error::Decode {
                column,
                rust_type,
                pg_type,
                source,
            } => {
                write!(
                    f,
                    "cannot decode column `{column}` of type {pg_type} into {rust_type}: "
                )?;
                match source {
                    Some(e) => write!(f, "{e}"),
                    None => f.write_str("the types are not compatible"),
                }
            }
            Error::Encode {
                index,
                pg_type,
                source,
            } => write!(
                f,
                "cannot encode parameter ${} as {pg_type}: {source}",
                index + 1
            ),
            Error::ParameterCount { expected, given } => {
                write!(f, "{given} values given where {expected} are expected")
            }
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
            Error::InvalidUse(m) => write!(f, "invalid use: {m}"),
            Error::Migrate(e) => write!(f, "migration error: {e}"),
            Error::Redis(e) => write!(f, "redis error: {e}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Tls(m) => write!(f, "TLS: {m}"),
            Error::Validation(errors) => write!(f, "validation failed: {errors}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection(e) | Error::CommitOutcomeUnknown(e) => Some(&**e),
            Error::Decode {
                source: Some(e), ..
            }
            | Error::Encode { source: e, .. } => Some(&**e),
            Error::Migrate(e) => Some(e),
            Error::Redis(e) => Some(e),
            Error::Validation(e) => Some(e),
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
        let e = Error::from_db(db(SqlState::UNIQUE_VIOLATION, Some("users_email_key")));
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

    #[test]
    fn a_failed_migration_shows_the_server_error_underneath() {
        let unique = Error::from_db(db(SqlState::UNIQUE_VIOLATION, Some("users_email_key")));
        let failed = Error::Migrate(
            MigrateError::new(MigrateErrorKind::Failed, "applying migration 2 (seed)")
                .version(2)
                .caused_by(unique),
        );
        assert_eq!(failed.sqlstate(), Some("23505"));
        assert_eq!(failed.constraint(), Some("users_email_key"));
        let io = Error::Migrate(
            MigrateError::new(MigrateErrorKind::Source, "cannot read migration 1_a.sql")
                .caused_by(io::Error::from(io::ErrorKind::NotFound)),
        );
        assert_eq!(io.db_error(), None);
    }
}
