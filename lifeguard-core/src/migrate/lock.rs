//! The migration lock: a session-level advisory lock, taken by polling and always released.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::error::{Error, MigrateError, MigrateErrorKind, Result};
use crate::pg::Connection;
use crate::Executor;

/// How long a migrator waits for another one's lock unless told otherwise: long enough for
/// a rolling deploy's other instances to wait out a schema change, short enough that a
/// migrator stuck behind a forgotten session fails the deploy instead of hanging it.
pub(super) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How often a waiting migrator asks for the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Runs `f` holding the advisory lock `key`, waited for at most `timeout`; unlocks after
/// it, also on error or panic.
pub(super) fn holding<T>(
    conn: &Connection,
    key: i64,
    timeout: Duration,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    take(conn, key, timeout)?;
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)));
    let unlocked = conn.execute("SELECT pg_advisory_unlock($1)", &[&key]);
    if let Err(e) = unlocked {
        // Only a broken session fails here, and the server drops its locks with it.
        tracing::warn!(target: "lifeguard::migrate", "pg_advisory_unlock({key}) failed: {e}");
    }
    match result {
        Err(panic) => resume_unwind(panic),
        Ok(result) => result,
    }
}

/// Takes the lock by polling `pg_try_advisory_lock`, so that no statement waits on it and a
/// session `statement_timeout` never cuts the wait short.
fn take(conn: &Connection, key: i64, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        let got: bool = conn
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
            .try_get(0)?;
        if got {
            return Ok(());
        }
        if !logged {
            logged = true;
            tracing::info!(target: "lifeguard::migrate", "waiting for the migration lock ({key}): another migrator holds it");
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(Error::Migrate(MigrateError::new(
                MigrateErrorKind::LockTimeout,
                format!(
                    "another migrator held the migration lock ({key}) for longer than the lock \
                     timeout ({timeout:?}; raise it with Migrator::lock_timeout)"
                ),
            )));
        }
        may::coroutine::sleep((timeout - waited).min(POLL));
    }
}
