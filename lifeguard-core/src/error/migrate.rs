//! Why a migration run was refused or failed.

use std::fmt;

use super::Cause;

/// What kind of migration problem [`MigrateError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrateErrorKind {
    /// A migration file or directory could not be read, or is malformed (its name, its
    /// markers); the I/O error, if any, is the source.
    Source,
    /// The list of migrations is invalid (a repeated version, an empty name).
    InvalidList,
    /// An applied migration's checksum no longer matches its source.
    Changed,
    /// The database has applied migrations the code does not know.
    Unknown,
    /// A pending migration is older than the newest applied one.
    OutOfOrder,
    /// A revert was asked of a migration that has no down step.
    Irreversible,
    /// Another migrator held the advisory lock for longer than
    /// [`Migrator::lock_timeout`](crate::migrate::Migrator::lock_timeout); nothing was done.
    LockTimeout,
    /// A migration's SQL or code failed; the error it returned is the source, and the
    /// migration's transaction was rolled back.
    Failed,
}

/// A migration problem: its kind, which migration it concerns, a message naming it, and
/// the error underneath when there was one.
///
/// ```
/// use lifeguard_core::error::{MigrateError, MigrateErrorKind};
///
/// let e = MigrateError::new(MigrateErrorKind::Irreversible, "cannot revert migration 2 (u)")
///     .version(2);
/// assert_eq!(e.kind, MigrateErrorKind::Irreversible);
/// assert_eq!(e.to_string(), "cannot revert migration 2 (u)");
/// ```
#[derive(Debug, Clone)]
pub struct MigrateError {
    /// What went wrong.
    pub kind: MigrateErrorKind,
    /// The migration concerned, when one is.
    pub version: Option<i64>,
    /// A message naming the migration, file or versions involved.
    pub message: String,
    /// The error underneath (an I/O error, or the error a migration returned).
    pub source: Option<Cause>,
}

impl MigrateError {
    /// A problem of `kind`, described by `message`.
    pub fn new(kind: MigrateErrorKind, message: impl Into<String>) -> MigrateError {
        MigrateError {
            kind,
            version: None,
            message: message.into(),
            source: None,
        }
    }

    /// The same, about migration `version`.
    pub fn version(mut self, version: i64) -> MigrateError {
        self.version = Some(version);
        self
    }

    /// The same, caused by `source`.
    pub fn caused_by(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> MigrateError {
        self.source = Some(std::sync::Arc::new(source));
        self
    }
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
