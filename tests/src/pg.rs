//! Helpers for the tests of the `lifeguard_core::pg` client against the real services.
//!
//! Every test calls [`init`] (directly or through [`connect`]) so that the `may` runtime is
//! configured once, before anything spawns a coroutine.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;

use crate::{primary_url, try_psql, unique_name};

/// Configures the `may` runtime exactly once per process: 2 worker threads and a 256 KiB
/// coroutine stack (`set_stack_size` counts machine words, so `0x8000` words).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(2).set_stack_size(0x8000);
    });
}

/// Opens a connection to the primary as the superuser `postgres` (after [`init`]).
///
/// # Panics
///
/// Panics with the error when the connection cannot be opened.
pub fn connect() -> Connection {
    connect_url(&primary_url())
}

/// Opens a connection to `url` (a `postgres://` URL or `key=value` string) after [`init`].
///
/// # Panics
///
/// Panics with the error when the connection cannot be opened.
pub fn connect_url(url: &str) -> Connection {
    init();
    Connection::open(url).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs a test file's schema DDL once per process, from threads and coroutines alike.
///
/// `std::sync::Once` would block the worker thread of every coroutine that waits for it;
/// with the two workers of [`init`] those waiters can starve the very coroutine whose
/// DDL they wait for, until the client's no-reply bound fails it. Waiters here sleep
/// (`may::coroutine::sleep` parks a coroutine and sleeps a thread) instead.
pub struct SchemaOnce(AtomicU8);

const SCHEMA_PENDING: u8 = 0;
const SCHEMA_RUNNING: u8 = 1;
const SCHEMA_READY: u8 = 2;
const SCHEMA_FAILED: u8 = 3;

impl SchemaOnce {
    /// A guard whose DDL has not run yet.
    pub const fn new() -> Self {
        Self(AtomicU8::new(SCHEMA_PENDING))
    }

    /// Runs `ddl` on `conn` when no caller has; otherwise waits (at most 60 s) for the
    /// caller that does.
    ///
    /// # Panics
    ///
    /// Panics when the DDL fails, here or in the caller that ran it, or the wait runs out.
    pub fn ensure(&self, conn: &Connection, ddl: &str) {
        if self
            .0
            .compare_exchange(
                SCHEMA_PENDING,
                SCHEMA_RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            match conn.batch_execute(ddl) {
                Ok(()) => self.0.store(SCHEMA_READY, Ordering::Release),
                Err(e) => {
                    self.0.store(SCHEMA_FAILED, Ordering::Release);
                    panic!("create the test schema: {e}");
                }
            }
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.0.load(Ordering::Acquire) {
                SCHEMA_READY => return,
                SCHEMA_FAILED => panic!("the test schema failed to build in another test"),
                _ if std::time::Instant::now() > deadline => {
                    panic!("the test schema took over 60 s to build")
                }
                _ => may::coroutine::sleep(std::time::Duration::from_millis(5)),
            }
        }
    }
}

impl Default for SchemaOnce {
    fn default() -> Self {
        Self::new()
    }
}

/// A connection to the primary, after `ddl` (a test file's schema) has run once in this
/// process; `once` is the file's own guard.
///
/// # Panics
///
/// Panics when the DDL fails.
pub fn connect_with_schema(once: &'static SchemaOnce, ddl: &str) -> Connection {
    let conn = connect();
    once.ensure(&conn, ddl);
    conn
}

/// Runs `f` in a `may` coroutine and waits for it, re-raising its panic on the caller.
///
/// # Panics
///
/// Panics when `f` panics.
pub fn in_coroutine<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    init();
    match may::go!(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `f` in a `may` coroutine and waits at most `limit` for it, so a hang fails the test
/// instead of stalling the run; re-raises its panic on the caller.
///
/// # Panics
///
/// Panics when `f` panics or does not finish within `limit`.
pub fn in_coroutine_within<T, F>(limit: std::time::Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    in_coroutine_sized(None, limit, f)
}

/// [`in_coroutine_within`] on a coroutine of `stack_words` machine words of stack (the
/// default of [`init`] when `None`): for code that must run on the stack a service gives
/// its request coroutines.
///
/// # Panics
///
/// Panics when `f` panics or does not finish within `limit`.
pub fn in_coroutine_sized<T, F>(stack_words: Option<usize>, limit: std::time::Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    init();
    let (tx, rx) = std::sync::mpsc::channel();
    let body = move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    };
    let mut builder = may::coroutine::Builder::new();
    if let Some(words) = stack_words {
        builder = builder.stack_size(words);
    }
    // SAFETY: the closure owns what it uses and keeps no thread-local state across the
    // points where a coroutine may move to another worker.
    let _handle = unsafe { builder.spawn(body) }.expect("spawn a coroutine");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        // Re-raised with its message: a panic inside a coroutine prints nothing itself, and
        // `resume_unwind` does not run the panic hook, so the test report would be empty.
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            panic!("the coroutine panicked: {message}")
        }
        Err(_) => panic!("coroutine did not finish within {limit:?} (hang)"),
    }
}

/// A table created for one test, dropped (through `psql` on the primary) when this guard goes
/// out of scope, also on panic. Dereferences to the table's name.
pub struct ScratchTable {
    name: String,
}

impl ScratchTable {
    /// The table's (unquoted, lowercase) name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Deref for ScratchTable {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ScratchTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for ScratchTable {
    fn drop(&mut self) {
        // A lock timeout keeps a test that left a transaction open from hanging here.
        let _ = try_psql(
            &primary_url(),
            &format!(
                "SET lock_timeout = '5s'; DROP TABLE IF EXISTS {} CASCADE",
                self.name
            ),
        );
    }
}

/// Creates a uniquely named table `lg_t_<pid>_<nanos>_<n>` with the given column list (the
/// text between the parentheses of `CREATE TABLE`) through `conn`, and returns its guard.
///
/// # Panics
///
/// Panics when the table cannot be created.
pub fn scratch_table(conn: &impl Executor, ddl_columns: &str) -> ScratchTable {
    let name = unique_name("lg_t");
    conn.batch_execute(&format!("CREATE TABLE {name} ({ddl_columns})"))
        .unwrap_or_else(|e| panic!("create table {name}: {e}"));
    ScratchTable { name }
}

/// The parameter lists of a batch whose statement takes one `int4` (for
/// `query_pipelined`): borrow each as `&p[..]`.
pub fn one_each(values: &[i32]) -> Vec<[&(dyn lifeguard_core::pg::ToSql + Sync); 1]> {
    values.iter().map(|v| [v as _]).collect()
}
