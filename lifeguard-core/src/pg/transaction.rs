//! Transactions and savepoints on an exclusively borrowed connection.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
#[cfg(feature = "cache")]
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::call::Call;
use super::connection::{impl_executor, Connection, Timed, TransactionStatus};
use crate::error::{DbError, Error, Result, SqlState};

/// The isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED` (PostgreSQL runs it as `READ COMMITTED`).
    ReadUncommitted,
    /// `READ COMMITTED`, the server default.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }
}

/// Options for a transaction; start it with [`TransactionBuilder::begin`] or run a closure in
/// it with [`TransactionBuilder::run`].
///
/// ```no_run
/// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
/// use lifeguard_core::pg::IsolationLevel;
/// use lifeguard_core::Executor;
///
/// let total: i64 = conn
///     .build_transaction()
///     .isolation_level(IsolationLevel::Serializable)
///     .retry_conflicts(3)
///     .run(|tx| tx.query_one("SELECT count(*) FROM pg_class", &[])?.try_get(0))?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until begin or run"]
pub struct TransactionBuilder<'a> {
    /// Borrowed shared, but the constructor guarantees nobody else uses the session: either
    /// it came from `&mut Connection`, or from a pool lease that owns the connection.
    conn: &'a Connection,
    isolation: Option<IsolationLevel>,
    read_only: Option<bool>,
    deferrable: Option<bool>,
    attempts: u32,
    /// When the statements inside must have finished, and the budget it came from.
    deadline: Option<(Instant, Duration)>,
    /// Where the transaction's ORM writes are forgotten when it ends.
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::Cache>,
}

impl<'a> TransactionBuilder<'a> {
    /// Options for a transaction on a session the caller holds exclusively.
    pub(crate) fn exclusive(conn: &'a Connection) -> TransactionBuilder<'a> {
        TransactionBuilder {
            conn,
            isolation: None,
            read_only: None,
            deferrable: None,
            attempts: 1,
            deadline: None,
            #[cfg(feature = "cache")]
            cache: None,
        }
    }

    /// Forgets the transaction's ORM writes of cached models in `cache` when it ends.
    #[cfg(feature = "cache")]
    pub(crate) fn with_cache(mut self, cache: Option<crate::cache::Cache>) -> Self {
        self.cache = cache;
        self
    }

    /// What the transaction forgets its writes in.
    fn forget(&self) -> Forget {
        Forget {
            #[cfg(feature = "cache")]
            into: self
                .cache
                .clone()
                .map(|cache| (cache, Arc::new(Mutex::new(Vec::new())))),
        }
    }

    /// Sets the isolation level.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation = Some(level);
        self
    }

    /// Makes the transaction `READ ONLY` (or explicitly `READ WRITE`).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = Some(read_only);
        self
    }

    /// Makes the transaction `DEFERRABLE` (meaningful for serializable read-only ones).
    pub fn deferrable(mut self, deferrable: bool) -> Self {
        self.deferrable = Some(deferrable);
        self
    }

    /// With [`TransactionBuilder::run`], runs the closure again (up to `attempts` times in
    /// all) when the transaction fails with a serialization failure or a deadlock.
    pub fn retry_conflicts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Bounds the statements inside the transaction (every attempt of
    /// [`TransactionBuilder::retry_conflicts`] included, savepoints too) to `timeout` from
    /// now: a statement still running then is cancelled and fails with `Error::Timeout`, so
    /// the closure's error rolls the transaction back. `BEGIN`, `COMMIT`, `ROLLBACK` and
    /// savepoint commands are not cut short, so the deadline never leaves a commit's
    /// outcome unknown.
    ///
    /// ```no_run
    /// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// use std::time::Duration;
    /// use lifeguard_core::Executor;
    ///
    /// conn.build_transaction()
    ///     .timeout(Duration::from_millis(200))
    ///     .run(|tx| tx.execute("UPDATE account SET balance = balance - 10 WHERE id = 1", &[]))?;
    /// # Ok(()) }
    /// ```
    pub fn timeout(self, timeout: Duration) -> Self {
        self.until(Instant::now() + timeout, timeout)
    }

    /// As [`TransactionBuilder::timeout`], ending at `at`; a timeout reports `budget`.
    pub(crate) fn until(mut self, at: Instant, budget: Duration) -> Self {
        self.deadline = Some((at, budget));
        self
    }

    fn begin_sql(&self) -> String {
        let mut sql = String::from("BEGIN");
        let mut modes = Vec::new();
        if let Some(level) = self.isolation {
            modes.push(format!("ISOLATION LEVEL {}", level.sql()));
        }
        if let Some(ro) = self.read_only {
            modes.push(if ro { "READ ONLY" } else { "READ WRITE" }.to_owned());
        }
        if let Some(d) = self.deferrable {
            modes.push(if d { "DEFERRABLE" } else { "NOT DEFERRABLE" }.to_owned());
        }
        if !modes.is_empty() {
            sql.push(' ');
            sql.push_str(&modes.join(", "));
        }
        sql
    }

    /// Starts the transaction; it rolls back when dropped without a commit.
    pub fn begin(self) -> Result<Transaction<'a>> {
        let sql = self.begin_sql();
        Transaction::start(self.conn, &sql, self.deadline, self.forget())
    }

    /// Runs `f` in the transaction: commits when it returns `Ok`, rolls back when it returns
    /// `Err` or panics (the panic then continues).
    pub fn run<T, F>(self, mut f: F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        let sql = self.begin_sql();
        let mut attempt = 1;
        loop {
            let tx = Transaction::start(self.conn, &sql, self.deadline, self.forget())?;
            match tx.run(&mut f) {
                Err(e) if e.is_retryable() && attempt < self.attempts => attempt += 1,
                other => return other,
            }
        }
    }
}

/// An open transaction (or savepoint). Rolls back when dropped without [`Transaction::commit`].
///
/// ```no_run
/// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
/// use lifeguard_core::Executor;
/// let mut tx = conn.begin()?;
/// tx.execute("INSERT INTO audit (what) VALUES ($1)", &[&"login"])?;
/// tx.commit()?;
/// # Ok(()) }
/// ```
pub struct Transaction<'a> {
    conn: &'a Connection,
    savepoint: Option<String>,
    depth: u32,
    done: bool,
    /// Bounds the statements inside (see [`TransactionBuilder::timeout`]).
    deadline: Option<(Instant, Duration)>,
    /// The cache and the writes to forget in it when the outermost transaction ends
    /// (savepoints share their parent's list).
    forget: Forget,
}

impl Connection {
    /// Options for a new transaction.
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder::exclusive(self)
    }

    /// Starts a transaction with the server's default options.
    pub fn begin(&mut self) -> Result<Transaction<'_>> {
        Transaction::start(self, "BEGIN", None, Forget::default())
    }

    /// Runs `f` in a transaction: commit on `Ok`, rollback on `Err` or panic.
    ///
    /// ```no_run
    /// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// use lifeguard_core::Executor;
    /// let moved = conn.transaction(|tx| {
    ///     tx.execute("UPDATE account SET balance = balance - 10 WHERE id = 1", &[])?;
    ///     tx.execute("UPDATE account SET balance = balance + 10 WHERE id = 2", &[])
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn transaction<T, F>(&mut self, f: F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        self.build_transaction().run(f)
    }
}

impl<'a> Transaction<'a> {
    fn start(
        conn: &'a Connection,
        begin: &str,
        deadline: Option<(Instant, Duration)>,
        forget: Forget,
    ) -> Result<Transaction<'a>> {
        let control = Call {
            exclusive: true,
            ..Call::new(conn)
        };
        match conn.local_session() {
            // The pool's session defaults, in the same request (see `session`).
            Some(local) => control.simple_query(&format!("{begin}{}", local.begin_suffix()))?,
            None => control.simple_query(begin)?,
        };
        Ok(Transaction {
            conn,
            savepoint: None,
            depth: 0,
            done: false,
            deadline,
            forget,
        })
    }

    /// A statement inside the transaction: bounded by its deadline.
    fn call(&self) -> Call<'a> {
        Call {
            deadline: self.deadline,
            ..self.control()
        }
    }

    /// Transaction control (`BEGIN`, `COMMIT`, savepoints): never cut short.
    fn control(&self) -> Call<'a> {
        Call {
            exclusive: true,
            ..Call::new(self.conn)
        }
    }

    /// The connection this transaction runs on.
    pub fn connection(&self) -> &Connection {
        self.conn
    }

    /// A handle whose calls must finish within `timeout`; a late statement is cancelled.
    /// (The transaction's own deadline still applies when it is sooner.)
    pub fn timeout(&self, timeout: Duration) -> Timed<'a> {
        let call = self.control().with_timeout(timeout);
        match (self.deadline, call.deadline) {
            (Some(tx), Some(own)) if tx.0 < own.0 => Timed(self.call()),
            _ => Timed(call),
        }
    }

    /// Starts a nested transaction (a savepoint) that can roll back on its own.
    pub fn savepoint(&mut self) -> Result<Transaction<'_>> {
        let depth = self.depth + 1;
        let name = format!("lifeguard_sp_{depth}");
        self.control().simple_query(&format!("SAVEPOINT {name}"))?;
        Ok(Transaction {
            conn: self.conn,
            savepoint: Some(name),
            depth,
            done: false,
            deadline: self.deadline,
            forget: self.forget.clone(),
        })
    }

    /// Runs `f` in a savepoint: released on `Ok`, rolled back to on `Err` or panic, leaving
    /// the outer transaction usable.
    pub fn transaction<T, F>(&mut self, mut f: F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        self.savepoint()?.run(&mut f)
    }

    fn run<T, F>(mut self, f: &mut F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        match catch_unwind(AssertUnwindSafe(|| f(&mut self))) {
            Ok(Ok(value)) => self.commit().map(|()| value),
            Ok(Err(e)) => {
                // The closure's error is the one worth reporting; a failed rollback (say, on a
                // broken connection) changes nothing the caller can act on.
                let _ = self.rollback();
                Err(e)
            }
            Err(panic) => {
                let _ = self.rollback();
                resume_unwind(panic)
            }
        }
    }

    /// Commits (or releases the savepoint).
    ///
    /// A connection lost once `COMMIT` was sent gives [`Error::CommitOutcomeUnknown`]: the
    /// transaction may or may not have committed.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        let sql = match &self.savepoint {
            Some(name) => format!("RELEASE SAVEPOINT {name}"),
            None => "COMMIT".to_owned(),
        };
        let failed =
            self.savepoint.is_none() && self.conn.transaction_status() == TransactionStatus::Failed;
        let ended = self.control().simple_query(&sql);
        self.ended();
        ended.map_err(|e| match e {
            // The COMMIT may have reached the server and committed before the reply was
            // lost; an aborted transaction can only have rolled back.
            Error::Connection(c) if !c.unsent && self.savepoint.is_none() && !failed => {
                Error::CommitOutcomeUnknown(c)
            }
            e => e,
        })?;
        // COMMIT of a failed transaction "succeeds" by rolling back; say so.
        if failed {
            return Err(Error::from_db(DbError {
                severity: "ERROR".into(),
                code: SqlState::IN_FAILED_SQL_TRANSACTION.into(),
                message: "the transaction was aborted by an earlier error; COMMIT rolled it back"
                    .into(),
                ..DbError::default()
            }));
        }
        Ok(())
    }

    /// Rolls back (or rolls back to the savepoint and releases it).
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        let ended = self.control().simple_query(&self.rollback_sql()).map(drop);
        self.ended();
        ended
    }

    /// After the outermost transaction's `COMMIT` or `ROLLBACK` (whatever its outcome; a
    /// write that did not commit is only forgotten for nothing): forgets its ORM writes in
    /// the cache, never before.
    #[cfg(feature = "cache")]
    fn ended(&self) {
        if let (None, Some((cache, written))) = (&self.savepoint, &self.forget.into) {
            for w in std::mem::take(&mut *crate::rt::lock(written)) {
                cache.invalidate(&w);
            }
        }
    }

    #[cfg(not(feature = "cache"))]
    fn ended(&self) {}

    fn rollback_sql(&self) -> String {
        match &self.savepoint {
            Some(name) => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
            None => "ROLLBACK".to_owned(),
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Queued, not awaited: statements sent later on this connection line up behind it.
            if let Err(e) = self.control().simple_query_detached(&self.rollback_sql()) {
                tracing::debug!(target: "lifeguard::pg", "rollback on drop not sent: {e}");
            }
            self.ended();
        }
    }
}

#[cfg(not(feature = "cache"))]
impl_executor!(Transaction<'_>, |t| t.call());

#[cfg(feature = "cache")]
impl_executor!(Transaction<'_>, |t| t.call(), {
    fn cache_invalidate(&self, written: crate::cache::Written) {
        if let Some((_, pending)) = &self.forget.into {
            crate::rt::lock(pending).push(written);
        }
    }
});

/// What a transaction forgets its cached writes in: the cache and the writes so far
/// (nothing without the `cache` feature).
#[derive(Clone, Default)]
struct Forget {
    #[cfg(feature = "cache")]
    into: Option<(crate::cache::Cache, Arc<Mutex<Vec<crate::cache::Written>>>)>,
}
