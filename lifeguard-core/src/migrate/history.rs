//! What the [`Migrator`](super::Migrator) reports: the migrations a run applied or
//! reverted, and where each migration stands.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A migration that was applied or reverted, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// The time its up (or down) step took, tracking row included.
    pub duration: Duration,
}

impl fmt::Display for MigrationRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({} ms)",
            self.version,
            self.name,
            self.duration.as_millis()
        )
    }
}

/// Where one migration stands, from [`Migrator::status`](super::Migrator::status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    /// Known to the code, not applied.
    Pending,
    /// Applied, with the checksum the code has.
    Applied,
    /// Applied, but the code's checksum differs: the migration was edited afterwards.
    Changed,
    /// Applied, but unknown to the code.
    Unknown,
}

impl MigrationState {
    /// `pending`, `applied`, `CHANGED` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Pending => "pending",
            MigrationState::Applied => "applied",
            MigrationState::Changed => "CHANGED",
            MigrationState::Unknown => "unknown",
        }
    }
}

/// One row of [`Migrator::status`](super::Migrator::status): every migration the code or
/// the database knows, by version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The version.
    pub version: i64,
    /// The name (the code's, else the one recorded when it was applied).
    pub name: String,
    /// When it was applied, if it was.
    pub applied_at: Option<DateTime<Utc>>,
    /// How long applying it took, if it was applied.
    pub duration_ms: Option<i64>,
    /// `false` only when it was applied and the code's checksum differs from the recorded one.
    pub checksum_ok: bool,
    /// Whether the code knows this migration (`false`: only the database does).
    pub known: bool,
}

impl MigrationStatus {
    /// Whether it is applied.
    pub fn is_applied(&self) -> bool {
        self.applied_at.is_some()
    }

    /// Pending, applied, changed or unknown.
    pub fn state(&self) -> MigrationState {
        match (self.is_applied(), self.known, self.checksum_ok) {
            (false, _, _) => MigrationState::Pending,
            (true, false, _) => MigrationState::Unknown,
            (true, true, false) => MigrationState::Changed,
            (true, true, true) => MigrationState::Applied,
        }
    }
}

impl fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.version,
            self.name,
            self.state().as_str()
        )?;
        if let Some(at) = self.applied_at {
            write!(f, " at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        Ok(())
    }
}
